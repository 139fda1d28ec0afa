//! The bridge's Prometheus endpoint: `GET /metrics` on `metrics_listen`, plain HTTP, as the
//! cache and the worker serve theirs. Nothing here names a patient, a GUID or a client
//! address: counts by outcome only.
//!
//! - `bridge_links_refused_total{reason}`: links refused (`malformed`, `unknown`, `expired`,
//!   `used`, `declined`, `throttled`; `no_consent` for a survey opened before agreeing);
//! - `bridge_consents_total{choice}`: `agree` or `decline` on the consent page;
//! - `bridge_responses_total{result}`: built-in survey submissions (`ok`, `used`, ...);
//! - `bridge_answers_refused_total{reason, source}`: webhook or import answers refused for
//!   want of consent (`no_consent`);
//! - `bridge_answers_folded_total`, `bridge_answers_waiting`: responses counted by the fold,
//!   and responses waiting in the pool (read at each scrape);
//! - `bridge_opt_outs_delivered_total{result}`: declines forwarded to the cache (`ok`,
//!   `not_found`, `unavailable`);
//! - `bridge_opt_outs_waiting`: declines in the outbox not yet taken by the cache (read at
//!   each scrape);
//! - `bridge_reloads_total{result}`, `bridge_tls_certificate_expiry_timestamp_seconds`;
//! - `bridge_unauthenticated_calls_total`: ledger calls without a client certificate;
//! - `bridge_audit_disk_free_ratio`: the share of the audit file's file system still free
//!   (read at each scrape; the audit trail is fail-closed);
//! - `bridge_build_info{version}`, always 1, and the `process_*` metrics (CPU, resident
//!   memory, open files, start time: [`cache_server::telemetry`]).
//!
//! Every metric has a `# HELP` line ([`describe`]).

use axum::{Router, extract::State, routing::get};
use metrics::{Unit, describe_counter, describe_gauge};
use tokio::net::TcpListener;
use tracing::warn;

use crate::db::Db;

/// Serves `GET /metrics` on `listener` until the task is dropped. The recorder is already
/// installed ([`cache_server::telemetry::install_recorder`]).
pub async fn serve(listener: TcpListener, db: Db, audit_path: std::path::PathBuf) {
    describe();
    cache_server::telemetry::build_info("bridge_build_info", env!("CARGO_PKG_VERSION"));
    let app = Router::new().route("/metrics", get(render)).with_state((db, std::sync::Arc::new(audit_path)));
    if let Err(err) = axum::serve(listener, app).await {
        warn!(cause = %err, "metrics listener stopped");
    }
}

async fn render(State((db, audit_path)): State<(Db, std::sync::Arc<std::path::PathBuf>)>) -> String {
    if let Some(free) = cache_server::audit::free_space_ratio(&audit_path) {
        metrics::gauge!("bridge_audit_disk_free_ratio").set(free);
    }
    match db.opt_outs_waiting().await {
        Ok(waiting) => metrics::gauge!("bridge_opt_outs_waiting").set(waiting as f64),
        Err(err) => warn!(cause = %err, "cannot count the opt-out outbox for the metrics"),
    }
    match db.answers_waiting().await {
        Ok(waiting) => metrics::gauge!("bridge_answers_waiting").set(waiting as f64),
        Err(err) => warn!(cause = %err, "cannot count the answer pool for the metrics"),
    }
    cache_server::telemetry::render_metrics()
}

/// Gives a `# HELP` line to every metric the bridge emits (the cache's modules it uses
/// describe theirs: [`cache_server::telemetry::describe`]).
pub fn describe() {
    describe_counter!(
        "bridge_links_refused_total",
        Unit::Count,
        "Survey links refused, by reason (malformed, unknown, expired, used, declined, throttled, no_consent)."
    );
    describe_counter!(
        "bridge_consents_total",
        Unit::Count,
        "Choices made on the consent page, by choice (agree, decline)."
    );
    describe_counter!(
        "bridge_responses_total",
        Unit::Count,
        "Built-in survey submissions, by result (ok, used, ...)."
    );
    describe_counter!(
        "bridge_answers_refused_total",
        Unit::Count,
        "Webhook or import answers refused, by reason and source."
    );
    describe_counter!(
        "bridge_answers_folded_total",
        Unit::Count,
        "Responses counted into the aggregates by the fold."
    );
    describe_gauge!(
        "bridge_answers_waiting",
        Unit::Count,
        "Responses waiting in the pool for the fold (read at each scrape)."
    );
    describe_counter!(
        "bridge_opt_outs_delivered_total",
        Unit::Count,
        "Declines forwarded to the cache, by result (ok, not_found, unavailable)."
    );
    describe_gauge!(
        "bridge_opt_outs_waiting",
        Unit::Count,
        "Declines in the outbox not yet taken by the cache (read at each scrape)."
    );
    describe_counter!(
        "bridge_reloads_total",
        Unit::Count,
        "Reloads of the certificates and the audit file (SIGHUP), by result (ok, error)."
    );
    describe_gauge!(
        "bridge_tls_certificate_expiry_timestamp_seconds",
        Unit::Seconds,
        "When the TLS certificate served (pages and ledger) expires, in Unix seconds."
    );
    describe_counter!(
        "bridge_unauthenticated_calls_total",
        Unit::Count,
        "Ledger calls refused for want of a client certificate."
    );
    describe_gauge!(
        "bridge_audit_disk_free_ratio",
        "Share of the audit file's file system still free, between 0 and 1 (read at each scrape)."
    );
}
