//! The patient pages: consent, the built-in survey, and the outcomes; the unsubscribe page
//! (`/u/{guid}`) is in [`crate::unsubscribe`], and [`crate::routes`] puts them together.
//!
//! A link is `/s/{guid}`. Nothing about the patient is in it but the GUID, and the pages
//! keep it from leaking: no referrer, no third-party anything, no cookies (form tokens
//! instead). Client addresses are used only for the in-memory guessing throttle, never
//! stored or logged.

// Handlers return early with a finished response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use axum::{
    Form, Router,
    extract::{Path, Query, Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use cache_server::{
    audit::{Actor, Audit, Event},
    clock::Clock,
    guid::Guid,
    throttle::Throttle,
};
use serde::Deserialize;
use tracing::error;

use crate::{
    client::{self, Client, HasTrustedProxies, TrustedProxies},
    config::{CampaignConfig, SiteConfig},
    db::{Db, Invitation, Outcome, State as LinkState},
    html::{self, Message},
    keys::Keys,
    questionnaire::{Lang, Questionnaire},
    results::{self, outcome_name},
};

/// What the pages need.
#[derive(Debug)]
pub struct Pages {
    /// The ledger and aggregates.
    pub db: Db,
    /// GUID HMACs and form tokens.
    pub keys: Arc<Keys>,
    /// The built-in survey.
    pub questionnaire: Arc<Questionnaire>,
    /// Per-campaign settings.
    pub campaigns: BTreeMap<String, CampaignConfig>,
    /// Per-site clinic identity.
    pub sites: BTreeMap<String, SiteConfig>,
    /// Time.
    pub clock: Clock,
    /// The audit trail.
    pub audit: Arc<Audit>,
    /// Bad link look-ups per client address and link prefix ([`crate::client`]).
    pub guesses: Throttle<(IpAddr, u32)>,
    /// Whose word about the client is believed.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// Wakes the outbox when a decline queues an opt-out.
    pub wake: Arc<tokio::sync::Notify>,
}

type Shared = Arc<Pages>;

impl HasTrustedProxies for Pages {
    fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }
}

/// The consent and survey pages, the stylesheet and the page of every unknown path, on the
/// pages' state; [`crate::routes`] puts the bridge's routes together.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/s/{guid}", get(consent))
        .route("/s/{guid}/consent", axum::routing::post(consent_answer))
        .route("/s/{guid}/survey", get(survey).post(survey_answer))
        .route("/assets/site.css", get(css))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { page(StatusCode::NOT_FOUND, Lang::En, Message::NotOpen) })
}

/// The content security policy of a bridge without external surveys.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The content security policy: [`CSP`], with the origins of the campaigns' external
/// surveys allowed as form targets (the consent form redirects there).
pub fn csp(campaigns: &BTreeMap<String, CampaignConfig>) -> String {
    let mut origins: Vec<String> = campaigns
        .values()
        .filter_map(|c| c.external_url.as_deref())
        .filter_map(|url| {
            let uri = url.replace("{guid}", "g").parse::<axum::http::Uri>().ok()?;
            Some(format!("https://{}", uri.authority()?))
        })
        .collect();
    origins.sort();
    origins.dedup();
    if origins.is_empty() {
        return CSP.to_string();
    }
    CSP.replace("form-action 'self'", &format!("form-action 'self' {}", origins.join(" ")))
}

pub async fn security_headers(State(csp): State<HeaderValue>, request: Request, next: Next) -> Response {
    // The patient pages send no referrer at all (their addresses hold GUIDs); the reports
    // send one to the bridge itself only, so that their forms carry a real `Origin`.
    let path = request.uri().path();
    let portal = ["/login", "/logout", "/reports"].iter().any(|p| path.starts_with(p));
    let referrer = if portal { html::PORTAL_REFERRER_POLICY } else { "no-referrer" };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    for (name, value) in [
        (header::REFERRER_POLICY, referrer),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], html::SITE_CSS)
}

/// A message page with `status`.
pub(crate) fn page(status: StatusCode, lang: Lang, message: Message) -> Response {
    (status, Html(html::message_page(lang, message))).into_response()
}

/// `?lang=` on a page's address.
#[derive(Debug, Deserialize)]
pub(crate) struct LangQuery {
    /// `en` or `fr`; anything else is ignored.
    pub(crate) lang: Option<String>,
}

/// A link found in the ledger and unexpired: its GUID, invitation and state, and the page
/// language.
pub(crate) struct Link {
    /// The GUID.
    pub(crate) guid: Guid,
    /// Its invitation.
    pub(crate) inv: Invitation,
    /// Where the invitation is in its life.
    pub(crate) state: LinkState,
    /// The page language: the one asked for, else the invitation's.
    pub(crate) lang: Lang,
}

impl Pages {
    /// Records `event`, or the 503 to answer when the audit log cannot be written.
    pub(crate) fn audit(&self, event: Event<'_>) -> Result<(), Response> {
        self.audit.record(event).map_err(|err| {
            error!(cause = %err, "audit write failed; refusing the request");
            (StatusCode::SERVICE_UNAVAILABLE, "the service is unavailable; please try again later")
                .into_response()
        })
    }

    /// A link that cannot be what was asked for (malformed, unknown): audited, and counted
    /// toward the client's guessing throttle.
    fn rejected(
        &self,
        (ip, bucket): (IpAddr, u32),
        guid: Option<&Guid>,
        why: &'static str,
        lang: Lang,
        message: Message,
    ) -> Response {
        self.guesses.record_failure(&(ip, bucket));
        self.refused(guid, why, lang, message)
    }

    /// A link refused for what it is (`why`): audited and answered with the neutral page.
    /// A link that exists (expired, answered, declined) is no guess, so it is not held
    /// against the client: a patient who opens it again, or several patients behind one
    /// address, are not locked out; and all three look the same to whoever holds the link.
    fn refused(&self, guid: Option<&Guid>, why: &'static str, lang: Lang, message: Message) -> Response {
        metrics::counter!("bridge_links_refused_total", "reason" => why).increment(1);
        let mut event = Event::new("GUID_REJECTED", why, Actor::System);
        event.guid = guid;
        if let Err(response) = self.audit(event) {
            return response;
        }
        not_open(lang, message)
    }

    /// Looks up the link `text`, in any state: a GUID recorded and unexpired, or the page to
    /// show instead. Malformed and unknown links count toward the guessing throttle, and
    /// while a client is blocked nothing is looked up.
    pub(crate) async fn look_up(&self, ip: IpAddr, text: &str, lang: Option<&str>) -> Result<Link, Response> {
        let asked = lang.and_then(Lang::parse);
        let fallback = asked.unwrap_or(Lang::En);
        let key = (ip, client::bucket(text));
        if self.guesses.is_blocked(&key) {
            metrics::counter!("bridge_links_refused_total", "reason" => "throttled").increment(1);
            return Err(page(StatusCode::TOO_MANY_REQUESTS, fallback, Message::TooManyAttempts));
        }
        let Ok(guid) = text.parse::<Guid>() else {
            return Err(self.rejected(key, None, "malformed", fallback, Message::NotOpen));
        };
        let found = self.db.invitation(&self.keys.guid_hmac(&guid)).await.map_err(|err| {
            error!(cause = %err, "ledger read failed");
            page(StatusCode::SERVICE_UNAVAILABLE, fallback, Message::NotOpen)
        })?;
        let Some((inv, state)) = found else {
            return Err(self.rejected(key, Some(&guid), "unknown", fallback, Message::NotOpen));
        };
        let lang = asked.or(Lang::parse(&inv.language)).unwrap_or(Lang::En);
        if self.clock.now().as_second() >= inv.expires_at {
            return Err(self.refused(Some(&guid), "expired", lang, Message::NotOpen));
        }
        Ok(Link { guid, inv, state, lang })
    }

    /// Opens the link `/s/{text}`: an unexpired GUID neither answered nor declined, or the
    /// neutral page to show instead.
    async fn open(&self, ip: IpAddr, text: &str, lang: Option<&str>) -> Result<Link, Response> {
        let link = self.look_up(ip, text, lang).await?;
        match link.state {
            LinkState::Invited | LinkState::Consented => Ok(link),
            LinkState::Responded => Err(self.refused(Some(&link.guid), "used", link.lang, Message::NotOpen)),
            LinkState::Declined => {
                Err(self.refused(Some(&link.guid), "declined", link.lang, Message::NotOpen))
            }
        }
    }

    /// Opens the link `/s/{text}` for the survey: as [`Pages::open`], and the patient must
    /// have agreed on the consent page; if not, the consent page is where they go.
    async fn open_consented(&self, ip: IpAddr, text: &str, lang: Option<&str>) -> Result<Link, Response> {
        let link = self.open(ip, text, lang).await?;
        if link.state != LinkState::Consented {
            metrics::counter!("bridge_links_refused_total", "reason" => "no_consent").increment(1);
            return Err(
                Redirect::to(&format!("/s/{}?lang={}", link.guid, link.lang.as_str())).into_response()
            );
        }
        Ok(link)
    }
}

/// The one page of a link that is not open, whatever the reason.
fn not_open(lang: Lang, message: Message) -> Response {
    page(StatusCode::NOT_FOUND, lang, message)
}

/// The `href` of a page's language switch.
pub(crate) fn switch_href(lang: Lang) -> String {
    format!("?lang={}", lang.other().as_str())
}

async fn consent(
    State(pages): State<Shared>,
    Client(client): Client,
    Path(guid): Path<String>,
    Query(query): Query<LangQuery>,
) -> Response {
    let link = match pages.open(client, &guid, query.lang.as_deref()).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    let csrf = pages.keys.csrf(&link.inv.guid_hmac, "consent");
    let action = format!("/s/{}/consent", link.guid);
    let title = pages.questionnaire.title.get(link.lang);
    let clinic = pages.sites.get(&link.inv.site_id);
    Html(html::consent_page(link.lang, title, clinic, &action, &csrf, &switch_href(link.lang)))
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ConsentForm {
    csrf: String,
    choice: String,
    lang: Option<String>,
}

async fn consent_answer(
    State(pages): State<Shared>,
    Client(client): Client,
    Path(guid): Path<String>,
    Form(form): Form<ConsentForm>,
) -> Response {
    let link = match pages.open(client, &guid, form.lang.as_deref()).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    if !pages.keys.csrf_ok(&link.inv.guid_hmac, "consent", &form.csrf) {
        return page(StatusCode::FORBIDDEN, link.lang, Message::NotOpen);
    }
    match form.choice.as_str() {
        "agree" => {
            // Recorded before anything else: the survey, here or elsewhere, opens only after.
            let outcome = pages.db.consent(&link.inv.guid_hmac, pages.clock.now()).await;
            let mut event = Event::new("CONSENT_GIVEN", outcome_name(&outcome), Actor::System);
            event.guid = Some(&link.guid);
            if let Err(response) = pages.audit(event) {
                return response;
            }
            match outcome {
                Ok(Outcome::Accepted) => {
                    metrics::counter!("bridge_consents_total", "choice" => "agree").increment(1);
                }
                Ok(_) => return not_open(link.lang, Message::NotOpen),
                Err(err) => {
                    error!(cause = %err, "consent failed");
                    return page(StatusCode::SERVICE_UNAVAILABLE, link.lang, Message::NotOpen);
                }
            }
            match pages.campaigns.get(&link.inv.campaign_id).and_then(|c| c.external_url.as_deref()) {
                // The GUID is the only patient-specific part of the external address.
                Some(template) => {
                    Redirect::to(&template.replace("{guid}", &link.guid.to_string())).into_response()
                }
                None => Redirect::to(&format!("/s/{}/survey?lang={}", link.guid, link.lang.as_str()))
                    .into_response(),
            }
        }
        "decline" => {
            let outcome =
                pages.db.decline(&link.guid.to_string(), &link.inv.guid_hmac, pages.clock.now()).await;
            pages.wake.notify_one();
            metrics::counter!("bridge_consents_total", "choice" => "decline").increment(1);
            let mut event = Event::new("OPT_OUT", outcome_name(&outcome), Actor::System);
            event.guid = Some(&link.guid);
            if let Err(response) = pages.audit(event) {
                return response;
            }
            match outcome {
                Ok(Outcome::Accepted) => page(StatusCode::OK, link.lang, Message::Declined),
                Ok(_) => not_open(link.lang, Message::NotOpen),
                Err(err) => {
                    error!(cause = %err, "decline failed");
                    page(StatusCode::SERVICE_UNAVAILABLE, link.lang, Message::NotOpen)
                }
            }
        }
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "choice must be agree or decline").into_response(),
    }
}

async fn survey(
    State(pages): State<Shared>,
    Client(client): Client,
    Path(guid): Path<String>,
    Query(query): Query<LangQuery>,
) -> Response {
    let link = match pages.open_consented(client, &guid, query.lang.as_deref()).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    let csrf = pages.keys.csrf(&link.inv.guid_hmac, "survey");
    let action = format!("/s/{}/survey", link.guid);
    Html(html::survey_page(link.lang, &pages.questionnaire, &action, &csrf, &[])).into_response()
}

/// The fields of a posted survey: the form token, the page language, the language switch,
/// and the answers (question id, option id), the latter still to be checked against the
/// questionnaire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SurveyForm {
    /// The form token (the last `csrf` field; empty when there is none).
    pub csrf: String,
    /// The last `lang` field, if any.
    pub lang: Option<String>,
    /// The last `switch` field, if any: the language switch was pressed, not the send button.
    pub switch: Option<String>,
    /// Every other field, in order.
    pub answers: Vec<(String, String)>,
}

impl SurveyForm {
    /// Sorts a decoded form body's fields.
    pub fn from_fields(fields: Vec<(String, String)>) -> SurveyForm {
        let mut form = SurveyForm::default();
        for (name, value) in fields {
            match name.as_str() {
                "csrf" => form.csrf = value,
                "lang" => form.lang = Some(value),
                "switch" => form.switch = Some(value),
                _ => form.answers.push((name, value)),
            }
        }
        form
    }
}

async fn survey_answer(
    State(pages): State<Shared>,
    Client(client): Client,
    Path(guid): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let SurveyForm { csrf, lang, switch, answers } = SurveyForm::from_fields(fields);
    // The language switch asks for the page again in its language: it wins over `lang`.
    let link = match pages.open_consented(client, &guid, switch.as_deref().or(lang.as_deref())).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    if !pages.keys.csrf_ok(&link.inv.guid_hmac, "survey", &csrf) {
        return page(StatusCode::FORBIDDEN, link.lang, Message::NotOpen);
    }
    if switch.is_some() {
        // Not a submission: the same page in the other language, what was ticked still
        // ticked (unknown pairs simply tick nothing), nothing checked, stored or audited.
        let action = format!("/s/{}/survey", link.guid);
        let body = html::survey_page(link.lang, &pages.questionnaire, &action, &csrf, &answers);
        return Html(body).into_response();
    }
    let answers = match pages.questionnaire.check_answers(&answers) {
        Ok(answers) => answers,
        Err(err) => {
            let body = html::message_page_with_detail(link.lang, Message::BadAnswers, Some(&err.to_string()));
            return (StatusCode::UNPROCESSABLE_ENTITY, Html(body)).into_response();
        }
    };
    let outcome = pages.db.submit(&pages.keys, &link.inv.guid_hmac, pages.clock.now(), &answers).await;
    metrics::counter!("bridge_responses_total", "result" => outcome_name(&outcome)).increment(1);
    if let Err(response) = pages.audit(results::response_event(&outcome, results::Source::Pages)) {
        return response;
    }
    match outcome {
        Ok(Outcome::Accepted) => page(StatusCode::OK, link.lang, Message::Thanks),
        Ok(_) => not_open(link.lang, Message::NotOpen),
        Err(err) => {
            error!(cause = %err, "submission failed");
            page(StatusCode::SERVICE_UNAVAILABLE, link.lang, Message::NotOpen)
        }
    }
}
