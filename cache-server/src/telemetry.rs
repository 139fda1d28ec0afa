//! Logging set-up and the Prometheus endpoint.
//!
//! The recorder is process-wide and shared by the tier's three daemons (the bridge and the
//! worker install it through [`install_recorder`] and render through [`render_metrics`]).
//! Installing it describes the metrics of this crate's modules, which the other daemons
//! use too ([`describe`]), and the `process_*` metrics, read from `/proc/self` at each
//! scrape. Each daemon adds its own descriptions and its `*_build_info` gauge
//! ([`build_info`]) when its metrics port starts.

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use axum::{Router, extract::State, routing::get};
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tracing::warn;
use tracing_subscriber::EnvFilter;

use crate::{
    config::{LogConfig, LogFormat},
    store::Store,
};

/// Installs the process's tracing subscriber: filter and format from `config`, to stderr.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    process().describe();
                    Some(handle)
                }
                Err(_) => {
                    warn!("another metrics recorder is installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Installs the recorder so that metrics recorded from now on are kept.
pub fn install_recorder() {
    let _ = handle();
}

/// The process metrics of the Prometheus client libraries (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds`, ...).
fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The metrics recorded so far in Prometheus text form, the process metrics read now
/// (empty when another recorder is installed). Other daemons of the tier serve this on
/// their own listeners.
pub fn render_metrics() -> String {
    handle()
        .map(|h| {
            process().collect();
            h.render()
        })
        .unwrap_or_default()
}

/// Sets the gauge `name` (`cache_build_info`, `bridge_build_info`, ...) to 1, labelled with
/// the daemon's `version`, and describes it. Call once the recorder is installed.
pub fn build_info(name: &'static str, version: &'static str) {
    describe_gauge!(name, "Always 1; the version of the running binary is in the label.");
    metrics::gauge!(name, "version" => version).set(1.0);
}

/// Gives a `# HELP` line to every metric of this crate's modules. The bridge and the worker
/// emit some of them too (the TLS acceptor, the audit trail), so this runs for every daemon
/// when the recorder is installed; a description whose metric is never recorded is not
/// rendered.
pub fn describe() {
    describe_gauge!("cache_entries", Unit::Count, "Contacts held in the store.");
    describe_gauge!("cache_bytes", Unit::Bytes, "Bytes held by the contacts in the store.");
    describe_gauge!("cache_day_keys", Unit::Count, "Day keys alive (one per day of contacts kept).");
    describe_gauge!(
        "cache_memory_locked",
        "1 when every page of the process is locked in RAM (mlockall), 0 when it runs unlocked."
    );
    describe_counter!(
        "cache_requests_total",
        Unit::Count,
        "gRPC calls answered, by rpc and result code (ok, not_found, invalid_argument, ...)."
    );
    describe_counter!(
        "cache_unauthenticated_calls_total",
        Unit::Count,
        "Calls refused for want of a client certificate."
    );
    describe_counter!(
        "cache_outreach_leased_total",
        Unit::Count,
        "Due contacts leased to the outreach worker, by kind (invite, suppress)."
    );
    describe_counter!(
        "cache_outreach_acks_total",
        Unit::Count,
        "Acks taken from the outreach worker, by outcome."
    );
    describe_histogram!(
        "cache_sweep_duration_seconds",
        Unit::Seconds,
        "How long each expiry sweep took, in seconds."
    );
    describe_counter!("cache_sweep_removed_total", Unit::Count, "Contacts erased by expiry sweeps.");
    describe_counter!("cache_sweeps_total", Unit::Count, "Expiry sweeps run.");
    describe_counter!(
        "cache_day_keys_destroyed_total",
        Unit::Count,
        "Day keys destroyed by expiry sweeps (their contacts become unreadable)."
    );
    describe_gauge!(
        "cache_last_sweep_timestamp_seconds",
        Unit::Seconds,
        "When the last expiry sweep ran, in Unix seconds."
    );
    describe_counter!(
        "cache_idle_connections_closed_total",
        Unit::Count,
        "Client connections told to go away after being idle."
    );
    describe_counter!(
        "cache_tls_handshake_failures_total",
        Unit::Count,
        "TLS handshakes that failed, by cause."
    );
    describe_counter!(
        "cache_tls_refused_total",
        Unit::Count,
        "Connections refused before the handshake because the peer is locked out."
    );
    describe_counter!(
        "cache_reloads_total",
        Unit::Count,
        "Reloads of the certificates and the audit file (SIGHUP), by result (ok, error)."
    );
    describe_gauge!(
        "cache_tls_certificate_expiry_timestamp_seconds",
        Unit::Seconds,
        "When the served TLS certificate expires, in Unix seconds."
    );
    describe_counter!(
        "cache_audit_failures_total",
        Unit::Count,
        "Audit lines that could not be written (the audit trail is fail-closed)."
    );
    describe_gauge!(
        "cache_audit_disk_free_ratio",
        "Share of the audit file's file system still free, between 0 and 1 (read at each scrape)."
    );
}

/// Serves `GET /metrics` on `listener` until the task is dropped; each scrape also reads
/// the free space under `audit_path`.
pub async fn serve(listener: TcpListener, store: Arc<Store>, audit_path: PathBuf) {
    build_info("cache_build_info", env!("CARGO_PKG_VERSION"));
    let app = Router::new().route("/metrics", get(render)).with_state((store, Arc::new(audit_path)));
    if let Err(err) = axum::serve(listener, app).await {
        warn!(cause = %err, "metrics listener stopped");
    }
}

async fn render(State((store, audit_path)): State<(Arc<Store>, Arc<PathBuf>)>) -> String {
    if let Some(free) = crate::audit::free_space_ratio(&audit_path) {
        metrics::gauge!("cache_audit_disk_free_ratio").set(free);
    }
    let stats = store.stats();
    metrics::gauge!("cache_entries").set(stats.entries as f64);
    metrics::gauge!("cache_bytes").set(stats.bytes as f64);
    metrics::gauge!("cache_day_keys").set(stats.day_keys as f64);
    render_metrics()
}
