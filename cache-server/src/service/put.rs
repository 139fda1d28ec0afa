//! PutContact and PutContacts: storing contacts.

use std::sync::Arc;

use proto::v1::{ItemError, PutContactRequest, PutContactResponse, PutContactResult};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tonic_types::StatusExt;

use super::{observe, timestamp};
use crate::{error::invalid, store::Store, validate::FieldError};

/// Results a slow reader may leave unread before the stream stops taking items.
const STREAM_BUFFER: usize = 128;

/// Stores the contact of one request.
pub(super) fn one(store: &Store, request: PutContactRequest) -> Result<PutContactResponse, Status> {
    let contact =
        request.contact.ok_or_else(|| invalid(&FieldError { field: "contact", message: "is required" }))?;
    let stored = store.put(contact)?;
    Ok(PutContactResponse { guid: stored.guid.to_string(), expires_at: Some(timestamp(stored.expires_at)) })
}

/// Stores each request of `inbound` in turn and answers each, in order.
///
/// A refused item gets an error result and the stream goes on. A request that cannot be
/// decoded at all (too large, malformed) ends the stream with its status, after the results
/// of the items before it.
pub(super) fn stream(
    store: Arc<Store>,
    mut inbound: Streaming<PutContactRequest>,
) -> ReceiverStream<Result<PutContactResult, Status>> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut index = 0u64;
        loop {
            let next = match inbound.message().await {
                Ok(Some(request)) => {
                    let result = one(&store, request);
                    observe("PutContacts", &result);
                    Ok(item_result(index, result))
                }
                Ok(None) => break,
                Err(status) => {
                    observe::<()>("PutContacts", &Err(status.clone()));
                    Err(status)
                }
            };
            let stop = next.is_err();
            if tx.send(next).await.is_err() || stop {
                break;
            }
            index += 1;
        }
    });
    ReceiverStream::new(rx)
}

fn item_result(index: u64, result: Result<PutContactResponse, Status>) -> PutContactResult {
    match result {
        Ok(stored) => {
            PutContactResult { index, guid: stored.guid, expires_at: stored.expires_at, error: None }
        }
        Err(status) => {
            let field = status
                .get_details_bad_request()
                .and_then(|bad| bad.field_violations.into_iter().next())
                .map(|v| v.field)
                .unwrap_or_default();
            PutContactResult {
                index,
                guid: String::new(),
                expires_at: None,
                error: Some(ItemError {
                    code: status.code() as i32,
                    field,
                    message: status.message().to_string(),
                }),
            }
        }
    }
}
