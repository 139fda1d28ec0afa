//! Opt-outs that come after sending: the worker remembers each sent message's contact by
//! GUID (as HMACs, see [`crate::suppression::sent`]), and before each batch asks the bridge
//! for the GUIDs of new declines and unsubscribes (`PendingOptOuts`), suppresses what it
//! remembered for them, and confirms them (`ConfirmOptOuts`), page after page until none is
//! left. Only then does it lease: a backlog (after an outage) is applied whole first, and
//! while it cannot be, nothing is leased.
//!
//! This is what makes an opt-out final once the cache has erased the contact (at once after
//! the last message): the cache's own opt-out path (`DUE_KIND_SUPPRESS`) only reaches a
//! contact it still holds. When several workers run, they must share one database: the
//! first worker to confirm a GUID takes it off the bridge's queue.

use std::collections::HashSet;

use proto::{
    ledger::{ConfirmOptOutsRequest, PendingOptOutsRequest},
    v1::Contact,
};
use tonic::Status;
use tracing::{debug, error, info, warn};

use crate::{
    suppression::SuppressionError,
    worker::{Worker, keys},
};

/// GUIDs asked for per `PendingOptOuts` call: the most the bridge hands out at once. A
/// longer queue takes several calls, all before the lease.
pub const OPT_OUT_PAGE: u32 = 500;

/// Why the opt-outs waiting at the bridge were not all applied; those left wait there for
/// the next try. No variant carries a GUID or contact data.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The bridge could not be asked, or did not take the confirmations.
    #[error("bridge: {code:?}: {message}", code = .0.code(), message = .0.message())]
    Bridge(#[from] Status),
    /// The suppression list could not be written.
    #[error("suppression list unwritable: {0}")]
    Suppression(#[from] SuppressionError),
    /// The bridge handed out again an opt-out it had just been told was handled: asking
    /// again would never end.
    #[error("the bridge hands out opt-outs already confirmed")]
    NoProgress,
    /// Shutdown began before the queue was empty.
    #[error("shutting down")]
    Stopping,
}

/// What one drain of the bridge's queue came to, so far.
#[derive(Debug, Default)]
struct Drained {
    suppressed: u64,
    unknown: u64,
    pages: u64,
}

impl Drained {
    fn confirmed(&self) -> usize {
        usize::try_from(self.suppressed.saturating_add(self.unknown)).unwrap_or(usize::MAX)
    }
}

impl Worker {
    /// Brings the suppression list up to date with the bridge: forgets the sent contacts
    /// past `worker.remember_days`, then, page after page until the bridge has none left,
    /// suppresses the contacts remembered for the opt-outs it reports and confirms those
    /// handled. Returns how many were confirmed.
    ///
    /// An opt-out is confirmed whether or not this worker remembered something for it
    /// (nothing: it never sent under that GUID, or has forgotten it; a contact the cache
    /// still holds comes through the cache's suppression work anyway). One this worker
    /// could not write to its database is not confirmed, and comes again next time. An
    /// error means the queue was not emptied; what was confirmed before it stays done.
    pub async fn sync_opt_outs(&self) -> Result<usize, SyncError> {
        match self.suppression.forget_before(self.clock.now().as_second()).await {
            Ok(0) => {}
            Ok(forgotten) => debug!(forgotten, "sent contacts past worker.remember_days forgotten"),
            Err(err) => warn!(cause = %err, "cannot forget old sent contacts; trying again next time"),
        }
        let mut drained = Drained::default();
        let result = self.drain_opt_outs(&mut drained).await;
        if drained.confirmed() > 0 {
            let Drained { suppressed, unknown, pages } = drained;
            info!(suppressed, unknown, pages, "opt-outs from the bridge handled");
        }
        result.map(|()| drained.confirmed())
    }

    /// Asks for pages of opt-outs and applies each, until a page comes back short (the
    /// queue is empty).
    async fn drain_opt_outs(&self, drained: &mut Drained) -> Result<(), SyncError> {
        // The page just confirmed: should the bridge hand any of it out again, it is not
        // taking the confirmations.
        let mut previous = HashSet::new();
        loop {
            let request = PendingOptOutsRequest { max: OPT_OUT_PAGE };
            let guids = self.ledger.clone().pending_opt_outs(request).await?.into_inner().guids;
            if guids.iter().any(|guid| previous.contains(guid)) {
                return Err(SyncError::NoProgress);
            }
            let last = guids.len() < OPT_OUT_PAGE as usize;
            previous = self.apply_opt_outs(guids, drained).await?.into_iter().collect();
            if last {
                return Ok(());
            }
            if self.is_stopping() {
                return Err(SyncError::Stopping);
            }
        }
    }

    /// Suppresses what was remembered for each of `guids` and confirms those handled;
    /// returns them. If the suppression list cannot be written, those handled before are
    /// confirmed and the error returned.
    async fn apply_opt_outs(
        &self,
        guids: Vec<String>,
        drained: &mut Drained,
    ) -> Result<Vec<String>, SyncError> {
        let (mut suppressed, mut unknown) = (0u64, 0u64);
        let mut handled = Vec::with_capacity(guids.len());
        let mut failed = None;
        for guid in guids {
            match self.suppression.suppress_sent(&guid).await {
                Ok(true) => suppressed += 1,
                Ok(false) => unknown += 1,
                Err(err) => {
                    error!(cause = %err, "suppression list unwritable; the opt-outs left wait at the bridge");
                    failed = Some(err);
                    break;
                }
            }
            handled.push(guid);
        }
        if !handled.is_empty() {
            let request = ConfirmOptOutsRequest { guids: handled.clone() };
            self.ledger.clone().confirm_opt_outs(request).await?;
            metrics::counter!("outreach_opt_outs_total", "result" => "suppressed").increment(suppressed);
            metrics::counter!("outreach_opt_outs_total", "result" => "unknown").increment(unknown);
            drained.suppressed += suppressed;
            drained.unknown += unknown;
            drained.pages += 1;
        }
        match failed {
            Some(err) => Err(err.into()),
            None => Ok(handled),
        }
    }

    /// [`Worker::sync_opt_outs`], with a failure logged and counted rather than returned.
    /// False when opt-outs may still wait at the bridge: the caller must not lease then, for
    /// a contact leased could be one of theirs.
    pub(crate) async fn sync_opt_outs_or_warn(&self) -> bool {
        match self.sync_opt_outs().await {
            Ok(_) => true,
            Err(SyncError::Stopping) => false,
            Err(err) => {
                metrics::counter!("outreach_opt_out_sync_errors_total").increment(1);
                warn!(cause = %err, "opt-outs not synced with the bridge; nothing leased, trying again after worker.poll_seconds");
                false
            }
        }
    }

    /// Remembers the contact a message just went out to under `guid`, for
    /// `worker.remember_days` after `sent_at`. A failure is logged and counted, never
    /// returned: the message was sent and must be acked all the same.
    pub(crate) async fn remember_sent(&self, guid: &str, contact: &Contact, sent_at: jiff::Timestamp) {
        let days = i64::from(self.settings.remember_days);
        let forget_at = sent_at.as_second().saturating_add(days * 86_400);
        if let Err(err) = self.suppression.remember_sent(guid, &keys(contact), forget_at).await {
            metrics::counter!("outreach_remember_failures_total").increment(1);
            error!(cause = %err, "sent contact not remembered: a later opt-out may not suppress it");
        }
    }
}
