//! TLS for the gRPC port: rustls with the ring provider, TLS 1.2 and 1.3 only, HTTP/2 only,
//! client certificates from one CA.
//!
//! A client certificate is asked for and verified against `tls.client_ca`; a client with no
//! certificate may still connect (for health checks) and gets UNAUTHENTICATED from every
//! cache RPC. Plaintext, TLS below 1.2 and certificates from any other CA fail the handshake.
//!
//! Connections are accepted and their handshakes run here, one task each and under a
//! deadline, so a slow or broken client never holds up the listener. Each connection's
//! caller identity is read from its certificate once, after the handshake, and travels with
//! the connection to every request on it (see [`Peer`]). A failed handshake is audited and
//! counted per peer address; a peer that fails too often is refused for a while.
//!
//! The certificate, key and client CA can be read again while the daemon serves (SIGHUP,
//! see [`Acceptor::replace_config`]): handshakes from then on use the new ones, and
//! connections already open keep theirs.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    path::Path,
    pin::Pin,
    sync::{Arc, PoisonError, RwLock},
    task::{Context, Poll, ready},
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::ring,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
    version,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing::{debug, error, warn};

pub mod wipe;

use wipe::Wiped;

use crate::{
    audit::{Action, Actor, Audit, Event},
    auth::{Caller, IdentityError, caller_from_certificate},
    throttle::Throttle,
};

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
    /// The client CA could not be used to verify clients.
    #[error("tls.client_ca: {0}")]
    ClientCa(String),
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

fn client_verifier(client_ca: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("tls.client_ca", client_ca)? {
        roots.add(cert).map_err(|e| TlsError::ClientCa(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(ring::default_provider()))
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::ClientCa(e.to_string()))
}

/// A server configuration for the gRPC port: the server's chain and key, and the CA whose
/// client certificates identify callers.
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    Ok(load_server(cert, key, client_ca)?.config)
}

/// The TLS material of the gRPC port, read from its files.
#[derive(Debug)]
pub struct ServerTls {
    /// The rustls configuration.
    pub config: Arc<ServerConfig>,
    /// When the server's own certificate expires, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// Reads the server's chain and key and the client CA, and checks that they make a working
/// configuration (the key must match the certificate).
pub fn load_server(cert: &Path, key: &Path, client_ca: &Path) -> Result<ServerTls, TlsError> {
    let certs = load_certs("tls.cert", cert)?;
    let not_after = x509_parser::parse_x509_certificate(&certs[0])
        .map(|(_, leaf)| leaf.validity().not_after.timestamp())
        .map_err(|e| TlsError::Pem {
            what: "tls.cert",
            path: cert.display().to_string(),
            reason: format!("the first certificate cannot be parsed: {e}"),
        })?;
    let key = load_key("tls.key", key)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_client_cert_verifier(client_verifier(client_ca)?)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(ServerTls { config: Arc::new(config), not_after })
}

/// The far end of a connection: its address and who its certificate says it is.
#[derive(Debug)]
pub struct Peer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The caller, or why there is none.
    pub identity: Result<Arc<Caller>, IdentityError>,
}

/// A TLS connection that carries its [`Peer`] into every request made on it.
///
/// Writes are gathered: the first write after a flush yields to the runtime once (it wakes
/// its task and answers `Pending`), so that the answers of other calls that are finishing
/// at that moment join the same TLS record and system call. On loopback a `writev` costs
/// the server about as much as the rest of a unary call's TLS work; a group commit of the
/// audit log finishes many calls at once (BENCHMARKS.md).
#[derive(Debug)]
pub struct PeerStream {
    inner: TlsStream<Wiped<TcpStream>>,
    peer: Arc<Peer>,
    gather: Gather,
}

/// One yield per write burst: see [`PeerStream`].
#[derive(Debug, Default)]
struct Gather {
    /// Whether this burst (the writes since the last flush) has yielded already.
    yielded: bool,
}

impl Gather {
    /// `Pending`, with the task woken, on the first write of a burst; `Ready` after that.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The burst is flushed: the next write starts another.
    fn flushed(&mut self) {
        self.yielded = false;
    }
}

impl PeerStream {
    /// Who is at the far end.
    pub fn peer(&self) -> Arc<Peer> {
        self.peer.clone()
    }
}

impl Connected for PeerStream {
    type ConnectInfo = Arc<Peer>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.gather.poll(cx));
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.gather.poll(cx));
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = ready!(Pin::new(&mut this.inner).poll_flush(cx));
        this.gather.flushed();
        Poll::Ready(flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn identify(tls: &TlsStream<Wiped<TcpStream>>) -> Result<Caller, IdentityError> {
    let (_, session) = tls.get_ref();
    let leaf =
        session.peer_certificates().and_then(|certs| certs.first()).ok_or(IdentityError::NoCertificate)?;
    caller_from_certificate(leaf)
}

/// What the acceptor needs besides the socket: TLS settings, the audit log and the
/// per-peer handshake lock-out.
#[derive(Debug)]
pub struct Acceptor {
    /// The rustls configuration of the next handshakes.
    config: RwLock<Arc<ServerConfig>>,
    /// How long a client gets to finish its handshake.
    handshake_timeout: Duration,
    /// Where failed handshakes are recorded.
    audit: Arc<Audit>,
    /// Failed handshakes (and calls without a certificate) per peer address.
    throttle: Arc<Throttle<IpAddr>>,
}

impl Acceptor {
    /// An acceptor that runs handshakes with `config`, each within `handshake_timeout`,
    /// records failures in `audit` and refuses peers that `throttle` has locked out.
    pub fn new(
        config: Arc<ServerConfig>,
        handshake_timeout: Duration,
        audit: Arc<Audit>,
        throttle: Arc<Throttle<IpAddr>>,
    ) -> Self {
        Acceptor { config: RwLock::new(config), handshake_timeout, audit, throttle }
    }

    /// Runs the handshakes that start from now on with `config` (new certificates, a new
    /// client CA). Connections already open keep the session they have.
    pub fn replace_config(&self, config: Arc<ServerConfig>) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.config.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn handshake_failed(&self, peer: SocketAddr, timed_out: bool) {
        let (cause, detail) = if timed_out {
            ("timeout", "tls handshake timed out")
        } else {
            ("error", "tls handshake failed")
        };
        metrics::counter!("cache_tls_handshake_failures_total", "cause" => cause).increment(1);
        debug!(%peer, detail, "tls handshake failed");
        let mut event = Event::new(Action::AuthFailed, "unauthenticated", Actor::Peer(Some(peer)));
        event.detail = Some(detail);
        if let Err(err) = self.audit.record(event) {
            error!(cause = %err, "cannot audit a failed handshake");
        }
        if self.throttle.record_failure(&peer.ip()) {
            warn!(%peer, "too many failed handshakes: refusing this peer for a while");
            let event = Event::new(Action::PeerThrottled, "resource_exhausted", Actor::Peer(Some(peer)));
            if let Err(err) = self.audit.record(event) {
                error!(cause = %err, "cannot audit a peer lock-out");
            }
        }
    }
}

/// Accepts the next TCP connection on `listener` from a peer that is not locked out.
///
/// Accept errors (out of file descriptors and the like) are logged and retried after a
/// pause rather than in a spin.
pub async fn accept(listener: &TcpListener, acceptor: &Acceptor) -> (TcpStream, SocketAddr) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                warn!(cause = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if acceptor.throttle.is_blocked(&peer.ip()) {
            metrics::counter!("cache_tls_refused_total").increment(1);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        return (tcp, peer);
    }
}

/// Runs the TLS handshake of `tcp` within the acceptor's timeout; a failure is counted,
/// audited and held against the peer, and gives `None`.
pub async fn handshake(acceptor: &Acceptor, tcp: TcpStream, peer: SocketAddr) -> Option<PeerStream> {
    let tls = TlsAcceptor::from(acceptor.config());
    match tokio::time::timeout(acceptor.handshake_timeout, tls.accept(Wiped(tcp))).await {
        Ok(Ok(stream)) => {
            let identity = identify(&stream).map(Arc::new);
            let peer = Arc::new(Peer { addr: peer, identity });
            Some(PeerStream { inner: stream, peer, gather: Gather::default() })
        }
        Ok(Err(_)) => {
            acceptor.handshake_failed(peer, false);
            None
        }
        Err(_) => {
            acceptor.handshake_failed(peer, true);
            None
        }
    }
}

/// Accepts TCP connections on `listener` and yields those that complete a TLS handshake.
///
/// The returned task runs until the stream is dropped; abort it to stop accepting.
pub fn incoming(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
) -> (ReceiverStream<io::Result<PeerStream>>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = accept(&listener, &acceptor).await;
            if tx.is_closed() {
                break;
            }
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Some(stream) = handshake(&acceptor, tcp, peer).await {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    (ReceiverStream::new(rx), task)
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        task::{Wake, Waker},
    };

    use super::*;

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_first_write_of_each_burst_yields_once_and_wakes_its_task() {
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut gather = Gather::default();
        for burst in 1..=2 {
            assert!(gather.poll(&mut cx).is_pending());
            assert_eq!(wakes.0.load(Ordering::SeqCst), burst, "a Pending must come with a wake");
            assert!(gather.poll(&mut cx).is_ready());
            assert!(gather.poll(&mut cx).is_ready());
            gather.flushed();
        }
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
    }
}
