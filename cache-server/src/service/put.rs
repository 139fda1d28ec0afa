//! PutContact and PutContacts: storing contacts.

use std::sync::Arc;

use proto::v1::{ItemError, PutContactRequest, PutContactResponse, PutContactResult};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};

use super::{Authorized, Context, observe, timestamp};
use crate::{auth::Rpc, error::invalid, validate::FieldError};

/// Results a slow reader may leave unread before the stream stops taking items.
const STREAM_BUFFER: usize = 128;

/// Checks, stores and audits the contact of one request.
pub(super) fn one(
    ctx: &Context,
    who: &Authorized,
    rpc: Rpc,
    request: PutContactRequest,
) -> Result<PutContactResponse, Status> {
    let result = store(ctx, who, request);
    let guid = result.as_ref().ok().map(|(guid, _)| *guid);
    if let Err(status) = ctx.audit_answer(who, rpc, guid.as_ref(), &result) {
        // Fail closed: what cannot be audited is not kept.
        if let Some(guid) = guid {
            let _ = ctx.store.delete(&guid, None);
        }
        return Err(status);
    }
    result
        .map(|(guid, expires_at)| PutContactResponse { guid: guid.to_string(), expires_at: Some(expires_at) })
}

fn store(
    ctx: &Context,
    who: &Authorized,
    request: PutContactRequest,
) -> Result<(crate::guid::Guid, prost_types::Timestamp), Status> {
    let contact =
        request.contact.ok_or_else(|| invalid(&FieldError { field: "contact", message: "is required" }))?;
    // A malformed site is a bad argument; a well-formed other site is not this caller's.
    crate::validate::id("contact.site_id", &contact.site_id).map_err(|e| invalid(&e))?;
    if let Some(site) = &who.caller.site
        && contact.site_id != *site
    {
        return Err(Status::with_error_details(
            Code::PermissionDenied,
            "contact.site_id: is not the caller's site",
            ErrorDetails::with_bad_request_violation("contact.site_id", "is not the caller's site"),
        ));
    }
    let stored = ctx.store.put(contact)?;
    Ok((stored.guid, timestamp(stored.expires_at)))
}

/// Stores each request of `inbound` in turn and answers each, in order.
///
/// A refused item gets an error result and the stream goes on. A request that cannot be
/// decoded at all (too large, malformed), or an audit failure, ends the stream with its
/// status, after the results of the items before it.
pub(super) fn stream(
    ctx: Arc<Context>,
    who: Authorized,
    mut inbound: Streaming<PutContactRequest>,
) -> ReceiverStream<Result<PutContactResult, Status>> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut index = 0u64;
        loop {
            let next = match inbound.message().await {
                Ok(Some(request)) => {
                    let result = one(&ctx, &who, Rpc::PutContacts, request);
                    observe(Rpc::PutContacts, &result);
                    match result {
                        Err(status) if status.code() == Code::Unavailable => Err(status),
                        result => Ok(item_result(index, result)),
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    observe::<()>(Rpc::PutContacts, &Err(status.clone()));
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
