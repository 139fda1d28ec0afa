//! Retention of the ledger: once a link can no longer be used and its month's figures are
//! final, its invitation row forgets the GUID.
//!
//! A row keys an invitation by the HMAC of its GUID for as long as the GUID can do
//! something: open the pages, answer, decline, unsubscribe, or be asked about by the
//! worker (`InvitationAnswered`). When its link has expired (`expires_at`) and its month is
//! released (`reports.settle_days` after the month ends), nothing can change it any more,
//! and [`Db::retire_expired_links`] replaces the HMAC with `retired:` and 128 random bits,
//! which link to nothing, and its expiry with 0: exact to the second, it would give the
//! second of sending, which other records (the cache's audit trail) could be matched on.
//! The rest of the row stays (site, provider, campaign, channel, language, month, state):
//! the usage export counts rows by state. A retired link answers as an unknown one
//! everywhere, since no HMAC of a GUID can start with `retired:`.

use jiff::Timestamp;
use rand::Rng;
use sqlx::Row;

use super::{Db, DbError};

/// How a retired row's key starts; an HMAC of a GUID is hex and never does.
const RETIRED_PREFIX: &str = "retired:";

/// Rows changed per transaction: a month's invitations are retired in several.
const BATCH: usize = 500;

/// A key that links to nothing: [`RETIRED_PREFIX`] and 128 random bits in hex, unique as
/// the primary key needs.
fn retired_key() -> String {
    let mut bits = [0u8; 16];
    rand::rng().fill_bytes(&mut bits);
    format!("{RETIRED_PREFIX}{}", hex::encode(bits))
}

impl Db {
    /// Forgets the GUID of every invitation whose link has expired at `now` and whose month
    /// is released (`reports.settle_days`): its HMAC is replaced by a random key and its
    /// expiry by 0, and the rest of the row is kept for the counts and the usage export.
    /// Returns how many rows were changed; a row is retired once.
    pub async fn retire_expired_links(&self, now: Timestamp) -> Result<u64, DbError> {
        let rows = sqlx::query(
            "SELECT guid_hmac, month FROM invitations \
             WHERE expires_at <= $1 AND guid_hmac NOT LIKE 'retired:%'",
        )
        .bind(now.as_second())
        .fetch_all(&self.pool)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let month: String = row.try_get(1)?;
            if crate::periods::month_released(&month, now, self.settle_days) {
                due.push(row.try_get::<String, _>(0)?);
            }
        }
        let mut retired = 0;
        for batch in due.chunks(BATCH) {
            let mut tx = self.pool.begin().await?;
            for guid_hmac in batch {
                retired += sqlx::query(
                    "UPDATE invitations SET guid_hmac = $1, expires_at = 0 \
                     WHERE guid_hmac = $2 AND expires_at <= $3",
                )
                .bind(retired_key())
                .bind(guid_hmac)
                .bind(now.as_second())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
        }
        Ok(retired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_keys_are_random_and_cannot_be_an_hmac() {
        let (a, b) = (retired_key(), retired_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), RETIRED_PREFIX.len() + 32);
        assert!(a.starts_with(RETIRED_PREFIX));
        assert!(!a.chars().all(|c| c.is_ascii_hexdigit()), "an HMAC is all hex; this is not");
    }
}
