//! Configuration: a TOML file, overridden by `EMR_CONNECTOR_*` environment variables
//! (sections joined by `__`, e.g. `EMR_CONNECTOR_CACHE__URL`), then by flags, as for the
//! daemons (see [`cache_server::config::load_layered`]). Checked before anything is read or
//! sent.
//!
//! ```toml
//! send_after_hours = 2
//! default_region = "CA"   # phone numbers written without a country code are numbers of CA
//!
//! [cache]
//! url = "https://cache.example.org:50051"
//! server_name = "cache.example.org"   # the name in the cache's certificate; default: the URL's host
//! ca = "/etc/emr-connector/ca.pem"
//! cert = "/etc/emr-connector/emr-site-1001.pem"
//! key = "/etc/emr-connector/emr-site-1001.key"
//! ```

use std::path::{Path, PathBuf};

use cache_server::config::{ConfigError, load_layered};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::{Deserialize, Serialize};

use crate::phone::Region;

/// The environment variable prefix.
pub const ENV_PREFIX: &str = "EMR_CONNECTOR_";

/// The longest delay after an appointment: the longest retention (30 days).
pub const MAX_SEND_AFTER_HOURS: u32 = 24 * 30;

/// Everything a push needs besides the files it reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorConfig {
    /// Hours after the appointment that the invitation is due (0 to 720).
    pub send_after_hours: u32,
    /// The region of phone numbers written without a country code (`613-555-0101`): an
    /// ISO 3166 two-letter code, CA by default. Checked when the settings are read.
    pub default_region: Region,
    /// The contact cache and this connector's identity.
    pub cache: CacheConfig,
}

/// The contact cache, reached over mutual TLS with the certificate of an `emr` caller.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Its address, `https://host:port`.
    pub url: String,
    /// The name in its certificate; the URL's host when empty.
    pub server_name: String,
    /// The CA that signed its certificate.
    pub ca: PathBuf,
    /// This connector's certificate (URI SAN `spiffe://contactcache/emr/<site>`): one site per
    /// certificate.
    pub cert: PathBuf,
    /// This connector's private key.
    pub key: PathBuf,
    /// Seconds to wait for the connection.
    pub connect_timeout_seconds: u64,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            send_after_hours: 2,
            default_region: Region::default(),
            cache: CacheConfig::default(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            url: "https://localhost:50051".into(),
            server_name: String::new(),
            ca: PathBuf::from("certs/ca.pem"),
            cert: PathBuf::from("certs/emr.pem"),
            key: PathBuf::from("certs/emr.key"),
            connect_timeout_seconds: 10,
        }
    }
}

impl ConnectorConfig {
    /// Reads `file` (if given), then the environment, then `overrides` (`key.path=value`,
    /// later ones win). Call [`ConnectorConfig::check`] before using it.
    pub fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        load_layered(file, ENV_PREFIX, overrides)
    }

    /// Checks values that parse but cannot work, including that the certificate, key and CA
    /// files hold what they should. The message names the setting.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.send_after_hours > MAX_SEND_AFTER_HOURS {
            return Err(ConfigError::new(format!("send_after_hours must be at most {MAX_SEND_AFTER_HOURS}")));
        }
        let c = &self.cache;
        if !c.url.starts_with("https://") {
            return Err(ConfigError::new("cache.url must start with https:// (the cache speaks TLS only)"));
        }
        if tonic::transport::Endpoint::from_shared(c.url.clone()).is_err() {
            return Err(ConfigError::new("cache.url is not a URL"));
        }
        if c.connect_timeout_seconds == 0 {
            return Err(ConfigError::new("cache.connect_timeout_seconds must be at least 1"));
        }
        for (name, path) in [("cache.ca", &c.ca), ("cache.cert", &c.cert)] {
            let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ConfigError::new(format!("{name}: {}: {e}", path.display())))?
                .collect();
            match certs {
                Ok(certs) if !certs.is_empty() => {}
                Ok(_) => {
                    return Err(ConfigError::new(format!("{name}: {} holds no certificate", path.display())));
                }
                Err(e) => return Err(ConfigError::new(format!("{name}: {}: {e}", path.display()))),
            }
        }
        PrivateKeyDer::from_pem_file(&c.key)
            .map_err(|e| ConfigError::new(format!("cache.key: {}: {e}", c.key.display())))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "send_after_hours = 5\ndefault_region = \"us\"\n[cache]\nurl = \"https://cache:1\"\nserver_name = \"c\"\n",
        )
        .unwrap();
        let overrides = vec![("cache.url".to_string(), "https://other:2".to_string())];
        let config = ConnectorConfig::load(Some(&file), &overrides).unwrap();
        assert_eq!(config.send_after_hours, 5);
        assert_eq!(config.cache.url, "https://other:2");
        assert_eq!(config.cache.server_name, "c");
        assert_eq!(config.default_region.to_string(), "US");
        assert_eq!(ConnectorConfig::load(None, &[]).unwrap().default_region.to_string(), "CA");
    }

    #[test]
    fn an_unknown_region_is_refused_when_read() {
        let overrides = vec![("default_region".to_string(), "XX".to_string())];
        let e = ConnectorConfig::load(None, &overrides).unwrap_err().to_string();
        assert!(e.contains("is not a region") && e.contains("default_region"), "{e}");
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let pki = cache_server::certs::DevPki::generate(&["localhost".into()]).unwrap();
        pki.write_all(dir.path(), &["site-1001".into()]).unwrap();
        let good = ConnectorConfig {
            send_after_hours: 2,
            default_region: Region::default(),
            cache: CacheConfig {
                ca: dir.path().join("ca.pem"),
                cert: dir.path().join("emr-site-1001.pem"),
                key: dir.path().join("emr-site-1001.key"),
                ..CacheConfig::default()
            },
        };
        good.check().unwrap();

        type Spoil = fn(&mut ConnectorConfig);
        let cases: Vec<(Spoil, &str)> = vec![
            (|c| c.send_after_hours = 721, "send_after_hours"),
            (|c| c.cache.url = "http://localhost:50051".into(), "cache.url"),
            (|c| c.cache.url = "https://".into(), "cache.url"),
            (|c| c.cache.connect_timeout_seconds = 0, "cache.connect_timeout_seconds"),
            (|c| c.cache.ca = "/nonexistent/ca.pem".into(), "cache.ca"),
            (|c| c.cache.cert = c.cache.key.clone(), "cache.cert"),
            (|c| c.cache.key = c.cache.cert.clone(), "cache.key"),
        ];
        for (spoil, named) in cases {
            let mut config = good.clone();
            spoil(&mut config);
            let e = config.check().unwrap_err().to_string();
            assert!(e.starts_with(named), "{named}: {e}");
        }
        let e = ConnectorConfig::load(None, &[("cache.nope".into(), "1".into())]).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
