//! The fold: counts the answers waiting in the pool, a whole group at a time, on a timer
//! ([`crate::db::Db::fold`] does the counting; this runs it and reports it).
//!
//! A group (site, provider, campaign, month) is counted once it holds `reports.min_cell`
//! responses, or once its month is over; until then its answers wait, sealed, so that no
//! change in the counts can be matched with one invitation's change of state.

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
    /// Folds every `tick` until `stop` turns true.
    pub async fn run(self, tick: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(err) = self.once().await {
                warn!(cause = %err, "cannot fold the answer pool; will try again");
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
}
