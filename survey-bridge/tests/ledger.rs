//! RecordInvitation over mutual TLS: idempotent, role-checked, each bad field named; and
//! the schema keeps GUIDs away from answers. InvitationAnswered: unused, answered, declined,
//! unknown, expired, malformed, and only for the outreach role. gRPC health and reflection
//! (v1 and v1alpha) on the same port.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{Bridge, databases, guid, invitation, start};
use jiff::SignedDuration;
use proto::ledger::InvitationAnsweredRequest;
use sqlx::Row;
use test_support::reflection::{Version, file_containing_symbol, list_services};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

/// A TLS connection to the ledger port with the bridge's CA but no client certificate, as a
/// load balancer's health check connects.
async fn without_certificate(bridge: &Bridge) -> Channel {
    let ca = std::fs::read_to_string(bridge.dir.path().join("ca.pem")).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    Channel::from_shared(format!("https://{}", bridge.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A connection to the ledger port presenting the certificate written for `name`.
async fn certified(bridge: &Bridge, name: &str) -> Channel {
    test_support::mtls_channel(bridge.dir.path(), name, bridge.grpc).await
}

const LEDGER: &str = "surveybridge.v1.InvitationLedger";

#[tokio::test]
async fn health_is_serving_for_any_tls_client_and_not_serving_once_draining() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&common::sqlite(dir.path()), |c| c.shutdown_grace_seconds = 5).await;
    // The worker, another role, and a client without a certificate: health is no ledger call.
    let channels = [
        ("outreach", certified(&bridge, "outreach").await),
        ("admin", certified(&bridge, "admin").await),
        ("no certificate", without_certificate(&bridge).await),
    ];
    for (who, channel) in &channels {
        let mut health = HealthClient::new(channel.clone());
        for service in ["", LEDGER] {
            let answer = health.check(HealthCheckRequest { service: service.into() }).await;
            let status = answer.unwrap_or_else(|s| panic!("{who} {service:?}: {s:?}")).into_inner().status();
            assert_eq!(status, ServingStatus::Serving, "{who} {service:?}");
        }
    }
    // So it is not refused, counted or audited as a call without a certificate.
    assert!(bridge.audit_lines().iter().all(|l| l["action"] != "AUTH_FAILED"));

    let mut health = HealthClient::new(channels[0].1.clone());
    let mut watch = health.watch(HealthCheckRequest { service: LEDGER.into() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status(), ServingStatus::Serving);
    let stopping = tokio::spawn(bridge.stop());
    assert_eq!(watch.message().await.unwrap().unwrap().status(), ServingStatus::NotServing);
    drop((watch, health, channels));
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn reflection_lists_exactly_the_ledger_health_and_reflection_in_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&common::sqlite(dir.path()), |_| {}).await;
    let served: BTreeSet<String> = [
        LEDGER,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for who in ["outreach", "admin"] {
        let channel = certified(&bridge, who).await;
        for version in Version::ALL {
            let listed = list_services(channel.clone(), version).await.unwrap();
            assert_eq!(listed, served, "{who} {version:?}");
            let files = file_containing_symbol(channel.clone(), version, LEDGER).await.unwrap();
            assert_eq!(
                files,
                [("surveybridge/v1/ledger.proto".to_string(), vec!["InvitationLedger".to_string()])],
                "{who} {version:?}"
            );
            // The cache's contract is the cache's: not described here.
            let cache =
                file_containing_symbol(channel.clone(), version, "contactcache.v1.ContactCache").await;
            assert_eq!(cache.unwrap_err().code(), Code::NotFound, "{who} {version:?}");
        }
    }
}

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
async fn calls_without_a_certificate_are_throttled_and_audited_a_few_lines_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&common::sqlite(dir.path()), |_| {}).await;
    let mut outreach = bridge.ledger_as("outreach").await;
    let channel = without_certificate(&bridge).await;
    let mut anonymous = proto::ledger::invitation_ledger_client::InvitationLedgerClient::new(channel);
    for _ in 0..1_000 {
        let status = anonymous
            .record_invitation(invitation(&guid(), "prov-a1", "en", bridge.clock.now()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // The worker, connected before, is served as ever.
    outreach.record_invitation(invitation(&guid(), "prov-a1", "en", bridge.clock.now())).await.unwrap();
    let lines = bridge.audit_lines();
    let count = |action: &str| lines.iter().filter(|l| l["action"] == action).count();
    assert_eq!((count("AUTH_FAILED"), count("PEER_THROTTLED")), (1, 1), "not one line per call");
    // The next window's first refusal carries the count of the rest.
    bridge.clock.advance(SignedDuration::from_secs(61));
    let status = anonymous
        .record_invitation(invitation(&guid(), "prov-a1", "en", bridge.clock.now()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let lines = bridge.audit_lines();
    let failed: Vec<_> = lines.iter().filter(|l| l["action"] == "AUTH_FAILED").collect();
    assert_eq!(failed.len(), 3);
    assert_eq!(failed[1]["count"], 999);
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
    // Sent so long ago that the link has expired (it may have been retired, and would count
    // again), or in a month already released to the reports (whose figures must not move).
    let (old, october) = ("2026-10-20T12:00:00Z", "2026-10-31T12:00:00Z");
    for (sent, named) in [(old, "link has expired"), (october, "already released")] {
        let request = invitation(&guid(), "prov-a1", "en", sent.parse().unwrap());
        let status = ledger.record_invitation(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{sent}");
        assert!(status.message().contains(named), "{sent}: {}", status.message());
    }
    // Sent in November, still open: recorded.
    ledger
        .record_invitation(invitation(&guid(), "prov-a1", "en", "2026-11-02T12:00:00Z".parse().unwrap()))
        .await
        .unwrap();
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

async fn answered(bridge: &Bridge, guid: &str) -> Result<bool, tonic::Status> {
    let mut ledger = bridge.ledger_as("outreach").await;
    let request = InvitationAnsweredRequest { guid: guid.into() };
    ledger.invitation_answered(request).await.map(|r| r.into_inner().answered)
}

#[tokio::test]
async fn invitation_answered_follows_the_link() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |c| c.link_valid_days = 30).await;
        let (unused, done, declined, expiring) = (guid(), guid(), guid(), guid());
        // Sent a day ago, so that it expires a day before the others.
        bridge
            .invite_at(&expiring, "prov-a1", "en", bridge.clock.now() - SignedDuration::from_hours(24))
            .await;
        for g in [&unused, &done, &declined] {
            bridge.invite(g, "prov-a1", "en").await;
        }
        for g in [&unused, &done, &declined, &expiring] {
            assert!(!answered(&bridge, g).await.unwrap(), "recorded, unused: {url}");
        }
        bridge.answer_survey(&done).await;
        bridge.decline(&declined).await;
        assert!(!answered(&bridge, &unused).await.unwrap());
        assert!(answered(&bridge, &done).await.unwrap(), "answered: {url}");
        assert!(answered(&bridge, &declined).await.unwrap(), "declined: {url}");

        let unknown = answered(&bridge, &guid()).await.unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound, "{url}");
        bridge.clock.advance(SignedDuration::from_hours(24 * 29));
        let expired = answered(&bridge, &expiring).await.unwrap_err();
        assert_eq!(expired.code(), Code::NotFound, "expired: {url}");
        assert!(!answered(&bridge, &unused).await.unwrap(), "the others still work");
        bridge.clock.advance(SignedDuration::from_hours(24));
        for g in [&unused, &done, &declined] {
            assert_eq!(answered(&bridge, g).await.unwrap_err().code(), Code::NotFound, "{url}");
        }

        let lines = bridge.audit_lines();
        let checks: Vec<_> = lines.iter().filter(|l| l["action"] == "INVITATION_ANSWERED_CHECKED").collect();
        assert!(checks.iter().any(|l| l["result"] == "ok" && l["guid_hmac"].is_string()));
        assert!(checks.iter().any(|l| l["result"] == "not_found"));
        assert!(checks.iter().all(|l| l["role"] == "outreach"));
        let audit = std::fs::read_to_string(bridge.path("audit.jsonl")).unwrap();
        for g in [&unused, &done, &declined, &expiring] {
            assert!(!audit.contains(g.as_str()), "a raw GUID in the audit log");
        }
    }
}

#[tokio::test]
async fn invitation_answered_names_a_malformed_guid() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&common::sqlite(dir.path()), |_| {}).await;
    for bad in ["", "nope", "0000"] {
        let status = answered(&bridge, bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "guid");
    }
    let lines = bridge.audit_lines();
    assert!(
        lines
            .iter()
            .any(|l| l["action"] == "INVITATION_ANSWERED_CHECKED" && l["result"] == "invalid_argument")
    );
}

#[tokio::test]
async fn only_the_outreach_role_may_ask_whether_answered() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&common::sqlite(dir.path()), |_| {}).await;
    let g = guid();
    bridge.invite(&g, "prov-a1", "en").await;
    for name in ["admin", "bridge", "emr-site-1001"] {
        let mut ledger = bridge.ledger_as(name).await;
        let status =
            ledger.invitation_answered(InvitationAnsweredRequest { guid: g.clone() }).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{name}");
        assert!(status.message().contains("InvitationAnswered"), "{}", status.message());
    }
    let lines = bridge.audit_lines();
    let denied: Vec<_> = lines
        .iter()
        .filter(|l| l["action"] == "PERMISSION_DENIED" && l["rpc"] == "InvitationAnswered")
        .collect();
    assert_eq!(denied.len(), 3, "{lines:?}");
    assert!(answered(&bridge, &g).await.is_ok());
}

#[tokio::test]
async fn a_request_message_over_the_limit_is_refused_resource_exhausted_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    let mut ledger = bridge.ledger_as("outreach").await;
    let mut huge = invitation(&guid(), "prov-a1", "en", bridge.clock.now());
    huge.campaign_id = "c".repeat(5 << 20);
    let refused = ledger.record_invitation(huge).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("over the limit of 4194304 bytes"), "{}", refused.message());
    // The connection and the ledger still serve.
    let g = guid();
    let ok = ledger.record_invitation(invitation(&g, "prov-a1", "en", bridge.clock.now())).await.unwrap();
    assert!(ok.get_ref().created);
}
