//! The patient pages as HTML: server-rendered, no JavaScript, no third-party assets, no
//! inline styles (the content security policy allows only `/assets/site.css`). Every piece
//! of text that is not a literal here is escaped.

use std::fmt::Write;

use crate::{
    config::SiteConfig,
    questionnaire::{Kind, Lang, Questionnaire},
};

/// The stylesheet served at `/assets/site.css`.
pub const SITE_CSS: &str = include_str!("../assets/site.css");

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The outcome pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// The answers were received.
    Thanks,
    /// The patient declined: no more invitations.
    Declined,
    /// A link that cannot be used: malformed, unknown, expired, answered or declined. One
    /// page for all, so that it tells nobody holding the link what became of it.
    NotOpen,
    /// Some answers were refused.
    BadAnswers,
    /// Too many bad links from this client.
    TooManyAttempts,
    /// The patient unsubscribed: no more messages from this service.
    Unsubscribed,
}

/// `en` or `fr`, by `lang`.
pub fn tr(lang: Lang, en: &'static str, fr: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Fr => fr,
    }
}

fn message_text(lang: Lang, message: Message) -> (&'static str, &'static str) {
    match message {
        Message::Thanks => (
            tr(lang, "Thank you", "Merci"),
            tr(
                lang,
                "Your answers were received. They will be combined with those of other patients to improve care.",
                "Vos réponses ont bien été reçues. Elles seront combinées à celles d'autres patients pour améliorer les soins.",
            ),
        ),
        Message::Declined => (
            tr(lang, "You declined", "Vous avez refusé"),
            tr(
                lang,
                "You will not receive any more messages from this service, for this survey or any other.",
                "Vous ne recevrez plus aucun message de ce service, pour ce sondage ni pour un autre.",
            ),
        ),
        Message::NotOpen => (
            tr(lang, "This link is no longer open", "Ce lien n'est plus ouvert"),
            tr(
                lang,
                "This survey link can no longer be used. If you have a question, please contact your clinic.",
                "Ce lien de sondage ne peut plus être utilisé. Pour toute question, veuillez communiquer avec votre clinique.",
            ),
        ),
        Message::BadAnswers => (
            tr(lang, "Some answers could not be accepted", "Certaines réponses n'ont pas pu être acceptées"),
            tr(lang, "Please go back and try again.", "Veuillez revenir en arrière et réessayer."),
        ),
        Message::TooManyAttempts => (
            tr(lang, "Too many attempts", "Trop de tentatives"),
            tr(lang, "Please try again later.", "Veuillez réessayer plus tard."),
        ),
        Message::Unsubscribed => (
            tr(lang, "You are unsubscribed", "Votre désabonnement est confirmé"),
            tr(
                lang,
                "This service will not send you any more messages, for this survey or any other.",
                "Ce service ne vous enverra plus aucun message, ni pour ce sondage ni pour aucun autre.",
            ),
        ),
    }
}

/// The start of a patient page, up to the opening of `<main>`: no referrer at all (its
/// address holds the GUID).
pub fn head(lang: Lang, title: &str) -> String {
    head_with(lang, title, "no-referrer")
}

/// The start of a page of the reports: referrers to the bridge itself only
/// ([`PORTAL_REFERRER_POLICY`]).
pub fn portal_head(lang: Lang, title: &str) -> String {
    head_with(lang, title, PORTAL_REFERRER_POLICY)
}

/// The reports' referrer policy: none to other sites, and to the bridge itself the whole
/// address, so that a browser's form posts carry the bridge's `Origin` rather than `null`
/// (which `no-referrer` makes them send), and `Origin: null` can be refused as what it
/// otherwise is: a form from a page of no origin, such as a sandboxed frame.
pub const PORTAL_REFERRER_POLICY: &str = "same-origin";

fn head_with(lang: Lang, title: &str, referrer: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"{referrer}\">\n<title>{}</title>\n\
         <link rel=\"stylesheet\" href=\"/assets/site.css\">\n</head>\n<body>\n<main>\n",
        lang.as_str(),
        escape(title)
    )
}

/// The end of a page.
pub const FOOT: &str = "</main>\n</body>\n</html>\n";

/// The other language's name, in that language.
fn other_label(lang: Lang) -> &'static str {
    match lang.other() {
        Lang::En => "English",
        Lang::Fr => "Français",
    }
}

fn switch(lang: Lang, switch_href: &str) -> String {
    let label = other_label(lang);
    format!(
        "<p class=\"lang\"><a href=\"{}\" hreflang=\"{}\" lang=\"{}\">{label}</a></p>\n",
        escape(switch_href),
        lang.other().as_str(),
        lang.other().as_str()
    )
}

/// The consent page: who asks (the invitation's clinic when `[sites]` names it, else "your
/// clinic"), what the survey is, and agree or decline.
pub fn consent_page(
    lang: Lang,
    title: &str,
    clinic: Option<&SiteConfig>,
    action: &str,
    csrf: &str,
    switch_href: &str,
) -> String {
    let mut page = head(lang, title);
    page.push_str(&switch(lang, switch_href));
    let asks = match clinic {
        Some(site) => format!(
            "{} {}",
            escape(&site.name),
            tr(
                lang,
                "would like to know about your recent visit.",
                "aimerait connaître votre avis sur votre visite récente."
            )
        ),
        None => tr(
            lang,
            "Your clinic would like to know about your recent visit.",
            "Votre clinique aimerait connaître votre avis sur votre visite récente.",
        )
        .to_owned(),
    };
    let _ = write!(
        page,
        "<h1>{}</h1>\n<p>{asks} {}</p>\n<p>{}</p>\n\
         <form method=\"post\" action=\"{}\">\n<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
         <input type=\"hidden\" name=\"lang\" value=\"{}\">\n<div class=\"actions\">\n\
         <button class=\"primary\" type=\"submit\" name=\"choice\" value=\"agree\">{}</button>\n\
         <button class=\"secondary\" type=\"submit\" name=\"choice\" value=\"decline\">{}</button>\n\
         </div>\n</form>\n",
        escape(title),
        tr(
            lang,
            "The survey is voluntary and anonymous: your answers are combined with those of other patients and are never linked to you.",
            "Le sondage est facultatif et anonyme : vos réponses sont combinées à celles d'autres patients et ne sont jamais associées à vous.",
        ),
        tr(
            lang,
            "If you decline, you will not receive any more messages from this service, for this survey or any other.",
            "Si vous refusez, vous ne recevrez plus aucun message de ce service, pour ce sondage ni pour un autre.",
        ),
        escape(action),
        escape(csrf),
        lang.as_str(),
        tr(lang, "Take the survey", "Répondre au sondage"),
        tr(lang, "No, thank you", "Non merci"),
    );
    if let Some(contact) = clinic.and_then(|site| site.contact.as_deref()) {
        let _ = writeln!(
            page,
            "<p class=\"clinic\">{} {}</p>",
            tr(lang, "Questions about this survey:", "Des questions sur ce sondage :"),
            escape(contact)
        );
    }
    page.push_str(FOOT);
    page
}

/// The unsubscribe page: what unsubscribing does, and one button that posts the form.
pub fn unsubscribe_page(lang: Lang, action: &str, csrf: &str, switch_href: &str) -> String {
    let title = tr(lang, "Unsubscribe", "Se désabonner");
    let mut page = head(lang, title);
    page.push_str(&switch(lang, switch_href));
    let _ = write!(
        page,
        "<h1>{title}</h1>\n<p>{}</p>\n<p>{}</p>\n\
         <form method=\"post\" action=\"{}\">\n<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
         <input type=\"hidden\" name=\"lang\" value=\"{}\">\n<div class=\"actions\">\n\
         <button class=\"primary\" type=\"submit\">{}</button>\n</div>\n</form>\n",
        tr(
            lang,
            "If you unsubscribe, this service will not send you any more messages, for this survey or any other. This is final.",
            "Si vous vous désabonnez, ce service ne vous enverra plus aucun message, ni pour ce sondage ni pour aucun autre. Ce choix est définitif.",
        ),
        tr(
            lang,
            "Nothing changes unless you press the button below.",
            "Rien ne change tant que vous n'appuyez pas sur le bouton ci-dessous.",
        ),
        escape(action),
        escape(csrf),
        lang.as_str(),
        tr(lang, "Unsubscribe", "Me désabonner"),
    );
    page.push_str(FOOT);
    page
}

/// The built-in survey: one fieldset per question, radios with labels; the options in
/// `ticked` (question id, option id) come ticked.
///
/// Its language switch is a button of the form (not a link), posting what is ticked so far
/// with `switch`: the page comes back in the other language with the same answers ticked,
/// and nothing is sent.
pub fn survey_page(
    lang: Lang,
    questionnaire: &Questionnaire,
    action: &str,
    csrf: &str,
    ticked: &[(String, String)],
) -> String {
    let title = questionnaire.title.get(lang);
    let mut page = head(lang, title);
    let other = lang.other();
    let _ = writeln!(
        page,
        "<p class=\"lang\"><button type=\"submit\" form=\"survey\" name=\"switch\" value=\"{}\" \
         formnovalidate lang=\"{}\">{}</button></p>",
        other.as_str(),
        other.as_str(),
        other_label(lang)
    );
    let _ = write!(
        page,
        "<h1>{}</h1>\n<p>{}</p>\n<form id=\"survey\" method=\"post\" action=\"{}\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n<input type=\"hidden\" name=\"lang\" value=\"{}\">\n",
        escape(title),
        escape(questionnaire.intro.get(lang)),
        escape(action),
        escape(csrf),
        lang.as_str()
    );
    for question in &questionnaire.questions {
        let marker = if question.required {
            format!(" <span class=\"required\">{}</span>", tr(lang, "(required)", "(obligatoire)"))
        } else {
            String::new()
        };
        let _ = write!(page, "<fieldset>\n<legend>{}{marker}</legend>\n", escape(question.text.get(lang)));
        let rating = question.kind == Kind::Rating;
        if rating {
            page.push_str("<div class=\"rating\">\n");
        }
        for choice in &question.options {
            let id = format!("{}-{}", question.id, choice.id);
            let checked = ticked.iter().any(|(q, o)| *q == question.id && *o == choice.id);
            let _ = writeln!(
                page,
                "<div class=\"choice\"><input type=\"radio\" id=\"{}\" name=\"{}\" value=\"{}\"{}{}>\
                 <label for=\"{}\">{}</label></div>",
                escape(&id),
                escape(&question.id),
                escape(&choice.id),
                if question.required { " required" } else { "" },
                if checked { " checked" } else { "" },
                escape(&id),
                escape(choice.label.get(lang)),
            );
        }
        if rating {
            let _ = write!(
                page,
                "</div>\n<p class=\"ends\"><span>0 = {}</span><span>10 = {}</span></p>\n",
                tr(lang, "worst", "les pires"),
                tr(lang, "best", "les meilleurs")
            );
        }
        page.push_str("</fieldset>\n");
    }
    let _ = write!(
        page,
        "<div class=\"actions\"><button class=\"primary\" type=\"submit\">{}</button></div>\n</form>\n",
        tr(lang, "Send my answers", "Envoyer mes réponses")
    );
    page.push_str(FOOT);
    page
}

/// A plain page with a heading and one paragraph, for outcomes.
pub fn message_page(lang: Lang, message: Message) -> String {
    message_page_with_detail(lang, message, None)
}

/// [`message_page`] with one more line, e.g. which answer was refused.
pub fn message_page_with_detail(lang: Lang, message: Message, detail: Option<&str>) -> String {
    let (heading, text) = message_text(lang, message);
    let mut page = head(lang, heading);
    let _ = write!(page, "<h1>{heading}</h1>\n<p>{text}</p>\n");
    if let Some(detail) = detail {
        let _ = writeln!(page, "<p class=\"error\">{}</p>", escape(detail));
    }
    page.push_str(FOOT);
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_handles_the_five() {
        assert_eq!(escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    fn no_outside_resources(page: &str) {
        assert!(!page.contains("<script"));
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("style="));
    }

    #[test]
    fn consent_page_has_language_token_and_both_choices() {
        let page = consent_page(Lang::Fr, "Titre", None, "/s/x/consent", "tok", "?lang=en");
        assert!(page.contains("<html lang=\"fr\">"));
        assert!(page.contains("name=\"csrf\" value=\"tok\""));
        assert!(page.contains("value=\"agree\"") && page.contains("value=\"decline\""));
        assert!(page.contains("English"));
        assert!(page.contains("Votre clinique aimerait"), "no [sites] entry: the generic words");
        no_outside_resources(&page);
    }

    #[test]
    fn consent_page_names_the_clinic_and_its_contact_escaped() {
        let site =
            SiteConfig { name: "Clinique <Soleil>".into(), contact: Some("613-999-0150 & soleil".into()) };
        for (lang, asks, questions) in [
            (
                Lang::En,
                "Clinique &lt;Soleil&gt; would like to know",
                "Questions about this survey: 613-999-0150 &amp; soleil",
            ),
            (
                Lang::Fr,
                "Clinique &lt;Soleil&gt; aimerait connaître",
                "Des questions sur ce sondage : 613-999-0150 &amp; soleil",
            ),
        ] {
            let page = consent_page(lang, "T", Some(&site), "/s/x/consent", "tok", "?");
            assert!(page.contains(asks), "{page}");
            assert!(page.contains(questions), "{page}");
            assert!(!page.contains("Your clinic") && !page.contains("Votre clinique"));
        }
        let unnamed = SiteConfig { name: "Clinique Soleil".into(), contact: None };
        let page = consent_page(Lang::En, "T", Some(&unnamed), "/s/x/consent", "tok", "?");
        assert!(!page.contains("class=\"clinic\""));
    }

    #[test]
    fn unsubscribe_page_has_one_button_and_a_token() {
        for (lang, button) in [(Lang::En, "Unsubscribe"), (Lang::Fr, "Me désabonner")] {
            let page = unsubscribe_page(lang, "/u/x", "tok", "?lang=x");
            assert!(page.contains(&format!("<html lang=\"{}\">", lang.as_str())));
            assert!(page.contains("method=\"post\" action=\"/u/x\""));
            assert!(page.contains("name=\"csrf\" value=\"tok\""));
            assert_eq!(page.matches("<button").count(), 1);
            assert!(page.contains(button));
            no_outside_resources(&page);
        }
        let page = message_page(Lang::Fr, Message::Unsubscribed);
        assert!(page.contains("aucun message"));
    }

    #[test]
    fn survey_page_labels_every_radio() {
        let q = Questionnaire::builtin();
        for lang in [Lang::En, Lang::Fr] {
            let page = survey_page(lang, &q, "/s/x/survey", "tok", &[]);
            assert_eq!(page.matches("<fieldset>").count(), q.questions.len());
            let radios = page.matches("type=\"radio\"").count();
            assert_eq!(radios, q.questions.iter().map(|q| q.options.len()).sum::<usize>());
            assert_eq!(page.matches("<label for=").count(), radios);
            no_outside_resources(&page);
        }
        assert!(survey_page(Lang::Fr, &q, "/", "t", &[]).contains("Envoyer mes réponses"));
    }

    #[test]
    fn the_survey_pages_language_switch_posts_the_form_and_keeps_what_is_ticked() {
        let q = Questionnaire::builtin();
        let first = &q.questions[0];
        let ticked = vec![(first.id.clone(), first.options[1].id.clone())];
        let page = survey_page(Lang::En, &q, "/s/x/survey", "tok", &ticked);
        assert!(page.contains("<form id=\"survey\""));
        assert!(page.contains("form=\"survey\" name=\"switch\" value=\"fr\" formnovalidate"), "{page}");
        assert_eq!(page.matches(" checked").count(), 1);
        let id = format!("id=\"{}-{}\"", first.id, first.options[1].id);
        let line = page.lines().find(|l| l.contains(&id)).unwrap();
        assert!(line.contains(" checked>"), "{line}");
        // Unknown pairs tick nothing.
        let odd = vec![(first.id.clone(), "nope".to_owned()), ("nope".to_owned(), "1".to_owned())];
        assert!(!survey_page(Lang::Fr, &q, "/", "t", &odd).contains(" checked"));
    }

    #[test]
    fn questionnaire_text_is_escaped() {
        let mut q = Questionnaire::builtin();
        q.questions[0].text.en = "<script>alert(1)</script>".into();
        let page = survey_page(Lang::En, &q, "/", "t", &[]);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
    }
}
