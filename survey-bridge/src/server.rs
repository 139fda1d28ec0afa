//! Starting and stopping the bridge: [`run`] serves the pages and the ledger until the
//! shutdown future completes.

use std::{future::Future, sync::Arc, time::Duration};

use cache_server::{
    audit::{Actor, Audit, Event},
    clock::Clock,
    denials::Denials,
    reload::Reloads,
    serve::limit,
    throttle::Throttle,
    tls::Acceptor,
};
use jiff::SignedDuration;
use proto::ledger::invitation_ledger_server::InvitationLedgerServer;
use tokio::{net::TcpListener, sync::watch};
use tonic::{service::Routes, transport::Server};
use tracing::{info, warn};

use crate::{
    config::BridgeConfig,
    db::Db,
    fold::Fold,
    https::{self, PagesTls, TlsListener},
    keys::Keys,
    ledger::Ledger,
    outbox::{self, Outbox},
    pages::Pages,
    probes::Probes,
    questionnaire::Questionnaire,
    redirect,
    reload::Reloader,
    results::{self, Reconciler, Webhook},
    telemetry,
};

/// The largest request message on the ledger port: tonic's default decoding limit (a
/// RecordInvitation is a few hundred bytes).
const LEDGER_MAX_MESSAGE_BYTES: usize = 4 << 20;

/// The sockets the bridge serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// The patient pages (HTTPS).
    pub https: TcpListener,
    /// The invitation ledger (gRPC over mutual TLS).
    pub grpc: TcpListener,
    /// The plain-HTTP port that redirects to the pages, if any.
    pub http: Option<TcpListener>,
    /// The Prometheus port (`GET /metrics`, plain HTTP), if any.
    pub metrics: Option<TcpListener>,
}

/// Why the bridge could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// TLS material unusable.
    #[error(transparent)]
    Tls(#[from] cache_server::tls::TlsError),
    /// The key or audit files are unusable.
    #[error(transparent)]
    Setup(#[from] cache_server::audit::AuditSetupError),
    /// The audit log cannot be written.
    #[error(transparent)]
    Audit(#[from] cache_server::audit::AuditError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// The questionnaire file is unusable.
    #[error("questionnaire: {0}")]
    Questionnaire(String),
    /// The webhook secret is unusable.
    #[error("{0}")]
    Webhook(String),
    /// `trusted_proxies` holds an entry that is not an address or a network.
    #[error("{0}")]
    TrustedProxies(String),
    /// The reports' noise cannot be set up.
    #[error(transparent)]
    Noise(#[from] crate::report::noise::NoiseError),
    /// A server failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The ledger port's server reflection could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] cache_server::reflection::Error),
}

/// The configured questionnaire, or the built-in one.
pub fn load_questionnaire(config: &BridgeConfig) -> Result<Questionnaire, RunError> {
    match &config.questionnaire {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| RunError::Questionnaire(format!("{}: {e}", path.display())))?;
            Questionnaire::from_toml(&text).map_err(|e| RunError::Questionnaire(e.to_string()))
        }
        None => Ok(Questionnaire::builtin()),
    }
}

/// Serves until `shutdown` completes, then lets requests in flight finish.
pub async fn run(
    listeners: Listeners,
    config: BridgeConfig,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let (_never, reloads) = tokio::sync::mpsc::channel(1);
    run_with_reloads(listeners, config, clock, shutdown, reloads).await
}

/// What `survey-bridge check-config` checks: everything the bridge reads at start, read as
/// it reads it (the questionnaire, the link key, the audit key, the TLS files of both
/// ports, the results webhook's secret, `trusted_proxies`, the reports' noise), and the
/// database, connected and migrated. Nothing is bound, served or audited. A one-line
/// summary, or the first thing that would stop the bridge from starting.
pub async fn check(config: &BridgeConfig) -> Result<String, RunError> {
    let questionnaire = load_questionnaire(config)?;
    Keys::load(&config.key_file)?;
    cache_server::audit::load_key(&config.audit.key_file)?;
    crate::reload::load(&config.tls)?;
    if let Some(hook) = &config.webhook {
        results::load_secret(&hook.secret_file).map_err(RunError::Webhook)?;
    }
    crate::client::TrustedProxies::parse(&config.trusted_proxies).map_err(RunError::TrustedProxies)?;
    if let Some(epsilon) = config.reports.noise_epsilon {
        crate::report::noise::Noise::new(&questionnaire, epsilon)?;
    }
    Db::connect(&config.database_url).await?;
    Ok(format!("questionnaire {}, database answering", questionnaire.id))
}

/// [`run`], and each message of `reloads` reads the certificates again and reopens the audit
/// file ([`crate::reload`]; SIGHUP in the binary).
pub async fn run_with_reloads(
    listeners: Listeners,
    config: BridgeConfig,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send,
    reloads: Reloads,
) -> Result<(), RunError> {
    if listeners.metrics.is_some() {
        // Before anything is counted.
        cache_server::telemetry::install_recorder();
    }
    let questionnaire = Arc::new(load_questionnaire(&config)?);
    let keys = Arc::new(Keys::load(&config.key_file)?);
    let audit_key = cache_server::audit::load_key(&config.audit.key_file)?;
    let audit = Arc::new(
        Audit::open(&config.audit.path, audit_key, clock.clone())?.with_system_name("survey-bridge"),
    );
    let db = Db::connect(&config.database_url).await?.with_settle_days(config.reports.settle_days);
    let mut start = Event::new("SERVER_START", "ok", Actor::System);
    let detail = format!("questionnaire {}", questionnaire.id);
    start.detail = Some(&detail);
    audit.record(start)?;
    let metrics_task = listeners
        .metrics
        .map(|listener| tokio::spawn(telemetry::serve(listener, db.clone(), config.audit.path.clone())));

    // The ledger, for the outreach worker: gRPC over mutual TLS.
    let tls = crate::reload::load(&config.tls)?;
    let handshake_timeout = Duration::from_secs(config.tls.handshake_timeout_seconds);
    // Failed handshakes and calls without a certificate, per peer address: one throttle.
    let peers = Arc::new(Throttle::new(20, SignedDuration::from_mins(1), clock.clone()));
    let acceptor = Arc::new(Acceptor::new(tls.ledger, handshake_timeout, audit.clone(), peers.clone()));
    let grpc_addr = listeners.grpc.local_addr()?;
    let (incoming, accept_task) = cache_server::tls::incoming(listeners.grpc, acceptor.clone());
    let ledger = Ledger {
        db: db.clone(),
        keys: keys.clone(),
        audit: audit.clone(),
        clock: clock.clone(),
        link_valid_days: config.link_valid_days,
        denials: Arc::new(Denials::new(peers, SignedDuration::from_mins(1), clock.clone())),
    };
    // gRPC health (SERVING while up, NOT_SERVING once draining) and reflection (v1 and
    // v1alpha, listing the ledger, health and reflection) beside the ledger. As on the cache,
    // they answer any TLS client, one without a certificate included (a load balancer's
    // health check); every ledger RPC still needs the outreach certificate.
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<InvitationLedgerServer<Ledger>>().await;
    let routes = cache_server::reflection::add(
        Routes::new(health_service).add_service(InvitationLedgerServer::new(ledger)),
        &[proto::ledger::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET],
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut grpc_stop = stop_rx.clone();
    // A request message over the limit is refused with RESOURCE_EXHAUSTED from its length
    // prefix, as on the cache (tonic's own limit would answer OUT_OF_RANGE).
    let held = tower::util::MapRequestLayer::new(|request: http::Request<tonic::body::Body>| {
        limit::limited_naming(request, LEDGER_MAX_MESSAGE_BYTES, "the ledger's limit")
            .map(tonic::body::Body::new)
    });
    let grpc = tokio::spawn(Server::builder().layer(held).add_routes(routes).serve_with_incoming_shutdown(
        incoming,
        async move {
            let _ = grpc_stop.wait_for(|stop| *stop).await;
        },
    ));

    // Declines, forwarded to the cache.
    let wake = Arc::new(tokio::sync::Notify::new());
    let (client, retry_seconds) = match &config.cache {
        Some(cache) => (Some(outbox::cache_client(cache)?), cache.retry_seconds),
        None => {
            warn!("no cache configured: opt-outs will wait in the outbox");
            (None, 30)
        }
    };
    let retry = SignedDuration::from_secs(retry_seconds as i64);
    let outbox = Outbox {
        db: db.clone(),
        client,
        clock: clock.clone(),
        audit: audit.clone(),
        retry,
        wake: wake.clone(),
        link_valid_days: config.link_valid_days,
    };
    let outbox_task = tokio::spawn(outbox.run(Duration::from_secs(retry_seconds), stop_rx.clone()));

    // Answers, counted from the pool a whole group at a time; on the same timer, expired
    // links whose month is released forget their GUID (`Fold::retire`).
    let fold = Fold {
        db: db.clone(),
        keys: keys.clone(),
        clock: clock.clone(),
        audit: audit.clone(),
        min_group: usize::try_from(config.reports.min_cell).unwrap_or(usize::MAX),
    };
    let fold_task =
        tokio::spawn(fold.run(Duration::from_secs(config.answers.fold_every_seconds), stop_rx.clone()));

    // Results from external surveys.
    let webhook = match &config.webhook {
        Some(hook) => Some(Webhook {
            reconciler: Reconciler {
                db: db.clone(),
                keys: keys.clone(),
                questionnaire: questionnaire.clone(),
                clock: clock.clone(),
                audit: audit.clone(),
            },
            secret: results::load_secret(&hook.secret_file).map_err(RunError::Webhook)?,
            max_skew_seconds: hook.max_skew_seconds as i64,
            max_body_bytes: hook.max_body_bytes,
        }),
        None => None,
    };

    // The reports.
    let noise = match config.reports.noise_epsilon {
        Some(epsilon) => Some(crate::report::noise::Noise::new(&questionnaire, epsilon)?),
        None => None,
    };
    let portal = crate::portal::router(crate::portal::Portal {
        db: db.clone(),
        keys: keys.clone(),
        questionnaire: questionnaire.clone(),
        clock: clock.clone(),
        config: config.reports.clone(),
        noise,
    });

    // The patient pages: HTTPS.
    let trusted_proxies = Arc::new(
        crate::client::TrustedProxies::parse(&config.trusted_proxies).map_err(RunError::TrustedProxies)?,
    );
    let pages_tls = Arc::new(PagesTls::new(tls.pages, tls.not_after));
    // Liveness and readiness (database, certificate) on the same port.
    let probes =
        crate::probes::router(Probes { db: db.clone(), tls: pages_tls.clone(), clock: clock.clone() });
    let pages = Pages {
        db,
        keys,
        questionnaire,
        campaigns: config.campaigns.clone(),
        sites: config.sites.clone(),
        clock: clock.clone(),
        audit: audit.clone(),
        guesses: Throttle::new(config.max_bad_links_per_minute, SignedDuration::from_mins(1), clock),
        trusted_proxies: trusted_proxies.clone(),
        wake,
    };
    let https_addr = listeners.https.local_addr()?;
    let listener = TlsListener::new(listeners.https, pages_tls.clone(), handshake_timeout, trusted_proxies)?;
    let reloader =
        Reloader { tls: config.tls.clone(), pages: pages_tls, ledger: acceptor, audit: audit.clone() };
    let reload_task = tokio::spawn(reloader.serve(reloads));
    let mut https_stop = stop_rx.clone();
    let app = crate::routes::router(pages, webhook, portal, probes)
        .into_make_service_with_connect_info::<https::ClientAddr>();
    let web = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = https_stop.wait_for(|stop| *stop).await;
            })
            .await
    });
    // Plain HTTP, if configured: redirects only.
    let plain = listeners.http.map(|listener| {
        let mut http_stop = stop_rx;
        let app = redirect::router(https_addr.port());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_stop.wait_for(|stop| *stop).await;
                })
                .await
        })
    });
    info!(%https_addr, %grpc_addr, "survey bridge listening");

    shutdown.await;
    info!("shutting down: draining requests in flight");
    health.set_not_serving::<InvitationLedgerServer<Ledger>>().await;
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let drained = tokio::time::timeout(grace, async {
        if let Some(plain) = plain {
            let _ = plain.await;
        }
        (web.await, grpc.await)
    })
    .await;
    accept_task.abort();
    reload_task.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    let _ = outbox_task.await;
    let _ = fold_task.await;
    if drained.is_err() {
        warn!("drain deadline passed; closing the connections still open");
    }
    if let Err(err) = audit.record(Event::new("SERVER_STOP", "ok", Actor::System)) {
        warn!(cause = %err, "cannot audit the stop");
    }
    Ok(())
}
