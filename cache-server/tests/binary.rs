//! The real `cache-server` binary: certificates, exit codes, memory locking, metrics,
//! SIGTERM, restart, and what it writes to its log.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{contact, install_crypto_provider};
use proto::v1::{
    GetContactRequest, PutContactRequest, StatsRequest, contact_cache_client::ContactCacheClient,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const BIN: &str = env!("CARGO_BIN_EXE_cache-server");

struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    grpc: String,
    metrics: String,
}

fn certs(dir: &std::path::Path) {
    let status = std::process::Command::new(BIN)
        .args(["certs", "--out"])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    for name in [
        "ca.pem",
        "ca.key",
        "cache-server.pem",
        "cache-server.key",
        "admin.pem",
        "outreach.key",
        "emr-site-1001.pem",
        "audit.key",
    ] {
        assert!(dir.join(name).is_file(), "{name}");
    }
}

fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("cache-server.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nshutdown_grace_seconds = 5\n\
             [tls]\ncert = \"{0}/cache-server.pem\"\nkey = \"{0}/cache-server.key\"\nclient_ca = \"{0}/ca.pem\"\n\
             [audit]\npath = \"{0}/audit.jsonl\"\nkey_file = \"{0}/audit.key\"\n\
             [log]\nformat = \"json\"\nfilter = \"debug\"\n",
            dir.display()
        ),
    )
    .unwrap();
    path
}

async fn spawn(config: &std::path::Path, extra: &[&str]) -> Daemon {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
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
    Daemon { child, lines, grpc: grpc.unwrap(), metrics: metrics.unwrap() }
}

impl Daemon {
    async fn client(&self, dir: &std::path::Path, name: &str) -> ContactCacheClient<Channel> {
        install_crypto_provider();
        let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        let cert = std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap();
        let key = std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://{}", self.grpc))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        ContactCacheClient::new(channel)
    }

    async fn metrics(&self) -> String {
        let mut stream = tokio::net::TcpStream::connect(&self.metrics).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        body
    }

    fn vm_locked_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id().unwrap())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmLck:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Sends SIGTERM and waits for a clean exit.
    async fn terminate(mut self) -> Vec<String> {
        let pid = self.child.id().unwrap() as libc::pid_t;
        // SAFETY: kill with a valid pid of our own child and a standard signal.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await.unwrap().unwrap();
        assert_eq!(status.code(), Some(0), "a clean shutdown exits 0");
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.lines.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn bad_configuration_exits_64_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let config = config_file(dir.path());
    let cases: [&[&str]; 5] = [
        &["--set", "store.retention_days=31"],
        &["--set", "store.sweep_schedule=sometimes"],
        &["--set", "tls.cert=/nonexistent.pem"],
        &["--set", "store.unknown_setting=1"],
        &["--set", "audit.key_file=/nonexistent.key"],
    ];
    for extra in cases {
        let out = std::process::Command::new(BIN).arg("--config").arg(&config).args(extra).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{extra:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("cache-server: config: "), "{stderr}");
    }
    let out = std::process::Command::new(BIN).args(["--config", "/nonexistent.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = std::process::Command::new(BIN).arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    // Settings also come from the environment.
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env("CACHE_SERVER_STORE__MAX_ENTRIES", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8(out.stderr).unwrap().contains("store.max_entries"));
}

#[tokio::test]
async fn serves_locks_memory_drains_on_sigterm_and_restarts_empty() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let config = config_file(dir.path());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;

    let daemon = spawn(&config, if root { &[] } else { &["--allow-unlocked"] }).await;
    let mut emr = daemon.client(dir.path(), "emr-site-1001").await;
    let mut outreach = daemon.client(dir.path(), "outreach").await;
    let mut admin = daemon.client(dir.path(), "admin").await;
    let mut planted = Vec::new();
    let mut guids = Vec::new();
    for n in 0..20 {
        let c = contact(n);
        planted.extend([c.phone.clone(), c.email.clone()]);
        guids.push(emr.put_contact(PutContactRequest { contact: Some(c) }).await.unwrap().into_inner().guid);
    }
    let back = outreach.get_contact(GetContactRequest { guid: guids[3].clone() }).await.unwrap().into_inner();
    assert_eq!(back.phone, "+16135550003");
    let stats = admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, 20);
    if root {
        assert!(stats.memory_locked);
        assert!(daemon.vm_locked_kib() > 0, "VmLck of the daemon");
    }

    let metrics = daemon.metrics().await;
    assert!(metrics.contains("cache_entries 20"), "{metrics}");
    assert!(metrics.contains(r#"cache_requests_total{rpc="PutContact",code="ok"} 20"#), "{metrics}");
    assert!(metrics.contains(&format!("cache_memory_locked {}", u8::from(stats.memory_locked))), "{metrics}");
    for value in &planted {
        assert!(!metrics.contains(value.as_str()));
    }

    let first_epoch = stats.instance_epoch;
    let mut logs = daemon.terminate().await;

    let daemon = spawn(&config, if root { &[] } else { &["--allow-unlocked"] }).await;
    let mut admin = daemon.client(dir.path(), "admin").await;
    let mut outreach = daemon.client(dir.path(), "outreach").await;
    let stats = admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, 0, "a restart starts empty");
    assert_ne!(stats.instance_epoch, first_epoch);
    let status = outreach.get_contact(GetContactRequest { guid: guids[3].clone() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    logs.extend(daemon.terminate().await);

    // The audit log: the puts are on record under their GUIDs' hashes, as the audit-hash
    // subcommand computes them, and it holds no contact data.
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["audit-hash", "--key-file"])
        .arg(dir.path().join("audit.key"))
        .args(&guids[..2])
        .output()
        .unwrap();
    assert!(out.status.success());
    let hashes = String::from_utf8(out.stdout).unwrap();
    for (line, guid) in hashes.lines().zip(&guids) {
        let (shown, hash) = line.split_once(' ').unwrap();
        assert_eq!(shown, guid);
        let put = audit.lines().find(|l| l.contains(hash) && l.contains("CONTACT_PUT"));
        assert!(put.is_some(), "the put of {guid} is on record");
    }
    assert!(audit.lines().count() >= 20 + 2 + 4, "puts, get, stats, starts and stops");
    for value in planted.iter().chain(&guids) {
        assert!(!audit.contains(value.as_str()), "the audit log holds a planted value or a raw GUID");
    }

    let logs = logs.join("\n");
    assert!(logs.contains("SIGTERM received"));
    assert!(logs.contains("store erased"));
    for value in &planted {
        assert!(!logs.contains(value.as_str()), "a planted value is in the daemon's log");
    }
}

#[tokio::test]
async fn refuses_to_start_unlocked_when_locking_fails() {
    // Only observable where mlockall can fail: as a user without CAP_IPC_LOCK, with the
    // memory lock limit far below what the daemon needs.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // As root, drop the capability by running under a tiny RLIMIT_MEMLOCK is not
        // enough (CAP_IPC_LOCK ignores it); use `setpriv` if present to drop it.
        if std::process::Command::new("setpriv").arg("--help").output().is_err() {
            eprintln!("setpriv not available: cannot drop CAP_IPC_LOCK here");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let config = config_file(dir.path());
    let out = std::process::Command::new("setpriv")
        .args(["--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--"])
        .arg("prlimit")
        .arg("--memlock=65536:65536")
        .arg(BIN)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(71), "{stderr}");
    assert!(stderr.contains("refusing to start: cannot lock memory"), "{stderr}");
}
