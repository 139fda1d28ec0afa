//! Starting and stopping the daemon: [`run`] serves until the shutdown future completes.

use std::{future::Future, sync::Arc, time::Duration};

use jiff::Timestamp;
use proto::v1::{FILE_DESCRIPTOR_SET, contact_cache_server::ContactCacheServer};
use rand::{TryRng, rngs::SysRng};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};
use tonic::service::Routes;
use tracing::{info, warn};

use crate::{
    audit::{Action, Actor, Audit, AuditSetupError, Event},
    clock::Clock,
    config::Config,
    denials::Denials,
    memory::{self, MemoryError},
    reflection,
    reload::{self, Reloader, Reloads},
    serve,
    service::{CacheService, Context, GetContactEncoded, Instance},
    store::{Limits, Store},
    sweep, telemetry,
    throttle::Throttle,
    tls::{self, Acceptor, TlsError},
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
    /// The audit log cannot be opened.
    #[error(transparent)]
    AuditSetup(#[from] AuditSetupError),
    /// The audit log cannot be written.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The sweep could not be scheduled.
    #[error("sweep scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    /// Server reflection could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] reflection::Error),
    /// The random source failed.
    #[error("the operating system's random source failed")]
    Random,
    /// The threads that serve connections could not be started.
    #[error("cannot start the connection threads: {0}")]
    Threads(std::io::Error),
}

/// Serves the cache on `listeners` until `shutdown` completes, then drains.
///
/// Memory is protected first (see [`memory::protect`]). The audit log is opened as
/// configured. After `shutdown`, requests in flight get `shutdown_grace_seconds` to finish;
/// then every contact is erased and every key destroyed before this returns.
pub async fn run(
    listeners: Listeners,
    config: Config,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let (_never, reloads) = mpsc::channel(1);
    run_with_reloads(listeners, config, clock, shutdown, reloads).await
}

/// [`run`], and each message of `reloads` reads the TLS material again and reopens the audit
/// file (see [`reload`](crate::reload)); the binary sends one on SIGHUP.
pub async fn run_with_reloads(
    listeners: Listeners,
    config: Config,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send,
    reloads: Reloads,
) -> Result<(), RunError> {
    let key = crate::audit::load_key(&config.audit.key_file)?;
    let audit = Audit::open(&config.audit.path, key, clock.clone())?;
    serve_until(listeners, config, clock, audit, shutdown, reloads).await
}

/// [`run`] with an audit log made by the caller (tests use one that can be made to fail).
pub async fn run_with_audit(
    listeners: Listeners,
    config: Config,
    clock: Clock,
    audit: Audit,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let (_never, reloads) = mpsc::channel(1);
    serve_until(listeners, config, clock, audit, shutdown, reloads).await
}

async fn serve_until(
    listeners: Listeners,
    config: Config,
    clock: Clock,
    audit: Audit,
    shutdown: impl Future<Output = ()> + Send,
    reloads: Reloads,
) -> Result<(), RunError> {
    telemetry::install_recorder();
    let protection = memory::protect(config.memory.allow_unlocked)?;
    metrics::gauge!("cache_memory_locked").set(f64::from(u8::from(protection.locked)));
    let tls = tls::load_server(&config.tls.cert, &config.tls.key, &config.tls.client_ca)?;
    reload::record_expiry(tls.not_after);
    let audit = Arc::new(audit);
    let mut start = Event::new(Action::ServerStart, "ok", Actor::System);
    let digest = config.digest();
    start.detail = Some(&digest);
    audit.record(start)?;

    let mut epoch = [0u8; 8];
    SysRng.try_fill_bytes(&mut epoch).map_err(|_| RunError::Random)?;
    let instance = Instance { epoch: u64::from_le_bytes(epoch), started_at: clock.now(), protection };

    let limits = Limits {
        retention_days: config.store.retention_days,
        max_entries: config.store.max_entries,
        max_bytes: config.store.max_bytes,
    };
    let store = Arc::new(Store::new(limits, clock.clone()));
    let mut scheduler = sweep::start(&config.store.sweep_schedule, store.clone(), audit.clone()).await?;

    let metrics_task = listeners.metrics.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "metrics listening");
        }
        tokio::spawn(telemetry::serve(listener, store.clone(), config.audit.path.clone()))
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ContactCacheServer<CacheService>>().await;
    // Health and reflection (v1 and v1alpha), listing the cache's service and health.
    let others = reflection::add(
        Routes::new(health_service),
        &[FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET],
    )?;
    let lockout = &config.lockout;
    // Failed handshakes and calls without a certificate, per peer address: one throttle.
    let handshake_window = jiff::SignedDuration::from_secs(lockout.handshake_window_seconds as i64);
    let peers = Arc::new(Throttle::new(lockout.max_handshake_failures, handshake_window, clock.clone()));
    let ctx = Context {
        store: store.clone(),
        audit: audit.clone(),
        lockout: Throttle::new(
            lockout.max_not_found,
            jiff::SignedDuration::from_secs(lockout.not_found_window_seconds as i64),
            clock.clone(),
        ),
        denials: Denials::new(peers.clone(), handshake_window, clock.clone()),
        instance,
        max_lease_batch: config.store.max_lease_batch,
    };
    let ctx = Arc::new(ctx);
    let routes = serve::CacheRoutes {
        cache: ContactCacheServer::new(CacheService::new(ctx.clone()))
            .max_decoding_message_size(config.store.max_message_bytes),
        get_contact: GetContactEncoded::new(ctx),
        max_request_bytes: config.store.max_message_bytes,
    };

    let acceptor = Arc::new(Acceptor::new(
        tls.config,
        Duration::from_secs(config.tls.handshake_timeout_seconds),
        audit.clone(),
        peers.clone(),
    ));
    let reloader = Reloader { tls: config.tls.clone(), acceptor: acceptor.clone(), audit: audit.clone() };
    let reload_task = tokio::spawn(reloader.serve(reloads));
    let threads = match config.connection_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let idle_timeout = Duration::from_secs(config.idle_timeout_seconds);
    let threads = serve::ConnectionThreads::start(threads, routes, others, acceptor.clone(), idle_timeout)
        .map_err(RunError::Threads)?;
    if let Ok(addr) = listeners.grpc.local_addr() {
        info!(%addr, memory_locked = protection.locked, connection_threads = threads.count(), "grpc listening");
    }

    let (draining_tx, draining_rx) = oneshot::channel();
    {
        let server = serve::serve(listeners.grpc, &acceptor, &threads, async move {
            shutdown.await;
            info!("shutting down: refusing new connections, draining requests in flight");
            let _ = draining_tx.send(());
        });
        tokio::pin!(server);

        let grace = Duration::from_secs(config.shutdown_grace_seconds);
        tokio::select! {
            () = &mut server => {}
            _ = draining_rx => {
                health.set_not_serving::<ContactCacheServer<CacheService>>().await;
                if tokio::time::timeout(grace, &mut server).await.is_err() {
                    warn!("drain deadline passed; closing the connections still open");
                }
            }
        }
    }
    // Closes whatever is still open (after the drain deadline) before the store is erased.
    threads.stop().await;

    reload_task.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    if let Err(err) = scheduler.shutdown().await {
        warn!(cause = %err, "sweep scheduler did not stop cleanly");
    }
    store.clear();
    if let Err(err) = audit.record(Event::new(Action::ServerStop, "ok", Actor::System)) {
        warn!(cause = %err, "cannot audit the stop");
    }
    info!(epoch = instance.epoch, started_at = %instance.started_at, stopped_at = %Timestamp::now(), "stopped; store erased and keys destroyed");
    Ok(())
}
