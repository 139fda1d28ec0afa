//! The real `cache-server` binary, started as an operator would: a development PKI and a
//! configuration in a temporary directory, the daemon on ephemeral loopback ports (read from
//! its JSON log), a tonic client with a role certificate, and its metrics page.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use proto::v1::contact_cache_client::ContactCacheClient;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_cache-server");

/// A development PKI and a configuration for the daemon in `dir`; the audit log is
/// `dir/audit.jsonl`.
pub fn setup(dir: &Path, extra: &str) -> PathBuf {
    let status = std::process::Command::new(BIN)
        .args(["certs", "--out"])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let path = dir.join("cache-server.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nshutdown_grace_seconds = 5\n{extra}\n\
             [tls]\ncert = \"{0}/cache-server.pem\"\nkey = \"{0}/cache-server.key\"\nclient_ca = \"{0}/ca.pem\"\n\
             [audit]\npath = \"{0}/audit.jsonl\"\nkey_file = \"{0}/audit.key\"\n\
             [log]\nformat = \"json\"\nfilter = \"debug\"\n",
            dir.display()
        ),
    )
    .unwrap();
    path
}

/// How to start the daemon.
#[derive(Default)]
pub struct Launch {
    /// A program (and its arguments) to run the daemon under, e.g. strace.
    pub wrapper: Vec<String>,
    /// The working directory.
    pub cwd: Option<PathBuf>,
    /// Raise RLIMIT_CORE to unlimited in the child before it runs, as an operator with core
    /// dumps on system-wide would have it.
    pub cores_on: bool,
    /// More flags for the daemon.
    pub args: Vec<String>,
}

/// The daemon, started and listening.
pub struct Daemon {
    pub child: Child,
    /// The daemon's own pid (under a wrapper, not the wrapper's).
    pub pid: u32,
    pub grpc: String,
    pub metrics: String,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub pki: PathBuf,
}

pub async fn spawn(config: &Path, pki: &Path, launch: Launch) -> Daemon {
    let mut args: Vec<String> = launch.wrapper.clone();
    args.extend([BIN.to_string(), "--config".into(), config.display().to_string()]);
    args.extend(launch.args.iter().cloned());
    let mut command = Command::new(&args[0]);
    command.args(&args[1..]).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    if let Some(cwd) = &launch.cwd {
        command.current_dir(cwd);
    }
    if launch.cores_on {
        // SAFETY: setrlimit is async-signal-safe and touches only the struct passed.
        unsafe {
            command.pre_exec(|| {
                let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
                if libc::setrlimit(libc::RLIMIT_CORE, &unlimited) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let mut child = command.spawn().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut grpc, mut metrics) = (None, None);
    while grpc.is_none() || metrics.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(60), reader.next_line())
            .await
            .expect("the daemon logs its addresses")
            .unwrap()
            .unwrap_or_else(|| panic!("the daemon exited: {:?}", lines.lock().unwrap()));
        let addr = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| Some((v["message"].as_str()?.to_string(), v["addr"].as_str()?.to_string())));
        match addr {
            Some((m, a)) if m == "grpc listening" => grpc = Some(a),
            Some((m, a)) if m == "metrics listening" => metrics = Some(a),
            _ => {}
        }
        lines.lock().unwrap().push(line);
    }
    let sink = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let outer = child.id().unwrap();
    let pid = if launch.wrapper.is_empty() { outer } else { daemon_under(outer) };
    Daemon { child, pid, grpc: grpc.unwrap(), metrics: metrics.unwrap(), lines, pki: pki.to_path_buf() }
}

/// The cache-server process started by the wrapper `outer`.
pub fn daemon_under(outer: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).unwrap();
    let pids: Vec<u32> = children.split_whitespace().map(|p| p.parse().unwrap()).collect();
    *pids
        .iter()
        .find(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == Path::new(BIN)))
        .unwrap_or_else(|| panic!("no cache-server under {outer}: {pids:?}"))
}

impl Daemon {
    /// A client presenting the certificate written for `name` (e.g. `outreach`).
    pub async fn client(&self, name: &str) -> ContactCacheClient<Channel> {
        ContactCacheClient::new(test_support::mtls_channel(&self.pki, name, self.grpc.parse().unwrap()).await)
    }

    pub async fn metrics(&self) -> String {
        let mut stream = tokio::net::TcpStream::connect(&self.metrics).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        body
    }

    /// A field of `/proc/<pid>/status`, in kB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A client of the PKI in `pki` presenting the certificate written there for `name`.
    pub async fn client_of(&self, pki: &Path, name: &str) -> ContactCacheClient<Channel> {
        ContactCacheClient::new(test_support::mtls_channel(pki, name, self.grpc.parse().unwrap()).await)
    }

    /// Sends SIGTERM and waits for the daemon (and any wrapper) to exit; its exit status and
    /// every line it logged.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        self.signal(libc::SIGTERM);
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lines = self.lines.lock().unwrap().clone();
        (status, lines)
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill with the pid of our own child process and a standard signal.
        assert_eq!(unsafe { libc::kill(self.pid as libc::pid_t, signal) }, 0);
    }
}
