//! Putting the worker together from its configuration, and running it until shutdown.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{Router, routing::get};
use cache_server::{
    clock::Clock,
    config::ConfigError,
    memory::{self, MemoryError},
    tls::TlsError,
};
use jiff::tz::TimeZone;
use tokio::{net::TcpListener, sync::watch};
use tracing::{error, info, warn};

use crate::{
    clients,
    config::WorkerConfig,
    email::{EmailError, Mailer},
    inbound::{Webhook, listener},
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

/// The sockets the worker serves, bound by the caller.
#[derive(Debug, Default)]
pub struct Listeners {
    /// `GET /metrics` (plain HTTP), when given.
    pub metrics: Option<TcpListener>,
    /// The inbound SMS webhook (HTTPS): required when `[sms.inbound]` is configured, and
    /// only then.
    pub inbound: Option<TcpListener>,
}

/// How long the webhook's requests under way get to finish at shutdown.
const INBOUND_DRAIN: Duration = Duration::from_secs(10);

/// The inbound webhook's TLS configuration, when `[sms.inbound]` is configured.
fn inbound_tls(config: &WorkerConfig) -> Result<Option<Arc<rustls::ServerConfig>>, StartError> {
    match config.sms.as_ref().and_then(|sms| sms.inbound.as_ref()) {
        Some(inbound) => {
            Ok(Some(listener::server_config(&inbound.tls_cert, &inbound.tls_key).map_err(|e| match e {
                // Names the setting already.
                TlsError::Pem { .. } => StartError::Setup(e.to_string()),
                other => setup("sms.inbound", other),
            })?))
        }
        None => Ok(None),
    }
}

/// Builds the worker: opens the suppression list, loads and checks the templates and the
/// inbound webhook's certificate, and prepares the clients (gRPC channels connect on first
/// use).
pub async fn build(config: &WorkerConfig, clock: Clock) -> Result<Worker, StartError> {
    config.check()?;
    inbound_tls(config)?;
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
        Some(settings) => {
            let mailer = match &config.email_outbox {
                Some(dir) => {
                    warn!(path = %dir.display(), "email goes to a local Maildir outbox, not to the SMTP relay: development only, the files hold email addresses");
                    Mailer::outbox(&settings.smtp.from, dir.clone()).map_err(|e| match e {
                        // Names the setting already.
                        EmailError::Outbox { .. } => StartError::Setup(e.to_string()),
                        other => setup("email", other),
                    })?
                }
                None => Mailer::new(&settings.smtp).map_err(|e| setup("email", e))?,
            };
            Some(Outlet::new(mailer, settings.per_second))
        }
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

/// Runs the worker until `shutdown` completes, then lets the sends under way and the
/// webhook's requests under way finish. Serves `GET /metrics` on `listeners.metrics` when
/// given, and the inbound SMS webhook on `listeners.inbound` when `[sms.inbound]` is set.
pub async fn run(
    config: WorkerConfig,
    clock: Clock,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    cache_server::telemetry::install_recorder();
    // Before any contact can arrive (and after the settings are known to be usable, so that
    // a bad one says so first): core dumps off, memory locked.
    config.check()?;
    let inbound = match (config.sms.as_ref().and_then(|sms| sms.inbound.as_ref()), listeners.inbound) {
        (Some(_), Some(listener)) => Some(listener),
        (None, None) => None,
        (Some(_), None) => return Err(setup("sms.inbound", "configured, but no listener was given")),
        (None, Some(_)) => {
            return Err(setup("sms.inbound", "a listener was given, but it is not configured"));
        }
    };
    let protection = memory::protect(config.memory.allow_unlocked)?;
    metrics::gauge!("outreach_memory_locked").set(f64::from(u8::from(protection.locked)));
    let worker = build(&config, clock).await?;
    if let Some(listener) = listeners.metrics {
        let app =
            Router::new().route("/metrics", get(|| async { cache_server::telemetry::render_metrics() }));
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                warn!(cause = %err, "metrics listener stopped");
            }
        });
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let webhook = match (inbound, config.sms.as_ref()) {
        (Some(listener), Some(sms)) => {
            let settings = sms.inbound.as_ref().expect("checked above");
            let tls = inbound_tls(&config)?.expect("configured");
            let app = Webhook::new(sms, settings, worker.suppression.clone())?.router();
            let mut stop = stop_rx.clone();
            let stopped = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            Some(tokio::spawn(async move {
                if let Err(err) = listener::serve(listener, tls, app, stopped).await {
                    error!(cause = %err, "SMS webhook listener stopped");
                }
            }))
        }
        _ => None,
    };
    info!(
        sms = config.sms.is_some(),
        email = config.email.is_some(),
        sms_inbound = webhook.is_some(),
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
    let _ = stop_tx.send(true);
    if let Some(mut webhook) = webhook {
        // An opt-out being written finishes before the suppression list closes.
        if tokio::time::timeout(INBOUND_DRAIN, &mut webhook).await.is_err() {
            warn!(
                seconds = INBOUND_DRAIN.as_secs(),
                "SMS webhook requests still under way at the deadline; cut off"
            );
            webhook.abort();
        }
    }
    worker.suppression.close().await;
    Ok(())
}
