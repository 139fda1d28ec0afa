//! `emr-connector`: pushes an appointment export (CSV) to the contact cache and keeps the
//! GUID map; see the crate documentation and the README.
//!
//! Exit codes (`EXIT_CODES`, also in `--help`): 0 when every row was pushed or skipped; 64
//! for bad flags or configuration; 65 when a row was refused (or the header or the map is
//! unusable); 66 when the CSV cannot be read; 69 when the cache cannot be reached or some
//! rows could not be stored now; 70 for anything else; 73 when the map cannot be written; 77
//! when the cache refuses the certificate.

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use emr_connector::{
    app::{self, Console, PushArgs, exit},
    config::ConnectorConfig,
};

/// What each exit code means (`app::exit`), for `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0   every row was pushed or skipped
  64  bad flags or configuration (EX_USAGE)
  65  a row was refused, the header is unusable, or the map is malformed (EX_DATAERR)
  66  the CSV cannot be read (EX_NOINPUT)
  69  the cache cannot be reached, stopped answering, or could not store some rows now
      (EX_UNAVAILABLE)
  70  anything else (EX_SOFTWARE)
  73  the map cannot be written (EX_CANTCREAT)
  77  the cache refused this connector's certificate (EX_NOPERM)";

/// A reference EMR connector for the contact cache.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start: the size of `Push` beside the small hidden `Man` costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Check each row of CSV_FILE, push the good ones to the cache, and write each row's GUID
    /// to the map (rows already in the map are skipped).
    Push(PushFlags),
    /// Write the manual page (roff) to stdout, or with DIR every page (NAME.1 and one per
    /// subcommand) into DIR; for the Debian package.
    #[command(hide = true)]
    Man {
        /// The directory to write the pages into.
        dir: Option<PathBuf>,
    },
}

/// Where the settings come from; each flag overrides the file and the environment.
#[derive(Debug, Args)]
struct PushFlags {
    /// TOML configuration file.
    #[arg(short, long, env = "EMR_CONNECTOR_CONFIG")]
    config: Option<PathBuf>,
    /// The cache's URL, `https://host:port` (`cache.url`).
    #[arg(long)]
    url: Option<String>,
    /// The name in the cache's certificate, if not the URL's host (`cache.server_name`).
    #[arg(long)]
    server_name: Option<String>,
    /// The CA that signed the cache's certificate (`cache.ca`).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// This connector's certificate: role emr, one site (`cache.cert`).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// This connector's private key (`cache.key`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Hours after the appointment that the invitation is due (`send_after_hours`, 2).
    #[arg(long)]
    send_after_hours: Option<u32>,
    /// The region of phone numbers written without a country code, e.g. CA or US: its
    /// numbers (`613-555-0101`, `1 613 555 0101`) are sent in E.164 (`default_region`, CA).
    #[arg(long, value_name = "REGION")]
    default_region: Option<String>,
    /// The GUID map to append to and skip from [default: CSV_FILE.guids.csv].
    #[arg(long)]
    map: Option<PathBuf>,
    /// Check and report the rows; send nothing, write no map.
    #[arg(long)]
    dry_run: bool,
    /// The EMR export.
    #[arg(value_name = "CSV_FILE")]
    csv: PathBuf,
}

impl PushFlags {
    fn overrides(&self) -> Vec<(String, String)> {
        let path = |p: &PathBuf| p.display().to_string();
        [
            ("cache.url", self.url.clone()),
            ("cache.server_name", self.server_name.clone()),
            ("cache.ca", self.ca.as_ref().map(path)),
            ("cache.cert", self.cert.as_ref().map(path)),
            ("cache.key", self.key.as_ref().map(path)),
            ("send_after_hours", self.send_after_hours.map(|h| h.to_string())),
            ("default_region", self.default_region.clone()),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_string(), value?)))
        .collect()
    }
}

/// `emr-connector man [DIR]`: the manual page of these flags on stdout, or every page
/// (emr-connector.1 and one per subcommand) written into DIR. Needs no configuration;
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
            eprintln!("emr-connector: man: {e}");
            ExitCode::from(exit::SOFTWARE)
        }
    }
}

fn main() -> ExitCode {
    // `--help` and `--version` print and exit 0; any other flag problem exits 64.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let flags = match cli.command {
        Command::Push(flags) => flags,
        Command::Man { dir } => return man(dir.as_deref()),
    };
    let config = match ConnectorConfig::load(flags.config.as_deref(), &flags.overrides()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("emr-connector: config: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    if !flags.dry_run
        && let Err(e) = config.check()
    {
        eprintln!("emr-connector: config: {e}");
        return ExitCode::from(exit::USAGE);
    }
    if let Err(e) = rustls::crypto::ring::default_provider().install_default() {
        eprintln!("emr-connector: cannot install the TLS crypto provider: {e:?}");
        return ExitCode::from(exit::SOFTWARE);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("emr-connector: cannot start the runtime: {e}");
            return ExitCode::from(exit::SOFTWARE);
        }
    };
    let map = flags.map.clone().unwrap_or_else(|| app::default_map_path(&flags.csv));
    let args = PushArgs { csv: flags.csv, map, config, dry_run: flags.dry_run };
    let mut console = Console::default();
    let report = runtime.block_on(app::push(&args, &mut console, jiff::Timestamp::now()));

    // The summary is the one line on stdout; what went wrong is on stderr.
    if let Err(e) = writeln!(std::io::stdout().lock(), "{}", report.summary) {
        eprintln!("emr-connector: cannot write the summary: {e}");
        return ExitCode::from(exit::SOFTWARE);
    }
    if let Some(failure) = &report.failure {
        eprintln!("emr-connector: {failure}");
    }
    ExitCode::from(report.exit_code())
}
