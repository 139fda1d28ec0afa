//! Health probes on the HTTPS port, for load balancers and the blackbox exporter.
//!
//! `GET /healthz` is liveness: 200 `ok` whenever the process answers. `GET /readyz` is
//! readiness: 200 `ready` when the database answers a trivial read within [`DB_TIMEOUT`] and
//! the certificate the pages serve has not expired; otherwise 503 and a short reason
//! (`database not answering`, `tls certificate expired`). The cause of a database failure
//! goes to the log, never into the body: the body names no address, file or secret.
//!
//! They touch no link: they do not count toward the link-guessing throttle and are not
//! audited (a probe every few seconds would fill the trail with nothing).

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use cache_server::clock::Clock;
use tracing::warn;

use crate::{db::Db, https::PagesTls};

/// How long readiness waits for the database: under the blackbox exporter's usual 5 s
/// timeout, so that a probe gets the reason rather than a timeout.
pub const DB_TIMEOUT: Duration = Duration::from_secs(3);

/// What readiness looks at.
#[derive(Debug, Clone)]
pub struct Probes {
    /// The database the pages and the ledger use.
    pub db: Db,
    /// The pages' TLS configuration in use.
    pub tls: Arc<PagesTls>,
    /// Time, for the certificate's expiry.
    pub clock: Clock,
}

/// `GET /healthz` and `GET /readyz`.
pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(Arc::new(probes))
}

async fn ready(State(probes): State<Arc<Probes>>) -> (StatusCode, &'static str) {
    match probes.unready().await {
        None => (StatusCode::OK, "ready"),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

impl Probes {
    /// Why the bridge cannot serve now, if it cannot.
    async fn unready(&self) -> Option<&'static str> {
        match tokio::time::timeout(DB_TIMEOUT, self.db.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                warn!(cause = %err, "readiness: the database failed");
                return Some("database not answering");
            }
            Err(_) => {
                warn!(
                    timeout_seconds = DB_TIMEOUT.as_secs(),
                    "readiness: the database did not answer in time"
                );
                return Some("database not answering");
            }
        }
        if self.clock.now().as_second() >= self.tls.not_after() {
            return Some("tls certificate expired");
        }
        None
    }
}
