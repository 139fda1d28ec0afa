//! `survey-bridge`: parses flags and config, starts logging, binds, and calls
//! [`survey_bridge::run`].
//!
//! `survey-bridge` serves; `survey-bridge import FILE.csv` reconciles a CSV export of an
//! external survey and reports its bad rows by line; `survey-bridge account ...` manages
//! the accounts of report readers.
//!
//! Exit codes (`EXIT_CODES`, also in `--help`): 0 after a clean shutdown or an import with
//! no bad rows; 64 for bad flags or configuration; 65 when an import refused some rows (the
//! others were imported) or an account command's input is wrong; 66 when the import file
//! cannot be read or has no usable header; 69 when a listener cannot be bound; 71 when
//! SIGHUP cannot be watched; 70 for anything else.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use cache_server::{audit::Audit, clock::Clock, telemetry};
use clap::Parser;
use survey_bridge::{Listeners, config::BridgeConfig, db::Db, keys::Keys, results::Reconciler};
use tokio::net::TcpListener;
use tracing::error;

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_OSERR: u8 = 71;

/// What each exit code means, for `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0   clean shutdown (SIGTERM or SIGINT), an import with no bad rows, or an account command done
  64  bad flags or configuration (EX_USAGE)
  65  an import refused some rows (the others were imported), or an account command's input
      is wrong (EX_DATAERR)
  66  the import file cannot be read or has no usable header (EX_NOINPUT)
  69  a listener cannot be bound (EX_UNAVAILABLE)
  70  anything else (EX_SOFTWARE)
  71  SIGHUP cannot be watched (EX_OSERR)";

/// The patient side of the tier: invitation ledger, consent and survey pages, aggregates.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Cli {
    /// TOML configuration file.
    #[arg(short, long, env = "SURVEY_BRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Any setting by its path, e.g. `--set link_valid_days=14`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value, global = true)]
    set: Vec<(String, String)>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Reconcile a CSV export of an external survey (a GUID column and question columns,
    /// mapped in `[import]`), reporting bad rows by line number and importing the rest.
    Import {
        /// The CSV file, with a header row.
        file: PathBuf,
    },
    /// Check the configuration and everything it names (keys, certificates, questionnaire,
    /// database) as the bridge reads them at start, then exit: 0 if it would start.
    CheckConfig,
    /// Accounts of report readers: add, reset, disable, enable, list.
    Account {
        #[command(subcommand)]
        command: survey_bridge::accounts::cli::AccountCommand,
    },
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
    // `--help` and `--version` print and exit 0; any other flag problem exits 64.
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
    match cli.command {
        Some(Command::Import { file }) => return runtime.block_on(import(config, &file)),
        Some(Command::Account { command }) => return runtime.block_on(account(config, command)),
        Some(Command::CheckConfig) => return runtime.block_on(check_config(config)),
        Some(Command::Man { .. }) | None => {}
    }
    runtime.block_on(async {
        let (http, metrics) = match (
            bind_optional("http_listen", config.http_listen).await,
            bind_optional("metrics_listen", config.metrics_listen).await,
        ) {
            (Ok(http), Ok(metrics)) => (http, metrics),
            (Err(code), _) | (_, Err(code)) => return code,
        };
        let (https, grpc) =
            match (TcpListener::bind(config.listen).await, TcpListener::bind(config.grpc_listen).await) {
                (Ok(https), Ok(grpc)) => (https, grpc),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("survey-bridge: cannot listen: {e}");
                    return ExitCode::from(EX_UNAVAILABLE);
                }
            };
        let reloads = match cache_server::reload::on_sighup() {
            Ok(reloads) => reloads,
            Err(e) => {
                eprintln!("survey-bridge: cannot watch SIGHUP: {e}");
                return ExitCode::from(EX_OSERR);
            }
        };
        let listeners = Listeners { https, grpc, http, metrics };
        match survey_bridge::run_with_reloads(listeners, config, Clock::System, shutdown_signal(), reloads)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(cause = %e, "survey-bridge failed");
                eprintln!("survey-bridge: {e}");
                ExitCode::from(EX_SOFTWARE)
            }
        }
    })
}

/// `survey-bridge check-config`: 0 if the bridge would start with `config`, 64 naming what
/// would stop it.
async fn check_config(config: BridgeConfig) -> ExitCode {
    match survey_bridge::check(&config).await {
        Ok(summary) => {
            eprintln!("survey-bridge: config ok: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("survey-bridge: config: {e}");
            ExitCode::from(EX_USAGE)
        }
    }
}

/// `survey-bridge man [DIR]`: the manual page of these flags and subcommands on stdout, or every page
/// (survey-bridge.1 and one per subcommand) written into DIR. Needs no configuration;
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
            eprintln!("survey-bridge: man: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

/// The listener of an optional port (`setting` names it), or the exit code when it cannot
/// be bound.
async fn bind_optional(
    setting: &str,
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<TcpListener>, ExitCode> {
    let Some(addr) = addr else { return Ok(None) };
    TcpListener::bind(addr).await.map(Some).map_err(|e| {
        eprintln!("survey-bridge: cannot listen on {setting} {addr}: {e}");
        ExitCode::from(EX_UNAVAILABLE)
    })
}

/// `survey-bridge import FILE`: prints one line per refused row and a summary.
async fn import(config: BridgeConfig, file: &std::path::Path) -> ExitCode {
    let input = match std::fs::File::open(file) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("survey-bridge import: {}: {e}", file.display());
            return ExitCode::from(EX_NOINPUT);
        }
    };
    let reconciler = match reconciler(&config).await {
        Ok(reconciler) => reconciler,
        Err(e) => {
            eprintln!("survey-bridge import: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    let name = file.display();
    match survey_bridge::import::import_csv(input, &config.import, &reconciler).await {
        Ok(report) => {
            let mut out = String::new();
            for (line, reason) in &report.refused {
                out.push_str(&format!("{name}:{line}: {reason}\n"));
            }
            out.push_str(&format!("imported {} rows, refused {}\n", report.imported, report.refused.len()));
            if std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes()).is_err() {
                return ExitCode::from(EX_SOFTWARE);
            }
            if report.refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EX_DATAERR) }
        }
        Err(e @ survey_bridge::import::ImportError::Stopped { .. }) => {
            eprintln!("{name}: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(EX_NOINPUT)
        }
    }
}

/// `survey-bridge account ...`.
async fn account(config: BridgeConfig, command: survey_bridge::accounts::cli::AccountCommand) -> ExitCode {
    use survey_bridge::accounts::cli::{CommandError, run};
    let db = match Db::connect(&config.database_url).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("survey-bridge account: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    match run(&db, command, jiff::Timestamp::now()).await {
        Ok(out) => {
            if std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes()).is_err() {
                return ExitCode::from(EX_SOFTWARE);
            }
            ExitCode::SUCCESS
        }
        Err(e @ CommandError::Db(_)) => {
            eprintln!("survey-bridge account: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
        Err(e) => {
            eprintln!("survey-bridge account: {e}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

async fn reconciler(config: &BridgeConfig) -> Result<Reconciler, survey_bridge::RunError> {
    let audit_key = cache_server::audit::load_key(&config.audit.key_file)?;
    let audit =
        Audit::open(&config.audit.path, audit_key, Clock::System)?.with_system_name("survey-bridge-import");
    Ok(Reconciler {
        db: Db::connect(&config.database_url).await?,
        keys: Arc::new(Keys::load(&config.key_file)?),
        questionnaire: Arc::new(survey_bridge::server::load_questionnaire(config)?),
        clock: Clock::System,
        audit: Arc::new(audit),
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
