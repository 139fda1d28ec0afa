//! The bridge's database: the invitation ledger and the anonymous aggregates, in SQLite by
//! default or PostgreSQL by URL, through sqlx's `Any` driver with embedded migrations.
//!
//! A GUID is only ever stored as its HMAC. An answer waits, sealed, in the pool
//! (`db/pool.rs`), apart from its invitation, and becomes one more count in `answer_counts`
//! (keyed by site, provider, campaign, month, question and answer) when [`Db::fold`] counts
//! its whole group: no row links an answer to a GUID, by content, transaction or order, and
//! no time finer than the month is kept. SQLite runs with `secure_delete`, so what is
//! deleted is overwritten.
//!
//! Two queues hold raw GUIDs of opt-outs, beside nothing else: the outbox for the cache's
//! `OptOut`, and the outreach worker's queue ([`Db::worker_opt_outs`], in
//! `db/worker_opt_outs.rs`).
//!
//! An invitation keeps its GUID's HMAC until its link has expired and its month is
//! released; then [`Db::retire_expired_links`] (`db/retention.rs`) forgets it.

use jiff::Timestamp;
use sqlx::{AnyPool, Executor, Row, any::AnyPoolOptions};

use crate::keys::Keys;

mod outbox;
mod pool;
mod retention;
mod worker_opt_outs;

pub use pool::Folded;

/// The embedded migrations (`survey-bridge/migrations`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// sqlx failed.
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The GUID was recorded before with other details.
    #[error("the invitation was recorded before with other details")]
    Conflict,
    /// Answers could not be sealed into the pool.
    #[error("answer pool: {0}")]
    Pool(String),
    /// A released report unit could not be written or read.
    #[error("released units: {0}")]
    Released(String),
}

/// One invitation, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// The GUID's HMAC.
    pub guid_hmac: String,
    /// Where it belongs.
    pub site_id: String,
    /// The provider seen.
    pub provider_id: String,
    /// The campaign.
    pub campaign_id: String,
    /// `sms` or `email`.
    pub channel: String,
    /// `en` or `fr`.
    pub language: String,
    /// `YYYY-MM` of sending.
    pub month: String,
    /// Unix seconds after which the link no longer works.
    pub expires_at: i64,
}

/// Where an invitation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Sent, not yet opened to the survey.
    Invited,
    /// The patient agreed on the consent page: the survey is open to them. No time is kept.
    Consented,
    /// Answered: the GUID is used.
    Responded,
    /// The patient declined (opted out).
    Declined,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Invited => "invited",
            State::Consented => "consented",
            State::Responded => "responded",
            State::Declined => "declined",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "consented" => State::Consented,
            "responded" => State::Responded,
            "declined" => State::Declined,
            _ => State::Invited,
        }
    }

    /// Still open: neither answered nor declined.
    pub fn is_open(self) -> bool {
        matches!(self, State::Invited | State::Consented)
    }
}

/// What a submission or a decline came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted.
    Accepted,
    /// No such invitation.
    Unknown,
    /// The link has expired.
    Expired,
    /// Already answered or declined: nothing changed.
    AlreadyUsed,
    /// Answers for a link whose patient has not agreed on the consent page: nothing changed.
    NoConsent,
}

/// What an unsubscribe came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribe {
    /// The link was unused: it is now declined, and the GUID queued for the cache's `OptOut`.
    Declined,
    /// The survey was answered: the GUID is queued for the cache's `OptOut`; the response
    /// stands.
    Answered,
    /// The patient had already declined or unsubscribed: the opt-out was queued then.
    AlreadyDeclined,
    /// No such invitation.
    Unknown,
    /// The link has expired.
    Expired,
}

/// The counts of one (site, provider, campaign, month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeriodCounts {
    /// Invitations recorded.
    pub invitations: i64,
    /// Surveys answered.
    pub responses: i64,
    /// Declines (opt-outs).
    pub opt_outs: i64,
}

/// The bridge's database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    /// `reports.settle_days`: counts for a released month go to the month they come in.
    settle_days: u32,
}

impl Db {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`) and migrates.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let max = if url.starts_with("sqlite:") { 1 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Deleted rows (answers once counted, opt-outs once delivered) are
                    // overwritten with zeros in the file, not left in free pages.
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        conn.execute("PRAGMA secure_delete = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Db { pool, settle_days: crate::config::ReportsConfig::default().settle_days })
    }

    /// `reports.settle_days`: how many days after its end a month is released.
    pub fn settle_days(&self) -> u32 {
        self.settle_days
    }

    /// Releases months `settle_days` after they end (`reports.settle_days`): a response or
    /// an opt-out for a released month counts in the month it comes in.
    pub fn with_settle_days(mut self, settle_days: u32) -> Db {
        self.settle_days = settle_days;
        self
    }

    /// The pool, for tests and reports.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers, for readiness: one read of the ledger's table, a query
    /// that (unlike `SELECT 1`) reaches SQLite's file and waits on its locks as the pages do.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1 FROM invitations LIMIT 1").fetch_optional(&self.pool).await?;
        Ok(())
    }

    /// Records an invitation; true if this call created it.
    ///
    /// Recording the same invitation again changes nothing; the same GUID with other
    /// details is [`DbError::Conflict`].
    pub async fn record_invitation(&self, inv: &Invitation) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO invitations \
             (guid_hmac, site_id, provider_id, campaign_id, channel, language, month, expires_at, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'invited') ON CONFLICT (guid_hmac) DO NOTHING",
        )
        .bind(&inv.guid_hmac)
        .bind(&inv.site_id)
        .bind(&inv.provider_id)
        .bind(&inv.campaign_id)
        .bind(&inv.channel)
        .bind(&inv.language)
        .bind(&inv.month)
        .bind(inv.expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let existing = invitation_in(&mut tx, &inv.guid_hmac).await?;
            return match existing {
                Some((same, _))
                    if same.site_id == inv.site_id
                        && same.provider_id == inv.provider_id
                        && same.campaign_id == inv.campaign_id
                        && same.channel == inv.channel
                        && same.language == inv.language =>
                {
                    Ok(false)
                }
                _ => Err(DbError::Conflict),
            };
        }
        bump_period(&mut tx, inv, Count::Invitations).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The invitation stored under `guid_hmac`, with its state.
    pub async fn invitation(&self, guid_hmac: &str) -> Result<Option<(Invitation, State)>, DbError> {
        let mut conn = self.pool.acquire().await?;
        invitation_in(&mut conn, guid_hmac).await
    }

    /// Records that the patient of the unexpired, open invitation under `guid_hmac` agreed on
    /// the consent page (its state only: no time is kept). Agreeing again changes nothing.
    pub async fn consent(&self, guid_hmac: &str, now: Timestamp) -> Result<Outcome, DbError> {
        let mut conn = self.pool.acquire().await?;
        let Some((inv, state)) = invitation_in(&mut conn, guid_hmac).await? else {
            return Ok(Outcome::Unknown);
        };
        if now.as_second() >= inv.expires_at {
            return Ok(Outcome::Expired);
        }
        if !state.is_open() {
            return Ok(Outcome::AlreadyUsed);
        }
        let changed = sqlx::query(
            "UPDATE invitations SET state = 'consented' WHERE guid_hmac = $1 AND state IN ('invited', 'consented')",
        )
        .bind(guid_hmac)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(if changed == 1 { Outcome::Accepted } else { Outcome::AlreadyUsed })
    }

    /// Takes a response: the invitation must exist, be unexpired, consented and unused.
    ///
    /// Two transactions, so that nothing ties the answers to the invitation: the first marks
    /// the invitation responded; the second puts the answers, sealed under `keys` with their
    /// invitation's site, provider, campaign and month and nothing else, into the pool that
    /// [`Db::fold`] later counts in batches. Should the second fail, the first is undone so
    /// the patient can try again; a crash between the two loses this answer (its patient saw
    /// no thank-you page) and never counts one twice. `answers` must already be checked
    /// against the questionnaire.
    pub async fn submit(
        &self,
        keys: &Keys,
        guid_hmac: &str,
        now: Timestamp,
        answers: &[(String, String)],
    ) -> Result<Outcome, DbError> {
        // One connection for both transactions: the answers follow their claim at once
        // instead of queuing behind other requests (SQLite has one connection), which keeps
        // the window a crash could fall into as short as it can be.
        let mut conn = self.pool.acquire().await?;
        let inv = {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let inv = match claim(&mut tx, guid_hmac, now, State::Responded).await? {
                Ok(inv) => inv,
                Err(outcome) => return Ok(outcome),
            };
            tx.commit().await?;
            inv
        };
        let month = crate::periods::counting_month(&inv.month, now, self.settle_days);
        if let Err(err) = pool::put(&mut conn, keys, &inv, month, answers).await {
            // Open the link again: the answers were not kept.
            let undo = sqlx::query(
                "UPDATE invitations SET state = 'consented' WHERE guid_hmac = $1 AND state = 'responded'",
            )
            .bind(guid_hmac)
            .execute(&mut *conn)
            .await;
            if let Err(undo) = undo {
                tracing::error!(cause = %undo, "cannot reopen a link whose answers were not kept");
            }
            return Err(err);
        }
        Ok(Outcome::Accepted)
    }

    /// Records a decline, if the invitation was unexpired and unused: in one transaction
    /// it is marked declined, the period's opt-outs counted, and the GUID queued for the
    /// cache's `OptOut` in the outbox.
    pub async fn decline(&self, guid: &str, guid_hmac: &str, now: Timestamp) -> Result<Outcome, DbError> {
        let mut tx = self.pool.begin().await?;
        let inv = match claim(&mut tx, guid_hmac, now, State::Declined).await? {
            Ok(inv) => inv,
            Err(outcome) => return Ok(outcome),
        };
        self.count_opt_out(&mut tx, &inv, now).await?;
        outbox::queue(&mut tx, guid, now).await?;
        tx.commit().await?;
        Ok(Outcome::Accepted)
    }

    /// Records an unsubscribe, which is final and reaches every campaign: in one
    /// transaction an unused invitation is declined as by [`Db::decline`]; an answered one
    /// keeps its response (and is not counted as an opt-out) but its GUID is still queued
    /// for the cache's `OptOut`; a declined one is left as it is, its opt-out having been
    /// queued when it was declined.
    pub async fn unsubscribe(
        &self,
        guid: &str,
        guid_hmac: &str,
        now: Timestamp,
    ) -> Result<Unsubscribe, DbError> {
        let mut tx = self.pool.begin().await?;
        match claim(&mut tx, guid_hmac, now, State::Declined).await? {
            Ok(inv) => {
                self.count_opt_out(&mut tx, &inv, now).await?;
                outbox::queue(&mut tx, guid, now).await?;
                tx.commit().await?;
                return Ok(Unsubscribe::Declined);
            }
            Err(Outcome::Unknown) => return Ok(Unsubscribe::Unknown),
            Err(Outcome::Expired) => return Ok(Unsubscribe::Expired),
            Err(_) => {}
        }
        // Already used: read the state again, as it may have changed since `claim` looked.
        match invitation_in(&mut tx, guid_hmac).await? {
            Some((_, State::Declined)) => Ok(Unsubscribe::AlreadyDeclined),
            Some(_) => {
                outbox::queue(&mut tx, guid, now).await?;
                tx.commit().await?;
                Ok(Unsubscribe::Answered)
            }
            None => Ok(Unsubscribe::Unknown),
        }
    }

    /// Counts an opt-out for `inv` in its month, or in `now`'s if its month is released.
    async fn count_opt_out(
        &self,
        tx: &mut sqlx::AnyConnection,
        inv: &Invitation,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let month = crate::periods::counting_month(&inv.month, now, self.settle_days);
        let group = (inv.site_id.clone(), inv.provider_id.clone(), inv.campaign_id.clone(), month);
        add_to_period(tx, &group, Count::OptOuts, 1).await
    }

    /// Whether the invitation under `guid_hmac` no longer wants a reminder (answered,
    /// declined or unsubscribed: true) or is still unused (false); `None` when it is
    /// unknown or its link has expired at `now`.
    pub async fn invitation_answered(
        &self,
        guid_hmac: &str,
        now: Timestamp,
    ) -> Result<Option<bool>, DbError> {
        Ok(match self.invitation(guid_hmac).await? {
            Some((inv, state)) if now.as_second() < inv.expires_at => Some(!state.is_open()),
            _ => None,
        })
    }

    /// The counts of one (site, provider, campaign, month).
    pub async fn period_counts(
        &self,
        site_id: &str,
        provider_id: &str,
        campaign_id: &str,
        month: &str,
    ) -> Result<PeriodCounts, DbError> {
        let row = sqlx::query(
            "SELECT invitations, responses, opt_outs FROM period_counts \
             WHERE site_id = $1 AND provider_id = $2 AND campaign_id = $3 AND month = $4",
        )
        .bind(site_id)
        .bind(provider_id)
        .bind(campaign_id)
        .bind(month)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => PeriodCounts {
                invitations: row.try_get(0)?,
                responses: row.try_get(1)?,
                opt_outs: row.try_get(2)?,
            },
            None => PeriodCounts::default(),
        })
    }

    /// How many responses chose `answer` to `question` in one (site, provider, campaign,
    /// month).
    pub async fn answer_count(
        &self,
        key: (&str, &str, &str, &str),
        question: &str,
        answer: &str,
    ) -> Result<i64, DbError> {
        let (site_id, provider_id, campaign_id, month) = key;
        let row = sqlx::query(
            "SELECT responses FROM answer_counts WHERE site_id = $1 AND provider_id = $2 \
             AND campaign_id = $3 AND month = $4 AND question = $5 AND answer = $6",
        )
        .bind(site_id)
        .bind(provider_id)
        .bind(campaign_id)
        .bind(month)
        .bind(question)
        .bind(answer)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        })
    }
}

async fn invitation_in(
    conn: &mut sqlx::AnyConnection,
    guid_hmac: &str,
) -> Result<Option<(Invitation, State)>, DbError> {
    let row = sqlx::query(
        "SELECT guid_hmac, site_id, provider_id, campaign_id, channel, language, month, expires_at, state \
         FROM invitations WHERE guid_hmac = $1",
    )
    .bind(guid_hmac)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let inv = Invitation {
        guid_hmac: row.try_get(0)?,
        site_id: row.try_get(1)?,
        provider_id: row.try_get(2)?,
        campaign_id: row.try_get(3)?,
        channel: row.try_get(4)?,
        language: row.try_get(5)?,
        month: row.try_get(6)?,
        expires_at: row.try_get(7)?,
    };
    let state: String = row.try_get(8)?;
    Ok(Some((inv, State::parse(&state))))
}

/// Moves an unexpired, unused invitation to `to`; the outcome otherwise.
async fn claim(
    tx: &mut sqlx::AnyConnection,
    guid_hmac: &str,
    now: Timestamp,
    to: State,
) -> Result<Result<Invitation, Outcome>, DbError> {
    let Some((inv, state)) = invitation_in(tx, guid_hmac).await? else {
        return Ok(Err(Outcome::Unknown));
    };
    if now.as_second() >= inv.expires_at {
        return Ok(Err(Outcome::Expired));
    }
    if !state.is_open() {
        return Ok(Err(Outcome::AlreadyUsed));
    }
    // Answers need the patient's consent; a decline does not.
    let from = match to {
        State::Responded if state != State::Consented => return Ok(Err(Outcome::NoConsent)),
        State::Responded => "state = 'consented'",
        _ => "state IN ('invited', 'consented')",
    };
    // The state check and the change are one statement, so two submissions racing cannot
    // both count.
    let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE invitations SET state = $1 WHERE guid_hmac = $2 AND {from}"
    )))
    .bind(to.as_str())
    .bind(guid_hmac)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(if changed == 1 { Ok(inv) } else { Err(Outcome::AlreadyUsed) })
}

/// A count kept per period.
#[derive(Debug, Clone, Copy)]
enum Count {
    Invitations,
    Responses,
    OptOuts,
}

/// The key of the counts: site, provider, campaign and month.
pub(crate) type Group = (String, String, String, String);

/// Adds one to `count` of the invitation's period.
async fn bump_period(tx: &mut sqlx::AnyConnection, inv: &Invitation, count: Count) -> Result<(), DbError> {
    let group = (inv.site_id.clone(), inv.provider_id.clone(), inv.campaign_id.clone(), inv.month.clone());
    add_to_period(tx, &group, count, 1).await
}

/// Adds `n` to `count` of `group`'s period.
async fn add_to_period(
    tx: &mut sqlx::AnyConnection,
    group: &Group,
    count: Count,
    n: i64,
) -> Result<(), DbError> {
    let column = match count {
        Count::Invitations => "invitations",
        Count::Responses => "responses",
        Count::OptOuts => "opt_outs",
    };
    let values = match count {
        Count::Invitations => "$5, 0, 0",
        Count::Responses => "0, $5, 0",
        Count::OptOuts => "0, 0, $5",
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO period_counts (site_id, provider_id, campaign_id, month, invitations, responses, opt_outs) \
         VALUES ($1, $2, $3, $4, {values}) ON CONFLICT (site_id, provider_id, campaign_id, month) \
         DO UPDATE SET {column} = period_counts.{column} + $5"
    )))
    .bind(&group.0)
    .bind(&group.1)
    .bind(&group.2)
    .bind(&group.3)
    .bind(n)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
