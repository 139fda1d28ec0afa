//! A STOP reply is heard at once: the worker's inbound SMS webhook, served by `app::run` on
//! its real HTTPS listener, takes a patient's reply from the Twilio stand-in (signed as
//! Twilio signs it) and puts the number on the suppression list, so that a later contact
//! with that phone is acked SUPPRESSED and never sent. Against a real cache-server and
//! survey-bridge on one manual clock, as in `tests/worker.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{
    tier::{Tier, contact},
    twilio::{self, Signed, deliver, inbound_form, reply},
};
use outreach_worker::{
    app::{self, Listeners, StartError},
    config::InboundSettings,
    suppression::{Suppression, SuppressionKey},
};
use proto::v1::GetContactRequest;
use reqwest::StatusCode;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::Code;

/// Patients: the 613-999-01xx block used in the examples.
const PHONE: &str = "+16139990141";
const PHONE2: &str = "+16139990142";
const PHONE3: &str = "+16139990143";
const PHONE4: &str = "+16139990144";
const PHONE5: &str = "+16139990145";
const PHONE6: &str = "+16139990146";

/// What the webhook answers to every message it takes, as Twilio reads it.
const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

/// The worker, run by `app::run` with its webhook on a loopback port.
struct Running {
    /// The webhook's public URL, as configured at "Twilio" (with a query string, which
    /// Twilio signs too).
    url: String,
    /// A client that trusts the test CA and reaches the webhook's port as `localhost`.
    http: reqwest::Client,
    database_url: String,
    key_file: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), StartError>>,
}

impl Running {
    /// Starts the worker against `tier`, with `[sms.inbound]` on 127.0.0.1:0.
    async fn start(tier: &Tier) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("https://localhost:{}/sms/inbound?clinic=soleil", addr.port());
        let mut config = tier.worker_config("w.db");
        config.worker.poll_seconds = 1;
        config.sms.as_mut().unwrap().inbound = Some(InboundSettings {
            listen: addr,
            public_url: url.clone(),
            // A server certificate of the test CA for localhost.
            tls_cert: tier.path("survey-bridge.pem"),
            tls_key: tier.path("survey-bridge.key"),
        });
        let (database_url, key_file) = (config.database_url.clone(), config.key_file.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let listeners = Listeners { metrics: None, inbound: Some(listener) };
        let task = tokio::spawn(app::run(config, tier.clock.clone(), listeners, async {
            let _ = rx.await;
        }));
        let http = test_support::https_client(&tier.path("ca.pem"), addr);
        let running = Running { url, http, database_url, key_file, stop: Some(tx), task };
        // Up once the route answers (a GET: 405, and nothing counted).
        wait_for("the webhook", async || {
            running
                .http
                .get(&running.url)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::METHOD_NOT_ALLOWED)
        })
        .await;
        running
    }

    /// The suppression list the worker writes, opened beside it.
    async fn suppression(&self) -> Suppression {
        let key = SuppressionKey::load(&self.key_file).unwrap();
        Suppression::connect(&self.database_url, key).await.unwrap()
    }

    /// Stops the worker as SIGTERM does and waits for `run` to return.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let result = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
        result.expect("the worker stops").unwrap().unwrap();
    }
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn gone(tier: &Tier, guid: &str) -> bool {
    let request = GetContactRequest { guid: guid.into() };
    tier.client("outreach").await.get_contact(request).await.is_err_and(|s| s.code() == Code::NotFound)
}

/// Asserts that `response` is Twilio's "message taken, nothing to send back".
async fn assert_taken(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), StatusCode::OK, "{what}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/xml"), "{what}: {content_type}");
    assert_eq!(response.text().await.unwrap(), EMPTY_TWIML, "{what}");
}

/// Collects this thread's log lines (the tests run on a current-thread runtime, so the
/// worker's tasks log here too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_stop_reply_suppresses_the_number_for_a_later_contact_in_another_campaign() {
    cache_server::telemetry::install_recorder();
    let tier = Tier::start().await;
    let worker = Running::start(&tier).await;

    // The patient replies STOP to an invitation of campaign c-1.
    assert_taken(reply(&worker.http, &worker.url, PHONE, "STOP").await, "STOP").await;

    // Their clinic pushes them again for campaign c-2, beside a patient who never opted out.
    let mut later = contact(PHONE, "", "en");
    later.campaign_id = "c-2".into();
    let later = tier.put(later).await;
    let control = tier.put(contact(PHONE2, "", "en")).await;
    wait_for("the worker to handle both", async || tier.entries().await == 0).await;
    assert!(tier.twilio.accepted_to(PHONE).is_empty(), "the patient who replied STOP was sent an invitation");
    assert_eq!(tier.twilio.seen().len(), 1, "only the other patient is sent anything");
    assert_eq!(tier.twilio.accepted_to(PHONE2).len(), 1);
    assert!(gone(&tier, &later).await, "acked SUPPRESSED: erased");
    assert_eq!(tier.answered(&later).await, None, "and never recorded as invited");
    assert!(gone(&tier, &control).await);

    let metrics = cache_server::telemetry::render_metrics();
    assert!(metrics.contains(r#"outreach_inbound_sms_total{result="opt_out"}"#), "{metrics}");
    let suppressed = metrics.lines().any(|l| {
        l.starts_with("outreach_contacts_total{")
            && l.contains(r#"campaign="c-2""#)
            && l.contains(r#"outcome="suppressed""#)
    });
    assert!(suppressed, "{metrics}");
    assert!(!metrics.contains(&PHONE[2..]), "{metrics}");

    // The webhook stops with the worker.
    let (http, url) = (worker.http.clone(), worker.url.clone());
    worker.stop().await;
    let after = http.post(&url).form(&inbound_form(PHONE3, "STOP")).send().await;
    assert!(after.is_err(), "the webhook still answers after shutdown: {after:?}");
}

#[tokio::test]
async fn french_opt_out_words_suppress_and_other_replies_change_nothing() {
    let tier = Tier::start().await;
    let worker = Running::start(&tier).await;
    let list = worker.suppression().await;

    assert_taken(reply(&worker.http, &worker.url, PHONE, "aRRÊt. \n").await, "Arrêt").await;
    assert!(list.is_suppressed(Some(PHONE), None).await.unwrap(), "suppressed at once");
    assert_taken(reply(&worker.http, &worker.url, PHONE2, "Désabonner").await, "Désabonner").await;
    assert!(list.is_suppressed(Some(PHONE2), None).await.unwrap());

    for (phone, body) in
        [(PHONE3, "START"), (PHONE4, "HELP"), (PHONE5, "Please stop sending me these messages"), (PHONE6, "")]
    {
        assert_taken(reply(&worker.http, &worker.url, phone, body).await, body).await;
        assert!(!list.is_suppressed(Some(phone), None).await.unwrap(), "{body:?} suppressed the number");
    }
    // START is no way back.
    assert_taken(reply(&worker.http, &worker.url, PHONE, "START").await, "START").await;
    assert!(list.is_suppressed(Some(PHONE), None).await.unwrap(), "an opt-out is final");
    assert_eq!(list.len().await.unwrap(), 2);
    list.close().await;
    worker.stop().await;
}

#[tokio::test]
async fn unsigned_missigned_or_foreign_requests_are_refused_and_suppress_nothing() {
    cache_server::telemetry::install_recorder();
    let tier = Tier::start().await;
    let worker = Running::start(&tier).await;
    let (http, url) = (&worker.http, worker.url.as_str());
    let stop = || inbound_form(PHONE, "STOP");
    let without_query = url.split('?').next().unwrap().to_string();
    let another_host = url.replace("localhost", "127.0.0.1");
    // 20 bytes, base64: a well-formed signature that is not Twilio's.
    let forged = "AAECAwQFBgcICQoLDA0ODxAREhM=".to_string();
    let refused = [
        ("no signature", Signed::Not),
        ("a forged signature", Signed::Header(forged)),
        ("not base64", Signed::Header("not a signature".into())),
        ("another token", Signed::WithToken("another-auth-token".into())),
        ("the URL without its query", Signed::ForUrl(without_query)),
        ("another host", Signed::ForUrl(another_host)),
    ];
    for (what, signed) in refused {
        let response = deliver(http, url, &stop(), signed).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}");
        let text = response.text().await.unwrap();
        assert!(text.contains("X-Twilio-Signature"), "{what}: {text}");
    }
    // Signed rightly, but a message of another account.
    let mut foreign = stop();
    foreign.iter_mut().find(|(name, _)| name == "AccountSid").unwrap().1 =
        "AC99999999999999999999999999999999".into();
    let response = deliver(http, url, &foreign, Signed::Rightly).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("AccountSid"));
    // A parameter changed after signing.
    let mut form = stop();
    let signature = twilio::twilio_signature(twilio::TOKEN, url, &form);
    form.iter_mut().find(|(name, _)| name == "From").unwrap().1 = PHONE2.into();
    let response = deliver(http, url, &form, Signed::Header(signature)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "From changed after signing");

    // Signed rightly, but without From or Body: 400 naming the field.
    for field in ["From", "Body"] {
        let mut form = stop();
        form.retain(|(name, _)| name != field);
        let response = deliver(http, url, &form, Signed::Rightly).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{field}");
        let text = response.text().await.unwrap();
        assert!(text.contains(field), "{field}: {text}");
    }
    let mut not_a_number = stop();
    not_a_number.iter_mut().find(|(name, _)| name == "From").unwrap().1 = "whatsapp:+16139990141".into();
    let response = deliver(http, url, &not_a_number, Signed::Rightly).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("From"));
    // Not a form, or too large.
    let json = http
        .post(url)
        .header("x-twilio-signature", "x")
        .json(&serde_json::json!({"Body": "STOP"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = inbound_form(PHONE, &"STOP ".repeat(4_000));
    let response = deliver(http, url, &huge, Signed::Rightly).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let list = worker.suppression().await;
    assert!(list.is_empty().await.unwrap(), "a refused request suppressed a number");
    let metrics = cache_server::telemetry::render_metrics();
    for result in ["bad_signature", "bad_request"] {
        assert!(
            metrics.contains(&format!(r#"outreach_inbound_sms_total{{result="{result}"}}"#)),
            "{metrics}"
        );
    }
    // The same STOP, signed rightly, is taken.
    assert_taken(reply(http, url, PHONE, "STOP").await, "STOP").await;
    assert_eq!(list.len().await.unwrap(), 1);
    list.close().await;
    worker.stop().await;
}

#[tokio::test]
async fn the_worker_logs_neither_the_number_nor_the_text_of_a_reply() {
    cache_server::telemetry::install_recorder();
    let (logs, _guard) = Logs::capture();
    let tier = Tier::start().await;
    let worker = Running::start(&tier).await;
    let (http, url) = (&worker.http, worker.url.as_str());
    let bodies = [(PHONE, "Stop."), (PHONE2, "Arrêtez"), (PHONE3, "My knee still hurts since the visit")];
    for (phone, body) in bodies {
        assert_taken(reply(http, url, phone, body).await, body).await;
    }
    let forged = Signed::Header("AAECAwQFBgcICQoLDA0ODxAREhM=".into());
    let response = deliver(http, url, &inbound_form(PHONE4, "Unsubscribe me"), forged).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // The suppression list cannot be written: 503, so that the reply is not lost silently.
    let list = worker.suppression().await;
    assert_eq!(list.len().await.unwrap(), 2);
    list.close().await;
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&worker.database_url).await.unwrap();
    sqlx::query("DROP TABLE suppressions").execute(&db).await.unwrap();
    db.close().await;
    let response = reply(http, url, PHONE5, "QUIT").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let metrics = cache_server::telemetry::render_metrics();
    assert!(metrics.contains(r#"outreach_inbound_sms_total{result="error"}"#), "{metrics}");
    worker.stop().await;

    let log = logs.text();
    assert!(log.contains("SMS opt-out received; number suppressed"), "{log}");
    assert!(log.contains("SMS webhook request refused"), "{log}");
    assert!(log.contains("the suppression list cannot be written"), "{log}");
    for phone in [PHONE, PHONE2, PHONE3, PHONE4, PHONE5] {
        let digits = &phone[1..];
        for form in
            [phone, digits, &digits[1..], &format!("{}-{}-{}", &digits[1..4], &digits[4..7], &digits[7..])]
        {
            assert!(!log.contains(form), "{form} in the logs:\n{log}");
        }
    }
    for (_, body) in bodies {
        assert!(!log.contains(body), "{body:?} in the logs:\n{log}");
    }
    for text in ["Unsubscribe me", "knee", "Arrêt", "ARRETEZ", "QUIT"] {
        assert!(!log.contains(text), "{text:?} in the logs:\n{log}");
    }
}
