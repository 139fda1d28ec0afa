//! The largest request message, `store.max_message_bytes`: refused with RESOURCE_EXHAUSTED
//! as soon as its length is read, before any of it is buffered or decoded.
//!
//! tonic refuses a message over its `max_decoding_message_size` with OUT_OF_RANGE; gRPC's
//! status code guide, and this tier's contract, say RESOURCE_EXHAUSTED for a request over a
//! size bound. [`Limited`] reads the five-byte prefix of each gRPC message in a request body
//! (a compression flag, then the length, big-endian) as the body arrives, and ends the body
//! with that status, naming the limit, at the first prefix that announces more. tonic
//! answers with the body's error: a unary call (GetContact's own route included) gets it
//! without its handler running, and PutContacts ends its stream with it after the results
//! of the items before. tonic's own limit stays set behind this one.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use tonic::Status;

use crate::{auth::Rpc, service};

/// The length prefix of a gRPC message: a compression flag and a big-endian `u32`.
const PREFIX: usize = 5;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The status of a message of `len` bytes over `limit`, the limit `setting` sets.
pub fn too_large(len: usize, limit: usize, setting: &str) -> Status {
    Status::resource_exhausted(format!(
        "the request message is {len} bytes, over the limit of {limit} bytes ({setting})"
    ))
}

/// `request` to the cache with its body held to messages of at most `limit` bytes
/// (`store.max_message_bytes`; see [`Limited`]).
pub fn limited<B>(request: http::Request<B>, limit: usize) -> http::Request<Limited<B>> {
    // A unary call refused here never reaches its handler, which would have counted its
    // answer; PutContacts' handler counts the status that ends its stream itself.
    let method = request.uri().path().rsplit('/').next().unwrap_or_default();
    let count_as = Rpc::ALL.into_iter().find(|rpc| rpc.as_str() == method && *rpc != Rpc::PutContacts);
    let mut request = limited_naming(request, limit, "store.max_message_bytes");
    request.body_mut().count_as = count_as;
    request
}

/// `request` to another gRPC server (the survey bridge's ledger) with its body held to
/// messages of at most `limit` bytes, a refusal naming `setting`; nothing is counted.
pub fn limited_naming<B>(
    request: http::Request<B>,
    limit: usize,
    setting: &'static str,
) -> http::Request<Limited<B>> {
    request.map(|body| Limited {
        body,
        limit,
        setting,
        prefixes: Prefixes::default(),
        count_as: None,
        refusal: None,
        ended: false,
    })
}

/// A request body that ends with RESOURCE_EXHAUSTED when a message in it is over the limit.
#[derive(Debug)]
pub struct Limited<B> {
    body: B,
    limit: usize,
    /// What sets the limit, named in the refusal.
    setting: &'static str,
    prefixes: Prefixes,
    /// The RPC to count a refusal against in `cache_requests_total`, if its handler will not.
    count_as: Option<Rpc>,
    /// The refusal, once a prefix over the limit has been read: given after the bytes of the
    /// messages before it (which may have come in the same frame), then the body ends.
    refusal: Option<Status>,
    ended: bool,
}

impl<B> Limited<B> {
    /// The refusal of a message of `len` bytes: counted now, given by the next poll.
    fn refuse(&mut self, len: usize) {
        let status = too_large(len, self.limit, self.setting);
        if let Some(rpc) = self.count_as {
            service::observe::<()>(rpc, &Err(status.clone()));
        }
        self.refusal = Some(status);
    }
}

impl<B> HttpBody for Limited<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(status) = this.refusal.take() {
            this.ended = true;
            // tonic finds the status in the error and answers with it.
            return Poll::Ready(Some(Err(Box::new(status))));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let frame = match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
            None => return Poll::Ready(None),
        };
        let Some(data) = frame.data_ref() else {
            return Poll::Ready(Some(Ok(frame)));
        };
        match this.prefixes.read(data, this.limit) {
            Ok(()) => Poll::Ready(Some(Ok(frame))),
            Err(Oversized { len, at }) => {
                let before = data.slice(..at);
                this.refuse(len);
                if before.is_empty() {
                    // Nothing to give first: the refusal now.
                    return self.poll_frame(cx);
                }
                Poll::Ready(Some(Ok(Frame::data(before))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.refusal.is_none() && (self.ended || self.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A message announced over the limit.
#[derive(Debug, PartialEq, Eq)]
struct Oversized {
    /// Its length.
    len: usize,
    /// Where its prefix begins in the bytes read (0 if it began in earlier ones).
    at: usize,
}

/// Where a request body is in its messages: reading a prefix, or passing over a message.
#[derive(Debug, Default)]
struct Prefixes {
    prefix: [u8; PREFIX],
    /// Bytes of the current prefix read so far.
    have: usize,
    /// Bytes of the current message still to pass over.
    skip: usize,
}

impl Prefixes {
    /// Reads `data`, the next bytes of the body; the first message announced over `limit`,
    /// if any.
    fn read(&mut self, data: &[u8], limit: usize) -> Result<(), Oversized> {
        let mut at = 0;
        while at < data.len() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() - at);
                self.skip -= n;
                at += n;
                continue;
            }
            let start = at.saturating_sub(self.have);
            let n = (PREFIX - self.have).min(data.len() - at);
            self.prefix[self.have..self.have + n].copy_from_slice(&data[at..at + n]);
            self.have += n;
            at += n;
            if self.have == PREFIX {
                self.have = 0;
                let [_, a, b, c, d] = self.prefix;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                if len > limit {
                    return Err(Oversized { len, at: start });
                }
                self.skip = len;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, future::poll_fn};

    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        bytes.resize(PREFIX + len, 7);
        bytes
    }

    #[test]
    fn messages_up_to_the_limit_pass() {
        let mut body = message(0);
        body.extend(message(100));
        body.extend(message(16));
        assert_eq!(Prefixes::default().read(&body, 100), Ok(()));
    }

    #[test]
    fn the_first_message_over_the_limit_is_refused_by_its_prefix_alone() {
        let mut body = message(10);
        body.extend(&message(101)[..PREFIX]);
        assert_eq!(Prefixes::default().read(&body, 100), Err(Oversized { len: 101, at: 15 }));
    }

    #[test]
    fn prefixes_and_messages_split_across_chunks_are_followed() {
        let mut body = message(40);
        body.extend(message(100));
        let at = body.len();
        body.extend(message(8 << 20));
        for chunk in [1, 2, 3, 5, 7, 64] {
            let mut prefixes = Prefixes::default();
            let refused = body
                .chunks(chunk)
                .enumerate()
                .find_map(|(n, piece)| prefixes.read(piece, 100).err().map(|o| (n * chunk + o.at, o.len)));
            // Where the prefix began, or the start of the chunk that ends it when it began in
            // an earlier one (whose bytes have gone on already).
            let (found_at, len) = refused.unwrap();
            assert_eq!(len, 8 << 20, "chunks of {chunk}");
            assert!(found_at >= at && found_at - at < PREFIX, "chunks of {chunk}: {found_at}");
        }
    }

    /// A body of the given frames.
    struct Frames(VecDeque<Bytes>);

    impl HttpBody for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
        }
    }

    #[tokio::test]
    async fn the_messages_before_an_oversized_one_in_the_same_frame_are_given_first() {
        let mut frame = message(10);
        frame.extend(message(20));
        let before = frame.len();
        frame.extend(&message(1000)[..100]);
        let request = http::Request::builder()
            .uri("/contactcache.v1.ContactCache/PutContacts")
            .body(Frames(VecDeque::from([Bytes::from(frame)])))
            .unwrap();
        let mut body = limited(request, 100).into_body();
        let mut next = async || poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let first = next().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), before);
        let refusal = next().await.unwrap().unwrap_err().downcast::<Status>().unwrap();
        assert_eq!(refusal.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refusal.message(),
            "the request message is 1000 bytes, over the limit of 100 bytes (store.max_message_bytes)"
        );
        assert!(next().await.is_none(), "the body ends after its refusal");
    }
}
