//! TLS for the gRPC port: rustls with the ring provider, TLS 1.2 and 1.3 only, HTTP/2 only.
//!
//! Connections are accepted and their handshakes run here, one task each and under a
//! deadline, so a slow or broken client never holds up the listener. A failed handshake is
//! counted and logged with its cause and the connection dropped; the listener goes on.

use std::{io, path::Path, sync::Arc, time::Duration};

use rustls::{ServerConfig, crypto::ring, version};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

/// The TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{what} {path}: {reason}")]
    Pem {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// rustls refused the certificate and key.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Reads a PEM certificate chain.
pub fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |reason: String| TlsError::Pem { what, path: path.display().to_string(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("holds no certificate".into()));
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn load_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A server configuration for the gRPC port from a certificate chain and key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs("tls.cert", cert)?;
    let key = load_key("tls.key", key)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections on `listener` and yields those that complete a TLS handshake.
///
/// The returned task runs until the stream is dropped; abort it to stop accepting.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
) -> (ReceiverStream<io::Result<TlsStream<tokio::net::TcpStream>>>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(err) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    warn!(cause = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                break;
            }
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(err)) => {
                        metrics::counter!("cache_tls_handshake_failures_total", "cause" => "error")
                            .increment(1);
                        debug!(%peer, cause = %err, "tls handshake failed");
                    }
                    Err(_) => {
                        metrics::counter!("cache_tls_handshake_failures_total", "cause" => "timeout")
                            .increment(1);
                        debug!(%peer, "tls handshake timed out");
                    }
                }
            });
        }
    });
    (ReceiverStream::new(rx), task)
}
