//! The real `cache-server` binary: certificates, exit codes, memory locking, metrics,
//! SIGTERM, restart, and what it writes to its log.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::path::Path;

use common::contact;
use daemon::{BIN, Daemon, Launch, setup, spawn};
use proto::v1::{GetContactRequest, PutContactRequest, StatsRequest};

/// The development PKI that `setup` made holds every file an operator needs.
fn assert_pki(dir: &Path) {
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

/// Starts the daemon of `config` (PKI in `dir`) with `extra` flags.
async fn start(config: &Path, dir: &Path, extra: &[&str]) -> Daemon {
    let args = extra.iter().map(ToString::to_string).collect();
    spawn(config, dir, Launch { args, ..Launch::default() }).await
}

impl Daemon {
    /// Sends SIGTERM and waits for a clean exit.
    async fn stop(self) -> Vec<String> {
        let (status, lines) = self.terminate().await;
        assert_eq!(status.code(), Some(0), "a clean shutdown exits 0");
        lines
    }
}

#[tokio::test]
async fn bad_configuration_exits_64_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    assert_pki(dir.path());
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
    let config = setup(dir.path(), "");
    assert_pki(dir.path());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;

    let daemon = start(&config, dir.path(), if root { &[] } else { &["--allow-unlocked"] }).await;
    let mut emr = daemon.client("emr-site-1001").await;
    let mut outreach = daemon.client("outreach").await;
    let mut admin = daemon.client("admin").await;
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
        assert!(daemon.status_kib("VmLck:") > 0, "VmLck of the daemon");
    }

    let metrics = daemon.metrics().await;
    assert!(metrics.contains("cache_entries 20"), "{metrics}");
    assert!(metrics.contains(r#"cache_requests_total{rpc="PutContact",code="ok"} 20"#), "{metrics}");
    assert!(metrics.contains(&format!("cache_memory_locked {}", u8::from(stats.memory_locked))), "{metrics}");
    // The free share of the audit log's file system, read at the scrape.
    let free: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cache_audit_disk_free_ratio "))
        .expect("cache_audit_disk_free_ratio")
        .parse()
        .unwrap();
    assert!(free > 0.0 && free <= 1.0, "{free}");
    for value in &planted {
        assert!(!metrics.contains(value.as_str()));
    }

    let first_epoch = stats.instance_epoch;
    let mut logs = daemon.stop().await;

    let daemon = start(&config, dir.path(), if root { &[] } else { &["--allow-unlocked"] }).await;
    let mut admin = daemon.client("admin").await;
    let mut outreach = daemon.client("outreach").await;
    let stats = admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, 0, "a restart starts empty");
    assert_ne!(stats.instance_epoch, first_epoch);
    let status = outreach.get_contact(GetContactRequest { guid: guids[3].clone() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    logs.extend(daemon.stop().await);

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
    let config = setup(dir.path(), "");
    assert_pki(dir.path());
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
