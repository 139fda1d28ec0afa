//! The outreach worker's queue of opt-outs, against a real bridge on SQLite and on
//! PostgreSQL: declines and unsubscribes queue the GUID beside the cache's outbox;
//! PendingOptOuts lists them oldest first without removing them; ConfirmOptOuts removes
//! them; old ones are forgotten; only the outreach role may call either, and bad arguments
//! are named.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Bridge, databases, guid, start};
use jiff::SignedDuration;
use proto::ledger::{ConfirmOptOutsRequest, PendingOptOutsRequest};
use survey_bridge::db::Db;
use tonic::{Code, Status};
use tonic_types::StatusExt;

async fn pending(bridge: &Bridge, max: u32) -> Result<Vec<String>, Status> {
    let mut ledger = bridge.ledger_as("outreach").await;
    ledger.pending_opt_outs(PendingOptOutsRequest { max }).await.map(|r| r.into_inner().guids)
}

async fn confirm(bridge: &Bridge, guids: &[&String]) -> Result<(), Status> {
    let mut ledger = bridge.ledger_as("outreach").await;
    let request = ConfirmOptOutsRequest { guids: guids.iter().map(|g| g.to_string()).collect() };
    ledger.confirm_opt_outs(request).await.map(|_| ())
}

#[tokio::test]
async fn declines_and_unsubscribes_wait_for_the_worker_until_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        let (declined, unsubscribed, answered, unused) = (guid(), guid(), guid(), guid());
        for g in [&declined, &unsubscribed, &answered, &unused] {
            bridge.invite(g, "prov-a1", "en").await;
        }
        assert!(pending(&bridge, 10).await.unwrap().is_empty(), "{url}");
        bridge.answer_survey(&answered).await;
        assert!(pending(&bridge, 10).await.unwrap().is_empty(), "an answer is no opt-out: {url}");

        // One a minute, so that their order is their age.
        bridge.decline(&declined).await;
        bridge.clock.advance(SignedDuration::from_mins(1));
        bridge.unsubscribe(&unsubscribed).await;
        bridge.clock.advance(SignedDuration::from_mins(1));
        bridge.unsubscribe(&answered).await;
        bridge.clock.advance(SignedDuration::from_mins(1));
        // A declined invitation unsubscribed again queues nothing more.
        bridge.unsubscribe(&declined).await;

        let all = vec![declined.clone(), unsubscribed.clone(), answered.clone()];
        assert_eq!(pending(&bridge, 500).await.unwrap(), all, "oldest first: {url}");
        assert_eq!(pending(&bridge, 2).await.unwrap(), all[..2], "at most max");
        assert_eq!(pending(&bridge, 500).await.unwrap(), all, "listing removes nothing");
        // The cache's outbox has them too: the two queues are independent.
        let db = Db::connect(&url).await.unwrap();
        let mut outbox: Vec<String> =
            db.pending_opt_outs().await.unwrap().into_iter().map(|(g, _)| g).collect();
        let mut expected = all.clone();
        outbox.sort();
        expected.sort();
        assert_eq!(outbox, expected, "{url}");

        // Confirming removes them; unknown GUIDs (never queued, or already confirmed) are
        // ignored.
        let stranger = guid();
        confirm(&bridge, &[&declined, &stranger]).await.unwrap();
        assert_eq!(pending(&bridge, 500).await.unwrap(), all[1..], "{url}");
        confirm(&bridge, &[&unsubscribed, &answered, &declined]).await.unwrap();
        assert!(pending(&bridge, 500).await.unwrap().is_empty(), "{url}");
        confirm(&bridge, &[]).await.unwrap();
        assert_eq!(db.pending_opt_outs().await.unwrap().len(), 3, "the cache's outbox is not touched");

        // Audited as one event per call, with a count, and no GUID in the clear.
        let lines = bridge.audit_lines();
        let read: Vec<_> = lines.iter().filter(|l| l["action"] == "WORKER_OPT_OUTS_READ").collect();
        assert!(read.iter().all(|l| l["role"] == "outreach" && l["result"] == "ok"));
        assert!(read.iter().any(|l| l["count"] == 3) && read.iter().any(|l| l["count"] == 2));
        let confirmed: Vec<_> = lines.iter().filter(|l| l["action"] == "WORKER_OPT_OUTS_CONFIRMED").collect();
        let counts: Vec<_> = confirmed.iter().map(|l| l["count"].as_u64().unwrap()).collect();
        assert_eq!(counts, [1, 2, 0], "{url}");
        let audit = std::fs::read_to_string(bridge.path("audit.jsonl")).unwrap();
        for g in [&declined, &unsubscribed, &answered, &unused, &stranger] {
            assert!(!audit.contains(g.as_str()), "a raw GUID in the audit log");
        }
    }
}

#[tokio::test]
async fn the_worker_queue_forgets_what_the_worker_could_no_longer_use() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |c| c.link_valid_days = 30).await;
        let (early, late) = (guid(), guid());
        bridge.invite(&early, "prov-a1", "en").await;
        bridge.invite(&late, "prov-a1", "en").await;
        bridge.decline(&early).await;
        bridge.clock.advance(SignedDuration::from_hours(24 * 29));
        bridge.unsubscribe(&late).await;
        // Kept for link_valid_days + 1 days after it was queued, then gone.
        bridge.clock.advance(SignedDuration::from_hours(24 * 2));
        assert_eq!(pending(&bridge, 10).await.unwrap(), [early.clone(), late.clone()], "{url}");
        bridge.clock.advance(SignedDuration::from_secs(1));
        assert_eq!(pending(&bridge, 10).await.unwrap(), [late.as_str()], "{url}");
        bridge.clock.advance(SignedDuration::from_hours(24 * 29));
        assert!(pending(&bridge, 10).await.unwrap().is_empty(), "{url}");
        let db = Db::connect(&url).await.unwrap();
        assert_eq!(db.forget_worker_opt_outs(bridge.clock.now(), 30).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn only_the_outreach_role_may_read_or_confirm_opt_outs() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&common::sqlite(dir.path()), |_| {}).await;
    let g = guid();
    bridge.invite(&g, "prov-a1", "en").await;
    bridge.decline(&g).await;
    for name in ["admin", "bridge", "emr-site-1001"] {
        let mut ledger = bridge.ledger_as(name).await;
        let status = ledger.pending_opt_outs(PendingOptOutsRequest { max: 10 }).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{name}");
        assert!(status.message().contains("PendingOptOuts"), "{}", status.message());
        let status =
            ledger.confirm_opt_outs(ConfirmOptOutsRequest { guids: vec![g.clone()] }).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{name}");
        assert!(status.message().contains("ConfirmOptOuts"), "{}", status.message());
    }
    let lines = bridge.audit_lines();
    for rpc in ["PendingOptOuts", "ConfirmOptOuts"] {
        let denied = lines.iter().filter(|l| l["action"] == "PERMISSION_DENIED" && l["rpc"] == rpc).count();
        assert_eq!(denied, 3, "{rpc}");
    }
    assert_eq!(pending(&bridge, 10).await.unwrap(), [g], "still waiting for the worker");
}

#[tokio::test]
async fn a_bad_max_or_guid_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&common::sqlite(dir.path()), |_| {}).await;
    let g = guid();
    bridge.invite(&g, "prov-a1", "en").await;
    bridge.unsubscribe(&g).await;
    for max in [0, 501] {
        let status = pending(&bridge, max).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{max}");
        assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "max");
    }
    assert_eq!(pending(&bridge, 500).await.unwrap(), [g.as_str()]);
    let (nope, empty) = ("nope".to_string(), String::new());
    let too_many: Vec<String> = (0..501).map(|_| guid()).collect();
    for guids in [vec![&g, &nope], vec![&empty], too_many.iter().collect()] {
        let status = confirm(&bridge, &guids).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "guids");
    }
    assert_eq!(pending(&bridge, 500).await.unwrap(), [g.as_str()], "a refused call removes nothing");
    // The GUID in capitals is the same GUID.
    confirm(&bridge, &[&g.to_uppercase()]).await.unwrap();
    assert!(pending(&bridge, 500).await.unwrap().is_empty());
    let lines = bridge.audit_lines();
    let refused = |action: &str| {
        lines.iter().filter(|l| l["action"] == action && l["result"] == "invalid_argument").count()
    };
    assert_eq!((refused("WORKER_OPT_OUTS_READ"), refused("WORKER_OPT_OUTS_CONFIRMED")), (2, 3));
}
