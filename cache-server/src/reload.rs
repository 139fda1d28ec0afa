//! Reloading without a restart (which would empty the cache): on SIGHUP the daemon reads its
//! certificate, key and client CA again and reopens its audit file.
//!
//! Each part that fails is logged, counted and audited, and stays as it was: a certificate
//! half copied into place leaves the daemon serving the old one, and an audit file that
//! cannot be opened leaves the lines going to the file in use. Handshakes from the reload
//! on use the new material; connections already open keep theirs. The rest of the
//! configuration (addresses, store bounds, schedule) is read at start only.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{error, info};

use crate::{
    audit::{Action, Actor, Audit, Event},
    config::TlsConfig,
    tls::{self, Acceptor, TlsError},
};

/// Asks the daemon to reload, once per message (SIGHUP in the binary).
pub type Reloads = mpsc::Receiver<()>;

/// A message on each SIGHUP; several that arrive before the daemon gets to the first count
/// as one. For the daemons' `main` (the survey bridge's too).
pub fn on_sighup() -> std::io::Result<Reloads> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            info!("SIGHUP received: reloading");
            let _ = tx.try_send(());
        }
    });
    Ok(rx)
}

/// What a reload touches.
#[derive(Debug)]
pub struct Reloader {
    /// Where the TLS material is read from.
    pub tls: TlsConfig,
    /// Takes the new TLS configuration.
    pub acceptor: Arc<Acceptor>,
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
        let result = reopen_audit_and(&self.audit, || {
            let loaded = tls::load_server(&self.tls.cert, &self.tls.key, &self.tls.client_ca)?;
            self.acceptor.replace_config(loaded.config);
            record_expiry(loaded.not_after);
            Ok(())
        });
        metrics::counter!("cache_reloads_total", "result" => result).increment(1);
        result == "ok"
    }
}

/// One reload, as the cache and the survey bridge do it: reopens `audit`, then runs
/// `read_tls`, which reads the TLS material again and puts it in use, or leaves what is in
/// use as it was and says why. Logs and audits the outcome (`RELOAD`, with what failed in
/// `detail`) and returns it: `"ok"` or `"error"`, for the caller's metric.
pub fn reopen_audit_and(audit: &Audit, read_tls: impl FnOnce() -> Result<(), TlsError>) -> &'static str {
    let mut failures = Vec::new();
    if let Err(err) = audit.reopen() {
        failures.push(err.to_string());
    }
    if let Err(err) = read_tls() {
        failures.push(err.to_string());
    }
    let detail = failures.join("; ");
    let result = if failures.is_empty() { "ok" } else { "error" };
    if failures.is_empty() {
        info!("reloaded: certificates read again, audit file reopened");
    } else {
        error!(cause = %detail, "reload failed; what failed is kept as it was");
    }
    let mut event = Event::new(Action::Reload, result, Actor::System);
    event.detail = (!detail.is_empty()).then_some(detail.as_str());
    if let Err(err) = audit.record(event) {
        error!(cause = %err, "cannot audit the reload");
    }
    result
}

/// Publishes when the server's certificate expires (`cache_tls_certificate_expiry_timestamp_seconds`),
/// for the alert that asks for a new one in time.
pub fn record_expiry(not_after: i64) {
    metrics::gauge!("cache_tls_certificate_expiry_timestamp_seconds").set(not_after as f64);
}
