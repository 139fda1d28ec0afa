//! LeaseDue and Ack: the outreach worker's queue (the state machine is in
//! [`crate::store::Store::lease_due`] and [`crate::store::Store::ack`]).

use proto::v1::{AckOutcome, AckRequest, DueContact, LeaseDueRequest, LeaseDueResponse};
use tonic::Status;

use super::{
    Authorized, Context,
    contact::{answer, by_guid},
    timestamp,
};
use crate::{
    auth::Rpc,
    error::invalid,
    guid::Guid,
    store::{Due, DueKind, Fence, Outcome},
    validate::{self, FieldError},
};

/// The longest lease a worker may take, in seconds.
pub const MAX_LEASE_SECONDS: u32 = 3600;

fn bad(field: &'static str, message: &'static str) -> Status {
    invalid(&FieldError { field, message })
}

/// Leases due contacts to the caller and audits how many, and which (by GUID HMAC).
///
/// Fail-closed: if the lease cannot be audited, no contact is handed out and the leases
/// just taken are given back, so the contacts are due again at once.
pub(super) async fn lease_due(
    ctx: &Context,
    who: &Authorized,
    request: LeaseDueRequest,
) -> Result<LeaseDueResponse, Status> {
    let result =
        check_lease(ctx, &request).map(|()| ctx.store.lease_due(request.max as usize, request.lease_seconds));
    let guids: Vec<&Guid> =
        result.as_ref().map(|due| due.iter().map(|d| &d.guid).collect()).unwrap_or_default();
    let audited = ctx.audit_lease(who, &guids, &result);
    drop(guids);
    if let Err(status) = audited.await {
        if let Ok(due) = &result {
            ctx.store.give_back(due);
        }
        return Err(status);
    }
    let due = result?;
    for d in &due {
        metrics::counter!("cache_outreach_leased_total", "kind" => kind_name(d.kind)).increment(1);
    }
    Ok(LeaseDueResponse { contacts: due.into_iter().map(wire).collect() })
}

fn check_lease(ctx: &Context, request: &LeaseDueRequest) -> Result<(), Status> {
    if request.max == 0 || request.max > ctx.max_lease_batch {
        return Err(bad("max", "must be from 1 to the server's store.max_lease_batch (500 by default)"));
    }
    if request.lease_seconds == 0 || request.lease_seconds > MAX_LEASE_SECONDS {
        return Err(bad("lease_seconds", "must be from 1 to 3600"));
    }
    Ok(())
}

fn kind_name(kind: DueKind) -> &'static str {
    match kind {
        DueKind::Invite => "invite",
        DueKind::Suppress => "suppress",
    }
}

fn wire(due: Due) -> DueContact {
    let kind = match due.kind {
        DueKind::Invite => proto::v1::DueKind::Invite,
        DueKind::Suppress => proto::v1::DueKind::Suppress,
    };
    DueContact {
        guid: due.guid.to_string(),
        contact: Some(due.contact),
        kind: kind as i32,
        lease_expires_at: Some(timestamp(due.lease_expires_at)),
        attempt: due.attempt,
        sent_before: due.sent_before,
    }
}

/// Records the outcome of one lease; audits it with the GUID (as its HMAC) and the outcome.
pub(super) async fn ack(ctx: &Context, who: &Authorized, request: AckRequest) -> Result<(), Status> {
    let outcome = match AckOutcome::try_from(request.outcome) {
        Ok(AckOutcome::Sent) => Some(Outcome::Sent),
        Ok(AckOutcome::RetryAt) => Some(Outcome::RetryAt),
        Ok(AckOutcome::FailedPermanent) => Some(Outcome::FailedPermanent),
        Ok(AckOutcome::Suppressed) => Some(Outcome::Suppressed),
        Ok(AckOutcome::Skipped) => Some(Outcome::Skipped),
        Ok(AckOutcome::Unspecified) | Err(_) => None,
    };
    let detail = outcome.map(Outcome::as_str);
    let answered = by_guid(&request.guid, |guid| {
        let outcome = outcome.ok_or_else(|| {
            bad(
                "outcome",
                "must be ACK_OUTCOME_SENT, ACK_OUTCOME_RETRY_AT, ACK_OUTCOME_FAILED_PERMANENT, \
                 ACK_OUTCOME_SUPPRESSED or ACK_OUTCOME_SKIPPED",
            )
        })?;
        let retry_at = request
            .retry_at
            .as_ref()
            .map(|at| validate::timestamp("retry_at", at))
            .transpose()
            .map_err(|e| invalid(&e))?;
        match (outcome, retry_at) {
            (Outcome::RetryAt, None) => return Err(bad("retry_at", "is required with ACK_OUTCOME_RETRY_AT")),
            (Outcome::FailedPermanent | Outcome::Suppressed | Outcome::Skipped, Some(_)) => {
                return Err(bad("retry_at", "is only for ACK_OUTCOME_SENT and ACK_OUTCOME_RETRY_AT"));
            }
            _ => {}
        }
        let fence = (request.attempt != 0)
            .then_some(Fence { attempt: request.attempt, sent_before: request.sent_before });
        ctx.store.ack(guid, fence, outcome, retry_at)?;
        metrics::counter!("cache_outreach_acks_total", "outcome" => outcome.as_str()).increment(1);
        Ok(())
    });
    answer(ctx, who, Rpc::Ack, detail, answered).await
}
