//! The fold: counts the answers waiting in the pool, a whole group at a time, on a timer
//! ([`crate::db::Db::fold`] does the counting; this runs it and reports it).
//!
//! A group (site, provider, campaign, month) is counted once it holds `reports.min_cell`
//! responses, or once its month is over; until then its answers wait, sealed, so that no
//! change in the counts can be matched with one invitation's change of state.
//!
//! The same timer retires links ([`Fold::retire`]): an invitation whose link has expired
//! and whose month is released forgets its GUID's HMAC. It runs here rather than in the
//! outbox's loop because it follows the same calendar as the counts (released months), and
//! an hourly pass (`answers.fold_every_seconds`) is plenty for a deadline counted in days,
//! where the outbox wakes every `cache.retry_seconds` and at each decline.

use std::{sync::Arc, time::Duration};

use cache_server::{
    audit::{Actor, Audit, Event},
    clock::Clock,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    db::{Db, DbError, Folded},
    keys::Keys,
};

/// What the fold needs.
#[derive(Debug, Clone)]
pub struct Fold {
    /// The pool and the counts.
    pub db: Db,
    /// The key the pool is sealed under.
    pub keys: Arc<Keys>,
    /// Time: which months are over.
    pub clock: Clock,
    /// The audit trail: one line per fold that counted something.
    pub audit: Arc<Audit>,
    /// How many responses a group of the current month needs before it is counted.
    pub min_group: usize,
}

impl Fold {
    /// Folds, then retires the links that are done with, every `tick` until `stop` turns
    /// true.
    pub async fn run(self, tick: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(err) = self.once().await {
                warn!(cause = %err, "cannot fold the answer pool; will try again");
            }
            if let Err(err) = self.retire().await {
                warn!(cause = %err, "cannot retire expired links; will try again");
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Folds once: counts what is ready, and audits how many (`ANSWERS_FOLDED`, the day
    /// only, like the responses themselves).
    pub async fn once(&self) -> Result<Folded, DbError> {
        let folded = self.db.fold(&self.keys, self.clock.now(), self.min_group).await?;
        if folded.unreadable > 0 {
            warn!(
                unreadable = folded.unreadable,
                "pooled answers that this key cannot open are left as they are"
            );
        }
        if folded.counted > 0 {
            metrics::counter!("bridge_answers_folded_total").increment(folded.counted as u64);
            info!(counted = folded.counted, waiting = folded.waiting, "answers counted");
            let mut event = Event::new("ANSWERS_FOLDED", "ok", Actor::System);
            event.count = Some(folded.counted as u64);
            event.day_only = true;
            if let Err(err) = self.audit.record(event) {
                warn!(cause = %err, "cannot audit a fold");
            }
        }
        Ok(folded)
    }

    /// Forgets the GUID of every invitation whose link has expired and whose month is
    /// released ([`Db::retire_expired_links`]), and audits how many (`LINKS_RETIRED`, no
    /// GUID, the day only). An erasure that cannot be audited stays done: it is the safe
    /// direction.
    pub async fn retire(&self) -> Result<u64, DbError> {
        let retired = self.db.retire_expired_links(self.clock.now()).await?;
        if retired > 0 {
            info!(retired, "expired links forgotten");
            let mut event = Event::new("LINKS_RETIRED", "ok", Actor::System);
            event.count = Some(retired);
            event.day_only = true;
            if let Err(err) = self.audit.record(event) {
                warn!(cause = %err, "cannot audit retired links");
            }
        }
        Ok(retired)
    }
}
