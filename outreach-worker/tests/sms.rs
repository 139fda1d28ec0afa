//! The SMS client against a local stand-in for the Twilio Messages API.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::twilio::{FROM, SID, Seen, TOKEN, Twilio, error};
use outreach_worker::sms::{RetryPolicy, SendOutcome, Sender, SmsClient, SmsConfig, SmsMessage};

const TO: &str = "+16139990100";
const BODY: &str = "Comment s'est passée votre visite ? https://s.example/3f2a";

/// Every request the stand-in took carried the message as it was given.
fn assert_form(seen: &[Seen]) {
    for s in seen {
        assert_eq!((s.to.as_str(), s.from.as_str(), s.body.as_str()), (TO, FROM, BODY));
    }
}

async fn start(twilio: Twilio, max_attempts: u32) -> SmsClient {
    start_with(twilio, max_attempts, TOKEN).await
}

async fn start_with(twilio: Twilio, max_attempts: u32, token: &str) -> SmsClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base_url = twilio.start().await;
    let config = SmsConfig {
        base_url: format!("{base_url}/"),
        account_sid: SID.into(),
        auth_token: token.into(),
        sender: Sender::From(FROM.into()),
        retry: RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
    };
    SmsClient::new(reqwest::Client::builder().build().unwrap(), config)
}

fn message() -> SmsMessage {
    SmsMessage { to: TO.into(), body: BODY.into() }
}

#[tokio::test]
async fn success_returns_the_message_sid() {
    let twilio = Twilio::default();
    let client = start(twilio.clone(), 3).await;
    let outcome = client.send(&message()).await;
    assert_eq!(outcome, SendOutcome::Sent(format!("SM{:032}", 1)));
    assert_eq!(twilio.seen().len(), 1);
    assert_form(&twilio.seen());
}

#[tokio::test]
async fn too_many_requests_then_success() {
    let twilio = Twilio::default();
    twilio.script(TO, [error(20429, 429)]);
    let client = start(twilio.clone(), 3).await;
    let outcome = client.send(&message()).await;
    assert!(matches!(outcome, SendOutcome::Sent(_)), "{outcome:?}");
    assert_eq!(twilio.seen().len(), 2);
    assert_form(&twilio.seen());
}

#[tokio::test]
async fn unavailable_until_attempts_run_out_is_retry_later() {
    let twilio = Twilio::default();
    twilio.script(TO, (0..4).map(|_| error(20503, 503)));
    let client = start(twilio.clone(), 4).await;
    let outcome = client.send(&message()).await;
    assert_eq!(outcome, SendOutcome::Retry { status: Some(503), attempts: 4 });
    assert_eq!(twilio.seen().len(), 4);
    assert_form(&twilio.seen());
}

#[tokio::test]
async fn no_attempt_is_made_once_the_window_for_sending_has_closed() {
    let twilio = Twilio::default();
    twilio.script(TO, [error(20503, 503)]);
    let client = start(twilio.clone(), 4).await;
    // Open for the first attempt only: the retry is not made.
    let mut open = [true].into_iter();
    let outcome = client.send_within(&message(), || open.next().unwrap_or(false)).await;
    assert_eq!(outcome, SendOutcome::Held);
    assert_eq!(twilio.seen().len(), 1);
    // Closed from the start: nothing reaches the provider.
    assert_eq!(client.send_within(&message(), || false).await, SendOutcome::Held);
    assert_eq!(twilio.seen().len(), 1);
}

#[tokio::test]
async fn invalid_number_fails_for_good_without_retry() {
    let twilio = Twilio::default();
    twilio.script(TO, [error(21211, 400)]);
    let client = start(twilio.clone(), 3).await;
    let outcome = client.send(&message()).await;
    assert_eq!(outcome, SendOutcome::FailedPermanent { status: 400, code: Some(21211) });
    assert_eq!(twilio.seen().len(), 1);
    let shown = format!("{outcome:?} {client:?}");
    assert!(!shown.contains(TO) && !shown.contains("visite") && !shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn unsubscribed_recipient_is_suppressed() {
    let twilio = Twilio::default();
    twilio.script(TO, [error(21610, 400)]);
    let client = start(twilio.clone(), 3).await;
    assert_eq!(client.send(&message()).await, SendOutcome::Suppressed);
    assert_eq!(twilio.seen().len(), 1);
}

#[tokio::test]
async fn other_client_errors_fail_for_good_with_their_code() {
    let twilio = Twilio::default();
    twilio.script(TO, [error(21408, 400)]);
    let client = start(twilio.clone(), 3).await;
    assert_eq!(
        client.send(&message()).await,
        SendOutcome::FailedPermanent { status: 400, code: Some(21408) }
    );
}

#[tokio::test]
async fn wrong_credentials_fail_for_good() {
    let twilio = Twilio::default();
    let client = start_with(twilio.clone(), 3, "wrong-token").await;
    assert_eq!(
        client.send(&message()).await,
        SendOutcome::FailedPermanent { status: 401, code: Some(20003) }
    );
    assert!(twilio.seen().is_empty());
}
