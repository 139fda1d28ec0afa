//! The worker binary killed mid-batch: its leases run out, the contacts it had not acked are
//! sent once more by the next worker, and the ones it acked are never sent twice. Its logs
//! hold no phone number and no GUID.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cache_server::clock::Clock;
use common::tier::{Tier, contact};
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use proto::v1::GetContactRequest;

const CONTACTS: usize = 6;

fn phone(n: usize) -> String {
    format!("+1613999012{n}")
}

fn hh_mm(t: Timestamp) -> String {
    let time = t.to_zoned_datetime(TimeZone::UTC).time();
    format!("{:02}:{:02}", time.hour(), time.minute())
}

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_outreach-worker"))
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_batch_sends_the_unacked_once_more_and_the_acked_never_twice() {
    let tier = Tier::start_with(Clock::System).await;
    let mut config = tier.worker_config("w.db");
    // One at a time, slowly, with short leases; quiet hours that cover the next hours in UTC.
    config.worker.batch = 10;
    config.worker.concurrency = 1;
    config.worker.lease_seconds = 2;
    config.worker.poll_seconds = 1;
    let now = Timestamp::now();
    config.quiet_hours.start = hh_mm(now - SignedDuration::from_hours(1));
    config.quiet_hours.end = hh_mm(now + SignedDuration::from_hours(2));
    config.log.filter = "outreach_worker=debug,info".into();
    let file = tier.path("worker.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    tier.twilio.slow_down(Duration::from_millis(500));

    let mut guids = BTreeMap::new();
    for n in 0..CONTACTS {
        let mut c = contact(&phone(n), "", "en");
        c.time_zone = "UTC".into();
        guids.insert(tier.put(c).await, phone(n));
    }

    let mut first = spawn(&file, &tier.path("first.log"));
    wait_for("three messages", async || tier.twilio.seen().len() >= 3).await;
    first.kill().unwrap();
    first.wait().unwrap();

    // What the killed worker had acked: erased from the cache.
    let mut acked = Vec::new();
    let mut cache = tier.client("outreach").await;
    for (guid, phone) in &guids {
        if cache.get_contact(GetContactRequest { guid: guid.clone() }).await.is_err() {
            acked.push(phone.clone());
        }
    }
    assert!(acked.len() >= 2 && acked.len() < CONTACTS, "killed mid-batch: {} acked", acked.len());

    // The next worker takes over once the leases run out.
    let mut second = spawn(&file, &tier.path("second.log"));
    wait_for("the cache to empty", async || tier.entries().await == 0).await;
    Command::new("kill").arg("-TERM").arg(second.id().to_string()).status().unwrap();
    let status = second.wait().unwrap();
    assert!(status.success(), "a clean stop on SIGTERM: {status:?}");

    for phone in guids.values() {
        let sent = tier.twilio.accepted_to(phone).len();
        if acked.contains(phone) {
            assert_eq!(sent, 1, "acked before the kill, never sent again");
        } else {
            // At most the one in flight when the worker died goes out twice.
            assert!((1..=2).contains(&sent), "{sent} messages");
        }
    }
    let total = tier.twilio.seen().len();
    assert!((CONTACTS..=CONTACTS + 1).contains(&total), "{total} messages in all");

    for log in ["first.log", "second.log"] {
        let text = std::fs::read_to_string(tier.path(log)).unwrap();
        assert!(text.contains("outreach worker started"), "{log}: {text}");
        for (guid, phone) in &guids {
            assert!(!text.contains(phone.as_str()) && !text.contains(&phone[2..]), "{log} names a phone");
            assert!(!text.contains(guid.as_str()), "{log} names a GUID");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_sends_under_way_and_leaves_the_rest_of_the_batch_to_its_lease() {
    let tier = Tier::start_with(Clock::System).await;
    let mut config = tier.worker_config("w.db");
    // One message a second, one at a time: a batch of 10 would take ten seconds.
    config.worker.batch = 10;
    config.worker.concurrency = 1;
    config.worker.lease_seconds = 600;
    config.quiet_hours.enabled = false;
    if let Some(sms) = config.sms.as_mut() {
        sms.per_second = 1;
    }
    let file = tier.path("worker.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    for n in 0..CONTACTS + 4 {
        tier.put(contact(&format!("+161399902{n:02}"), "", "en")).await;
    }
    let mut worker = spawn(&file, &tier.path("worker.log"));
    wait_for("two messages", async || tier.twilio.seen().len() >= 2).await;
    Command::new("kill").arg("-TERM").arg(worker.id().to_string()).status().unwrap();
    let status = worker.wait().unwrap();
    assert!(status.success(), "a clean stop: {status:?}");

    let sent = tier.twilio.seen().len();
    assert!(sent < CONTACTS + 4, "the batch was not waited for: {sent} sent");
    // Each message sent was acked (erased); the others wait in the cache for their lease.
    assert_eq!(tier.entries().await, (CONTACTS + 4 - sent) as u64);
}
