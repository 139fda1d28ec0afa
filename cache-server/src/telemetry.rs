//! Logging set-up and the Prometheus endpoint.

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use axum::{Router, extract::State, routing::get};
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
                Ok(()) => Some(handle),
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

/// The metrics recorded so far in Prometheus text form (empty when another recorder is
/// installed). Other daemons of the tier serve this on their own listeners.
pub fn render_metrics() -> String {
    handle().map(|h| h.render()).unwrap_or_default()
}

/// Serves `GET /metrics` on `listener` until the task is dropped; each scrape also reads
/// the free space under `audit_path`.
pub async fn serve(listener: TcpListener, store: Arc<Store>, audit_path: PathBuf) {
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
    handle().map(|h| h.render()).unwrap_or_default()
}
