//! The invitation ledger over gRPC: `surveybridge.v1.InvitationLedger`, for the outreach
//! worker only (client certificate `spiffe://contactcache/outreach`). `RecordInvitation`
//! records an invitation before it is sent; `InvitationAnswered` tells whether a reminder
//! would be pointless; `PendingOptOuts` and `ConfirmOptOuts` hand the worker the GUIDs of
//! opt-outs, so that it can suppress a contact the cache has already erased.

use std::{net::SocketAddr, sync::Arc};

use cache_server::{
    audit::{Actor, Audit, Event},
    auth::{Caller, Role},
    clock::Clock,
    denials::{self, Denials},
    guid::Guid,
    tls::Peer,
    validate::{self, FieldError},
};
use jiff::{SignedDuration, Timestamp};
use proto::ledger::{
    ConfirmOptOutsRequest, ConfirmOptOutsResponse, InvitationAnsweredRequest, InvitationAnsweredResponse,
    InvitationChannel, PendingOptOutsRequest, PendingOptOutsResponse, RecordInvitationRequest,
    RecordInvitationResponse, invitation_ledger_server::InvitationLedger,
};
use tonic::{Request, Response, Status};
use tracing::error;

use crate::{
    db::{Db, DbError, Invitation},
    keys::Keys,
};

/// The ledger service.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// The database.
    pub db: Db,
    /// Key for GUID HMACs.
    pub keys: Arc<Keys>,
    /// The audit trail.
    pub audit: Arc<Audit>,
    /// Time.
    pub clock: Clock,
    /// Days a link works.
    pub link_valid_days: u32,
    /// Calls without a certificate, per peer: throttled with failed handshakes and audited
    /// a few lines per window.
    pub denials: Arc<Denials>,
}

/// The most GUIDs one `PendingOptOuts` or `ConfirmOptOuts` call carries.
pub const MAX_OPT_OUTS: u32 = 500;

fn invalid(field: &'static str, message: &'static str) -> Status {
    cache_server::error::invalid(&FieldError { field, message })
}

/// The month (`YYYY-MM`, UTC) that `t` falls in.
pub fn month_of(t: Timestamp) -> String {
    t.to_string().get(..7).unwrap_or("0000-00").to_string()
}

impl Ledger {
    fn audit(&self, event: Event<'_>) -> Result<(), Status> {
        self.audit.record(event).map_err(|err| {
            error!(cause = %err, "audit write failed; refusing the request");
            Status::unavailable("the audit log cannot be written; the request was not carried out")
        })
    }

    /// The caller of `rpc`, if it is the outreach worker; otherwise the refusal, audited as
    /// `PERMISSION_DENIED` (another role) or `AUTH_FAILED` (no usable client certificate).
    fn outreach_caller<T>(
        &self,
        request: &Request<T>,
        rpc: &'static str,
    ) -> Result<(Caller, Option<SocketAddr>), Status> {
        let peer = request.extensions().get::<Arc<Peer>>();
        let addr = peer.map(|p| p.addr);
        match peer.map(|p| &p.identity) {
            Some(Ok(caller)) if caller.role == Role::Outreach => Ok((Caller::clone(caller), addr)),
            Some(Ok(caller)) => {
                let mut event =
                    Event::new("PERMISSION_DENIED", "permission_denied", Actor::Caller(caller, addr));
                event.rpc = Some(rpc);
                self.audit(event)?;
                Err(Status::permission_denied(format!("role {} may not call {rpc}", caller.role)))
            }
            identity => {
                let detail = match identity {
                    Some(Err(err)) => err.to_string(),
                    _ => "no tls connection".to_string(),
                };
                metrics::counter!("bridge_unauthenticated_calls_total").increment(1);
                let denial = self.denials.deny(addr);
                denials::audit(&self.audit, denial, addr, rpc, &detail).map_err(|err| {
                    error!(cause = %err, "audit write failed; refusing the request");
                    Status::unavailable("the audit log cannot be written; the request was not carried out")
                })?;
                Err(Status::unauthenticated("a client certificate naming the outreach role is required"))
            }
        }
    }

    fn invitation(&self, request: &RecordInvitationRequest) -> Result<(Guid, Invitation), Status> {
        let guid: Guid = request.guid.parse().map_err(|_| invalid("guid", "is not a UUID in text form"))?;
        let field =
            |e: FieldError| cache_server::error::invalid(&FieldError { field: e.field, message: e.message });
        validate::id("site_id", &request.site_id).map_err(field)?;
        validate::id("provider_id", &request.provider_id).map_err(field)?;
        validate::id("campaign_id", &request.campaign_id).map_err(field)?;
        let channel = match InvitationChannel::try_from(request.channel) {
            Ok(InvitationChannel::Sms) => "sms",
            Ok(InvitationChannel::Email) => "email",
            _ => {
                return Err(invalid("channel", "must be INVITATION_CHANNEL_SMS or INVITATION_CHANNEL_EMAIL"));
            }
        };
        if !matches!(request.language.as_str(), "en" | "fr") {
            return Err(invalid("language", "must be \"en\" or \"fr\""));
        }
        let sent_at = request
            .sent_at
            .as_ref()
            .filter(|t| (0..1_000_000_000).contains(&t.nanos))
            .and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
            .ok_or(invalid("sent_at", "is required and must be a valid timestamp"))?;
        let expires_at = sent_at
            .checked_add(SignedDuration::from_hours(24 * i64::from(self.link_valid_days)))
            .map_err(|_| invalid("sent_at", "is out of range"))?;
        // An invitation recorded long after it was sent would land in a month whose figures
        // are released (and must not change) or a link already expired (and maybe retired,
        // so its GUID would be counted a second time).
        let now = self.clock.now();
        if expires_at <= now {
            return Err(invalid("sent_at", "is so long ago that the link has expired (link_valid_days)"));
        }
        if crate::periods::month_released(&month_of(sent_at), now, self.db.settle_days()) {
            return Err(invalid(
                "sent_at",
                "falls in a month already released to the reports (reports.settle_days)",
            ));
        }
        let inv = Invitation {
            guid_hmac: self.keys.guid_hmac(&guid),
            site_id: request.site_id.clone(),
            provider_id: request.provider_id.clone(),
            campaign_id: request.campaign_id.clone(),
            channel: channel.into(),
            language: request.language.clone(),
            month: month_of(sent_at),
            expires_at: expires_at.as_second(),
        };
        Ok((guid, inv))
    }
}

#[tonic::async_trait]
impl InvitationLedger for Ledger {
    async fn record_invitation(
        &self,
        request: Request<RecordInvitationRequest>,
    ) -> Result<Response<RecordInvitationResponse>, Status> {
        let (caller, addr) = self.outreach_caller(&request, "RecordInvitation")?;
        let actor = Actor::Caller(&caller, addr);
        let (guid, inv) = match self.invitation(request.get_ref()) {
            Ok(parsed) => parsed,
            Err(status) => {
                self.audit(Event::new("INVITATION_RECORDED", "invalid_argument", actor))?;
                return Err(status);
            }
        };
        let result = self.db.record_invitation(&inv).await;
        let (outcome, answer) = match result {
            Ok(created) => (
                "ok",
                Ok(RecordInvitationResponse {
                    created,
                    expires_at: Some(prost_types::Timestamp { seconds: inv.expires_at, nanos: 0 }),
                }),
            ),
            Err(DbError::Conflict) => {
                ("already_exists", Err(Status::already_exists("this guid was recorded with other details")))
            }
            Err(err) => {
                error!(cause = %err, "ledger write failed");
                ("internal", Err(Status::internal("internal error")))
            }
        };
        let mut event = Event::new("INVITATION_RECORDED", outcome, actor);
        event.guid = Some(&guid);
        self.audit(event)?;
        answer.map(Response::new)
    }

    async fn invitation_answered(
        &self,
        request: Request<InvitationAnsweredRequest>,
    ) -> Result<Response<InvitationAnsweredResponse>, Status> {
        let (caller, addr) = self.outreach_caller(&request, "InvitationAnswered")?;
        let actor = Actor::Caller(&caller, addr);
        let Ok(guid) = request.get_ref().guid.parse::<Guid>() else {
            self.audit(Event::new("INVITATION_ANSWERED_CHECKED", "invalid_argument", actor))?;
            return Err(invalid("guid", "is not a UUID in text form"));
        };
        let result = self.db.invitation_answered(&self.keys.guid_hmac(&guid), self.clock.now()).await;
        let (outcome, answer) = match result {
            Ok(Some(answered)) => ("ok", Ok(InvitationAnsweredResponse { answered })),
            Ok(None) => ("not_found", Err(Status::not_found("no unexpired invitation has this guid"))),
            Err(err) => {
                error!(cause = %err, "ledger read failed");
                ("internal", Err(Status::internal("internal error")))
            }
        };
        let mut event = Event::new("INVITATION_ANSWERED_CHECKED", outcome, actor);
        event.guid = Some(&guid);
        self.audit(event)?;
        answer.map(Response::new)
    }

    async fn pending_opt_outs(
        &self,
        request: Request<PendingOptOutsRequest>,
    ) -> Result<Response<PendingOptOutsResponse>, Status> {
        let (caller, addr) = self.outreach_caller(&request, "PendingOptOuts")?;
        let actor = Actor::Caller(&caller, addr);
        let max = request.get_ref().max;
        if !(1..=MAX_OPT_OUTS).contains(&max) {
            self.audit(Event::new("WORKER_OPT_OUTS_READ", "invalid_argument", actor))?;
            return Err(invalid("max", "must be from 1 to 500"));
        }
        // Those the worker could no longer use go first: a cheap DELETE on an index.
        let forgotten = self.db.forget_worker_opt_outs(self.clock.now(), self.link_valid_days).await;
        let result = match forgotten {
            Ok(_) => self.db.worker_opt_outs(i64::from(max)).await,
            Err(err) => Err(err),
        };
        let (outcome, count, answer) = match result {
            Ok(guids) => ("ok", Some(guids.len() as u64), Ok(PendingOptOutsResponse { guids })),
            Err(err) => {
                error!(cause = %err, "worker opt-out queue unreadable");
                ("internal", None, Err(Status::internal("internal error")))
            }
        };
        let mut event = Event::new("WORKER_OPT_OUTS_READ", outcome, actor);
        event.count = count;
        self.audit(event)?;
        answer.map(Response::new)
    }

    async fn confirm_opt_outs(
        &self,
        request: Request<ConfirmOptOutsRequest>,
    ) -> Result<Response<ConfirmOptOutsResponse>, Status> {
        let (caller, addr) = self.outreach_caller(&request, "ConfirmOptOuts")?;
        let actor = Actor::Caller(&caller, addr);
        let given = &request.get_ref().guids;
        // Stored as the pages wrote them: the canonical text form of a parsed GUID.
        let guids: Option<Vec<String>> =
            given.iter().map(|g| g.parse::<Guid>().ok().map(|g| g.to_string())).collect();
        let guids = match guids {
            Some(guids) if guids.len() <= MAX_OPT_OUTS as usize => guids,
            Some(_) => {
                self.audit(Event::new("WORKER_OPT_OUTS_CONFIRMED", "invalid_argument", actor))?;
                return Err(invalid("guids", "must hold at most 500 GUIDs"));
            }
            None => {
                self.audit(Event::new("WORKER_OPT_OUTS_CONFIRMED", "invalid_argument", actor))?;
                return Err(invalid("guids", "each must be a UUID in text form"));
            }
        };
        let (outcome, count, answer) = match self.db.confirm_worker_opt_outs(&guids).await {
            Ok(deleted) => ("ok", Some(deleted), Ok(ConfirmOptOutsResponse {})),
            Err(err) => {
                error!(cause = %err, "worker opt-out queue unwritable");
                ("internal", None, Err(Status::internal("internal error")))
            }
        };
        let mut event = Event::new("WORKER_OPT_OUTS_CONFIRMED", outcome, actor);
        event.count = count;
        self.audit(event)?;
        answer.map(Response::new)
    }
}
