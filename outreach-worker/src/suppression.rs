//! The suppression list, in the worker's own database (SQLite by default, PostgreSQL by URL,
//! through sqlx's `Any` driver with embedded migrations).
//!
//! An entry is never a phone number or an email: it is the HMAC-SHA256, under a secret key,
//! of the normalised value tagged by its kind (`phone:+16139990100`, `email:a@b.example`).
//! A contact is suppressed when its phone or its email matches an entry, so an opt-out
//! given for one contact also blocks a later contact that shares either.
//!
//! The same database remembers, for each message sent, which entries belong to its GUID
//! ([`sent`]: `sent_contacts`, keyed by an HMAC of the GUID), for as long as its link
//! works: an opt-out that comes after the cache has erased the contact is suppressed from
//! there.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sqlx::{AnyPool, any::AnyPoolOptions};
use zeroize::Zeroizing;

pub mod sent;

/// The embedded migrations (`outreach-worker/migrations`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A suppression-list failure. No variant carries contact data.
#[derive(Debug, thiserror::Error)]
pub enum SuppressionError {
    /// The key file could not be read or does not hold 64 hex digits.
    #[error("suppression key file {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// sqlx failed.
    #[error("suppression database: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("suppression database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The 256-bit key under which entries are made, wiped when dropped.
#[derive(Clone)]
pub struct SuppressionKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SuppressionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SuppressionKey(<secret>)")
    }
}

impl SuppressionKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SuppressionKey {
        SuppressionKey(Zeroizing::new(bytes))
    }

    /// Reads the key from `path`: 64 hex digits, surrounding white space ignored.
    pub fn load(path: &Path) -> Result<SuppressionKey, SuppressionError> {
        let err =
            |reason: &str| SuppressionError::Key { path: path.display().to_string(), reason: reason.into() };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(&e.to_string()))?);
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut key[..]).map_err(|_| err("must hold 64 hex digits"))?;
        Ok(SuppressionKey(key))
    }

    /// The entry for `value` of `kind`, in hex.
    ///
    /// The hash's block buffer holds the tagged value, and it lives on the stack (moved
    /// there more than once): the stack below this call is wiped afterwards, so no phone
    /// or email stays behind in it.
    fn entry(&self, kind: Kind, value: &str) -> String {
        let entry = self.hmac(kind, value);
        wipe_stack_below();
        entry
    }

    #[inline(never)]
    fn hmac(&self, kind: Kind, value: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0[..]).expect("HMAC takes keys of any length");
        mac.update(kind.prefix().as_bytes());
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The key under which a GUID's sent contact is remembered, in hex: the GUID in text
    /// form, trimmed and lower-cased, tagged `guid:`.
    fn guid_entry(&self, guid: &str) -> String {
        self.entry(Kind::Guid, &guid.trim().to_ascii_lowercase())
    }

    /// The entries for a contact's phone and email, those present.
    fn entries(&self, phone: Option<&str>, email: Option<&str>) -> Vec<String> {
        let mut out = Vec::with_capacity(2);
        if let Some(phone) = phone.and_then(normalise_phone) {
            out.push(self.entry(Kind::Phone, phone));
        }
        if let Some(email) = email.and_then(normalise_email) {
            out.push(self.entry(Kind::Email, &email));
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Phone,
    Email,
    /// Not a suppression entry: the key of a remembered sent contact.
    Guid,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Phone => "phone:",
            Kind::Email => "email:",
            Kind::Guid => "guid:",
        }
    }
}

/// Overwrites the 16 KiB of stack below the caller's frame, where the frames of the calls
/// it just made were.
#[inline(never)]
fn wipe_stack_below() {
    use zeroize::Zeroize;
    let mut area = [0u64; 2048];
    area.zeroize();
    std::hint::black_box(&area);
}

/// A phone as it is matched: E.164 as given, trimmed; `None` when empty.
fn normalise_phone(phone: &str) -> Option<&str> {
    Some(phone.trim()).filter(|p| !p.is_empty())
}

/// An email as it is matched: trimmed and lower-cased; `None` when empty.
fn normalise_email(email: &str) -> Option<String> {
    Some(email.trim().to_lowercase()).filter(|e| !e.is_empty())
}

/// A contact's phone and email, as given to [`Suppression::add`]. Its `Debug` shows only
/// which of the two are present.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ContactKeys {
    /// The phone, E.164.
    pub phone: Option<String>,
    /// The email.
    pub email: Option<String>,
}

impl std::fmt::Debug for ContactKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| if v.is_some() { "<redacted>" } else { "<none>" };
        f.debug_struct("ContactKeys")
            .field("phone", &shown(&self.phone))
            .field("email", &shown(&self.email))
            .finish()
    }
}

/// The suppression list.
#[derive(Clone)]
pub struct Suppression {
    pool: AnyPool,
    key: SuppressionKey,
}

impl std::fmt::Debug for Suppression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suppression").finish_non_exhaustive()
    }
}

impl Suppression {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`) and migrates.
    pub async fn connect(url: &str, key: SuppressionKey) -> Result<Suppression, SuppressionError> {
        sqlx::any::install_default_drivers();
        let max = if url.starts_with("sqlite:") { 1 } else { 8 };
        let pool = AnyPoolOptions::new().max_connections(max).connect(url).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Suppression { pool, key })
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Adds a contact's phone and email (those present); adding again changes nothing.
    /// Returns how many entries were new.
    pub async fn add(&self, contact: &ContactKeys) -> Result<u64, SuppressionError> {
        let entries = self.key.entries(contact.phone.as_deref(), contact.email.as_deref());
        let mut tx = self.pool.begin().await?;
        let mut added = 0;
        for entry in &entries {
            added += sqlx::query(
                "INSERT INTO suppressions (entry_hmac) VALUES ($1) ON CONFLICT (entry_hmac) DO NOTHING",
            )
            .bind(entry)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Whether the phone or the email (those given) is on the list.
    ///
    /// A database failure is an error, never "not suppressed": the caller must not send.
    pub async fn is_suppressed(
        &self,
        phone: Option<&str>,
        email: Option<&str>,
    ) -> Result<bool, SuppressionError> {
        for entry in self.key.entries(phone, email) {
            let found = sqlx::query("SELECT entry_hmac FROM suppressions WHERE entry_hmac = $1")
                .bind(&entry)
                .fetch_optional(&self.pool)
                .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// How many entries the list holds, for reports and tests.
    pub async fn len(&self) -> Result<i64, SuppressionError> {
        use sqlx::Row;
        let row = sqlx::query("SELECT COUNT(*) FROM suppressions").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Whether the list is empty.
    pub async fn is_empty(&self) -> Result<bool, SuppressionError> {
        Ok(self.len().await? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SuppressionKey {
        SuppressionKey::from_bytes([7; 32])
    }

    #[test]
    fn email_is_trimmed_and_lower_cased_phone_only_trimmed() {
        let k = key();
        assert_eq!(k.entries(None, Some(" Ana@Example.ORG ")), k.entries(None, Some("ana@example.org")));
        assert_eq!(k.entries(Some(" +16139990100\n"), None), k.entries(Some("+16139990100"), None));
        assert_ne!(k.entries(Some("+16139990100"), None), k.entries(Some("+16139990101"), None));
        assert!(k.entries(Some("  "), Some("")).is_empty());
    }

    #[test]
    fn kind_is_part_of_the_entry() {
        let k = key();
        assert_ne!(k.entry(Kind::Phone, "x"), k.entry(Kind::Email, "x"));
        assert_ne!(k.entry(Kind::Phone, "x"), k.entry(Kind::Guid, "x"));
        assert_ne!(k.entry(Kind::Email, "x"), k.entry(Kind::Guid, "x"));
        let other = SuppressionKey::from_bytes([8; 32]);
        assert_ne!(k.entry(Kind::Phone, "+1"), other.entry(Kind::Phone, "+1"));
    }

    #[test]
    fn entries_hold_no_plaintext() {
        let entries = key().entries(Some("+16139990100"), Some("ana@example.org"));
        assert_eq!(entries.len(), 2);
        for e in entries {
            assert_eq!(e.len(), 64);
            assert!(!e.contains("5145550100") && !e.contains("ana"));
        }
    }

    #[test]
    fn debug_redacts() {
        let c = ContactKeys { phone: Some("+16139990100".into()), email: Some("ana@example.org".into()) };
        let shown = format!("{c:?} {:?}", key());
        assert!(!shown.contains("5145550100") && !shown.contains("ana@"), "{shown}");
    }

    #[test]
    fn key_file_must_hold_64_hex_digits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        assert!(SuppressionKey::load(&path).is_ok());
        std::fs::write(&path, "abcd").unwrap();
        assert!(matches!(SuppressionKey::load(&path), Err(SuppressionError::Key { .. })));
    }
}
