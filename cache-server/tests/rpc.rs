//! Every RPC of contactcache.v1 against a real server over TLS.
#![allow(clippy::unwrap_used)]

mod common;

use common::{BAD_ROW_FIELDS, contact, rows, start};
use jiff::SignedDuration;
use proto::v1::{
    Channel, DeleteContactRequest, GetContactRequest, OptOutRequest, PutContactRequest, StatsRequest,
};
use tonic::Code;
use tonic_types::StatusExt;

fn put(c: proto::v1::Contact) -> PutContactRequest {
    PutContactRequest { contact: Some(c) }
}

#[tokio::test]
async fn put_get_delete_round_trip() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;

    let mut sent = contact(1);
    sent.channel = Channel::Email as i32;
    sent.language = "fr".into();
    sent.send_after = Some(prost_types::Timestamp { seconds: 1_795_000_000, nanos: 0 });
    let stored = c.emr("site-1001").put_contact(put(sent.clone())).await.unwrap().into_inner();
    assert_eq!(stored.guid.len(), 36);
    // Stored on 2026-11-24 (UTC) with 30 days' retention: readable until 2026-12-24 begins.
    let expires: jiff::Timestamp = "2026-12-24T00:00:00Z".parse().unwrap();
    assert_eq!(stored.expires_at.unwrap().seconds, expires.as_second());

    let back =
        c.outreach.get_contact(GetContactRequest { guid: stored.guid.clone() }).await.unwrap().into_inner();
    assert_eq!(back, sent);

    c.emr("site-1001").delete_contact(DeleteContactRequest { guid: stored.guid.clone() }).await.unwrap();
    let gone = c.outreach.get_contact(GetContactRequest { guid: stored.guid.clone() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let again =
        c.emr("site-1001").delete_contact(DeleteContactRequest { guid: stored.guid }).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
}

#[tokio::test]
async fn guids_are_distinct_per_put_even_for_the_same_contact() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let a = c.emr("site-1001").put_contact(put(contact(1))).await.unwrap().into_inner().guid;
    let b = c.emr("site-1001").put_contact(put(contact(1))).await.unwrap().into_inner().guid;
    assert_ne!(a, b);
}

#[tokio::test]
async fn opt_out_makes_the_contact_unreadable() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let guid = c.emr("site-1001").put_contact(put(contact(2))).await.unwrap().into_inner().guid;
    c.bridge.opt_out(OptOutRequest { guid: guid.clone() }).await.unwrap();
    let status = c.outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Opting out twice is fine; opting out an unknown GUID is not.
    c.bridge.opt_out(OptOutRequest { guid }).await.unwrap();
    let unknown = c
        .bridge
        .opt_out(OptOutRequest { guid: "00000000-0000-0000-0000-000000000000".into() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn unknown_and_expired_guids_answer_alike() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let guid = c.emr("site-1001").put_contact(put(contact(3))).await.unwrap().into_inner().guid;

    let unknown = c
        .outreach
        .get_contact(GetContactRequest { guid: "5f0c7a52-9b1e-4d4f-8a59-1c2d3e4f5a6b".into() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // Still readable 29 days on; then the clock passes the end of retention. No sweep has run.
    server.clock.advance(SignedDuration::from_hours(24 * 29));
    c.outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap();
    server.clock.advance(SignedDuration::from_hours(24 * 2));
    let expired = c.outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap_err();
    assert_eq!(expired.code(), Code::NotFound);
    assert_eq!(expired.message(), unknown.message());
    let stats = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, 1, "no sweep ran: the entry is still held, yet unreadable");
    assert!(stats.last_sweep_at.is_none());
}

#[tokio::test]
async fn malformed_guids_name_the_field() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    for guid in ["", "not-a-guid", "5f0c7a529b1e4d4f8a591c2d3e4f5a6b"] {
        let status = c.outreach.get_contact(GetContactRequest { guid: guid.into() }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{guid:?}");
        assert!(status.message().starts_with("guid:"), "{}", status.message());
        let field = &status.get_details_bad_request().unwrap().field_violations[0].field;
        assert_eq!(field, "guid");
    }
}

#[tokio::test]
async fn each_bad_row_is_refused_naming_its_field_and_nothing_good_is_disturbed() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let good = rows("contacts.csv");
    let bad = rows("contacts-bad.csv");
    assert_eq!(bad.len(), BAD_ROW_FIELDS.len());

    let mut stored = Vec::new();
    for (i, row) in bad.iter().enumerate() {
        // A good row before each bad one.
        let before = &good[i];
        let guid =
            c.emr(&before.site_id).put_contact(put(before.to_contact())).await.unwrap().into_inner().guid;
        stored.push((guid, before));

        let (row_id, field) = BAD_ROW_FIELDS[i];
        assert_eq!(row.row_id, row_id);
        let status = c.emr("site-1001").put_contact(put(row.to_contact())).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{row_id}");
        let details = status.get_details_bad_request().expect("a BadRequest detail");
        assert_eq!(details.field_violations[0].field, field, "{row_id}: {}", status.message());
        assert!(status.message().starts_with(&format!("{field}:")), "{row_id}: {}", status.message());
        // The refusal never repeats the value sent.
        for value in [&row.phone, &row.email, &row.provider_id] {
            if value.len() > 6 {
                assert!(!status.message().contains(value.as_str()), "{row_id} echoes its input");
            }
        }
    }
    let missing = c.emr("site-1001").put_contact(PutContactRequest { contact: None }).await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().starts_with("contact:"));

    for (guid, row) in &stored {
        let back =
            c.outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap().into_inner();
        assert_eq!(back.phone, row.phone);
        assert_eq!(back.email, row.email);
        assert_eq!(back.site_id, row.site_id);
    }
    let stats = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, stored.len() as u64);
}

#[tokio::test]
async fn full_cache_answers_resource_exhausted_and_keeps_its_entries() {
    let server = start(|c| c.store.max_entries = 5).await;
    let mut c = server.clients().await;
    let mut guids = Vec::new();
    for n in 0..5 {
        guids.push(c.emr("site-1001").put_contact(put(contact(n))).await.unwrap().into_inner().guid);
    }
    let status = c.emr("site-1001").put_contact(put(contact(99))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("max_entries"), "{}", status.message());
    for (n, guid) in guids.iter().enumerate() {
        let back =
            c.outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap().into_inner();
        assert_eq!(back.phone, format!("+1613555{n:04}"));
    }
    // Room again after a delete.
    c.emr("site-1001").delete_contact(DeleteContactRequest { guid: guids[0].clone() }).await.unwrap();
    c.emr("site-1001").put_contact(put(contact(99))).await.unwrap();
}

#[tokio::test]
async fn oversized_requests_answer_resource_exhausted_naming_the_limit() {
    // store.max_message_bytes at its default, 16 KiB; each request below carries 8 MiB.
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let kept = c.put(contact(1)).await;
    let eight_mib = "c".repeat(8 << 20);
    let refused = |status: tonic::Status, what: &str| {
        assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
        let message = status.message();
        assert!(
            message.contains("16384") && message.contains("store.max_message_bytes"),
            "{what}: {message}"
        );
    };

    let mut big = contact(5);
    big.campaign_id = eight_mib.clone();
    refused(c.emr("site-1001").put_contact(put(big)).await.unwrap_err(), "PutContact");
    // GetContact has a route of its own (it sends the stored encoding); the same limit holds.
    let status = c.outreach.get_contact(GetContactRequest { guid: eight_mib }).await.unwrap_err();
    refused(status, "GetContact");

    // Nothing new is held, and the same connections still serve.
    let stats = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, 1);
    let back = c.outreach.get_contact(GetContactRequest { guid: kept }).await.unwrap().into_inner();
    assert_eq!(back.phone, contact(1).phone);
    c.put(contact(2)).await;
}

#[tokio::test]
async fn stats_report_counts_limits_and_instance() {
    let server = start(|c| c.store.max_entries = 1000).await;
    let mut c = server.clients().await;
    for n in 0..3 {
        c.emr("site-1001").put_contact(put(contact(n))).await.unwrap();
    }
    let stats = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, 3);
    assert!(stats.bytes > 3 * 100, "{}", stats.bytes);
    assert_eq!(stats.max_entries, 1000);
    assert_eq!(stats.retention_days, 30);
    assert_eq!(stats.day_keys, 1);
    assert_ne!(stats.instance_epoch, 0);
    assert_eq!(stats.memory_locked, cache_server::memory::locked_kib().unwrap_or(0) > 0);
}
