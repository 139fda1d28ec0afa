//! `survey-bridge account ...`: the operator's commands for report readers' accounts.
//!
//! Passwords are generated, printed once, and stored only as argon2id hashes. Every change
//! goes to the activity log.

use jiff::Timestamp;

use super::{
    Account, AccountError, Role, check_id, hash_password, new_password, new_totp_nonce, store::Activity,
};
use crate::db::{Db, DbError};

/// An account command.
#[derive(Debug, clap::Subcommand)]
pub enum AccountCommand {
    /// Creates an account and prints its first password. The second factor is set up at the
    /// first sign-in.
    Add {
        /// The sign-in name.
        username: String,
        /// provider, site_admin or analyst.
        #[arg(long)]
        role: String,
        /// The site (provider and site_admin).
        #[arg(long)]
        site: Option<String>,
        /// The provider id (provider).
        #[arg(long)]
        provider: Option<String>,
    },
    /// Sets and prints a new password and unlocks the account; `--totp` also makes the
    /// second factor be set up again (a lost phone).
    Reset {
        /// The sign-in name.
        username: String,
        /// Set up the second factor again.
        #[arg(long)]
        totp: bool,
    },
    /// Disables an account and ends its sessions.
    Disable {
        /// The sign-in name.
        username: String,
    },
    /// Enables a disabled account.
    Enable {
        /// The sign-in name.
        username: String,
    },
    /// Lists the accounts.
    List,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The input is wrong; the message names the field.
    #[error(transparent)]
    Invalid(#[from] AccountError),
    /// No such account.
    #[error("no account {0:?}")]
    NoAccount(String),
    /// The name is taken.
    #[error("an account {0:?} exists already")]
    Exists(String),
    /// The database failed.
    #[error(transparent)]
    Db(DbError),
}

impl From<DbError> for CommandError {
    fn from(err: DbError) -> Self {
        CommandError::Db(err)
    }
}

/// Runs `command`; returns what to print.
pub async fn run(db: &Db, command: AccountCommand, now: Timestamp) -> Result<String, CommandError> {
    let at = now.as_second();
    match command {
        AccountCommand::Add { username, role, site, provider } => {
            let account = new_account(username, &role, site, provider)?;
            let password = new_password()?;
            let hash = hash_password(&password)?;
            db.create_account(&account, &hash, &new_totp_nonce()?, at).await.map_err(|err| match err {
                DbError::Conflict => CommandError::Exists(account.username.clone()),
                other => CommandError::Db(other),
            })?;
            log(db, at, &account, "ACCOUNT_CREATED", Some(account.role.as_str())).await?;
            Ok(format!(
                "created {} ({}); first password: {password}\nHand it over in person or by a separate channel. \
                 The second factor is set up at the first sign-in.\n",
                account.username,
                account.role.as_str()
            ))
        }
        AccountCommand::Reset { username, totp } => {
            let account = existing(db, &username).await?;
            let password = new_password()?;
            let nonce = if totp { Some(new_totp_nonce()?) } else { None };
            db.reset_account(&username, &hash_password(&password)?, nonce.as_deref()).await?;
            let detail = if totp { "password and second factor" } else { "password" };
            log(db, at, &account, "ACCOUNT_RESET", Some(detail)).await?;
            Ok(format!("reset {username} ({detail}); new password: {password}\n"))
        }
        AccountCommand::Disable { username } => {
            let account = existing(db, &username).await?;
            db.set_disabled(&username, true).await?;
            log(db, at, &account, "ACCOUNT_DISABLED", None).await?;
            Ok(format!("disabled {username}\n"))
        }
        AccountCommand::Enable { username } => {
            let account = existing(db, &username).await?;
            db.set_disabled(&username, false).await?;
            log(db, at, &account, "ACCOUNT_ENABLED", None).await?;
            Ok(format!("enabled {username}\n"))
        }
        AccountCommand::List => {
            let mut out = String::from("username\trole\tsite\tprovider\tsecond factor\tstate\n");
            for a in db.accounts().await? {
                let state = if a.disabled {
                    "disabled"
                } else if a.locked_until > at {
                    "locked"
                } else {
                    "active"
                };
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{state}\n",
                    a.username,
                    a.role.as_str(),
                    a.site_id.as_deref().unwrap_or("-"),
                    a.provider_id.as_deref().unwrap_or("-"),
                    if a.totp_enrolled { "set up" } else { "not yet" },
                ));
            }
            Ok(out)
        }
    }
}

fn new_account(
    username: String,
    role: &str,
    site: Option<String>,
    provider: Option<String>,
) -> Result<Account, AccountError> {
    check_id("username", &username)?;
    let role = Role::parse(role)
        .ok_or_else(|| AccountError::Invalid("--role must be provider, site_admin or analyst".into()))?;
    let need = |field: &str, value: &Option<String>| match value {
        Some(v) => check_id(field, v),
        None => Err(AccountError::Invalid(format!("{field} is required for the {} role", role.as_str()))),
    };
    let refuse = |field: &str, value: &Option<String>| match value {
        Some(_) => Err(AccountError::Invalid(format!("{field} is not used by the {} role", role.as_str()))),
        None => Ok(()),
    };
    match role {
        Role::Provider => {
            need("--site", &site)?;
            need("--provider", &provider)?;
        }
        Role::SiteAdmin => {
            need("--site", &site)?;
            refuse("--provider", &provider)?;
        }
        Role::Analyst => {
            refuse("--site", &site)?;
            refuse("--provider", &provider)?;
        }
    }
    Ok(Account {
        username,
        role,
        site_id: site,
        provider_id: provider,
        totp_enrolled: false,
        locked_until: 0,
        failures: 0,
        disabled: false,
    })
}

async fn existing(db: &Db, username: &str) -> Result<Account, CommandError> {
    match db.account(username).await? {
        Some((account, _)) => Ok(account),
        None => Err(CommandError::NoAccount(username.to_string())),
    }
}

async fn log(db: &Db, at: i64, account: &Account, action: &str, detail: Option<&str>) -> Result<(), DbError> {
    db.log_activity(&Activity {
        at,
        site_id: account.site_id.clone(),
        username: account.username.clone(),
        action: action.into(),
        result: "ok".into(),
        detail: Some(format!("by the operator{}", detail.map(|d| format!(": {d}")).unwrap_or_default())),
    })
    .await
}
