//! `cache-server`: parses flags and config, starts logging, binds, and calls
//! [`cache_server::run`].
//!
//! Exit codes (`EXIT_CODES`, also in `--help`): 0 after a clean shutdown; 64 for bad flags
//! or configuration; 69 when a listener cannot be bound; 71 when memory cannot be protected
//! (or SIGHUP cannot be watched); 70 for anything else (including an audit log that cannot
//! be opened or written at start).
//!
//! Signals: SIGTERM or SIGINT drain and stop (erasing every contact); SIGHUP reads the
//! certificates again and reopens the audit file (see [`cache_server::reload`]).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use cache_server::{Listeners, RunError, certs::DevPki, clock::Clock, config::Config, guid::Guid, telemetry};
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tracing::error;

/// Every heap block is wiped when it is freed (or moved by a reallocation), so decoded
/// requests, answers and TLS buffers leave no contact data behind in free memory.
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

const EX_USAGE: u8 = 64;
const EX_SOFTWARE: u8 = 70;
const EX_UNAVAILABLE: u8 = 69;
const EX_OSERR: u8 = 71;

/// What each exit code means, for `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0   clean shutdown (SIGTERM or SIGINT), or a subcommand that succeeded
  64  bad flags or configuration, or a bad GUID or key file for audit-hash (EX_USAGE)
  69  a listener cannot be bound (EX_UNAVAILABLE)
  70  anything else, e.g. an audit log that cannot be opened or written at start (EX_SOFTWARE)
  71  memory cannot be locked (see --allow-unlocked) or SIGHUP cannot be watched (EX_OSERR)";

/// Contact details in locked, encrypted RAM under random GUIDs, over gRPC/TLS.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Serve(ServeArgs),
    /// Check the configuration and print it, then exit.
    CheckConfig(ServeArgs),
    /// Write a development CA, server and caller certificates and an audit key (not for
    /// production).
    Certs {
        /// Directory to write into: ca.pem/.key, cache-server.pem/.key, outreach, bridge,
        /// admin and emr-<site> .pem/.key, and audit.key (kept if it exists).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// DNS names and IP addresses the server certificate is valid for.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
        hosts: Vec<String>,
        /// Sites to make EMR connector certificates for.
        #[arg(long, value_delimiter = ',', default_value = "site-1001,site-1002,site-1003")]
        sites: Vec<String>,
    },
    /// Write the manual page (roff) to stdout, or with DIR every page (NAME.1 and one per
    /// subcommand) into DIR; for the Debian package.
    #[command(hide = true)]
    Man {
        /// The directory to write the pages into.
        dir: Option<PathBuf>,
    },
    /// Print the audit hash of each GUID, to find its events in the audit log.
    AuditHash {
        /// The audit key file (64 hex digits); by default audit.key_file of the configuration.
        #[arg(long)]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        args: ServeArgs,
        /// The GUIDs.
        #[arg(required = true)]
        guids: Vec<String>,
    },
}

/// Where the settings come from; each flag overrides the file and the environment.
#[derive(Debug, Args, Clone, Default)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(short, long, env = "CACHE_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address (`listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Prometheus listen address (`metrics_listen`).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Start even if memory cannot be locked (`memory.allow_unlocked`); development only.
    #[arg(long)]
    allow_unlocked: bool,
    /// Log format (`log.format`).
    #[arg(long, value_parser = ["plain", "json"])]
    log_format: Option<String>,
    /// Any setting by its path, e.g. `--set store.max_entries=1000`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((key.trim().to_string(), value.to_string()))
}

impl ServeArgs {
    fn overrides(&self) -> Vec<(String, String)> {
        let mut overrides = Vec::new();
        if let Some(listen) = self.listen {
            overrides.push(("listen".into(), listen.to_string()));
        }
        if let Some(metrics) = self.metrics_listen {
            overrides.push(("metrics_listen".into(), metrics.to_string()));
        }
        if self.allow_unlocked {
            overrides.push(("memory.allow_unlocked".into(), "true".into()));
        }
        if let Some(format) = &self.log_format {
            overrides.push(("log.format".into(), format.clone()));
        }
        overrides.extend(self.set.iter().cloned());
        overrides
    }

    fn load(&self) -> Result<Config, ExitCode> {
        Config::load(self.config.as_deref(), &self.overrides()).map_err(|e| {
            eprintln!("cache-server: config: {e}");
            ExitCode::from(EX_USAGE)
        })
    }
}

fn main() -> ExitCode {
    // `--help` and `--version` print and exit 0; any other flag problem exits 64.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(EX_USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match cli.command {
        Some(Command::Certs { out, hosts, sites }) => certs(&out, &hosts, &sites),
        Some(Command::AuditHash { key_file, args, guids }) => audit_hash(key_file, &args, &guids),
        Some(Command::CheckConfig(args)) => match args.load() {
            Ok(config) => {
                eprintln!("cache-server: config ok: {config:?}");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Man { dir }) => man(dir.as_deref()),
        None => serve(&cli.serve),
    }
}

/// `cache-server man [DIR]`: the manual page of these flags and subcommands on stdout, or every page
/// (cache-server.1 and one per subcommand) written into DIR. Needs no configuration;
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
            eprintln!("cache-server: man: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

fn audit_hash(key_file: Option<PathBuf>, args: &ServeArgs, guids: &[String]) -> ExitCode {
    let key_file = match key_file {
        Some(path) => path,
        None => match args.load() {
            Ok(config) => config.audit.key_file,
            Err(code) => return code,
        },
    };
    let key = match cache_server::audit::load_key(&key_file) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("cache-server: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let mut out = String::new();
    for text in guids {
        match text.parse::<Guid>() {
            Ok(guid) => out.push_str(&format!("{text} {}\n", cache_server::audit::guid_hmac(&key, &guid))),
            Err(e) => {
                eprintln!("cache-server: {text:?}: {e}");
                return ExitCode::from(EX_USAGE);
            }
        }
    }
    use std::io::Write;
    match std::io::stdout().write_all(out.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EX_SOFTWARE),
    }
}

fn certs(out: &std::path::Path, hosts: &[String], sites: &[String]) -> ExitCode {
    match DevPki::generate(hosts).and_then(|pki| pki.write_all(out, sites)) {
        Ok(()) => {
            eprintln!(
                "cache-server: wrote a development CA, certificates and an audit key to {}",
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cache-server: certs: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match args.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Err(e) = rustls::crypto::ring::default_provider().install_default() {
        eprintln!("cache-server: cannot install the TLS crypto provider: {e:?}");
        return ExitCode::from(EX_SOFTWARE);
    }
    telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cache-server: cannot start the runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    runtime.block_on(async {
        let grpc = match TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cache-server: cannot listen on {}: {e}", config.listen);
                return ExitCode::from(EX_UNAVAILABLE);
            }
        };
        let metrics = match config.metrics_listen {
            Some(addr) => match TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("cache-server: cannot listen on {addr}: {e}");
                    return ExitCode::from(EX_UNAVAILABLE);
                }
            },
            None => None,
        };
        let reloads = match cache_server::reload::on_sighup() {
            Ok(reloads) => reloads,
            Err(e) => {
                eprintln!("cache-server: cannot watch SIGHUP: {e}");
                return ExitCode::from(EX_OSERR);
            }
        };
        let listeners = Listeners { grpc, metrics };
        match cache_server::run_with_reloads(listeners, config, Clock::System, shutdown_signal(), reloads)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ RunError::Memory(_)) => {
                eprintln!("cache-server: refusing to start: {e}");
                ExitCode::from(EX_OSERR)
            }
            Err(e) => {
                error!(cause = %e, "cache-server failed");
                eprintln!("cache-server: {e}");
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
            error!(cause = %e, "cannot watch SIGTERM; only SIGINT will stop the daemon");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
