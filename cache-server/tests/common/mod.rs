//! Test helpers: a real server on an ephemeral loopback port, with a development PKI made
//! in the test, and a real tonic client over TLS.
#![allow(dead_code, clippy::unwrap_used)]

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc};

use cache_server::{Listeners, RunError, audit::Audit, certs::DevPki, clock::Clock, config::Config};
use jiff::Timestamp;
use proto::v1::{Channel as ContactChannel, Contact, contact_cache_client::ContactCacheClient};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Where the manual clock of every test server starts.
pub const START: &str = "2026-11-24T15:00:00Z";

/// A cache server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub clock: Clock,
    pub ca_pem: String,
    pub dir: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), RunError>>>,
}

pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Sites with an EMR connector certificate in every test PKI.
pub const SITES: [&str; 3] = ["site-1001", "site-1002", "site-1003"];

/// A configuration for tests: a development PKI (CA, server, a certificate per caller role)
/// and an audit key in a new temporary folder, the audit log beside them, memory locking
/// attempted but not required.
pub fn test_config() -> (Config, Arc<TempDir>, String) {
    let (config, dir, pki) = test_config_with_pki();
    (config, dir, pki.ca.cert.clone())
}

/// [`test_config`], keeping the PKI so that a test can issue more certificates.
pub fn test_config_with_pki() -> (Config, Arc<TempDir>, DevPki) {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    let sites: Vec<String> = SITES.iter().map(|s| s.to_string()).collect();
    pki.write_all(dir.path(), &sites).unwrap();
    let mut config = Config::default();
    config.tls.cert = dir.path().join("cache-server.pem");
    config.tls.key = dir.path().join("cache-server.key");
    config.tls.client_ca = dir.path().join("ca.pem");
    config.audit.path = dir.path().join("audit.jsonl");
    config.audit.key_file = dir.path().join("audit.key");
    config.memory.allow_unlocked = true;
    config.shutdown_grace_seconds = 30;
    (config, Arc::new(dir), pki)
}

/// Starts a server with the test configuration, changed by `tweak`.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let (mut config, dir, ca_pem) = test_config();
    tweak(&mut config);
    start_with(config, dir, ca_pem).await
}

pub async fn start_with(config: Config, dir: Arc<TempDir>, ca_pem: String) -> TestServer {
    start_inner(config, dir, ca_pem, None).await
}

/// Starts a server whose audit lines go to `sink` instead of the configured file.
pub async fn start_with_audit_sink(
    tweak: impl FnOnce(&mut Config),
    sink: Box<dyn std::io::Write + Send>,
) -> TestServer {
    let (mut config, dir, ca_pem) = test_config();
    tweak(&mut config);
    start_inner(config, dir, ca_pem, Some(sink)).await
}

async fn start_inner(
    config: Config,
    dir: Arc<TempDir>,
    ca_pem: String,
    sink: Option<Box<dyn std::io::Write + Send>>,
) -> TestServer {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let clock = Clock::manual(START.parse().unwrap());
    let (tx, rx) = oneshot::channel();
    let listeners = Listeners { grpc, metrics: None };
    let shutdown = async {
        let _ = rx.await;
    };
    let handle = match sink {
        None => tokio::spawn(cache_server::run(listeners, config, clock.clone(), shutdown)),
        Some(sink) => {
            let key = cache_server::audit::load_key(&config.audit.key_file).unwrap();
            let audit = Audit::new(sink, key, clock.clone());
            tokio::spawn(cache_server::run_with_audit(listeners, config, clock.clone(), audit, shutdown))
        }
    };
    TestServer { addr, clock, ca_pem, dir, shutdown: Some(tx), handle: Some(handle) }
}

/// A client of each role: an EMR connector per site in [`SITES`], the outreach worker, the
/// bridge and an admin.
pub struct Clients {
    pub emr: HashMap<String, ContactCacheClient<Channel>>,
    pub outreach: ContactCacheClient<Channel>,
    pub bridge: ContactCacheClient<Channel>,
    pub admin: ContactCacheClient<Channel>,
}

impl Clients {
    /// Stores `contact` through the EMR connector of its site; returns the new GUID.
    pub async fn put(&mut self, contact: Contact) -> String {
        let site = contact.site_id.clone();
        let request = proto::v1::PutContactRequest { contact: Some(contact) };
        self.emr(&site).put_contact(request).await.unwrap().into_inner().guid
    }

    /// The EMR connector of `site`.
    pub fn emr(&mut self, site: &str) -> &mut ContactCacheClient<Channel> {
        self.emr.get_mut(site).unwrap_or_else(|| panic!("no connector for {site:?}"))
    }
}

impl TestServer {
    /// A new TLS connection that trusts the test CA, presenting `identity` if given.
    pub async fn try_channel(&self, identity: Option<Identity>) -> Result<Channel, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        if let Some(identity) = identity {
            tls = tls.identity(identity);
        }
        Channel::from_shared(format!("https://127.0.0.1:{}", self.addr.port()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
    }

    /// A new TLS connection with no client certificate.
    pub async fn channel(&self) -> Channel {
        self.try_channel(None).await.unwrap()
    }

    /// The client certificate and key written for `name` (e.g. `outreach`, `emr-site-1001`).
    pub fn identity(&self, name: &str) -> Identity {
        let cert = std::fs::read_to_string(self.path(&format!("{name}.pem"))).unwrap();
        let key = std::fs::read_to_string(self.path(&format!("{name}.key"))).unwrap();
        Identity::from_pem(cert, key)
    }

    /// A client presenting the certificate written for `name`.
    pub async fn client_as(&self, name: &str) -> ContactCacheClient<Channel> {
        ContactCacheClient::new(self.try_channel(Some(self.identity(name))).await.unwrap())
    }

    /// A client of each role.
    pub async fn clients(&self) -> Clients {
        let mut emr = HashMap::new();
        for site in SITES {
            emr.insert(site.to_string(), self.client_as(&format!("emr-{site}")).await);
        }
        Clients {
            emr,
            outreach: self.client_as("outreach").await,
            bridge: self.client_as("bridge").await,
            admin: self.client_as("admin").await,
        }
    }

    /// The audit log's lines so far.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.path("audit.jsonl")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    /// The audit hash of `guid` under this server's key.
    pub fn guid_hmac(&self, guid: &str) -> String {
        let key = cache_server::audit::load_key(&self.path("audit.key")).unwrap();
        cache_server::audit::guid_hmac(&key, &guid.parse().unwrap())
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), RunError> {
        self.signal_shutdown();
        self.handle.take().unwrap().await.unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// A valid contact with a phone and an email made from `n`.
pub fn contact(n: u32) -> Contact {
    Contact {
        site_id: "site-1001".into(),
        provider_id: "prov-a1".into(),
        campaign_id: "pcpe-2026q4".into(),
        phone: format!("+1613555{n:04}"),
        email: format!("planted{n:04}@example.org"),
        language: "en".into(),
        time_zone: "America/Toronto".into(),
        send_after: None,
        channel: ContactChannel::Any as i32,
    }
}

/// A row of the sample CSVs in `testdata/`.
#[derive(Debug, serde::Deserialize)]
pub struct Row {
    pub row_id: String,
    pub site_id: String,
    pub provider_id: String,
    pub campaign_id: String,
    pub phone: String,
    pub email: String,
    pub language: String,
    pub time_zone: String,
    pub appointment_at: String,
    pub channel: String,
}

pub fn rows(name: &str) -> Vec<Row> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(name);
    csv::Reader::from_path(path).unwrap().deserialize().map(|r| r.unwrap()).collect()
}

impl Row {
    /// The contact an EMR connector would send for this row. Values a connector could not
    /// parse (a bad time, an unknown channel) become the wire values a careless connector
    /// would send: an out-of-range timestamp, an unknown enum number.
    pub fn to_contact(&self) -> Contact {
        let send_after = match self.appointment_at.parse::<Timestamp>() {
            Ok(t) => prost_types::Timestamp { seconds: t.as_second(), nanos: 0 },
            Err(_) => prost_types::Timestamp { seconds: 0, nanos: 2_000_000_000 },
        };
        let channel = match self.channel.as_str() {
            "sms" => ContactChannel::Sms as i32,
            "email" => ContactChannel::Email as i32,
            "any" => ContactChannel::Any as i32,
            _ => 99,
        };
        Contact {
            site_id: self.site_id.clone(),
            provider_id: self.provider_id.clone(),
            campaign_id: self.campaign_id.clone(),
            phone: self.phone.clone(),
            email: self.email.clone(),
            language: self.language.clone(),
            time_zone: self.time_zone.clone(),
            send_after: Some(send_after),
            channel,
        }
    }
}

/// The field each row of `contacts-bad.csv` must be refused for.
pub const BAD_ROW_FIELDS: [(&str, &str); 12] = [
    ("B001", "contact.phone"),
    ("B002", "contact.email"),
    ("B003", "contact"),
    ("B004", "contact.language"),
    ("B005", "contact.time_zone"),
    ("B006", "contact.site_id"),
    ("B007", "contact.provider_id"),
    ("B008", "contact.phone"),
    ("B009", "contact.email"),
    ("B010", "contact.send_after"),
    ("B011", "contact.channel"),
    ("B012", "contact.provider_id"),
];

/// An audit sink that works until told to fail.
#[derive(Clone, Default)]
pub struct Switchable {
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    pub written: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl std::io::Write for Switchable {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("disk full"));
        }
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
