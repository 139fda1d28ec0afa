//! Opt-outs that come after sending: the worker remembers each sent message's contact by
//! GUID (as HMACs, see [`crate::suppression::sent`]), and before each batch asks the bridge
//! for the GUIDs of new declines and unsubscribes (`PendingOptOuts`), suppresses what it
//! remembered for them, and confirms them (`ConfirmOptOuts`).
//!
//! This is what makes an opt-out final once the cache has erased the contact (at once after
//! the last message): the cache's own opt-out path (`DUE_KIND_SUPPRESS`) only reaches a
//! contact it still holds. When several workers run, they must share one database: the
//! first worker to confirm a GUID takes it off the bridge's queue.

use proto::{
    ledger::{ConfirmOptOutsRequest, PendingOptOutsRequest},
    v1::Contact,
};
use tonic::Status;
use tracing::{debug, error, info, warn};

use crate::worker::{Worker, keys};

/// GUIDs asked for per `PendingOptOuts` call; a longer queue drains over the next batches.
pub const OPT_OUT_BATCH: u32 = 100;

impl Worker {
    /// Brings the suppression list up to date with the bridge: forgets the sent contacts
    /// past `worker.remember_days`, then suppresses the contacts remembered for the opt-outs
    /// the bridge reports and confirms those handled. Returns how many were confirmed.
    ///
    /// An opt-out is confirmed whether or not this worker remembered something for it
    /// (nothing: it never sent under that GUID, or has forgotten it; a contact the cache
    /// still holds comes through the cache's suppression work anyway). One this worker
    /// could not write to its database is not confirmed, and comes again next time. The
    /// error is the bridge's, when it cannot be reached.
    pub async fn sync_opt_outs(&self) -> Result<usize, Status> {
        match self.suppression.forget_before(self.clock.now().as_second()).await {
            Ok(0) => {}
            Ok(forgotten) => debug!(forgotten, "sent contacts past worker.remember_days forgotten"),
            Err(err) => warn!(cause = %err, "cannot forget old sent contacts; trying again next time"),
        }
        let request = PendingOptOutsRequest { max: OPT_OUT_BATCH };
        let guids = self.ledger.clone().pending_opt_outs(request).await?.into_inner().guids;
        let (mut suppressed, mut unknown) = (0u64, 0u64);
        let mut handled = Vec::with_capacity(guids.len());
        for guid in guids {
            match self.suppression.suppress_sent(&guid).await {
                Ok(true) => suppressed += 1,
                Ok(false) => unknown += 1,
                Err(err) => {
                    error!(cause = %err, "suppression list unwritable; the opt-outs left wait at the bridge");
                    break;
                }
            }
            handled.push(guid);
        }
        let count = handled.len();
        if count == 0 {
            return Ok(0);
        }
        self.ledger.clone().confirm_opt_outs(ConfirmOptOutsRequest { guids: handled }).await?;
        metrics::counter!("outreach_opt_outs_total", "result" => "suppressed").increment(suppressed);
        metrics::counter!("outreach_opt_outs_total", "result" => "unknown").increment(unknown);
        info!(suppressed, unknown, "opt-outs from the bridge handled");
        Ok(count)
    }

    /// [`Worker::sync_opt_outs`], with a failure logged and counted rather than returned:
    /// the next batch tries again.
    pub(crate) async fn sync_opt_outs_or_warn(&self) {
        if let Err(status) = self.sync_opt_outs().await {
            metrics::counter!("outreach_opt_out_sync_errors_total").increment(1);
            warn!(code = ?status.code(), message = status.message(), "opt-outs not synced with the bridge; trying again next batch");
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
