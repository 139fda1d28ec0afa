use super::*;
use crate::auth::Role;
use std::sync::Arc;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);
impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn lines_carry_the_guid_only_as_its_hmac() {
    let buffer = Buffer::default();
    let key = Zeroizing::new([7u8; 32]);
    let audit = Audit::new(
        Box::new(buffer.clone()),
        key.clone(),
        Clock::manual("2026-11-24T15:00:00Z".parse().unwrap()),
    );
    let guid = Guid::random().unwrap();
    let caller = Caller { name: "clinic-a".into(), role: Role::Emr, site: Some("site-1001".into()) };
    let mut event = Event::new(Action::ContactPut, "ok", Actor::Caller(&caller, None));
    event.guid = Some(&guid);
    audit.record(event).unwrap();
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["action"], "CONTACT_PUT");
    assert_eq!(line["role"], "emr");
    assert_eq!(line["site"], "site-1001");
    assert_eq!(line["time"], "2026-11-24T15:00:00Z");
    assert_eq!(line["guid_hmac"], guid_hmac(&key, &guid));
    assert!(!text.contains(&guid.to_string()));
    assert_eq!(guid_hmac(&key, &guid).len(), 64);
    assert_ne!(guid_hmac(&[8u8; 32], &guid), guid_hmac(&key, &guid));
}

#[test]
fn a_day_only_event_is_placed_in_its_utc_day_and_nothing_finer() {
    let buffer = Buffer::default();
    let clock = Clock::manual("2026-11-24T23:59:59.123456789Z".parse().unwrap());
    let audit = Audit::new(Box::new(buffer.clone()), Zeroizing::new([7u8; 32]), clock);
    let mut event = Event::new("RESPONSE_ACCEPTED", "ok", Actor::System);
    event.day_only = true;
    audit.record(event).unwrap();
    audit.record(Event::new("STARTED", "ok", Actor::System)).unwrap();
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["time"], "2026-11-24");
    assert_eq!(lines[1]["time"], "2026-11-24T23:59:59.123456789Z");
}

/// Counts the writes it is given.
#[derive(Clone, Default)]
struct Counting(Arc<Mutex<(usize, Vec<u8>)>>);
impl Write for Counting {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let mut inner = self.0.lock().unwrap();
        inner.0 += 1;
        inner.1.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_batch_of_events_is_one_write_of_one_line_each() {
    let sink = Counting::default();
    let audit = Audit::new(Box::new(sink.clone()), Zeroizing::new([7u8; 32]), Clock::System);
    let caller = Caller { name: "clinic-a".into(), role: Role::Emr, site: Some("site-1001".into()) };
    let guids: Vec<Guid> = (0..3).map(|_| Guid::random().unwrap()).collect();
    let events: Vec<Event<'_>> = guids
        .iter()
        .map(|guid| {
            let mut event = Event::new(Action::ContactPut, "ok", Actor::Caller(&caller, None));
            event.guid = Some(guid);
            event
        })
        .collect();
    audit.record_all(&events).unwrap();
    let (writes, bytes) = sink.0.lock().unwrap().clone();
    assert_eq!(writes, 1);
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for (line, guid) in lines.iter().zip(&guids) {
        assert_eq!(line["guid_hmac"], audit.guid_hmac(guid));
    }
}

fn put_event<'a>(caller: &'a Caller, guid: &'a Guid) -> Event<'a> {
    let mut event = Event::new(Action::ContactPut, "ok", Actor::Caller(caller, None));
    event.guid = Some(guid);
    event
}

#[tokio::test(flavor = "current_thread")]
async fn commits_ready_together_share_one_write_and_each_waits_for_it() {
    let sink = Counting::default();
    let audit = Arc::new(Audit::new(Box::new(sink.clone()), Zeroizing::new([7u8; 32]), Clock::System));
    let caller =
        Arc::new(Caller { name: "clinic-a".into(), role: Role::Emr, site: Some("site-1001".into()) });
    let guids: Vec<Guid> = (0..20).map(|_| Guid::random().unwrap()).collect();
    let tasks: Vec<_> = guids
        .iter()
        .map(|guid| {
            let (audit, caller, sink, guid) = (audit.clone(), caller.clone(), sink.clone(), *guid);
            tokio::spawn(async move {
                audit.commit(&[put_event(&caller, &guid)]).await.unwrap();
                // Answered only once its own line is written.
                let written = String::from_utf8(sink.0.lock().unwrap().1.clone()).unwrap();
                assert!(written.contains(&audit.guid_hmac(&guid)));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (writes, bytes) = sink.0.lock().unwrap().clone();
    assert_eq!(writes, 1, "twenty commits ready at once go out in one write");
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(text.lines().count(), 20);
    for guid in &guids {
        assert!(text.contains(&audit.guid_hmac(guid)));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_commit_of_a_failed_group_write_fails() {
    let audit =
        Arc::new(Audit::open(Path::new("/dev/full"), Zeroizing::new([0u8; 32]), Clock::System).unwrap());
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let audit = audit.clone();
            tokio::spawn(
                async move { audit.commit(&[Event::new(Action::StatsRead, "ok", Actor::System)]).await },
            )
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_err());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_leader_dropped_while_it_yields_still_writes_for_the_others() {
    let sink = Counting::default();
    let audit = Arc::new(Audit::new(Box::new(sink.clone()), Zeroizing::new([7u8; 32]), Clock::System));
    let caller = Caller { name: "clinic-a".into(), role: Role::Emr, site: Some("site-1001".into()) };
    let (first, second) = (Guid::random().unwrap(), Guid::random().unwrap());
    let lead = put_event(&caller, &first);
    let follow = put_event(&caller, &second);
    let mut leader = Box::pin(audit.commit(std::slice::from_ref(&lead)));
    // Polled once: it takes the lead, adds its line and yields.
    assert!(futures_util::FutureExt::now_or_never(&mut leader).is_none());
    let follower = audit.commit(std::slice::from_ref(&follow));
    let mut follower = Box::pin(follower);
    assert!(futures_util::FutureExt::now_or_never(&mut follower).is_none());
    drop(leader);
    follower.await.unwrap();
    let text = String::from_utf8(sink.0.lock().unwrap().1.clone()).unwrap();
    assert!(text.contains(&audit.guid_hmac(&first)) && text.contains(&audit.guid_hmac(&second)));
    // The lead was given up: a later commit leads and writes by itself.
    audit.commit(&[Event::new(Action::StatsRead, "ok", Actor::System)]).await.unwrap();
    assert_eq!(sink.0.lock().unwrap().0, 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_commit_queues_its_line_when_called_and_a_leader_dropped_unpolled_writes_it() {
    let sink = Counting::default();
    let audit = Audit::new(Box::new(sink.clone()), Zeroizing::new([7u8; 32]), Clock::System);
    let caller = Caller { name: "clinic-a".into(), role: Role::Emr, site: Some("site-1001".into()) };
    let (first, second) = (Guid::random().unwrap(), Guid::random().unwrap());
    // Both lines are queued by the calls themselves; the events can go before any poll.
    let (leader, follower) = {
        let (lead, follow) = (put_event(&caller, &first), put_event(&caller, &second));
        (audit.commit(std::slice::from_ref(&lead)), audit.commit(std::slice::from_ref(&follow)))
    };
    assert_eq!(sink.0.lock().unwrap().0, 0, "nothing is written before the leader yields");
    drop(leader);
    follower.await.unwrap();
    let (writes, bytes) = sink.0.lock().unwrap().clone();
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(writes, 1, "the dropped leader wrote both lines at once");
    assert!(text.contains(&audit.guid_hmac(&first)) && text.contains(&audit.guid_hmac(&second)));
    // The lead was given up: a later commit leads and writes by itself.
    audit.commit(&[Event::new(Action::StatsRead, "ok", Actor::System)]).await.unwrap();
    assert_eq!(sink.0.lock().unwrap().0, 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_write_undoes_each_commit_even_one_dropped_meanwhile() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let audit = Audit::open(Path::new("/dev/full"), Zeroizing::new([0u8; 32]), Clock::System).unwrap();
    let undone = Arc::new(AtomicUsize::new(0));
    let undo = || {
        let undone = undone.clone();
        Some(Box::new(move || {
            undone.fetch_add(1, Ordering::SeqCst);
        }) as Undo)
    };
    let event = Event::new(Action::ContactPut, "ok", Actor::System);
    let mut leader = Box::pin(audit.commit_or_undo(std::slice::from_ref(&event), undo()));
    assert!(futures_util::FutureExt::now_or_never(&mut leader).is_none());
    let mut cancelled = Box::pin(audit.commit_or_undo(std::slice::from_ref(&event), undo()));
    assert!(futures_util::FutureExt::now_or_never(&mut cancelled).is_none());
    drop(cancelled);
    assert!(leader.await.is_err());
    assert_eq!(undone.load(Ordering::SeqCst), 2, "both stores are undone, the cancelled one too");
    // A write that succeeds undoes nothing.
    let ok = Audit::new(Box::new(Counting::default()), Zeroizing::new([0u8; 32]), Clock::System);
    ok.commit_or_undo(std::slice::from_ref(&event), undo()).await.unwrap();
    assert_eq!(undone.load(Ordering::SeqCst), 2);
}

#[test]
fn a_failing_sink_is_an_error() {
    let audit = Audit::open(Path::new("/dev/full"), Zeroizing::new([0u8; 32]), Clock::System).unwrap();
    assert!(audit.record(Event::new(Action::ServerStart, "ok", Actor::System)).is_err());
}

#[test]
fn reopen_moves_the_lines_to_a_new_file_under_the_name_and_keeps_writing_if_it_cannot() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let audit = Audit::open(&path, Zeroizing::new([0u8; 32]), Clock::System).unwrap();
    audit.record(Event::new(Action::ServerStart, "ok", Actor::System)).unwrap();
    let rotated = dir.path().join("audit.jsonl.1");
    fs::rename(&path, &rotated).unwrap();
    audit.record(Event::new(Action::StatsRead, "ok", Actor::System)).unwrap();
    assert!(audit.reopen().unwrap());
    audit.record(Event::new(Action::Reload, "ok", Actor::System)).unwrap();
    let old = fs::read_to_string(&rotated).unwrap();
    let new = fs::read_to_string(&path).unwrap();
    assert_eq!(old.lines().count(), 2, "{old}");
    assert!(old.contains("SERVER_START") && old.contains("STATS_READ"));
    assert_eq!(new.lines().count(), 1, "{new}");
    assert!(new.contains("\"action\":\"RELOAD\""), "{new}");
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

    // The name cannot be opened (a directory stands there): the error names the setting
    // and the file, and the lines go on to the file in use.
    fs::rename(&path, dir.path().join("audit.jsonl.2")).unwrap();
    fs::create_dir(&path).unwrap();
    let err = audit.reopen().unwrap_err().to_string();
    assert!(err.starts_with("audit.path ") && err.contains("audit.jsonl"), "{err}");
    audit.record(Event::new(Action::StatsRead, "ok", Actor::System)).unwrap();
    let kept = fs::read_to_string(dir.path().join("audit.jsonl.2")).unwrap();
    assert_eq!(kept.lines().count(), 2, "{kept}");

    let stdout = Audit::open(Path::new("-"), Zeroizing::new([0u8; 32]), Clock::System).unwrap();
    assert!(!stdout.reopen().unwrap(), "standard output is not reopened");
}
