//! Accounts, sessions and the activity log in the bridge's database.

use sqlx::{Row, any::AnyRow};

use super::{Account, Role, Secrets};
use crate::db::{Db, DbError};

/// Where a session is in signing in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The password was right; the code is still due.
    Password,
    /// The password was right; the second factor must be set up.
    Enrol,
    /// Signed in.
    Full,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Password => "password",
            Stage::Enrol => "enrol",
            Stage::Full => "full",
        }
    }

    fn parse(s: &str) -> Stage {
        match s {
            "full" => Stage::Full,
            "enrol" => Stage::Enrol,
            _ => Stage::Password,
        }
    }
}

/// One line of the activity log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// Unix seconds.
    pub at: i64,
    /// The site concerned, if any.
    pub site_id: Option<String>,
    /// Who acted.
    pub username: String,
    /// What happened: `LOGIN`, `TOTP`, `TOTP_ENROLLED`, `REPORT_VIEW`, `REPORT_EXPORT`, ...
    pub action: String,
    /// `ok` or why not.
    pub result: String,
    /// A short detail (report scope, export format).
    pub detail: Option<String>,
}

const ACCOUNT_COLUMNS: &str = "username, role, site_id, provider_id, totp_enrolled, locked_until, failures, \
     disabled, password_hash, totp_nonce, totp_last_step";

fn account_of(row: &AnyRow) -> Result<(Account, Secrets), DbError> {
    let role: String = row.try_get(1)?;
    let account = Account {
        username: row.try_get(0)?,
        role: Role::parse(&role).unwrap_or(Role::Provider),
        site_id: row.try_get(2)?,
        provider_id: row.try_get(3)?,
        totp_enrolled: row.try_get::<i64, _>(4)? != 0,
        locked_until: row.try_get(5)?,
        failures: row.try_get(6)?,
        disabled: row.try_get::<i64, _>(7)? != 0,
    };
    let secrets = Secrets {
        password_hash: row.try_get(8)?,
        totp_nonce: row.try_get(9)?,
        totp_last_step: row.try_get(10)?,
    };
    Ok((account, secrets))
}

impl Db {
    /// Creates an account; [`DbError::Conflict`] if the name is taken.
    pub async fn create_account(
        &self,
        account: &Account,
        password_hash: &str,
        totp_nonce: &str,
        now: i64,
    ) -> Result<(), DbError> {
        let inserted = sqlx::query(
            "INSERT INTO accounts (username, role, site_id, provider_id, password_hash, totp_nonce, \
             totp_enrolled, totp_last_step, failures, locked_until, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0, 0, 0, $7) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&account.username)
        .bind(account.role.as_str())
        .bind(account.site_id.clone())
        .bind(account.provider_id.clone())
        .bind(password_hash)
        .bind(totp_nonce)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        if inserted == 0 { Err(DbError::Conflict) } else { Ok(()) }
    }

    /// The account named `username`, with its secrets.
    pub async fn account(&self, username: &str) -> Result<Option<(Account, Secrets)>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE username = $1"
        )))
        .bind(username)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(account_of).transpose()
    }

    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<Account>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY username"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| account_of(row).map(|(account, _)| account)).collect()
    }

    /// Counts a failed sign-in; after `max` in a row the account is locked until
    /// `lock_until`. True if this failure locked it.
    pub async fn sign_in_failed(&self, username: &str, max: i64, lock_until: i64) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE accounts SET failures = failures + 1 WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        let locked = sqlx::query(
            "UPDATE accounts SET locked_until = $1, failures = 0 WHERE username = $2 AND failures >= $3",
        )
        .bind(lock_until)
        .bind(username)
        .bind(max)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(locked > 0)
    }

    /// A sign-in succeeded: the failures are forgotten.
    pub async fn sign_in_succeeded(&self, username: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE accounts SET failures = 0 WHERE username = $1")
            .bind(username)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Accepts the code of time step `step` once: true if no code of this or a later step
    /// was accepted before. The second factor counts as set up from then on.
    pub async fn use_totp_step(&self, username: &str, step: i64) -> Result<bool, DbError> {
        let changed = sqlx::query(
            "UPDATE accounts SET totp_last_step = $1, totp_enrolled = 1 \
             WHERE username = $2 AND totp_last_step < $1",
        )
        .bind(step)
        .bind(username)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Sets a new password, unlocks the account and ends its sessions; with `new_totp_nonce`
    /// the second factor must be set up again.
    pub async fn reset_account(
        &self,
        username: &str,
        password_hash: &str,
        new_totp_nonce: Option<&str>,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let changed = sqlx::query(
            "UPDATE accounts SET password_hash = $1, failures = 0, locked_until = 0 WHERE username = $2",
        )
        .bind(password_hash)
        .bind(username)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if let Some(nonce) = new_totp_nonce {
            sqlx::query(
                "UPDATE accounts SET totp_nonce = $1, totp_enrolled = 0, totp_last_step = 0 WHERE username = $2",
            )
            .bind(nonce)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM sessions WHERE username = $1").bind(username).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Disables or enables an account; disabling ends its sessions.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let changed = sqlx::query("UPDATE accounts SET disabled = $1 WHERE username = $2")
            .bind(i64::from(disabled))
            .bind(username)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE username = $1").bind(username).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Stores a session under the hash of its token.
    pub async fn put_session(
        &self,
        token_hash: &str,
        username: &str,
        stage: Stage,
        expires_at: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, username, stage, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (token_hash) DO UPDATE SET stage = $3, expires_at = $4",
        )
        .bind(token_hash)
        .bind(username)
        .bind(stage.as_str())
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The unexpired session stored under `token_hash`: its user and stage.
    pub async fn session(&self, token_hash: &str, now: i64) -> Result<Option<(String, Stage)>, DbError> {
        let row =
            sqlx::query("SELECT username, stage FROM sessions WHERE token_hash = $1 AND expires_at > $2")
                .bind(token_hash)
                .bind(now)
                .fetch_optional(self.pool())
                .await?;
        let Some(row) = row else { return Ok(None) };
        let stage: String = row.try_get(1)?;
        Ok(Some((row.try_get(0)?, Stage::parse(&stage))))
    }

    /// Ends every session of `username` still short of its second factor (a lock ends every
    /// attempt in progress, in whichever session it was made).
    pub async fn end_pending_sessions(&self, username: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM sessions WHERE username = $1 AND stage <> $2")
            .bind(username)
            .bind(Stage::Full.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends a session, and forgets every expired one.
    pub async fn end_session(&self, token_hash: &str, now: i64) -> Result<(), DbError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1 OR expires_at <= $2")
            .bind(token_hash)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Adds a line to the activity log.
    pub async fn log_activity(&self, entry: &Activity) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO activity (at, site_id, username, action, result, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(entry.at)
        .bind(entry.site_id.clone())
        .bind(&entry.username)
        .bind(&entry.action)
        .bind(&entry.result)
        .bind(entry.detail.clone())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The activity log of `site_id` (every site when `None`), oldest first.
    pub async fn activity(&self, site_id: Option<&str>) -> Result<Vec<Activity>, DbError> {
        let rows = match site_id {
            Some(site) => {
                sqlx::query(
                    "SELECT at, site_id, username, action, result, detail FROM activity \
                     WHERE site_id = $1 ORDER BY at, username",
                )
                .bind(site)
                .fetch_all(self.pool())
                .await?
            }
            None => sqlx::query(
                "SELECT at, site_id, username, action, result, detail FROM activity ORDER BY at, username",
            )
            .fetch_all(self.pool())
            .await?,
        };
        rows.iter()
            .map(|row| {
                Ok(Activity {
                    at: row.try_get(0)?,
                    site_id: row.try_get(1)?,
                    username: row.try_get(2)?,
                    action: row.try_get(3)?,
                    result: row.try_get(4)?,
                    detail: row.try_get(5)?,
                })
            })
            .collect()
    }
}
