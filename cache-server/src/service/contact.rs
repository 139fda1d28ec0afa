//! GetContact, DeleteContact and OptOut: one contact by GUID.

use proto::v1::Contact;
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

/// Runs `op` on the GUID of a request, audits the answer (with `detail`), and counts a
/// NOT_FOUND.
pub(super) async fn by_guid<T>(
    ctx: &Context,
    who: &Authorized,
    rpc: Rpc,
    text: &str,
    detail: Option<&str>,
    op: impl FnOnce(&Guid) -> Result<T, Status>,
) -> Result<T, Status> {
    let guid = match parse_guid(text) {
        Ok(guid) => guid,
        Err(status) => {
            let refused: Result<T, Status> = Err(status);
            ctx.audit_answer_with(who, rpc, None, None, detail, &refused).await?;
            return refused;
        }
    };
    let result = op(&guid);
    // Fail closed: if this cannot be audited, the answer (a contact, say) is not given.
    ctx.audit_answer_with(who, rpc, Some(&guid), None, detail, &result).await?;
    if matches!(&result, Err(status) if status.code() == Code::NotFound) {
        ctx.count_not_found(who);
    }
    result
}

pub(super) async fn get(ctx: &Context, who: &Authorized, guid: &str) -> Result<Contact, Status> {
    by_guid(ctx, who, Rpc::GetContact, guid, None, |guid| Ok(ctx.store.get(guid)?)).await
}

pub(super) async fn delete(ctx: &Context, who: &Authorized, guid: &str) -> Result<(), Status> {
    // An EMR connector erases only its own site's contacts; any other GUID is NOT_FOUND to it.
    let site = who.caller.site.as_deref();
    by_guid(ctx, who, Rpc::DeleteContact, guid, None, |guid| Ok(ctx.store.delete(guid, site)?)).await
}

pub(super) async fn opt_out(ctx: &Context, who: &Authorized, guid: &str) -> Result<(), Status> {
    by_guid(ctx, who, Rpc::OptOut, guid, None, |guid| Ok(ctx.store.opt_out(guid)?)).await
}
