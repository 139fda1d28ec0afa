//! Talking to the cache: a mutual-TLS channel as the site's `emr` caller, and one
//! `PutContacts` stream whose results are paired with their rows by index.
//!
//! The cache answers every item, in order, and a refused item does not stop the stream
//! (contract `contactcache.v1`). A status that ends the stream early leaves the rest of the
//! rows unanswered: the cache may or may not hold the ones that were in flight.

use std::{collections::VecDeque, time::Duration};

use cache_server::guid::Guid;
use jiff::Timestamp;
use proto::v1::{PutContactRequest, PutContactResult, contact_cache_client::ContactCacheClient};
use tonic::{
    Code, Request, Status, Streaming,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{config::CacheConfig, rows::Row};

/// Pushing failed as a whole (not one item).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// No connection could be made.
    #[error("cannot reach the cache at {url}: {cause}")]
    Unreachable {
        /// The cache's URL.
        url: String,
        /// Why, as the transport tells it.
        cause: String,
    },
    /// The connection broke or the cache stopped the stream before answering every row.
    #[error("the cache stopped answering: {0}")]
    Interrupted(String),
    /// The cache refused this caller: not an `emr` certificate, or one it does not trust.
    #[error("the cache refused this connector's certificate: {0}")]
    NotAllowed(String),
    /// The cache answered something this connector cannot use.
    #[error("the cache's answer is unusable: {0}")]
    Protocol(String),
    /// Any other status that ended the call.
    #[error("the cache failed the call: {0}")]
    Failed(String),
}

impl From<Status> for PushError {
    fn from(status: Status) -> Self {
        let text = format!("{:?}: {}", status.code(), status.message());
        match status.code() {
            Code::Unavailable
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Aborted
            | Code::ResourceExhausted => PushError::Interrupted(text),
            Code::PermissionDenied | Code::Unauthenticated => PushError::NotAllowed(text),
            _ => PushError::Failed(text),
        }
    }
}

/// The error and its sources on one line (the transport's top-level message says little).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Connects to the cache in `config` with this connector's certificate; fails at once if the
/// cache cannot be reached or the TLS handshake fails.
pub async fn connect(config: &CacheConfig) -> Result<ContactCacheClient<Channel>, PushError> {
    let unreachable = |cause: String| PushError::Unreachable { url: config.url.clone(), cause };
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| unreachable(format!("{}: {e}", path.display())))
    };
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&config.ca)?))
        .identity(Identity::from_pem(read(&config.cert)?, read(&config.key)?));
    if !config.server_name.is_empty() {
        tls = tls.domain_name(config.server_name.clone());
    }
    let endpoint = Endpoint::from_shared(config.url.clone())
        .and_then(|e| e.tls_config(tls))
        .map_err(|e| unreachable(causes(&e)))?
        .connect_timeout(Duration::from_secs(config.connect_timeout_seconds))
        // A long stream has no deadline; a dead peer is noticed by keep-alive pings instead.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await.map_err(|e| unreachable(causes(&e)))?;
    Ok(ContactCacheClient::new(channel))
}

/// A row that was sent: where its result belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its line in the CSV.
    pub line: u64,
    /// Its row id.
    pub row_id: String,
}

/// What the cache did with one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored under a new GUID.
    Stored {
        /// The GUID, in UUID text form.
        guid: String,
        /// When the cache forgets it; absent if the cache did not say.
        expires_at: Option<Timestamp>,
    },
    /// Not stored.
    NotStored {
        /// The gRPC code: INVALID_ARGUMENT or PERMISSION_DENIED (another site) for a bad
        /// row, RESOURCE_EXHAUSTED when the cache is full.
        code: Code,
        /// The field at fault, e.g. `contact.site_id`; empty when no single field is.
        field: String,
        /// What is wrong, without the field's name in front.
        message: String,
    },
}

impl Outcome {
    /// Whether the row itself is at fault (pushing it again would fail again), rather than
    /// the cache's state at the moment.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Outcome::NotStored {
                code: Code::InvalidArgument
                    | Code::PermissionDenied
                    | Code::FailedPrecondition
                    | Code::OutOfRange,
                ..
            }
        )
    }
}

/// The results of one `PutContacts` call, paired with their rows.
#[derive(Debug)]
pub struct Results {
    waiting: VecDeque<Sent>,
    next_index: u64,
    stream: Streaming<PutContactResult>,
}

/// Streams `rows` to the cache in one `PutContacts` call.
///
/// The contacts are moved into the request stream and dropped (their phone and email
/// zeroized) as they are sent.
pub async fn put_contacts(
    client: &mut ContactCacheClient<Channel>,
    rows: Vec<Row>,
) -> Result<Results, PushError> {
    let mut waiting = VecDeque::with_capacity(rows.len());
    let mut contacts = Vec::with_capacity(rows.len());
    for Row { line, row_id, contact } in rows {
        waiting.push_back(Sent { line, row_id });
        contacts.push(contact);
    }
    let requests =
        tokio_stream::iter(contacts.into_iter().map(|contact| PutContactRequest { contact: Some(contact) }));
    let stream = client.put_contacts(Request::new(requests)).await?.into_inner();
    Ok(Results { waiting, next_index: 0, stream })
}

impl Results {
    /// The next result with its row; `None` once every row is answered.
    pub async fn next(&mut self) -> Result<Option<(Sent, Outcome)>, PushError> {
        if self.waiting.is_empty() {
            return Ok(None);
        }
        let Some(result) = self.stream.message().await? else {
            return Err(PushError::Interrupted(format!(
                "the stream ended with {} row(s) unanswered",
                self.waiting.len()
            )));
        };
        if result.index != self.next_index {
            return Err(PushError::Protocol(format!(
                "result {} came where result {} was expected",
                result.index, self.next_index
            )));
        }
        let sent =
            self.waiting.pop_front().ok_or_else(|| PushError::Protocol("more results than rows".into()))?;
        self.next_index += 1;
        let outcome = match result.error {
            Some(error) => {
                let prefix = format!("{}: ", error.field);
                let message = match error.message.strip_prefix(&prefix) {
                    Some(rest) if !error.field.is_empty() => rest.to_string(),
                    _ => error.message,
                };
                Outcome::NotStored { code: Code::from(error.code), field: error.field, message }
            }
            None => {
                if result.guid.parse::<Guid>().is_err() {
                    return Err(PushError::Protocol(format!("row {} got no GUID", sent.row_id)));
                }
                let expires_at = result.expires_at.and_then(|t| Timestamp::new(t.seconds, t.nanos).ok());
                Outcome::Stored { guid: result.guid, expires_at }
            }
        };
        Ok(Some((sent, outcome)))
    }

    /// Rows sent that have no result yet.
    pub fn unanswered(&self) -> usize {
        self.waiting.len()
    }
}
