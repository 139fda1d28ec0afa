//! Configuration: a TOML file, overridden by `CACHE_SERVER_*` environment variables, then by
//! flags. Everything is checked before anything is bound.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
    value::Value,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Everything the daemon needs to start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where gRPC (TLS only) listens.
    pub listen: SocketAddr,
    /// Where Prometheus metrics are served over plain HTTP; none when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds that requests in flight get to finish after SIGTERM or SIGINT.
    pub shutdown_grace_seconds: u64,
    /// Threads that serve gRPC connections, each its own event loop (0: one per CPU).
    pub connection_threads: usize,
    /// Seconds a gRPC connection may go without a call before it is closed (its buffers,
    /// which held its calls' bytes, are then freed and zeroed); clients reconnect.
    pub idle_timeout_seconds: u64,
    /// Certificates.
    pub tls: TlsConfig,
    /// Retention and bounds.
    pub store: StoreConfig,
    /// Memory protection.
    pub memory: MemoryConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// Lock-outs of callers and peers that fail too often.
    pub lockout: LockoutConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Where audit lines go and the key that hashes GUIDs in them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A file to append JSON lines to (created owner-only), or `-` for stdout.
    pub path: PathBuf,
    /// A file holding the 256-bit audit key as 64 hex digits. Keep it: the same key must be
    /// used across restarts for a GUID's events to be found together.
    pub key_file: PathBuf,
}

/// Limits on failures before a caller or peer is refused for a while.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// NOT_FOUND answers to GetContact/DeleteContact/OptOut/Ack a caller may get per window.
    pub max_not_found: u32,
    /// The window for `max_not_found`, in seconds; also how long the lock-out lasts.
    pub not_found_window_seconds: u64,
    /// Failed TLS handshakes a peer address may have per window.
    pub max_handshake_failures: u32,
    /// The window for `max_handshake_failures`, in seconds; also how long the lock-out lasts.
    pub handshake_window_seconds: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { path: PathBuf::from("audit.jsonl"), key_file: PathBuf::from("certs/audit.key") }
    }
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            max_not_found: 100,
            not_found_window_seconds: 60,
            max_handshake_failures: 20,
            handshake_window_seconds: 60,
        }
    }
}

/// The server's certificate and key, as PEM files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// The CA whose client certificates identify callers (mutual TLS).
    pub client_ca: PathBuf,
    /// Seconds a client gets to finish the TLS handshake.
    pub handshake_timeout_seconds: u64,
}

/// Retention, bounds and the sweep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Days a contact stays readable: 1 to 30.
    pub retention_days: u32,
    /// Most contacts held at once.
    pub max_entries: usize,
    /// Most bytes held at once.
    pub max_bytes: usize,
    /// Largest gRPC request message accepted, in bytes; a larger one is answered
    /// RESOURCE_EXHAUSTED (`serve::limit`).
    pub max_message_bytes: usize,
    /// When the sweep runs, as a cron expression in UTC with seconds:
    /// `sec min hour day-of-month month day-of-week`.
    pub sweep_schedule: String,
    /// The most contacts one LeaseDue may ask for: 1 to 10000.
    pub max_lease_batch: u32,
}

/// Memory protection at start-up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Start even if memory cannot be locked (development only; logged loudly and reported
    /// in the daemon's `*_memory_locked` metric, and by the cache in `Stats`).
    pub allow_unlocked: bool,
}

/// Log filter and format.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `cache_server=debug,info`.
    pub filter: String,
    /// `plain` or `json`.
    pub format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: None,
            shutdown_grace_seconds: 20,
            connection_threads: 0,
            idle_timeout_seconds: 30,
            tls: TlsConfig::default(),
            store: StoreConfig::default(),
            memory: MemoryConfig::default(),
            audit: AuditConfig::default(),
            lockout: LockoutConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::from("certs/cache-server.pem"),
            key: PathBuf::from("certs/cache-server.key"),
            client_ca: PathBuf::from("certs/ca.pem"),
            handshake_timeout_seconds: 10,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention_days: 30,
            max_entries: 10_000_000,
            max_bytes: 3 << 30,
            max_message_bytes: 16 * 1024,
            sweep_schedule: "0 5 0 * * *".into(),
            max_lease_batch: 500,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { filter: "info,tokio_cron_scheduler=warn".into(), format: LogFormat::Plain }
    }
}

/// The configuration is unusable; the message says which setting and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// A configuration error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

/// Checks a setting that is shown to patients as one line (a clinic's name or contact line):
/// not blank, no line breaks or other control characters, at most `max` characters. The
/// error names `setting`.
pub fn check_line(setting: &str, value: &str, max: usize) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(format!("{setting}: must not be empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(ConfigError::new(format!(
            "{setting}: must be one line, without line breaks or other control characters"
        )));
    }
    if value.chars().count() > max {
        return Err(ConfigError::new(format!("{setting}: must be at most {max} characters")));
    }
    Ok(())
}

/// The environment variable prefix: `CACHE_SERVER_STORE__MAX_ENTRIES=5` sets
/// `store.max_entries`.
pub const ENV_PREFIX: &str = "CACHE_SERVER_";

impl Config {
    /// Reads `file` (if given), then the environment, then `overrides` (`key.path=value`,
    /// later ones win), and checks the result.
    pub fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<Config, ConfigError> {
        let config: Config = load_layered(file, ENV_PREFIX, overrides)?;
        config.check()?;
        Ok(config)
    }

    /// The SHA-256 of this configuration, in hex, for the audit log's SERVER_START line.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(&json))
    }

    /// Checks values that parse but cannot work.
    pub fn check(&self) -> Result<(), ConfigError> {
        let s = &self.store;
        if !(1..=30).contains(&s.retention_days) {
            return Err(ConfigError::new("store.retention_days must be between 1 and 30"));
        }
        if s.max_entries == 0 {
            return Err(ConfigError::new("store.max_entries must be at least 1"));
        }
        if s.max_bytes < 1024 {
            return Err(ConfigError::new("store.max_bytes must be at least 1024"));
        }
        if !(1024..=4 << 20).contains(&s.max_message_bytes) {
            return Err(ConfigError::new("store.max_message_bytes must be between 1024 and 4194304"));
        }
        if !(1..=10_000).contains(&s.max_lease_batch) {
            return Err(ConfigError::new("store.max_lease_batch must be between 1 and 10000"));
        }
        if tokio_cron_scheduler::Job::new_async(s.sweep_schedule.as_str(), |_, _| Box::pin(async {})).is_err()
        {
            return Err(ConfigError::new(
                "store.sweep_schedule is not a cron expression (sec min hour day-of-month month day-of-week)",
            ));
        }
        if self.connection_threads > 1024 {
            return Err(ConfigError::new("connection_threads must be at most 1024 (0: one per CPU)"));
        }
        if !(1..=3600).contains(&self.idle_timeout_seconds) {
            return Err(ConfigError::new("idle_timeout_seconds must be between 1 and 3600"));
        }
        if self.tls.handshake_timeout_seconds == 0 {
            return Err(ConfigError::new("tls.handshake_timeout_seconds must be at least 1"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .map_err(|_| ConfigError::new("log.filter is not a tracing filter"))?;
        let l = &self.lockout;
        if l.max_not_found == 0 || l.max_handshake_failures == 0 {
            return Err(ConfigError::new(
                "lockout.max_not_found and lockout.max_handshake_failures must be at least 1",
            ));
        }
        if l.not_found_window_seconds == 0 || l.handshake_window_seconds == 0 {
            return Err(ConfigError::new("lockout windows must be at least 1 second"));
        }
        for (name, path) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.client_ca", &self.tls.client_ca),
            ("audit.key_file", &self.audit.key_file),
        ] {
            if !path.is_file() {
                return Err(ConfigError::new(format!(
                    "{name}: {} is not a readable file (make a development set with `cache-server certs`)",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}

/// Reads a configuration of type `T`: its defaults, then `file` (if given), then environment
/// variables with `env_prefix` (sections joined by `__`), then `overrides` (`key.path=value`,
/// later ones win). Values are not checked beyond their types.
pub fn load_layered<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    env_prefix: &str,
    overrides: &[(String, String)],
) -> Result<T, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError::new(format!("config file {} does not exist", file.display())));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    figment = figment.merge(Env::prefixed(env_prefix).split("__"));
    for (key, value) in overrides {
        let value: Value = value.parse().unwrap_or_else(|never| match never {});
        figment = figment.merge(Serialized::global(key, value));
    }
    figment.extract().map_err(|e| ConfigError::new(one_line(&e)))
}

fn one_line(e: &figment::Error) -> String {
    e.to_string().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overrides pointing every file setting at a file that exists.
    fn with_tls(dir: &Path) -> Vec<(String, String)> {
        ["tls.cert", "tls.key", "tls.client_ca", "audit.key_file"]
            .iter()
            .map(|key| {
                let path = dir.join(key);
                std::fs::write(&path, "x").unwrap();
                (key.to_string(), path.display().to_string())
            })
            .collect()
    }

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:7000\"\n[store]\nmax_entries = 5\nretention_days = 7\n")
            .unwrap();
        let mut overrides = with_tls(dir.path());
        overrides.push(("store.max_entries".into(), "9".into()));
        overrides.push(("memory.allow_unlocked".into(), "true".into()));
        let config = Config::load(Some(&file), &overrides).unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.store.max_entries, 9);
        assert_eq!(config.store.retention_days, 7);
        assert!(config.memory.allow_unlocked);
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("store.retention_days", "31", "store.retention_days"),
            ("store.max_entries", "0", "store.max_entries"),
            ("store.sweep_schedule", "every day", "store.sweep_schedule"),
            ("listen", "nowhere", "listen"),
            ("store.no_such_thing", "1", "no_such_thing"),
            ("log.filter", "a=b=c", "log.filter"),
            ("lockout.max_not_found", "0", "lockout.max_not_found"),
            ("store.max_lease_batch", "0", "store.max_lease_batch"),
            ("connection_threads", "5000", "connection_threads"),
            ("idle_timeout_seconds", "0", "idle_timeout_seconds"),
            ("idle_timeout_seconds", "86400", "idle_timeout_seconds"),
            ("connection_threads", "-1", "connection_threads"),
        ];
        for (key, value, named) in cases {
            let mut overrides = with_tls(dir.path());
            overrides.push((key.into(), value.into()));
            let e = Config::load(None, &overrides).unwrap_err().to_string();
            assert!(e.contains(named), "{key}={value}: {e}");
            assert!(!e.contains('\n'));
        }
        let e = Config::load(None, &[]).unwrap_err().to_string();
        assert!(e.contains("tls.cert"), "{e}");
        let e = Config::load(Some(Path::new("/nonexistent.toml")), &[]).unwrap_err().to_string();
        assert!(e.contains("/nonexistent.toml"), "{e}");
    }
}
