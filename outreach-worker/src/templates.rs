//! Message templates, per campaign and language, for SMS and email, rendered at run time
//! with minijinja.
//!
//! Each campaign and language has four templates: `sms.txt`, `email.subject`, `email.txt`
//! and `email.html`. Operators override them from a directory laid out as
//! `<dir>/<campaign_id>/<lang>/<file>`; a file that is missing there is taken from
//! `<dir>/default/<lang>/<file>`, then from the built-in default (English and French,
//! embedded in the binary). Campaigns that are not listed at load use the defaults.
//!
//! A template sees six variables (see [`Vars`]): `link`, `unsubscribe_link`, `reminder`,
//! `campaign_id`, and the clinic that sends the message, `clinic_name` and `clinic_contact`
//! (from the worker's `[sites.<id>]` settings for the contact's site; both empty when the
//! site has no entry, so templates test them with `{% if clinic_name %}` and keep a generic
//! wording otherwise, as the built-in ones do). Any other name is an error at load, as is a syntax error or a subject that
//! renders to more than one line: every template is compiled, checked for unknown names and
//! rendered once (as a first invitation and as a reminder, with and without a clinic) when it
//! is loaded, so a typo in an
//! operator's template stops the start-up, not a send. `email.html` is HTML-escaped; the
//! others are not.
//!
//! Errors name the template's file and what is wrong with it, never rendered text.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::{self, Write as _},
    path::Path,
};

use minijinja::{AutoEscape, Environment, Output, State, UndefinedBehavior, Value, context};
use serde::Serialize;
use tracing::warn;

use crate::{
    sites::SiteIdentity,
    sms::{Encoding, segments},
};

/// The languages templates exist for.
pub const LANGUAGES: [&str; 2] = ["en", "fr"];

/// The names a template may use.
pub const VARIABLES: [&str; 6] =
    ["link", "unsubscribe_link", "reminder", "campaign_id", "clinic_name", "clinic_contact"];

/// The scope, and the override directory, of the templates campaigns share.
const DEFAULT_SCOPE: &str = "default";

/// The values a template is rendered with. None of them is contact data.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Vars {
    /// The survey link: the bridge's base URL and the GUID.
    pub link: String,
    /// The opt-out link: the bridge's unsubscribe URL and the GUID.
    pub unsubscribe_link: String,
    /// Whether this is a reminder rather than the first invitation.
    pub reminder: bool,
    /// The campaign the invitation belongs to.
    pub campaign_id: String,
    /// The name of the clinic the message is sent on behalf of; empty when the contact's
    /// site has no identity configured.
    pub clinic_name: String,
    /// How to reach that clinic (mailing address and phone, email or web, one line); empty
    /// when the contact's site has no identity configured.
    pub clinic_contact: String,
}

impl Vars {
    /// The template context.
    fn to_value(&self) -> Value {
        context! {
            link => self.link.as_str(),
            unsubscribe_link => self.unsubscribe_link.as_str(),
            reminder => self.reminder,
            campaign_id => self.campaign_id.as_str(),
            clinic_name => self.clinic_name.as_str(),
            clinic_contact => self.clinic_contact.as_str(),
        }
    }

    /// Sets the clinic from `site`, or clears it for a site without an identity.
    pub fn with_site(mut self, site: Option<&SiteIdentity>) -> Vars {
        self.clinic_name = site.map(|s| s.name.clone()).unwrap_or_default();
        self.clinic_contact = site.map(|s| s.contact.clone()).unwrap_or_default();
        self
    }
}

/// A rendered email: a one-line subject, a plain-text body and an HTML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailBody {
    /// The subject, one line.
    pub subject: String,
    /// The `text/plain` alternative.
    pub text: String,
    /// The `text/html` alternative.
    pub html: String,
}

/// How an SMS template renders with a sample link and the configured clinics: what
/// [`Templates::check_sms`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsCheck {
    /// The campaign, or `default` for the templates unlisted campaigns use.
    pub campaign_id: String,
    /// The language.
    pub lang: String,
    /// The encoding: UCS-2 when either the invitation or the reminder needs it.
    pub encoding: Encoding,
    /// The segments of the longest SMS: invitation or reminder, for any configured clinic
    /// or none.
    pub segments: usize,
    /// The site whose clinic gives that longest SMS; none when it is the generic wording.
    pub site_id: Option<String>,
}

/// A template that could not be loaded or rendered. It names the file (or the built-in
/// template) and what is wrong, never rendered text.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template directory is not a readable directory.
    #[error("template directory {path}: {reason}")]
    Dir {
        /// The directory.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A template file exists but cannot be read (permissions, not UTF-8).
    #[error("template {path}: cannot be read: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A template does not compile or does not render: a syntax error, an undefined value,
    /// a filter failing, or it renders to nothing.
    #[error("template {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, from minijinja, with the line where known.
        reason: String,
    },
    /// A template uses a name that is not one of [`VARIABLES`].
    #[error(
        "template {path}: unknown variable `{name}` (known: link, unsubscribe_link, reminder, campaign_id, clinic_name, clinic_contact)"
    )]
    UnknownVariable {
        /// The file.
        path: String,
        /// The unknown name.
        name: String,
    },
    /// An email subject template renders to more than one line or holds control characters.
    #[error("template {path}: the subject must be one line without control characters")]
    SubjectNotOneLine {
        /// The file.
        path: String,
    },
    /// A campaign id that cannot name a template directory.
    #[error("campaign id {0:?} cannot name a template directory (use letters, digits, '-', '_' and '.')")]
    BadCampaign(String),
    /// A language other than en and fr.
    #[error("no templates for language {0:?} (only en and fr)")]
    UnsupportedLanguage(String),
}

/// One of the four templates of a campaign and language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sms,
    Subject,
    Text,
    Html,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Sms, Kind::Subject, Kind::Text, Kind::Html];

    /// The file name, which also picks the escaping: only `.html` is escaped.
    fn file(self) -> &'static str {
        match self {
            Kind::Sms => "sms.txt",
            Kind::Subject => "email.subject",
            Kind::Text => "email.txt",
            Kind::Html => "email.html",
        }
    }
}

/// The built-in default template.
fn builtin_source(lang: &str, kind: Kind) -> Option<&'static str> {
    Some(match (lang, kind) {
        ("en", Kind::Sms) => include_str!("../templates/default/en/sms.txt"),
        ("en", Kind::Subject) => include_str!("../templates/default/en/email.subject"),
        ("en", Kind::Text) => include_str!("../templates/default/en/email.txt"),
        ("en", Kind::Html) => include_str!("../templates/default/en/email.html"),
        ("fr", Kind::Sms) => include_str!("../templates/default/fr/sms.txt"),
        ("fr", Kind::Subject) => include_str!("../templates/default/fr/email.subject"),
        ("fr", Kind::Text) => include_str!("../templates/default/fr/email.txt"),
        ("fr", Kind::Html) => include_str!("../templates/default/fr/email.html"),
        _ => return None,
    })
}

/// The name a template is registered under: `<scope>/<lang>/<file>`.
fn template_name(scope: &str, lang: &str, kind: Kind) -> String {
    format!("{scope}/{lang}/{}", kind.file())
}

/// Whether `id` is safe as one path component.
fn valid_campaign(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What minijinja says is wrong, with the line: never the template's output.
fn describe(err: &minijinja::Error) -> String {
    let mut reason = err.kind().to_string();
    if let Some(detail) = err.detail() {
        reason.push_str(": ");
        reason.push_str(detail);
    }
    if let Some(line) = err.line() {
        reason.push_str(&format!(" (line {line})"));
    }
    reason
}

/// Prints a value, HTML-escaping strings in `.html` templates as `&`, `<`, `>`, `"` and `'`
/// only: minijinja's own escaper also turns `/` into `&#x2f;`, which garbles links in the
/// HTML source for no gain in quoted attributes and text.
fn html_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), minijinja::Error> {
    if *state.auto_escape() == AutoEscape::Html
        && !value.is_safe()
        && let Some(text) = value.as_str()
    {
        for c in text.chars() {
            match c {
                '&' => out.write_str("&amp;"),
                '<' => out.write_str("&lt;"),
                '>' => out.write_str("&gt;"),
                '"' => out.write_str("&quot;"),
                '\'' => out.write_str("&#39;"),
                c => out.write_char(c),
            }
            .map_err(minijinja::Error::from)?;
        }
        return Ok(());
    }
    minijinja::escape_formatter(out, state, value)
}

/// The compiled templates of every listed campaign and the defaults, in both languages.
///
/// Built once at start-up by [`Templates::load`] (or [`Templates::builtin`]) and then only
/// read; share it behind an `Arc`.
pub struct Templates {
    env: Environment<'static>,
    /// The campaigns with a scope of their own.
    campaigns: BTreeSet<String>,
    /// Where each template came from (a path, or "built-in ..."), by template name.
    origins: HashMap<String, String>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("campaigns", &self.campaigns)
            .field("templates", &self.origins.len())
            .finish()
    }
}

impl Templates {
    /// The built-in English and French templates, for every campaign.
    pub fn builtin() -> Templates {
        Templates::load(None, &[]).expect("the built-in templates are valid (tested)")
    }

    /// Loads, compiles and checks the templates of `campaigns` (and the defaults) from
    /// `dir`, falling back file by file to `dir/default` and then to the built-in ones.
    /// With no `dir`, every campaign uses the built-in templates. Campaigns not listed here
    /// use the defaults when rendered.
    pub fn load(dir: Option<&Path>, campaigns: &[String]) -> Result<Templates, TemplateError> {
        if let Some(bad) = campaigns.iter().find(|id| !valid_campaign(id)) {
            return Err(TemplateError::BadCampaign(bad.clone()));
        }
        if let Some(dir) = dir {
            check_dir(dir, campaigns)?;
        }
        let campaigns: BTreeSet<String> =
            campaigns.iter().filter(|id| *id != DEFAULT_SCOPE).cloned().collect();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_debug(false);
        env.set_formatter(html_formatter);
        let mut origins = HashMap::new();
        let scopes = std::iter::once(DEFAULT_SCOPE).chain(campaigns.iter().map(String::as_str));
        for scope in scopes {
            for lang in LANGUAGES {
                for kind in Kind::ALL {
                    let (source, origin) = resolve(dir, scope, lang, kind)?;
                    let name = template_name(scope, lang, kind);
                    env.add_template_owned(name.clone(), source).map_err(|err| TemplateError::Invalid {
                        path: origin.clone(),
                        reason: describe(&err),
                    })?;
                    origins.insert(name, origin);
                }
            }
        }
        let templates = Templates { env, campaigns, origins };
        templates.validate()?;
        Ok(templates)
    }

    /// Checks every template for unknown names, then renders it as a first invitation and as
    /// a reminder.
    fn validate(&self) -> Result<(), TemplateError> {
        let globals: BTreeSet<String> = self.env.globals().map(|(name, _)| name.to_string()).collect();
        for (name, origin) in &self.origins {
            let template = self.env.get_template(name).map_err(|err| self.error(name, &err))?;
            let mut unknown: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|var| !VARIABLES.contains(&var.as_str()) && !globals.contains(var))
                .collect();
            unknown.sort();
            if let Some(var) = unknown.into_iter().next() {
                return Err(TemplateError::UnknownVariable { path: origin.clone(), name: var });
            }
        }
        let sample_clinic = SiteIdentity {
            name: "Clinic".into(),
            contact: "1 Main Street, Ottawa ON · clinic.example".into(),
        };
        for scope in self.scopes() {
            for lang in LANGUAGES {
                for (reminder, clinic) in
                    [(false, None), (true, None), (false, Some(&sample_clinic)), (true, Some(&sample_clinic))]
                {
                    let vars = Vars {
                        link: "https://survey.example.org/s/00000000-0000-4000-8000-000000000000".into(),
                        unsubscribe_link: "https://survey.example.org/u/00000000-0000-4000-8000-000000000000"
                            .into(),
                        reminder,
                        campaign_id: scope.to_string(),
                        ..Vars::default()
                    }
                    .with_site(clinic);
                    self.render_in(scope, lang, Kind::Sms, &vars)?;
                    self.email_in(scope, lang, &vars)?;
                }
            }
        }
        Ok(())
    }

    /// The default scope, then each listed campaign.
    fn scopes(&self) -> impl Iterator<Item = &str> {
        std::iter::once(DEFAULT_SCOPE).chain(self.campaigns.iter().map(String::as_str))
    }

    /// The scope whose templates `campaign_id` uses.
    fn scope<'a>(&'a self, campaign_id: &'a str) -> &'a str {
        if self.campaigns.contains(campaign_id) { campaign_id } else { DEFAULT_SCOPE }
    }

    /// An error about the template registered as `name`, naming its file.
    fn error(&self, name: &str, err: &minijinja::Error) -> TemplateError {
        TemplateError::Invalid { path: self.origin(name), reason: describe(err) }
    }

    /// Where the template registered as `name` came from.
    fn origin(&self, name: &str) -> String {
        self.origins.get(name).cloned().unwrap_or_else(|| name.to_string())
    }

    /// Renders one template of `scope`; text that renders to nothing is an error.
    fn render_in(&self, scope: &str, lang: &str, kind: Kind, vars: &Vars) -> Result<String, TemplateError> {
        if !LANGUAGES.contains(&lang) {
            return Err(TemplateError::UnsupportedLanguage(lang.to_string()));
        }
        let name = template_name(scope, lang, kind);
        let template = self.env.get_template(&name).map_err(|err| self.error(&name, &err))?;
        let rendered = template.render(vars.to_value()).map_err(|err| self.error(&name, &err))?;
        if rendered.trim().is_empty() {
            return Err(TemplateError::Invalid {
                path: self.origin(&name),
                reason: "renders to nothing".into(),
            });
        }
        Ok(rendered)
    }

    /// Renders the email of `scope`.
    fn email_in(&self, scope: &str, lang: &str, vars: &Vars) -> Result<EmailBody, TemplateError> {
        let subject = self.render_in(scope, lang, Kind::Subject, vars)?;
        let subject = subject.trim();
        if subject.chars().any(char::is_control) {
            let path = self.origin(&template_name(scope, lang, Kind::Subject));
            return Err(TemplateError::SubjectNotOneLine { path });
        }
        Ok(EmailBody {
            subject: subject.to_string(),
            text: self.render_in(scope, lang, Kind::Text, vars)?,
            html: self.render_in(scope, lang, Kind::Html, vars)?,
        })
    }

    /// The SMS text for `campaign_id` in `lang`, without surrounding white space.
    pub fn sms(&self, campaign_id: &str, lang: &str, vars: &Vars) -> Result<String, TemplateError> {
        let text = self.render_in(self.scope(campaign_id), lang, Kind::Sms, vars)?;
        Ok(text.trim().to_string())
    }

    /// The email for `campaign_id` in `lang`: a one-line subject, text and HTML.
    pub fn email(&self, campaign_id: &str, lang: &str, vars: &Vars) -> Result<EmailBody, TemplateError> {
        self.email_in(self.scope(campaign_id), lang, vars)
    }

    /// For every campaign and language: renders the SMS (invitation and reminder) with a
    /// sample link of the configured length, for each clinic of `sites` and for a site
    /// without one, and returns the encoding and segments of the longest; logs `warn!` past
    /// 2 segments, naming the site whose clinic makes it so.
    pub fn check_sms(&self, sample_link: &str, sites: &BTreeMap<String, SiteIdentity>) -> Vec<SmsCheck> {
        let clinics = std::iter::once((None, None)).chain(sites.iter().map(|(id, s)| (Some(id), Some(s))));
        let mut checks = Vec::new();
        for scope in self.scopes() {
            for lang in LANGUAGES {
                // UCS-2 when any rendering needs it; the most segments, and the site whose
                // SMS is the longest (segments, then characters).
                let mut worst: Option<(Encoding, (usize, usize), Option<&String>)> = None;
                for (site_id, clinic) in clinics.clone() {
                    for reminder in [false, true] {
                        let vars = Vars {
                            link: sample_link.to_string(),
                            unsubscribe_link: sample_link.to_string(),
                            reminder,
                            campaign_id: scope.to_string(),
                            ..Vars::default()
                        }
                        .with_site(clinic);
                        match self.sms(scope, lang, &vars) {
                            Ok(text) => {
                                let (encoding, count) = segments(&text);
                                let size = (count, text.chars().count());
                                let (old_encoding, old_size, old_site) =
                                    worst.unwrap_or((Encoding::Gsm7, (0, 0), None));
                                let encoding =
                                    if old_encoding == Encoding::Ucs2 { Encoding::Ucs2 } else { encoding };
                                let site = if size > old_size { site_id } else { old_site };
                                worst = Some((encoding, size.max(old_size), site));
                            }
                            Err(err) => {
                                warn!(campaign = scope, lang, error = %err, "SMS template does not render")
                            }
                        }
                    }
                }
                let Some((encoding, (segments, _), site_id)) = worst else { continue };
                if segments > 2 {
                    warn!(
                        campaign = scope,
                        lang,
                        segments,
                        encoding = ?encoding,
                        longest_for_site = site_id.map_or("(none: the generic wording)", String::as_str),
                        "SMS template takes more than 2 segments with a link of this length"
                    );
                }
                checks.push(SmsCheck {
                    campaign_id: scope.to_string(),
                    lang: lang.to_string(),
                    encoding,
                    segments,
                    site_id: site_id.cloned(),
                });
            }
        }
        checks
    }
}

/// Checks that `dir` is a directory and warns about campaign directories in it that no
/// listed campaign uses (a likely typo).
fn check_dir(dir: &Path, campaigns: &[String]) -> Result<(), TemplateError> {
    let err = |reason: String| TemplateError::Dir { path: dir.display().to_string(), reason };
    let entries = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| err(e.to_string()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && name != DEFAULT_SCOPE && !campaigns.iter().any(|c| c == name) {
            warn!(
                campaign = name,
                dir = %dir.display(),
                "templates for a campaign that is not configured: ignored"
            );
        }
    }
    Ok(())
}

/// The source of one template and where it came from: the campaign's file, the directory's
/// default, or the built-in default.
fn resolve(
    dir: Option<&Path>,
    scope: &str,
    lang: &str,
    kind: Kind,
) -> Result<(String, String), TemplateError> {
    if let Some(dir) = dir {
        let mut candidates = Vec::with_capacity(2);
        if scope != DEFAULT_SCOPE {
            candidates.push(dir.join(scope).join(lang).join(kind.file()));
        }
        candidates.push(dir.join(DEFAULT_SCOPE).join(lang).join(kind.file()));
        for path in candidates {
            match std::fs::read_to_string(&path) {
                Ok(source) => return Ok((source, path.display().to_string())),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    return Err(TemplateError::Read {
                        path: path.display().to_string(),
                        reason: err.to_string(),
                    });
                }
            }
        }
    }
    let source =
        builtin_source(lang, kind).ok_or_else(|| TemplateError::UnsupportedLanguage(lang.to_string()))?;
    Ok((source.to_string(), format!("built-in default/{lang}/{}", kind.file())))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A link of the length the worker sends: the bridge's base URL and a GUID.
    const LINK: &str = "https://survey.example.org/s/3f2a9c4e-8b1d-4e6f-a2c5-7d9e0b1f4a6c";
    const UNSUBSCRIBE: &str = "https://survey.example.org/u/3f2a9c4e-8b1d-4e6f-a2c5-7d9e0b1f4a6c";

    fn vars(reminder: bool) -> Vars {
        Vars {
            link: LINK.into(),
            unsubscribe_link: UNSUBSCRIBE.into(),
            reminder,
            campaign_id: "spring-2027".into(),
            ..Vars::default()
        }
    }

    /// A clinic with a name of the longest allowed length, all GSM-7.
    fn long_clinic() -> SiteIdentity {
        let name = format!("Centre de sante familiale de la Riviere-des-Outaouais {}", "x".repeat(80));
        SiteIdentity {
            name: name.chars().take(crate::sites::MAX_SITE_NAME).collect(),
            contact: "250 rue Principale, Gatineau QC J8X 1A1 · 613-999-0150 · soleil.example".into(),
        }
    }

    fn soleil() -> SiteIdentity {
        SiteIdentity {
            name: "Clinique Soleil".into(),
            contact: "250 rue Principale, Gatineau QC J8X 1A1 · 613-999-0150 · soleil.example".into(),
        }
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    #[test]
    fn defaults_render_in_both_languages_with_the_links() {
        let templates = Templates::builtin();
        for lang in LANGUAGES {
            for reminder in [false, true] {
                let sms = templates.sms("any-campaign", lang, &vars(reminder)).expect("sms");
                assert!(sms.contains(LINK), "{lang}: {sms}");
                assert!(sms.contains("STOP"), "{lang}: {sms}");
                assert_eq!(sms, sms.trim());
                let email = templates.email("any-campaign", lang, &vars(reminder)).expect("email");
                assert!(!email.subject.is_empty() && !email.subject.contains('\n'));
                for body in [&email.text, &email.html] {
                    assert!(body.contains(LINK), "{lang}");
                    assert!(body.contains(UNSUBSCRIBE), "{lang}");
                }
                assert!(email.html.contains(&format!("href=\"{LINK}\"")));
                assert!(email.html.contains(&format!("<html lang=\"{lang}\">")));
            }
        }
        let en = templates.email("c", "en", &vars(false)).expect("en");
        let fr = templates.email("c", "fr", &vars(false)).expect("fr");
        assert_eq!(en.subject, "Your clinic's patient-experience survey (optional)");
        assert_eq!(fr.subject, "Sondage de votre clinique sur l'expérience des patients (facultatif)");
        assert!(en.text.contains("optional") && en.text.contains("unsubscribe"));
        assert!(fr.text.contains("facultatif") && fr.text.contains("désabonnez-vous"));
        let reminder = templates.email("c", "en", &vars(true)).expect("en");
        assert!(reminder.subject.starts_with("Reminder: "));
        let rappel = templates.sms("c", "fr", &vars(true)).expect("fr");
        assert!(rappel.starts_with("Rappel : "));
    }

    #[test]
    fn default_sms_fits_in_two_gsm7_segments() {
        let templates = Templates::builtin();
        let checks = templates.check_sms(LINK, &BTreeMap::new());
        assert_eq!(checks.len(), 2);
        for check in &checks {
            assert_eq!(check.campaign_id, "default");
            assert_eq!(check.encoding, Encoding::Gsm7, "{check:?}");
            assert!(check.segments <= 2, "{check:?}");
        }
        // Room to spare: a link 20 characters longer still fits.
        let longer = format!("{LINK}{}", "x".repeat(20));
        assert!(templates.check_sms(&longer, &BTreeMap::new()).iter().all(|c| c.segments <= 2));
    }

    #[test]
    fn a_configured_clinic_is_named_in_every_message_and_its_contact_in_every_email() {
        let templates = Templates::builtin();
        let clinic = soleil();
        for lang in LANGUAGES {
            let generic = if lang == "en" { "your clinic" } else { "votre clinique" };
            for reminder in [false, true] {
                let named = vars(reminder).with_site(Some(&clinic));
                let sms = templates.sms("c", lang, &named).expect("sms");
                assert!(sms.contains("Clinique Soleil"), "{lang}: {sms}");
                assert!(sms.contains(LINK) && sms.contains("STOP"), "{lang}: {sms}");
                let email = templates.email("c", lang, &named).expect("email");
                assert!(email.subject.contains("Clinique Soleil"), "{lang}: {}", email.subject);
                for body in [&email.text, &email.html] {
                    assert!(body.contains("Clinique Soleil"), "{lang}: {body}");
                    assert!(body.contains(&clinic.contact), "{lang}: {body}");
                    assert!(body.contains(UNSUBSCRIBE), "{lang}: {body}");
                }
                for text in [&sms, &email.subject, &email.text, &email.html] {
                    assert!(!text.to_lowercase().contains(generic), "{lang}: {text}");
                }

                // No clinic: the generic wording, and no empty name or contact left behind.
                let anonymous = vars(reminder).with_site(None);
                let sms = templates.sms("c", lang, &anonymous).expect("sms");
                let email = templates.email("c", lang, &anonymous).expect("email");
                for text in [&sms, &email.subject, &email.text, &email.html] {
                    assert!(text.to_lowercase().contains(generic), "{lang}: {text}");
                    assert!(!text.contains("ci-dessous") && !text.contains("clinic below"), "{lang}: {text}");
                }
            }
        }
        let named = vars(false).with_site(Some(&clinic));
        assert_eq!(
            templates.sms("c", "en", &named).expect("sms"),
            format!(
                "Clinique Soleil invites you to an optional patient-experience survey about your recent visit: {LINK} Reply STOP to opt out."
            )
        );
        let rappel = templates.sms("c", "fr", &vars(true).with_site(Some(&clinic))).expect("sms");
        assert!(rappel.starts_with("Rappel : Clinique Soleil vous invite "), "{rappel}");
        let email = templates.email("c", "fr", &named).expect("email");
        assert_eq!(email.subject, "Sondage sur l'expérience des patients – Clinique Soleil (facultatif)");
        assert!(
            email.text.contains(&format!(
                "au nom de la clinique ci-dessous par son service de sondage sur l'expérience des patients.\nClinique Soleil\n{}\n",
                clinic.contact
            )),
            "{}",
            email.text
        );
    }

    #[test]
    fn a_clinic_name_is_escaped_in_html_only() {
        let templates = Templates::builtin();
        let clinic =
            SiteIdentity { name: "Smith & Jones <Family> Clinic".into(), contact: "1 \"Main\" St".into() };
        let email = templates.email("c", "en", &vars(false).with_site(Some(&clinic))).expect("email");
        assert!(email.html.contains("Smith &amp; Jones &lt;Family&gt; Clinic"), "{}", email.html);
        assert!(email.html.contains("1 &quot;Main&quot; St"), "{}", email.html);
        assert!(!email.html.contains("<Family>"), "{}", email.html);
        assert!(email.text.contains("Smith & Jones <Family> Clinic") && email.text.contains("1 \"Main\" St"));
        assert!(email.subject.contains("Smith & Jones <Family> Clinic"), "{}", email.subject);
    }

    #[test]
    fn the_sms_check_renders_with_every_configured_clinic() {
        let templates = Templates::builtin();
        // The longest name allowed still fits in 2 GSM-7 segments, in both languages.
        let sites =
            BTreeMap::from([("site-1001".to_string(), soleil()), ("site-2002".to_string(), long_clinic())]);
        let checks = templates.check_sms(LINK, &sites);
        assert_eq!(checks.len(), 2);
        for check in &checks {
            assert_eq!(check.encoding, Encoding::Gsm7, "{check:?}");
            assert!(check.segments == 2, "{check:?}");
            assert_eq!(check.site_id.as_deref(), Some("site-2002"), "the longest name: {check:?}");
        }
        // Without clinics the generic wording is the longest (and only) one.
        assert!(templates.check_sms(LINK, &BTreeMap::new()).iter().all(|c| c.site_id.is_none()));
        // One name with a letter outside GSM-7 turns that site's SMS into UCS-2: too long,
        // reported for that site even though another name is longer.
        let mut sites = sites;
        sites.insert(
            "site-3003".into(),
            SiteIdentity { name: "Clinique de l'Île".into(), contact: "x".into() },
        );
        for check in templates.check_sms(LINK, &sites) {
            assert_eq!(check.encoding, Encoding::Ucs2, "{check:?}");
            assert!(check.segments > 2, "{check:?}");
            assert_eq!(check.site_id.as_deref(), Some("site-3003"), "{check:?}");
        }
        // An override that uses the contact line in the SMS is measured with it.
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "default/en/sms.txt", "{{ clinic_name }} ({{ clinic_contact }}): {{ link }}");
        let templates = Templates::load(Some(dir.path()), &[]).expect("load");
        let short =
            BTreeMap::from([("s".to_string(), SiteIdentity { name: "A".into(), contact: "b".repeat(200) })]);
        let en = templates.check_sms(LINK, &short).into_iter().find(|c| c.lang == "en").expect("en");
        assert_eq!((en.segments, en.site_id.as_deref()), (2, Some("s")), "{en:?}");
    }

    #[test]
    fn unsupported_language_is_an_error() {
        let templates = Templates::builtin();
        let err = templates.sms("c", "de", &vars(false)).expect_err("de");
        assert!(matches!(err, TemplateError::UnsupportedLanguage(ref l) if l == "de"), "{err}");
        assert!(templates.email("c", "", &vars(false)).is_err());
    }

    #[test]
    fn overrides_fall_back_file_by_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "spring/en/sms.txt", "Spring survey from Clinique Soleil: {{ link }} STOP to end\n");
        write(root, "spring/en/email.subject", "Spring survey ({{ campaign_id }})\n");
        write(root, "default/en/sms.txt", "Site default: {{ link }}");
        write(root, "default/fr/email.subject", "Sondage du site");
        let campaigns = vec!["spring".to_string(), "autumn".to_string()];
        let templates = Templates::load(Some(root), &campaigns).expect("load");
        let spring = Vars { campaign_id: "spring".into(), ..vars(false) };

        // The campaign's own file, trimmed.
        assert_eq!(
            templates.sms("spring", "en", &spring).expect("sms"),
            format!("Spring survey from Clinique Soleil: {LINK} STOP to end")
        );
        assert_eq!(
            templates.email("spring", "en", &spring).expect("email").subject,
            "Spring survey (spring)"
        );
        // Missing in the campaign: the directory's default, then the built-in one.
        let builtin = Templates::builtin();
        assert_eq!(
            templates.email("spring", "en", &spring).expect("email").text,
            builtin.email("x", "en", &spring).expect("email").text
        );
        assert_eq!(
            templates.sms("spring", "fr", &spring).expect("sms"),
            builtin.sms("x", "fr", &spring).expect("sms")
        );
        assert_eq!(templates.email("spring", "fr", &spring).expect("email").subject, "Sondage du site");
        // A listed campaign without a directory, and an unlisted one, use the defaults.
        for campaign in ["autumn", "unlisted"] {
            assert_eq!(templates.sms(campaign, "en", &spring).expect("sms"), format!("Site default: {LINK}"));
        }
        // An override that takes 3 segments is reported.
        write(root, "long/en/sms.txt", &format!("{} {{{{ link }}}}", "a".repeat(300)));
        let templates = Templates::load(Some(root), &["long".to_string()]).expect("load");
        let checks = templates.check_sms(LINK, &BTreeMap::new());
        let long = checks.iter().find(|c| c.campaign_id == "long" && c.lang == "en").expect("long");
        assert_eq!((long.encoding, long.segments), (Encoding::Gsm7, 3));
    }

    #[test]
    fn undefined_variable_is_a_load_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Only in a branch that a first invitation does not take: found all the same.
        write(dir.path(), "spring/fr/email.txt", "{% if reminder %}{{ lien }}{% endif %}{{ link }}");
        let err = Templates::load(Some(dir.path()), &["spring".to_string()]).expect_err("typo");
        let message = err.to_string();
        assert!(
            matches!(err, TemplateError::UnknownVariable { ref name, .. } if name == "lien"),
            "{message}"
        );
        assert!(message.contains(&dir.path().join("spring/fr/email.txt").display().to_string()), "{message}");

        // Strict undefined: an attribute of a known variable fails when rendered at load.
        write(dir.path(), "spring/fr/email.txt", "{{ link.host }}");
        let err = Templates::load(Some(dir.path()), &["spring".to_string()]).expect_err("undefined");
        assert!(matches!(err, TemplateError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("spring/fr/email.txt"), "{err}");

        // A syntax error names the file and the line.
        write(dir.path(), "spring/fr/email.txt", "ok\n{% if link %}no end");
        let err = Templates::load(Some(dir.path()), &["spring".to_string()]).expect_err("syntax");
        let message = err.to_string();
        assert!(message.contains("spring/fr/email.txt") && message.contains("line"), "{message}");
    }

    #[test]
    fn subject_must_be_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "default/en/email.subject", "Survey\nBcc: someone@example.org");
        let err = Templates::load(Some(dir.path()), &[]).expect_err("two lines");
        assert!(matches!(err, TemplateError::SubjectNotOneLine { .. }), "{err}");
        assert!(err.to_string().contains("default/en/email.subject"), "{err}");
        // A trailing newline, as editors leave, is fine.
        write(dir.path(), "default/en/email.subject", "Survey\n\n");
        let templates = Templates::load(Some(dir.path()), &[]).expect("load");
        assert_eq!(templates.email("c", "en", &vars(false)).expect("email").subject, "Survey");
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "default/en/email.html", "<a href=\"{{ link }}\">{{ campaign_id }}</a>");
        write(dir.path(), "default/en/email.txt", "{{ campaign_id }} {{ link }}");
        let templates = Templates::load(Some(dir.path()), &[]).expect("load");
        let vars = Vars {
            link: "https://s.example/s/x?a=1&b=\"2\"".into(),
            campaign_id: "<script>alert(1)</script>".into(),
            ..vars(false)
        };
        let email = templates.email("c", "en", &vars).expect("email");
        assert_eq!(
            email.html,
            "<a href=\"https://s.example/s/x?a=1&amp;b=&quot;2&quot;\">&lt;script&gt;alert(1)&lt;/script&gt;</a>"
        );
        assert_eq!(email.text, "<script>alert(1)</script> https://s.example/s/x?a=1&b=\"2\"");
    }

    #[test]
    fn bad_campaign_ids_and_directories_are_refused() {
        for id in ["", "../etc", "a/b", ".hidden", "spring 2027"] {
            let err = Templates::load(None, &[id.to_string()]).expect_err(id);
            assert!(matches!(err, TemplateError::BadCampaign(_)), "{id}: {err}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let err = Templates::load(Some(&missing), &[]).expect_err("missing dir");
        assert!(matches!(err, TemplateError::Dir { .. }), "{err}");
    }

    #[test]
    fn empty_template_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "default/fr/sms.txt", "{% if reminder %}{{ link }}{% endif %}\n");
        let err = Templates::load(Some(dir.path()), &[]).expect_err("empty first invitation");
        assert!(err.to_string().contains("default/fr/sms.txt"), "{err}");
        assert!(err.to_string().contains("renders to nothing"), "{err}");
    }

    #[test]
    fn debug_is_short() {
        let debug = format!("{:?}", Templates::builtin());
        assert_eq!(debug, "Templates { campaigns: {}, templates: 8 }");
    }
}
