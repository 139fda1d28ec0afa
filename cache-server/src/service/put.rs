//! PutContact and PutContacts: storing contacts.

use std::sync::Arc;

use proto::v1::{ItemError, PutContactRequest, PutContactResponse, PutContactResult};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};

use futures_util::FutureExt;

use super::{Authorized, Context, action_of, code_name, observe, timestamp};
use crate::{
    audit::{Event, Undo},
    auth::Rpc,
    error::invalid,
    validate::FieldError,
};

/// Results a slow reader may leave unread before the stream stops taking items.
const STREAM_BUFFER: usize = 128;

/// Checks, stores and audits the contact of one request.
///
/// The contact is stored and its audit line queued before this returns; the future only
/// waits for the line's write (so it holds neither the request nor the caller).
pub(super) fn one<'a>(
    ctx: &'a Context,
    who: &Authorized,
    rpc: Rpc,
    request: PutContactRequest,
) -> impl Future<Output = Result<PutContactResponse, Status>> + use<'a> {
    let result = store(ctx, who, request);
    let guid = result.as_ref().ok().map(|(guid, _)| *guid);
    // Fail closed: what cannot be audited is not kept, even if the call is cancelled while
    // its line is being written (the writer then erases it).
    let undo = guid.map(|guid| {
        let store = ctx.store.clone();
        Box::new(move || {
            let _ = store.delete(&guid, None);
        }) as Undo
    });
    let audited = ctx.audit_answer(who, rpc, guid.as_ref(), &result, undo);
    async move {
        if let Err(status) = audited.await {
            // A failed write has already run the undo; this erase is for a line that could
            // not even be made (then no undo was handed over). Erasing twice is harmless.
            if let Some(guid) = guid {
                let _ = ctx.store.delete(&guid, None);
            }
            return Err(status);
        }
        result.map(|(guid, expires_at)| PutContactResponse {
            guid: guid.to_string(),
            expires_at: Some(expires_at),
        })
    }
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

/// Most items stored and audited together: the audit lines of a batch go out in one write.
const BATCH: usize = 64;

/// Stores each request of `inbound` in turn and answers each, in order.
///
/// A refused item gets an error result and the stream goes on. A request that cannot be
/// decoded at all (too large, malformed), or an audit failure, ends the stream with its
/// status, after the results of the items before it.
///
/// Items are taken in batches: one awaited, then those already received, up to [`BATCH`].
/// Their audit lines are written together, before any of their results is sent; if that
/// write fails, the batch's contacts are erased again and the stream ends UNAVAILABLE.
pub(super) fn stream(
    ctx: Arc<Context>,
    who: Authorized,
    mut inbound: Streaming<PutContactRequest>,
) -> ReceiverStream<Result<PutContactResult, Status>> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut index = 0u64;
        let mut requests = Vec::with_capacity(BATCH);
        loop {
            // None: more may come; Some(Ok): the caller closed its side; Some(Err): it broke.
            let mut end: Option<Result<(), Status>> = None;
            match inbound.message().await {
                Ok(Some(request)) => requests.push(request),
                Ok(None) => end = Some(Ok(())),
                Err(status) => end = Some(Err(status)),
            }
            while end.is_none() && requests.len() < BATCH {
                // Only what has already arrived: polled once, never awaited.
                match inbound.message().now_or_never() {
                    None => break,
                    Some(Ok(Some(request))) => requests.push(request),
                    Some(Ok(None)) => end = Some(Ok(())),
                    Some(Err(status)) => end = Some(Err(status)),
                }
            }
            let answered = batch(&ctx, &who, index, requests.drain(..));
            let (results, failed) = match answered {
                Ok(results) => (results, None),
                Err(status) => (Vec::new(), Some(status)),
            };
            for result in results {
                if tx.send(Ok(result)).await.is_err() {
                    return;
                }
                index += 1;
            }
            let stop = match (failed, end) {
                (Some(status), _) | (None, Some(Err(status))) => {
                    observe::<()>(Rpc::PutContacts, &Err(status.clone()));
                    let _ = tx.send(Err(status)).await;
                    true
                }
                (None, Some(Ok(()))) => true,
                (None, None) => false,
            };
            if stop {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Stores the items of one batch, audits them with one write, and gives their results (the
/// first numbered `first`). An error means the audit failed and nothing of the batch is kept.
fn batch(
    ctx: &Context,
    who: &Authorized,
    first: u64,
    requests: impl Iterator<Item = PutContactRequest>,
) -> Result<Vec<PutContactResult>, Status> {
    let outcomes: Vec<_> = requests.map(|request| store(ctx, who, request)).collect();
    let rpc = Rpc::PutContacts;
    let events: Vec<Event<'_>> = outcomes
        .iter()
        .map(|outcome| {
            let mut event = Event::new(action_of(rpc), code_name(outcome), who.actor());
            event.rpc = Some(rpc.as_str());
            event.guid = outcome.as_ref().ok().map(|(guid, _)| guid);
            event
        })
        .collect();
    if let Err(status) = ctx.record_all(&events) {
        // Fail closed: what cannot be audited is not kept.
        for (guid, _) in outcomes.iter().flatten() {
            let _ = ctx.store.delete(guid, None);
        }
        return Err(status);
    }
    Ok(outcomes
        .into_iter()
        .zip(first..)
        .map(|(outcome, index)| {
            let result = outcome.map(|(guid, expires_at)| PutContactResponse {
                guid: guid.to_string(),
                expires_at: Some(expires_at),
            });
            observe(rpc, &result);
            item_result(index, result)
        })
        .collect())
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
