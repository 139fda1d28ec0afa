//! Connections to the cache: mutual TLS with a role certificate made by `cache-server certs`.

use std::{net::SocketAddr, path::Path};

use proto::v1::contact_cache_client::ContactCacheClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Failure to read certificates or connect.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the server is and who we are.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's gRPC address.
    pub addr: SocketAddr,
    /// The name the server certificate is checked against.
    pub domain: String,
    /// The CA certificate (PEM).
    pub ca_pem: String,
}

impl Target {
    /// Reads the CA from `certs/ca.pem`.
    pub fn new(addr: SocketAddr, domain: &str, certs: &Path) -> Result<Self, BoxError> {
        let ca_pem = read(&certs.join("ca.pem"))?;
        Ok(Target { addr, domain: domain.into(), ca_pem })
    }

    /// `connections` separate TLS connections presenting the certificate `certs/<name>.pem`.
    pub async fn connect(
        &self,
        certs: &Path,
        name: &str,
        connections: usize,
    ) -> Result<Vec<ContactCacheClient<Channel>>, BoxError> {
        let identity = Identity::from_pem(
            read(&certs.join(format!("{name}.pem")))?,
            read(&certs.join(format!("{name}.key")))?,
        );
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(self.domain.clone())
            .identity(identity);
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let channel = Channel::from_shared(format!("https://{}", self.addr))?
                .tls_config(tls.clone())?
                .tcp_nodelay(true)
                .connect()
                .await?;
            clients.push(ContactCacheClient::new(channel).max_decoding_message_size(16 << 20));
        }
        Ok(clients)
    }
}

fn read(path: &Path) -> Result<String, BoxError> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}
