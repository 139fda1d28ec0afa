//! The worker binary's memory after it has sent (issue 9, item 1): invitations to contacts
//! with values unique to this run go out by SMS (the Twilio stand-in) and email (aiosmtpd),
//! every contact is acked, and then no planted phone or email is left anywhere in the
//! worker's readable memory, though it keeps running with its connections open. Its memory
//! is locked (`VmLck` covers `VmRSS`) and its core file size limit is 0.
//!
//! The scan (`cache-server/tests/common/memscan.rs`) reads `/proc/<pid>/mem`: root only,
//! as in CI; as another user the test says so and returns. Without aiosmtpd only SMS is
//! sent, unless `OUTREACH_REQUIRE_SMTP=1`.
#![allow(clippy::unwrap_used)]

mod common;
#[allow(dead_code)]
#[path = "../../cache-server/tests/common/memscan.rs"]
mod memscan;

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cache_server::clock::Clock;
use common::{
    smtp::{SmtpOptions, SmtpSink},
    tier::{Tier, contact},
};
use memscan::{Needle, email_needles, phone_needles, random_digits};
use proto::v1::Channel as Preferred;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_planted_contact_is_left_in_the_workers_memory_after_it_has_sent() {
    if !is_root() {
        eprintln!("not root: cannot read the worker's memory; skipped");
        return;
    }
    let tier = Tier::start_with(Clock::System).await;
    let smtp = SmtpSink::start(SmtpOptions::default());
    let mut config = tier.worker_config("w.db");
    config.quiet_hours.enabled = false;
    config.worker.poll_seconds = 1;
    let mut text = toml::to_string(&config).unwrap();
    if let Some(smtp) = &smtp {
        text.push_str(&format!(
            "\n[email]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"Clinic survey <survey@clinic.example.invalid>\"\nper_second = 1000\n",
            smtp.port
        ));
    }
    let file = tier.path("worker.toml");
    std::fs::write(&file, text).unwrap();

    // Phones +1613999 and 4 random digits, all different; emails with 12 random digits and
    // capitals. SMS only, email only, and both (either may be used; both are leased).
    let mut phones = BTreeSet::new();
    while phones.len() < 8 {
        phones.insert(format!("+1613999{}", random_digits(4)));
    }
    let phones: Vec<String> = phones.into_iter().collect();
    let emails: Vec<String> =
        (0..8).map(|_| format!("Pt{}@Clinic.Example.invalid", random_digits(12))).collect();
    let mut contacts = Vec::new();
    for (n, phone) in phones.iter().enumerate() {
        let mut c = match (n % 2, &smtp) {
            (0, _) | (_, None) => contact(phone, "", "en"),
            (_, Some(_)) => contact(phone, &emails[n], "fr"),
        };
        c.channel = if c.email.is_empty() { Preferred::Sms } else { Preferred::Any } as i32;
        contacts.push(c);
    }
    if smtp.is_some() {
        for email in emails.iter().step_by(2) {
            let mut c = contact("", email, "en");
            c.channel = Preferred::Email as i32;
            contacts.push(c);
        }
    }
    let mut needles: Vec<Needle> = Vec::new();
    for (n, c) in contacts.iter().enumerate() {
        if !c.phone.is_empty() {
            needles.extend(phone_needles(n, &c.phone));
        }
        if !c.email.is_empty() {
            needles.extend(email_needles(n, &c.email));
        }
    }
    for c in &contacts {
        tier.put(c.clone()).await;
    }

    let mut worker = Command::new(env!("CARGO_BIN_EXE_outreach-worker"))
        .arg("--config")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tier.path("worker.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for("every contact to be sent and acked", async || tier.entries().await == 0).await;
    // The batch done, the worker closes its connection to the cache.
    let pid = worker.id();
    let cache_port = tier.cache.port();
    wait_for("the worker to close its cache connection", async || {
        memscan::connections_to(pid, cache_port) == 0
    })
    .await;
    let texts = tier.twilio.seen().len();
    let mails = smtp.as_ref().map_or(0, |s| s.messages().len());
    assert_eq!(texts + mails, contacts.len(), "one message per contact");
    // A control that must be found: the worker holds its configuration, which names the
    // tier's folder. It shows that the scan reads the heap.
    let control = tier.path("w.db").display().to_string();
    needles.push(Needle { label: "control".into(), bytes: control.into_bytes() });

    // Its memory is locked (kept out of swap) and it can leave no core file, as the cache.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let resident_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(locked_kib > 0 && locked_kib >= resident_kib, "VmLck {locked_kib} kB, VmRSS {resident_kib} kB");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");

    let scan = memscan::scan(worker.id(), &needles);
    let (control, planted): (Vec<_>, Vec<_>) = scan.hits.iter().partition(|h| h.label == "control");
    eprintln!("outreach-worker memory after sending {texts} SMS and {mails} emails: {}", scan.summary());
    assert!(!control.is_empty(), "the control was not found: the scan does not work ({})", scan.summary());
    assert!(planted.is_empty(), "planted values in the worker's memory:\n{}", scan.by_region());

    Command::new("kill").arg("-TERM").arg(worker.id().to_string()).status().unwrap();
    assert!(worker.wait().unwrap().success(), "a clean stop");
    let log = std::fs::read_to_string(tier.path("worker.log")).unwrap();
    for needle in &needles[..needles.len() - 1] {
        assert!(!log.contains(std::str::from_utf8(&needle.bytes).unwrap()), "{} in the log", needle.label);
    }
}
