//! Everything the daemon logs, at every level, while it handles contacts good and bad,
//! holds none of the phones or emails it was given.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io,
    sync::{Arc, Mutex},
};

use common::{contact, rows, start};
use jiff::SignedDuration;
use proto::v1::{
    AckOutcome, AckRequest, DeleteContactRequest, DueKind, GetContactRequest, LeaseDueRequest, OptOutRequest,
    PutContactRequest, StatsRequest,
};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test]
async fn logs_hold_no_planted_contact_data() {
    let capture = Capture::default();
    tracing_subscriber::fmt().with_env_filter("trace").with_writer(capture.clone()).json().init();

    let server = start(|c| c.store.max_entries = 200).await;
    let mut c = server.clients().await;
    let good = rows("contacts.csv");
    let bad = rows("contacts-bad.csv");

    let mut planted: Vec<String> = Vec::new();
    for row in good.iter().chain(bad.iter()) {
        planted.extend([row.phone.clone(), row.email.clone()].into_iter().filter(|v| v.len() > 5));
    }
    for n in 0..5 {
        let c = contact(n);
        planted.extend([c.phone.clone(), c.email.clone()]);
    }

    // Unary puts, reads, deletes and opt-outs.
    let mut guids = Vec::new();
    for n in 0..5 {
        guids.push(c.put(contact(n)).await);
    }
    c.outreach.get_contact(GetContactRequest { guid: guids[0].clone() }).await.unwrap();
    c.emr("site-1001").delete_contact(DeleteContactRequest { guid: guids[1].clone() }).await.unwrap();
    c.bridge.opt_out(OptOutRequest { guid: guids[2].clone() }).await.unwrap();
    let _ = c.outreach.get_contact(GetContactRequest { guid: guids[2].clone() }).await.unwrap_err();

    // The outreach queue: invitations and the opt-out's suppression leased, then acked.
    let due = c.outreach.lease_due(LeaseDueRequest { max: 100, lease_seconds: 60 }).await.unwrap();
    let due = due.into_inner().contacts;
    assert_eq!(due.len(), 4);
    for d in &due {
        let outcome =
            if d.kind == DueKind::Suppress as i32 { AckOutcome::Suppressed } else { AckOutcome::Sent };
        c.outreach
            .ack(AckRequest { guid: d.guid.clone(), outcome: outcome as i32, ..Default::default() })
            .await
            .unwrap();
    }
    let _ = c
        .outreach
        .ack(AckRequest { guid: guids[3].clone(), outcome: 0, ..Default::default() })
        .await
        .unwrap_err();
    let _ = c.outreach.lease_due(LeaseDueRequest { max: 0, lease_seconds: 0 }).await.unwrap_err();

    // Bad rows one by one, then everything in a stream that overruns the bound.
    for row in &bad {
        let _ = c
            .emr("site-1001")
            .put_contact(PutContactRequest { contact: Some(row.to_contact()) })
            .await
            .unwrap_err();
    }
    let all: Vec<_> = good
        .iter()
        .chain(bad.iter())
        .map(|row| PutContactRequest { contact: Some(row.to_contact()) })
        .collect();
    let mut results = c.emr("site-1001").put_contacts(tokio_stream::iter(all)).await.unwrap().into_inner();
    while results.message().await.unwrap().is_some() {}

    // Expiry and the sweep.
    server.clock.advance(SignedDuration::from_hours(24 * 31));
    let _ = c.outreach.get_contact(GetContactRequest { guid: guids[0].clone() }).await.unwrap_err();
    c.admin.stats(StatsRequest {}).await.unwrap();
    server.stop().await.unwrap();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("grpc listening"), "the capture saw the daemon's logs");
    assert!(logs.contains("store erased"), "the capture saw the shutdown");
    assert!(logs.lines().count() > 20, "trace-level logging was captured");
    for value in &planted {
        assert!(!logs.contains(value.as_str()), "a planted contact value is in the logs");
    }
    // Phones as a log formatter might have reshaped them.
    for value in planted.iter().filter(|v| v.starts_with('+')) {
        assert!(!logs.contains(&value[1..]), "a planted phone's digits are in the logs");
    }
}
