//! The answer pool: a response's answers wait here, sealed, with no GUID and no time, until
//! a fold counts them (migration `0005_answer_pool.sql` says why).

use std::collections::BTreeMap;

use jiff::Timestamp;
use rand::{TryRng, rngs::SysRng};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use zeroize::Zeroizing;

use super::{Count, Db, DbError, Group, Invitation, add_to_period};
use crate::{keys::Keys, ledger::month_of};

/// What a pool row holds once opened: the counts' key and the answers, nothing else.
#[derive(Serialize, Deserialize)]
struct Pooled {
    site: String,
    provider: String,
    campaign: String,
    month: String,
    answers: Vec<(String, String)>,
}

/// One pooled response: its row's id and its answers (question id, option id).
type Member = (String, Vec<(String, String)>);

/// What a fold did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Folded {
    /// Responses counted (and deleted from the pool).
    pub counted: usize,
    /// Responses left waiting: their group is still small and its month not over.
    pub waiting: usize,
    /// Rows that could not be opened (sealed under another key, or altered): left as they
    /// are, for an operator to look at.
    pub unreadable: usize,
}

/// Puts the answers to `inv` into the pool, sealed under `keys`, to count in `month`.
pub(super) async fn put(
    conn: &mut sqlx::AnyConnection,
    keys: &Keys,
    inv: &Invitation,
    month: String,
    answers: &[(String, String)],
) -> Result<(), DbError> {
    let pooled = Pooled {
        site: inv.site_id.clone(),
        provider: inv.provider_id.clone(),
        campaign: inv.campaign_id.clone(),
        month,
        answers: answers.to_vec(),
    };
    let plain = Zeroizing::new(serde_json::to_vec(&pooled).map_err(|err| DbError::Pool(err.to_string()))?);
    let mut id = [0u8; 16];
    SysRng.try_fill_bytes(&mut id).map_err(|_| DbError::Pool("no randomness".into()))?;
    sqlx::query("INSERT INTO answer_pool (id, sealed) VALUES ($1, $2)")
        .bind(hex::encode(id))
        .bind(keys.seal(&plain))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Db {
    /// Counts the pooled answers of every group (site, provider, campaign, month) that holds
    /// at least `min_group` of them, or whose month is over at `now`, and deletes them, all
    /// in one transaction of its own. What it writes is sums, in the order of their keys:
    /// nothing in it follows the order in which the answers came. A group whose month is
    /// released already counts in `now`'s month, so that a released month never changes.
    pub async fn fold(&self, keys: &Keys, now: Timestamp, min_group: usize) -> Result<Folded, DbError> {
        let this_month = month_of(now);
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT id, sealed FROM answer_pool").fetch_all(&mut *tx).await?;
        let mut folded = Folded::default();
        let mut groups: BTreeMap<Group, Vec<Member>> = BTreeMap::new();
        for row in rows {
            let id: String = row.try_get(0)?;
            let sealed: String = row.try_get(1)?;
            let opened = keys.open(&sealed).and_then(|plain| serde_json::from_slice::<Pooled>(&plain).ok());
            let Some(pooled) = opened else {
                folded.unreadable += 1;
                continue;
            };
            // Where it counts: the month it was put in the pool for (its invitation's, or the
            // month it came in if that one was released), or now's if that is released by now.
            let month = crate::periods::counting_month(&pooled.month, now, self.settle_days);
            let group = (pooled.site, pooled.provider, pooled.campaign, month);
            groups.entry(group).or_default().push((id, pooled.answers));
        }
        let mut answer_sums: BTreeMap<(Group, String, String), i64> = BTreeMap::new();
        let mut response_sums: BTreeMap<Group, i64> = BTreeMap::new();
        let mut ids = Vec::new();
        for (group, members) in groups {
            if members.len() < min_group && group.3 >= this_month {
                folded.waiting += members.len();
                continue;
            }
            for (id, answers) in members {
                ids.push(id);
                *response_sums.entry(group.clone()).or_default() += 1;
                for (question, answer) in answers {
                    *answer_sums.entry((group.clone(), question, answer)).or_default() += 1;
                }
            }
        }
        for ((group, question, answer), n) in &answer_sums {
            sqlx::query(
                "INSERT INTO answer_counts \
                 (site_id, provider_id, campaign_id, month, question, answer, responses) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (site_id, provider_id, campaign_id, month, question, answer) \
                 DO UPDATE SET responses = answer_counts.responses + $7",
            )
            .bind(&group.0)
            .bind(&group.1)
            .bind(&group.2)
            .bind(&group.3)
            .bind(question)
            .bind(answer)
            .bind(*n)
            .execute(&mut *tx)
            .await?;
        }
        for (group, n) in &response_sums {
            add_to_period(&mut tx, group, Count::Responses, *n).await?;
        }
        // Random ids: sorted, they are in no particular order either.
        ids.sort_unstable();
        for id in &ids {
            sqlx::query("DELETE FROM answer_pool WHERE id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        folded.counted = ids.len();
        Ok(folded)
    }

    /// How many responses wait in the pool.
    pub async fn answers_waiting(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) FROM answer_pool").fetch_one(&self.pool).await?;
        Ok(row.try_get(0)?)
    }
}
