//! The worker's gRPC clients: the contact cache and the survey bridge's ledger, both over
//! mutual TLS with the worker's `outreach` certificate.

use std::{path::Path, time::Duration};

use proto::{
    ledger::invitation_ledger_client::InvitationLedgerClient, v1::contact_cache_client::ContactCacheClient,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::config::GrpcClientConfig;

/// A lazily connected channel to the server in `config`; errors name the file or setting.
pub fn channel(what: &str, config: &GrpcClientConfig) -> Result<Channel, std::io::Error> {
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
    Ok(endpoint.connect_lazy())
}

/// The contact cache's client.
pub fn cache(config: &GrpcClientConfig) -> Result<ContactCacheClient<Channel>, std::io::Error> {
    Ok(ContactCacheClient::new(channel("cache", config)?))
}

/// The bridge's ledger client.
pub fn ledger(config: &GrpcClientConfig) -> Result<InvitationLedgerClient<Channel>, std::io::Error> {
    Ok(InvitationLedgerClient::new(channel("bridge", config)?))
}
