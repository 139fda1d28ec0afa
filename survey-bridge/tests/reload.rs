//! Reloading (SIGHUP in the binary; a channel, or this process's own SIGHUP, here): the
//! certificate, key and client CA read again for both ports, the audit file reopened (also
//! by the shipped logrotate file), and what fails kept as it was.
#![allow(clippy::unwrap_used)]

mod common;

use std::{fs, os::unix::fs::PermissionsExt, path::Path, sync::Arc, time::Duration};

use cache_server::certs::DevPki;
use common::{Bridge, guid, sqlite, start_reloadable, test_config};
use proto::ledger::{InvitationAnsweredRequest, invitation_ledger_client::InvitationLedgerClient};
use reqwest::StatusCode;
use tokio::sync::mpsc;
use tonic::Code;

/// Sends a reload and waits for its `RELOAD` line in the (current) audit file.
async fn reload(bridge: &Bridge, reloads: &mpsc::Sender<()>, before: usize) -> serde_json::Value {
    reloads.send(()).await.unwrap();
    for _ in 0..200 {
        let lines: Vec<_> = bridge.audit_lines().into_iter().filter(|l| l["action"] == "RELOAD").collect();
        if lines.len() > before {
            return lines[before].clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no RELOAD line in the audit file");
}

/// Whether a page answers over HTTPS to a client that trusts `ca`.
async fn pages_trusted_by(bridge: &Bridge, ca: &Path) -> bool {
    let client = test_support::https_client(ca, bridge.https);
    match client.get(bridge.url(&format!("/s/{}", guid()))).send().await {
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "an unknown link");
            true
        }
        Err(_) => false,
    }
}

/// Whether the ledger answers a caller with the certificates in `dir` (it answers NOT_FOUND
/// for an unknown GUID when the handshake succeeds).
async fn ledger_serves(bridge: &Bridge, dir: &Path) -> bool {
    let Ok(channel) = test_support::mtls_endpoint(dir, "outreach", bridge.grpc).connect().await else {
        return false;
    };
    let request = InvitationAnsweredRequest { guid: guid() };
    match InvitationLedgerClient::new(channel).invitation_answered(request).await {
        Err(status) if status.code() == Code::NotFound => true,
        Ok(_) => panic!("an unknown GUID was found"),
        Err(_) => false,
    }
}

/// Installs the bridge's certificate, key and client CA of the PKI in `from` where the
/// configuration reads them, as a renewal would.
fn install(from: &Path, to: &Path) {
    for file in ["survey-bridge.pem", "survey-bridge.key", "ca.pem"] {
        fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

#[tokio::test]
async fn a_reload_reads_the_certificates_again_reopens_the_audit_file_and_keeps_what_fails() {
    let data = tempfile::tempdir().unwrap();
    let (config, dir) = test_config(Some(sqlite(data.path())));
    // The first PKI, kept apart for the clients of before the renewal.
    let old = tempfile::tempdir().unwrap();
    for file in ["ca.pem", "outreach.pem", "outreach.key"] {
        fs::copy(dir.path().join(file), old.path().join(file)).unwrap();
    }
    let (reloads, receiver) = mpsc::channel(1);
    let bridge = start_reloadable(config, Arc::clone(&dir), receiver).await;
    assert!(pages_trusted_by(&bridge, &old.path().join("ca.pem")).await);
    assert!(ledger_serves(&bridge, old.path()).await);
    // A connection opened before the reload keeps working after it.
    let kept = test_support::https_client(&old.path().join("ca.pem"), bridge.https);
    assert_eq!(kept.get(bridge.url("/s/x")).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // logrotate renames the audit file; a renewed PKI is installed.
    fs::rename(bridge.path("audit.jsonl"), bridge.path("audit.jsonl.1")).unwrap();
    let new = tempfile::tempdir().unwrap();
    let pki = DevPki::generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    pki.write_all(new.path(), &["site-1001".to_string()]).unwrap();
    install(new.path(), dir.path());
    let line = reload(&bridge, &reloads, 0).await;
    assert_eq!(line["result"], "ok", "{line}");

    // Both ports serve the new certificate and trust only the new CA.
    assert!(pages_trusted_by(&bridge, &new.path().join("ca.pem")).await);
    assert!(!pages_trusted_by(&bridge, &old.path().join("ca.pem")).await);
    assert!(ledger_serves(&bridge, new.path()).await);
    assert!(!ledger_serves(&bridge, old.path()).await);
    assert_eq!(kept.get(bridge.url("/s/x")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // The lines of before are in the renamed file, the reload's in the new one.
    let rotated = fs::read_to_string(bridge.path("audit.jsonl.1")).unwrap();
    assert!(rotated.contains("\"SERVER_START\""), "{rotated}");
    assert!(!rotated.contains("\"RELOAD\""));

    // A certificate half copied, then a key that is not the certificate's: refused, the
    // bridge keeps serving what it had, and says so.
    fs::write(dir.path().join("survey-bridge.pem"), "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    let line = reload(&bridge, &reloads, 1).await;
    assert_eq!(line["result"], "error", "{line}");
    assert!(line["detail"].as_str().unwrap().contains("tls.cert"), "{line}");
    fs::copy(new.path().join("survey-bridge.pem"), dir.path().join("survey-bridge.pem")).unwrap();
    fs::copy(old.path().join("outreach.key"), dir.path().join("survey-bridge.key")).unwrap();
    let line = reload(&bridge, &reloads, 2).await;
    assert_eq!(line["result"], "error", "{line}");
    assert!(pages_trusted_by(&bridge, &new.path().join("ca.pem")).await);
    assert!(ledger_serves(&bridge, new.path()).await);
    bridge.stop().await.unwrap();
}

/// The unit's `ExecReload` sends SIGHUP, which the shipped logrotate file relies on.
#[test]
fn the_unit_reloads_with_sighup() {
    let unit = fs::read_to_string(repo().join("deploy/systemd/survey-bridge.service")).unwrap();
    assert!(unit.lines().any(|l| l == "ExecReload=/bin/kill -HUP $MAINPID"), "{unit}");
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test]
async fn the_shipped_logrotate_file_rotates_the_audit_file_of_a_running_bridge() {
    if !test_support::have_logrotate() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let (config, dir) = test_config(Some(sqlite(data.path())));
    // This process takes SIGHUP as the binary does (`cache_server::reload::on_sighup`), so
    // the bridge running in it stands for the daemon.
    let reloads = cache_server::reload::on_sighup().unwrap();
    let bridge = start_reloadable(config, Arc::clone(&dir), reloads).await;
    bridge.invite(&guid(), "prov-a1", "en").await;

    // deploy/logrotate/survey-bridge with this test's file, user and process in place of the
    // production ones; everything else as shipped.
    let audit = bridge.path("audit.jsonl");
    let mut text = fs::read_to_string(repo().join("deploy/logrotate/survey-bridge")).unwrap();
    for (from, to) in [
        ("/var/log/survey-bridge/audit.jsonl", audit.display().to_string()),
        ("survey-bridge survey-bridge", test_support::user_and_group()),
        ("systemctl reload survey-bridge", format!("kill -HUP {}", std::process::id())),
    ] {
        assert!(text.contains(from), "deploy/logrotate/survey-bridge no longer says {from:?}");
        text = text.replace(from, &to);
    }
    let example = fs::read_to_string(repo().join("deploy/survey-bridge.example.toml")).unwrap();
    assert!(example.contains("path = \"/var/log/survey-bridge/audit.jsonl\""), "the example's audit path");
    test_support::rotate_now(data.path(), &text);

    let mut reopened = false;
    for _ in 0..200 {
        if fs::read_to_string(&audit).unwrap_or_default().contains("\"RELOAD\"") {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(reopened, "no RELOAD line in the new audit file");
    bridge.invite(&guid(), "prov-a1", "en").await;

    // The renamed file holds the lines before the rotation; the new one, made by logrotate
    // owner-only, the reload and what followed.
    let old = fs::read_to_string(bridge.path("audit.jsonl.1")).unwrap();
    assert!(old.contains("SERVER_START") && old.contains("INVITATION_RECORDED"), "{old}");
    assert!(!old.contains("RELOAD"), "{old}");
    let new = fs::read_to_string(&audit).unwrap();
    assert!(new.contains("\"RELOAD\"") && new.contains("INVITATION_RECORDED"), "{new}");
    assert!(!new.contains("SERVER_START"), "{new}");
    assert_eq!(fs::metadata(&audit).unwrap().permissions().mode() & 0o777, 0o600);
    bridge.stop().await.unwrap();
}
