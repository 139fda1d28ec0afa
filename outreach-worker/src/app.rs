//! Putting the worker together from its configuration, and running it until shutdown.

use std::future::Future;

use axum::{Router, routing::get};
use cache_server::{
    clock::Clock,
    config::ConfigError,
    memory::{self, MemoryError},
};
use jiff::tz::TimeZone;
use tokio::{net::TcpListener, sync::watch};
use tracing::{info, warn};

use crate::{
    clients,
    config::WorkerConfig,
    email::Mailer,
    sms::{SmsClient, SmsOutbox},
    suppression::{Suppression, SuppressionKey},
    templates::Templates,
    worker::{Outlet, SmsSender, Worker},
};

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// Memory could not be protected.
    #[error("refusing to start: {0}")]
    Memory(#[from] MemoryError),
    /// A file could not be read or a client not built.
    #[error("{0}")]
    Setup(String),
}

fn setup(what: &str, err: impl std::fmt::Display) -> StartError {
    StartError::Setup(format!("{what}: {err}"))
}

/// Builds the worker: opens the suppression list, loads and checks the templates, and
/// prepares the clients (gRPC channels connect on first use).
pub async fn build(config: &WorkerConfig, clock: Clock) -> Result<Worker, StartError> {
    config.check()?;
    let key = SuppressionKey::load(&config.key_file).map_err(|e| setup("key_file", e))?;
    let suppression =
        Suppression::connect(&config.database_url, key).await.map_err(|e| setup("database_url", e))?;
    let campaigns: Vec<String> = config.campaigns.keys().cloned().collect();
    let templates =
        Templates::load(config.templates_dir.as_deref(), &campaigns).map_err(|e| setup("templates", e))?;
    let public_url = config.bridge.public_url.trim_end_matches('/').to_string();
    if config.sms.is_some() {
        templates.check_sms(&format!("{public_url}/s/00000000-0000-0000-0000-000000000000"), &config.sites);
    }
    let sms = match &config.sms {
        Some(settings) => {
            let sender = match &settings.outbox {
                Some(path) => {
                    warn!(path = %path.display(), "SMS go to a local file outbox, not to a provider: development only, the file holds phone numbers");
                    SmsSender::Outbox(SmsOutbox::new(path.clone()))
                }
                None => {
                    let http = reqwest::Client::builder()
                        .timeout(std::time::Duration::from_secs(30))
                        .build()
                        .map_err(|e| setup("sms", e))?;
                    SmsSender::Api(SmsClient::new(http, settings.client_config()?))
                }
            };
            Some(Outlet::new(sender, settings.per_second))
        }
        None => None,
    };
    let email = match &config.email {
        Some(settings) => Some(Outlet::new(
            Mailer::new(&settings.smtp).map_err(|e| setup("email", e))?,
            settings.per_second,
        )),
        None => None,
    };
    Ok(Worker {
        cache: clients::cache(&config.cache).map_err(|e| setup("cache", e))?,
        ledger: clients::ledger(&config.bridge.grpc).map_err(|e| setup("bridge", e))?,
        suppression,
        templates,
        sms,
        email,
        window: if config.quiet_hours.enabled {
            Some(config.window()?)
        } else {
            warn!("quiet hours are off: messages go out at any hour (local demonstration only)");
            None
        },
        default_time_zone: TimeZone::get(&config.quiet_hours.default_time_zone)
            .map_err(|e| setup("quiet_hours.default_time_zone", e))?,
        public_url,
        campaigns: config.campaigns.clone(),
        sites: config.sites.clone(),
        unidentified_sites: Default::default(),
        settings: config.worker.clone(),
        clock,
        stopping: Default::default(),
    })
}

/// Runs the worker until `shutdown` completes, then lets the sends under way finish. Serves
/// `GET /metrics` on `metrics` when given.
pub async fn run(
    config: WorkerConfig,
    clock: Clock,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    cache_server::telemetry::install_recorder();
    // Before any contact can arrive (and after the settings are known to be usable, so that
    // a bad one says so first): core dumps off, memory locked.
    config.check()?;
    let protection = memory::protect(config.memory.allow_unlocked)?;
    metrics::gauge!("outreach_memory_locked").set(f64::from(u8::from(protection.locked)));
    let worker = build(&config, clock).await?;
    if let Some(listener) = metrics {
        let app =
            Router::new().route("/metrics", get(|| async { cache_server::telemetry::render_metrics() }));
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                warn!(cause = %err, "metrics listener stopped");
            }
        });
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    info!(
        sms = config.sms.is_some(),
        email = config.email.is_some(),
        batch = config.worker.batch,
        concurrency = config.worker.concurrency,
        "outreach worker started"
    );
    let running = worker.run(stop_rx);
    tokio::pin!(running);
    tokio::select! {
        () = &mut running => {}
        () = shutdown => {
            // Sends under way finish and are acked; the rest of the batch is left to its lease.
            worker.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = stop_tx.send(true);
            running.await;
        }
    }
    worker.suppression.close().await;
    Ok(())
}
