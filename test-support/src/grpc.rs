//! A tonic channel over mutual TLS, as a caller of the tier's gRPC services opens it.

use std::{net::SocketAddr, path::Path};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// An endpoint for `https://<addr>` that trusts `<certs_dir>/ca.pem`, presents
/// `<certs_dir>/<name>.pem` and `<name>.key`, and expects the server name `localhost`.
///
/// Installs ring as the process's rustls provider if none is installed yet.
pub fn mtls_endpoint(certs_dir: &Path, name: &str, addr: SocketAddr) -> Endpoint {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |file: &str| {
        let path = certs_dir.join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read(&format!("{name}.pem")), read(&format!("{name}.key"))))
        .domain_name("localhost");
    Channel::from_shared(format!("https://{addr}"))
        .expect("an https URI")
        .tls_config(tls)
        .expect("a usable TLS configuration")
}

/// A channel connected to [`mtls_endpoint`]`(certs_dir, name, addr)`; panics if the
/// connection fails.
pub async fn mtls_channel(certs_dir: &Path, name: &str, addr: SocketAddr) -> Channel {
    mtls_endpoint(certs_dir, name, addr)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr} as {name}: {e:?}"))
}
