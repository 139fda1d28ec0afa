//! The opt-out outbox: declines waiting for the cache's `OptOut`, by raw GUID (needed to call
//! it), beside nothing else, deleted once the cache has them.

use jiff::Timestamp;
use sqlx::Row;

use super::{Db, DbError};

/// Queues `guid` for the cache's `OptOut` and for the outreach worker (`PendingOptOuts`);
/// queuing it again while it waits changes nothing.
pub(super) async fn queue(tx: &mut sqlx::AnyConnection, guid: &str, now: Timestamp) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO opt_out_outbox (guid, attempts, next_attempt_at) VALUES ($1, 0, $2) \
         ON CONFLICT (guid) DO NOTHING",
    )
    .bind(guid)
    .bind(now.as_second())
    .execute(&mut *tx)
    .await?;
    super::worker_opt_outs::queue(tx, guid, now).await
}

impl Db {
    /// Opt-outs due for delivery to the cache at `now`, with their attempts so far.
    pub async fn due_opt_outs(&self, now: Timestamp, limit: i64) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query(
            "SELECT guid, attempts FROM opt_out_outbox WHERE next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now.as_second())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// The cache has the opt-out: forget the GUID.
    pub async fn opt_out_delivered(&self, guid: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM opt_out_outbox WHERE guid = $1").bind(guid).execute(&self.pool).await?;
        Ok(())
    }

    /// Delivery failed: try again at `next_attempt_at`.
    pub async fn opt_out_failed(
        &self,
        guid: &str,
        attempts: i64,
        next_attempt_at: Timestamp,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE opt_out_outbox SET attempts = $1, next_attempt_at = $2 WHERE guid = $3")
            .bind(attempts)
            .bind(next_attempt_at.as_second())
            .bind(guid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many opt-outs wait in the outbox for the cache.
    pub async fn opt_outs_waiting(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) FROM opt_out_outbox").fetch_one(&self.pool).await?;
        Ok(row.try_get(0)?)
    }

    /// Opt-outs not yet delivered, with their attempts so far.
    pub async fn pending_opt_outs(&self) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query("SELECT guid, attempts FROM opt_out_outbox ORDER BY guid")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }
}
