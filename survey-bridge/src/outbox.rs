//! Delivers declines to the contact cache: each GUID queued by a decline is sent to the
//! cache's `OptOut` (as the `bridge` role, over mutual TLS) until the cache has it.
//!
//! The queue is a table, so an opt-out survives restarts and a cache that is down: a failed
//! delivery is retried with a capped exponential backoff. NOT_FOUND counts as delivered: the
//! contact is already gone from the cache, which is all an opt-out could ask.
//!
//! The same loop also forgets the GUIDs that waited for the outreach worker longer than it
//! could use them (`link_valid_days` + 1 days), so they go even when no worker asks.

use std::{path::Path, sync::Arc, time::Duration};

use cache_server::{
    audit::{Actor, Audit, Event},
    clock::Clock,
    guid::Guid,
};
use jiff::SignedDuration;
use proto::v1::{OptOutRequest, contact_cache_client::ContactCacheClient};
use tokio::sync::{Notify, watch};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use tracing::{info, warn};

use crate::{config::CacheClientConfig, db::Db};

/// Longest wait between two attempts.
const MAX_BACKOFF: SignedDuration = SignedDuration::from_hours(1);

/// A client of the cache as the bridge.
pub fn cache_client(config: &CacheClientConfig) -> Result<ContactCacheClient<Channel>, std::io::Error> {
    let read = |path: &Path| std::fs::read_to_string(path);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&config.ca)?))
        .identity(Identity::from_pem(read(&config.cert)?, read(&config.key)?))
        .domain_name(config.server_name.clone());
    let endpoint = Channel::from_shared(config.url.clone())
        .map_err(std::io::Error::other)?
        .tls_config(tls)
        .map_err(std::io::Error::other)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    Ok(ContactCacheClient::new(endpoint.connect_lazy()))
}

/// The delivery loop.
#[derive(Debug)]
pub struct Outbox {
    /// The queue.
    pub db: Db,
    /// The cache, if one is configured; without it opt-outs wait in the queue.
    pub client: Option<ContactCacheClient<Channel>>,
    /// Time, for due dates.
    pub clock: Clock,
    /// The audit trail.
    pub audit: Arc<Audit>,
    /// The first wait after a failure; it doubles with each attempt, up to an hour.
    pub retry: SignedDuration,
    /// Woken when a decline queues something.
    pub wake: Arc<Notify>,
    /// Days a link works: the worker's queue of opt-outs is kept one day longer.
    pub link_valid_days: u32,
}

impl Outbox {
    /// Delivers what is due every `tick`, and at once when woken, until `stop` turns true.
    pub async fn run(self, tick: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            self.deliver_due().await;
            if let Err(err) = self.db.forget_worker_opt_outs(self.clock.now(), self.link_valid_days).await {
                warn!(cause = %err, "cannot forget old opt-outs queued for the worker");
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = self.wake.notified() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Tries every opt-out that is due; returns how many were delivered.
    pub async fn deliver_due(&self) -> usize {
        let Some(client) = &self.client else { return 0 };
        let due = match self.db.due_opt_outs(self.clock.now(), 100).await {
            Ok(due) => due,
            Err(err) => {
                warn!(cause = %err, "cannot read the opt-out outbox");
                return 0;
            }
        };
        let mut delivered = 0;
        for (guid, attempts) in due {
            let result = client.clone().opt_out(OptOutRequest { guid: guid.clone() }).await;
            let parsed = guid.parse::<Guid>().ok();
            let outcome = match &result {
                Ok(_) => "ok",
                Err(status) if status.code() == Code::NotFound => "not_found",
                Err(_) => "unavailable",
            };
            metrics::counter!("bridge_opt_outs_delivered_total", "result" => outcome).increment(1);
            let mut event = Event::new("OPT_OUT_DELIVERED", outcome, Actor::System);
            event.guid = parsed.as_ref();
            if let Err(err) = self.audit.record(event) {
                warn!(cause = %err, "cannot audit an opt-out delivery; will retry");
                continue;
            }
            let stored = if outcome == "unavailable" {
                let wait = self.retry.saturating_mul(1i32 << attempts.clamp(0, 16)).min(MAX_BACKOFF);
                let next = self.clock.now().saturating_add(wait).unwrap_or(self.clock.now());
                self.db.opt_out_failed(&guid, attempts + 1, next).await
            } else {
                delivered += 1;
                self.db.opt_out_delivered(&guid).await
            };
            if let Err(err) = stored {
                warn!(cause = %err, "cannot update the opt-out outbox");
            }
        }
        if delivered > 0 {
            info!(delivered, "opt-outs delivered to the cache");
        }
        delivered
    }
}
