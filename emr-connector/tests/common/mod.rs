//! Test helpers: a real cache-server in this process on an ephemeral loopback port, with a
//! development PKI in a temporary folder, and the real `emr-connector` binary run against it.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Output,
};

use cache_server::{Listeners, RunError, certs::DevPki, clock::Clock, config::Config};
use proto::v1::{StatsRequest, contact_cache_client::ContactCacheClient};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

/// Sites with a connector certificate in the test PKI.
pub const SITES: [&str; 2] = ["site-1001", "site-1002"];

/// A development PKI in a temporary folder (also where test files go).
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        pki.write_all(dir.path(), &SITES.map(String::from)).unwrap();
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The connection flags for the connector of `site` against a cache on `port`.
    pub fn flags(&self, port: u16, site: &str) -> Vec<String> {
        let path = |name: String| self.path(&name).display().to_string();
        vec![
            "--url".into(),
            format!("https://127.0.0.1:{port}"),
            "--server-name".into(),
            "localhost".into(),
            "--ca".into(),
            path("ca.pem".into()),
            "--cert".into(),
            path(format!("emr-{site}.pem")),
            "--key".into(),
            path(format!("emr-{site}.key")),
        ]
    }

    /// Writes `text` to a file named `name` in the folder and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A cache-server running in this process, on the system clock (the binary's) unless a test
/// gives it another.
pub struct Cache {
    pub addr: SocketAddr,
    pub pki: Pki,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), RunError>>>,
}

impl Cache {
    pub async fn start() -> Cache {
        Cache::start_on(Clock::System).await
    }

    /// A cache whose time is `clock` (a manual clock moves its expiry with a test's).
    pub async fn start_on(clock: Clock) -> Cache {
        let pki = Pki::new();
        let dir = pki.dir.path();
        let mut config = Config::default();
        config.tls.cert = dir.join("cache-server.pem");
        config.tls.key = dir.join("cache-server.key");
        config.tls.client_ca = dir.join("ca.pem");
        config.audit.path = dir.join("cache-audit.jsonl");
        config.audit.key_file = dir.join("audit.key");
        config.memory.allow_unlocked = true;
        config.shutdown_grace_seconds = 1;
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let handle =
            tokio::spawn(cache_server::run(Listeners { grpc, metrics: None }, config, clock, async {
                let _ = rx.await;
            }));
        Cache { addr, pki, shutdown: Some(tx), handle: Some(handle) }
    }

    /// The connection flags for the connector of `site`.
    pub fn flags(&self, site: &str) -> Vec<String> {
        self.pki.flags(self.addr.port(), site)
    }

    /// A client presenting the certificate written for `name` (`admin`, `emr-site-1001`...).
    pub async fn client_as(&self, name: &str) -> ContactCacheClient<Channel> {
        ContactCacheClient::new(test_support::mtls_channel(self.pki.dir.path(), name, self.addr).await)
    }

    /// Contacts the cache holds, as its admin sees them.
    pub async fn entries(&self) -> u64 {
        self.client_as("admin").await.stats(StatsRequest {}).await.unwrap().into_inner().entries
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// What a run of the binary left.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs the real binary with `args`, the environment cleared of the connector's settings.
pub async fn connector(args: &[String]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_emr-connector"));
    for (key, _) in std::env::vars() {
        if key.starts_with("EMR_CONNECTOR_") {
            command.env_remove(key);
        }
    }
    let Output { status, stdout, stderr } = command.args(args).output().await.unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// `push` with the connection flags of `site`, `extra` flags, and the CSV.
pub fn push_args(flags: Vec<String>, extra: &[&str], csv: &Path) -> Vec<String> {
    let mut args = vec!["push".to_string()];
    args.extend(flags);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(csv.display().to_string());
    args
}

/// A file of `testdata/`.
pub fn testdata(name: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(name)).unwrap()
}

/// The sample's header and its rows of `site` (one certificate is one site).
pub fn sample_of(site: &str) -> String {
    let sample = testdata("contacts.csv");
    let mut lines = sample.lines();
    let mut text = format!("{}\n", lines.next().unwrap());
    for line in lines.filter(|l| l.split(',').nth(1) == Some(site)) {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Every phone and email of `csv` (columns 5 and 6 of the sample's layout).
pub fn contact_values(csv: &str) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(csv.as_bytes());
    let mut values = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        for at in [4, 5] {
            if let Some(value) = record.get(at).filter(|v| !v.is_empty()) {
                values.push(value.to_string());
            }
        }
    }
    values
}

/// Fails if any phone or email of `csv` shows in the run's output.
pub fn assert_no_contact_data(run: &Run, csv: &str) {
    for value in contact_values(csv) {
        assert!(!run.stdout.contains(&value) && !run.stderr.contains(&value), "{value:?} leaked:\n{run:?}");
        // The digits alone, in case something reformats the number.
        let digits = value.trim_start_matches('+');
        assert!(!run.stderr.contains(digits), "{value:?} leaked:\n{run:?}");
    }
}

/// The map's lines after its header, split into fields.
pub fn map_lines(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("row_id,guid,expires_at"));
    lines.map(|l| l.split(',').map(String::from).collect()).collect()
}
