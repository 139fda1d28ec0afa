//! The outreach queue (LeaseDue and Ack) against a real server over TLS, under the test
//! server's manual clock.
#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::HashSet, sync::atomic::Ordering};

use common::{Switchable, TestServer, contact, start, start_with_audit_sink};
use jiff::{SignedDuration, Timestamp};
use proto::v1::{
    AckOutcome, AckRequest, DueContact, DueKind, GetContactRequest, LeaseDueRequest, OptOutRequest,
    StatsRequest, contact_cache_client::ContactCacheClient,
};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

type Client = ContactCacheClient<Channel>;

async fn lease(client: &mut Client, max: u32, lease_seconds: u32) -> Vec<DueContact> {
    client.lease_due(LeaseDueRequest { max, lease_seconds }).await.unwrap().into_inner().contacts
}

async fn ack(
    client: &mut Client,
    guid: &str,
    outcome: AckOutcome,
    retry_at: Option<Timestamp>,
) -> Result<(), Status> {
    let retry_at = retry_at.map(|t| prost_types::Timestamp { seconds: t.as_second(), nanos: 0 });
    client
        .ack(AckRequest { guid: guid.into(), outcome: outcome as i32, retry_at, ..Default::default() })
        .await
        .map(drop)
}

fn guids(due: &[DueContact]) -> HashSet<String> {
    due.iter().map(|d| d.guid.clone()).collect()
}

fn set(guids: &[&String]) -> HashSet<String> {
    guids.iter().map(|g| g.to_string()).collect()
}

async fn entries(server: &TestServer) -> u64 {
    server.client_as("admin").await.stats(StatsRequest {}).await.unwrap().into_inner().entries
}

/// Asserts INVALID_ARGUMENT naming `field`, in the message and as a BadRequest detail.
fn assert_names(result: Result<impl std::fmt::Debug, Status>, field: &str) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    assert!(status.message().starts_with(&format!("{field}:")), "{}", status.message());
    assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, field);
}

#[tokio::test]
async fn a_contact_is_due_only_once_its_send_after_has_passed() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let mut later = contact(1);
    let send_after = server.clock.now() + SignedDuration::from_hours(2);
    later.send_after = Some(prost_types::Timestamp { seconds: send_after.as_second(), nanos: 0 });
    let sent = later.clone();
    let guid = c.put(later).await;

    assert!(lease(&mut c.outreach, 10, 60).await.is_empty());
    server.clock.advance(SignedDuration::from_secs(2 * 3600 - 1));
    assert!(lease(&mut c.outreach, 10, 60).await.is_empty());
    server.clock.advance(SignedDuration::from_secs(1));
    let due = lease(&mut c.outreach, 10, 60).await;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].guid, guid);
    assert_eq!(due[0].kind, DueKind::Invite as i32);
    assert_eq!(due[0].attempt, 1);
    assert_eq!(due[0].contact.as_ref().unwrap(), &sent);
    assert_eq!(due[0].lease_expires_at.unwrap().seconds, send_after.as_second() + 60);
}

#[tokio::test]
async fn a_lease_hides_the_contact_until_it_runs_out() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let guid = c.put(contact(1)).await;
    assert_eq!(lease(&mut c.outreach, 10, 60).await[0].guid, guid);
    // Hidden from every caller, this one included, while the lease runs.
    let mut other = server.client_as("outreach").await;
    assert!(lease(&mut other, 10, 60).await.is_empty());
    server.clock.advance(SignedDuration::from_secs(59));
    assert!(lease(&mut other, 10, 60).await.is_empty());
    server.clock.advance(SignedDuration::from_secs(1));
    let again = lease(&mut other, 10, 60).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].guid, guid);
    assert_eq!(again[0].attempt, 2);
    // A leased contact can still be read by GUID.
    c.outreach.get_contact(GetContactRequest { guid }).await.unwrap();
}

#[tokio::test]
async fn sent_erases_the_contact_at_once() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let guid = c.put(contact(1)).await;
    let kept = c.put(contact(2)).await;
    assert_eq!(lease(&mut c.outreach, 10, 60).await.len(), 2);
    assert_eq!(entries(&server).await, 2);

    ack(&mut c.outreach, &guid, AckOutcome::Sent, None).await.unwrap();
    let gone = c.outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(entries(&server).await, 1);
    // The same Ack again: nothing is left to ack, and it says so as for any unknown GUID.
    let again = ack(&mut c.outreach, &guid, AckOutcome::Sent, None).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    assert_eq!(again.message(), gone.message());
    // Never handed out again, even once the lease has run out.
    server.clock.advance(SignedDuration::from_secs(61));
    assert_eq!(guids(&lease(&mut c.outreach, 10, 60).await), set(&[&kept]));
}

#[tokio::test]
async fn sent_with_a_retry_time_plans_a_reminder() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let guid = c.put(contact(1)).await;
    lease(&mut c.outreach, 10, 60).await;
    let reminder = server.clock.now() + SignedDuration::from_hours(24 * 3);
    ack(&mut c.outreach, &guid, AckOutcome::Sent, Some(reminder)).await.unwrap();

    server.clock.advance(SignedDuration::from_secs(24 * 3 * 3600 - 1));
    assert!(lease(&mut c.outreach, 10, 60).await.is_empty());
    c.outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap();
    server.clock.advance(SignedDuration::from_secs(1));
    let due = lease(&mut c.outreach, 10, 60).await;
    assert_eq!(due[0].guid, guid);
    assert_eq!(due[0].kind, DueKind::Invite as i32);
    assert_eq!(due[0].attempt, 1, "the reminder is new work");
    assert_eq!(due[0].sent_before, 1, "the worker can tell the reminder from the invitation");
    // The reminder was the last message planned.
    ack(&mut c.outreach, &guid, AckOutcome::Sent, None).await.unwrap();
    assert_eq!(entries(&server).await, 0);
}

#[tokio::test]
async fn a_reminder_no_longer_needed_is_skipped_and_erased() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let guid = c.put(contact(1)).await;
    let due = lease(&mut c.outreach, 10, 60).await;
    assert_eq!(due[0].sent_before, 0, "the invitation");
    let reminder = server.clock.now() + SignedDuration::from_hours(24);
    ack(&mut c.outreach, &guid, AckOutcome::Sent, Some(reminder)).await.unwrap();
    server.clock.advance(SignedDuration::from_hours(24));
    assert_eq!(lease(&mut c.outreach, 10, 60).await[0].sent_before, 1);
    assert_names(
        ack(&mut c.outreach, &guid, AckOutcome::Skipped, Some(reminder + SignedDuration::from_hours(1)))
            .await,
        "retry_at",
    );
    ack(&mut c.outreach, &guid, AckOutcome::Skipped, None).await.unwrap();
    assert_eq!(entries(&server).await, 0);
    let gone = ack(&mut c.outreach, &guid, AckOutcome::Skipped, None).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn retry_at_brings_the_contact_back_then() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let guid = c.put(contact(1)).await;
    lease(&mut c.outreach, 10, 60).await;
    let at = server.clock.now() + SignedDuration::from_hours(14);
    ack(&mut c.outreach, &guid, AckOutcome::RetryAt, Some(at)).await.unwrap();
    // Waiting now, not leased: a second Ack has no lease to end.
    let status = ack(&mut c.outreach, &guid, AckOutcome::Sent, None).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    server.clock.advance(SignedDuration::from_secs(14 * 3600 - 1));
    assert!(lease(&mut c.outreach, 10, 60).await.is_empty());
    server.clock.advance(SignedDuration::from_secs(1));
    let due = lease(&mut c.outreach, 10, 60).await;
    assert_eq!(due[0].guid, guid);
    assert_eq!(due[0].attempt, 2);
}

#[tokio::test]
async fn failed_permanent_erases_the_contact_at_once() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let guid = c.put(contact(1)).await;
    lease(&mut c.outreach, 10, 60).await;
    ack(&mut c.outreach, &guid, AckOutcome::FailedPermanent, None).await.unwrap();
    let status = c.outreach.get_contact(GetContactRequest { guid }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(entries(&server).await, 0);
    server.clock.advance(SignedDuration::from_secs(3600));
    assert!(lease(&mut c.outreach, 10, 60).await.is_empty());
}

#[tokio::test]
async fn an_opt_out_is_handed_out_once_for_suppression_then_erased() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let sent = contact(1);
    let guid = c.put(sent.clone()).await;
    // Opted out while its invitation is leased.
    assert_eq!(lease(&mut c.outreach, 10, 60).await[0].kind, DueKind::Invite as i32);
    c.bridge.opt_out(OptOutRequest { guid: guid.clone() }).await.unwrap();
    let status = c.outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let due = lease(&mut c.outreach, 10, 60).await;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].guid, guid);
    assert_eq!(due[0].kind, DueKind::Suppress as i32);
    assert_eq!(due[0].attempt, 1);
    assert_eq!(due[0].contact.as_ref().unwrap().phone, sent.phone, "the worker needs it to suppress");
    assert!(lease(&mut c.outreach, 10, 60).await.is_empty(), "handed out once");
    // A late Ack of the invitation leased before the opt-out must not end the suppression.
    let late = ack(&mut c.outreach, &guid, AckOutcome::Sent, None).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    let skipped = ack(&mut c.outreach, &guid, AckOutcome::Skipped, None).await.unwrap_err();
    assert_eq!(skipped.code(), Code::FailedPrecondition, "nor may a skipped reminder");

    // A worker that dies holding it: the suppression comes back.
    server.clock.advance(SignedDuration::from_secs(60));
    let again = lease(&mut c.outreach, 10, 60).await;
    assert_eq!(again[0].kind, DueKind::Suppress as i32);
    assert_eq!(again[0].attempt, 2);
    ack(&mut c.outreach, &guid, AckOutcome::Suppressed, None).await.unwrap();
    assert_eq!(entries(&server).await, 0);
    server.clock.advance(SignedDuration::from_secs(3600));
    assert!(lease(&mut c.outreach, 10, 60).await.is_empty());
}

#[tokio::test]
async fn expired_contacts_are_never_leased_nor_acked() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    c.put(contact(1)).await;
    c.put(contact(2)).await;
    // One leased, one not: neither is handed out or acked once expired.
    let leased = lease(&mut c.outreach, 1, 3600).await[0].guid.clone();
    // Stored 2026-11-24 15:00 with 30 days' retention: expired at 2026-12-24 00:00.
    server.clock.advance(SignedDuration::from_hours(24 * 29 + 9));
    assert!(lease(&mut c.outreach, 10, 60).await.is_empty());
    let status = ack(&mut c.outreach, &leased, AckOutcome::Sent, None).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn concurrent_leases_are_disjoint() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    for n in 0..120 {
        c.put(contact(n)).await;
    }
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let mut client = server.client_as("outreach").await;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let due = lease(&mut client, 7, 60).await;
                if due.is_empty() {
                    return mine;
                }
                mine.extend(due.into_iter().map(|d| d.guid));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    // A call that lost all its candidates to others may stop early: sweep up the rest.
    all.extend(lease(&mut c.outreach, 500, 60).await.into_iter().map(|d| d.guid));
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "a contact was leased twice");
    assert_eq!(all.len(), 120);
}

#[tokio::test]
async fn bad_arguments_are_named() {
    let server = start(|c| c.store.max_lease_batch = 50).await;
    let mut c = server.clients().await;
    for (max, lease_seconds, field) in
        [(0, 60, "max"), (51, 60, "max"), (10, 0, "lease_seconds"), (10, 3601, "lease_seconds")]
    {
        assert_names(c.outreach.lease_due(LeaseDueRequest { max, lease_seconds }).await, field);
    }
    assert_eq!(lease(&mut c.outreach, 50, 3600).await.len(), 0);

    let guid = c.put(contact(1)).await;
    lease(&mut c.outreach, 10, 60).await;
    let now = server.clock.now();
    let ts = |t: Timestamp| Some(prost_types::Timestamp { seconds: t.as_second(), nanos: 0 });
    let cases = [
        (guid.clone(), 0, None, "outcome"),
        (guid.clone(), 99, None, "outcome"),
        (guid.clone(), AckOutcome::RetryAt as i32, None, "retry_at"),
        (guid.clone(), AckOutcome::RetryAt as i32, ts(now - SignedDuration::from_secs(1)), "retry_at"),
        (guid.clone(), AckOutcome::RetryAt as i32, ts("2026-12-24T00:00:00Z".parse().unwrap()), "retry_at"),
        (guid.clone(), AckOutcome::Sent as i32, ts(now), "retry_at"),
        (
            guid.clone(),
            AckOutcome::FailedPermanent as i32,
            ts(now + SignedDuration::from_hours(1)),
            "retry_at",
        ),
        (guid.clone(), AckOutcome::Suppressed as i32, ts(now + SignedDuration::from_hours(1)), "retry_at"),
        (
            guid.clone(),
            AckOutcome::RetryAt as i32,
            Some(prost_types::Timestamp { seconds: now.as_second() + 60, nanos: -1 }),
            "retry_at",
        ),
        ("not-a-guid".into(), AckOutcome::Sent as i32, None, "guid"),
    ];
    for (guid, outcome, retry_at, field) in cases {
        assert_names(
            c.outreach.ack(AckRequest { guid, outcome, retry_at, ..Default::default() }).await,
            field,
        );
    }
    // None of the refusals touched the lease.
    ack(&mut c.outreach, &guid, AckOutcome::RetryAt, Some(now + SignedDuration::from_hours(1)))
        .await
        .unwrap();
}

#[tokio::test]
async fn acks_for_contacts_not_leased() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    // Unknown: NOT_FOUND, word for word what GetContact says.
    let unknown = "6a1f0c2e-4b3d-4e5f-8a7b-9c0d1e2f3a4b";
    let status = ack(&mut c.outreach, unknown, AckOutcome::Sent, None).await.unwrap_err();
    let get = c.outreach.get_contact(GetContactRequest { guid: unknown.into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), get.message());
    // Held but never handed out: FAILED_PRECONDITION, and nothing changes.
    let guid = c.put(contact(1)).await;
    let status = ack(&mut c.outreach, &guid, AckOutcome::Sent, None).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "the contact is not leased");
    // A lease that ran out, not yet taken again, still takes its (late) Ack.
    lease(&mut c.outreach, 10, 60).await;
    server.clock.advance(SignedDuration::from_secs(120));
    ack(&mut c.outreach, &guid, AckOutcome::Sent, None).await.unwrap();
    assert!(lease(&mut c.outreach, 10, 60).await.is_empty());
}

#[tokio::test]
async fn a_fenced_ack_of_a_lease_taken_again_is_refused_and_the_new_lease_stands() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let guid = c.put(contact(1)).await;
    let fenced = |due: &DueContact, outcome: AckOutcome, retry_at: Option<Timestamp>| AckRequest {
        guid: due.guid.clone(),
        outcome: outcome as i32,
        retry_at: retry_at.map(|t| prost_types::Timestamp { seconds: t.as_second(), nanos: 0 }),
        attempt: due.attempt,
        sent_before: due.sent_before,
    };
    // One worker's lease runs out (a slow provider) and another worker takes the contact.
    let first = lease(&mut c.outreach, 10, 60).await.remove(0);
    server.clock.advance(SignedDuration::from_secs(61));
    let mut other = server.client_as("outreach").await;
    let second = lease(&mut other, 10, 60).await.remove(0);
    assert_eq!((first.attempt, second.attempt), (1, 2));

    // The first worker's late RETRY_AT would plan one more send after the second's.
    let in_an_hour = server.clock.now() + SignedDuration::from_hours(1);
    let status = c.outreach.ack(fenced(&first, AckOutcome::RetryAt, Some(in_an_hour))).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().starts_with("attempt:"), "{}", status.message());
    // The second lease stands and takes its own Ack.
    assert!(lease(&mut other, 10, 60).await.is_empty());
    other.ack(fenced(&second, AckOutcome::Sent, None)).await.unwrap();
    assert_eq!(second.guid, guid);
    assert_eq!(entries(&server).await, 0);
}

#[tokio::test]
async fn a_worker_killed_mid_batch_loses_nothing_and_repeats_nothing() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let a = c.put(contact(1)).await;
    let b = c.put(contact(2)).await;
    let d = c.put(contact(3)).await;

    let batch = lease(&mut c.outreach, 10, 300).await;
    assert_eq!(guids(&batch), set(&[&a, &b, &d]));
    ack(&mut c.outreach, &a, AckOutcome::Sent, None).await.unwrap();
    // The worker dies here. A new one finds nothing until the leases run out...
    let mut next = server.client_as("outreach").await;
    assert!(lease(&mut next, 10, 300).await.is_empty());
    server.clock.advance(SignedDuration::from_secs(300));
    // ...then exactly the two unacked contacts, and never the acked one.
    let again = lease(&mut next, 10, 300).await;
    assert_eq!(guids(&again), set(&[&b, &d]));
    assert!(again.iter().all(|due| due.attempt == 2));
    for due in &again {
        ack(&mut next, &due.guid, AckOutcome::Sent, None).await.unwrap();
    }
    server.clock.advance(SignedDuration::from_secs(3600));
    assert!(lease(&mut next, 10, 300).await.is_empty());
    assert_eq!(entries(&server).await, 0);
}

#[tokio::test]
async fn leases_and_acks_are_audited_without_contact_data() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let sent = contact(1);
    let guid = c.put(sent.clone()).await;
    let other = c.put(contact(2)).await;
    assert_eq!(lease(&mut c.outreach, 10, 60).await.len(), 2);
    ack(&mut c.outreach, &guid, AckOutcome::FailedPermanent, None).await.unwrap();
    let _ = c.outreach.lease_due(LeaseDueRequest { max: 0, lease_seconds: 60 }).await.unwrap_err();

    let lines = server.audit_lines();
    let leases: Vec<_> = lines.iter().filter(|l| l["action"] == "OUTREACH_LEASE").collect();
    // The lease of two: a line with the count, then one per leased GUID (its HMAC), so that
    // what a worker read can be traced; then the refused lease.
    assert_eq!(leases.len(), 4);
    assert_eq!(leases[0]["result"], "ok");
    assert_eq!(leases[0]["count"], 2);
    assert_eq!(leases[0]["role"], "outreach");
    assert_eq!(leases[0]["rpc"], "LeaseDue");
    let mut leased: Vec<&str> = leases[1..3].iter().map(|l| l["guid_hmac"].as_str().unwrap()).collect();
    leased.sort_unstable();
    let mut expected = [server.guid_hmac(&guid), server.guid_hmac(&other)];
    expected.sort_unstable();
    assert_eq!(leased, expected);
    assert!(leases[1..3].iter().all(|l| l["result"] == "ok" && l["role"] == "outreach"));
    assert_eq!(leases[3]["result"], "invalid_argument");
    assert_eq!(leases[3]["count"], 0);
    let acked: Vec<_> = lines.iter().filter(|l| l["action"] == "OUTREACH_ACK").collect();
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0]["guid_hmac"], server.guid_hmac(&guid).as_str());
    assert_eq!(acked[0]["detail"], "failed_permanent");
    assert_eq!(acked[0]["result"], "ok");

    let raw = std::fs::read_to_string(server.path("audit.jsonl")).unwrap();
    for value in [&sent.phone, &sent.email, &guid] {
        assert!(!raw.contains(value.as_str()), "the audit log holds a contact value or a raw GUID");
    }
}

#[tokio::test]
async fn a_lease_that_cannot_be_audited_hands_out_nothing_and_keeps_nothing() {
    let sink = Switchable::default();
    let server = start_with_audit_sink(|_| {}, Box::new(sink.clone())).await;
    let mut c = server.clients().await;
    let guid = c.put(contact(1)).await;

    sink.failing.store(true, Ordering::SeqCst);
    let status = c.outreach.lease_due(LeaseDueRequest { max: 10, lease_seconds: 60 }).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    sink.failing.store(false, Ordering::SeqCst);
    // Given back at once: due again without waiting for the lease, its attempt uncounted.
    let due = lease(&mut c.outreach, 10, 60).await;
    assert_eq!(due[0].guid, guid);
    assert_eq!(due[0].attempt, 1);
}
