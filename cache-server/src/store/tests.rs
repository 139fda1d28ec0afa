use jiff::SignedDuration;
use proto::v1::Channel;

use super::*;

fn contact(n: u32) -> Contact {
    Contact {
        site_id: "site-1001".into(),
        provider_id: "prov-a1".into(),
        campaign_id: "pcpe-2026q4".into(),
        phone: format!("+1613555{n:04}"),
        email: format!("person{n:04}@example.org"),
        language: "fr".into(),
        time_zone: "America/Toronto".into(),
        send_after: None,
        channel: Channel::Email as i32,
    }
}

fn store(max_entries: usize) -> (Store, Clock) {
    let clock = Clock::manual("2026-11-24T15:00:00Z".parse().unwrap());
    let limits = Limits { retention_days: 30, max_entries, max_bytes: 1 << 30 };
    (Store::new(limits, clock.clone()), clock)
}

#[test]
fn put_get_delete_round_trip() {
    let (store, _) = store(10);
    let stored = store.put(contact(1)).unwrap();
    assert_eq!(stored.expires_at, "2026-12-24T00:00:00Z".parse().unwrap());
    let back = store.get(&stored.guid).unwrap();
    assert_eq!(back.phone, "+16135550001");
    assert_eq!(back.email, "person0001@example.org");
    assert_eq!(back.language, "fr");
    assert_eq!(store.stats().entries, 1);
    store.delete(&stored.guid, None).unwrap();
    assert!(matches!(store.get(&stored.guid), Err(StoreError::NotFound)));
    assert!(matches!(store.delete(&stored.guid, None), Err(StoreError::NotFound)));
    assert_eq!(store.stats().entries, 0);
    assert_eq!(store.stats().bytes, 0);
}

#[test]
fn sealed_bytes_hold_no_plaintext() {
    let (store, _) = store(10);
    let guid = store.put(contact(7)).unwrap().guid;
    let entry = store.entries.get(&guid).unwrap();
    for needle in [&b"6135550007"[..], b"person0007", b"America/Toronto"] {
        assert!(!entry.sealed.windows(needle.len()).any(|w| w == needle));
    }
}

#[test]
fn entries_are_bound_to_their_guid() {
    let (store, _) = store(10);
    let a = store.put(contact(1)).unwrap().guid;
    let b = store.put(contact(2)).unwrap().guid;
    // Swap the sealed bytes: neither opens under the other's GUID.
    let sealed_a = store.entries.get(&a).unwrap().sealed.clone();
    let sealed_b = store.entries.get(&b).unwrap().sealed.clone();
    store.entries.get_mut(&a).unwrap().sealed = sealed_b;
    store.entries.get_mut(&b).unwrap().sealed = sealed_a;
    assert!(matches!(store.get(&a), Err(StoreError::Crypto(CryptoError::Open))));
    assert!(matches!(store.get(&b), Err(StoreError::Crypto(CryptoError::Open))));
}

#[test]
fn expired_entries_are_unreadable_before_any_sweep() {
    let (store, clock) = store(10);
    let guid = store.put(contact(1)).unwrap().guid;
    // Stored at 15:00 on day D: readable until day D+30 begins, not a second longer.
    clock.advance(SignedDuration::from_hours(24 * 29 + 8));
    assert!(store.get(&guid).is_ok());
    clock.advance(SignedDuration::from_hours(1));
    assert!(matches!(store.get(&guid), Err(StoreError::NotFound)));
    assert!(matches!(store.delete(&guid, None), Err(StoreError::NotFound)));
    assert!(matches!(store.opt_out(&guid), Err(StoreError::NotFound)));
    assert_eq!(store.stats().entries, 1, "the sweep, not the read, erases");
}

#[test]
fn sweep_erases_expired_entries_and_shreds_their_day_key() {
    let (store, clock) = store(100);
    let old: Vec<_> = (0..20).map(|n| store.put(contact(n)).unwrap().guid).collect();
    let sealed_old = store.entries.get(&old[0]).unwrap().sealed.clone();
    let old_day = i64::from(store.entries.get(&old[0]).unwrap().day);
    clock.advance(SignedDuration::from_hours(24 * 10));
    let young: Vec<_> = (20..25).map(|n| store.put(contact(n)).unwrap().guid).collect();
    assert_eq!(store.stats().day_keys, 2);

    // Nothing is old enough yet.
    let report = store.sweep();
    assert_eq!(report.removed, 0);
    assert!(report.keys_destroyed.is_empty());

    clock.advance(SignedDuration::from_hours(24 * 21));
    let report = store.sweep();
    assert_eq!(report.removed, 20);
    assert_eq!(report.keys_destroyed, vec![old_day]);
    assert_eq!(store.stats().entries, 5);
    assert_eq!(store.stats().day_keys, 1);
    assert!(young.iter().all(|g| store.get(g).is_ok()));
    assert!(store.keys.get(old_day).is_none());
    // Whatever key that day might get again, its old bytes stay sealed.
    let again = store.keys.get_or_create(old_day).unwrap();
    assert!(again.open(&sealed_old, &aad(&old[0], "site-1001")).is_err());
}

#[test]
fn full_store_refuses_and_keeps_what_it_has() {
    let (store, _) = store(3);
    let kept: Vec<_> = (0..3).map(|n| store.put(contact(n)).unwrap().guid).collect();
    assert!(matches!(store.put(contact(9)), Err(StoreError::Full { limit: "max_entries" })));
    for (n, guid) in kept.iter().enumerate() {
        assert_eq!(store.get(guid).unwrap().phone, format!("+1613555{n:04}"));
    }
    store.delete(&kept[0], None).unwrap();
    assert!(store.put(contact(9)).is_ok());
}

#[test]
fn byte_bound_is_enforced() {
    let clock = Clock::manual("2026-11-24T15:00:00Z".parse().unwrap());
    let one = {
        let s =
            Store::new(Limits { retention_days: 30, max_entries: 10, max_bytes: usize::MAX }, clock.clone());
        s.put(contact(1)).unwrap();
        s.stats().bytes
    };
    let store = Store::new(Limits { retention_days: 30, max_entries: 10, max_bytes: one * 2 }, clock);
    store.put(contact(1)).unwrap();
    store.put(contact(2)).unwrap();
    assert!(matches!(store.put(contact(3)), Err(StoreError::Full { limit: "max_bytes" })));
    assert_eq!(store.stats().entries, 2);
}

#[test]
fn opt_out_hides_the_contact() {
    let (store, _) = store(10);
    let guid = store.put(contact(1)).unwrap().guid;
    store.opt_out(&guid).unwrap();
    store.opt_out(&guid).unwrap();
    assert!(matches!(store.get(&guid), Err(StoreError::NotFound)));
    let unknown = Guid::random().unwrap();
    assert!(matches!(store.opt_out(&unknown), Err(StoreError::NotFound)));
}

#[test]
fn invalid_contacts_store_nothing() {
    let (store, _) = store(10);
    let mut bad = contact(1);
    bad.phone = "613-555-0101".into();
    let err = store.put(bad).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(FieldError { field: "contact.phone", .. })));
    assert_eq!(store.stats().entries, 0);
    assert_eq!(store.stats().bytes, 0);
}

#[test]
fn clear_forgets_everything() {
    let (store, _) = store(10);
    let guid = store.put(contact(1)).unwrap().guid;
    store.clear();
    assert!(matches!(store.get(&guid), Err(StoreError::NotFound)));
    assert_eq!(store.stats().entries, 0);
    assert_eq!(store.stats().day_keys, 0);
}

#[test]
fn a_site_scoped_delete_leaves_other_sites_alone() {
    let (store, _) = store(10);
    let guid = store.put(contact(1)).unwrap().guid;
    assert!(matches!(store.delete(&guid, Some("site-2002")), Err(StoreError::NotFound)));
    assert!(store.get(&guid).is_ok());
    store.delete(&guid, Some("site-1001")).unwrap();
    assert!(matches!(store.get(&guid), Err(StoreError::NotFound)));
}

fn guids(due: &[Due]) -> Vec<Guid> {
    due.iter().map(|d| d.guid).collect()
}

#[test]
fn lease_due_hands_out_the_oldest_first_and_at_most_max() {
    let (store, clock) = store(10);
    let now = clock.now().as_second();
    let mut later = contact(1);
    later.send_after = Some(prost_types::Timestamp { seconds: now - 60, nanos: 0 });
    let mut earlier = contact(2);
    earlier.send_after = Some(prost_types::Timestamp { seconds: now - 3600, nanos: 0 });
    let mut future = contact(3);
    future.send_after = Some(prost_types::Timestamp { seconds: now + 60, nanos: 0 });
    let later = store.put(later).unwrap().guid;
    let earlier = store.put(earlier).unwrap().guid;
    store.put(future).unwrap();

    let due = store.lease_due(1, 30);
    assert_eq!(guids(&due), vec![earlier]);
    assert_eq!(due[0].kind, DueKind::Invite);
    assert_eq!(due[0].attempt, 1);
    assert_eq!(due[0].contact.phone, "+16135550002");
    assert_eq!(due[0].lease_expires_at.as_second(), now + 30);
    assert_eq!(guids(&store.lease_due(10, 30)), vec![later]);
    assert!(store.lease_due(10, 30).is_empty());
}

#[test]
fn a_lease_given_back_is_due_again_with_its_attempt_uncounted() {
    let (store, _) = store(10);
    let guid = store.put(contact(1)).unwrap().guid;
    let due = store.lease_due(10, 60);
    store.give_back(&due);
    let again = store.lease_due(10, 60);
    assert_eq!(guids(&again), vec![guid]);
    assert_eq!(again[0].attempt, 1);
}

#[test]
fn acks_move_entries_through_their_states() {
    let (store, clock) = store(10);
    let guid = store.put(contact(1)).unwrap().guid;
    assert!(matches!(store.ack(&guid, None, Outcome::Sent, None), Err(StoreError::NotLeased)));
    store.lease_due(10, 60);
    let in_an_hour = clock.now() + SignedDuration::from_hours(1);
    assert_eq!(store.ack(&guid, None, Outcome::RetryAt, Some(in_an_hour)).unwrap(), Acked::DueAgain);
    assert!(matches!(store.ack(&guid, None, Outcome::Sent, None), Err(StoreError::NotLeased)));
    clock.advance(SignedDuration::from_hours(1));
    assert_eq!(store.lease_due(10, 60)[0].attempt, 2);
    assert_eq!(store.ack(&guid, None, Outcome::Sent, None).unwrap(), Acked::Erased);
    assert!(matches!(store.ack(&guid, None, Outcome::Sent, None), Err(StoreError::NotFound)));
    assert_eq!(store.stats().entries, 0);
    assert_eq!(store.stats().bytes, 0);
}

#[test]
fn a_fenced_ack_applies_only_to_its_own_lease() {
    let (store, clock) = store(10);
    let guid = store.put(contact(1)).unwrap().guid;
    let fence = |due: &Due| Some(Fence { attempt: due.attempt, sent_before: due.sent_before });
    let in_an_hour = || clock.now() + SignedDuration::from_hours(1);

    // A lease that ran out but was not taken again still takes its (late) Ack.
    let first = store.lease_due(10, 60).remove(0);
    clock.advance(SignedDuration::from_secs(61));
    assert_eq!(
        store.ack(&guid, fence(&first), Outcome::RetryAt, Some(in_an_hour())).unwrap(),
        Acked::DueAgain
    );

    // Taken again after it ran out: the first holder's late RETRY_AT is refused, and the
    // second lease stands (it would otherwise plan a second send after this one's).
    clock.advance(SignedDuration::from_hours(1));
    let second = store.lease_due(10, 60).remove(0);
    clock.advance(SignedDuration::from_secs(61));
    let third = store.lease_due(10, 60).remove(0);
    assert_eq!((second.attempt, third.attempt), (2, 3));
    let late = store.ack(&guid, fence(&second), Outcome::RetryAt, Some(in_an_hour()));
    assert!(matches!(late, Err(StoreError::Superseded)), "{late:?}");
    assert!(store.lease_due(10, 60).is_empty(), "the newer lease stands");

    // SENT with a reminder: the reminder is new work (attempt 1 again, one sent before), so
    // a repeat of the invitation's Ack with its attempt 1 is still told apart.
    let reminder_at = clock.now() + SignedDuration::from_hours(48);
    assert_eq!(store.ack(&guid, fence(&third), Outcome::Sent, Some(reminder_at)).unwrap(), Acked::DueAgain);
    clock.advance(SignedDuration::from_hours(48));
    let reminder = store.lease_due(10, 60).remove(0);
    assert_eq!((reminder.attempt, reminder.sent_before), (1, 1));
    let invitation = Some(Fence { attempt: 1, sent_before: 0 });
    assert!(matches!(store.ack(&guid, invitation, Outcome::Sent, None), Err(StoreError::Superseded)));
    // Unfenced, an Ack applies to whatever lease the entry is under.
    assert_eq!(store.ack(&guid, None, Outcome::Sent, None).unwrap(), Acked::Erased);
}

#[test]
fn suppression_work_is_erased_only_by_suppressed_or_failed() {
    let (store, _) = store(10);
    let guid = store.put(contact(1)).unwrap().guid;
    store.lease_due(10, 60);
    // Opted out while its invitation is leased: the invitation's late Ack is refused.
    store.opt_out(&guid).unwrap();
    assert!(matches!(store.ack(&guid, None, Outcome::Sent, None), Err(StoreError::NotLeased)));
    let due = store.lease_due(10, 60);
    assert_eq!(due[0].kind, DueKind::Suppress);
    assert_eq!(due[0].attempt, 1);
    store.opt_out(&guid).unwrap();
    assert!(matches!(store.ack(&guid, None, Outcome::Sent, None), Err(StoreError::LeasedForSuppression)));
    assert!(matches!(store.get(&guid), Err(StoreError::NotFound)));
    assert_eq!(store.ack(&guid, None, Outcome::Suppressed, None).unwrap(), Acked::Erased);
    assert_eq!(store.stats().entries, 0);
}

#[test]
fn retry_times_must_be_ahead_and_before_expiry() {
    let (store, clock) = store(10);
    let guid = store.put(contact(1)).unwrap().guid;
    store.lease_due(10, 60);
    let now = clock.now();
    for at in [now, now - SignedDuration::from_secs(1), "2026-12-24T00:00:00Z".parse().unwrap()] {
        let err = store.ack(&guid, None, Outcome::RetryAt, Some(at)).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(FieldError { field: "retry_at", .. })), "{at}");
    }
    // Refusals leave the lease standing.
    store.ack(&guid, None, Outcome::RetryAt, Some("2026-12-23T23:59:59Z".parse().unwrap())).unwrap();
}

#[test]
fn concurrent_leases_never_share_an_entry() {
    let (store, _) = store(1000);
    for n in 0..600 {
        store.put(contact(n)).unwrap();
    }
    let store = std::sync::Arc::new(store);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let due = store.lease_due(25, 60);
                    if due.is_empty() {
                        return mine;
                    }
                    mine.extend(guids(&due));
                }
            })
        })
        .collect();
    let mut all: Vec<Guid> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.extend(guids(&store.lease_due(1000, 60)));
    let leased = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), leased, "an entry was leased twice");
    assert_eq!(leased, 600);
}

#[test]
fn entries_stay_56_bytes() {
    // 72 bytes per hash-table slot with the GUID: what ten million contacts in 3 GiB rest on.
    assert_eq!(std::mem::size_of::<Entry>(), 56);
    assert_eq!(std::mem::size_of::<(Guid, Entry)>(), 72);
}

#[test]
fn lease_ends_and_days_saturate_rather_than_wrap() {
    assert_eq!(lease_until(-5), 0);
    assert_eq!(lease_until(1_800_000_000), 1_800_000_000);
    assert_eq!(lease_until(i64::MAX), u32::MAX);
    assert_eq!(day_index(20_000), 20_000);
    assert_eq!(day_index(i64::MAX), i32::MAX);
    assert_eq!(day_index(i64::MIN), i32::MIN);
}
