//! SMS over the Twilio Messages REST wire format: a form POST to
//! `{base_url}/2010-04-01/Accounts/{sid}/Messages.json` with basic auth, classified into a
//! [`SendOutcome`].
//!
//! 429 and 5xx answers and transport failures are retried with capped, jittered
//! exponential backoff; when the attempts run out the outcome is [`SendOutcome::Retry`],
//! for the caller to ack as RETRY_AT. Twilio error codes 21211 and 21614 (not a valid
//! mobile number) and any other 4xx are [`SendOutcome::FailedPermanent`]; 21610 (the
//! recipient replied STOP) is [`SendOutcome::Suppressed`].
//!
//! Neither the phone number nor the body ever appears in an outcome, an error or a log line.

mod outbox;
mod segments;

use std::time::Duration;

use rand::{TryRng, rngs::SysRng};
use reqwest::StatusCode;
use serde::Deserialize;
use tracing::{debug, warn};

pub use outbox::SmsOutbox;
pub use segments::{Encoding, segments};

/// The account and endpoint SMS are sent through.
#[derive(Clone)]
pub struct SmsConfig {
    /// The API's base URL, e.g. `https://api.twilio.com` (no trailing slash needed).
    pub base_url: String,
    /// The account SID: the basic-auth user and part of the path.
    pub account_sid: String,
    /// The auth token: the basic-auth password.
    pub auth_token: String,
    /// Who the message is from.
    pub sender: Sender,
    /// How failures are retried.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for SmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<secret>")
            .field("sender", &self.sender)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Who a message is from: a number of ours, or a messaging service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// `From`: one of the account's numbers.
    From(String),
    /// `MessagingServiceSid`: a messaging service, which picks the number.
    MessagingService(String),
}

/// A capped, jittered exponential backoff: attempt `n` (from 1) waits a random time in
/// `[d/2, d]` where `d = min(base * 2^(n-1), cap)`, or the server's `Retry-After` when that is
/// longer, still capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
    /// The wait after the first failure, before jitter.
    pub base_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (from 1), given the server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.base_delay.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.max_delay);
        let jittered = capped / 2 + capped.mul_f64(jitter_fraction() / 2.0);
        jittered.max(retry_after.unwrap_or_default()).min(self.max_delay)
    }
}

/// A random fraction in `[0, 1]`; 1 when the system RNG fails (no jitter, full wait).
fn jitter_fraction() -> f64 {
    SysRng.try_next_u64().map(|n| (n >> 11) as f64 / (1u64 << 53) as f64).unwrap_or(1.0)
}

/// One SMS to send. Its `Debug` shows neither the number nor the body.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsMessage {
    /// The recipient, E.164.
    pub to: String,
    /// The text.
    pub body: String,
}

impl std::fmt::Debug for SmsMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsMessage").field("to", &"<redacted>").field("body", &"<redacted>").finish()
    }
}

/// What sending one SMS came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted (201), with the message SID.
    Sent(String),
    /// Still failing when the attempts ran out (429, 5xx or transport): try again later.
    Retry {
        /// The last HTTP status, if any answer came.
        status: Option<u16>,
        /// How many attempts were made.
        attempts: u32,
    },
    /// Refused for good: the number is invalid, or another 4xx.
    FailedPermanent {
        /// The HTTP status.
        status: u16,
        /// Twilio's error code, when the answer had one.
        code: Option<u32>,
    },
    /// The recipient has unsubscribed (21610): add them to the suppression list.
    Suppressed,
    /// Not sent: the caller's window for sending had closed when an attempt was due (see
    /// [`SmsClient::send_within`]). Any attempt before it failed; try again when it opens.
    Held,
}

/// Twilio error codes: not a valid phone number, not a mobile number.
const INVALID_NUMBER: [u32; 2] = [21211, 21614];
/// Twilio error code: the recipient replied STOP.
const UNSUBSCRIBED: u32 = 21610;

/// Twilio's error body.
#[derive(Debug, Deserialize)]
struct ApiError {
    code: Option<u32>,
}

/// Twilio's message resource, as far as needed.
#[derive(Debug, Deserialize)]
struct MessageResource {
    sid: String,
}

/// An SMS client.
#[derive(Debug, Clone)]
pub struct SmsClient {
    http: reqwest::Client,
    config: SmsConfig,
    url: String,
}

impl SmsClient {
    /// A client sending through `config` with `http` (which must not follow redirects
    /// to other hosts with the credentials; reqwest's default policy strips them).
    pub fn new(http: reqwest::Client, config: SmsConfig) -> SmsClient {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            config.base_url.trim_end_matches('/'),
            config.account_sid
        );
        SmsClient { http, config, url }
    }

    /// Sends `message`, retrying as the policy says.
    pub async fn send(&self, message: &SmsMessage) -> SendOutcome {
        self.send_within(message, || true).await
    }

    /// Sends `message`, retrying as the policy says, but makes each attempt, the first
    /// included, only if `may_send` still says yes right before it: a retry's wait can
    /// outlast the window in which the message may go out. [`SendOutcome::Held`] when it
    /// says no.
    pub async fn send_within(&self, message: &SmsMessage, mut may_send: impl FnMut() -> bool) -> SendOutcome {
        let max = self.config.retry.max_attempts.max(1);
        let mut last_status = None;
        for attempt in 1..=max {
            if !may_send() {
                debug!(attempt, "sms not sent: its window closed before the attempt");
                return SendOutcome::Held;
            }
            let retry_after = match self.attempt(message).await {
                Attempt::Done(outcome) => return outcome,
                Attempt::Again { status, retry_after } => {
                    last_status = status;
                    retry_after
                }
            };
            if attempt < max {
                let wait = self.config.retry.delay(attempt, retry_after);
                debug!(attempt, status = ?last_status, ?wait, "sms send failed, retrying");
                tokio::time::sleep(wait).await;
            }
        }
        warn!(attempts = max, status = ?last_status, "sms send still failing, giving up for now");
        SendOutcome::Retry { status: last_status, attempts: max }
    }

    async fn attempt(&self, message: &SmsMessage) -> Attempt {
        let sender = match &self.config.sender {
            Sender::From(number) => ("From", number.as_str()),
            Sender::MessagingService(sid) => ("MessagingServiceSid", sid.as_str()),
        };
        let form = [("To", message.to.as_str()), sender, ("Body", message.body.as_str())];
        let sent = self
            .http
            .post(&self.url)
            .basic_auth(&self.config.account_sid, Some(&self.config.auth_token))
            .form(&form)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                // reqwest errors may name the URL (no contact data in it), never the form.
                warn!(cause = %err.without_url(), "sms request failed");
                return Attempt::Again { status: None, retry_after: None };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        classify(status, &body, retry_after)
    }
}

/// One attempt's result.
#[derive(Debug)]
enum Attempt {
    Done(SendOutcome),
    Again { status: Option<u16>, retry_after: Option<Duration> },
}

fn classify(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Attempt {
    if status.is_success() {
        return match serde_json::from_slice::<MessageResource>(body) {
            Ok(resource) => Attempt::Done(SendOutcome::Sent(resource.sid)),
            Err(_) => {
                warn!(status = status.as_u16(), "sms accepted without a message sid");
                Attempt::Done(SendOutcome::Sent(String::new()))
            }
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Attempt::Again { status: Some(status.as_u16()), retry_after };
    }
    let code = serde_json::from_slice::<ApiError>(body).ok().and_then(|e| e.code);
    match code {
        Some(UNSUBSCRIBED) => Attempt::Done(SendOutcome::Suppressed),
        Some(c) if INVALID_NUMBER.contains(&c) => {
            Attempt::Done(SendOutcome::FailedPermanent { status: status.as_u16(), code })
        }
        _ => {
            warn!(status = status.as_u16(), ?code, "sms refused");
            Attempt::Done(SendOutcome::FailedPermanent { status: status.as_u16(), code })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_is_jittered_and_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100), "{d1:?}");
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400), "{d3:?}");
            assert!(p.delay(30, None) <= Duration::from_millis(1000));
            assert_eq!(p.delay(1, Some(Duration::from_secs(60))), Duration::from_millis(1000));
        }
    }

    #[test]
    fn classifies_twilio_answers() {
        let ok = classify(StatusCode::CREATED, br#"{"sid":"SM123","status":"queued"}"#, None);
        assert!(matches!(ok, Attempt::Done(SendOutcome::Sent(ref s)) if s == "SM123"));
        let err = |code: u32| format!(r#"{{"code":{code},"message":"m","more_info":"i","status":400}}"#);
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, err(21614).as_bytes(), None),
            Attempt::Done(SendOutcome::FailedPermanent { status: 400, code: Some(21614) })
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, err(21610).as_bytes(), None),
            Attempt::Done(SendOutcome::Suppressed)
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, b"not json", None),
            Attempt::Done(SendOutcome::FailedPermanent { status: 401, code: None })
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, b"", None),
            Attempt::Again { status: Some(502), .. }
        ));
    }

    #[test]
    fn debug_redacts() {
        let m = SmsMessage { to: "+16139990100".into(), body: "Bonjour Ana".into() };
        let shown = format!("{m:?}");
        assert!(!shown.contains("5145550100") && !shown.contains("Ana"), "{shown}");
    }
}
