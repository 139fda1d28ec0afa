//! A local stand-in for the Twilio Messages API: checks the account and credentials,
//! records every message, and answers from a per-recipient script (201 with a SID
//! otherwise). It also plays Twilio delivering a patient's reply to a webhook ([`reply`],
//! [`deliver`]), signed as Twilio documents it. Nothing outside this machine is contacted.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
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
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The account the stand-in accepts.
pub const SID: &str = "AC0123456789abcdef0123456789abcdef";
/// Its auth token.
pub const TOKEN: &str = "test-auth-token";
/// The sender number the worker is configured with.
pub const FROM: &str = "+16139990000";

/// One message the stand-in took (whatever it answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub to: String,
    pub from: String,
    pub body: String,
    /// The HTTP status the stand-in answered.
    pub status: u16,
}

/// Scripted answers by recipient.
type Scripts = HashMap<String, VecDeque<(StatusCode, String)>>;

/// Called with each message's recipient before the stand-in answers it.
type Hook = Box<dyn FnMut(&str) + Send>;

/// The stand-in's state; clones share it.
#[derive(Clone, Default)]
pub struct Twilio {
    scripts: Arc<Mutex<Scripts>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    delay: Arc<Mutex<Duration>>,
    hook: Arc<Mutex<Option<Hook>>>,
}

/// A Twilio error answer.
pub fn error(code: u32, status: u16) -> (StatusCode, String) {
    (
        StatusCode::from_u16(status).unwrap(),
        format!(
            r#"{{"code":{code},"message":"error {code}","more_info":"https://www.twilio.com/docs/errors/{code}","status":{status}}}"#
        ),
    )
}

impl Twilio {
    /// Starts the stand-in on a loopback port; returns its base URL.
    pub async fn start(&self) -> String {
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(messages))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    /// The next answers for messages to `to`, in order.
    pub fn script(&self, to: &str, answers: impl IntoIterator<Item = (StatusCode, String)>) {
        self.scripts.lock().unwrap().entry(to.to_string()).or_default().extend(answers);
    }

    /// Makes every answer wait `delay`.
    pub fn slow_down(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Calls `hook` with the recipient of every message, before it is answered: a test can
    /// move its clock while the sender waits for the answer.
    pub fn on_message(&self, hook: impl FnMut(&str) + Send + 'static) {
        *self.hook.lock().unwrap() = Some(Box::new(hook));
    }

    /// Every message taken so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The messages to `to` that were accepted (201).
    pub fn accepted_to(&self, to: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.to == to && s.status == 201).collect()
    }
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
    let delay = *twilio.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let to = field("To");
    if let Some(hook) = twilio.hook.lock().unwrap().as_mut() {
        hook(&to);
    }
    let next = twilio.scripts.lock().unwrap().get_mut(&to).and_then(VecDeque::pop_front);
    let mut seen = twilio.seen.lock().unwrap();
    let (status, body) = next.unwrap_or((
        StatusCode::CREATED,
        format!(r#"{{"sid":"SM{:032}","status":"queued"}}"#, seen.len() + 1),
    ));
    seen.push(Seen { to, from: field("From"), body: field("Body"), status: status.as_u16() });
    (status, [("content-type", "application/json")], body).into_response()
}

/// The form Twilio posts to a number's "A message comes in" webhook for one SMS from `from`
/// saying `body`, to the worker's number ([`FROM`]) of the stand-in's account: the fields
/// of its Messaging webhook, a new message SID each time, no media.
pub fn inbound_form(from: &str, body: &str) -> Vec<(String, String)> {
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    [
        ("ToCountry", "CA"),
        ("ToState", "ON"),
        ("SmsMessageSid", sid.as_str()),
        ("NumMedia", "0"),
        ("ToCity", "OTTAWA"),
        ("FromZip", ""),
        ("SmsSid", sid.as_str()),
        ("FromState", "ON"),
        ("SmsStatus", "received"),
        ("FromCity", "OTTAWA"),
        ("Body", body),
        ("FromCountry", "CA"),
        ("To", FROM),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", sid.as_str()),
        ("AccountSid", SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect()
}

/// `X-Twilio-Signature` for a POST of `form` to `url` under `token`, as Twilio's "Validating
/// requests" page describes it, written here apart from the worker's code: the URL, then
/// every field sorted by name (and value), name and value with no delimiters; HMAC-SHA1;
/// base64.
pub fn twilio_signature(token: &str, url: &str, form: &[(String, String)]) -> String {
    let mut fields: Vec<(&str, &str)> =
        form.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    fields.sort_unstable();
    let mut data = String::from(url);
    for (name, value) in fields {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// How a delivery is signed.
#[derive(Debug, Clone)]
pub enum Signed {
    /// As Twilio signs it: the stand-in's token, the webhook's URL.
    Rightly,
    /// With the stand-in's token, for another URL.
    ForUrl(String),
    /// With another token, for the webhook's URL.
    WithToken(String),
    /// This header value, whatever it is.
    Header(String),
    /// No `X-Twilio-Signature` at all.
    Not,
}

/// Plays Twilio posting `form` to the webhook at `url` (`https://localhost:PORT/...`; `http`
/// must trust the test CA and reach the worker's port, see `test_support::https_client`),
/// signed as `signed` says.
pub async fn deliver(
    http: &reqwest::Client,
    url: &str,
    form: &[(String, String)],
    signed: Signed,
) -> reqwest::Response {
    let signature = match signed {
        Signed::Rightly => Some(twilio_signature(TOKEN, url, form)),
        Signed::ForUrl(other) => Some(twilio_signature(TOKEN, &other, form)),
        Signed::WithToken(token) => Some(twilio_signature(&token, url, form)),
        Signed::Header(value) => Some(value),
        Signed::Not => None,
    };
    let mut request = http.post(url).header("user-agent", "TwilioProxy/1.1").form(form);
    if let Some(signature) = signature {
        request = request.header("x-twilio-signature", signature);
    }
    request.send().await.unwrap()
}

/// Plays Twilio delivering a patient's SMS reply: `body` from `from`, to the webhook at
/// `url`, signed rightly.
pub async fn reply(http: &reqwest::Client, url: &str, from: &str, body: &str) -> reqwest::Response {
    deliver(http, url, &inbound_form(from, body), Signed::Rightly).await
}
