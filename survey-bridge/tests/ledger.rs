//! RecordInvitation over mutual TLS: idempotent, role-checked, each bad field named; and
//! the schema keeps GUIDs away from answers.
#![allow(clippy::unwrap_used)]

mod common;

use common::{databases, guid, invitation, start};
use sqlx::Row;
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn recording_is_idempotent_and_conflicts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        let mut ledger = bridge.ledger_as("outreach").await;
        let g = guid();
        let first =
            ledger.record_invitation(invitation(&g, "prov-a1", "en", bridge.clock.now())).await.unwrap();
        assert!(first.get_ref().created);
        let expires = first.get_ref().expires_at.unwrap().seconds;
        assert_eq!(expires, bridge.clock.now().as_second() + 30 * 86_400);
        let again =
            ledger.record_invitation(invitation(&g, "prov-a1", "en", bridge.clock.now())).await.unwrap();
        assert!(!again.get_ref().created);
        let other =
            ledger.record_invitation(invitation(&g, "prov-a2", "en", bridge.clock.now())).await.unwrap_err();
        assert_eq!(other.code(), Code::AlreadyExists);
        let db = survey_bridge::db::Db::connect(&url).await.unwrap();
        let counts = db.period_counts("site-1001", "prov-a1", "pcpe-2026q4", "2026-11").await.unwrap();
        assert_eq!(counts.invitations, 1, "{url}");
    }
}

#[tokio::test]
async fn only_the_outreach_role_may_record() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    for name in ["admin", "bridge", "emr-site-1001"] {
        let mut ledger = bridge.ledger_as(name).await;
        let status = ledger
            .record_invitation(invitation(&guid(), "prov-a1", "en", bridge.clock.now()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{name}");
    }
}

#[tokio::test]
async fn each_bad_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    let mut ledger = bridge.ledger_as("outreach").await;
    let now = bridge.clock.now();
    type Spoil = fn(&mut proto::ledger::RecordInvitationRequest);
    let cases: [(Spoil, &str); 7] = [
        (|r| r.guid = "nope".into(), "guid"),
        (|r| r.site_id = String::new(), "site_id"),
        (|r| r.provider_id = "a b".into(), "provider_id"),
        (|r| r.campaign_id = "x".repeat(65), "campaign_id"),
        (|r| r.channel = 0, "channel"),
        (|r| r.language = "de".into(), "language"),
        (|r| r.sent_at = None, "sent_at"),
    ];
    for (spoil, field) in cases {
        let mut request = invitation(&guid(), "prov-a1", "en", now);
        spoil(&mut request);
        let status = ledger.record_invitation(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, field);
    }
}

#[tokio::test]
async fn no_table_holds_a_guid_beside_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        bridge.invite(&guid(), "prov-a1", "en").await;
        let db = survey_bridge::db::Db::connect(&url).await.unwrap();
        let sql = if url.starts_with("sqlite") {
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'"
        } else {
            "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = 'public'"
        };
        let rows = sqlx::query(sql).fetch_all(db.pool()).await.unwrap();
        let mut tables: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for row in rows {
            tables.entry(row.get::<String, _>(0)).or_default().push(row.get::<String, _>(1));
        }
        assert!(tables.contains_key("invitations") && tables.contains_key("answer_counts"), "{tables:?}");
        for (table, columns) in tables.iter().filter(|(t, _)| !t.starts_with("_sqlx")) {
            let has_guid = columns.iter().any(|c| c.contains("guid"));
            let has_answer = columns.iter().any(|c| c == "answer" || c == "question");
            assert!(!(has_guid && has_answer), "{table} holds a GUID beside an answer: {columns:?}");
            assert!(
                !columns.iter().any(|c| c.contains("time") || c == "answered_at"),
                "{table}: {columns:?}"
            );
        }
    }
}
