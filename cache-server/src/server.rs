//! Starting and stopping the daemon: [`run`] serves until the shutdown future completes.

use std::{future::Future, sync::Arc, time::Duration};

use jiff::Timestamp;
use proto::v1::{FILE_DESCRIPTOR_SET, contact_cache_server::ContactCacheServer};
use rand::{TryRng, rngs::SysRng};
use tokio::{net::TcpListener, sync::oneshot};
use tonic::transport::Server;
use tracing::{info, warn};

use crate::{
    clock::Clock,
    config::Config,
    memory::{self, MemoryError},
    service::{CacheService, Instance},
    store::{Limits, Store},
    sweep, telemetry,
    tls::{self, TlsError},
};

/// The sockets the daemon serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC over TLS.
    pub grpc: TcpListener,
    /// Prometheus metrics over plain HTTP, if wanted.
    pub metrics: Option<TcpListener>,
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Memory protection failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The sweep could not be scheduled.
    #[error("sweep scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    /// Server reflection could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The random source failed.
    #[error("the operating system's random source failed")]
    Random,
}

/// Serves the cache on `listeners` until `shutdown` completes, then drains.
///
/// Memory is protected first (see [`memory::protect`]). After `shutdown`, requests in
/// flight get `shutdown_grace_seconds` to finish; then every contact is erased and every key
/// destroyed before this returns.
pub async fn run(
    listeners: Listeners,
    config: Config,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    telemetry::install_recorder();
    let protection = memory::protect(config.memory.allow_unlocked)?;
    let tls = tls::server_config(&config.tls.cert, &config.tls.key)?;

    let mut epoch = [0u8; 8];
    SysRng.try_fill_bytes(&mut epoch).map_err(|_| RunError::Random)?;
    let instance = Instance { epoch: u64::from_le_bytes(epoch), started_at: clock.now(), protection };

    let limits = Limits {
        retention_days: config.store.retention_days,
        max_entries: config.store.max_entries,
        max_bytes: config.store.max_bytes,
    };
    let store = Arc::new(Store::new(limits, clock));
    let mut scheduler = sweep::start(&config.store.sweep_schedule, store.clone()).await?;

    let metrics_task = listeners.metrics.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "metrics listening");
        }
        tokio::spawn(telemetry::serve(listener, store.clone()))
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ContactCacheServer<CacheService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let cache = ContactCacheServer::new(CacheService::new(store.clone(), instance))
        .max_decoding_message_size(config.store.max_message_bytes);

    if let Ok(addr) = listeners.grpc.local_addr() {
        info!(%addr, memory_locked = protection.locked, "grpc listening");
    }
    let handshake_timeout = Duration::from_secs(config.tls.handshake_timeout_seconds);
    let (incoming, accept_task) = tls::incoming(listeners.grpc, tls, handshake_timeout);

    let (draining_tx, draining_rx) = oneshot::channel();
    let server = Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(cache)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            let _ = draining_tx.send(());
        });
    tokio::pin!(server);

    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let served = tokio::select! {
        served = &mut server => served,
        _ = draining_rx => {
            info!(grace_seconds = grace.as_secs(), "shutting down: draining requests in flight");
            health.set_not_serving::<ContactCacheServer<CacheService>>().await;
            match tokio::time::timeout(grace, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    warn!("drain deadline passed; closing the connections still open");
                    Ok(())
                }
            }
        }
    };

    accept_task.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    if let Err(err) = scheduler.shutdown().await {
        warn!(cause = %err, "sweep scheduler did not stop cleanly");
    }
    store.clear();
    info!(epoch = instance.epoch, started_at = %instance.started_at, stopped_at = %Timestamp::now(), "stopped; store erased and keys destroyed");
    served.map_err(RunError::from)
}
