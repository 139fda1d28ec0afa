//! `outreach-worker`: leases due invitations from the contact cache and sends them by SMS or
//! email; see the crate documentation and the README.
//!
//! Exit codes (`EXIT_CODES`, also in `--help`): 0 after a clean shutdown (SIGTERM or
//! SIGINT: sends under way finish); 64 for bad flags or configuration; 69 when the metrics
//! port or the inbound SMS webhook's port cannot be bound; 71 when memory cannot be locked
//! (see `memory.allow_unlocked`); 70 for anything else that stops it from starting.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use cache_server::{clock::Clock, telemetry};
use clap::Parser;
use metrics::{Unit, describe_counter, describe_gauge};
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

/// What each exit code means, for `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0   clean shutdown (SIGTERM or SIGINT: sends under way finish), or --check passed
  64  bad flags or configuration (EX_USAGE)
  69  the metrics port or the inbound SMS webhook's port cannot be bound (EX_UNAVAILABLE)
  70  anything else that stops the worker from starting (EX_SOFTWARE)
  71  memory cannot be locked; see memory.allow_unlocked (EX_OSERR)";

/// Leases due invitations and sends them by SMS or email.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_CODES)]
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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write the manual page (roff) to stdout, or with DIR every page (NAME.1 and one per
    /// subcommand) into DIR; for the Debian package.
    #[command(hide = true)]
    Man {
        /// The directory to write the pages into.
        dir: Option<PathBuf>,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((key.trim().to_string(), value.to_string()))
}

fn main() -> ExitCode {
    // `--help` and `--version` print and exit 0; any other flag problem exits 64, as bad
    // configuration does (clap's own code would be 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EX_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    if let Some(Command::Man { dir }) = &cli.command {
        return man(dir.as_deref());
    }
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
    // `app::run` installs the same recorder; installed here first so that the descriptions
    // and the build information are kept.
    telemetry::install_recorder();
    describe();
    telemetry::build_info("outreach_build_info", env!("CARGO_PKG_VERSION"));
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

/// `outreach-worker man [DIR]`: the manual page of these flags on stdout, or every page
/// (outreach-worker.1 and one per subcommand) written into DIR. Needs no configuration;
/// `.ci/packages` installs the pages.
fn man(dir: Option<&std::path::Path>) -> ExitCode {
    let command = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    let written = match dir {
        Some(dir) => clap_mangen::generate_to(command, dir),
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &page))
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outreach-worker: man: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

/// Gives a `# HELP` line to every metric the worker emits (the cache's modules it uses
/// describe theirs: [`telemetry::describe`]).
fn describe() {
    describe_gauge!(
        "outreach_memory_locked",
        "1 when every page of the worker is locked in RAM (mlockall), 0 when it runs unlocked."
    );
    describe_counter!(
        "outreach_contacts_total",
        Unit::Count,
        "Leased contacts handled, by campaign, channel (sms, email, none) and outcome (sent, retry, quiet_hours, ...)."
    );
    describe_counter!("outreach_lease_errors_total", Unit::Count, "LeaseDue calls to the cache that failed.");
    describe_counter!("outreach_ack_errors_total", Unit::Count, "Ack calls to the cache that failed.");
    describe_counter!(
        "outreach_opt_outs_total",
        Unit::Count,
        "Opt-outs taken from the bridge, by result (suppressed, unknown)."
    );
    describe_counter!(
        "outreach_opt_out_sync_errors_total",
        Unit::Count,
        "Opt-out syncs with the bridge that failed (nothing is leased until one succeeds)."
    );
    describe_counter!(
        "outreach_remember_failures_total",
        Unit::Count,
        "Sent contacts that could not be remembered for later opt-outs."
    );
    describe_counter!(
        "outreach_inbound_sms_total",
        Unit::Count,
        "Requests to the inbound SMS webhook, by result (opt_out, other, bad_signature, bad_request, error)."
    );
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
