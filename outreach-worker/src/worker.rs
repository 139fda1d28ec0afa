//! The worker loop: lease a batch of due contacts from the cache, handle each, ack each.
//!
//! For an invitation: the suppression list first; the clinic the contact's site sends as
//! (a site without one is warned about once and gets the generic wording, or waits with
//! `worker.require_site_identity`); for a reminder, whether the survey is still
//! unanswered; then the channel (the one the patient prefers, else the one available); quiet
//! hours in the patient's time zone (outside them, RETRY_AT the next opening); the
//! per-channel rate limit; quiet hours again (the wait may have outlasted the window); the
//! ledger's `RecordInvitation` *before* sending; the message, each attempt of it only while
//! the window is still open (else RETRY_AT the next opening, as before);
//! remembering the contact by GUID for a later opt-out ([`crate::opt_outs`]); the Ack.
//! Suppression work (a patient who opted out) is added to the suppression list and acked.
//! Before each batch, every opt-out the bridge has for the worker is handled, page after
//! page; until that has been done, nothing is leased.
//!
//! When anything this worker depends on fails (its database, the ledger, an Ack), the
//! contact is not acked: its lease runs out and it is handed out again. A message may then
//! go out twice (sent, then the Ack lost), never not at all while the contact lives; an
//! acked contact is never sent again.
//!
//! Logs and metrics name the campaign, the channel and the outcome; never a phone, an
//! email or a GUID.

use std::{
    collections::{BTreeMap, BTreeSet},
    num::NonZeroU32,
    time::Duration,
};

use cache_server::clock::Clock;
use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use proto::{
    ledger::{
        InvitationAnsweredRequest, InvitationChannel, RecordInvitationRequest,
        invitation_ledger_client::InvitationLedgerClient,
    },
    v1::{AckOutcome, AckRequest, Channel as Preferred, Contact, DueContact, DueKind, LeaseDueRequest},
};
use tokio::sync::watch;
use tonic::{Code, Status, transport::Channel};
use tracing::{debug, error, info, warn};

use crate::{
    config::{CampaignSettings, LoopConfig, Window},
    email::{EmailMessage, EmailOutcome, Mailer},
    quiet,
    sites::SiteIdentity,
    sms::{SendOutcome, SmsClient, SmsMessage, SmsOutbox},
    suppression::{ContactKeys, Suppression},
    templates::{Templates, Vars},
};

/// How long a contact with no channel this worker can use, or (with
/// `worker.require_site_identity`) no clinic identity for its site, waits before it is tried
/// again.
const NO_CHANNEL_RETRY: SignedDuration = SignedDuration::from_hours(1);

/// A channel this worker sends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// SMS.
    Sms,
    /// Email.
    Email,
}

impl Medium {
    /// Its name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Sms => "sms",
            Medium::Email => "email",
        }
    }
}

/// What became of one leased contact: the `outcome` label of
/// `outreach_contacts_total{campaign, channel, outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The invitation or reminder went out.
    Sent,
    /// The provider could not take it now; due again later.
    Retry,
    /// Outside quiet hours; due again when they open.
    QuietHours,
    /// The provider refused it for good (a bad number or address).
    FailedPermanent,
    /// On the suppression list, or the provider says the patient unsubscribed.
    Suppressed,
    /// An opt-out added to the suppression list.
    SuppressionRecorded,
    /// A reminder no longer needed: the survey was answered.
    Skipped,
    /// No channel this worker can use for the contact; due again later.
    NoChannel,
    /// The contact's site has no clinic identity and `worker.require_site_identity` is on;
    /// due again later.
    NoSiteIdentity,
    /// Not acked (a failure of the worker's own dependencies): the lease will run out.
    NotAcked,
}

impl Handled {
    /// Its name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Handled::Sent => "sent",
            Handled::Retry => "retry",
            Handled::QuietHours => "quiet_hours",
            Handled::FailedPermanent => "failed_permanent",
            Handled::Suppressed => "suppressed",
            Handled::SuppressionRecorded => "suppression_recorded",
            Handled::Skipped => "skipped",
            Handled::NoChannel => "no_channel",
            Handled::NoSiteIdentity => "no_site_identity",
            Handled::NotAcked => "not_acked",
        }
    }
}

/// One channel's sender and its rate limit.
#[derive(Debug)]
pub struct Outlet<T> {
    /// The client.
    pub client: T,
    /// At most this many messages per second.
    pub limiter: DefaultDirectRateLimiter,
}

impl<T> Outlet<T> {
    /// `client`, sending at most `per_second` messages a second.
    pub fn new(client: T, per_second: u32) -> Outlet<T> {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        Outlet { client, limiter: RateLimiter::direct(Quota::per_second(rate)) }
    }
}

/// Where SMS go.
#[derive(Debug)]
pub enum SmsSender {
    /// The provider's REST API.
    Api(SmsClient),
    /// A local file, for development only.
    Outbox(SmsOutbox),
}

impl SmsSender {
    /// Sends `message` (or writes it to the outbox), each attempt only while `may_send`
    /// says yes ([`SmsClient::send_within`]).
    pub async fn send(&self, message: &SmsMessage, mut may_send: impl FnMut() -> bool) -> SendOutcome {
        match self {
            SmsSender::Api(client) => client.send_within(message, may_send).await,
            SmsSender::Outbox(outbox) => {
                if !may_send() {
                    return SendOutcome::Held;
                }
                outbox.send(message).await
            }
        }
    }
}

/// Everything the loop works with.
#[derive(Debug)]
pub struct Worker {
    /// The contact cache (role `outreach`), connected afresh for each batch.
    pub cache: crate::clients::Cache,
    /// The bridge's ledger (role `outreach`).
    pub ledger: InvitationLedgerClient<Channel>,
    /// The suppression list.
    pub suppression: Suppression,
    /// Message templates.
    pub templates: Templates,
    /// SMS, when configured.
    pub sms: Option<Outlet<SmsSender>>,
    /// Email, when configured.
    pub email: Option<Outlet<Mailer>>,
    /// Quiet hours; none when they are switched off.
    pub window: Option<Window>,
    /// The zone for contacts whose own is unknown here.
    pub default_time_zone: TimeZone,
    /// The bridge's public address, without a trailing slash.
    pub public_url: String,
    /// Per-campaign settings.
    pub campaigns: BTreeMap<String, CampaignSettings>,
    /// The clinic each site's messages name, by site id.
    pub sites: BTreeMap<String, SiteIdentity>,
    /// The sites without an identity already warned about, so that each is warned about once.
    pub unidentified_sites: std::sync::Mutex<BTreeSet<String>>,
    /// Batch, lease, concurrency.
    pub settings: LoopConfig,
    /// Time.
    pub clock: Clock,
    /// Set on shutdown: contacts of the batch in hand not yet being sent are left to their
    /// lease (they come back when it runs out) rather than waited for.
    pub stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.is_empty())
}

/// The phone and email of `contact`, those present.
pub(crate) fn keys(contact: &Contact) -> ContactKeys {
    ContactKeys {
        phone: non_empty(&contact.phone).map(str::to_owned),
        email: non_empty(&contact.email).map(str::to_owned),
    }
}

fn wire(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.as_second(), nanos: t.subsec_nanosecond() }
}

impl Worker {
    /// Brings the suppression list up to date with every opt-out waiting at the bridge
    /// ([`Worker::sync_opt_outs`]), then leases one batch and handles it; returns how many
    /// contacts came. When the opt-outs cannot all be applied (the bridge unreachable, the
    /// database unwritable), the failure is logged and counted and nothing is leased: 0.
    ///
    /// The connection to the cache is closed afterwards: the batch's contacts passed through
    /// its buffers (see [`crate::clients::Cache`]).
    pub async fn run_once(&self) -> Result<usize, Status> {
        let result = self.lease_and_handle().await;
        self.cache.close();
        result
    }

    async fn lease_and_handle(&self) -> Result<usize, Status> {
        if !self.sync_opt_outs_or_warn().await {
            return Ok(0);
        }
        let request =
            LeaseDueRequest { max: self.settings.batch, lease_seconds: self.settings.lease_seconds };
        let due = self.cache.client().lease_due(request).await?.into_inner().contacts;
        let count = due.len();
        if count > 0 {
            debug!(count, "leased");
        }
        futures_util::stream::iter(due)
            .for_each_concurrent(self.settings.concurrency, |due| async move {
                let campaign = due.contact.as_ref().map(|c| c.campaign_id.clone()).unwrap_or_default();
                let (channel, handled) = self.handle(due).await;
                metrics::counter!(
                    "outreach_contacts_total",
                    "campaign" => campaign,
                    "channel" => channel.map_or("none", Medium::as_str),
                    "outcome" => handled.as_str()
                )
                .increment(1);
            })
            .await;
        Ok(count)
    }

    /// Runs batches until `stop` turns true; the batch in hand then ends as `stopping` says.
    /// Waits `poll_seconds` after an empty batch or a failed lease.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let idle = Duration::from_secs(self.settings.poll_seconds);
        while !*stop.borrow() {
            let wait = match self.run_once().await {
                Ok(0) => idle,
                Ok(_) => Duration::ZERO,
                Err(status) => {
                    metrics::counter!("outreach_lease_errors_total").increment(1);
                    warn!(code = ?status.code(), message = status.message(), "LeaseDue failed");
                    idle
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        info!("worker stopped");
    }

    /// Handles one leased contact; returns the channel used, if any, and the outcome.
    pub async fn handle(&self, due: DueContact) -> (Option<Medium>, Handled) {
        if self.is_stopping() {
            return (None, Handled::NotAcked);
        }
        let Some(contact) = due.contact.as_ref() else {
            error!("a leased contact came without its details; left to its lease");
            return (None, Handled::NotAcked);
        };
        if due.kind == DueKind::Suppress as i32 {
            return (None, self.record_suppression(&due, contact).await);
        }
        match self.suppression.is_suppressed(non_empty(&contact.phone), non_empty(&contact.email)).await {
            Ok(false) => {}
            Ok(true) => {
                return (None, self.ack(&due, AckOutcome::Suppressed, None, Handled::Suppressed).await);
            }
            Err(err) => {
                error!(cause = %err, "suppression list unreadable; not sending");
                return (None, Handled::NotAcked);
            }
        }
        if !self.site_identified(&contact.site_id) && self.settings.require_site_identity {
            let now = self.clock.now();
            let at = now.saturating_add(NO_CHANNEL_RETRY).unwrap_or(now);
            return (None, self.ack(&due, AckOutcome::RetryAt, Some(at), Handled::NoSiteIdentity).await);
        }
        let reminder = due.sent_before > 0;
        if reminder {
            let request = InvitationAnsweredRequest { guid: due.guid.clone() };
            match self.ledger.clone().invitation_answered(request).await {
                Ok(answer) if !answer.get_ref().answered => {}
                Ok(_) => {
                    return (None, self.ack(&due, AckOutcome::Skipped, None, Handled::Skipped).await);
                }
                Err(status) if status.code() == Code::NotFound => {
                    // Never recorded, or its link has expired: a reminder could only mislead.
                    return (None, self.ack(&due, AckOutcome::Skipped, None, Handled::Skipped).await);
                }
                Err(status) => {
                    warn!(code = ?status.code(), "InvitationAnswered failed; left to its lease");
                    return (None, Handled::NotAcked);
                }
            }
        }
        let now = self.clock.now();
        let Some(medium) = self.pick(contact) else {
            warn!(campaign = %contact.campaign_id, "no configured channel for this contact; retrying later");
            let at = now.saturating_add(NO_CHANNEL_RETRY).unwrap_or(now);
            return (None, self.ack(&due, AckOutcome::RetryAt, Some(at), Handled::NoChannel).await);
        };
        let tz = quiet::time_zone(&contact.time_zone, &self.default_time_zone);
        if let Some(opening) = self.closed_until(&tz) {
            let handled = self.ack(&due, AckOutcome::RetryAt, Some(opening), Handled::QuietHours).await;
            return (Some(medium), handled);
        }
        (Some(medium), self.send(&due, contact, medium, reminder, &tz).await)
    }

    /// When the quiet-hours window is closed in `tz` now: the moment it next opens. Asked
    /// when a contact is picked up, and again right before each attempt to send it, since
    /// the rate limit, the ledger and a provider's retries all take time.
    fn closed_until(&self, tz: &TimeZone) -> Option<Timestamp> {
        self.window.as_ref().and_then(|w| w.next_opening(self.clock.now(), tz))
    }

    /// Puts a message whose window closed while it waited back in the cache for the next
    /// opening (or at once, should the window have opened again meanwhile), as quiet hours
    /// do when it is picked up.
    async fn hold(&self, due: &DueContact, tz: &TimeZone) -> Handled {
        let opening = self.closed_until(tz).unwrap_or_else(|| self.clock.now());
        debug!("the quiet-hours window closed before the message could go out; held until it opens");
        self.ack(due, AckOutcome::RetryAt, Some(opening), Handled::QuietHours).await
    }

    /// Whether `site_id` has a clinic identity configured. Warns once per site (the site id,
    /// nothing about the contact) when it has none.
    fn site_identified(&self, site_id: &str) -> bool {
        if self.sites.contains_key(site_id) {
            return true;
        }
        let first = self
            .unidentified_sites
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(site_id.to_owned());
        if first {
            if self.settings.require_site_identity {
                warn!(site = %site_id, "no [sites] entry names this site's clinic; its contacts wait (worker.require_site_identity)");
            } else {
                warn!(site = %site_id, "no [sites] entry names this site's clinic; its messages use the generic wording");
            }
        }
        false
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The channel for `contact`: the preferred one if it has that contact detail and this
    /// worker sends on it, else the other; SMS first for CHANNEL_ANY.
    pub fn pick(&self, contact: &Contact) -> Option<Medium> {
        let sms = self.sms.is_some() && !contact.phone.is_empty();
        let email = self.email.is_some() && !contact.email.is_empty();
        let prefers_email = contact.channel == Preferred::Email as i32;
        match (prefers_email, sms, email) {
            (true, _, true) | (false, false, true) => Some(Medium::Email),
            (_, true, _) => Some(Medium::Sms),
            _ => None,
        }
    }

    async fn record_suppression(&self, due: &DueContact, contact: &Contact) -> Handled {
        match self.suppression.add(&keys(contact)).await {
            Ok(added) => {
                info!(added, "opt-out added to the suppression list");
                self.ack(due, AckOutcome::Suppressed, None, Handled::SuppressionRecorded).await
            }
            Err(err) => {
                error!(cause = %err, "suppression list unwritable; the opt-out will come again");
                Handled::NotAcked
            }
        }
    }

    async fn send(
        &self,
        due: &DueContact,
        contact: &Contact,
        medium: Medium,
        reminder: bool,
        tz: &TimeZone,
    ) -> Handled {
        let lang = if contact.language == "fr" { "fr" } else { "en" };
        match medium {
            Medium::Sms => {
                if let Some(sms) = &self.sms {
                    sms.limiter.until_ready().await;
                }
            }
            Medium::Email => {
                if let Some(email) = &self.email {
                    email.limiter.until_ready().await;
                }
            }
        }
        if self.is_stopping() {
            return Handled::NotAcked;
        }
        // The rate limit may have kept this message past the window's end.
        if self.closed_until(tz).is_some() {
            return self.hold(due, tz).await;
        }
        let now = self.clock.now();
        if !reminder && !self.record_invitation(&due.guid, contact, medium, lang, now).await {
            return Handled::NotAcked;
        }
        let vars = Vars {
            link: format!("{}/s/{}", self.public_url, due.guid),
            unsubscribe_link: format!("{}/u/{}", self.public_url, due.guid),
            reminder,
            campaign_id: contact.campaign_id.clone(),
            ..Vars::default()
        }
        .with_site(self.sites.get(&contact.site_id));
        let sent = match medium {
            Medium::Sms => self.send_sms(contact, lang, &vars, tz).await,
            Medium::Email => self.send_email(contact, lang, &vars, tz).await,
        };
        let Some(sent) = sent else { return Handled::NotAcked };
        match sent {
            Sent::Accepted => {
                self.remember_sent(&due.guid, contact, now).await;
                self.ack_sent(due, contact, reminder, now).await
            }
            Sent::Later => {
                let at = now
                    .saturating_add(SignedDuration::from_mins(i64::from(self.settings.retry_minutes)))
                    .unwrap_or(now);
                self.ack(due, AckOutcome::RetryAt, Some(at), Handled::Retry).await
            }
            Sent::Held => self.hold(due, tz).await,
            Sent::Refused => self.ack(due, AckOutcome::FailedPermanent, None, Handled::FailedPermanent).await,
            Sent::Unsubscribed => match self.suppression.add(&keys(contact)).await {
                Ok(_) => self.ack(due, AckOutcome::Suppressed, None, Handled::Suppressed).await,
                Err(err) => {
                    error!(cause = %err, "suppression list unwritable; left to its lease");
                    Handled::NotAcked
                }
            },
        }
    }

    /// Records the invitation with the bridge; false when it could not be (not sent then).
    async fn record_invitation(
        &self,
        guid: &str,
        contact: &Contact,
        medium: Medium,
        lang: &str,
        now: Timestamp,
    ) -> bool {
        let channel = match medium {
            Medium::Sms => InvitationChannel::Sms,
            Medium::Email => InvitationChannel::Email,
        };
        let request = RecordInvitationRequest {
            guid: guid.to_owned(),
            site_id: contact.site_id.clone(),
            provider_id: contact.provider_id.clone(),
            campaign_id: contact.campaign_id.clone(),
            channel: channel as i32,
            language: lang.to_owned(),
            sent_at: Some(wire(now)),
        };
        match self.ledger.clone().record_invitation(request).await {
            Ok(_) => true,
            // Recorded by an earlier attempt (a lease that ran out, another month or channel):
            // the answers will still be counted under that record.
            Err(status) if status.code() == Code::AlreadyExists => true,
            Err(status) => {
                warn!(code = ?status.code(), message = status.message(), "RecordInvitation failed; not sending");
                false
            }
        }
    }

    async fn send_sms(&self, contact: &Contact, lang: &str, vars: &Vars, tz: &TimeZone) -> Option<Sent> {
        let sms = self.sms.as_ref()?;
        let body = match self.templates.sms(&contact.campaign_id, lang, vars) {
            Ok(body) => body,
            Err(err) => {
                error!(cause = %err, "sms template failed; not sending");
                return None;
            }
        };
        let message = SmsMessage { to: contact.phone.clone(), body };
        Some(match sms.client.send(&message, || self.closed_until(tz).is_none()).await {
            SendOutcome::Sent(_) => Sent::Accepted,
            SendOutcome::Retry { .. } => Sent::Later,
            SendOutcome::FailedPermanent { .. } => Sent::Refused,
            SendOutcome::Suppressed => Sent::Unsubscribed,
            SendOutcome::Held => Sent::Held,
        })
    }

    async fn send_email(&self, contact: &Contact, lang: &str, vars: &Vars, tz: &TimeZone) -> Option<Sent> {
        let email = self.email.as_ref()?;
        let body = match self.templates.email(&contact.campaign_id, lang, vars) {
            Ok(body) => body,
            Err(err) => {
                error!(cause = %err, "email template failed; not sending");
                return None;
            }
        };
        let message = EmailMessage {
            to: contact.email.clone(),
            lang: lang.to_owned(),
            body,
            unsubscribe_url: vars.unsubscribe_link.clone(),
        };
        Some(match email.client.send_within(&message, || self.closed_until(tz).is_none()).await {
            EmailOutcome::Sent => Sent::Accepted,
            EmailOutcome::Retry { .. } => Sent::Later,
            EmailOutcome::FailedPermanent { .. } => Sent::Refused,
            EmailOutcome::Held => Sent::Held,
        })
    }

    /// Acks a sent message: with the reminder's time when the campaign has one and this was
    /// the invitation. A reminder that would fall after the contact expires is dropped.
    async fn ack_sent(&self, due: &DueContact, contact: &Contact, reminder: bool, now: Timestamp) -> Handled {
        let days = self.campaigns.get(&contact.campaign_id).and_then(|c| c.reminder_days);
        let remind_at = days
            .filter(|_| !reminder)
            .and_then(|d| now.saturating_add(SignedDuration::from_hours(24 * i64::from(d))).ok());
        let request = ack_request(due, AckOutcome::Sent, remind_at);
        match self.cache.client().ack(request).await {
            Ok(_) => Handled::Sent,
            Err(status) if remind_at.is_some() && status.code() == Code::InvalidArgument => {
                info!(campaign = %contact.campaign_id, "the reminder would come after the contact expires; none planned");
                self.ack(due, AckOutcome::Sent, None, Handled::Sent).await
            }
            Err(status) => ack_failed(&status, Handled::Sent),
        }
    }

    async fn ack(
        &self,
        due: &DueContact,
        outcome: AckOutcome,
        at: Option<Timestamp>,
        handled: Handled,
    ) -> Handled {
        let request = ack_request(due, outcome, at);
        match self.cache.client().ack(request).await {
            Ok(_) => handled,
            Err(status) if outcome == AckOutcome::RetryAt && status.code() == Code::InvalidArgument => {
                // The next try would come after the contact expires: it never will.
                info!("the contact expires before it could be tried again; giving up on it");
                Box::pin(self.ack(due, AckOutcome::FailedPermanent, None, Handled::FailedPermanent)).await
            }
            Err(status) => ack_failed(&status, handled),
        }
    }
}

/// A send's result, whatever the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Accepted,
    Later,
    /// Not sent: the quiet-hours window closed before the attempt.
    Held,
    Refused,
    Unsubscribed,
}

/// The Ack of `due`'s lease, fenced with its attempt: should the lease have run out and the
/// contact been handed out again (to this worker or another), the cache refuses it and the
/// newer lease stands, rather than this one's outcome (a retry) planning a second send.
fn ack_request(due: &DueContact, outcome: AckOutcome, at: Option<Timestamp>) -> AckRequest {
    AckRequest {
        guid: due.guid.clone(),
        outcome: outcome as i32,
        retry_at: at.map(wire),
        attempt: due.attempt,
        sent_before: due.sent_before,
    }
}

fn ack_failed(status: &Status, handled: Handled) -> Handled {
    metrics::counter!("outreach_ack_errors_total").increment(1);
    warn!(code = ?status.code(), message = status.message(), outcome = handled.as_str(), "Ack failed");
    if status.code() == Code::NotFound {
        // The contact is gone (erased, expired, opted out and suppressed): nothing to redo.
        handled
    } else {
        Handled::NotAcked
    }
}
