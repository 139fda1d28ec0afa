//! The worker's gRPC clients: the contact cache and the survey bridge's ledger, both over
//! mutual TLS with the worker's `outreach` certificate.

use std::{
    path::Path,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use proto::{
    ledger::invitation_ledger_client::InvitationLedgerClient, v1::contact_cache_client::ContactCacheClient,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::GrpcClientConfig;

/// A lazily connected channel to the server in `config`; errors name the file or setting.
pub fn channel(what: &str, config: &GrpcClientConfig) -> Result<Channel, std::io::Error> {
    Ok(endpoint(what, config)?.connect_lazy())
}

/// The server in `config`, over mutual TLS; errors name the file or setting.
fn endpoint(what: &str, config: &GrpcClientConfig) -> Result<Endpoint, std::io::Error> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{what}: {}: {e}", path.display())))
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&config.ca)?))
        .identity(Identity::from_pem(read(&config.cert)?, read(&config.key)?))
        .domain_name(config.server_name.clone());
    let endpoint = Channel::from_shared(config.url.clone())
        .map_err(|e| std::io::Error::other(format!("{what}.url: {e}")))?
        .tls_config(tls)
        .map_err(|e| std::io::Error::other(format!("{what}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    Ok(endpoint)
}

/// The contact cache's client, on a connection that is closed after each batch.
///
/// Leased contacts pass through the connection's buffers on both ends (TLS records, HTTP/2
/// frames, gRPC messages), and those buffers live as long as the connection. Closing it once
/// a batch is acked frees them, and the zeroizing allocator wipes them: no contact stays in
/// the worker's or the cache's memory between batches. The next batch connects again (one
/// TLS handshake per batch).
#[derive(Debug)]
pub struct Cache {
    endpoint: Endpoint,
    current: Mutex<Option<ContactCacheClient<Channel>>>,
}

impl Cache {
    /// A client on the current connection, connecting (lazily) if there is none.
    pub fn client(&self) -> ContactCacheClient<Channel> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.get_or_insert_with(|| ContactCacheClient::new(self.endpoint.connect_lazy())).clone()
    }

    /// Lets go of the current connection: it closes once the clients handed out are dropped.
    pub fn close(&self) {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// The contact cache's client.
pub fn cache(config: &GrpcClientConfig) -> Result<Cache, std::io::Error> {
    Ok(Cache { endpoint: endpoint("cache", config)?, current: Mutex::new(None) })
}

/// The bridge's ledger client.
pub fn ledger(config: &GrpcClientConfig) -> Result<InvitationLedgerClient<Channel>, std::io::Error> {
    Ok(InvitationLedgerClient::new(channel("bridge", config)?))
}
