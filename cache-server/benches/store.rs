//! The store's own costs, without gRPC, TLS or the audit trail (see BENCHMARKS.md for the
//! whole request path, measured by `cache-loadgen`):
//! - `crypto/seal_300B`, `crypto/open_300B`: AES-256-GCM under a day key, GUID and site as
//!   associated data;
//! - `store/put_delete`: a realistic contact checked, encoded, sealed and stored, then erased;
//! - `store/get`: a contact opened and decoded, from a store of 100 000;
//! - `sweep/1M_scan`: a sweep of 1 million entries of which none has expired;
//! - `sweep/1M_erase_4pct`: a sweep of 1 million entries erasing the 40 000 of an expired day
//!   (they are stored again, untimed, before each sweep);
//! - `lease/1M_none_due`: a LeaseDue over 1 million entries of which none is due yet (a
//!   worker polling a cache that holds tomorrow's contacts);
//! - `lease/1M_all_due_500`: a LeaseDue of 500 over 1 million due entries, the 500 given
//!   back (timed too) so that every call finds the same work.
//!
//! `cargo bench -p cache-server --bench store`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use cache_server::{
    clock::Clock,
    crypto::DayKey,
    guid::Guid,
    store::{Limits, Store},
};
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::SignedDuration;
use proto::v1::{Channel, Contact};

fn contact(n: u64) -> Contact {
    Contact {
        site_id: "site-1001".into(),
        provider_id: format!("prov-{:06}", n % 1_000_000),
        campaign_id: "flu-2026-fall".into(),
        phone: format!("+1613999{:04}", n % 10_000),
        email: format!("pat.{:08}@mail.example.invalid", n % 100_000_000),
        language: "en".into(),
        time_zone: "America/Toronto".into(),
        send_after: None,
        channel: Channel::Any as i32,
    }
}

fn store(retention_days: u32) -> (Store, Clock) {
    let clock = Clock::manual("2026-11-24T15:00:00Z".parse().unwrap());
    let limits = Limits { retention_days, max_entries: 20_000_000, max_bytes: 1 << 34 };
    (Store::new(limits, clock.clone()), clock)
}

fn crypto(c: &mut Criterion) {
    let key = DayKey::generate().unwrap();
    let plaintext = [0x5au8; 300];
    let guid = Guid::random().unwrap();
    let mut aad = guid.as_bytes().to_vec();
    aad.extend_from_slice(b"site-1001");
    let sealed = key.seal(&plaintext, &aad).unwrap();
    let mut group = c.benchmark_group("crypto");
    group.bench_function("seal_300B", |b| b.iter(|| key.seal(black_box(&plaintext), &aad).unwrap()));
    group.bench_function("open_300B", |b| b.iter(|| key.open(black_box(&sealed), &aad).unwrap()));
    group.finish();
}

fn put_get(c: &mut Criterion) {
    let (store, _) = store(30);
    let guids: Vec<Guid> = (0..100_000).map(|n| store.put(contact(n)).unwrap().guid).collect();
    let mut group = c.benchmark_group("store");
    let mut n = 0u64;
    group.bench_function("put_delete", |b| {
        b.iter(|| {
            n += 1;
            let stored = store.put(contact(n)).unwrap();
            store.delete(&stored.guid, None).unwrap();
        })
    });
    let mut i = 0usize;
    group.bench_function("get", |b| {
        b.iter(|| {
            i = (i + 7919) % guids.len();
            black_box(store.get(&guids[i]).unwrap())
        })
    });
    group.finish();
}

fn sweep(c: &mut Criterion) {
    const ENTRIES: u64 = 1_000_000;
    const OLD: u64 = ENTRIES / 25;
    let mut group = c.benchmark_group("sweep");
    group.sample_size(10).measurement_time(Duration::from_secs(20));

    // Retention 2 days. The old day's contacts are stored on day D, the rest on D+1; the
    // clock then stands on D+2, where only day D has expired.
    let (store, clock) = store(2);
    let day = SignedDuration::from_hours(24);
    clock.advance(day);
    for n in 0..ENTRIES - OLD {
        store.put(contact(n)).unwrap();
    }
    clock.advance(day);
    group.bench_function("1M_scan", |b| b.iter(|| assert_eq!(store.sweep().removed, 0)));
    group.bench_function("1M_erase_4pct", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                clock.advance(-day * 2);
                for n in 0..OLD {
                    store.put(contact(n)).unwrap();
                }
                clock.advance(day * 2);
                let started = Instant::now();
                let report = store.sweep();
                spent += started.elapsed();
                assert_eq!(report.removed as u64, OLD);
            }
            spent
        })
    });
    group.finish();
}

fn lease(c: &mut Criterion) {
    const ENTRIES: u64 = 1_000_000;
    let mut group = c.benchmark_group("lease");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    let (store, clock) = store(30);
    let tomorrow = clock.now().as_second() + 86_400;
    for n in 0..ENTRIES {
        let mut later = contact(n);
        later.send_after = Some(prost_types::Timestamp { seconds: tomorrow, nanos: 0 });
        store.put(later).unwrap();
    }
    group.bench_function("1M_none_due", |b| b.iter(|| assert!(store.lease_due(500, 60).is_empty())));
    clock.advance(SignedDuration::from_hours(25));
    group.bench_function("1M_all_due_500", |b| {
        b.iter(|| {
            let due = store.lease_due(500, 60);
            assert_eq!(due.len(), 500);
            store.give_back(&due);
        })
    });
    group.finish();
}

criterion_group!(benches, crypto, put_get, sweep, lease);
criterion_main!(benches);
