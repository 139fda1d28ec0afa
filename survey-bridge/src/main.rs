//! `survey-bridge`: parses flags and config, starts logging, binds, and calls
//! [`survey_bridge::run`].
//!
//! Exit codes: 0 after a clean shutdown; 64 for bad flags or configuration; 69 when a
//! listener cannot be bound; 70 for anything else.

use std::{path::PathBuf, process::ExitCode};

use cache_server::{clock::Clock, telemetry};
use clap::Parser;
use survey_bridge::{Listeners, config::BridgeConfig};
use tokio::net::TcpListener;
use tracing::error;

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;

/// The patient side of the tier: invitation ledger, consent and survey pages, aggregates.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(short, long, env = "SURVEY_BRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Any setting by its path, e.g. `--set link_valid_days=14`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((key.trim().to_string(), value.to_string()))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EX_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    let config = match BridgeConfig::load(cli.config.as_deref(), &cli.set) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("survey-bridge: config: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        eprintln!("survey-bridge: cannot install the TLS crypto provider");
        return ExitCode::from(EX_SOFTWARE);
    }
    telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("survey-bridge: cannot start the runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    runtime.block_on(async {
        let (https, grpc) =
            match (TcpListener::bind(config.listen).await, TcpListener::bind(config.grpc_listen).await) {
                (Ok(https), Ok(grpc)) => (https, grpc),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("survey-bridge: cannot listen: {e}");
                    return ExitCode::from(EX_UNAVAILABLE);
                }
            };
        match survey_bridge::run(Listeners { https, grpc }, config, Clock::System, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(cause = %e, "survey-bridge failed");
                eprintln!("survey-bridge: {e}");
                ExitCode::from(EX_SOFTWARE)
            }
        }
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
