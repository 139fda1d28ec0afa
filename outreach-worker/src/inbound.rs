//! The inbound SMS webhook: Twilio posts every message sent to the account's numbers here,
//! and a reply that is an opt-out word ([`keywords`]) puts the sender's number on the
//! suppression list at once, for every campaign.
//!
//! A request is believed only with a valid `X-Twilio-Signature` ([`signature`]) for the
//! configured `public_url` and the account's `AccountSid`; anything else is refused (403)
//! and changes nothing. A message that is not an opt-out changes nothing either. Twilio's
//! opt-out handling (Advanced Opt-Out or the default STOP filtering) sends the patient its
//! own confirmation, so the answer is always an empty TwiML `<Response>`: the worker never
//! replies by SMS. A START or HELP is no way back: an opt-out is final here.
//!
//! The number and the text are patient data: they are never logged or counted, the number
//! is stored only as the suppression list's HMAC, and [`Params`] redacts and wipes them.
//! The listener is HTTPS only ([`listener`]).

use std::sync::Arc;

use axum::{
    Form, Router,
    extract::{DefaultBodyLimit, State, rejection::FormRejection},
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::post,
};
use cache_server::config::ConfigError;
use tracing::{debug, error, info, instrument, warn};
use zeroize::{Zeroize, Zeroizing};

use crate::{
    config::{InboundSettings, SmsSettings},
    suppression::{ContactKeys, Suppression},
};

pub mod keywords;
pub mod listener;
pub mod signature;

#[cfg(test)]
mod tests;

/// The largest request body taken (413 beyond): an SMS webhook's form is a few hundred bytes
/// and at most 1,600 characters of text.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The answer to every message taken: TwiML that sends nothing back.
pub const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

/// The header Twilio signs its requests with.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// What became of one request: the `result` label of `outreach_inbound_sms_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An opt-out word: the number is on the suppression list.
    OptOut,
    /// Any other message: nothing done.
    Other,
    /// No valid signature, or another account's: refused (403).
    BadSignature,
    /// Not a usable form, or a field missing or malformed (400, 413, 415).
    BadRequest,
    /// The suppression list could not be written (503).
    Error,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::OptOut => "opt_out",
            Outcome::Other => "other",
            Outcome::BadSignature => "bad_signature",
            Outcome::BadRequest => "bad_request",
            Outcome::Error => "error",
        }
    }

    fn count(self) {
        metrics::counter!("outreach_inbound_sms_total", "result" => self.as_str()).increment(1);
    }
}

/// A request's POST parameters, in the order sent: every one is part of the signature. They
/// hold the sender's number and whatever the patient wrote, so `Debug` shows the names only
/// and the values are wiped when dropped.
pub struct Params(Vec<(String, String)>);

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Params").field(&self.0.iter().map(|(name, _)| name).collect::<Vec<_>>()).finish()
    }
}

impl Drop for Params {
    fn drop(&mut self) {
        for (name, value) in &mut self.0 {
            name.zeroize();
            value.zeroize();
        }
    }
}

impl Params {
    /// The parameters as received.
    pub fn new(params: Vec<(String, String)>) -> Params {
        Params(params)
    }

    /// All of them, for the signature.
    pub fn all(&self) -> &[(String, String)] {
        &self.0
    }

    /// The value of `name`, which must be given exactly once; a 400 naming it otherwise.
    fn one(&self, name: &'static str) -> Result<&str, Refusal> {
        let mut values = self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(value), None) => Ok(value),
            (None, _) => Err(Refusal::bad_request(format!("missing field: {name}"))),
            (Some(_), Some(_)) => Err(Refusal::bad_request(format!("{name}: given more than once"))),
        }
    }
}

/// A request refused: its outcome, status and short message (never a value from it).
#[derive(Debug)]
struct Refusal {
    outcome: Outcome,
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn bad_request(message: String) -> Refusal {
        Refusal { outcome: Outcome::BadRequest, status: StatusCode::BAD_REQUEST, message }
    }

    fn forbidden(message: &str) -> Refusal {
        Refusal { outcome: Outcome::BadSignature, status: StatusCode::FORBIDDEN, message: message.into() }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.outcome.count();
        // A failure of ours was logged as an error where it happened.
        if self.outcome != Outcome::Error {
            warn!(status = self.status.as_u16(), reason = %self.message, "SMS webhook request refused");
        }
        (self.status, self.message).into_response()
    }
}

/// The webhook: the account it belongs to, the address Twilio signs, the suppression list.
pub struct Webhook {
    suppression: Suppression,
    account_sid: String,
    auth_token: Zeroizing<String>,
    public_url: String,
    path: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<secret>")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// The webhook of the `[sms]` account, as `[sms.inbound]` says, writing to `suppression`.
    pub fn new(
        sms: &SmsSettings,
        inbound: &InboundSettings,
        suppression: Suppression,
    ) -> Result<Webhook, ConfigError> {
        Ok(Webhook {
            suppression,
            account_sid: sms.account_sid.clone(),
            auth_token: Zeroizing::new(sms.auth_token.clone()),
            public_url: inbound.public_url.clone(),
            path: inbound.path()?,
        })
    }

    /// `POST {path}`, bodies up to [`BODY_LIMIT`].
    pub fn router(self) -> Router {
        let path = self.path.clone();
        Router::new()
            .route(&path, post(receive))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(Arc::new(self))
    }

    /// Checks the request and, for an opt-out word, suppresses the sender.
    async fn take(&self, headers: &HeaderMap, params: &Params) -> Result<Outcome, Refusal> {
        let signature = headers
            .get(SIGNATURE_HEADER)
            .ok_or_else(|| Refusal::forbidden("missing X-Twilio-Signature"))?
            .to_str()
            .map_err(|_| Refusal::forbidden("invalid X-Twilio-Signature"))?;
        if !signature::verify(&self.auth_token, &self.public_url, params.all(), signature) {
            return Err(Refusal::forbidden("invalid X-Twilio-Signature"));
        }
        if params.one("AccountSid").ok() != Some(self.account_sid.as_str()) {
            return Err(Refusal::forbidden("AccountSid is not this worker's account"));
        }
        let from = params.one("From")?.trim();
        let body = params.one("Body")?;
        if cache_server::validate::phone(from).is_err() {
            return Err(Refusal::bad_request("From: must be a phone number in E.164 form".into()));
        }
        if !keywords::is_opt_out(body) {
            debug!("inbound SMS is not an opt-out; nothing done");
            return Ok(Outcome::Other);
        }
        let contact = ContactKeys { phone: Some(from.to_string()), email: None };
        match self.suppression.add(&contact).await {
            Ok(added) => {
                info!(new = added > 0, "SMS opt-out received; number suppressed");
                Ok(Outcome::OptOut)
            }
            Err(err) => {
                error!(cause = %err, "SMS opt-out not recorded: the suppression list cannot be written");
                Err(Refusal {
                    outcome: Outcome::Error,
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "the opt-out could not be recorded; try again".into(),
                })
            }
        }
    }
}

/// `POST {path}`: one message from Twilio.
#[instrument(name = "sms_webhook", skip_all)]
async fn receive(
    State(hook): State<Arc<Webhook>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(params)) => Params::new(params),
        Err(rejection) => {
            Outcome::BadRequest.count();
            warn!(status = rejection.status().as_u16(), "SMS webhook request refused: not a usable form");
            return rejection.into_response();
        }
    };
    match hook.take(&headers, &params).await {
        Ok(outcome) => {
            outcome.count();
            ([(CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}
