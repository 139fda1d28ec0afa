//! `cache-loadgen`: drives a running cache server over mutual TLS with real role
//! certificates (made by `cache-server certs`) and prints throughput, latency percentiles
//! (HDR histogram) and the server's CPU time per request (from `/proc`).
//!
//! - `run`: unary PutContact / GetContact mixes, or streaming PutContacts; a fixed number
//!   of requests, N in flight over M connections ([`load`]).
//! - `memory`: fills a `cache-lab-server` (the cache server's `run` with a clock SIGUSR1
//!   moves a day on, `src/lab.rs`) to 1M, 10M contacts, reads its resident and locked
//!   memory, and measures GetContact while a sweep erases a day ([`memory`]).
//!
//! Results are single `RESULT ...`, `MEMORY ...`, `GETS ...`, `SWEEP ...` lines of
//! `key=value` fields on stdout, for `bench/compare.sh` to read.
//!
//! Exit codes (`EXIT_CODES`, also in `--help`): 0 when the run finished; 1 when it failed
//! (the server unreachable, a certificate missing, a call refused); 64 for bad flags; 70
//! when the process cannot start (TLS provider, runtime).

mod conn;
mod h2c;
mod load;
mod memory;
mod proc;
mod sample;

use std::{io::Write, net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    conn::{BoxError, Target},
    load::{Conn, Streaming, Unary},
};

/// What each exit code means, for `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0   the run finished and its result lines were printed
  1   the run failed (the server unreachable, a certificate missing, a call refused)
  64  bad flags (EX_USAGE)
  70  the process cannot start: TLS provider or runtime (EX_SOFTWARE)";

/// Load generator for the contact cache.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Worker threads of this process's runtime (default: one per CPU).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one workload and print a RESULT line.
    Run(RunArgs),
    /// Fill a cache-lab-server, read its memory, measure GetContact during a sweep.
    Memory(MemoryArgs),
}

/// Where the server is and which certificates to use.
#[derive(Debug, Args, Clone)]
struct ServerArgs {
    /// The server's gRPC address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: SocketAddr,
    /// The name the server's certificate must carry.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Directory written by `cache-server certs`: ca.pem, emr-<site>.pem/.key, outreach.pem/.key.
    #[arg(long, default_value = "certs")]
    certs: PathBuf,
    /// The site whose EMR connector certificate stores contacts.
    #[arg(long, default_value = "site-1001")]
    site: String,
    /// The server's process id, to report its CPU time (and memory) from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// TLS connections per role.
    #[arg(long, default_value_t = 2)]
    connections: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    /// Unary PutContact only.
    Put,
    /// Unary GetContact only, of contacts stored first (streaming, not measured).
    Get,
    /// Unary PutContact and GetContact, `--get-percent` of them gets.
    Mix,
    /// Streaming PutContacts: `--concurrency` streams; throughput in contacts per second.
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClientKind {
    /// gRPC frames on `h2` directly (lean, like redis-benchmark's client).
    H2,
    /// tonic's generated client.
    Tonic,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The client for unary calls (streams always use tonic).
    #[arg(long, value_enum, default_value = "h2")]
    client: ClientKind,
    #[command(flatten)]
    server: ServerArgs,
    /// The workload.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Requests (contacts, for `stream`) in the measured run.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Requests in flight at once (streams open at once, for `stream`).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Requests of an unmeasured warm-up run first (default: a tenth of --requests).
    #[arg(long)]
    warmup: Option<u64>,
    /// Encoded size of each contact in bytes (default: realistic, about 110).
    #[arg(long)]
    value_size: Option<usize>,
    /// Percent of GetContact requests in `mix`.
    #[arg(long, default_value_t = 50)]
    get_percent: u8,
    /// Contacts stored before `get` and `mix`, whose GUIDs the gets ask for.
    #[arg(long, default_value_t = 100_000)]
    preload: u64,
}

#[derive(Debug, Args)]
struct MemoryArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The lab server's metrics address (its sweeps are seen there).
    #[arg(long)]
    metrics: SocketAddr,
    /// Contact counts at which memory is read; the last is the total.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    checkpoints: Vec<u64>,
    /// Percent of the total stored on the first day, which the measured sweep erases.
    #[arg(long, default_value_t = 4)]
    old_percent: u64,
    /// PutContacts streams during the fill.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// GetContact requests in flight while probing.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Seconds of GetContact with no sweep running.
    #[arg(long, default_value_t = 15)]
    probe_seconds: u64,
}

fn main() -> ExitCode {
    // `--help` and `--version` print and exit 0; any other flag problem exits 64 (clap's
    // own code would be 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(64) } else { ExitCode::SUCCESS };
        }
    };
    if let Err(e) = rustls::crypto::ring::default_provider().install_default() {
        eprintln!("cache-loadgen: cannot install the TLS crypto provider: {e:?}");
        return ExitCode::from(70);
    }
    // One thread: a current-thread runtime (no wake-ups across threads, like redis-benchmark's
    // single event loop); more: a multi-thread one.
    let mut builder = match cli.threads {
        Some(0 | 1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cache-loadgen: cannot start the runtime: {e}");
            return ExitCode::from(70);
        }
    };
    let done = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Memory(args) => memory(args).await,
        }
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cache-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn run(args: RunArgs) -> Result<(), BoxError> {
    let s = &args.server;
    let target = Target::new(s.addr, &s.domain, &s.certs)?;
    let emr = target.connect(&s.certs, &format!("emr-{}", s.site), s.connections).await?;
    let pool = load::contact_pool(&s.site, args.value_size, 4096);
    let warmup = args.warmup.unwrap_or(args.requests / 10);
    let client = match (args.scenario, args.client) {
        (Scenario::Stream, _) => "tonic",
        (_, ClientKind::H2) => "h2",
        (_, ClientKind::Tonic) => "tonic",
    };
    let name = |scenario: &str| match args.value_size {
        Some(size) => format!("{scenario}-{size}B-c{}-m{}-{client}", args.concurrency, s.connections),
        None => format!("{scenario}-c{}-m{}-{client}", args.concurrency, s.connections),
    };
    if let Scenario::Stream = args.scenario {
        let work =
            |name: String, contacts| Streaming { name, contacts, streams: args.concurrency, keep_every: 0 };
        if warmup > 0 {
            load::streaming(&work("warmup".into(), warmup), &emr, pool.clone(), None).await?;
        }
        let (report, _) =
            load::streaming(&work(name("stream"), args.requests), &emr, pool, s.server_pid).await?;
        say(&report.to_string());
        return Ok(());
    }
    let (get_percent, scenario) = match args.scenario {
        Scenario::Put => (0, "put"),
        Scenario::Get => (100, "get"),
        _ => (args.get_percent.min(100), "mix"),
    };
    let unary_conns = |role: String| {
        let target = target.clone();
        async move {
            Ok::<Vec<Conn>, BoxError>(match args.client {
                ClientKind::Tonic => target
                    .connect(&s.certs, &role, s.connections)
                    .await?
                    .into_iter()
                    .map(Conn::Tonic)
                    .collect(),
                ClientKind::H2 => h2c::connect(s.addr, &s.domain, &s.certs, &role, s.connections)
                    .await?
                    .into_iter()
                    .map(Conn::H2)
                    .collect(),
            })
        }
    };
    let (outreach, guids) = if get_percent > 0 {
        let outreach = unary_conns("outreach".to_string()).await?;
        let preload =
            Streaming { name: "preload".into(), contacts: args.preload.max(1), streams: 8, keep_every: 1 };
        let (report, guids) = load::streaming(&preload, &emr, pool.clone(), None).await?;
        if report.errors > 0 {
            return Err(format!("the preload failed: {report}").into());
        }
        (outreach, guids)
    } else {
        (Vec::new(), Vec::new())
    };
    let guids = Arc::new(guids);
    let emr = if get_percent < 100 { unary_conns(format!("emr-{}", s.site)).await? } else { Vec::new() };
    let work = |name: String, requests| Unary { name, get_percent, requests, concurrency: args.concurrency };
    if warmup > 0 {
        load::unary(&work("warmup".into(), warmup), &emr, &outreach, pool.clone(), guids.clone(), None)
            .await?;
    }
    let scenario = if scenario == "mix" { format!("mix{get_percent}") } else { scenario.to_string() };
    let report =
        load::unary(&work(name(&scenario), args.requests), &emr, &outreach, pool, guids, s.server_pid)
            .await?;
    say(&report.to_string());
    Ok(())
}

async fn memory(args: MemoryArgs) -> Result<(), BoxError> {
    let s = &args.server;
    let pid = s.server_pid.ok_or("--server-pid is required: the lab server's process id")?;
    let target = Target::new(s.addr, &s.domain, &s.certs)?;
    let emr = target.connect(&s.certs, &format!("emr-{}", s.site), s.connections).await?;
    let outreach = target.connect(&s.certs, "outreach", s.connections).await?;
    let mut checkpoints = args.checkpoints.clone();
    checkpoints.sort_unstable();
    let plan = memory::Plan {
        pid,
        metrics: args.metrics,
        checkpoints,
        old_percent: args.old_percent.min(50),
        streams: args.streams,
        concurrency: args.concurrency,
        probe: Duration::from_secs(args.probe_seconds),
    };
    let pool = load::contact_pool(&s.site, None, 65_536);
    memory::run(&plan, &emr, &outreach, pool).await
}
