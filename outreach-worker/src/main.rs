//! `outreach-worker`: for now, parses its flags and says what it would do.
//!
//! Exit codes: 0 on success; 64 for bad flags or an unreadable configuration file.

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::Parser;

const EX_USAGE: u8 = 64;

/// Leases due invitations and sends them by SMS or email.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(short, long, env = "OUTREACH_WORKER_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plan = match &cli.config {
        Some(path) => match std::fs::metadata(path) {
            Ok(_) => format!("would run with the configuration in {}", path.display()),
            Err(err) => {
                let _ = writeln!(std::io::stderr(), "outreach-worker: {}: {err}", path.display());
                return ExitCode::from(EX_USAGE);
            }
        },
        None => "would run with the default configuration".to_string(),
    };
    let _ = writeln!(
        std::io::stdout(),
        "outreach-worker {}: {plan} (sending is not built yet)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::SUCCESS
}
