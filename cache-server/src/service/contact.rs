//! GetContact, DeleteContact and OptOut: one contact by GUID.

use proto::encoded::EncodedContact;
use tonic::{Code, Status};

use super::{Authorized, Context};
use crate::{auth::Rpc, error::invalid, guid::Guid, validate::FieldError};

/// Parses the `guid` field of a request.
pub(super) fn parse_guid(text: &str) -> Result<Guid, Status> {
    if text.is_empty() {
        return Err(invalid(&FieldError { field: "guid", message: "is required" }));
    }
    text.parse().map_err(|_| invalid(&FieldError { field: "guid", message: "is not a UUID in text form" }))
}

/// Runs `op` on the GUID of a request: the GUID (if it parsed) and the answer.
pub(super) fn by_guid<T>(
    text: &str,
    op: impl FnOnce(&Guid) -> Result<T, Status>,
) -> (Option<Guid>, Result<T, Status>) {
    match parse_guid(text) {
        Ok(guid) => (Some(guid), op(&guid)),
        Err(status) => (None, Err(status)),
    }
}

/// Audits the `answer` of [`by_guid`] (with `detail`) and counts a NOT_FOUND.
///
/// The audit line is queued before this returns; the future waits for the line's write
/// and then gives the answer.
pub(super) fn answer<'a, T>(
    ctx: &'a Context,
    who: &Authorized,
    rpc: Rpc,
    detail: Option<&str>,
    (guid, result): (Option<Guid>, Result<T, Status>),
) -> impl Future<Output = Result<T, Status>> + use<'a, T> {
    // Fail closed: if this cannot be audited, the answer (a contact, say) is not given.
    let audited = ctx.audit_answer_with(who, rpc, guid.as_ref(), None, detail, &result);
    let not_found = guid.is_some() && matches!(&result, Err(status) if status.code() == Code::NotFound);
    let counted = not_found.then(|| who.clone());
    async move {
        audited.await?;
        if let Some(who) = counted {
            ctx.count_not_found(&who);
        }
        result
    }
}

/// The contact as stored: its encoding, sent without decoding it (see [`EncodedContact`]).
pub(super) fn get<'a>(
    ctx: &'a Context,
    who: &Authorized,
    guid: &str,
) -> impl Future<Output = Result<EncodedContact, Status>> + use<'a> {
    answer(ctx, who, Rpc::GetContact, None, by_guid(guid, |guid| Ok(ctx.store.get_encoded(guid)?)))
}

pub(super) fn delete<'a>(
    ctx: &'a Context,
    who: &Authorized,
    guid: &str,
) -> impl Future<Output = Result<(), Status>> + use<'a> {
    // An EMR connector erases only its own site's contacts; any other GUID is NOT_FOUND to it.
    let site = who.caller.site.as_deref();
    answer(ctx, who, Rpc::DeleteContact, None, by_guid(guid, |guid| Ok(ctx.store.delete(guid, site)?)))
}

pub(super) fn opt_out<'a>(
    ctx: &'a Context,
    who: &Authorized,
    guid: &str,
) -> impl Future<Output = Result<(), Status>> + use<'a> {
    answer(ctx, who, Rpc::OptOut, None, by_guid(guid, |guid| Ok(ctx.store.opt_out(guid)?)))
}
