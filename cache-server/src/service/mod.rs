//! The `contactcache.v1.ContactCache` gRPC service, one file per request family.
//!
//! Every call is authorised first ([`Context::authorize`]: identity from the connection's
//! client certificate, role checked against [`crate::auth::POLICY`], lock-out checked), and
//! every operation and denial is audited. Audit is fail-closed: if the line cannot be
//! written the call answers UNAVAILABLE, a contact just stored is erased again and a contact
//! just read is not returned. (An erasure or opt-out that was done stays done: both are the
//! safe direction.)
//!
//! Handlers log no request content: not contact data, not GUIDs. Each answer is counted
//! in `cache_requests_total{rpc, code}`.

mod contact;
mod put;
mod queue;
mod stats;

use std::{future::ready, net::SocketAddr, pin::Pin, sync::Arc};

use futures_util::future::Either;

use jiff::Timestamp;
use prost::Message;
use proto::{
    encoded::EncodedContact,
    v1::{
        AckRequest, AckResponse, Contact, DeleteContactRequest, DeleteContactResponse, GetContactRequest,
        LeaseDueRequest, LeaseDueResponse, OptOutRequest, OptOutResponse, PutContactRequest,
        PutContactResponse, PutContactResult, StatsRequest, StatsResponse,
        contact_cache_server::ContactCache,
    },
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming, server::UnaryService};
use tracing::{error, warn};

use crate::{
    audit::{Action, Actor, Audit, Event, Undo},
    auth::{Caller, Rpc, allowed},
    denials::{self, Denials},
    guid::Guid,
    memory::Protection,
    store::Store,
    throttle::Throttle,
    tls::Peer,
};

/// What the service knows of the process it runs in.
#[derive(Debug, Clone, Copy)]
pub struct Instance {
    /// Drawn at start-up; a change tells clients the cache restarted empty.
    pub epoch: u64,
    /// When this instance started.
    pub started_at: Timestamp,
    /// Memory protection in force.
    pub protection: Protection,
}

/// Everything a request may touch.
#[derive(Debug)]
pub struct Context {
    /// The contacts.
    pub store: Arc<Store>,
    /// The audit log.
    pub audit: Arc<Audit>,
    /// NOT_FOUND answers per caller, for lock-outs.
    pub lockout: Throttle<Arc<Caller>>,
    /// Calls without an identity, per peer: throttled and audited a few lines per window.
    pub denials: Denials,
    /// This process.
    pub instance: Instance,
    /// The most contacts one LeaseDue may ask for.
    pub max_lease_batch: u32,
}

/// An authorised caller and where it called from.
#[derive(Debug, Clone)]
pub(crate) struct Authorized {
    /// Shared with the connection's [`Peer`]: no copy per call.
    caller: Arc<Caller>,
    addr: Option<SocketAddr>,
}

impl Authorized {
    fn actor(&self) -> Actor<'_> {
        Actor::Caller(&self.caller, self.addr)
    }
}

/// The audit log could not be written: the call is refused.
fn audit_unavailable() -> Status {
    Status::unavailable("the audit log cannot be written; the request was not carried out")
}

/// The audit action of an RPC.
fn action_of(rpc: Rpc) -> Action {
    match rpc {
        Rpc::PutContact | Rpc::PutContacts => Action::ContactPut,
        Rpc::GetContact => Action::ContactGet,
        Rpc::DeleteContact => Action::ContactDelete,
        Rpc::OptOut => Action::OptOut,
        Rpc::Stats => Action::StatsRead,
        Rpc::LeaseDue => Action::OutreachLease,
        Rpc::Ack => Action::OutreachAck,
    }
}

/// The audit event of an answer of `rpc` to `who`.
fn answer_event<'e, T>(
    who: &'e Authorized,
    rpc: Rpc,
    guid: Option<&'e Guid>,
    result: &Result<T, Status>,
) -> Event<'e> {
    let mut event = Event::new(action_of(rpc), code_name(result), who.actor());
    event.rpc = Some(rpc.as_str());
    event.guid = guid;
    event
}

/// The name of an answer's code, as the audit log and the metrics give it: `ok`,
/// `not_found`, `permission_denied`, ...
fn code_name<T>(result: &Result<T, Status>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(status) => match status.code() {
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "not_found",
            Code::ResourceExhausted => "resource_exhausted",
            Code::PermissionDenied => "permission_denied",
            Code::Unauthenticated => "unauthenticated",
            Code::Unavailable => "unavailable",
            Code::OutOfRange => "out_of_range",
            Code::FailedPrecondition => "failed_precondition",
            _ => "internal",
        },
    }
}

impl Context {
    fn record(&self, event: Event<'_>) -> Result<(), Status> {
        self.audit.record(event).map_err(|err| {
            error!(cause = %err, "audit write failed; refusing the request");
            audit_unavailable()
        })
    }

    /// Commits `event` to the audit log (a group commit, see [`Audit::commit`]); an error
    /// means it is not on record. The line is queued now: the future holds only the wait
    /// for its write, which keeps each call's future small.
    fn commit<'a>(
        &'a self,
        event: Event<'_>,
        undo: Option<Undo>,
    ) -> impl Future<Output = Result<(), Status>> + use<'a> {
        self.commit_all(&[event], undo)
    }

    /// [`Context::commit`] for several lines at once: all on record, or none.
    fn commit_all<'a>(
        &'a self,
        events: &[Event<'_>],
        undo: Option<Undo>,
    ) -> impl Future<Output = Result<(), Status>> + use<'a> {
        let committed = self.audit.commit_or_undo(events, undo);
        async move {
            committed.await.map_err(|err| {
                error!(cause = %err, "audit write failed; refusing the request");
                audit_unavailable()
            })
        }
    }

    /// Records `events` with one write; an error means none of them is on record.
    fn record_all(&self, events: &[Event<'_>]) -> Result<(), Status> {
        self.audit.record_all(events).map_err(|err| {
            error!(cause = %err, "audit write failed; refusing the request");
            audit_unavailable()
        })
    }

    /// Identifies the caller of `request` and checks that it may call `rpc` now.
    pub(crate) fn authorize<T>(&self, request: &Request<T>, rpc: Rpc) -> Result<Authorized, Status> {
        let peer = request.extensions().get::<Arc<Peer>>();
        let addr = peer.map(|p| p.addr);
        let caller = match peer.map(|p| &p.identity) {
            Some(Ok(caller)) => caller.clone(),
            identity => {
                let detail = match identity {
                    Some(Err(err)) => err.to_string(),
                    _ => "no tls connection".to_string(),
                };
                metrics::counter!("cache_unauthenticated_calls_total").increment(1);
                let denial = self.denials.deny(addr);
                denials::audit(&self.audit, denial, addr, rpc.as_str(), &detail).map_err(|err| {
                    error!(cause = %err, "audit write failed; refusing the request");
                    audit_unavailable()
                })?;
                return Err(Status::unauthenticated(
                    "a client certificate naming a contactcache role is required",
                ));
            }
        };
        let who = Authorized { caller, addr };
        if !allowed(who.caller.role, rpc) {
            let mut event = Event::new(Action::PermissionDenied, "permission_denied", who.actor());
            event.rpc = Some(rpc.as_str());
            self.record(event)?;
            return Err(Status::permission_denied(format!(
                "role {} may not call {}",
                who.caller.role,
                rpc.as_str()
            )));
        }
        if self.lockout.is_blocked(&who.caller) {
            let mut event = Event::new(action_of(rpc), "resource_exhausted", who.actor());
            event.rpc = Some(rpc.as_str());
            event.detail = Some("caller throttled");
            self.record(event)?;
            return Err(Status::resource_exhausted("too many requests for unknown GUIDs; try again later"));
        }
        Ok(who)
    }

    /// Audits the answer of one operation. An error means the answer must not be given;
    /// `undo` runs if the line cannot be written, even if the call is dropped meanwhile.
    pub(crate) fn audit_answer<'a, T>(
        &'a self,
        who: &Authorized,
        rpc: Rpc,
        guid: Option<&Guid>,
        result: &Result<T, Status>,
        undo: Option<Undo>,
    ) -> impl Future<Output = Result<(), Status>> + use<'a, T> {
        self.commit(answer_event(who, rpc, guid, result), undo)
    }

    /// [`Context::audit_answer`] with a count and a short fixed detail.
    pub(crate) fn audit_answer_with<'a, T>(
        &'a self,
        who: &Authorized,
        rpc: Rpc,
        guid: Option<&Guid>,
        count: Option<u64>,
        detail: Option<&str>,
        result: &Result<T, Status>,
    ) -> impl Future<Output = Result<(), Status>> + use<'a, T> {
        let mut event = answer_event(who, rpc, guid, result);
        event.count = count;
        event.detail = detail;
        self.commit(event, None)
    }

    /// Audits a lease: one line with how many contacts were leased, then one line per leased
    /// GUID (its HMAC), so that what a worker read can be traced. All on record, or none.
    pub(crate) fn audit_lease<'a, T>(
        &'a self,
        who: &Authorized,
        guids: &[&Guid],
        result: &Result<T, Status>,
    ) -> impl Future<Output = Result<(), Status>> + use<'a, T> {
        let mut summary = answer_event(who, Rpc::LeaseDue, None, result);
        summary.count = Some(guids.len() as u64);
        let mut events = vec![summary];
        events.extend(guids.iter().map(|&guid| answer_event(who, Rpc::LeaseDue, Some(guid), result)));
        self.commit_all(&events, None)
    }

    /// Counts a NOT_FOUND against the caller; audits the start of a lock-out.
    pub(crate) fn count_not_found(&self, who: &Authorized) {
        if self.lockout.record_failure(&who.caller) {
            warn!(caller = %who.caller.name, role = %who.caller.role, "too many unknown GUIDs: caller throttled");
            let event = Event::new(Action::CallerThrottled, "resource_exhausted", who.actor());
            if let Err(err) = self.audit.record(event) {
                error!(cause = %err, "cannot audit a caller lock-out");
            }
        }
    }
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct CacheService {
    ctx: Arc<Context>,
}

impl CacheService {
    /// A service over `ctx`.
    pub fn new(ctx: Arc<Context>) -> Self {
        CacheService { ctx }
    }
}

/// Counts one answer of `rpc`.
pub(crate) fn observe<T>(rpc: Rpc, result: &Result<T, Status>) {
    metrics::counter!("cache_requests_total", "rpc" => rpc.as_str(), "code" => code_name(result))
        .increment(1);
}

fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.as_second(), nanos: t.subsec_nanosecond() }
}

/// GetContact: the contact's encoding as stored, sent as it is.
async fn get_contact(
    ctx: &Context,
    request: Request<GetContactRequest>,
) -> Result<Response<EncodedContact>, Status> {
    let answer = match ctx.authorize(&request, Rpc::GetContact) {
        Ok(who) => Either::Left(contact::get(ctx, &who, &request.into_inner().guid)),
        Err(status) => Either::Right(ready(Err(status))),
    };
    let result = answer.await.map(Response::new);
    observe(Rpc::GetContact, &result);
    result
}

/// GetContact as the daemon serves it (see `serve.rs`): the opened contact is the answer's
/// wire form, so it is sent without being decoded into a [`Contact`] (a `String` per field)
/// and encoded again, and it is wiped when sent. The generated server's `get_contact` gives
/// the same answer, decoded.
#[derive(Debug, Clone)]
pub struct GetContactEncoded {
    ctx: Arc<Context>,
}

impl GetContactEncoded {
    /// GetContact over `ctx`.
    pub fn new(ctx: Arc<Context>) -> Self {
        GetContactEncoded { ctx }
    }
}

impl UnaryService<GetContactRequest> for GetContactEncoded {
    type Response = EncodedContact;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EncodedContact>, Status>> + Send>>;

    fn call(&mut self, request: Request<GetContactRequest>) -> Self::Future {
        let ctx = self.ctx.clone();
        Box::pin(async move { get_contact(&ctx, request).await })
    }
}

#[tonic::async_trait]
impl ContactCache for CacheService {
    async fn put_contact(
        &self,
        request: Request<PutContactRequest>,
    ) -> Result<Response<PutContactResponse>, Status> {
        let answer = match self.ctx.authorize(&request, Rpc::PutContact) {
            Ok(who) => Either::Left(put::one(&self.ctx, &who, Rpc::PutContact, request.into_inner())),
            Err(status) => Either::Right(ready(Err(status))),
        };
        let result = answer.await.map(Response::new);
        observe(Rpc::PutContact, &result);
        result
    }

    type PutContactsStream = ReceiverStream<Result<PutContactResult, Status>>;

    async fn put_contacts(
        &self,
        request: Request<Streaming<PutContactRequest>>,
    ) -> Result<Response<Self::PutContactsStream>, Status> {
        let who = self.ctx.authorize(&request, Rpc::PutContacts).inspect_err(|status| {
            observe::<()>(Rpc::PutContacts, &Err(status.clone()));
        })?;
        Ok(Response::new(put::stream(self.ctx.clone(), who, request.into_inner())))
    }

    /// Not the daemon's route (that is [`GetContactEncoded`]); the same call, decoded.
    async fn get_contact(&self, request: Request<GetContactRequest>) -> Result<Response<Contact>, Status> {
        let contact = get_contact(&self.ctx, request).await?.into_inner();
        let contact = Contact::decode(contact.as_bytes())
            .map_err(|_| Status::internal("a stored contact did not decode"))?;
        Ok(Response::new(contact))
    }

    async fn delete_contact(
        &self,
        request: Request<DeleteContactRequest>,
    ) -> Result<Response<DeleteContactResponse>, Status> {
        let answer = match self.ctx.authorize(&request, Rpc::DeleteContact) {
            Ok(who) => Either::Left(contact::delete(&self.ctx, &who, &request.into_inner().guid)),
            Err(status) => Either::Right(ready(Err(status))),
        };
        let result = answer.await.map(|()| Response::new(DeleteContactResponse {}));
        observe(Rpc::DeleteContact, &result);
        result
    }

    async fn opt_out(&self, request: Request<OptOutRequest>) -> Result<Response<OptOutResponse>, Status> {
        let answer = match self.ctx.authorize(&request, Rpc::OptOut) {
            Ok(who) => Either::Left(contact::opt_out(&self.ctx, &who, &request.into_inner().guid)),
            Err(status) => Either::Right(ready(Err(status))),
        };
        let result = answer.await.map(|()| Response::new(OptOutResponse {}));
        observe(Rpc::OptOut, &result);
        result
    }

    async fn lease_due(
        &self,
        request: Request<LeaseDueRequest>,
    ) -> Result<Response<LeaseDueResponse>, Status> {
        let result = match self.ctx.authorize(&request, Rpc::LeaseDue) {
            Ok(who) => queue::lease_due(&self.ctx, &who, request.into_inner()).await,
            Err(status) => Err(status),
        }
        .map(Response::new);
        observe(Rpc::LeaseDue, &result);
        result
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let result = match self.ctx.authorize(&request, Rpc::Ack) {
            Ok(who) => queue::ack(&self.ctx, &who, request.into_inner()).await,
            Err(status) => Err(status),
        }
        .map(|()| Response::new(AckResponse {}));
        observe(Rpc::Ack, &result);
        result
    }

    async fn stats(&self, request: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let result = match self.ctx.authorize(&request, Rpc::Stats) {
            Ok(who) => {
                let answer = Ok(stats::response(&self.ctx.store, &self.ctx.instance));
                match self.ctx.audit_answer(&who, Rpc::Stats, None, &answer, None).await {
                    Ok(()) => answer,
                    Err(status) => Err(status),
                }
            }
            Err(status) => Err(status),
        };
        let result = result.map(Response::new);
        observe(Rpc::Stats, &result);
        result
    }
}
