//! Email over SMTP with lettre: a pooled, authenticated, TLS-verified transport, and the
//! classification of each send into an [`EmailOutcome`].
//!
//! A message carries From, To, Subject, Date, a Message-ID, `Content-Language`, the RFC 8058
//! one-click unsubscribe headers (`List-Unsubscribe`, `List-Unsubscribe-Post`) and a
//! `multipart/alternative` body (UTF-8 text and HTML). Nothing else about the patient.
//!
//! Outcomes: 5xx answers about the recipient or the message (550, 551, 553, 554, ...) are
//! [`EmailOutcome::FailedPermanent`]. 4xx answers and connection, TLS and time-out failures are
//! [`EmailOutcome::Retry`], and so are two kinds of 5xx: those that say our side is
//! misconfigured (syntax 500-504 and 555, authentication 530/534/535/538), logged at `error!`,
//! so that a wrong password or relay setting does not fail every patient in the queue for
//! good; and 552, which RFC 5321 (4.5.3.1.10) asks clients to treat as temporary.
//!
//! Neither the address nor the body ever appears in a log line, an error or a `Debug` output.
//! lettre's errors may quote the server's answer, which often echoes the address
//! (`550 <a@b.example> unknown`), so they are never logged: only the SMTP code and the kind of
//! failure are.
//!
//! For local development only, a [`Mailer::outbox`] writes each message into a Maildir
//! instead ([`outbox`]): the same message, byte for byte, that the relay would have been
//! given.

mod outbox;

use std::{net::IpAddr, path::PathBuf, sync::RwLock, time::Duration};

use lettre::{
    Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox, MultiPart,
        header::{Header, HeaderName, HeaderValue},
    },
    transport::smtp::{
        Error as SmtpError, PoolConfig,
        authentication::{Credentials, Mechanism},
        client::{Certificate, Tls, TlsParameters},
    },
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::{debug, error, warn};

use crate::templates::EmailBody;

pub use outbox::MailOutbox;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP upgraded with STARTTLS, which is required (usually port 587).
    Starttls,
    /// TLS from the first byte, "SMTPS" (usually port 465).
    Implicit,
    /// No TLS at all. Only for a test sink on a loopback address: [`Mailer::new`] refuses
    /// it for any other host.
    None,
}

/// The `[email]` settings: the SMTP relay and the sender. `Debug` hides the password.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The relay's host name (checked against its certificate) or address.
    pub host: String,
    /// The relay's port, e.g. 587 for STARTTLS or 465 for implicit TLS.
    pub port: u16,
    /// How the connection is secured; STARTTLS when not given.
    #[serde(default = "default_tls")]
    pub tls: SmtpTls,
    /// The user to authenticate as (PLAIN or LOGIN, over TLS); no authentication if absent.
    #[serde(default)]
    pub username: Option<String>,
    /// The password for `username`.
    #[serde(default)]
    pub password: Option<String>,
    /// The From mailbox, e.g. `Clinic survey <survey@example.org>`; its domain also names
    /// the Message-IDs.
    pub from: String,
    /// An extra trusted root certificate (PEM), e.g. a private CA, on top of the public
    /// roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// At most this many connections at once, and kept open between sends (default 4).
    #[serde(default = "default_pool_max")]
    pub pool_max: u32,
    /// The longest one send may take, connecting included, in seconds (default 30).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

fn default_tls() -> SmtpTls {
    SmtpTls::Starttls
}

fn default_pool_max() -> u32 {
    4
}

fn default_timeout_seconds() -> u64 {
    30
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("from", &self.from)
            .field("ca_file", &self.ca_file)
            .field("pool_max", &self.pool_max)
            .field("timeout_seconds", &self.timeout_seconds)
            .finish()
    }
}

/// One email to send. Its `Debug` shows neither the address nor the body.
#[derive(Clone)]
pub struct EmailMessage {
    /// The recipient's address.
    pub to: String,
    /// The language, `en` or `fr`: the `Content-Language` header.
    pub lang: String,
    /// The rendered subject, text and HTML.
    pub body: EmailBody,
    /// The one-click unsubscribe URL, `https://<bridge>/u/<GUID>`.
    pub unsubscribe_url: String,
}

impl std::fmt::Debug for EmailMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailMessage")
            .field("to", &"<redacted>")
            .field("lang", &self.lang)
            .field("body", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What sending one email came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailOutcome {
    /// The relay accepted it.
    Sent,
    /// Not sent this time (4xx, a connection, TLS or time-out failure, or a 5xx that says our
    /// settings are wrong): try again later.
    Retry {
        /// The SMTP reply code, when the server answered.
        code: Option<u16>,
    },
    /// Refused for good: the address is invalid or the server said 5xx about it.
    FailedPermanent {
        /// The SMTP reply code; `None` when the address or message was refused before
        /// sending.
        code: Option<u16>,
    },
    /// Not sent: the caller's window for sending had closed when a connection came free
    /// (see [`Mailer::send_within`]); try again when it opens.
    Held,
}

/// A bad `[email]` setting, found by [`Mailer::new`]. No variant carries contact data.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// `from` is not a mailbox such as `Clinic survey <survey@example.org>`.
    #[error("email from: not a valid mailbox ({0})")]
    From(String),
    /// A setting is out of range or inconsistent.
    #[error("email {field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `tls = "none"` with a host that is not a loopback address.
    #[error("email tls = \"none\" is only allowed for a loopback host (a local test sink), not {0}")]
    PlaintextNotLoopback(String),
    /// The `ca_file` cannot be read or holds no PEM certificate.
    #[error("email ca_file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS parameters could not be built.
    #[error("email tls: {0}")]
    Tls(String),
    /// [`Mailer::new`] was called outside a Tokio runtime (the pool needs one).
    #[error("the mailer must be created inside a Tokio runtime")]
    NoRuntime,
    /// The local outbox's Maildir cannot be created ([`Mailer::outbox`]).
    #[error("email_outbox {path}: {reason}")]
    Outbox {
        /// The Maildir.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The `Content-Language` header (RFC 3282).
#[derive(Debug, Clone)]
struct ContentLanguage(String);

impl Header for ContentLanguage {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Language")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ContentLanguage(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The `List-Unsubscribe` header (RFC 2369), holding one `<https://...>` URL.
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The `List-Unsubscribe-Post: List-Unsubscribe=One-Click` header (RFC 8058).
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_string())
    }
}

/// What the transport is built from, kept to build a fresh one after a send times out.
#[derive(Clone)]
struct TransportParams {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
    timeout: Duration,
    pool_max: u32,
}

impl TransportParams {
    fn build(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.as_str())
            .port(self.port)
            .tls(self.tls.clone())
            .timeout(Some(self.timeout))
            .pool_config(PoolConfig::new().max_size(self.pool_max));
        if let Some(credentials) = &self.credentials {
            builder = builder
                .credentials(credentials.clone())
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        builder.build()
    }
}

/// The current transport and its generation, bumped each time it is replaced.
struct Current {
    generation: u64,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// Sends email through one SMTP relay over a pool of connections, or, for local
/// development only, writes it into a Maildir ([`Mailer::outbox`]).
///
/// Through a relay, at most `pool_max` sends run at once, and up to `pool_max` idle
/// connections are kept for reuse (lettre's pool bounds only the idle ones; a semaphore bounds
/// the sends). Each send is bounded by `timeout_seconds`; one that runs out is a
/// [`EmailOutcome::Retry`], and the pool is then replaced so that a connection left
/// mid-command is never reused. Create and drop it inside a Tokio runtime.
pub struct Mailer {
    route: Route,
    from: Mailbox,
    message_id_domain: String,
}

/// Where a [`Mailer`] hands its messages.
enum Route {
    /// An SMTP relay.
    Smtp(Smtp),
    /// A local Maildir, development only.
    Outbox(MailOutbox),
}

/// The SMTP relay's pooled transport.
struct Smtp {
    current: RwLock<Current>,
    params: TransportParams,
    permits: Semaphore,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.route {
            Route::Smtp(smtp) => f
                .debug_struct("Mailer")
                .field("host", &smtp.params.host)
                .field("port", &smtp.params.port)
                .field("tls", &smtp.params.tls)
                .field("authenticated", &smtp.params.credentials.is_some())
                .field("pool_max", &smtp.params.pool_max)
                .field("timeout", &smtp.params.timeout)
                .finish_non_exhaustive(),
            Route::Outbox(outbox) => f.debug_struct("Mailer").field("outbox", outbox).finish_non_exhaustive(),
        }
    }
}

/// Whether `host` names this machine: `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Reads the extra root certificate(s) in `path`.
fn load_ca(path: &std::path::Path) -> Result<Certificate, EmailError> {
    let err = |reason: String| EmailError::CaFile { path: path.display().to_string(), reason };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let count = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not PEM: {e}")))?
        .len();
    if count == 0 {
        return Err(err("holds no PEM certificate".into()));
    }
    Certificate::from_pem(&pem).map_err(|e| err(e.to_string()))
}

/// The TLS parameters for `config`: the public roots plus the `ca_file`, if any.
fn tls_parameters(config: &EmailConfig) -> Result<TlsParameters, EmailError> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        builder = builder.add_root_certificate(load_ca(path)?);
    }
    builder.build_rustls().map_err(|e| EmailError::Tls(e.to_string()))
}

/// A short name for the kind of a failure, for logs.
fn kind_of(err: &SmtpError) -> &'static str {
    if err.is_permanent() {
        "permanent"
    } else if err.is_transient() {
        "transient"
    } else if err.is_timeout() {
        "timeout"
    } else if err.is_tls() {
        "tls"
    } else if err.is_client() {
        "client"
    } else if err.is_response() {
        "response"
    } else if err.is_transport_shutdown() {
        "shutdown"
    } else {
        "connection"
    }
}

/// 5xx codes that say our side is wrong (syntax, authentication) or that RFC 5321 asks to
/// treat as temporary (552): retried, not held against the recipient.
fn is_retried_5xx(code: u16) -> bool {
    matches!(code, 500..=504 | 530 | 534 | 535 | 538 | 552 | 555)
}

/// The outcome of a failed send. Logs the code and the kind only.
fn classify(err: &SmtpError, ascii_recipient: bool) -> EmailOutcome {
    let kind = kind_of(err);
    match err.status().map(u16::from) {
        Some(code) if err.is_permanent() && !is_retried_5xx(code) => {
            warn!(code, kind, "email refused for good");
            EmailOutcome::FailedPermanent { code: Some(code) }
        }
        Some(552) => {
            warn!(code = 552, kind, "email deferred: mailbox full or message too large");
            EmailOutcome::Retry { code: Some(552) }
        }
        Some(code) if err.is_permanent() => {
            error!(code, kind, "email refused: check the [email] settings; will retry");
            EmailOutcome::Retry { code: Some(code) }
        }
        Some(code) => {
            warn!(code, kind, "email deferred by the server");
            EmailOutcome::Retry { code: Some(code) }
        }
        // lettre refuses a non-ASCII address when the server lacks SMTPUTF8: that will not
        // change for this recipient.
        None if err.is_client() && !ascii_recipient => {
            warn!(kind, "email refused: the address needs SMTPUTF8, which the server lacks");
            EmailOutcome::FailedPermanent { code: None }
        }
        None if err.is_client() => {
            error!(kind, "email not sent: the client refused (STARTTLS or authentication unsupported?)");
            EmailOutcome::Retry { code: None }
        }
        None => {
            warn!(kind, "email not sent: transport failure");
            EmailOutcome::Retry { code: None }
        }
    }
}

/// Whether `url` can go in `List-Unsubscribe` as is: an absolute http(s) URL of visible
/// ASCII without angle brackets.
fn valid_unsubscribe_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 900
        && url.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

/// The From mailbox in `from`.
fn parse_from(from: &str) -> Result<Mailbox, EmailError> {
    from.parse().map_err(|e: lettre::address::AddressError| EmailError::From(e.to_string()))
}

impl Mailer {
    /// Checks `config` and builds the pooled transport. Connects to nothing yet: the
    /// first send does. Must be called inside a Tokio runtime.
    pub fn new(config: &EmailConfig) -> Result<Mailer, EmailError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(EmailError::NoRuntime);
        }
        let from = parse_from(&config.from)?;
        if config.host.trim().is_empty() {
            return Err(EmailError::Invalid { field: "host", reason: "is empty" });
        }
        if config.pool_max == 0 {
            return Err(EmailError::Invalid { field: "pool_max", reason: "must be at least 1" });
        }
        if config.timeout_seconds == 0 {
            return Err(EmailError::Invalid { field: "timeout_seconds", reason: "must be at least 1" });
        }
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(EmailError::Invalid { field: "password", reason: "is required with username" });
            }
            (None, Some(_)) => {
                return Err(EmailError::Invalid { field: "username", reason: "is required with password" });
            }
        };
        let tls = match config.tls {
            SmtpTls::Starttls => Tls::Required(tls_parameters(config)?),
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters(config)?),
            SmtpTls::None if is_loopback(&config.host) => Tls::None,
            SmtpTls::None => return Err(EmailError::PlaintextNotLoopback(config.host.clone())),
        };
        let params = TransportParams {
            host: config.host.clone(),
            port: config.port,
            tls,
            credentials,
            timeout: Duration::from_secs(config.timeout_seconds),
            pool_max: config.pool_max,
        };
        let transport = params.build();
        let smtp = Smtp {
            current: RwLock::new(Current { generation: 0, transport }),
            permits: Semaphore::new(config.pool_max as usize),
            params,
        };
        Ok(Mailer { route: Route::Smtp(smtp), message_id_domain: from.email.domain().to_string(), from })
    }

    /// A mailer that sends nothing but writes each message, as it would have gone to the
    /// relay, into the Maildir `dir` (created owner-only, with its `tmp`, `new` and `cur`).
    /// For local development only: the files hold email addresses.
    pub fn outbox(from: &str, dir: PathBuf) -> Result<Mailer, EmailError> {
        let from = parse_from(from)?;
        let outbox = MailOutbox::create(dir)?;
        Ok(Mailer { route: Route::Outbox(outbox), message_id_domain: from.email.domain().to_string(), from })
    }

    /// Sends `message` and says what came of it. Never panics on bad input: an invalid
    /// address or header value is [`EmailOutcome::FailedPermanent`] with no code.
    pub async fn send(&self, message: &EmailMessage) -> EmailOutcome {
        self.send_within(message, || true).await
    }

    /// [`Mailer::send`], once `may_send` has said yes right before the message is handed to
    /// the relay, after any wait for a pooled connection: that wait can outlast the window
    /// in which the message may go out. [`EmailOutcome::Held`] when it says no.
    pub async fn send_within(&self, message: &EmailMessage, may_send: impl FnOnce() -> bool) -> EmailOutcome {
        let email = match self.build(message) {
            Ok(email) => email,
            Err(reason) => {
                warn!(reason, "email not sent: refused before sending");
                return EmailOutcome::FailedPermanent { code: None };
            }
        };
        match &self.route {
            Route::Smtp(smtp) => smtp.send(email, message.to.is_ascii(), may_send).await,
            Route::Outbox(outbox) => {
                if !may_send() {
                    debug!("email not written: its window closed");
                    return EmailOutcome::Held;
                }
                outbox.write(&email)
            }
        }
    }

    /// The message for `message`, or why it cannot be sent (no contact data in the reason).
    fn build(&self, message: &EmailMessage) -> Result<Message, &'static str> {
        let to: Address = message.to.parse().map_err(|_| "the address is not valid")?;
        let lang = match message.lang.as_str() {
            "en" => "en",
            "fr" => "fr",
            _ => return Err("the language is neither en nor fr"),
        };
        if !valid_unsubscribe_url(&message.unsubscribe_url) {
            return Err("the unsubscribe URL is not a plain http(s) URL");
        }
        if message.body.subject.chars().any(char::is_control) {
            return Err("the subject is not one line");
        }
        let message_id = format!("<{}@{}>", uuid::Uuid::new_v4(), self.message_id_domain);
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(message.body.subject.clone())
            .message_id(Some(message_id))
            .date_now()
            .header(ContentLanguage(lang.to_string()))
            .header(ListUnsubscribe(format!("<{}>", message.unsubscribe_url)))
            .header(ListUnsubscribePost)
            .multipart(MultiPart::alternative_plain_html(
                message.body.text.clone(),
                message.body.html.clone(),
            ))
            .map_err(|_| "the message could not be built")
    }
}

impl Smtp {
    /// Hands `email` to the relay once a connection is free and `may_send` still says yes.
    async fn send(
        &self,
        email: Message,
        ascii_recipient: bool,
        may_send: impl FnOnce() -> bool,
    ) -> EmailOutcome {
        let Ok(_permit) = self.permits.acquire().await else {
            return EmailOutcome::Retry { code: None };
        };
        if !may_send() {
            debug!("email not sent: its window closed before a connection came free");
            return EmailOutcome::Held;
        }
        let (generation, transport) = self.transport();
        match tokio::time::timeout(self.params.timeout, transport.send(email)).await {
            Ok(Ok(_)) => {
                debug!("email sent");
                EmailOutcome::Sent
            }
            Ok(Err(err)) => classify(&err, ascii_recipient),
            Err(_) => {
                warn!(kind = "timeout", "email not sent: the send timed out; opening new connections");
                self.replace_transport(generation);
                EmailOutcome::Retry { code: None }
            }
        }
    }

    /// A handle on the current transport and its generation.
    fn transport(&self) -> (u64, AsyncSmtpTransport<Tokio1Executor>) {
        let current = self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        (current.generation, current.transport.clone())
    }

    /// Replaces the transport of `generation` with a fresh one (unless another send already
    /// did). The old pool closes its connections once its last send ends.
    fn replace_transport(&self, generation: u64) {
        let mut current = self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.generation == generation {
            *current = Current { generation: generation + 1, transport: self.params.build() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EmailConfig {
        EmailConfig {
            host: "127.0.0.1".into(),
            port: 2525,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "Clinic survey <survey@clinic.example.org>".into(),
            ca_file: None,
            pool_max: 4,
            timeout_seconds: 30,
        }
    }

    fn message(to: &str) -> EmailMessage {
        EmailMessage {
            to: to.into(),
            lang: "en".into(),
            body: EmailBody { subject: "Survey".into(), text: "text".into(), html: "<p>html</p>".into() },
            unsubscribe_url: "https://bridge.example.org/u/3f2a9c4e-8b1d-4e6f-a2c5-7d9e0b1f4a6c".into(),
        }
    }

    #[test]
    fn config_with_defaults() {
        let config: EmailConfig =
            from_json(r#"{"host":"smtp.example.org","port":587,"from":"Survey <s@example.org>"}"#);
        assert_eq!(config.tls, SmtpTls::Starttls);
        assert_eq!((config.pool_max, config.timeout_seconds), (4, 30));
        assert!(config.username.is_none() && config.password.is_none() && config.ca_file.is_none());
        let config: EmailConfig = from_json(
            r#"{"host":"h","port":465,"tls":"implicit","from":"s@example.org","username":"u","password":"hunter2"}"#,
        );
        assert_eq!(config.tls, SmtpTls::Implicit);
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2") && debug.contains("<secret>"), "{debug}");
        assert!(
            serde_json::from_str::<EmailConfig>(r#"{"host":"h","port":1,"from":"s@e.org","x":1}"#).is_err()
        );
    }

    fn from_json(json: &str) -> EmailConfig {
        serde_json::from_str(json).expect("config")
    }

    #[test]
    fn message_debug_redacts_the_address_and_body() {
        let debug = format!("{:?}", message("patient@example.net"));
        assert!(
            !debug.contains("patient") && !debug.contains("Survey") && !debug.contains("html"),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn new_checks_the_settings() {
        assert!(Mailer::new(&config()).is_ok());
        let bad = |f: &dyn Fn(&mut EmailConfig)| {
            let mut config = config();
            f(&mut config);
            Mailer::new(&config).expect_err("refused")
        };
        assert!(matches!(bad(&|c| c.from = "not a mailbox".into()), EmailError::From(_)));
        assert!(matches!(bad(&|c| c.host = "smtp.example.org".into()), EmailError::PlaintextNotLoopback(_)));
        assert!(matches!(bad(&|c| c.pool_max = 0), EmailError::Invalid { field: "pool_max", .. }));
        assert!(matches!(
            bad(&|c| c.timeout_seconds = 0),
            EmailError::Invalid { field: "timeout_seconds", .. }
        ));
        assert!(matches!(
            bad(&|c| c.username = Some("u".into())),
            EmailError::Invalid { field: "password", .. }
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("ca.pem");
        let err = bad(&|c| {
            c.tls = SmtpTls::Starttls;
            c.ca_file = Some(missing.clone());
        });
        assert!(matches!(err, EmailError::CaFile { .. }), "{err}");
        std::fs::write(&missing, "not a certificate\n").expect("write");
        let err = bad(&|c| {
            c.tls = SmtpTls::Starttls;
            c.ca_file = Some(missing.clone());
        });
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        for host in ["localhost", "::1", "[::1]", "127.0.0.2"] {
            assert!(Mailer::new(&EmailConfig { host: host.into(), ..config() }).is_ok(), "{host}");
        }
        let debug = format!(
            "{:?}",
            Mailer::new(&EmailConfig {
                username: Some("u".into()),
                password: Some("hunter2".into()),
                ..config()
            })
            .expect("mailer")
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn new_outside_a_runtime_is_an_error() {
        assert!(matches!(Mailer::new(&config()), Err(EmailError::NoRuntime)));
    }

    #[tokio::test]
    async fn invalid_input_is_permanent_without_a_code() {
        let mailer = Mailer::new(&config()).expect("mailer");
        for to in ["", "no-at-sign", "a@b@c", "patient@example.net\r\nBcc: x@y.z"] {
            assert_eq!(
                mailer.send(&message(to)).await,
                EmailOutcome::FailedPermanent { code: None },
                "{to:?}"
            );
        }
        let mut bad_lang = message("patient@example.net");
        bad_lang.lang = "de".into();
        assert_eq!(mailer.send(&bad_lang).await, EmailOutcome::FailedPermanent { code: None });
        let mut bad_url = message("patient@example.net");
        bad_url.unsubscribe_url = "https://x.example/u/1>\r\nBcc: x@y.z".into();
        assert_eq!(mailer.send(&bad_url).await, EmailOutcome::FailedPermanent { code: None });
        let mut bad_subject = message("patient@example.net");
        bad_subject.body.subject = "a\nb".into();
        assert_eq!(mailer.send(&bad_subject).await, EmailOutcome::FailedPermanent { code: None });
    }

    #[test]
    fn message_has_the_headers_and_nothing_else_about_the_patient() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = rt.enter();
        let mailer = Mailer::new(&config()).expect("mailer");
        let mut m = message("patient@example.net");
        m.lang = "fr".into();
        m.body.subject = "Sondage sur l'expérience".into();
        let email = mailer.build(&m).expect("message");
        let formatted = String::from_utf8(email.formatted()).expect("utf-8");
        let (head, _) = formatted.split_once("\r\n\r\n").expect("head");
        let names: Vec<&str> = head
            .lines()
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':').map(|(n, _)| n))
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [
                "Content-Language",
                "Content-Type",
                "Date",
                "From",
                "List-Unsubscribe",
                "List-Unsubscribe-Post",
                "MIME-Version",
                "Message-ID",
                "Subject",
                "To",
            ]
        );
        assert!(head.contains("\r\nContent-Language: fr\r\n"));
        assert!(head.contains(
            "\r\nList-Unsubscribe: <https://bridge.example.org/u/3f2a9c4e-8b1d-4e6f-a2c5-7d9e0b1f4a6c>\r\n"
        ));
        assert!(head.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert!(head.contains("@clinic.example.org>\r\n"), "Message-ID under the From domain");
        assert!(formatted.is_ascii(), "headers RFC 2047-encoded, bodies transfer-encoded");
        assert_eq!(formatted.matches("patient@example.net").count(), 1, "only in To");
        drop(mailer);
    }

    #[test]
    fn classification_of_codes() {
        for code in [550, 551, 553, 554, 521, 556] {
            assert!(!is_retried_5xx(code), "{code}");
        }
        for code in [500, 501, 502, 503, 504, 530, 534, 535, 538, 552, 555] {
            assert!(is_retried_5xx(code), "{code}");
        }
        assert!(is_loopback("127.0.0.1") && is_loopback("LOCALHOST") && !is_loopback("10.0.0.1"));
        assert!(valid_unsubscribe_url("https://b.example/u/abc"));
        assert!(!valid_unsubscribe_url("ftp://b.example/u/abc"));
        assert!(!valid_unsubscribe_url("https://b.example/u/a b"));
    }
}
