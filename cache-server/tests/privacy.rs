//! The promises about the real `cache-server` binary that only the operating system can show
//! (issue 9, items 1-3):
//! - memory: once its requests are done and its connections closed, no planted phone or
//!   email is left anywhere in the daemon's readable memory;
//! - disk: it opens no file for writing but its audit log, and neither the audit log nor its
//!   own log holds a planted value;
//! - core dumps: crashed by SIGSEGV or SIGABRT with core dumps on system-wide, it leaves no
//!   core file, and while it runs its memory is locked.
//!
//! Reading another process's memory, tracing it and locking memory need root, as in CI; as
//! another user these tests say so and return. `strace` and working core dumps are required
//! when `SECURITY_REQUIRE_STRACE=1` / `SECURITY_REQUIRE_COREDUMP=1` (set by `.ci/run`).
#![allow(clippy::unwrap_used)]

#[path = "common/daemon.rs"]
mod daemon;
#[allow(dead_code)]
#[path = "common/memscan.rs"]
mod memscan;

use std::{
    collections::BTreeSet,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use daemon::{Daemon, Launch, setup, spawn};
use memscan::{Needle, email_needles, phone_needles, random_digits};
use proto::v1::{
    AckOutcome, AckRequest, Channel as Preferred, Contact, DeleteContactRequest, GetContactRequest,
    LeaseDueRequest, OptOutRequest, PutContactRequest, StatsRequest,
    contact_cache_client::ContactCacheClient,
};
use tokio::process::Command;
use tonic::transport::Channel;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

impl Daemon {
    /// Sockets the daemon has open (listeners and connections).
    fn sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    }

    /// Waits until the daemon has no more sockets open than `baseline`.
    async fn wait_for_sockets(&self, baseline: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sockets() > baseline {
            assert!(Instant::now() < deadline, "the daemon kept {} sockets open", self.sockets());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident memory (kB) in mappings that are not locked, by mapping; the kernel's special
    /// mappings ([vdso] and the like, which cannot be locked and hold no data) left out.
    fn unlocked_resident(&self) -> Vec<(String, u64)> {
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", self.pid)).unwrap();
        let mut out = Vec::new();
        let (mut name, mut rss) = (String::new(), 0u64);
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                name = line.split_whitespace().nth(5).unwrap_or("[anon]").to_string();
                name = format!("{first} {name}");
            } else if let Some(kb) = line.strip_prefix("Rss:") {
                rss = kb.trim().trim_end_matches("kB").trim().parse().unwrap();
            } else if let Some(flags) = line.strip_prefix("VmFlags:") {
                let special =
                    ["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"].iter().any(|s| name.ends_with(s));
                if rss > 0 && !special && !flags.split_whitespace().any(|f| f == "lo") {
                    out.push((name.clone(), rss));
                }
            }
        }
        out
    }
}

/// Contacts with values unique to this run: a phone `+1613999` + 4 random digits (all
/// different) and an email with 12 random digits and capitals, so that its lowercase form
/// differs.
fn planted(n: usize) -> Vec<Contact> {
    let mut phones = BTreeSet::new();
    while phones.len() < n {
        phones.insert(format!("+1613999{}", random_digits(4)));
    }
    phones
        .into_iter()
        .map(|phone| Contact {
            site_id: "site-1001".into(),
            provider_id: "prov-a1".into(),
            campaign_id: "c-1".into(),
            phone,
            email: format!("Pt{}@Clinic.Example.invalid", random_digits(12)),
            language: "en".into(),
            time_zone: "America/Toronto".into(),
            send_after: None,
            channel: Preferred::Any as i32,
        })
        .collect()
}

fn needles(contacts: &[Contact]) -> Vec<Needle> {
    contacts
        .iter()
        .enumerate()
        .flat_map(|(n, c)| phone_needles(n, &c.phone).into_iter().chain(email_needles(n, &c.email)))
        .collect()
}

/// Puts `contacts` (half one by one, half in one stream), reads some back, leases them all
/// and acks them in every way, opts some out and erases some: every RPC that carries a
/// contact, in both directions. Returns the clients, still connected.
async fn exercise(daemon: &Daemon, contacts: &[Contact]) -> Vec<ContactCacheClient<Channel>> {
    let mut emr = daemon.client("emr-site-1001").await;
    let mut outreach = daemon.client("outreach").await;
    let mut bridge = daemon.client("bridge").await;
    let mut admin = daemon.client("admin").await;
    let half = contacts.len() / 2;
    let mut guids = Vec::new();
    for c in &contacts[..half] {
        let request = PutContactRequest { contact: Some(c.clone()) };
        guids.push(emr.put_contact(request).await.unwrap().into_inner().guid);
    }
    let stream: Vec<PutContactRequest> =
        contacts[half..].iter().map(|c| PutContactRequest { contact: Some(c.clone()) }).collect();
    let mut results = emr.put_contacts(tokio_stream::iter(stream)).await.unwrap().into_inner();
    while let Some(result) = results.message().await.unwrap() {
        assert!(result.error.is_none(), "{:?}", result.error);
        guids.push(result.guid);
    }
    assert_eq!(guids.len(), contacts.len());
    for guid in guids.iter().step_by(3) {
        let back = outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap().into_inner();
        assert!(!back.phone.is_empty());
    }
    let due = outreach
        .lease_due(LeaseDueRequest { max: 100, lease_seconds: 60 })
        .await
        .unwrap()
        .into_inner()
        .contacts;
    assert_eq!(due.len(), contacts.len(), "every contact is due");
    let retry_at = prost_types::Timestamp { seconds: jiff::Timestamp::now().as_second() + 3600, nanos: 0 };
    for (n, d) in due.iter().enumerate() {
        let (outcome, retry_at) = match n % 4 {
            0 => (AckOutcome::Sent, None),
            1 => (AckOutcome::RetryAt, Some(retry_at)),
            2 => (AckOutcome::FailedPermanent, None),
            _ => (AckOutcome::Sent, Some(retry_at)),
        };
        let ack =
            AckRequest { guid: d.guid.clone(), outcome: outcome as i32, retry_at, ..Default::default() };
        outreach.ack(ack).await.unwrap();
    }
    // Of those still held (acked with a retry or a reminder): opt one out, erase one.
    let held: Vec<&String> =
        due.iter().enumerate().filter(|(n, _)| n % 2 == 1).map(|(_, d)| &d.guid).collect();
    bridge.opt_out(OptOutRequest { guid: held[0].clone() }).await.unwrap();
    emr.delete_contact(DeleteContactRequest { guid: held[1].clone() }).await.unwrap();
    let stats = admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries as usize, held.len() - 1, "sealed entries stay held");
    vec![emr, outreach, bridge, admin]
}

/// The scan's needles for `contacts`, and a control that must be found: the daemon holds
/// its configuration, which names this run's folder (it shows that the scan reads the heap).
fn needles_and_control(contacts: &[Contact], dir: &Path) -> Vec<Needle> {
    let mut needles = needles(contacts);
    let control = dir.join("audit.jsonl").display().to_string();
    needles.push(Needle { label: "control".into(), bytes: control.into_bytes() });
    needles
}

/// Scans the daemon and fails on any planted value (or if the control is missing).
fn assert_nothing_planted(daemon: &Daemon, needles: &[Needle], when: &str) {
    let scan = memscan::scan(daemon.pid, needles);
    let (control, planted): (Vec<_>, Vec<_>) = scan.hits.iter().partition(|h| h.label == "control");
    eprintln!("cache-server memory, {when}: {}", scan.summary());
    assert!(!control.is_empty(), "the control was not found: the scan does not work ({})", scan.summary());
    assert!(scan.regions > 0 && scan.bytes > 0);
    assert!(planted.is_empty(), "{when}: planted values in the daemon's memory:\n{}", scan.by_region());
}

/// Checks that the daemon's log names no planted value.
fn assert_not_logged(lines: &[String], needles: &[Needle]) {
    let logs = lines.join("\n");
    for needle in needles.iter().filter(|n| n.label != "control") {
        assert!(!logs.contains(std::str::from_utf8(&needle.bytes).unwrap()), "{} in the log", needle.label);
    }
}

// Fails without the wiping: rustls decrypts in place and keeps its read buffer (wiped by
// `cache_server::tls::wipe`); h2 keeps its read and write buffers (wiped by its patched
// copy, vendor/README.md). Each of the three, taken out alone, leaves planted values here.
#[tokio::test(flavor = "multi_thread")]
async fn no_planted_contact_is_left_in_the_daemons_memory_while_its_connections_stay_open() {
    if !is_root() {
        eprintln!("not root: cannot read the non-dumpable daemon's memory; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "idle_timeout_seconds = 3600");
    let daemon = spawn(&config, dir.path(), Launch::default()).await;
    let baseline = daemon.sockets();

    let contacts = planted(16);
    let needles = needles_and_control(&contacts, dir.path());
    let mut clients = exercise(&daemon, &contacts).await;
    // The clients keep their connections, as gRPC clients do: the scan runs right after the
    // last call, with every connection still open.
    let open = daemon.sockets();
    assert!(open >= baseline + clients.len(), "the clients' connections are open ({open} sockets)");
    assert_nothing_planted(&daemon, &needles, "connections open after their last call");
    assert_eq!(daemon.sockets(), open, "no connection closed during the scan");
    // And they still serve.
    let admin = clients.last_mut().unwrap();
    assert!(admin.stats(StatsRequest {}).await.unwrap().into_inner().entries > 0);
    assert_eq!(daemon.sockets(), open, "the call reused its connection");
    drop(clients);

    let (status, lines) = daemon.terminate().await;
    assert!(status.success());
    assert_not_logged(&lines, &needles);
    assert!(!lines.iter().any(|l| l.contains("connection idle")), "no connection was closed for being idle");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_told_to_go_away_and_nothing_planted_is_left_once_it_has_closed() {
    if !is_root() {
        eprintln!("not root: cannot read the non-dumpable daemon's memory; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "idle_timeout_seconds = 1");
    let daemon = spawn(&config, dir.path(), Launch::default()).await;
    let baseline = daemon.sockets();

    let contacts = planted(16);
    let needles = needles_and_control(&contacts, dir.path());
    let mut clients = exercise(&daemon, &contacts).await;
    // The clients keep their channels and make no call: after idle_timeout_seconds the
    // daemon closes the connections.
    daemon.wait_for_sockets(baseline).await;
    assert_nothing_planted(&daemon, &needles, "connections closed for being idle");
    // The clients never noticed: their next call reconnects.
    let admin = clients.last_mut().unwrap();
    assert!(admin.stats(StatsRequest {}).await.unwrap().into_inner().entries > 0);
    drop(clients);

    let (status, lines) = daemon.terminate().await;
    assert!(status.success());
    assert_not_logged(&lines, &needles);
    assert!(
        lines.iter().any(|l| l.contains("connection idle: told to go away")),
        "closed for being idle, not for another cause"
    );
}

/// One `open`-family call from an strace log: its path and flags.
#[derive(Debug)]
struct Open {
    path: String,
    flags: String,
    ok: bool,
}

/// The open, openat, openat2 and creat calls in strace's output (`-f`: each line starts with a
/// pid; unfinished/resumed calls are joined).
fn opens(trace: &str) -> Vec<Open> {
    let mut pending: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut calls = Vec::new();
    for line in trace.lines() {
        let (pid, rest) = line.split_once(char::is_whitespace).unwrap_or(("", line));
        let rest = rest.trim_start();
        let full = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
            continue;
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once(" resumed>").map_or("", |(_, t)| t);
            format!("{}{tail}", pending.remove(pid).unwrap_or_default())
        } else {
            rest.to_string()
        };
        let call = ["openat2(", "openat(", "open(", "creat("].into_iter().find(|c| full.starts_with(c));
        let Some(call) = call else { continue };
        // The path is the first quoted argument; the flags follow it.
        let Some((_, after)) = full.split_once('"') else { continue };
        let Some((path, after)) = after.split_once('"') else { continue };
        let flags = if call == "creat(" { "O_CREAT|O_WRONLY|O_TRUNC".to_string() } else { after.to_string() };
        let result = full.rsplit_once(" = ").map_or("", |(_, r)| r);
        calls.push(Open { path: path.to_string(), flags, ok: !result.starts_with('-') });
    }
    calls
}

fn for_writing(flags: &str) -> bool {
    ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"].iter().any(|f| flags.contains(f))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_opens_no_file_for_writing_but_its_audit_log_and_writes_no_contact_data() {
    let strace = std::process::Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success());
    if !strace {
        assert!(!required("SECURITY_REQUIRE_STRACE"), "strace is required (SECURITY_REQUIRE_STRACE=1)");
        eprintln!("strace not installed; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("opens.strace");
    // The sweep every second, so that it runs while traced.
    let config = setup(dir.path(), "[store]\nsweep_schedule = \"* * * * * *\"");
    let wrapper = ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2,creat", "-o"]
        .iter()
        .map(|s| s.to_string())
        .chain([trace.display().to_string()])
        .collect();
    let args = if is_root() { vec![] } else { vec!["--allow-unlocked".to_string()] };
    let launch = Launch { wrapper, args, ..Launch::default() };
    let daemon = spawn(&config, dir.path(), launch).await;

    let contacts = planted(8);
    let needles = needles(&contacts);
    exercise(&daemon, &contacts).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = daemon.metrics().await;
        let swept = metrics.lines().any(|l| l.starts_with("cache_sweeps_total") && !l.ends_with(" 0"));
        if swept {
            break;
        }
        assert!(Instant::now() < deadline, "no sweep ran: {metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, lines) = daemon.terminate().await;
    assert!(status.success(), "{status:?}");

    let trace = std::fs::read_to_string(&trace).unwrap();
    let calls = opens(&trace);
    assert!(calls.iter().any(|c| c.path.ends_with("ca.pem")), "the trace holds the daemon's opens:\n{trace}");
    let audit = dir.path().join("audit.jsonl");
    let written: BTreeSet<&str> =
        calls.iter().filter(|c| c.ok && for_writing(&c.flags)).map(|c| c.path.as_str()).collect();
    let allowed = audit.to_str().unwrap();
    let others: Vec<&&str> = written.iter().filter(|p| **p != allowed).collect();
    assert!(others.is_empty(), "files opened for writing besides the audit log: {others:?}");
    assert!(written.contains(allowed), "the audit log was opened for appending: {written:?}");
    eprintln!(
        "cache-server opened {} files ({} for writing: the audit log only)",
        calls.len(),
        written.len()
    );

    // What it wrote, the audit log and its own log (stderr), holds no planted value.
    let audit = std::fs::read_to_string(&audit).unwrap();
    assert!(audit.lines().count() > contacts.len(), "the audit log has the operations");
    let logs = lines.join("\n");
    for needle in &needles {
        let value = std::str::from_utf8(&needle.bytes).unwrap();
        assert!(!audit.contains(value), "{} in the audit log", needle.label);
        assert!(!logs.contains(value), "{} in the daemon's log", needle.label);
    }
}

/// Where a core file of a process running in `cwd` would go under `core_pattern`, or why
/// this machine cannot show it.
fn core_dir(cwd: &Path) -> Result<PathBuf, String> {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").map_err(|e| e.to_string())?;
    let pattern = pattern.trim();
    if pattern.starts_with('|') {
        return Err(format!("core_pattern pipes cores to a program ({pattern})"));
    }
    match Path::new(pattern).parent() {
        Some(parent) if pattern.starts_with('/') => Ok(parent.to_path_buf()),
        _ => Ok(cwd.to_path_buf()),
    }
}

fn files_in(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect()).unwrap_or_default()
}

/// `sleep` with core dumps on, killed by SIGSEGV, leaves a core file: the set-up can make
/// one. Returns the new files.
async fn control_core(cwd: &Path) -> BTreeSet<PathBuf> {
    let dir = core_dir(cwd).unwrap();
    let before = files_in(&dir);
    let mut command = Command::new("sleep");
    command.arg("60").current_dir(cwd).kill_on_drop(true);
    // SAFETY: setrlimit is async-signal-safe and touches only the struct passed.
    unsafe {
        command.pre_exec(|| {
            let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
            libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // SAFETY: kill with the pid of our own child and a standard signal.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGSEGV) };
    let status = child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
    files_in(&dir).difference(&before).cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_leaves_no_core_file_and_the_memory_is_locked() {
    if !is_root() {
        eprintln!("not root: memory cannot be locked; skipped");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let control = work.path().join("control");
    std::fs::create_dir(&control).unwrap();
    let cores = match core_dir(&control) {
        Ok(_) => control_core(&control).await,
        Err(why) => {
            assert!(!required("SECURITY_REQUIRE_COREDUMP"), "{why} (SECURITY_REQUIRE_COREDUMP=1)");
            eprintln!("{why}: cannot show the absence of a core file here; skipped");
            return;
        }
    };
    if cores.is_empty() {
        assert!(
            !required("SECURITY_REQUIRE_COREDUMP"),
            "a process with core dumps on left no core file: the set-up cannot show anything"
        );
        eprintln!("this machine writes no core files even when asked; skipped");
        return;
    }
    for core in &cores {
        let _ = std::fs::remove_file(core);
    }

    let pki = work.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    let config = setup(&pki, "");
    for signal in [libc::SIGSEGV, libc::SIGABRT] {
        let cwd = work.path().join(format!("crash-{signal}"));
        std::fs::create_dir(&cwd).unwrap();
        let dir = core_dir(&cwd).unwrap();
        let before = files_in(&dir);
        let launch = Launch { cwd: Some(cwd.clone()), cores_on: true, ..Launch::default() };
        let mut daemon = spawn(&config, &pki, launch).await;
        let contacts = planted(4);
        let mut emr = daemon.client("emr-site-1001").await;
        for c in &contacts {
            emr.put_contact(PutContactRequest { contact: Some(c.clone()) }).await.unwrap();
        }

        // Locked: VmLck covers more than is resident (it counts whole locked mappings, some
        // only reserved), and no resident page is in a mapping that is not locked.
        let (locked, resident) = (daemon.status_kib("VmLck:"), daemon.status_kib("VmRSS:"));
        eprintln!("cache-server: VmLck {locked} kB, VmRSS {resident} kB");
        assert!(locked > 0 && locked >= resident, "VmLck {locked} kB < VmRSS {resident} kB");
        let unlocked = daemon.unlocked_resident();
        assert!(unlocked.is_empty(), "resident but not locked: {unlocked:?}");
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid)).unwrap();
        let core_limit = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
        assert_eq!(core_limit.split_whitespace().nth(4), Some("0"), "{core_limit}");

        // Rust's runtime handles the first SIGSEGV (for its stack-overflow report) by putting
        // back the default action and returning: a real fault then faults again and dies by
        // it. A SIGSEGV sent by kill does not repeat itself, so it is sent again.
        daemon.signal(signal);
        let status = match tokio::time::timeout(Duration::from_secs(2), daemon.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                daemon.signal(signal);
                tokio::time::timeout(Duration::from_secs(30), daemon.child.wait()).await.unwrap().unwrap()
            }
        };
        assert_eq!(status.signal(), Some(signal), "{status:?}");
        assert!(!status.core_dumped(), "the kernel says it dumped core");
        let new: Vec<PathBuf> = files_in(&dir).difference(&before).cloned().collect();
        assert!(new.is_empty(), "core files after signal {signal}: {new:?}");
    }
}
