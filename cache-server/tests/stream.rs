//! PutContacts: one result per item, in order; bad items do not stop the stream.
#![allow(clippy::unwrap_used)]

mod common;

use common::{BAD_ROW_FIELDS, Row, rows, start};
use proto::v1::{GetContactRequest, PutContactRequest, StatsRequest};
use tonic::Code;

#[tokio::test]
async fn bulk_stream_with_good_and_bad_items_mixed() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let good = rows("contacts.csv");
    let bad = rows("contacts-bad.csv");

    // Every 20th item is a bad row, the rest good rows, in one stream.
    let mut sent: Vec<(&Row, Option<&str>)> = Vec::new();
    let mut bad_iter = bad.iter().zip(BAD_ROW_FIELDS.iter());
    for (i, row) in good.iter().enumerate() {
        if i % 20 == 7
            && let Some((row, (_, field))) = bad_iter.next()
        {
            sent.push((row, Some(field)));
        }
        sent.push((row, None));
    }
    for (row, (_, field)) in bad_iter {
        sent.push((row, Some(field)));
    }
    assert_eq!(sent.len(), good.len() + bad.len());

    let requests: Vec<PutContactRequest> =
        sent.iter().map(|(row, _)| PutContactRequest { contact: Some(row.to_contact()) }).collect();
    let mut results =
        c.emr("site-1001").put_contacts(tokio_stream::iter(requests)).await.unwrap().into_inner();

    let mut stored = Vec::new();
    let mut index = 0u64;
    while let Some(result) = results.message().await.unwrap() {
        assert_eq!(result.index, index, "results come in order");
        let (row, bad_field) = sent[index as usize];
        // This connector is site-1001's: other sites' rows are not its to store.
        let other_site = bad_field.is_none() && row.site_id != "site-1001";
        match bad_field {
            None if other_site => {
                let error = result.error.unwrap_or_else(|| panic!("{} crossed sites", row.row_id));
                assert_eq!(error.code, Code::PermissionDenied as i32);
                assert_eq!(error.field, "contact.site_id");
            }
            None => {
                assert!(result.error.is_none(), "{}: {:?}", row.row_id, result.error);
                assert_eq!(result.guid.len(), 36);
                assert!(result.expires_at.is_some());
                stored.push((result.guid, row));
            }
            Some(field) => {
                let error = result.error.unwrap_or_else(|| panic!("{} was accepted", row.row_id));
                assert!(result.guid.is_empty());
                assert_eq!(error.code, Code::InvalidArgument as i32);
                assert_eq!(error.field, field, "{}: {}", row.row_id, error.message);
                assert!(error.message.starts_with(field));
            }
        }
        index += 1;
    }
    assert_eq!(index as usize, sent.len(), "one result per item");

    let own = good.iter().filter(|row| row.site_id == "site-1001").count();
    assert!(own > 20 && own < good.len());
    let stats = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, own as u64);
    assert_eq!(stored.len(), own);
    for (guid, row) in stored.iter().step_by(17) {
        let back =
            c.outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap().into_inner();
        assert_eq!((&back.phone, &back.email, &back.provider_id), (&row.phone, &row.email, &row.provider_id));
    }
}

#[tokio::test]
async fn the_bound_refuses_items_without_stopping_the_stream() {
    let server = start(|c| c.store.max_entries = 10).await;
    let mut c = server.clients().await;
    let good = rows("contacts.csv");
    let requests: Vec<_> = good
        .iter()
        .filter(|row| row.site_id == "site-1001")
        .take(15)
        .map(|row| PutContactRequest { contact: Some(row.to_contact()) })
        .collect();
    let mut results =
        c.emr("site-1001").put_contacts(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut codes = Vec::new();
    while let Some(result) = results.message().await.unwrap() {
        codes.push(result.error.map_or(0, |e| e.code));
    }
    assert_eq!(codes.len(), 15);
    assert!(codes[..10].iter().all(|c| *c == 0));
    assert!(codes[10..].iter().all(|c| *c == Code::ResourceExhausted as i32));
}

#[tokio::test]
async fn an_oversized_item_ends_the_stream_resource_exhausted_after_the_earlier_results() {
    // store.max_message_bytes at its default, 16 KiB; the fourth item carries 8 MiB.
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let good: Vec<_> = rows("contacts.csv").into_iter().filter(|row| row.site_id == "site-1001").collect();
    let mut requests: Vec<_> =
        good.iter().take(3).map(|row| PutContactRequest { contact: Some(row.to_contact()) }).collect();
    let mut huge = good[3].to_contact();
    huge.campaign_id = "c".repeat(8 << 20);
    requests.push(PutContactRequest { contact: Some(huge) });
    requests.push(PutContactRequest { contact: Some(good[4].to_contact()) });
    let mut results =
        c.emr("site-1001").put_contacts(tokio_stream::iter(requests)).await.unwrap().into_inner();
    for i in 0..3 {
        let result = results.message().await.unwrap().unwrap();
        assert_eq!(result.index, i);
        assert!(result.error.is_none());
    }
    let end = results.message().await.unwrap_err();
    assert_eq!(end.code(), Code::ResourceExhausted, "{end:?}");
    assert!(end.message().contains("16384") && end.message().contains("store.max_message_bytes"), "{end:?}");
    // The three before it are held; nothing of it or after it.
    let stats = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, 3);
}

#[tokio::test]
async fn a_batch_that_cannot_be_audited_is_not_kept_and_ends_the_stream() {
    use common::{Switchable, start_with_audit_sink};
    use std::sync::atomic::Ordering;

    let sink = Switchable::default();
    let server = start_with_audit_sink(|_| {}, Box::new(sink.clone())).await;
    let mut c = server.clients().await;
    let good = rows("contacts.csv");
    let requests: Vec<PutContactRequest> = good
        .iter()
        .filter(|row| row.site_id == "site-1001")
        .map(|row| PutContactRequest { contact: Some(row.to_contact()) })
        .collect();
    assert!(requests.len() > 10);

    // Audited: every item has its own line, though lines are written a batch at a time.
    let mut results =
        c.emr("site-1001").put_contacts(tokio_stream::iter(requests.clone())).await.unwrap().into_inner();
    let mut ok = 0;
    while let Some(result) = results.message().await.unwrap() {
        assert!(result.error.is_none());
        ok += 1;
    }
    assert_eq!(ok, requests.len());
    let written = String::from_utf8(sink.written.lock().unwrap().clone()).unwrap();
    let lines = written.lines().filter(|l| l.contains("CONTACT_PUT") && l.contains("PutContacts")).count();
    assert_eq!(lines, requests.len());

    // Not audited: no result is given, the stream ends UNAVAILABLE, nothing more is kept.
    sink.failing.store(true, Ordering::SeqCst);
    let mut results =
        c.emr("site-1001").put_contacts(tokio_stream::iter(requests.clone())).await.unwrap().into_inner();
    let status = match results.message().await {
        Ok(Some(result)) => panic!("item {} answered without an audit line", result.index),
        Ok(None) => panic!("the stream ended without an error"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::Unavailable);
    sink.failing.store(false, Ordering::SeqCst);
    let stats = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, requests.len() as u64, "the unaudited batch was erased");
}
