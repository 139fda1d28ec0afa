//! Idle connections: a connection with no call in flight for `idle_timeout_seconds` is told
//! to go away (HTTP/2 GOAWAY) and closed.
//!
//! The bytes of a connection's calls are wiped from its buffers while it stays open (rustls's
//! by [`crate::tls::wipe`], h2's by its patched copy, vendor/README.md). Closing idle
//! connections is the second line: it frees everything a connection holds (its TLS state,
//! HPACK tables, buffers), and the daemon's allocator (`zeroizing_alloc`, see `main.rs`)
//! zeroes what is freed, whatever a future version of rustls or h2 keeps. BENCHMARKS.md
//! measures what reconnecting costs a client. Clients reconnect on their next call: tonic's
//! `Channel` does so by itself.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use tokio::time::Instant;
use tonic::body::Body;

/// The calls of one connection: how many are in flight, and when the last one began or
/// ended.
#[derive(Debug)]
pub struct Activity {
    since: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `since` to the last start or end of a call.
    last_ms: AtomicU64,
}

impl Activity {
    /// A connection that has just opened, with no call yet.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            since: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// A call begins; it lasts until the guard is dropped (with its answer's body).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self.clone())
    }

    /// Completes once the connection has had no call in flight for `timeout`: checked when
    /// the time since the last call's end runs out, and every `timeout` while calls run (so
    /// within twice the timeout of the last call's end).
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(timeout).await;
                continue;
            }
            let last = self.since + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + timeout;
            if Instant::now() >= due && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// A call in flight; dropped when its answer has been sent (or the call dropped).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The future of a call: the call's own, holding `busy` until its answer's body is done.
pub type TrackedFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

/// `call`, counted in flight from now until its answer's body has been sent or dropped.
pub fn tracked<F>(busy: Busy, call: F) -> TrackedFuture
where
    F: Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static,
{
    Box::pin(async move {
        let response = call.await?;
        Ok(response.map(|body| Body::new(TrackedBody { body, _busy: busy })))
    })
}

/// An answer's body and the guard of its call.
struct TrackedBody {
    body: Body,
    _busy: Busy,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_once_no_call_has_run_for_the_timeout() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(30);
        let busy = activity.begin();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(timeout).await }
        });
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!idle.is_finished(), "a call in flight keeps the connection");
        drop(busy);
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(!idle.is_finished(), "not before the timeout after the call's end");
        tokio::time::sleep(Duration::from_secs(32)).await;
        assert!(idle.is_finished(), "idle within twice the timeout");
    }
}
