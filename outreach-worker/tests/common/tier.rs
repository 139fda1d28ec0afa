//! The rest of the tier, in this process: a real cache-server and a real survey-bridge on
//! loopback ports, with one development PKI and one manual clock, and a Twilio stand-in.
//! The worker under test is configured against them by [`Tier::worker_config`].

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use cache_server::{certs::DevPki, clock::Clock};
use outreach_worker::config::{GrpcClientConfig, SmsSettings, WorkerConfig};
use proto::{
    ledger::{InvitationAnsweredRequest, invitation_ledger_client::InvitationLedgerClient},
    v1::{
        Channel as Preferred, Contact, PutContactRequest, StatsRequest,
        contact_cache_client::ContactCacheClient,
    },
};
use survey_bridge::config::BridgeConfig;
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::transport::Channel;

use super::twilio::{self, Twilio};

/// 10:00 in Toronto (EST): inside the default quiet hours.
pub const START: &str = "2026-11-26T15:00:00Z";

/// The cache, the bridge and the SMS stand-in.
pub struct Tier {
    pub dir: Arc<TempDir>,
    pub clock: Clock,
    pub cache: SocketAddr,
    pub bridge_grpc: SocketAddr,
    pub bridge_https: SocketAddr,
    pub twilio: Twilio,
    pub twilio_url: String,
    stops: Vec<oneshot::Sender<()>>,
}

impl Drop for Tier {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// A contact of site-1001 for campaign `c-1`, by SMS or email as given, in Toronto.
pub fn contact(phone: &str, email: &str, language: &str) -> Contact {
    Contact {
        site_id: "site-1001".into(),
        provider_id: "prov-a1".into(),
        campaign_id: "c-1".into(),
        phone: phone.into(),
        email: email.into(),
        language: language.into(),
        time_zone: "America/Toronto".into(),
        send_after: None,
        channel: Preferred::Any as i32,
    }
}

impl Tier {
    /// Starts the tier on a manual clock at [`START`].
    pub async fn start() -> Tier {
        Tier::start_with(Clock::manual(START.parse().unwrap())).await
    }

    /// Starts the tier with `clock`.
    pub async fn start_with(clock: Clock) -> Tier {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        pki.write_all(dir.path(), &["site-1001".to_string()]).unwrap();
        let path = |name: &str| dir.path().join(name);
        let mut stops = Vec::new();

        let mut cache = cache_server::config::Config::default();
        cache.tls.cert = path("cache-server.pem");
        cache.tls.key = path("cache-server.key");
        cache.tls.client_ca = path("ca.pem");
        cache.audit.path = path("cache-audit.jsonl");
        cache.audit.key_file = path("audit.key");
        cache.memory.allow_unlocked = true;
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cache_addr = grpc.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        let listeners = cache_server::Listeners { grpc, metrics: None };
        tokio::spawn(cache_server::run(listeners, cache, clock.clone(), async {
            let _ = rx.await;
        }));

        let mut bridge = BridgeConfig::default();
        bridge.tls.cert = path("survey-bridge.pem");
        bridge.tls.key = path("survey-bridge.key");
        bridge.tls.client_ca = path("ca.pem");
        bridge.key_file = path("survey-bridge-secret.key");
        bridge.audit.path = path("bridge-audit.jsonl");
        bridge.audit.key_file = path("audit.key");
        bridge.database_url = format!("sqlite://{}?mode=rwc", path("bridge.db").display());
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (bridge_https, bridge_grpc) = (https.local_addr().unwrap(), grpc.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        let listeners = survey_bridge::Listeners { https, grpc, http: None, metrics: None };
        tokio::spawn(survey_bridge::run(listeners, bridge, clock.clone(), async {
            let _ = rx.await;
        }));

        let twilio = Twilio::default();
        let twilio_url = twilio.start().await;
        let tier = Tier {
            dir: Arc::new(dir),
            clock,
            cache: cache_addr,
            bridge_grpc,
            bridge_https,
            twilio,
            twilio_url,
            stops,
        };
        tier.wait_until_up().await;
        tier
    }

    /// The bridge's public address, as the worker puts it in links.
    pub fn public_url(&self) -> String {
        format!("https://localhost:{}", self.bridge_https.port())
    }

    /// An HTTPS client for the bridge's pages that trusts the test CA.
    pub fn http(&self) -> reqwest::Client {
        test_support::https_client(&self.path("ca.pem"), self.bridge_https)
    }

    /// A file in the tier's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn wait_until_up(&self) {
        for _ in 0..100 {
            let cache = self.client("admin").await.stats(StatsRequest {}).await.is_ok();
            let bridge = self
                .ledger()
                .await
                .invitation_answered(InvitationAnsweredRequest { guid: "x".into() })
                .await
                .is_err_and(|s| s.code() == tonic::Code::InvalidArgument);
            if cache && bridge {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the tier did not come up");
    }

    fn grpc(&self, addr: SocketAddr, name: &str) -> GrpcClientConfig {
        GrpcClientConfig {
            url: format!("https://{addr}"),
            server_name: "localhost".into(),
            ca: self.path("ca.pem"),
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        }
    }

    async fn channel(&self, addr: SocketAddr, name: &str) -> Channel {
        test_support::mtls_endpoint(self.dir.path(), name, addr).connect_lazy()
    }

    /// A cache client as the caller `name` (`emr-site-1001`, `outreach`, `bridge`, `admin`).
    pub async fn client(&self, name: &str) -> ContactCacheClient<Channel> {
        ContactCacheClient::new(self.channel(self.cache, name).await)
    }

    /// The bridge's ledger as the outreach worker.
    pub async fn ledger(&self) -> InvitationLedgerClient<Channel> {
        InvitationLedgerClient::new(self.channel(self.bridge_grpc, "outreach").await)
    }

    /// Pushes `contact` as the site's EMR; returns its GUID.
    pub async fn put(&self, contact: Contact) -> String {
        let request = PutContactRequest { contact: Some(contact) };
        self.client("emr-site-1001").await.put_contact(request).await.unwrap().into_inner().guid
    }

    /// Contacts the cache holds.
    pub async fn entries(&self) -> u64 {
        self.client("admin").await.stats(StatsRequest {}).await.unwrap().into_inner().entries
    }

    /// Whether the bridge has an answer (or a decline) for `guid`; `None` when it has no
    /// invitation for it.
    pub async fn answered(&self, guid: &str) -> Option<bool> {
        let request = InvitationAnsweredRequest { guid: guid.into() };
        match self.ledger().await.invitation_answered(request).await {
            Ok(answer) => Some(answer.into_inner().answered),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => panic!("InvitationAnswered: {status:?}"),
        }
    }

    /// A worker configuration against this tier: SMS through the stand-in, no email, the
    /// suppression list in `db` (a file name in the tier's folder).
    pub fn worker_config(&self, db: &str) -> WorkerConfig {
        let key = self.path("suppression.key");
        if !key.exists() {
            std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
        }
        let mut config = WorkerConfig {
            database_url: format!("sqlite://{}?mode=rwc", self.path(db).display()),
            key_file: key,
            cache: self.grpc(self.cache, "outreach"),
            ..WorkerConfig::default()
        };
        // The binary locks its memory when it can (as root, as in CI) and starts anyway when
        // it cannot.
        config.memory.allow_unlocked = true;
        config.bridge.grpc = self.grpc(self.bridge_grpc, "outreach");
        config.bridge.public_url = self.public_url();
        config.sms = Some(SmsSettings {
            base_url: self.twilio_url.clone(),
            account_sid: twilio::SID.into(),
            auth_token: twilio::TOKEN.into(),
            from: Some(twilio::FROM.into()),
            per_second: 1000,
            base_delay_ms: 1,
            max_delay_ms: 5,
            ..SmsSettings::default()
        });
        config
    }
}
