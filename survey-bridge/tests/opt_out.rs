//! A decline reaches a real cache-server's OptOut, and waits in the outbox while the cache
//! is down.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, time::Duration};

use cache_server::{Listeners, clock::Clock, config::Config};
use common::{guid, start_with, test_config};
use jiff::SignedDuration;
use proto::v1::{
    Channel as ContactChannel, Contact, GetContactRequest, PutContactRequest,
    contact_cache_client::ContactCacheClient,
};
use survey_bridge::config::CacheClientConfig;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{Code, transport::Channel};

/// Starts a cache-server on `listener` with the PKI in `dir`; drop the sender to stop it.
fn start_cache(dir: &Path, listener: TcpListener) -> oneshot::Sender<()> {
    let mut config = Config::default();
    config.tls.cert = dir.join("cache-server.pem");
    config.tls.key = dir.join("cache-server.key");
    config.tls.client_ca = dir.join("ca.pem");
    config.audit.path = dir.join("cache-audit.jsonl");
    config.audit.key_file = dir.join("audit.key");
    config.memory.allow_unlocked = true;
    let (tx, rx) = oneshot::channel::<()>();
    let clock = Clock::manual(common::START.parse().unwrap());
    tokio::spawn(cache_server::run(Listeners { grpc: listener, metrics: None }, config, clock, async {
        let _ = rx.await;
    }));
    tx
}

async fn cache_client(dir: &Path, port: u16, name: &str) -> ContactCacheClient<Channel> {
    ContactCacheClient::new(test_support::mtls_channel(dir, name, ([127, 0, 0, 1], port).into()).await)
}

fn cache_config(dir: &Path, port: u16) -> CacheClientConfig {
    CacheClientConfig {
        url: format!("https://127.0.0.1:{port}"),
        server_name: "localhost".into(),
        ca: dir.join("ca.pem"),
        cert: dir.join("bridge.pem"),
        key: dir.join("bridge.key"),
        retry_seconds: 1,
    }
}

/// Polls `check` every 50 ms, up to 20 s, until it holds.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn a_decline_opts_the_contact_out_in_the_cache() {
    let (mut config, dir) = test_config(None);
    let cache_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = cache_listener.local_addr().unwrap().port();
    let _cache = start_cache(dir.path(), cache_listener);
    config.cache = Some(cache_config(dir.path(), port));
    let bridge = start_with(config, dir.clone()).await;

    let mut emr = cache_client(dir.path(), port, "emr-site-1001").await;
    let contact = Contact {
        site_id: "site-1001".into(),
        provider_id: "prov-a1".into(),
        campaign_id: "pcpe-2026q4".into(),
        phone: "+16135550142".into(),
        email: String::new(),
        language: "en".into(),
        time_zone: "America/Toronto".into(),
        send_after: None,
        channel: ContactChannel::Sms as i32,
    };
    let g = emr.put_contact(PutContactRequest { contact: Some(contact) }).await.unwrap().into_inner().guid;
    let mut outreach = cache_client(dir.path(), port, "outreach").await;
    outreach.get_contact(GetContactRequest { guid: g.clone() }).await.unwrap();

    bridge.invite(&g, "prov-a1", "en").await;
    bridge.decline(&g).await;

    eventually("the cache answers NOT_FOUND for the declined contact", || {
        let mut outreach = outreach.clone();
        let g = g.clone();
        async move {
            matches!(outreach.get_contact(GetContactRequest { guid: g }).await, Err(s) if s.code() == Code::NotFound)
        }
    })
    .await;
    let db = survey_bridge::db::Db::connect(&bridge.database_url).await.unwrap();
    eventually("the outbox is empty", || {
        let db = db.clone();
        async move { db.pending_opt_outs().await.unwrap().is_empty() }
    })
    .await;
    assert!(bridge.audit_lines().iter().any(|l| l["action"] == "OPT_OUT_DELIVERED" && l["result"] == "ok"));
    let cache_audit = std::fs::read_to_string(dir.path().join("cache-audit.jsonl")).unwrap();
    assert!(cache_audit.lines().any(|l| l.contains("\"OPT_OUT\"") && l.contains("\"role\":\"bridge\"")));
}

#[tokio::test]
async fn opt_outs_wait_in_the_outbox_while_the_cache_is_down() {
    let (mut config, dir) = test_config(None);
    // A port with nothing behind it yet.
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        probe.local_addr().unwrap().port()
    };
    config.cache = Some(cache_config(dir.path(), port));
    let bridge = start_with(config, dir.clone()).await;
    let g = guid();
    bridge.invite(&g, "prov-a1", "fr").await;
    bridge.decline(&g).await;

    let db = survey_bridge::db::Db::connect(&bridge.database_url).await.unwrap();
    eventually("a failed attempt is recorded", || {
        let db = db.clone();
        async move { db.pending_opt_outs().await.unwrap().first().is_some_and(|(_, attempts)| *attempts >= 1) }
    })
    .await;
    assert_eq!(db.pending_opt_outs().await.unwrap()[0].0, g, "the GUID waits for the cache");

    // The cache comes up; once the retry is due, the opt-out goes through (the cache does
    // not know this GUID: NOT_FOUND, which counts as done).
    let _cache = start_cache(dir.path(), TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    bridge.clock.advance(SignedDuration::from_hours(2));
    eventually("the outbox is empty", || {
        let db = db.clone();
        async move { db.pending_opt_outs().await.unwrap().is_empty() }
    })
    .await;
    let lines = bridge.audit_lines();
    let deliveries: Vec<_> = lines.iter().filter(|l| l["action"] == "OPT_OUT_DELIVERED").collect();
    assert!(deliveries.iter().any(|l| l["result"] == "unavailable"));
    assert_eq!(deliveries.last().unwrap()["result"], "not_found");
}
