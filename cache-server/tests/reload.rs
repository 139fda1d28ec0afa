//! SIGHUP on the real binary: the certificate, key and client CA are read again and the
//! audit file is reopened, while the contacts held and the connections open stay; new files
//! that do not work leave the daemon as it was.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::{fs, os::unix::fs::PermissionsExt, path::Path, sync::Arc, time::Duration};

use common::contact;
use daemon::{Daemon, Launch, setup, spawn};
use proto::v1::{
    GetContactRequest, PutContactRequest, StatsRequest, contact_cache_client::ContactCacheClient,
};
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Replaces `to` by a copy of `from` in one rename, as a deployment tool would.
fn install(from: &Path, to: &Path) {
    let staged = to.with_extension("new");
    fs::copy(from, &staged).unwrap();
    fs::rename(&staged, to).unwrap();
}

/// The leaf certificate the daemon presents in a new handshake to `caller` of the PKI in
/// `pki` (which must trust it).
async fn served_leaf(daemon: &Daemon, pki: &Path, caller: &str) -> Vec<u8> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(pki.join(format!("{caller}.pem")))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join(format!("{caller}.key"))).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(&daemon.grpc).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf_of(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem).unwrap().next().unwrap().unwrap().to_vec()
}

/// Sends SIGHUP and waits for the daemon to log the outcome of the reload.
async fn hang_up(daemon: &Daemon, expect: &str) {
    let before = daemon.lines.lock().unwrap().len();
    daemon.signal(libc::SIGHUP);
    reloaded(daemon, before, expect).await;
}

/// Waits for the first reload logged after the first `before` lines; its message must start
/// with `expect`.
async fn reloaded(daemon: &Daemon, before: usize, expect: &str) {
    for _ in 0..600 {
        let lines = daemon.lines.lock().unwrap()[before..].to_vec();
        for line in lines {
            let message = serde_json::from_str::<serde_json::Value>(&line).unwrap()["message"].clone();
            if let Some(message) = message.as_str()
                && (message.starts_with("reloaded") || message.starts_with("reload failed"))
            {
                assert!(message.starts_with(expect), "{line}");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no reload logged: {:?}", daemon.lines.lock().unwrap());
}

/// The RELOAD lines of an audit file.
fn reloads(audit: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["action"] == "RELOAD")
        .collect()
}

#[tokio::test]
async fn sighup_reads_the_certificates_again_reopens_the_audit_file_and_keeps_what_fails() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = setup(a.path(), "");
    // A second PKI, as after a rotation of the CA: new CA, new server certificate.
    setup(b.path(), "");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let args = if root { vec![] } else { vec!["--allow-unlocked".to_string()] };
    let daemon = spawn(&config, a.path(), Launch { args, ..Launch::default() }).await;

    let mut emr = daemon.client("emr-site-1001").await;
    let guid =
        emr.put_contact(PutContactRequest { contact: Some(contact(1)) }).await.unwrap().into_inner().guid;
    let mut open = daemon.client("admin").await;
    assert_eq!(open.stats(StatsRequest {}).await.unwrap().into_inner().entries, 1);
    assert_eq!(served_leaf(&daemon, a.path(), "admin").await, leaf_of(&a.path().join("cache-server.pem")));
    fs::copy(a.path().join("cache-server.key"), a.path().join("old.key")).unwrap();

    // logrotate renames the audit file; the certificates and CA of the second PKI go in.
    let audit = a.path().join("audit.jsonl");
    let rotated = a.path().join("audit.jsonl.1");
    fs::rename(&audit, &rotated).unwrap();
    for file in ["cache-server.pem", "cache-server.key", "ca.pem"] {
        install(&b.path().join(file), &a.path().join(file));
    }
    hang_up(&daemon, "reloaded").await;

    // New handshakes present the new certificate and take the new CA's callers only.
    assert_eq!(served_leaf(&daemon, b.path(), "admin").await, leaf_of(&b.path().join("cache-server.pem")));
    let mut outreach = daemon.client_of(b.path(), "outreach").await;
    let back = outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap().into_inner();
    assert_eq!(back.phone, contact(1).phone, "the contacts held are still there");
    // A caller of the old CA (its certificate is still in the first directory) is refused.
    let endpoint = test_support::mtls_endpoint(a.path(), "admin", daemon.grpc.parse().unwrap());
    let refused = match endpoint.connect().await {
        Err(_) => true,
        Ok(channel) => ContactCacheClient::new(channel).stats(StatsRequest {}).await.is_err(),
    };
    assert!(refused, "a certificate of the old CA no longer identifies a caller");
    // The connection opened before the reload goes on with the session it has.
    assert_eq!(open.stats(StatsRequest {}).await.unwrap().into_inner().entries, 1);

    // The lines since the reload are in a new file under the configured name.
    let before = fs::read_to_string(&rotated).unwrap();
    assert!(before.contains("SERVER_START") && !before.contains("RELOAD"), "{before}");
    let ok = reloads(&audit);
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0]["result"], "ok");
    assert_eq!(fs::metadata(&audit).unwrap().permissions().mode() & 0o777, 0o600);
    let metrics = daemon.metrics().await;
    assert!(metrics.contains(r#"cache_reloads_total{result="ok"} 1"#), "{metrics}");
    let served = leaf_of(&b.path().join("cache-server.pem"));
    let (_, leaf) = x509_parser::parse_x509_certificate(&served).unwrap();
    let expiry =
        format!("cache_tls_certificate_expiry_timestamp_seconds {}", leaf.validity().not_after.timestamp());
    assert!(metrics.contains(&expiry), "{expiry} in {metrics}");

    // A certificate file that holds no certificate, then a key of another certificate: each
    // reload fails, says which file, and the daemon serves on with what it had.
    fs::write(a.path().join("cache-server.pem"), "not a certificate\n").unwrap();
    hang_up(&daemon, "reload failed").await;
    install(&b.path().join("cache-server.pem"), &a.path().join("cache-server.pem"));
    install(&a.path().join("old.key"), &a.path().join("cache-server.key"));
    hang_up(&daemon, "reload failed").await;
    assert_eq!(served_leaf(&daemon, b.path(), "admin").await, served);
    let stats = daemon.client_of(b.path(), "admin").await.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, 1);
    let failed = reloads(&audit);
    assert_eq!(failed.len(), 3, "{failed:?}");
    for line in &failed[1..] {
        assert_eq!(line["result"], "error");
    }
    let detail = failed[1]["detail"].as_str().unwrap();
    assert!(detail.starts_with("tls.cert ") && detail.contains("cache-server.pem"), "{detail}");
    let detail = failed[2]["detail"].as_str().unwrap();
    assert!(detail.starts_with("tls: "), "{detail}");
    let metrics = daemon.metrics().await;
    assert!(metrics.contains(r#"cache_reloads_total{result="error"} 2"#), "{metrics}");

    let (status, _) = daemon.terminate().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn the_shipped_logrotate_file_rotates_the_audit_file_of_a_running_daemon() {
    if !test_support::have_logrotate() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    // SAFETY: geteuid has no preconditions.
    let args = if unsafe { libc::geteuid() } == 0 { vec![] } else { vec!["--allow-unlocked".to_string()] };
    let daemon = spawn(&config, dir.path(), Launch { args, ..Launch::default() }).await;
    let mut admin = daemon.client("admin").await;
    admin.stats(StatsRequest {}).await.unwrap();

    // deploy/logrotate/cache-server with this test's file, user and daemon in place of the
    // production ones; everything else as shipped.
    let audit = dir.path().join("audit.jsonl");
    let shipped =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/logrotate/cache-server"))
            .unwrap();
    let mut text = shipped.clone();
    for (from, to) in [
        ("/var/log/contact-cache/audit.jsonl", audit.display().to_string()),
        ("contact-cache contact-cache", test_support::user_and_group()),
        ("systemctl reload cache-server", format!("kill -HUP {}", daemon.pid)),
    ] {
        assert!(text.contains(from), "deploy/logrotate/cache-server no longer says {from:?}");
        text = text.replace(from, &to);
    }
    let before = daemon.lines.lock().unwrap().len();
    test_support::rotate_now(dir.path(), &text);
    reloaded(&daemon, before, "reloaded").await;
    admin.stats(StatsRequest {}).await.unwrap();

    // The renamed file holds the lines before the rotation; the new one, made by logrotate
    // owner-only, the reload and what followed.
    let old = fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
    assert!(old.contains("SERVER_START") && old.contains("STATS_READ") && !old.contains("RELOAD"), "{old}");
    let new = fs::read_to_string(&audit).unwrap();
    assert!(new.contains("\"action\":\"RELOAD\"") && new.contains("STATS_READ"), "{new}");
    assert!(!new.contains("SERVER_START"), "{new}");
    assert_eq!(fs::metadata(&audit).unwrap().permissions().mode() & 0o777, 0o600);

    let (status, _) = daemon.terminate().await;
    assert_eq!(status.code(), Some(0));
}
