//! The outreach worker's queue of opt-outs (`worker_opt_outs`): every decline and
//! unsubscribe queues its GUID here, in the transaction that records it, for the ledger's
//! `PendingOptOuts` and `ConfirmOptOuts`.
//!
//! The worker needs the GUID because the cache erases a contact once its last message is
//! sent: an opt-out that comes after that cannot reach the worker through the cache, and
//! the worker suppresses instead the contact it remembered for the GUID at sending. A row
//! is deleted once the worker confirms it, or when it is older than
//! `link_valid_days` + 1 days, when the worker has forgotten the GUID anyway
//! ([`Db::forget_worker_opt_outs`]).

use jiff::Timestamp;
use sqlx::Row;

use super::{Db, DbError};

/// Queues `guid` for the worker; queuing it again while it waits changes nothing.
pub(super) async fn queue(tx: &mut sqlx::AnyConnection, guid: &str, now: Timestamp) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO worker_opt_outs (guid, queued_at) VALUES ($1, $2) ON CONFLICT (guid) DO NOTHING",
    )
    .bind(guid)
    .bind(now.as_second())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Db {
    /// Up to `limit` GUIDs waiting for the worker, oldest first; they stay queued.
    pub async fn worker_opt_outs(&self, limit: i64) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT guid FROM worker_opt_outs ORDER BY queued_at, guid LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// The worker has handled `guids`: forgets them (unknown ones are ignored). Returns how
    /// many were queued.
    pub async fn confirm_worker_opt_outs(&self, guids: &[String]) -> Result<u64, DbError> {
        let mut tx = self.pool.begin().await?;
        let mut deleted = 0;
        for guid in guids {
            deleted += sqlx::query("DELETE FROM worker_opt_outs WHERE guid = $1")
                .bind(guid)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Forgets the GUIDs queued for the worker more than `link_valid_days` + 1 days before
    /// `now`: the worker remembers a GUID for about as long as its link works (31 days by
    /// default), so it could no longer do anything with them. Returns how many.
    pub async fn forget_worker_opt_outs(&self, now: Timestamp, link_valid_days: u32) -> Result<u64, DbError> {
        let keep = (i64::from(link_valid_days) + 1) * 86_400;
        let deleted = sqlx::query("DELETE FROM worker_opt_outs WHERE queued_at < $1")
            .bind(now.as_second().saturating_sub(keep))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}
