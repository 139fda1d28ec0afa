//! What the zeroizing allocator costs (the `cache-server` and `outreach-worker` binaries wipe
//! every heap block when it is freed, with `zeroizing_alloc::ZeroAlloc<System>`).
//!
//! This bench's global allocator is the system allocator or the zeroizing one, switched at
//! run time, so each workload runs both ways in one process: `system` and `zeroing`.
//! - `alloc_free/<bytes>`: one allocation and its free;
//! - `store/put_get_delete`: a contact stored, read back and erased ([`Store`]: validation,
//!   protobuf, AES-GCM);
//! - `grpc/put_get_delete`: PutContact, GetContact and DeleteContact over mutual TLS on
//!   loopback, to a real
//!   server in this process (tonic, hyper, h2, rustls, the audit log): the whole request
//!   path, client included.
//!
//! `cargo bench -p cache-server --bench alloc`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicBool, Ordering},
};

use cache_server::{
    Listeners,
    certs::DevPki,
    clock::Clock,
    config::Config,
    store::{Limits, Store},
};
use criterion::{Criterion, criterion_group, criterion_main};
use proto::v1::{
    Channel as Preferred, Contact, DeleteContactRequest, GetContactRequest, PutContactRequest,
    contact_cache_client::ContactCacheClient,
};
use zeroizing_alloc::ZeroAlloc;

/// Whether blocks are wiped when freed.
static ZEROING: AtomicBool = AtomicBool::new(false);
static ZERO: ZeroAlloc<System> = ZeroAlloc(System);

/// The system allocator, or the zeroizing one while [`ZEROING`] is set. Both hand out
/// blocks of the system allocator, so a block may be freed in either mode.
struct Switchable;

// SAFETY: every call is passed on unchanged to System or to ZeroAlloc<System>, which is
// System with a wipe before each free.
unsafe impl GlobalAlloc for Switchable {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees are passed on.
        unsafe { if ZEROING.load(Ordering::Relaxed) { ZERO.alloc(layout) } else { System.alloc(layout) } }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe {
            if ZEROING.load(Ordering::Relaxed) {
                ZERO.dealloc(ptr, layout)
            } else {
                System.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe {
            if ZEROING.load(Ordering::Relaxed) {
                ZERO.alloc_zeroed(layout)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        unsafe {
            if ZEROING.load(Ordering::Relaxed) {
                ZERO.realloc(ptr, layout, new_size)
            } else {
                System.realloc(ptr, layout, new_size)
            }
        }
    }
}

#[global_allocator]
static ALLOCATOR: Switchable = Switchable;

const MODES: [(&str, bool); 2] = [("system", false), ("zeroing", true)];

/// Criterion measures one mode after the other, so load that comes and goes on a shared
/// machine skews the comparison. This runs `rounds` pairs of `per_round` calls, one batch in
/// each mode in alternating order, and prints the median of the per-pair ratios
/// (zeroing / system) with the median time per call in each mode.
fn paired(name: &str, rounds: usize, per_round: usize, mut work: impl FnMut()) {
    let mut ratios = Vec::new();
    let (mut system, mut zeroing) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut times = [0.0f64; 2];
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for zero in order {
            ZEROING.store(zero, Ordering::Relaxed);
            let start = std::time::Instant::now();
            for _ in 0..per_round {
                work();
            }
            times[usize::from(zero)] = start.elapsed().as_secs_f64() / per_round as f64;
        }
        ZEROING.store(false, Ordering::Relaxed);
        ratios.push(times[1] / times[0]);
        system.push(times[0]);
        zeroing.push(times[1]);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "paired {name}: zeroing/system = {:.3} (median of {rounds} rounds of {per_round}); per call: system {:.2} us, zeroing {:.2} us",
        median(&mut ratios),
        median(&mut system) * 1e6,
        median(&mut zeroing) * 1e6
    );
}

fn contact() -> Contact {
    Contact {
        site_id: "site-1001".into(),
        provider_id: "prov-a1".into(),
        campaign_id: "c-1".into(),
        phone: "+16139990123".into(),
        email: "someone@clinic.example.invalid".into(),
        language: "en".into(),
        time_zone: "America/Toronto".into(),
        send_after: None,
        channel: Preferred::Any as i32,
    }
}

fn alloc_free(c: &mut Criterion) {
    let mut group = c.benchmark_group("alloc_free");
    for size in [64usize, 1024, 16 * 1024] {
        for (mode, zeroing) in MODES {
            ZEROING.store(zeroing, Ordering::Relaxed);
            group.bench_function(format!("{size}/{mode}"), |b| {
                b.iter(|| black_box(vec![1u8; black_box(size)]))
            });
        }
    }
    ZEROING.store(false, Ordering::Relaxed);
    group.finish();
}

fn store(c: &mut Criterion) {
    let limits = Limits { retention_days: 30, max_entries: 1_000_000, max_bytes: 1 << 30 };
    let store = Store::new(limits, Clock::System);
    let mut group = c.benchmark_group("store");
    for (mode, zeroing) in MODES {
        ZEROING.store(zeroing, Ordering::Relaxed);
        group.bench_function(format!("put_get_delete/{mode}"), |b| {
            b.iter(|| {
                let guid = store.put(contact()).unwrap().guid;
                black_box(store.get(&guid).unwrap());
                store.delete(&guid, None).unwrap();
            })
        });
    }
    ZEROING.store(false, Ordering::Relaxed);
    group.finish();
    paired("store/put_get_delete", 41, 2000, || {
        let guid = store.put(contact()).unwrap().guid;
        black_box(store.get(&guid).unwrap());
        store.delete(&guid, None).unwrap();
    });
}

fn grpc(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    pki.write_all(dir.path(), &["site-1001".to_string()]).unwrap();
    let mut config = Config::default();
    config.tls.cert = dir.path().join("cache-server.pem");
    config.tls.key = dir.path().join("cache-server.key");
    config.tls.client_ca = dir.path().join("ca.pem");
    config.audit.path = dir.path().join("audit.jsonl");
    config.audit.key_file = dir.path().join("audit.key");
    config.memory.allow_unlocked = true;
    config.log.filter = "off".into();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = runtime.block_on(async {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap();
        let shutdown = async {
            let _ = stopped.await;
        };
        tokio::spawn(cache_server::run(Listeners { grpc, metrics: None }, config, Clock::System, shutdown));
        addr
    });
    let client = |name: &str| {
        let endpoint = test_support::mtls_endpoint(dir.path(), name, addr);
        ContactCacheClient::new(runtime.block_on(async {
            for _ in 0..100 {
                if let Ok(channel) = endpoint.connect().await {
                    return channel;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("the server did not come up");
        }))
    };
    let (emr, outreach) = (client("emr-site-1001"), client("outreach"));

    let mut group = c.benchmark_group("grpc");
    for (mode, zeroing) in MODES {
        ZEROING.store(zeroing, Ordering::Relaxed);
        group.bench_function(format!("put_get_delete/{mode}"), |b| {
            b.to_async(&runtime).iter(|| {
                let (mut emr, mut outreach) = (emr.clone(), outreach.clone());
                async move {
                    let request = PutContactRequest { contact: Some(contact()) };
                    let guid = emr.put_contact(request).await.unwrap().into_inner().guid;
                    let got = outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap();
                    black_box(got);
                    emr.delete_contact(DeleteContactRequest { guid }).await.unwrap();
                }
            })
        });
    }
    ZEROING.store(false, Ordering::Relaxed);
    group.finish();
    paired("grpc/put_get_delete", 41, 100, || {
        let (mut emr, mut outreach) = (emr.clone(), outreach.clone());
        runtime.block_on(async move {
            let request = PutContactRequest { contact: Some(contact()) };
            let guid = emr.put_contact(request).await.unwrap().into_inner().guid;
            black_box(outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap());
            emr.delete_contact(DeleteContactRequest { guid }).await.unwrap();
        });
    });
    let _ = stop.send(());
}

criterion_group!(benches, alloc_free, store, grpc);
criterion_main!(benches);
