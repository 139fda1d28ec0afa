//! Results from outside the built-in survey: the signed webhook (`POST /results`) that an
//! external survey tool calls, and the one reconciliation step it shares with the CSV
//! import.
//!
//! A request carries two headers:
//!
//! - `X-Bridge-Timestamp`: Unix seconds when it was signed;
//! - `X-Bridge-Signature`: `sha256=` and the hex HMAC-SHA256, under the shared secret, of
//!   the timestamp, a `.`, and the body's bytes.
//!
//! The body is JSON: `{"guid": "...", "answers": {"question id": "option id", ...}}`
//! (a rating may be a number). A timestamp further than `max_skew_seconds` from the
//! bridge's clock is refused, so a captured request cannot be replayed later; within the
//! window, the GUID being single-use refuses a second delivery.

use std::{path::Path, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use cache_server::{
    audit::{Actor, Audit, Event},
    clock::Clock,
    guid::Guid,
};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tracing::error;
use zeroize::Zeroizing;

use crate::{
    db::{Db, DbError, Outcome},
    keys::Keys,
    questionnaire::{AnswerError, Questionnaire},
};

/// The header with the signing time.
pub const TIMESTAMP_HEADER: &str = "x-bridge-timestamp";
/// The header with the signature.
pub const SIGNATURE_HEADER: &str = "x-bridge-signature";

/// The shortest shared secret accepted.
pub const MIN_SECRET_LEN: usize = 32;

/// Where a set of answers came from, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The built-in survey pages.
    Pages,
    /// The results webhook.
    Webhook,
    /// `survey-bridge import`.
    Import,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Pages => "pages",
            Source::Webhook => "webhook",
            Source::Import => "import",
        }
    }
}

/// Why answers were not counted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The GUID is not one.
    #[error("guid: not a GUID")]
    MalformedGuid,
    /// An answer does not fit the questionnaire.
    #[error("answers: {0}")]
    Answers(#[from] AnswerError),
    /// No invitation with this GUID, or its link expired.
    #[error("guid: no invitation with this GUID, or its link has expired")]
    UnknownOrExpired,
    /// The GUID was already used (answered or declined).
    #[error("guid: already answered")]
    AlreadyUsed,
    /// The patient has not agreed on the consent page: answers are taken only after.
    #[error("guid: the patient has not agreed to the survey on its consent page")]
    NoConsent,
    /// The database or the audit log failed; nothing was counted.
    #[error("internal error; nothing was counted")]
    Internal,
}

impl Refusal {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::MalformedGuid | Refusal::Answers(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::UnknownOrExpired => StatusCode::NOT_FOUND,
            Refusal::AlreadyUsed => StatusCode::CONFLICT,
            Refusal::NoConsent => StatusCode::FORBIDDEN,
            Refusal::Internal => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// What reconciliation needs: the ledger, the keys, the questionnaire, time and the audit.
#[derive(Debug, Clone)]
pub struct Reconciler {
    /// The ledger and aggregates.
    pub db: Db,
    /// GUID HMACs.
    pub keys: Arc<Keys>,
    /// What answers are checked against.
    pub questionnaire: Arc<Questionnaire>,
    /// Time.
    pub clock: Clock,
    /// The audit trail.
    pub audit: Arc<Audit>,
}

impl Reconciler {
    /// Takes `answers` (question id, option id) for the invitation `guid` into the answer
    /// pool ([`Db::submit`]): the GUID must be recorded, unexpired, consented and unused, and
    /// each answer fit the questionnaire. Refused GUIDs are audited as HMACs; a response and
    /// a refusal for want of consent are audited without the GUID and with the day only.
    pub async fn reconcile(
        &self,
        guid: &str,
        answers: &[(String, String)],
        source: Source,
    ) -> Result<(), Refusal> {
        let Ok(guid) = guid.trim().parse::<Guid>() else {
            self.audited("GUID_REJECTED", "malformed", None, source)?;
            return Err(Refusal::MalformedGuid);
        };
        let answers = self.questionnaire.check_answers(answers)?;
        let outcome =
            self.db.submit(&self.keys, &self.keys.guid_hmac(&guid), self.clock.now(), &answers).await;
        let (rejected, refusal) = match &outcome {
            Ok(Outcome::Accepted) => (None, None),
            Ok(Outcome::Unknown) => (Some("unknown"), Some(Refusal::UnknownOrExpired)),
            Ok(Outcome::Expired) => (Some("expired"), Some(Refusal::UnknownOrExpired)),
            Ok(Outcome::AlreadyUsed) => (Some("used"), Some(Refusal::AlreadyUsed)),
            Ok(Outcome::NoConsent) => {
                metrics::counter!("bridge_answers_refused_total", "reason" => "no_consent", "source" => source.as_str())
                    .increment(1);
                (None, Some(Refusal::NoConsent))
            }
            Err(err) => {
                error!(cause = %err, "reconciliation failed");
                (None, Some(Refusal::Internal))
            }
        };
        match rejected {
            Some(why) => self.audited("GUID_REJECTED", why, Some(&guid), source)?,
            None => self.audit.record(response_event(&outcome, source)).map_err(|err| {
                error!(cause = %err, "audit write failed");
                Refusal::Internal
            })?,
        }
        refusal.map_or(Ok(()), Err)
    }

    fn audited(
        &self,
        action: &str,
        result: &str,
        guid: Option<&Guid>,
        source: Source,
    ) -> Result<(), Refusal> {
        let mut event = Event::new(action, result, Actor::System);
        event.guid = guid;
        event.detail = Some(source.as_str());
        self.audit.record(event).map_err(|err| {
            error!(cause = %err, "audit write failed");
            Refusal::Internal
        })
    }
}

/// How a submission, a consent or a decline came out, as audit results and metric labels
/// name it.
pub(crate) fn outcome_name(outcome: &Result<Outcome, DbError>) -> &'static str {
    match outcome {
        Ok(Outcome::Accepted) => "ok",
        Ok(Outcome::Unknown) => "unknown",
        Ok(Outcome::Expired) => "expired",
        Ok(Outcome::AlreadyUsed) => "used",
        Ok(Outcome::NoConsent) => "no_consent",
        Err(_) => "internal",
    }
}

/// The audit event of a response (or of answers refused for want of consent): no GUID, and
/// the day only, so that no line places an answer in time beside its invitation's traces.
pub(crate) fn response_event(outcome: &Result<Outcome, DbError>, source: Source) -> Event<'static> {
    let mut event = Event::new("RESPONSE_ACCEPTED", outcome_name(outcome), Actor::System);
    event.detail = Some(source.as_str());
    event.day_only = true;
    event
}

/// The webhook's state.
#[derive(Debug)]
pub struct Webhook {
    /// Reconciliation.
    pub reconciler: Reconciler,
    /// The shared secret.
    pub secret: Zeroizing<Vec<u8>>,
    /// The accepted distance between a request's timestamp and now, in seconds.
    pub max_skew_seconds: i64,
    /// The largest body accepted, in bytes.
    pub max_body_bytes: usize,
}

/// Reads a shared secret: the file's text, surrounding whitespace ignored.
pub fn load_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("webhook.secret_file {}: {e}", path.display()))?,
    );
    let secret = text.trim();
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "webhook.secret_file {}: the secret must be at least {MIN_SECRET_LEN} characters",
            path.display()
        ));
    }
    Ok(Zeroizing::new(secret.as_bytes().to_vec()))
}

/// The signature header value for `body` signed at `timestamp` (Unix seconds) with
/// `secret`, as a survey tool computes it.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Submission {
    guid: String,
    answers: serde_json::Map<String, serde_json::Value>,
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Why a request was refused before its body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthorized {
    /// The reason for the audit log: `unsigned`, `malformed`, `bad_signature` or `stale`.
    pub reason: &'static str,
    /// The message for the caller.
    pub message: &'static str,
}

/// Checks a request's [`TIMESTAMP_HEADER`] and [`SIGNATURE_HEADER`] values (none when
/// absent) against `body` and `secret`, and the timestamp against `now` (Unix seconds):
/// the signature first, so that only the secret's holder learns about time.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    max_skew_seconds: i64,
) -> Result<(), Unauthorized> {
    let refuse = |reason, message| Err(Unauthorized { reason, message });
    let Some(timestamp) = timestamp else {
        return refuse("unsigned", "X-Bridge-Timestamp is missing");
    };
    let Ok(timestamp) = timestamp.trim().parse::<i64>() else {
        return refuse("malformed", "X-Bridge-Timestamp must be Unix seconds");
    };
    let Some(signature) = signature else {
        return refuse("unsigned", "X-Bridge-Signature is missing");
    };
    let Some(given) = signature.trim().strip_prefix("sha256=").and_then(|hex| hex::decode(hex).ok()) else {
        return refuse("malformed", "X-Bridge-Signature must be sha256=<hex>");
    };
    if mac(secret, timestamp, body).verify_slice(&given).is_err() {
        return refuse("bad_signature", "X-Bridge-Signature does not match the body");
    }
    // abs_diff: `now - timestamp` overflows for timestamps near i64::MIN.
    if now.abs_diff(timestamp) > u64::try_from(max_skew_seconds).unwrap_or(0) {
        return refuse(
            "stale",
            "X-Bridge-Timestamp is outside the accepted window (a replay, or a clock that is off)",
        );
    }
    Ok(())
}

/// A webhook body that cannot be counted; the messages quote at most 120 characters of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON of the expected shape (refused and audited as `malformed`).
    #[error("body must be JSON {{\"guid\", \"answers\"}}: {0}")]
    Malformed(String),
    /// An answer, under this question id, is neither a string nor a whole number.
    #[error("answers.{0}: must be a string or a whole number")]
    Answer(String),
}

/// The GUID and the (question id, option id) pairs of a webhook body; a whole-number
/// answer becomes its decimal text.
pub fn parse_submission(body: &[u8]) -> Result<(String, Vec<(String, String)>), BodyError> {
    let submission: Submission =
        serde_json::from_slice(body).map_err(|err| BodyError::Malformed(clip(&err.to_string())))?;
    let mut answers = Vec::with_capacity(submission.answers.len());
    for (question, value) in submission.answers {
        let option = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) if n.is_u64() => n.to_string(),
            _ => return Err(BodyError::Answer(clip(&question))),
        };
        answers.push((question, option));
    }
    Ok((submission.guid, answers))
}

impl Webhook {
    /// Refuses an unsigned, badly signed or stale request.
    fn authenticate(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Unauthorized> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        verify(
            &self.secret,
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            body,
            self.reconciler.clock.now().as_second(),
            self.max_skew_seconds,
        )
    }

    fn refused(&self, reason: &str, response: Response) -> Response {
        let mut event = Event::new("WEBHOOK_REFUSED", reason, Actor::System);
        event.detail = Some("webhook");
        match self.reconciler.audit.record(event) {
            Ok(()) => response,
            Err(err) => {
                error!(cause = %err, "audit write failed");
                json_error(StatusCode::SERVICE_UNAVAILABLE, "internal error; nothing was counted")
            }
        }
    }
}

/// `POST /results`.
pub async fn receive(State(hook): State<Arc<Webhook>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(Unauthorized { reason, message }) = hook.authenticate(&headers, &body) {
        return hook.refused(reason, json_error(StatusCode::UNAUTHORIZED, message));
    }
    let (guid, answers) = match parse_submission(&body) {
        Ok(submission) => submission,
        Err(err @ BodyError::Malformed(_)) => {
            return hook.refused("malformed", json_error(StatusCode::UNPROCESSABLE_ENTITY, &err.to_string()));
        }
        Err(err @ BodyError::Answer(_)) => {
            return json_error(StatusCode::UNPROCESSABLE_ENTITY, &err.to_string());
        }
    };
    match hook.reconciler.reconcile(&guid, &answers, Source::Webhook).await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "status": "accepted" }))).into_response(),
        Err(refusal) => json_error(refusal.status(), &refusal.to_string()),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_timestamp_and_body() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let a = sign(secret, 100, b"{}");
        assert!(a.starts_with("sha256="));
        assert_eq!(a.len(), 7 + 64);
        assert_ne!(a, sign(secret, 101, b"{}"));
        assert_ne!(a, sign(secret, 100, b"{ }"));
        assert_ne!(a, sign(b"another secret of thirty-two chars", 100, b"{}"));
        // The timestamp and the body are separated, so moving digits between them changes
        // the signature.
        assert_ne!(sign(secret, 1, b"0{}"), sign(secret, 10, b"{}"));
    }

    fn verify_at(secret: &[u8], timestamp: i64, now: i64) -> Result<(), Unauthorized> {
        let signature = sign(secret, timestamp, b"{}");
        verify(secret, Some(&timestamp.to_string()), Some(&signature), b"{}", now, 300)
    }

    // Found by the webhook fuzz target: a signed timestamp near i64::MIN overflowed the skew
    // arithmetic (a panic with overflow checks; without them, `now - 2^63` wrapped to a
    // skew of i64::MIN and passed the window).
    #[test]
    fn timestamps_at_the_ends_of_i64_are_stale_not_a_panic() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let now = 1_795_600_000;
        for timestamp in [i64::MIN, i64::MIN + 1, now - (1 << 62) - (1 << 62), i64::MAX, -now] {
            assert_eq!(verify_at(secret, timestamp, now).unwrap_err().reason, "stale", "{timestamp}");
        }
        assert_eq!(verify_at(secret, now - 300, now), Ok(()));
        assert_eq!(verify_at(secret, now + 300, now), Ok(()));
        assert_eq!(verify_at(secret, now + 301, now).unwrap_err().reason, "stale");
    }

    #[test]
    fn bodies_are_read_or_refused_by_kind() {
        let (guid, answers) =
            parse_submission(br#"{"guid": "g", "answers": {"overall": 9, "timely": "often"}}"#).unwrap();
        assert_eq!(guid, "g");
        assert_eq!(answers, [("overall".into(), "9".into()), ("timely".into(), "often".into())]);
        assert!(matches!(parse_submission(b"{\"guid\": 5}"), Err(BodyError::Malformed(_))));
        assert!(matches!(
            parse_submission(br#"{"guid": "g", "answers": {}, "x": 1}"#),
            Err(BodyError::Malformed(_))
        ));
        assert_eq!(
            parse_submission(br#"{"guid": "g", "answers": {"overall": -1}}"#),
            Err(BodyError::Answer("overall".into()))
        );
        let long = format!(r#"{{"guid": "g", "answers": {{"{}": null}}}}"#, "q".repeat(500));
        assert_eq!(parse_submission(long.as_bytes()), Err(BodyError::Answer("q".repeat(120))));
    }
}
