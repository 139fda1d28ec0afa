//! HTTPS for the patient pages: rustls (ring, TLS 1.2+), handshakes off the accept loop, as
//! an axum [`Listener`].

use std::{
    io,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use axum::{
    extract::connect_info::Connected,
    serve::{IncomingStream, Listener},
};
use rustls::{ServerConfig, crypto::ring, version};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tracing::debug;

use crate::client::{TrustedProxies, read_proxy_header};

/// A server configuration for the pages: the bridge's certificate, no client certificates,
/// HTTP/2 and HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, cache_server::tls::TlsError> {
    let certs = cache_server::tls::load_certs("tls.cert", cert)?;
    let key = cache_server::tls::load_key("tls.key", key)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The pages' TLS configuration in use, replaced whole on reload: handshakes from then on
/// use the new one; connections already open keep theirs. It keeps when that
/// configuration's certificate expires, for readiness ([`crate::probes`]).
#[derive(Debug)]
pub struct PagesTls(RwLock<(Arc<ServerConfig>, i64)>);

impl PagesTls {
    /// Starts with `config`, whose certificate expires at `not_after` (Unix seconds).
    pub fn new(config: Arc<ServerConfig>, not_after: i64) -> PagesTls {
        PagesTls(RwLock::new((config, not_after)))
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).0.clone()
    }

    /// When the certificate of [`PagesTls::current`] expires, in Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.0.read().unwrap_or_else(PoisonError::into_inner).1
    }

    /// Takes `config`, whose certificate expires at `not_after`, for every handshake from
    /// now on.
    pub fn replace(&self, config: Arc<ServerConfig>, not_after: i64) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = (config, not_after);
    }
}

/// TLS connections that finished their handshake, for `axum::serve`.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    rx: mpsc::Receiver<(TlsStream<TcpStream>, ClientAddr)>,
    task: JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener` and runs each handshake in its own task. Each handshake uses
    /// the configuration `tls` holds at that moment; a connection from one of `trusted`
    /// may start with a PROXY protocol v2 header, which names its client.
    pub fn new(
        listener: TcpListener,
        tls: Arc<PagesTls>,
        handshake_timeout: Duration,
        trusted: Arc<TrustedProxies>,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let (acceptor, tx, trusted) = (TlsAcceptor::from(tls.current()), tx.clone(), trusted.clone());
                tokio::spawn(async move {
                    let start = async {
                        let mut conn = ClientAddr { peer, client: peer.ip(), proxied: false };
                        if trusted.contains(peer.ip())
                            && let Some(client) = read_proxy_header(&mut tcp).await?
                        {
                            conn = ClientAddr { peer, client: client.ip(), proxied: true };
                        }
                        Ok::<_, io::Error>((acceptor.accept(tcp).await?, conn))
                    };
                    match tokio::time::timeout(handshake_timeout, start).await {
                        Ok(Ok(connection)) => {
                            let _ = tx.send(connection).await;
                        }
                        _ => debug!("https handshake failed"),
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
    type Addr = ClientAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ClientAddr { peer: self.local, client: self.local.ip(), proxied: false })
    }
}

/// Who is at the other end of a connection, for the in-memory guessing throttle only
/// ([`crate::client`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client: the peer, or the source a trusted proxy's PROXY header named.
    pub client: IpAddr,
    /// Whether a PROXY header named the client.
    pub proxied: bool,
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        *stream.remote_addr()
    }
}
