//! Reloading without a restart: on SIGHUP the bridge reads its certificate, key and client
//! CA again (for both its ports: the patient pages and the ledger) and reopens its audit
//! file, as the cache does (`cache_server::reload`).
//!
//! What fails is logged and audited (`RELOAD`, result `error`; the steps are
//! `cache_server::reload::reopen_audit_and`) and stays as it was: a
//! certificate half copied into place leaves the bridge serving the old one on both ports,
//! and an audit file that cannot be opened leaves the lines going to the file in use.
//! Handshakes from the reload on use the new material; connections already open keep
//! theirs. The rest of the configuration is read at start only.

use std::sync::Arc;

use cache_server::{
    audit::Audit,
    config::TlsConfig,
    reload::{self, Reloads},
    tls::{self, Acceptor, TlsError},
};
use rustls::ServerConfig;

use crate::https::{self, PagesTls};

/// What a reload touches.
#[derive(Debug)]
pub struct Reloader {
    /// Where the TLS material is read from.
    pub tls: TlsConfig,
    /// The patient pages' configuration.
    pub pages: Arc<PagesTls>,
    /// The ledger's acceptor (mutual TLS).
    pub ledger: Arc<Acceptor>,
    /// Reopened, and told what happened.
    pub audit: Arc<Audit>,
}

impl Reloader {
    /// Reloads on each message of `reloads` until its sender is gone.
    pub async fn serve(self, mut reloads: Reloads) {
        while reloads.recv().await.is_some() {
            self.reload();
        }
    }

    /// Reopens the audit file and reads the TLS material again. `true` if both worked.
    pub fn reload(&self) -> bool {
        let result = reload::reopen_audit_and(&self.audit, || {
            let loaded = load(&self.tls)?;
            self.ledger.replace_config(loaded.ledger);
            self.pages.replace(loaded.pages, loaded.not_after);
            Ok(())
        });
        metrics::counter!("bridge_reloads_total", "result" => result).increment(1);
        result == "ok"
    }
}

/// The bridge's two TLS configurations, made from the same files.
#[derive(Debug)]
pub struct Loaded {
    /// The ledger's (mutual TLS).
    pub ledger: Arc<ServerConfig>,
    /// The pages'.
    pub pages: Arc<ServerConfig>,
    /// When the certificate both serve expires, in Unix seconds.
    pub not_after: i64,
}

/// The bridge's two TLS configurations from the files `tls` names, at start and at each
/// reload: the ledger's (mutual TLS) and the pages'. Both are made before either is used:
/// they serve one certificate, and must not part ways when only one of them can be made.
/// Publishes when that certificate expires (`bridge_tls_certificate_expiry_timestamp_seconds`).
pub fn load(tls: &TlsConfig) -> Result<Loaded, TlsError> {
    let ledger = tls::load_server(&tls.cert, &tls.key, &tls.client_ca)?;
    let pages = https::server_config(&tls.cert, &tls.key)?;
    metrics::gauge!("bridge_tls_certificate_expiry_timestamp_seconds").set(ledger.not_after as f64);
    Ok(Loaded { ledger: ledger.config, pages, not_after: ledger.not_after })
}
