//! Test helpers: a real bridge on ephemeral loopback ports, on SQLite and (where
//! `BRIDGE_TEST_POSTGRES_URL` names a server) on PostgreSQL, with a development PKI made in
//! the test; an HTTPS client that trusts it; and a ledger client with the outreach role.
//! [`browser`]: headless Chromium pointed at such a bridge.
#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;
pub mod reader;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use cache_server::{certs::DevPki, clock::Clock};
use proto::ledger::{
    InvitationChannel, RecordInvitationRequest, invitation_ledger_client::InvitationLedgerClient,
};
use survey_bridge::{Listeners, RunError, config::BridgeConfig};
use tempfile::TempDir;
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tonic::transport::Channel;

pub use test_support::csrf;

/// Where the manual clock starts.
pub const START: &str = "2026-11-24T15:00:00Z";

/// The databases every storage test runs against: a new SQLite file, and a new PostgreSQL
/// database when `BRIDGE_TEST_POSTGRES_URL` is set ([`test_support::databases`]).
pub async fn databases(dir: &std::path::Path) -> Vec<String> {
    test_support::databases(dir, "bridge").await
}

/// A new SQLite database, for tests whose subject does not depend on the database.
pub fn sqlite(dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("bridge.db").display())
}

/// A bridge running in this process.
pub struct Bridge {
    pub https: SocketAddr,
    pub grpc: SocketAddr,
    /// The plain-HTTP redirect port, when the configuration asked for one.
    pub http: Option<SocketAddr>,
    /// The metrics port, when the configuration asked for one.
    pub metrics: Option<SocketAddr>,
    /// The configuration it runs with.
    pub config: BridgeConfig,
    pub clock: Clock,
    pub dir: Arc<TempDir>,
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), RunError>>>,
}

pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A development PKI and keys in a new folder, and a configuration using them.
pub fn test_config(database_url: Option<String>) -> (BridgeConfig, Arc<TempDir>) {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    pki.write_all(dir.path(), &["site-1001".to_string()]).unwrap();
    let mut config = BridgeConfig::default();
    config.tls.cert = dir.path().join("survey-bridge.pem");
    config.tls.key = dir.path().join("survey-bridge.key");
    config.tls.client_ca = dir.path().join("ca.pem");
    config.key_file = dir.path().join("survey-bridge-secret.key");
    config.audit.path = dir.path().join("audit.jsonl");
    config.audit.key_file = dir.path().join("audit.key");
    config.database_url = database_url
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("bridge.db").display()));
    (config, Arc::new(dir))
}

/// Starts a bridge on `database_url`, with the test configuration changed by `tweak`.
pub async fn start(database_url: &str, tweak: impl FnOnce(&mut BridgeConfig)) -> Bridge {
    let (mut config, dir) = test_config(Some(database_url.to_string()));
    tweak(&mut config);
    start_with(config, dir).await
}

/// Starts a bridge with `config`, whose files are in `dir`.
pub async fn start_with(config: BridgeConfig, dir: Arc<TempDir>) -> Bridge {
    let (_never, reloads) = mpsc::channel(1);
    start_reloadable(config, dir, reloads).await
}

/// Starts a bridge on `database_url` whose clock reads `start` (e.g. `2025-01-15T12:00:00Z`).
pub async fn start_at(database_url: &str, start: &str, tweak: impl FnOnce(&mut BridgeConfig)) -> Bridge {
    let (mut config, dir) = test_config(Some(database_url.to_string()));
    tweak(&mut config);
    let (_never, reloads) = mpsc::channel(1);
    start_clocked(config, dir, reloads, start).await
}

/// Starts a bridge with `config`, whose files are in `dir`, reloading on each message of
/// `reloads` (as on SIGHUP).
pub async fn start_reloadable(
    config: BridgeConfig,
    dir: Arc<TempDir>,
    reloads: mpsc::Receiver<()>,
) -> Bridge {
    start_clocked(config, dir, reloads, START).await
}

async fn start_clocked(
    config: BridgeConfig,
    dir: Arc<TempDir>,
    reloads: mpsc::Receiver<()>,
    start: &str,
) -> Bridge {
    let database_url = config.database_url.clone();
    let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = match config.http_listen {
        Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        None => None,
    };
    let (https_addr, grpc_addr) = (https.local_addr().unwrap(), grpc.local_addr().unwrap());
    let http_addr = http.as_ref().map(|l| l.local_addr().unwrap());
    let metrics = match config.metrics_listen {
        Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|l| l.local_addr().unwrap());
    let clock = Clock::manual(start.parse().unwrap());
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(survey_bridge::run_with_reloads(
        Listeners { https, grpc, http, metrics },
        config.clone(),
        clock.clone(),
        async {
            let _ = rx.await;
        },
        reloads,
    ));
    Bridge {
        https: https_addr,
        grpc: grpc_addr,
        http: http_addr,
        metrics: metrics_addr,
        config,
        clock,
        dir,
        database_url,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Bridge {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn stop(mut self) -> Result<(), RunError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().unwrap().await.unwrap()
    }

    /// An HTTPS client that trusts the test CA, does not follow redirects, and sends no
    /// cookies.
    pub fn http(&self) -> reqwest::Client {
        test_support::https_client(&self.path("ca.pem"), self.https)
    }

    /// Agrees on the consent page of `guid`; the address it sends the patient to.
    pub async fn consent(&self, guid: &str) -> String {
        let http = self.http();
        let page = http.get(self.url(&format!("/s/{guid}"))).send().await.unwrap().text().await.unwrap();
        let agreed = http
            .post(self.url(&format!("/s/{guid}/consent")))
            .form(&[("csrf", csrf(&page).as_str()), ("choice", "agree")])
            .send()
            .await
            .unwrap();
        assert_eq!(agreed.status(), reqwest::StatusCode::SEE_OTHER, "consent for {guid}");
        agreed.headers()["location"].to_str().unwrap().to_string()
    }

    /// Counts every answer waiting in the pool, whatever the size of its group (the
    /// bridge's own fold waits for `reports.min_cell` of a group, or the month's end).
    pub async fn fold(&self) -> survey_bridge::db::Folded {
        fold(&self.database_url, &self.config.key_file, self.clock.now()).await
    }

    /// Consents on the page of `guid` and submits the built-in survey (`overall` 9).
    pub async fn answer_survey(&self, guid: &str) {
        let http = self.http();
        let location = self.consent(guid).await;
        let survey = http.get(self.url(&location)).send().await.unwrap().text().await.unwrap();
        let sent = http
            .post(self.url(&format!("/s/{guid}/survey")))
            .form(&[("csrf", csrf(&survey).as_str()), ("overall", "9")])
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), reqwest::StatusCode::OK);
    }

    /// Declines on the consent page of `guid`.
    pub async fn decline(&self, guid: &str) {
        let http = self.http();
        let page = http.get(self.url(&format!("/s/{guid}"))).send().await.unwrap().text().await.unwrap();
        let declined = http
            .post(self.url(&format!("/s/{guid}/consent")))
            .form(&[("csrf", csrf(&page).as_str()), ("choice", "decline")])
            .send()
            .await
            .unwrap();
        assert_eq!(declined.status(), reqwest::StatusCode::OK);
    }

    /// The RFC 8058 one-click unsubscribe POST for `guid`, as a mail provider sends it.
    pub async fn one_click(&self, guid: &str) -> reqwest::Response {
        self.http()
            .post(self.url(&format!("/u/{guid}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap()
    }

    /// Unsubscribes `guid` with the one-click POST, which must succeed.
    pub async fn unsubscribe(&self, guid: &str) {
        assert_eq!(self.one_click(guid).await.status(), reqwest::StatusCode::OK);
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    /// A ledger client presenting the certificate written for `name` (e.g. `outreach`).
    pub async fn ledger_as(&self, name: &str) -> InvitationLedgerClient<Channel> {
        InvitationLedgerClient::new(test_support::mtls_channel(self.dir.path(), name, self.grpc).await)
    }

    /// Records an invitation for `guid` as the outreach worker, sent at the clock's time.
    pub async fn invite(&self, guid: &str, provider: &str, language: &str) {
        self.invite_at(guid, provider, language, self.clock.now()).await;
    }

    /// Records an invitation for `guid` as the outreach worker, sent at `at`.
    pub async fn invite_at(&self, guid: &str, provider: &str, language: &str, at: jiff::Timestamp) {
        let mut ledger = self.ledger_as("outreach").await;
        ledger.record_invitation(invitation(guid, provider, language, at)).await.unwrap();
    }

    /// The audit log's lines so far.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.path("audit.jsonl")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }
}

pub fn invitation(
    guid: &str,
    provider: &str,
    language: &str,
    at: jiff::Timestamp,
) -> RecordInvitationRequest {
    RecordInvitationRequest {
        guid: guid.into(),
        site_id: "site-1001".into(),
        provider_id: provider.into(),
        campaign_id: "pcpe-2026q4".into(),
        channel: InvitationChannel::Email as i32,
        language: language.into(),
        sent_at: Some(prost_types::Timestamp { seconds: at.as_second(), nanos: 0 }),
    }
}

/// Answers the invitation `guid_hmac` straight in `db`, as the pages would: consent, then
/// the answers into the pool (sealed under the keys of `bridge`); [`Bridge::fold`] counts
/// them.
pub async fn respond(
    db: &survey_bridge::db::Db,
    bridge: &Bridge,
    guid_hmac: &str,
    answers: &[(String, String)],
) {
    use survey_bridge::db::Outcome;
    let keys = survey_bridge::keys::Keys::load(&bridge.config.key_file).unwrap();
    let now = bridge.clock.now();
    assert_eq!(db.consent(guid_hmac, now).await.unwrap(), Outcome::Accepted);
    assert_eq!(db.submit(&keys, guid_hmac, now, answers).await.unwrap(), Outcome::Accepted);
}

/// Counts every answer waiting in the pool of `database_url`, sealed under the keys derived
/// from `key_file`, at `now`.
pub async fn fold(
    database_url: &str,
    key_file: &std::path::Path,
    now: jiff::Timestamp,
) -> survey_bridge::db::Folded {
    let db = survey_bridge::db::Db::connect(database_url).await.unwrap();
    let keys = survey_bridge::keys::Keys::load(key_file).unwrap();
    db.fold(&keys, now, 1).await.unwrap()
}

/// A new random GUID in text form.
pub fn guid() -> String {
    cache_server::guid::Guid::random().unwrap().to_string()
}
