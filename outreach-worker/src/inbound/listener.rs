//! The webhook's HTTPS listener: rustls (ring, TLS 1.2+), no client certificates, each
//! handshake in its own task under a deadline, as an axum [`Listener`].

use std::{future::Future, io, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use axum::{Router, serve::Listener};
use cache_server::tls::{TlsError, load_certs, load_key};
use rustls::{ServerConfig, crypto::ring, version};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tracing::{debug, info};

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener's TLS configuration: `sms.inbound.tls_cert` and `tls_key`, HTTP/2 and
/// HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs("sms.inbound.tls_cert", cert)?;
    let key = load_key("sms.inbound.tls_key", key)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then lets the requests
/// under way finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = TlsListener::new(listener, tls, HANDSHAKE_TIMEOUT)?;
    info!(addr = %listener.local, "SMS webhook listening (https)");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// TLS connections that finished their handshake, for `axum::serve`.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    task: JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener`; a handshake that fails or outlasts `handshake_timeout` drops
    /// its connection and never stops the listener.
    pub fn new(
        listener: TcpListener,
        tls: Arc<ServerConfig>,
        handshake_timeout: Duration,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(tls);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        debug!(cause = %err, "SMS webhook: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(err)) => debug!(cause = %err, "SMS webhook: TLS handshake failed"),
                        Err(_) => debug!("SMS webhook: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, rx, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(connection) => connection,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
