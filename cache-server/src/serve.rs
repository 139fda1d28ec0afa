//! The gRPC listener's HTTP/2 serving: hyper's HTTP/2 server on each TLS connection of
//! [`tls::incoming`](crate::tls::incoming), requests for `contactcache.v1.ContactCache`
//! handed straight to its generated server (GetContact to [`GetContactEncoded`], which
//! sends a contact's stored encoding as it is), everything else (health, reflection) to
//! tonic's router.
//!
//! tonic's own `Server` puts every request through an axum router and a stack of tower
//! layers (error recovery, load shedding, concurrency limits, `grpc-timeout`) that this
//! daemon does not configure: about a tenth of a unary call's CPU. Each connection's
//! [`Peer`] goes into every request's extensions, as tonic's `connect_info` did. A client's
//! `grpc-timeout` is not enforced here: a client that gives up resets its stream, which
//! drops the call.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::{Pin, pin},
    sync::Arc,
};

use futures_util::{StreamExt, future::Either};
use hyper::{body::Incoming, server::conn::http2, service::Service};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use proto::{
    codec::Codec1K,
    encoded::EncodedContact,
    v1::{GetContactRequest, contact_cache_server::ContactCacheServer},
};
use tokio_stream::Stream;
use tonic::{body::Body, codegen::Service as TowerService, service::Routes};
use tracing::debug;

use crate::{
    service::{CacheService, GetContactEncoded},
    tls::{Peer, PeerStream},
};

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
    /// The largest request accepted, in bytes (as the generated server's
    /// `max_decoding_message_size`).
    pub max_request_bytes: usize,
}

/// Routes the requests of one connection.
struct Dispatch {
    routes: CacheRoutes,
    others: Routes,
    peer: Arc<Peer>,
}

/// The future of a GetContact call.
type GetContactFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl Service<http::Request<Incoming>> for Dispatch {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<
        GetContactFuture,
        Either<
            <ContactCacheServer<CacheService> as TowerService<http::Request<Incoming>>>::Future,
            <Routes as TowerService<http::Request<Incoming>>>::Future,
        >,
    >;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        let path = request.uri().path();
        if path == GET_CONTACT {
            let service = self.routes.get_contact.clone();
            let mut grpc = tonic::server::Grpc::new(Codec1K::<EncodedContact, GetContactRequest>::default())
                .apply_max_message_size_config(Some(self.routes.max_request_bytes), None);
            Either::Left(Box::pin(async move { Ok(grpc.unary(service, request).await) }))
        } else if path.starts_with(CACHE_PATHS) {
            Either::Right(Either::Left(TowerService::call(&mut self.routes.cache.clone(), request)))
        } else {
            Either::Right(Either::Right(TowerService::call(&mut self.others.clone(), request)))
        }
    }
}

/// Serves each connection of `incoming` until `shutdown` completes; then stops accepting,
/// tells every client to go away (HTTP/2 GOAWAY) and returns once their calls in flight
/// have finished and the connections have closed.
pub async fn serve(
    incoming: impl Stream<Item = io::Result<PeerStream>>,
    routes: CacheRoutes,
    others: Routes,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    // No `date` header: gRPC clients do not read it, and it is one more header to encode
    // in every answer.
    builder.timer(TokioTimer::new()).max_concurrent_streams(MAX_STREAMS).auto_date_header(false);
    let graceful = GracefulShutdown::new();
    {
        let mut incoming = pin!(incoming);
        let mut shutdown = pin!(shutdown);
        loop {
            let stream = tokio::select! {
                () = &mut shutdown => break,
                stream = incoming.next() => match stream {
                    Some(Ok(stream)) => stream,
                    Some(Err(err)) => {
                        debug!(cause = %err, "connection not accepted");
                        continue;
                    }
                    None => break,
                },
            };
            let dispatch = Dispatch { routes: routes.clone(), others: others.clone(), peer: stream.peer() };
            let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), dispatch));
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    debug!(cause = %err, "connection ended with an error");
                }
            });
        }
    }
    graceful.shutdown().await;
}
