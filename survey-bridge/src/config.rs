//! Configuration: a TOML file, overridden by `SURVEY_BRIDGE_*` environment variables, then by
//! flags, as for the cache (see `cache_server::config::load_layered`).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use cache_server::config::{AuditConfig, ConfigError, LogConfig, TlsConfig, check_line, load_layered};
use serde::{Deserialize, Serialize};

/// The environment variable prefix: `SURVEY_BRIDGE_LINK_VALID_DAYS=14`.
pub const ENV_PREFIX: &str = "SURVEY_BRIDGE_";

/// Everything the bridge needs to start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Where the patient pages are served (HTTPS).
    pub listen: SocketAddr,
    /// Where the invitation ledger is served (gRPC over mutual TLS, for the outreach worker).
    pub grpc_listen: SocketAddr,
    /// A plain-HTTP port that only redirects to the HTTPS pages; none when absent.
    pub http_listen: Option<SocketAddr>,
    /// Where Prometheus metrics are served over plain HTTP (`GET /metrics`); none when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// `sqlite://path?mode=rwc` (default) or `postgres://user@host:port/db`.
    pub database_url: String,
    /// Days an invitation link works after it was sent.
    pub link_valid_days: u32,
    /// A questionnaire TOML file; the built-in primary-care questionnaire when absent.
    pub questionnaire: Option<PathBuf>,
    /// Per-campaign settings, by campaign id.
    pub campaigns: BTreeMap<String, CampaignConfig>,
    /// Per-site clinic identity, by site id, shown on the consent page (the same
    /// `[sites."<id>"]` entries as the worker's).
    pub sites: BTreeMap<String, SiteConfig>,
    /// The contact cache, which declines are forwarded to (`OptOut`). Without it they wait
    /// in the outbox.
    pub cache: Option<CacheClientConfig>,
    /// Results posted by external survey tools; the webhook is off when absent.
    pub webhook: Option<WebhookConfig>,
    /// How `survey-bridge import` reads a CSV export.
    pub import: ImportConfig,
    /// The reports for providers, site administrators and analysts.
    pub reports: ReportsConfig,
    /// How answers wait in the pool before they are counted.
    pub answers: AnswersConfig,
    /// Failed link look-ups allowed per client address and link prefix per minute before
    /// that prefix is refused to the address for a minute (counted in memory only;
    /// addresses are never stored).
    pub max_bad_links_per_minute: u32,
    /// Addresses or networks (`10.0.0.7`, `10.0.0.0/8`) of the load balancers in front of
    /// the pages, whose PROXY protocol v2 header or `X-Forwarded-For` names the client.
    /// Empty (the default): the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// Seconds requests in flight get to finish after SIGTERM or SIGINT.
    pub shutdown_grace_seconds: u64,
    /// Certificates: the server's, and the CA whose client certificates identify callers of
    /// the ledger (`spiffe://contactcache/outreach`).
    pub tls: TlsConfig,
    /// A file with 64 hex digits from which the keys for GUID HMACs and form tokens are
    /// derived. Keep it: without it the ledger's GUIDs cannot be matched again.
    pub key_file: PathBuf,
    /// The audit trail.
    pub audit: AuditConfig,
    /// Logging.
    pub log: LogConfig,
}

/// How the bridge reaches the contact cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheClientConfig {
    /// The cache's gRPC address, e.g. `https://localhost:50051`.
    pub url: String,
    /// The name in the cache's certificate.
    pub server_name: String,
    /// The CA that signed the cache's certificate.
    pub ca: PathBuf,
    /// The bridge's client certificate (URI SAN `spiffe://contactcache/bridge`).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// Seconds before the first retry of a failed delivery; each retry doubles it, up to an
    /// hour. Also how often the outbox is looked at.
    pub retry_seconds: u64,
}

impl Default for CacheClientConfig {
    fn default() -> Self {
        CacheClientConfig {
            url: "https://localhost:50051".into(),
            server_name: "localhost".into(),
            ca: PathBuf::from("certs/ca.pem"),
            cert: PathBuf::from("certs/bridge.pem"),
            key: PathBuf::from("certs/bridge.key"),
            retry_seconds: 30,
        }
    }
}

/// The results webhook, `POST /results`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// A file holding the secret shared with the survey tool (at least 32 characters;
    /// surrounding whitespace ignored). Requests carry its HMAC-SHA256 over timestamp and
    /// body.
    pub secret_file: PathBuf,
    /// How far a request's timestamp may be from the bridge's clock, in seconds; older
    /// requests are refused as replays.
    pub max_skew_seconds: u64,
    /// The largest body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            secret_file: PathBuf::from("certs/webhook.secret"),
            max_skew_seconds: 300,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// How a CSV export of an external survey maps onto the questionnaire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// The header of the column holding the GUID.
    pub guid_column: String,
    /// CSV header -> question id. When empty, columns named after question ids are read.
    /// Other columns are ignored.
    pub columns: BTreeMap<String, String>,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig { guid_column: "guid".into(), columns: BTreeMap::new() }
    }
}

/// The reports and the sign-in in front of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// Counts under this are suppressed in every report (at least 1).
    pub min_cell: u64,
    /// Days after a month ends before it is released to the reports (0 to 60). Reports show
    /// released months, quarters and years only; what comes later for a released month
    /// counts in the month it comes in.
    pub settle_days: u32,
    /// Failed sign-ins (password or code) in a row before an account is locked.
    pub max_failures: u32,
    /// How long a locked account stays locked, in minutes.
    pub lockout_minutes: u32,
    /// A session ends after this many minutes without a request.
    pub session_minutes: u32,
    /// The name authenticator apps show beside the account.
    pub totp_issuer: String,
    /// Differential privacy (off when absent): each unit's counts are released with
    /// discrete Laplace noise that spends this much privacy (epsilon, 0.1 to 10) per patient
    /// per unit. The defence against planted patients, which suppression cannot stop; it
    /// applies to units released after it is turned on.
    pub noise_epsilon: Option<f64>,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            min_cell: 5,
            settle_days: 7,
            max_failures: 5,
            lockout_minutes: 15,
            session_minutes: 30,
            totp_issuer: "Survey bridge".into(),
            noise_epsilon: None,
        }
    }
}

/// The answer pool: responses wait there, sealed and apart from their invitations, until a
/// fold counts a whole group (site, provider, campaign, month) at once: when it holds
/// `reports.min_cell` responses, or when its month is over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnswersConfig {
    /// Seconds between folds (at least 1).
    pub fold_every_seconds: u64,
}

impl Default for AnswersConfig {
    fn default() -> Self {
        AnswersConfig { fold_every_seconds: 3600 }
    }
}

/// One campaign's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignConfig {
    /// An external survey to send consenting patients to, e.g.
    /// `https://survey.example.org/start?id={guid}`. `{guid}` is the only patient-specific
    /// part and must appear exactly once. Absent: the built-in survey.
    pub external_url: Option<String>,
}

/// A site's clinic as patients know it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// The clinic's name, e.g. `Clinique Soleil`: the consent page says who asks.
    pub name: String,
    /// One line with the clinic's address and a phone number, email or web address: shown
    /// under the consent form for questions. Optional.
    pub contact: Option<String>,
}

/// The longest clinic name and contact line, in characters.
const MAX_SITE_NAME: usize = 100;
const MAX_SITE_CONTACT: usize = 200;

impl SiteConfig {
    /// Checks the entry of site `id`: a name, one line each, not overlong.
    fn check(&self, id: &str) -> Result<(), ConfigError> {
        if id.trim().is_empty() {
            return Err(ConfigError::new("sites: a site id must not be empty"));
        }
        check_line(&format!("sites.{id}.name"), &self.name, MAX_SITE_NAME)?;
        match &self.contact {
            Some(contact) => check_line(&format!("sites.{id}.contact"), contact, MAX_SITE_CONTACT),
            None => Ok(()),
        }
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
            http_listen: None,
            metrics_listen: None,
            database_url: "sqlite://state/survey-bridge.db?mode=rwc".into(),
            link_valid_days: 30,
            questionnaire: None,
            campaigns: BTreeMap::new(),
            sites: BTreeMap::new(),
            cache: None,
            webhook: None,
            import: ImportConfig::default(),
            reports: ReportsConfig::default(),
            answers: AnswersConfig::default(),
            max_bad_links_per_minute: 20,
            trusted_proxies: Vec::new(),
            shutdown_grace_seconds: 20,
            tls: TlsConfig {
                cert: PathBuf::from("certs/survey-bridge.pem"),
                key: PathBuf::from("certs/survey-bridge.key"),
                client_ca: PathBuf::from("certs/ca.pem"),
                handshake_timeout_seconds: 10,
            },
            key_file: PathBuf::from("certs/survey-bridge-secret.key"),
            audit: AuditConfig {
                path: PathBuf::from("survey-bridge-audit.jsonl"),
                key_file: PathBuf::from("certs/audit.key"),
            },
            log: LogConfig::default(),
        }
    }
}

impl BridgeConfig {
    /// Reads `file` (if given), then the environment, then `overrides`, and checks the result.
    pub fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<BridgeConfig, ConfigError> {
        let config: BridgeConfig = load_layered(file, ENV_PREFIX, overrides)?;
        config.check()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(1..=30).contains(&self.link_valid_days) {
            return Err(ConfigError::new("link_valid_days must be between 1 and 30"));
        }
        if self.reports.settle_days > 60 {
            return Err(ConfigError::new("reports.settle_days must be between 0 and 60"));
        }
        if self.answers.fold_every_seconds == 0 {
            return Err(ConfigError::new("answers.fold_every_seconds must be at least 1"));
        }
        if self.max_bad_links_per_minute == 0 {
            return Err(ConfigError::new("max_bad_links_per_minute must be at least 1"));
        }
        crate::client::TrustedProxies::parse(&self.trusted_proxies).map_err(ConfigError::new)?;
        for (id, site) in &self.sites {
            site.check(id)?;
        }
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres")) {
            return Err(ConfigError::new("database_url must start with sqlite: or postgres://"));
        }
        for (id, campaign) in &self.campaigns {
            if let Some(url) = &campaign.external_url {
                let ok = url.starts_with("https://") && url.matches("{guid}").count() == 1;
                if !ok {
                    return Err(ConfigError::new(format!(
                        "campaigns.{id}.external_url must be https:// and hold {{guid}} exactly once"
                    )));
                }
            }
        }
        if let Some(webhook) = &self.webhook {
            if !(1..=3600).contains(&webhook.max_skew_seconds) {
                return Err(ConfigError::new("webhook.max_skew_seconds must be between 1 and 3600"));
            }
            if !(1024..=1024 * 1024).contains(&webhook.max_body_bytes) {
                return Err(ConfigError::new("webhook.max_body_bytes must be between 1024 and 1048576"));
            }
            if !webhook.secret_file.is_file() {
                return Err(ConfigError::new(format!(
                    "webhook.secret_file: {} is not a readable file",
                    webhook.secret_file.display()
                )));
            }
        }
        if self.reports.min_cell == 0 {
            return Err(ConfigError::new("reports.min_cell must be at least 1"));
        }
        if let Some(epsilon) = self.reports.noise_epsilon
            && !(0.1..=10.0).contains(&epsilon)
        {
            return Err(ConfigError::new("reports.noise_epsilon must be between 0.1 and 10"));
        }
        if self.reports.max_failures == 0 || self.reports.lockout_minutes == 0 {
            return Err(ConfigError::new(
                "reports.max_failures and reports.lockout_minutes must be at least 1",
            ));
        }
        if !(1..=720).contains(&self.reports.session_minutes) {
            return Err(ConfigError::new("reports.session_minutes must be between 1 and 720"));
        }
        if self.reports.totp_issuer.trim().is_empty() || self.reports.totp_issuer.contains(':') {
            return Err(ConfigError::new("reports.totp_issuer must be non-empty and hold no ':'"));
        }
        if self.import.guid_column.trim().is_empty() {
            return Err(ConfigError::new("import.guid_column must not be empty"));
        }
        if let Some(http) = self.http_listen
            && http == self.listen
        {
            return Err(ConfigError::new("http_listen must differ from listen"));
        }
        if let Some(metrics) = self.metrics_listen
            && [Some(self.listen), Some(self.grpc_listen), self.http_listen].contains(&Some(metrics))
        {
            return Err(ConfigError::new(
                "metrics_listen must differ from listen, grpc_listen and http_listen",
            ));
        }
        if let Some(cache) = &self.cache {
            if !cache.url.starts_with("https://") {
                return Err(ConfigError::new("cache.url must start with https://"));
            }
            if cache.retry_seconds == 0 {
                return Err(ConfigError::new("cache.retry_seconds must be at least 1"));
            }
            for (name, path) in
                [("cache.ca", &cache.ca), ("cache.cert", &cache.cert), ("cache.key", &cache.key)]
            {
                if !path.is_file() {
                    return Err(ConfigError::new(format!(
                        "{name}: {} is not a readable file",
                        path.display()
                    )));
                }
            }
        }
        for (name, path) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.client_ca", &self.tls.client_ca),
            ("key_file", &self.key_file),
            ("audit.key_file", &self.audit.key_file),
        ] {
            if !path.is_file() {
                return Err(ConfigError::new(format!("{name}: {} is not a readable file", path.display())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, contact: Option<&str>) -> SiteConfig {
        SiteConfig { name: name.into(), contact: contact.map(Into::into) }
    }

    #[test]
    fn site_entries_are_read_like_the_workers_and_checked_by_name() {
        let text = "[sites.\"site-1001\"]\nname = \"Clinique Soleil\"\ncontact = \"613-999-0150\"\n";
        let config: BridgeConfig = toml::from_str(text).unwrap();
        assert_eq!(config.sites["site-1001"], site("Clinique Soleil", Some("613-999-0150")));

        let long = "x".repeat(101);
        for (entry, fault) in [
            (site(" ", None), "sites.s1.name: must not be empty"),
            (site("Soleil\nFake", None), "sites.s1.name: must be one line"),
            (site(&long, None), "sites.s1.name: must be at most 100 characters"),
            (site("Soleil", Some("a\tb")), "sites.s1.contact: must be one line"),
        ] {
            let mut config = BridgeConfig::default();
            config.sites.insert("s1".into(), entry);
            let err = config.check().unwrap_err().to_string();
            assert!(err.contains(fault), "{err}");
        }
        // A good entry passes on to the next check (the files, absent here).
        let mut config = BridgeConfig::default();
        config.sites.insert("s1".into(), site("Clinique Soleil", None));
        assert!(!config.check().unwrap_err().to_string().contains("sites"));
    }

    #[test]
    fn noise_is_off_unless_epsilon_is_given_and_in_range() {
        assert_eq!(BridgeConfig::default().reports.noise_epsilon, None);
        let config: BridgeConfig = toml::from_str("[reports]\nnoise_epsilon = 1.0\n").unwrap();
        assert_eq!(config.reports.noise_epsilon, Some(1.0));
        assert!(!config.check().unwrap_err().to_string().contains("noise_epsilon"));
        for bad in [0.0, 0.05, 11.0, f64::NAN, -1.0] {
            let mut config = BridgeConfig::default();
            config.reports.noise_epsilon = Some(bad);
            let err = config.check().unwrap_err().to_string();
            assert!(err.contains("reports.noise_epsilon must be between 0.1 and 10"), "{bad}: {err}");
        }
    }
}
