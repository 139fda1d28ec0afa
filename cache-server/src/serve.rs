//! The gRPC listener's serving: connections accepted here and dealt to
//! [`ConnectionThreads`], each an event loop of its own that runs a connection's TLS
//! handshake ([`tls::handshake`]) and hyper's HTTP/2 server on it; requests for
//! `contactcache.v1.ContactCache` handed straight to its generated server (GetContact to [`GetContactEncoded`], which
//! sends a contact's stored encoding as it is), their bodies held to `store.max_message_bytes`
//! ([`limit`]), everything else (health, reflection) to tonic's router.
//!
//! tonic's own `Server` puts every request through an axum router and a stack of tower
//! layers (error recovery, load shedding, concurrency limits, `grpc-timeout`) that this
//! daemon does not configure: about a tenth of a unary call's CPU. Each connection's
//! [`Peer`] goes into every request's extensions, as tonic's `connect_info` did. A client's
//! `grpc-timeout` is not enforced here: a client that gives up resets its stream, which
//! drops the call. A connection with no call in flight for `idle_timeout_seconds` is
//! closed ([`idle`]), which frees (and so zeroes) all it holds; the bytes of its calls are
//! wiped from its buffers before that ([`tls::wipe`], vendor/README.md).

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use hyper::{body::Incoming, server::conn::http2, service::Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use proto::{
    codec::Codec1K,
    encoded::EncodedContact,
    v1::{GetContactRequest, contact_cache_server::ContactCacheServer},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch},
    time::Duration,
};
use tonic::{body::Body, codegen::Service as TowerService, service::Routes};
use tracing::{debug, warn};

use crate::{
    service::{CacheService, GetContactEncoded},
    tls::{self, Acceptor, Peer},
};

pub mod idle;
pub mod limit;

use idle::{Activity, TrackedFuture};

/// The path prefix of the cache's own RPCs.
const CACHE_PATHS: &str = "/contactcache.v1.ContactCache/";

/// The path of GetContact, served by [`GetContactEncoded`].
const GET_CONTACT: &str = "/contactcache.v1.ContactCache/GetContact";

/// Most streams a client may have open on one connection (hyper's default is 200; a
/// PutContacts client opens a handful, a unary client as many as it has calls in flight).
const MAX_STREAMS: u32 = 1024;

/// The cache's RPCs, as [`serve`] routes them.
#[derive(Debug, Clone)]
pub struct CacheRoutes {
    /// Every RPC but GetContact.
    pub cache: ContactCacheServer<CacheService>,
    /// GetContact.
    pub get_contact: GetContactEncoded,
    /// The largest request message accepted, in bytes ([`limit`]; the generated server's
    /// `max_decoding_message_size` too).
    pub max_request_bytes: usize,
}

/// Routes the requests of one connection.
struct Dispatch {
    routes: CacheRoutes,
    others: Routes,
    peer: Arc<Peer>,
    activity: Arc<Activity>,
}

impl Service<http::Request<Incoming>> for Dispatch {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = TrackedFuture;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        let busy = self.activity.begin();
        request.extensions_mut().insert(self.peer.clone());
        let path = request.uri().path();
        if path == GET_CONTACT {
            let service = self.routes.get_contact.clone();
            let mut grpc = tonic::server::Grpc::new(Codec1K::<EncodedContact, GetContactRequest>::default())
                .apply_max_message_size_config(Some(self.routes.max_request_bytes), None);
            let request = limit::limited(request, self.routes.max_request_bytes);
            idle::tracked(busy, async move { Ok(grpc.unary(service, request).await) })
        } else if path.starts_with(CACHE_PATHS) {
            let request = limit::limited(request, self.routes.max_request_bytes);
            idle::tracked(busy, TowerService::call(&mut self.routes.cache.clone(), request))
        } else {
            idle::tracked(busy, TowerService::call(&mut self.others.clone(), request))
        }
    }
}

/// A connection handed to a connection thread: its socket, registered with no runtime yet,
/// its peer, and the drain's signal (held until the connection has closed).
struct Handoff {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    drain: watch::Receiver<bool>,
}

/// What each connection thread serves with.
#[derive(Clone)]
struct Serving {
    routes: CacheRoutes,
    others: Routes,
    acceptor: Arc<Acceptor>,
    idle_timeout: Duration,
}

/// The threads that serve the gRPC connections.
///
/// Each thread runs a single-threaded runtime of its own, and each connection lives on one
/// of them from its TLS handshake to its close, its calls included: no call wakes a task
/// on another thread (a multi-threaded runtime spent about a third of the server's CPU per
/// unary call on that when the load generator shared the cores; BENCHMARKS.md).
/// Connections are dealt to the threads in turn.
#[derive(Debug)]
pub struct ConnectionThreads {
    handoffs: Vec<mpsc::UnboundedSender<Handoff>>,
    stopped: Vec<oneshot::Receiver<()>>,
    next: AtomicUsize,
}

impl fmt::Debug for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoff").field("peer", &self.peer).finish_non_exhaustive()
    }
}

impl ConnectionThreads {
    /// Starts `count` threads (at least one) that serve connections with `routes` (the
    /// cache's RPCs) and `others` (health, reflection), after a TLS handshake by `acceptor`,
    /// and close each once it has had no call in flight for `idle_timeout`.
    pub fn start(
        count: usize,
        routes: CacheRoutes,
        others: Routes,
        acceptor: Arc<Acceptor>,
        idle_timeout: Duration,
    ) -> io::Result<Self> {
        let serving = Serving { routes, others, acceptor, idle_timeout };
        let mut threads =
            ConnectionThreads { handoffs: Vec::new(), stopped: Vec::new(), next: AtomicUsize::new(0) };
        for n in 0..count.max(1) {
            let (handoff, handoffs) = mpsc::unbounded_channel();
            let (stopped, stopped_rx) = oneshot::channel();
            // I/O and timers only: signals are the main runtime's.
            let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
            let serving = serving.clone();
            std::thread::Builder::new().name(format!("cache-conn-{n}")).spawn(move || {
                runtime.block_on(connection_loop(handoffs, serving));
                // Dropping the runtime drops the connections still open and their calls.
                drop(runtime);
                let _ = stopped.send(());
            })?;
            threads.handoffs.push(handoff);
            threads.stopped.push(stopped_rx);
        }
        Ok(threads)
    }

    /// How many threads there are.
    pub fn count(&self) -> usize {
        self.handoffs.len()
    }

    /// Hands `handoff` to the next thread.
    fn hand(&self, handoff: Handoff) {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.handoffs.len();
        if self.handoffs[n].send(handoff).is_err() {
            warn!(thread = n, "a connection thread has stopped; connection dropped");
        }
    }

    /// Stops the threads, closing any connection still open, and returns once all have
    /// stopped.
    pub async fn stop(self) {
        drop(self.handoffs);
        for stopped in self.stopped {
            let _ = stopped.await;
        }
    }
}

/// One connection thread: serves each connection handed to it until the handoffs end.
async fn connection_loop(mut handoffs: mpsc::UnboundedReceiver<Handoff>, serving: Serving) {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    // No `date` header: gRPC clients do not read it, and it is one more header to encode
    // in every answer.
    builder.timer(TokioTimer::new()).max_concurrent_streams(MAX_STREAMS).auto_date_header(false);
    let builder = Arc::new(builder);
    while let Some(Handoff { tcp, peer, drain }) = handoffs.recv().await {
        let (serving, builder) = (serving.clone(), builder.clone());
        tokio::spawn(async move {
            // Registered with this thread's runtime: its readiness wakes tasks here only.
            let tcp = match TcpStream::from_std(tcp) {
                Ok(tcp) => tcp,
                Err(err) => {
                    debug!(cause = %err, "connection not registered");
                    return;
                }
            };
            let Some(stream) = tls::handshake(&serving.acceptor, tcp, peer).await else {
                return;
            };
            let Serving { routes, others, idle_timeout, .. } = serving;
            let activity = Activity::new();
            let dispatch = Dispatch { routes, others, peer: stream.peer(), activity: activity.clone() };
            let connection = builder.serve_connection(TokioIo::new(stream), dispatch);
            if let Err(err) = until_drained_or_idle(connection, drain, &activity, idle_timeout).await {
                debug!(cause = %err, "connection ended with an error");
            }
        });
    }
}

/// Serves `connection` until it ends; when the daemon drains (`drain` turns true or its
/// sender goes) or the connection has had no call for `idle_timeout`, tells the client to
/// go away and lets the calls in flight finish first.
async fn until_drained_or_idle<I, S>(
    connection: http2::Connection<I, S, TokioExecutor>,
    mut drain: watch::Receiver<bool>,
    activity: &Activity,
    idle_timeout: Duration,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = Body>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connection = pin!(connection);
    let draining = async {
        // Draining already, or not yet: either way, wait for a change from not draining.
        let _ = drain.wait_for(|draining| *draining).await;
    };
    let idle = activity.idle_for(idle_timeout);
    tokio::select! {
        ended = connection.as_mut() => return ended,
        () = draining => debug!("daemon draining: connection told to go away"),
        () = idle => {
            metrics::counter!("cache_idle_connections_closed_total").increment(1);
            debug!("connection idle: told to go away");
        }
    }
    connection.as_mut().graceful_shutdown();
    connection.await
}

/// Accepts connections on `listener` and hands each to one of `threads` until `shutdown`
/// completes; then closes the listener, tells every client to go away (HTTP/2 GOAWAY) and
/// returns once their calls in flight have finished and the connections have closed.
pub async fn serve(
    listener: TcpListener,
    acceptor: &Acceptor,
    threads: &ConnectionThreads,
    shutdown: impl Future<Output = ()>,
) {
    // Each connection holds a receiver until it closes: once the drain is announced, the
    // sender's `closed` completes when the last connection has gone.
    let (drain, draining) = watch::channel(false);
    {
        let mut shutdown = pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = tls::accept(&listener, acceptor) => accepted,
            };
            // Taken off this runtime, to be registered with the thread's.
            match tcp.into_std() {
                Ok(tcp) => threads.hand(Handoff { tcp, peer, drain: draining.clone() }),
                Err(err) => debug!(cause = %err, "connection not handed over"),
            }
        }
    }
    drop(listener);
    drop(draining);
    let _ = drain.send(true);
    drain.closed().await;
}
