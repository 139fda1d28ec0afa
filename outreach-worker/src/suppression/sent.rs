//! The contacts of messages sent, remembered by GUID (`sent_contacts`), so that an opt-out
//! that comes after the cache has erased the contact still reaches the suppression list.
//!
//! The cache erases a contact as soon as its last message is sent, and most patients opt
//! out after they receive the invitation: the cache's opt-out path (`DUE_KIND_SUPPRESS`)
//! then has nothing left to hand out. So when a message goes out, the worker keeps the
//! link between its GUID and the contact's suppression entries, as HMACs only: the key of
//! a row is the HMAC of `guid:` + the GUID, its value the entries exactly as
//! [`Suppression::add`] would store them. When the bridge later reports an opt-out for the
//! GUID, [`Suppression::suppress_sent`] moves those entries to the suppression list. A row
//! lives until then, or until its `forget_at` (the link's life and a day: after that the
//! bridge accepts no opt-out under the GUID).

use sqlx::Row;

use super::{ContactKeys, Suppression, SuppressionError};

impl Suppression {
    /// Remembers that a message to `contact` went out under `guid`, until `forget_at` (unix
    /// seconds). Remembering the same GUID again changes nothing (the first sending decides
    /// when it is forgotten). A contact with no phone and no email leaves nothing to
    /// remember.
    pub async fn remember_sent(
        &self,
        guid: &str,
        contact: &ContactKeys,
        forget_at: i64,
    ) -> Result<(), SuppressionError> {
        let entries = self.key.entries(contact.phone.as_deref(), contact.email.as_deref());
        if entries.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO sent_contacts (guid_hmac, entries, forget_at) VALUES ($1, $2, $3) \
             ON CONFLICT (guid_hmac) DO NOTHING",
        )
        .bind(self.key.guid_entry(guid))
        .bind(entries.join(","))
        .bind(forget_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The patient behind `guid` opted out: moves the entries remembered for it to the
    /// suppression list and forgets the GUID, in one transaction. True when something was
    /// remembered for it; false when this worker never sent under it or has forgotten it.
    pub async fn suppress_sent(&self, guid: &str) -> Result<bool, SuppressionError> {
        let guid_hmac = self.key.guid_entry(guid);
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT entries FROM sent_contacts WHERE guid_hmac = $1")
            .bind(&guid_hmac)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let entries: String = row.try_get(0)?;
        for entry in entries.split(',').filter(|e| !e.is_empty()) {
            sqlx::query(
                "INSERT INTO suppressions (entry_hmac) VALUES ($1) ON CONFLICT (entry_hmac) DO NOTHING",
            )
            .bind(entry)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM sent_contacts WHERE guid_hmac = $1")
            .bind(&guid_hmac)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets every sent contact whose `forget_at` is at or before `now` (unix seconds);
    /// returns how many.
    pub async fn forget_before(&self, now: i64) -> Result<u64, SuppressionError> {
        let deleted = sqlx::query("DELETE FROM sent_contacts WHERE forget_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }

    /// How many sent contacts are remembered, for reports and tests.
    pub async fn sent_len(&self) -> Result<i64, SuppressionError> {
        let row = sqlx::query("SELECT COUNT(*) FROM sent_contacts").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suppression::SuppressionKey;

    const GUID: &str = "0b7e3d4c-5a6f-4e21-9c8d-7f6a5b4c3d2e";

    async fn list(dir: &std::path::Path) -> Suppression {
        let url = format!("sqlite://{}?mode=rwc", dir.join("w.db").display());
        Suppression::connect(&url, SuppressionKey::from_bytes([3; 32])).await.unwrap()
    }

    fn ana() -> ContactKeys {
        ContactKeys { phone: Some("+16139990100".into()), email: Some("Ana@Example.org".into()) }
    }

    #[tokio::test]
    async fn a_remembered_contact_is_suppressed_once_and_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let list = list(dir.path()).await;
        list.remember_sent(GUID, &ana(), 100).await.unwrap();
        // Again (a second sending): still one row.
        list.remember_sent(GUID, &ana(), 200).await.unwrap();
        assert_eq!(list.sent_len().await.unwrap(), 1);
        // The GUID as the bridge may write it.
        assert!(list.suppress_sent(&format!(" {} ", GUID.to_uppercase())).await.unwrap());
        assert_eq!(list.sent_len().await.unwrap(), 0);
        assert_eq!(list.len().await.unwrap(), 2);
        assert!(list.is_suppressed(Some("+16139990100"), None).await.unwrap());
        assert!(list.is_suppressed(None, Some("ana@example.org")).await.unwrap());
        assert!(!list.suppress_sent(GUID).await.unwrap(), "handled: nothing left");
    }

    #[tokio::test]
    async fn rows_are_forgotten_at_their_time_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let list = list(dir.path()).await;
        let other = "1b7e3d4c-5a6f-4e21-9c8d-7f6a5b4c3d2e";
        list.remember_sent(GUID, &ana(), 100).await.unwrap();
        list.remember_sent(other, &ContactKeys { phone: None, email: Some("bo@example.org".into()) }, 101)
            .await
            .unwrap();
        list.remember_sent("2b7e3d4c-5a6f-4e21-9c8d-7f6a5b4c3d2e", &ContactKeys::default(), 100)
            .await
            .unwrap();
        assert_eq!(list.sent_len().await.unwrap(), 2, "nothing to remember without phone or email");
        assert_eq!(list.forget_before(99).await.unwrap(), 0);
        assert_eq!(list.forget_before(100).await.unwrap(), 1);
        assert!(!list.suppress_sent(GUID).await.unwrap());
        assert!(list.suppress_sent(other).await.unwrap());
        assert_eq!(list.len().await.unwrap(), 1);
    }
}
