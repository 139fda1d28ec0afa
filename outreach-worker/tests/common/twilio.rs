//! A local stand-in for the Twilio Messages API: checks the account and credentials,
//! records every message, and answers from a per-recipient script (201 with a SID
//! otherwise). Nothing outside this machine is contacted.

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
