//! The HTTPS port's health probes: `/healthz` (liveness) and `/readyz` (readiness: the
//! database answers and the certificate is in date), under the pages' security headers,
//! never counted as link guesses, never audited.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Bridge, databases, guid, start};
use jiff::SignedDuration;
use reqwest::StatusCode;
use sqlx::Connection;

/// The status and body of `GET path`.
async fn get(bridge: &Bridge, path: &str) -> (StatusCode, String) {
    let response = bridge.http().get(bridge.url(path)).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_probes_answer_under_the_security_headers_and_are_no_link_guesses() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&common::sqlite(dir.path()), |c| c.max_bad_links_per_minute = 3).await;
    let good = guid();
    bridge.invite(&good, "prov-a1", "en").await;
    let audited = bridge.audit_lines().len();
    let http = bridge.http();
    // Well past max_bad_links_per_minute, from the one client address.
    for _ in 0..10 {
        for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
            let response = http.get(bridge.url(path)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers();
            assert!(headers.contains_key("strict-transport-security"), "{path}: {headers:?}");
            assert_eq!(headers["cache-control"], "no-store", "{path}");
            assert_eq!(response.text().await.unwrap(), body, "{path}");
        }
    }
    // Had they been guesses, they would have filled the bucket of things that are not links
    // at all (neither path starts with four hex digits): a malformed link would be refused
    // (429) rather than answered (404). And the good link opens.
    let (malformed, _) = get(&bridge, "/s/not-a-link").await;
    assert_eq!(malformed, StatusCode::NOT_FOUND);
    let (open, _) = get(&bridge, &format!("/s/{good}")).await;
    assert_eq!(open, StatusCode::OK);
    // Not audited: the only lines since are the malformed link's.
    let lines = bridge.audit_lines();
    let since: Vec<_> = lines[audited..].iter().map(|l| l["action"].as_str().unwrap_or_default()).collect();
    assert_eq!(since, ["GUID_REJECTED"]);
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        assert_eq!(get(&bridge, "/readyz").await, (StatusCode::OK, "ready".into()), "{url}");

        // The database stops answering. SQLite: another process holds the file locked
        // (`BEGIN EXCLUSIVE`, as `sqlite3` or a careless backup would), so the bridge can read
        // nothing, pages and ledger alike. PostgreSQL: the database is dropped, its sessions
        // (the bridge's pool) ended with it.
        let sqlite_lock = if url.starts_with("sqlite:") {
            let mut lock = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN EXCLUSIVE").execute(&mut lock).await.unwrap();
            Some(lock)
        } else {
            let admin = std::env::var("BRIDGE_TEST_POSTGRES_URL").unwrap();
            let name = url.rsplit('/').next().unwrap().to_string();
            let mut admin = sqlx::PgConnection::connect(&admin).await.unwrap();
            let drop = format!("DROP DATABASE {name} WITH (FORCE)");
            sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await.unwrap();
            None
        };
        let (status, body) = get(&bridge, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "database not answering"),
            "{url}"
        );
        // Alive all the same.
        assert_eq!(get(&bridge, "/healthz").await, (StatusCode::OK, "ok".into()), "{url}");

        // The lock released, ready again.
        if let Some(mut lock) = sqlite_lock {
            sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
            assert_eq!(get(&bridge, "/readyz").await, (StatusCode::OK, "ready".into()), "{url}");
        }
    }
}

#[tokio::test]
async fn readiness_fails_once_the_certificate_served_has_expired() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&common::sqlite(dir.path()), |_| {}).await;
    assert_eq!(get(&bridge, "/readyz").await.0, StatusCode::OK);
    // The test certificates are good for about two years.
    bridge.clock.advance(SignedDuration::from_hours(24 * 366 * 3));
    let (status, body) = get(&bridge, "/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "tls certificate expired"));
    assert_eq!(get(&bridge, "/healthz").await, (StatusCode::OK, "ok".into()));
}
