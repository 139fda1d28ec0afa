//! `outreach-worker`: leases due invitations from the contact cache and sends them by SMS or
//! email; see the crate documentation and the README.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM or SIGINT: sends under way finish);
//! 64 for bad flags or configuration; 69 when the metrics port or the inbound SMS
//! webhook's port cannot be bound; 71 when memory cannot be locked (see
//! `memory.allow_unlocked`); 70 for anything else that stops it from starting.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use cache_server::{clock::Clock, telemetry};
use clap::Parser;
use outreach_worker::{
    app::{self, StartError},
    config::WorkerConfig,
};
use tokio::net::TcpListener;
use tracing::error;

/// Every heap block is wiped when it is freed (or moved by a reallocation), so leased
/// contacts, requests to the SMS provider and emails leave no contact data behind in free
/// memory.
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_OSERR: u8 = 71;

/// Leases due invitations and sends them by SMS or email.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(short, long, env = "OUTREACH_WORKER_CONFIG")]
    config: Option<PathBuf>,
    /// Where Prometheus metrics are served (overrides `metrics_listen`).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Check the configuration and the templates, print the SMS segment counts, and exit.
    #[arg(long)]
    check: bool,
    /// Any setting by its path, e.g. `--set worker.concurrency=4`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((key.trim().to_string(), value.to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = Vec::new();
    if let Some(addr) = cli.metrics_listen {
        overrides.push(("metrics_listen".to_string(), addr.to_string()));
    }
    overrides.extend(cli.set.iter().cloned());
    let config = match WorkerConfig::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("outreach-worker: config: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(e) = rustls::crypto::ring::default_provider().install_default() {
        eprintln!("outreach-worker: cannot install the TLS crypto provider: {e:?}");
        return ExitCode::from(EX_SOFTWARE);
    }
    telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("outreach-worker: cannot start the runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    runtime.block_on(async {
        if cli.check {
            return match app::build(&config, Clock::System).await {
                Ok(worker) => {
                    worker.suppression.close().await;
                    eprintln!("outreach-worker: configuration and templates are usable");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("outreach-worker: {e}");
                    ExitCode::from(EX_USAGE)
                }
            };
        }
        let inbound_listen = config.sms.as_ref().and_then(|sms| sms.inbound.as_ref()).map(|i| i.listen);
        let mut listeners = app::Listeners::default();
        for (addr, slot) in
            [(config.metrics_listen, &mut listeners.metrics), (inbound_listen, &mut listeners.inbound)]
        {
            if let Some(addr) = addr {
                match TcpListener::bind(addr).await {
                    Ok(listener) => *slot = Some(listener),
                    Err(e) => {
                        eprintln!("outreach-worker: cannot listen on {addr}: {e}");
                        return ExitCode::from(EX_UNAVAILABLE);
                    }
                }
            }
        }
        match app::run(config, Clock::System, listeners, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ StartError::Config(_)) => {
                eprintln!("outreach-worker: {e}");
                ExitCode::from(EX_USAGE)
            }
            Err(e @ StartError::Memory(_)) => {
                eprintln!("outreach-worker: {e}");
                ExitCode::from(EX_OSERR)
            }
            Err(e) => {
                error!(cause = %e, "outreach-worker failed to start");
                eprintln!("outreach-worker: {e}");
                ExitCode::from(EX_SOFTWARE)
            }
        }
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(cause = %e, "cannot watch SIGTERM; only SIGINT will stop the worker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; finishing the sends under way"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; finishing the sends under way"),
    }
}
