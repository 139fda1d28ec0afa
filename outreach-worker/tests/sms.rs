//! The SMS client against a local stand-in for the Twilio Messages API.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Form, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine;
use outreach_worker::sms::{RetryPolicy, SendOutcome, Sender, SmsClient, SmsConfig, SmsMessage};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token";
const FROM: &str = "+15145550000";
const TO: &str = "+15145550100";
const BODY: &str = "Comment s'est passée votre visite ? https://s.example/3f2a";

/// A stand-in that checks each request and answers from a script, then with `fallback`.
#[derive(Clone, Default)]
struct Twilio {
    script: Arc<Mutex<VecDeque<(StatusCode, String)>>>,
    fallback: Arc<Mutex<Option<(StatusCode, String)>>>,
    seen: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

async fn messages(
    State(twilio): State<Twilio>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let expected =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}")));
    if sid != SID || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, r#"{"code":20003,"message":"Authenticate","status":401}"#)
            .into_response();
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    assert_eq!(form.get("To").map(String::as_str), Some(TO));
    assert_eq!(form.get("From").map(String::as_str), Some(FROM));
    assert_eq!(form.get("Body").map(String::as_str), Some(BODY));
    twilio.seen.lock().unwrap().push(form);
    let next = twilio.script.lock().unwrap().pop_front();
    let (status, body) = next.or_else(|| twilio.fallback.lock().unwrap().clone()).unwrap_or((
        StatusCode::CREATED,
        format!(r#"{{"sid":"SM{:032}","status":"queued"}}"#, twilio.seen.lock().unwrap().len()),
    ));
    (status, [("content-type", "application/json")], body).into_response()
}

fn error(code: u32, status: u16) -> (StatusCode, String) {
    (
        StatusCode::from_u16(status).unwrap(),
        format!(
            r#"{{"code":{code},"message":"error {code}","more_info":"https://www.twilio.com/docs/errors/{code}","status":{status}}}"#
        ),
    )
}

async fn start(twilio: Twilio, max_attempts: u32) -> SmsClient {
    start_with(twilio, max_attempts, TOKEN).await
}

async fn start_with(twilio: Twilio, max_attempts: u32, token: &str) -> SmsClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app =
        Router::new().route("/2010-04-01/Accounts/{sid}/Messages.json", post(messages)).with_state(twilio);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = SmsConfig {
        base_url: format!("http://{addr}/"),
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
    assert_eq!(twilio.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn too_many_requests_then_success() {
    let twilio = Twilio::default();
    twilio.script.lock().unwrap().push_back(error(20429, 429));
    let client = start(twilio.clone(), 3).await;
    let outcome = client.send(&message()).await;
    assert!(matches!(outcome, SendOutcome::Sent(_)), "{outcome:?}");
    assert_eq!(twilio.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn unavailable_until_attempts_run_out_is_retry_later() {
    let twilio = Twilio::default();
    *twilio.fallback.lock().unwrap() = Some((StatusCode::SERVICE_UNAVAILABLE, String::new()));
    let client = start(twilio.clone(), 4).await;
    let outcome = client.send(&message()).await;
    assert_eq!(outcome, SendOutcome::Retry { status: Some(503), attempts: 4 });
    assert_eq!(twilio.seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn invalid_number_fails_for_good_without_retry() {
    let twilio = Twilio::default();
    twilio.script.lock().unwrap().push_back(error(21211, 400));
    let client = start(twilio.clone(), 3).await;
    let outcome = client.send(&message()).await;
    assert_eq!(outcome, SendOutcome::FailedPermanent { status: 400, code: Some(21211) });
    assert_eq!(twilio.seen.lock().unwrap().len(), 1);
    let shown = format!("{outcome:?} {client:?}");
    assert!(!shown.contains(TO) && !shown.contains("visite") && !shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn unsubscribed_recipient_is_suppressed() {
    let twilio = Twilio::default();
    twilio.script.lock().unwrap().push_back(error(21610, 400));
    let client = start(twilio.clone(), 3).await;
    assert_eq!(client.send(&message()).await, SendOutcome::Suppressed);
    assert_eq!(twilio.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn other_client_errors_fail_for_good_with_their_code() {
    let twilio = Twilio::default();
    twilio.script.lock().unwrap().push_back(error(21408, 400));
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
    assert!(twilio.seen.lock().unwrap().is_empty());
}
