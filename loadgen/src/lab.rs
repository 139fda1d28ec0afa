//! `cache-lab-server`: the cache server's own `run`, with a clock that SIGUSR1 moves a day
//! ahead, so that the sweep can be made to erase a day of contacts without waiting for
//! midnight (the memory run of `bench/compare.sh`, driven by `cache-loadgen memory`).
//!
//! Everything else is the daemon's code: the same configuration, TLS, store, audit trail,
//! memory locking and global allocator (every freed block wiped). Only for measurements.
//!
//! Exit codes (`EXIT_CODES`, also in `--help`): 0 after SIGTERM or SIGINT; 64 for bad flags
//! or configuration; 69 when a listener cannot be bound; 70 for anything else (memory that
//! cannot be locked included).

use std::{path::PathBuf, process::ExitCode};

use cache_server::{Listeners, clock::Clock, config::Config, telemetry};
use clap::Parser;
use jiff::SignedDuration;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
};
use tracing::{error, info};

/// As in `cache-server`: every heap block is wiped when it is freed.
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

/// What each exit code means, for `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0   clean shutdown (SIGTERM or SIGINT)
  64  bad flags or configuration (EX_USAGE)
  69  a listener cannot be bound (EX_UNAVAILABLE)
  70  anything else, memory that cannot be locked included (EX_SOFTWARE)";

/// Serves like cache-server, with a clock that SIGUSR1 moves a day on (measurement only).
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Cli {
    /// TOML configuration file, as for cache-server.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Any setting by its path, e.g. `--set store.retention_days=2`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((key.trim().to_string(), value.to_string()))
}

fn main() -> ExitCode {
    // `--help` and `--version` print and exit 0; any other flag problem exits 64.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(64) } else { ExitCode::SUCCESS };
        }
    };
    if let Err(e) = rustls::crypto::ring::default_provider().install_default() {
        eprintln!("cache-lab-server: cannot install the TLS crypto provider: {e:?}");
        return ExitCode::from(70);
    }
    serve(cli.config, &cli.set)
}

/// Serves like `cache-server serve --config FILE --set ...`; SIGUSR1 moves the clock a day on.
fn serve(config_file: Option<PathBuf>, set: &[(String, String)]) -> ExitCode {
    let config = match Config::load(config_file.as_deref(), set) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cache-lab-server: config: {e}");
            return ExitCode::from(64);
        }
    };
    telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cache-lab-server: cannot start the runtime: {e}");
            return ExitCode::from(70);
        }
    };
    runtime.block_on(async move {
        let (grpc, metrics) = match bind(&config).await {
            Ok(listeners) => listeners,
            Err(e) => {
                eprintln!("cache-lab-server: {e}");
                return ExitCode::from(69);
            }
        };
        let clock = Clock::manual(jiff::Timestamp::now());
        let (mut next_day, mut term) =
            match (signal(SignalKind::user_defined1()), signal(SignalKind::terminate())) {
                (Ok(usr1), Ok(term)) => (usr1, term),
                _ => {
                    eprintln!("cache-lab-server: cannot watch signals");
                    return ExitCode::from(70);
                }
            };
        let moved = clock.clone();
        tokio::spawn(async move {
            while next_day.recv().await.is_some() {
                moved.advance(SignedDuration::from_hours(24));
                info!(now = %moved.now(), "clock moved a day on");
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        match cache_server::run(Listeners { grpc, metrics }, config, clock, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(cause = %e, "lab server failed");
                eprintln!("cache-lab-server: {e}");
                ExitCode::from(70)
            }
        }
    })
}

async fn bind(config: &Config) -> Result<(TcpListener, Option<TcpListener>), String> {
    let grpc = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let metrics = match config.metrics_listen {
        Some(addr) => {
            Some(TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?)
        }
        None => None,
    };
    Ok((grpc, metrics))
}
