//! The suppression list on SQLite and (when `BRIDGE_TEST_POSTGRES_URL` is set) PostgreSQL.
#![allow(clippy::unwrap_used)]

use outreach_worker::suppression::{ContactKeys, Suppression, SuppressionKey};

/// The databases to test against: a new SQLite file, and a new PostgreSQL database when
/// `BRIDGE_TEST_POSTGRES_URL` is set (`BRIDGE_REQUIRE_POSTGRES=1` makes its absence fail).
async fn databases(dir: &std::path::Path) -> Vec<String> {
    test_support::databases(dir, "worker").await
}

fn key() -> SuppressionKey {
    SuppressionKey::from_bytes([0x5a; 32])
}

fn contact(phone: Option<&str>, email: Option<&str>) -> ContactKeys {
    ContactKeys { phone: phone.map(Into::into), email: email.map(Into::into) }
}

#[tokio::test]
async fn suppression_survives_a_restart_and_blocks_a_new_contact_sharing_the_phone() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let list = Suppression::connect(&url, key()).await.unwrap();
        assert!(!list.is_suppressed(Some("+15145550100"), Some("ana@example.org")).await.unwrap());
        assert_eq!(list.add(&contact(Some("+15145550100"), Some("Ana@Example.org"))).await.unwrap(), 2);
        assert_eq!(list.add(&contact(Some(" +15145550100 "), Some("ana@example.org"))).await.unwrap(), 0);
        assert_eq!(list.len().await.unwrap(), 2);
        list.close().await;
        drop(list);

        let list = Suppression::connect(&url, key()).await.unwrap();
        assert_eq!(list.len().await.unwrap(), 2, "{url}");
        assert!(list.is_suppressed(Some("+15145550100"), Some("ana@example.org")).await.unwrap());
        // A new contact: the same phone, another email.
        assert!(list.is_suppressed(Some("+15145550100"), Some("other@example.org")).await.unwrap());
        // The same email, differently written, and no phone.
        assert!(list.is_suppressed(None, Some("  ANA@example.ORG")).await.unwrap());
        assert!(!list.is_suppressed(Some("+15145550199"), Some("other@example.org")).await.unwrap());
        assert!(!list.is_suppressed(None, None).await.unwrap());
        // Under another key nothing matches.
        list.close().await;
        let other = Suppression::connect(&url, SuppressionKey::from_bytes([1; 32])).await.unwrap();
        assert!(!other.is_suppressed(Some("+15145550100"), None).await.unwrap());
        other.close().await;
    }
}

#[tokio::test]
async fn the_database_holds_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("worker.db").display());
    let list = Suppression::connect(&url, key()).await.unwrap();
    list.add(&contact(Some("+15145550100"), Some("ana@example.org"))).await.unwrap();
    list.add(&contact(None, Some("bo@example.org"))).await.unwrap();
    let guid = "6f1c2a9e-3b4d-4c5e-8f70-112233445566";
    list.remember_sent(guid, &contact(Some("+15145550101"), Some("cy@example.org")), 1).await.unwrap();
    list.close().await;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["5145550100", "5145550101", "ana@", "cy@", "example.org", guid, "6f1c2a9e3b4d"] {
            assert!(!text.contains(secret), "{secret} found on disk");
        }
    }
}

#[tokio::test]
async fn a_remembered_sent_contact_moves_to_the_list_once_or_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let (g1, g2) = ("6f1c2a9e-3b4d-4c5e-8f70-112233445566", "7f1c2a9e-3b4d-4c5e-8f70-112233445566");
    for url in databases(dir.path()).await {
        let list = Suppression::connect(&url, key()).await.unwrap();
        list.remember_sent(g1, &contact(Some("+15145550100"), Some("ana@example.org")), 1_000).await.unwrap();
        list.remember_sent(g2, &contact(None, Some("bo@example.org")), 2_000).await.unwrap();
        list.remember_sent(g1, &contact(Some("+15145550100"), None), 3_000).await.unwrap();
        assert_eq!(list.sent_len().await.unwrap(), 2, "{url}");
        list.close().await;

        // After a restart: the first suppressed with both its entries, the second forgotten.
        let list = Suppression::connect(&url, key()).await.unwrap();
        assert!(list.suppress_sent(g1).await.unwrap(), "{url}");
        assert!(!list.suppress_sent(g1).await.unwrap(), "once: {url}");
        assert_eq!(list.len().await.unwrap(), 2, "{url}");
        assert!(list.is_suppressed(None, Some("Ana@Example.org")).await.unwrap());
        assert!(list.is_suppressed(Some("+15145550100"), None).await.unwrap());
        assert_eq!(list.forget_before(1_999).await.unwrap(), 0, "{url}");
        assert_eq!(list.forget_before(2_000).await.unwrap(), 1, "{url}");
        assert!(!list.suppress_sent(g2).await.unwrap(), "{url}");
        assert!(!list.is_suppressed(None, Some("bo@example.org")).await.unwrap());
        assert_eq!(list.sent_len().await.unwrap(), 0, "{url}");
        list.close().await;
    }
}
