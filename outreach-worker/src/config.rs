//! Configuration: a TOML file, overridden by `OUTREACH_WORKER_*` environment variables
//! (sections joined by `__`), then by `--set key.path=value` flags, as for the other daemons
//! (see `cache_server::config::load_layered`). Everything is checked before the worker starts.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use cache_server::config::{ConfigError, LogConfig, MemoryConfig, load_layered};
use jiff::civil::Time;
use serde::{Deserialize, Serialize};

pub use crate::sites::SiteIdentity;
use crate::{
    email::EmailConfig,
    sms::{RetryPolicy, Sender, SmsConfig},
};

/// The environment variable prefix: `OUTREACH_WORKER_WORKER__CONCURRENCY=4`.
pub const ENV_PREFIX: &str = "OUTREACH_WORKER_";

/// Everything the worker needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// The suppression list's database: `sqlite://path?mode=rwc` (default) or
    /// `postgres://user@host:port/db`.
    pub database_url: String,
    /// A file with 64 hex digits: the key of the suppression list's HMACs. Keep it: without
    /// it the list can no longer be matched.
    pub key_file: PathBuf,
    /// Where Prometheus metrics are served over plain HTTP; none when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// A directory of per-campaign, per-language templates; the built-in ones when absent.
    pub templates_dir: Option<PathBuf>,
    /// The contact cache (role `outreach`).
    pub cache: GrpcClientConfig,
    /// The survey bridge: its ledger (role `outreach`) and its public address.
    pub bridge: BridgeClientConfig,
    /// Batches, leases, concurrency.
    pub worker: LoopConfig,
    /// When messages may be sent, in the patient's time zone.
    pub quiet_hours: QuietHoursConfig,
    /// SMS through a Twilio-format REST API; no SMS is sent when absent.
    pub sms: Option<SmsSettings>,
    /// Email over SMTP; no email is sent when absent.
    pub email: Option<EmailSettings>,
    /// Local development only: write each email into this Maildir (`<dir>/new/`, one file a
    /// message, created owner-only) instead of sending it through `[email]`'s relay, whose
    /// `from` and `per_second` still apply. The files hold email addresses; never set it on a
    /// real deployment.
    pub email_outbox: Option<PathBuf>,
    /// Per-campaign settings, by campaign id.
    pub campaigns: BTreeMap<String, CampaignSettings>,
    /// On whose behalf messages are sent, by site id: the clinic each message names (CASL
    /// sender identification).
    pub sites: BTreeMap<String, SiteIdentity>,
    /// Memory protection at start: the worker holds each contact in the clear while it
    /// sends, so its memory is locked and kept out of core dumps as the cache's is.
    pub memory: MemoryConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            database_url: "sqlite://outreach-worker.db?mode=rwc".into(),
            key_file: "suppression.key".into(),
            metrics_listen: None,
            templates_dir: None,
            cache: GrpcClientConfig { url: "https://localhost:50051".into(), ..GrpcClientConfig::default() },
            bridge: BridgeClientConfig::default(),
            worker: LoopConfig::default(),
            quiet_hours: QuietHoursConfig::default(),
            sms: None,
            email: None,
            email_outbox: None,
            campaigns: BTreeMap::new(),
            sites: BTreeMap::new(),
            memory: MemoryConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// A gRPC server reached over mutual TLS with the worker's client certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcClientConfig {
    /// Its address, e.g. `https://localhost:50051`.
    pub url: String,
    /// The name in its certificate.
    pub server_name: String,
    /// The CA that signed its certificate.
    pub ca: PathBuf,
    /// The worker's client certificate (URI SAN `spiffe://contactcache/outreach`).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

impl Default for GrpcClientConfig {
    fn default() -> Self {
        GrpcClientConfig {
            url: String::new(),
            server_name: "localhost".into(),
            ca: "pki/ca.pem".into(),
            cert: "pki/outreach.pem".into(),
            key: "pki/outreach.key".into(),
        }
    }
}

/// The survey bridge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeClientConfig {
    /// Its invitation ledger.
    #[serde(flatten)]
    pub grpc: GrpcClientConfig,
    /// The address patients open: links are `{public_url}/s/{guid}`, unsubscribe links
    /// `{public_url}/u/{guid}`.
    pub public_url: String,
}

impl Default for BridgeClientConfig {
    fn default() -> Self {
        BridgeClientConfig {
            grpc: GrpcClientConfig { url: "https://localhost:50052".into(), ..GrpcClientConfig::default() },
            public_url: "https://localhost:8443".into(),
        }
    }
}

/// How work is taken from the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// Contacts leased per LeaseDue call (1 to the cache's `store.max_lease_batch`).
    pub batch: u32,
    /// Seconds a lease lasts: a contact not acked by then goes to another worker.
    pub lease_seconds: u32,
    /// Contacts worked on at once.
    pub concurrency: usize,
    /// Seconds between LeaseDue calls when the last one brought nothing.
    pub poll_seconds: u64,
    /// Minutes before a message the provider could not take now (429, 5xx, 4xx SMTP, a
    /// connection failure) is tried again.
    pub retry_minutes: u32,
    /// Days after sending that the worker remembers which suppression entries (HMACs of the
    /// phone and email) belong to a message's GUID, so that an opt-out the bridge reports
    /// after the cache erased the contact still suppresses it. The bridge's link works for
    /// its `link_valid_days` (30) after sending: keep this at least one more.
    pub remember_days: u32,
    /// Whether a contact whose site has no `[sites.<id>]` entry waits (RETRY_AT, as for a
    /// missing channel) instead of being sent with the generic "your clinic" wording.
    pub require_site_identity: bool,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            batch: 50,
            lease_seconds: 300,
            concurrency: 8,
            poll_seconds: 5,
            retry_minutes: 15,
            remember_days: 31,
            require_site_identity: false,
        }
    }
}

/// The daily window in which messages may be sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QuietHoursConfig {
    /// Whether messages wait for the window at all. Off only for a local demonstration.
    pub enabled: bool,
    /// The window opens, patient's local time, `HH:MM`.
    pub start: String,
    /// The window closes (not included), `HH:MM`.
    pub end: String,
    /// The time zone for a contact whose own is unknown to this worker's time-zone data.
    pub default_time_zone: String,
}

impl Default for QuietHoursConfig {
    fn default() -> Self {
        QuietHoursConfig {
            enabled: true,
            start: "09:00".into(),
            end: "20:00".into(),
            default_time_zone: "America/Toronto".into(),
        }
    }
}

/// SMS settings.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSettings {
    /// The API's base URL.
    pub base_url: String,
    /// The account SID.
    pub account_sid: String,
    /// The auth token (better: `auth_token_file`, or `OUTREACH_WORKER_SMS__AUTH_TOKEN`).
    #[serde(deserialize_with = "text")]
    pub auth_token: String,
    /// A file holding the auth token (trailing newline ignored), e.g. a systemd credential
    /// (`%d/sms-auth-token`). Not together with `auth_token`.
    pub auth_token_file: Option<PathBuf>,
    /// `From`: one of the account's numbers, E.164. Either this or `messaging_service_sid`.
    /// (`--set sms.from=+16139990100` and the environment read it as a number: a number
    /// is taken as E.164 digits and gets its `+` back.)
    #[serde(deserialize_with = "e164")]
    pub from: Option<String>,
    /// A messaging service SID, which picks the number.
    pub messaging_service_sid: Option<String>,
    /// Messages per second at most.
    pub per_second: u32,
    /// Attempts per message before it is given back as RETRY_AT.
    pub max_attempts: u32,
    /// Milliseconds before the first retry; doubled each time, capped at `max_delay_ms`.
    pub base_delay_ms: u64,
    /// The longest wait between two attempts.
    pub max_delay_ms: u64,
    /// Local development only: append each SMS as a JSON line to this file (created
    /// owner-only) instead of sending it. The file holds phone numbers; never set it on a
    /// real deployment. The account settings are not needed then.
    pub outbox: Option<PathBuf>,
    /// The inbound webhook (`[sms.inbound]`): replies to the account's number, so that a STOP
    /// suppresses the number at once. Off when absent.
    pub inbound: Option<InboundSettings>,
}

impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsSettings")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<secret>")
            .field("auth_token_file", &self.auth_token_file)
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("per_second", &self.per_second)
            .field("outbox", &self.outbox)
            .field("inbound", &self.inbound)
            .finish_non_exhaustive()
    }
}

impl Default for SmsSettings {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        SmsSettings {
            base_url: "https://api.twilio.com".into(),
            account_sid: String::new(),
            auth_token: String::new(),
            auth_token_file: None,
            from: None,
            messaging_service_sid: None,
            per_second: 1,
            max_attempts: retry.max_attempts,
            base_delay_ms: retry.base_delay.as_millis() as u64,
            max_delay_ms: retry.max_delay.as_millis() as u64,
            outbox: None,
            inbound: None,
        }
    }
}

impl SmsSettings {
    /// The client configuration, or what is missing.
    pub fn client_config(&self) -> Result<SmsConfig, ConfigError> {
        if let Some(from) = &self.from {
            let digits = from.strip_prefix('+').unwrap_or_default();
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::new("sms.from: must be a number in E.164 form, e.g. +16139990100"));
            }
        }
        let sender = match (&self.from, &self.messaging_service_sid) {
            (Some(from), None) => Sender::From(from.clone()),
            (None, Some(sid)) => Sender::MessagingService(sid.clone()),
            _ => {
                return Err(ConfigError::new(
                    "sms: set exactly one of sms.from and sms.messaging_service_sid",
                ));
            }
        };
        if self.account_sid.is_empty() || self.auth_token.is_empty() {
            return Err(ConfigError::new("sms: sms.account_sid and sms.auth_token are required"));
        }
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://127.0.0.1")) {
            return Err(ConfigError::new(
                "sms.base_url: must be an https:// address (plain http only to 127.0.0.1, for a local stand-in)",
            ));
        }
        Ok(SmsConfig {
            base_url: self.base_url.clone(),
            account_sid: self.account_sid.clone(),
            auth_token: self.auth_token.clone(),
            sender,
            retry: RetryPolicy {
                max_attempts: self.max_attempts.max(1),
                base_delay: Duration::from_millis(self.base_delay_ms),
                max_delay: Duration::from_millis(self.max_delay_ms),
            },
        })
    }
}

/// The inbound SMS webhook: Twilio posts each message sent to the account's numbers here
/// ("A message comes in" in the number's or the messaging service's settings), signed with
/// the account's auth token (`sms.auth_token`). Served over HTTPS only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InboundSettings {
    /// The address the webhook's HTTPS listener binds, e.g. `0.0.0.0:8444`.
    pub listen: SocketAddr,
    /// The webhook's address exactly as entered at Twilio, query string included: Twilio
    /// signs every request over this text, character for character. Its path is the path
    /// served (`/sms/inbound` in `https://worker.clinic.example:8444/sms/inbound`).
    /// `https://`, or `http://` to a loopback host only.
    pub public_url: String,
    /// The certificate chain the listener presents (PEM). Twilio refuses self-signed
    /// certificates: a publicly trusted one.
    pub tls_cert: PathBuf,
    /// Its private key (PEM).
    pub tls_key: PathBuf,
}

impl InboundSettings {
    /// The path the webhook is served on: `public_url`'s path (`/` when it has none).
    pub fn path(&self) -> Result<String, ConfigError> {
        let url = reqwest::Url::parse(&self.public_url)
            .map_err(|e| ConfigError::new(format!("sms.inbound.public_url: not a URL: {e}")))?;
        let path = url.path();
        // Nothing that the router would read as a pattern, and nothing that Twilio might
        // write otherwise than the URL parser does.
        let plain = |c: char| c.is_ascii_alphanumeric() || "/-._~".contains(c);
        if !path.chars().all(plain) || path.split('/').any(|segment| segment.starts_with('.')) {
            return Err(ConfigError::new(
                "sms.inbound.public_url: the path may hold only letters, digits and '/', '-', '_', '~' and '.' (not at the start of a segment)",
            ));
        }
        Ok(if path.is_empty() { "/".into() } else { path.into() })
    }

    /// Checks the address: https (http to a loopback host only), no credentials, no
    /// fragment, a plain path.
    fn check(&self) -> Result<(), ConfigError> {
        let url = reqwest::Url::parse(&self.public_url)
            .map_err(|e| ConfigError::new(format!("sms.inbound.public_url: not a URL: {e}")))?;
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(ConfigError::new("sms.inbound.public_url: must name a host"));
        };
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(ConfigError::new(
                    "sms.inbound.public_url: must be an https:// address (http:// only to a loopback host)",
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::new("sms.inbound.public_url: must not carry a user name or password"));
        }
        if url.fragment().is_some() {
            return Err(ConfigError::new(
                "sms.inbound.public_url: must not have a #fragment (Twilio's connection overrides stay in Twilio's copy of the URL)",
            ));
        }
        self.path()?;
        if self.tls_cert.as_os_str().is_empty() || self.tls_key.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "sms.inbound.tls_cert, sms.inbound.tls_key: the listener's certificate and key are required",
            ));
        }
        Ok(())
    }
}

/// Email settings: the SMTP server and the rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// The SMTP server, credentials and sender.
    #[serde(flatten)]
    pub smtp: EmailConfig,
    /// Messages per second at most.
    #[serde(default = "one")]
    pub per_second: u32,
    /// A file holding the SMTP password (trailing newline ignored), e.g. a systemd credential
    /// (`%d/smtp-password`). Not together with `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// A string, or a number read from a flag or the environment, as its digits.
#[derive(Deserialize)]
#[serde(untagged)]
enum Lenient {
    Text(String),
    Number(u64),
}

fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Lenient::deserialize(d)? {
        Lenient::Text(s) => s,
        Lenient::Number(n) => n.to_string(),
    })
}

fn e164<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Lenient>::deserialize(d)?.map(|v| match v {
        Lenient::Text(s) => s,
        Lenient::Number(n) => format!("+{n}"),
    }))
}

fn one() -> u32 {
    1
}

/// A secret kept in a file of its own: the whole file but a trailing line break.
fn read_secret(setting: &str, path: &std::path::Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("{setting}: cannot read {}: {e}", path.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(ConfigError::new(format!("{setting}: {} is empty", path.display())));
    }
    Ok(secret.to_string())
}

/// One campaign's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignSettings {
    /// Days after the invitation to send one reminder, if the survey is still unanswered;
    /// no reminder when absent.
    pub reminder_days: Option<u32>,
}

/// The checked quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Opens.
    pub start: Time,
    /// Closes.
    pub end: Time,
}

impl WorkerConfig {
    /// Reads `file` (if given), then the environment, then `overrides`, and checks the result.
    pub fn load(file: Option<&std::path::Path>, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut config: WorkerConfig = load_layered(file, ENV_PREFIX, overrides)?;
        config.read_secret_files()?;
        config.check()?;
        Ok(config)
    }

    /// Fills `sms.auth_token` and `email.password` from their `*_file` settings. An error
    /// names the setting and the file, never what the file holds.
    pub fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        if let Some(sms) = &mut self.sms
            && let Some(path) = &sms.auth_token_file
        {
            if !sms.auth_token.is_empty() {
                return Err(ConfigError::new(
                    "sms.auth_token_file: set either it or sms.auth_token, not both",
                ));
            }
            sms.auth_token = read_secret("sms.auth_token_file", path)?;
        }
        if let Some(email) = &mut self.email
            && let Some(path) = &email.password_file
        {
            if email.smtp.password.is_some() {
                return Err(ConfigError::new(
                    "email.password_file: set either it or email.password, not both",
                ));
            }
            email.smtp.password = Some(read_secret("email.password_file", path)?);
        }
        Ok(())
    }

    /// Checks what types cannot.
    pub fn check(&self) -> Result<(), ConfigError> {
        let w = &self.worker;
        if w.batch == 0 || w.batch > 500 {
            return Err(ConfigError::new("worker.batch: must be from 1 to 500"));
        }
        if w.lease_seconds == 0 || w.lease_seconds > 3600 {
            return Err(ConfigError::new("worker.lease_seconds: must be from 1 to 3600"));
        }
        if w.concurrency == 0 {
            return Err(ConfigError::new("worker.concurrency: must be at least 1"));
        }
        if w.poll_seconds == 0 || w.retry_minutes == 0 {
            return Err(ConfigError::new("worker.poll_seconds and worker.retry_minutes: must be at least 1"));
        }
        if w.remember_days == 0 || w.remember_days > 366 {
            return Err(ConfigError::new("worker.remember_days: must be from 1 to 366"));
        }
        self.window()?;
        if jiff::tz::TimeZone::get(&self.quiet_hours.default_time_zone).is_err() {
            return Err(ConfigError::new("quiet_hours.default_time_zone: is not a known IANA time zone"));
        }
        // Before the account's own checks, so that `[sms.inbound]` alone is named.
        if let Some(sms) = &self.sms
            && let Some(inbound) = &sms.inbound
        {
            if sms.account_sid.is_empty() || sms.auth_token.is_empty() {
                return Err(ConfigError::new(
                    "sms.inbound: needs the [sms] account: sms.account_sid and sms.auth_token (Twilio signs the webhook's requests with the auth token)",
                ));
            }
            inbound.check()?;
            if self.metrics_listen == Some(inbound.listen) {
                return Err(ConfigError::new("sms.inbound.listen: must differ from metrics_listen"));
            }
        }
        if let Some(sms) = self.sms.as_ref().filter(|s| s.outbox.is_none()) {
            sms.client_config()?;
        }
        if self.sms.as_ref().is_some_and(|s| s.per_second == 0) {
            return Err(ConfigError::new("sms.per_second: must be at least 1"));
        }
        if self.email.as_ref().is_some_and(|e| e.per_second == 0) {
            return Err(ConfigError::new("email.per_second: must be at least 1"));
        }
        if let Some(dir) = &self.email_outbox {
            if self.email.is_none() {
                return Err(ConfigError::new(
                    "email_outbox: needs the [email] section (its from and per_second apply)",
                ));
            }
            if dir.as_os_str().is_empty() {
                return Err(ConfigError::new("email_outbox: must not be empty"));
            }
        }
        if self.sms.is_none() && self.email.is_none() {
            return Err(ConfigError::new("sms, email: configure at least one channel"));
        }
        if !self.bridge.public_url.starts_with("https://") {
            return Err(ConfigError::new("bridge.public_url: must be an https:// address"));
        }
        for (id, campaign) in &self.campaigns {
            if campaign.reminder_days == Some(0) {
                return Err(ConfigError::new(format!("campaigns.{id}.reminder_days: must be at least 1")));
            }
        }
        for (id, site) in &self.sites {
            site.check(id)?;
        }
        if w.require_site_identity && self.sites.is_empty() {
            return Err(ConfigError::new(
                "worker.require_site_identity: no [sites.<id>] entry is configured, so nothing could be sent",
            ));
        }
        Ok(())
    }

    /// The quiet hours, parsed.
    pub fn window(&self) -> Result<Window, ConfigError> {
        let parse = |name: &str, value: &str| {
            value
                .parse::<Time>()
                .map_err(|_| ConfigError::new(format!("quiet_hours.{name}: must be a time as HH:MM")))
        };
        let start = parse("start", &self.quiet_hours.start)?;
        let end = parse("end", &self.quiet_hours.end)?;
        if start == end {
            return Err(ConfigError::new("quiet_hours.end: must differ from quiet_hours.start"));
        }
        Ok(Window { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::{MAX_SITE_CONTACT, MAX_SITE_NAME};

    fn with_sms() -> Vec<(String, String)> {
        [("sms.account_sid", "AC1"), ("sms.auth_token", "t"), ("sms.from", "+16139990100")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_with_one_channel_are_valid() {
        let config = WorkerConfig::load(None, &with_sms()).unwrap();
        assert_eq!(config.window().unwrap().start, Time::constant(9, 0, 0, 0));
        assert_eq!(config.window().unwrap().end, Time::constant(20, 0, 0, 0));
        assert!(WorkerConfig::load(None, &[]).unwrap_err().to_string().contains("at least one channel"));
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            ("quiet_hours.start", "9h", "quiet_hours.start"),
            ("quiet_hours.end", "09:00", "quiet_hours.end"),
            ("quiet_hours.default_time_zone", "Mars/Olympus", "default_time_zone"),
            ("worker.batch", "0", "worker.batch"),
            ("worker.lease_seconds", "7200", "worker.lease_seconds"),
            ("worker.remember_days", "0", "worker.remember_days"),
            ("sms.base_url", "http://example.org", "sms.base_url"),
            ("sms.messaging_service_sid", "MG1", "messaging_service_sid"),
            ("sms.from", "613-999-0100", "sms.from"),
            ("bridge.public_url", "http://localhost", "bridge.public_url"),
            ("campaigns.c1.reminder_days", "0", "campaigns.c1.reminder_days"),
            ("worker.require_site_identity", "true", "worker.require_site_identity"),
        ];
        for (key, value, named) in cases {
            let mut overrides = with_sms();
            overrides.push((key.into(), value.into()));
            let err = WorkerConfig::load(None, &overrides).unwrap_err().to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
        }
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/outreach-worker.example.toml");
        let config = WorkerConfig::load(Some(std::path::Path::new(example)), &[]).unwrap();
        assert!(config.sms.is_none());
        let email = config.email.unwrap();
        assert_eq!(email.per_second, 5);
        assert_eq!(email.smtp.port, 587);
        assert_eq!(config.worker.lease_seconds, 300);
        assert_eq!(config.worker.remember_days, 31);
    }

    /// `with_sms()` and one site entry.
    fn with_site(name: &str, contact: &str) -> Vec<(String, String)> {
        let mut overrides = with_sms();
        overrides.push(("sites.site-1001.name".into(), name.into()));
        overrides.push(("sites.site-1001.contact".into(), contact.into()));
        overrides
    }

    #[test]
    fn site_identities_are_read_and_checked() {
        let contact = "250 rue Principale, Gatineau QC J8X 1A1 · 613-999-0150";
        let mut overrides = with_site("Clinique Soleil", contact);
        overrides.push(("worker.require_site_identity".into(), "true".into()));
        let config = WorkerConfig::load(None, &overrides).unwrap();
        let site = &config.sites["site-1001"];
        assert_eq!((site.name.as_str(), site.contact.as_str()), ("Clinique Soleil", contact));
        assert!(config.worker.require_site_identity);
        assert!(
            !WorkerConfig::load(None, &with_sms()).unwrap().worker.require_site_identity,
            "off by default"
        );

        let longest = "n".repeat(MAX_SITE_NAME);
        assert!(WorkerConfig::load(None, &with_site(&longest, contact)).is_ok());
        let cases = [
            (with_site("", contact), "sites.site-1001.name: must not be empty"),
            (with_site("   ", contact), "sites.site-1001.name: must not be empty"),
            (with_site("Clinique Soleil", ""), "sites.site-1001.contact: must not be empty"),
            (with_site("Clinique\nSoleil", contact), "sites.site-1001.name: must be one line"),
            (
                with_site("Clinique Soleil", "250 rue Principale\r\nBcc: x"),
                "sites.site-1001.contact: must be one line",
            ),
            (
                with_site(&format!("{longest}n"), contact),
                "sites.site-1001.name: must be at most 80 characters",
            ),
            (
                with_site("Clinique Soleil", &"é".repeat(MAX_SITE_CONTACT + 1)),
                "sites.site-1001.contact: must be at most 200 characters",
            ),
        ];
        for (overrides, expected) in cases {
            let err = WorkerConfig::load(None, &overrides).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        // A missing value or a misspelt one is named too.
        let mut missing = with_sms();
        missing.push(("sites.site-1001.name".into(), "Clinique Soleil".into()));
        let err = WorkerConfig::load(None, &missing).unwrap_err().to_string();
        assert!(err.contains("contact") && err.contains("site-1001"), "{err}");
        let mut typo = with_site("Clinique Soleil", contact);
        typo.push(("sites.site-1001.adress".into(), "x".into()));
        let err = WorkerConfig::load(None, &typo).unwrap_err().to_string();
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn the_example_site_entry_is_valid_once_uncommented() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/outreach-worker.example.toml");
        let text = std::fs::read_to_string(example).unwrap();
        let start = text.find("# [sites.").expect("a commented [sites] example");
        let block: String = text[start..]
            .lines()
            .take_while(|line| line.starts_with("# "))
            .map(|line| format!("{}\n", &line[2..]))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("worker.toml");
        std::fs::write(&file, format!("{text}\n{block}")).unwrap();
        let config = WorkerConfig::load(Some(&file), &[]).unwrap();
        assert_eq!(config.sites.len(), 1, "{block}");
        let site = config.sites.values().next().unwrap();
        assert!(!site.name.is_empty() && !site.contact.is_empty());
    }

    #[test]
    fn the_example_inbound_webhook_is_valid_once_uncommented() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/outreach-worker.example.toml");
        let text = std::fs::read_to_string(example).unwrap();
        // A commented block, uncommented; without the outbox (development only) and the
        // comments' continuation lines.
        let block = |header: &str| -> String {
            let start = text.find(header).unwrap_or_else(|| panic!("a commented {header:?} example"));
            text[start..]
                .lines()
                .take_while(|line| line.starts_with("# "))
                .map(|line| &line[2..])
                .filter(|line| !line.starts_with("outbox") && !line.starts_with(' '))
                .map(|line| format!("{line}\n"))
                .collect()
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("worker.toml");
        std::fs::write(&file, format!("{text}\n{}{}", block("# [sms]\n"), block("# [sms.inbound]"))).unwrap();
        let config = WorkerConfig::load(Some(&file), &[("sms.auth_token".into(), "t".into())]).unwrap();
        let sms = config.sms.unwrap();
        assert!(sms.outbox.is_none());
        let inbound = sms.inbound.expect("the [sms.inbound] example");
        assert_eq!(inbound.path().unwrap(), "/sms/inbound");
        assert!(inbound.public_url.starts_with("https://"));
    }

    #[test]
    fn numbers_from_flags_read_as_text() {
        let mut overrides = with_sms();
        overrides.push(("sms.auth_token".into(), "12345".into()));
        let config = WorkerConfig::load(None, &overrides).unwrap();
        let sms = config.sms.unwrap();
        assert_eq!(sms.from.as_deref(), Some("+16139990100"));
        assert_eq!(sms.auth_token, "12345");
    }

    #[test]
    fn secrets_are_read_from_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("sms-auth-token");
        std::fs::write(&token, "t0k3n-from-file\n").unwrap();
        let password = dir.path().join("smtp-password");
        std::fs::write(&password, "pa55-from-file\r\n").unwrap();
        let overrides = |extra: &[(&str, &str)]| {
            let mut all: Vec<(String, String)> = [("sms.account_sid", "AC1"), ("sms.from", "+16139990100")]
                .iter()
                .chain(extra)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            all.push(("sms.auth_token_file".into(), token.display().to_string()));
            all
        };
        let email = [
            ("email.host", "127.0.0.1"),
            ("email.port", "2525"),
            ("email.from", "survey@clinic.example.org"),
            ("email.username", "survey"),
        ];
        let mut with_email = email.to_vec();
        let password_setting = password.display().to_string();
        with_email.push(("email.password_file", &password_setting));
        let config = WorkerConfig::load(None, &overrides(&with_email)).unwrap();
        assert_eq!(config.sms.as_ref().unwrap().auth_token, "t0k3n-from-file");
        assert_eq!(config.email.as_ref().unwrap().smtp.password.as_deref(), Some("pa55-from-file"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("t0k3n") && !debug.contains("pa55"), "{debug}");

        let both = WorkerConfig::load(None, &overrides(&[("sms.auth_token", "t")])).unwrap_err().to_string();
        assert!(both.contains("sms.auth_token_file") && both.contains("not both"), "{both}");
        let mut both_email = with_email.clone();
        both_email.push(("email.password", "p"));
        let both = WorkerConfig::load(None, &overrides(&both_email)).unwrap_err().to_string();
        assert!(both.contains("email.password_file") && both.contains("not both"), "{both}");

        std::fs::write(&token, "\n").unwrap();
        let empty = WorkerConfig::load(None, &overrides(&[])).unwrap_err().to_string();
        assert!(empty.contains("sms.auth_token_file") && empty.contains("is empty"), "{empty}");
        std::fs::remove_file(&token).unwrap();
        let missing = WorkerConfig::load(None, &overrides(&[])).unwrap_err().to_string();
        assert!(
            missing.contains("sms.auth_token_file: cannot read") && missing.contains("sms-auth-token"),
            "{missing}"
        );
    }

    /// `with_sms()` and an `[sms.inbound]` at `public_url`.
    fn with_inbound(public_url: &str) -> Vec<(String, String)> {
        let mut overrides = with_sms();
        for (key, value) in [
            ("sms.inbound.listen", "127.0.0.1:8444"),
            ("sms.inbound.public_url", public_url),
            ("sms.inbound.tls_cert", "tls/webhook.pem"),
            ("sms.inbound.tls_key", "tls/webhook.key"),
        ] {
            overrides.push((key.into(), value.into()));
        }
        overrides
    }

    #[test]
    fn the_inbound_webhook_is_read_and_served_on_its_public_urls_path() {
        assert!(
            WorkerConfig::load(None, &with_sms()).unwrap().sms.unwrap().inbound.is_none(),
            "off by default"
        );
        let url = "https://worker.clinic.example:8444/sms/inbound?clinic=soleil";
        let config = WorkerConfig::load(None, &with_inbound(url)).unwrap();
        let inbound = config.sms.unwrap().inbound.unwrap();
        assert_eq!(inbound.public_url, url, "kept as written: Twilio signs it");
        assert_eq!(inbound.path().unwrap(), "/sms/inbound");
        assert_eq!(inbound.listen, "127.0.0.1:8444".parse().unwrap());
        for (url, path) in [
            ("https://worker.clinic.example", "/"),
            ("https://worker.clinic.example/", "/"),
            ("http://127.0.0.1:8444/twilio/sms_in-1.v2", "/twilio/sms_in-1.v2"),
            ("http://localhost/in", "/in"),
            ("http://[::1]:8444/in", "/in"),
        ] {
            let config = WorkerConfig::load(None, &with_inbound(url)).unwrap();
            assert_eq!(config.sms.unwrap().inbound.unwrap().path().unwrap(), path, "{url}");
        }
    }

    #[test]
    fn bad_inbound_settings_are_named() {
        let cases = [
            ("http://worker.clinic.example/sms", "sms.inbound.public_url: must be an https://"),
            ("http://10.0.0.5/sms", "sms.inbound.public_url: must be an https://"),
            ("ftp://localhost/sms", "sms.inbound.public_url: must be an https://"),
            ("worker.clinic.example/sms", "sms.inbound.public_url: not a URL"),
            ("https://user:pass@worker.clinic.example/sms", "sms.inbound.public_url: must not carry"),
            ("https://worker.clinic.example/sms#in", "sms.inbound.public_url: must not have a #fragment"),
            ("https://worker.clinic.example/sms/{id}", "sms.inbound.public_url: the path"),
            ("https://worker.clinic.example/sms/:id", "sms.inbound.public_url: the path"),
            ("https://worker.clinic.example/sms/*", "sms.inbound.public_url: the path"),
            ("https://worker.clinic.example/caf%C3%A9", "sms.inbound.public_url: the path"),
        ];
        for (url, expected) in cases {
            let err = WorkerConfig::load(None, &with_inbound(url)).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
        let url = "https://worker.clinic.example/sms";
        let mut same_port = with_inbound(url);
        same_port.push(("metrics_listen".into(), "127.0.0.1:8444".into()));
        let err = WorkerConfig::load(None, &same_port).unwrap_err().to_string();
        assert!(err.contains("sms.inbound.listen: must differ from metrics_listen"), "{err}");
        let mut no_key = with_inbound(url);
        no_key.retain(|(key, _)| key != "sms.inbound.tls_key");
        let err = WorkerConfig::load(None, &no_key).unwrap_err().to_string();
        assert!(err.contains("tls_key"), "{err}");
        let mut typo = with_inbound(url);
        typo.push(("sms.inbound.pubic_url".into(), url.into()));
        let err = WorkerConfig::load(None, &typo).unwrap_err().to_string();
        assert!(err.contains("pubic_url"), "{err}");
    }

    #[test]
    fn an_inbound_webhook_without_the_sms_account_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("worker.toml");
        let inbound = "[sms.inbound]\nlisten = \"0.0.0.0:8444\"\npublic_url = \"https://worker.clinic.example/sms\"\ntls_cert = \"w.pem\"\ntls_key = \"w.key\"\n";
        std::fs::write(
            &file,
            format!("[email]\nhost = \"127.0.0.1\"\nport = 2525\nfrom = \"s@clinic.example.org\"\n{inbound}"),
        )
        .unwrap();
        let err = WorkerConfig::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("sms.inbound: needs the [sms] account"), "{err}");
        // With the account but through the local outbox: the token is still needed.
        let mut outbox = with_inbound("https://worker.clinic.example/sms");
        outbox.retain(|(key, _)| key != "sms.auth_token");
        outbox.push(("sms.outbox".into(), dir.path().join("outbox.jsonl").display().to_string()));
        let err = WorkerConfig::load(None, &outbox).unwrap_err().to_string();
        assert!(err.contains("sms.inbound: needs the [sms] account"), "{err}");
    }

    #[test]
    fn the_email_outbox_is_read_and_needs_the_email_section() {
        let email =
            [("email.host", "127.0.0.1"), ("email.port", "2525"), ("email.from", "s@clinic.example.org")];
        let mut overrides: Vec<(String, String)> =
            email.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(WorkerConfig::load(None, &overrides).unwrap().email_outbox.is_none(), "off by default");
        overrides.push(("email_outbox".into(), "state/mail".into()));
        let config = WorkerConfig::load(None, &overrides).unwrap();
        assert_eq!(config.email_outbox, Some(PathBuf::from("state/mail")));

        let mut alone = with_sms();
        alone.push(("email_outbox".into(), "state/mail".into()));
        let err = WorkerConfig::load(None, &alone).unwrap_err().to_string();
        assert!(err.contains("email_outbox: needs the [email] section"), "{err}");
        overrides.push(("email_outbox".into(), String::new()));
        let err = WorkerConfig::load(None, &overrides).unwrap_err().to_string();
        assert!(err.contains("email_outbox: must not be empty"), "{err}");
    }

    #[test]
    fn debug_hides_the_secrets() {
        let mut overrides = with_sms();
        overrides.push(("sms.auth_token".into(), "s3cr3t-token".into()));
        let config = WorkerConfig::load(None, &overrides).unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t-token"));
    }
}
