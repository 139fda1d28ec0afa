//! The worker loop against a real cache-server and survey-bridge (in this process, on one
//! manual clock) and a Twilio stand-in: invitations, quiet hours, provider answers,
//! suppression, reminders, opt-outs that come after the cache erased the contact.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    email::email_settings,
    smtp::{SmtpOptions, SmtpSink},
    tier::{Tier, contact},
    twilio::error,
};
use jiff::SignedDuration;
use outreach_worker::{
    app,
    config::CampaignSettings,
    worker::{Handled, Medium, Worker},
};
use proto::{
    ledger::PendingOptOutsRequest,
    v1::{AckOutcome, AckRequest, Channel as Preferred, GetContactRequest, LeaseDueRequest, OptOutRequest},
};
use tonic::Code;

/// Test phone numbers: the 613-999-01xx block used in the examples.
const PHONE: &str = "+16139990101";
const PHONE2: &str = "+16139990102";

async fn worker(tier: &Tier, db: &str) -> Worker {
    app::build(&tier.worker_config(db), tier.clock.clone()).await.unwrap()
}

async fn gone(tier: &Tier, guid: &str) -> bool {
    let request = GetContactRequest { guid: guid.into() };
    tier.client("outreach").await.get_contact(request).await.is_err_and(|s| s.code() == Code::NotFound)
}

/// The patient unsubscribes from `guid` with the RFC 8058 one-click POST.
async fn unsubscribe(tier: &Tier, guid: &str) {
    let response = tier
        .http()
        .post(format!("{}/u/{guid}", tier.public_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// The patient opens the link of `guid` and declines on the consent page.
async fn decline(tier: &Tier, guid: &str) {
    let http = tier.http();
    let url = format!("{}/s/{guid}", tier.public_url());
    let page = http.get(&url).send().await.unwrap().text().await.unwrap();
    let at = page.find("name=\"csrf\"").expect("a csrf field");
    let window = &page[at.saturating_sub(200)..(at + 200).min(page.len())];
    let value = window.split("value=\"").nth(1).unwrap();
    let csrf = &value[..value.find('"').unwrap()];
    let response = http
        .post(format!("{url}/consent"))
        .form(&[("csrf", csrf), ("choice", "decline")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// The opt-outs the bridge holds for the worker.
async fn pending_opt_outs(tier: &Tier) -> Vec<String> {
    let request = PendingOptOutsRequest { max: 500 };
    tier.ledger().await.pending_opt_outs(request).await.unwrap().into_inner().guids
}

#[tokio::test]
async fn an_sms_invitation_carries_only_the_link_and_erases_the_contact() {
    cache_server::telemetry::install_recorder();
    let tier = Tier::start().await;
    let w = worker(&tier, "w.db").await;
    let guid = tier.put(contact(PHONE, "", "fr")).await;
    assert_eq!(tier.answered(&guid).await, None, "not recorded before it is sent");

    assert_eq!(w.run_once().await.unwrap(), 1);
    let seen = tier.twilio.accepted_to(PHONE);
    assert_eq!(seen.len(), 1);
    let body = &seen[0].body;
    let link = format!("{}/s/{guid}", tier.public_url());
    assert!(body.contains(&link), "{body}");
    assert!(body.contains("sondage") || body.contains("Sondage"), "French text: {body}");
    for private in [PHONE, "prov-a1", "site-1001"] {
        assert!(!body.contains(private), "{private} in {body}");
    }
    assert_eq!(seen[0].from, common::twilio::FROM);
    // Recorded with the bridge before it was sent, and the contact erased once sent.
    assert_eq!(tier.answered(&guid).await, Some(false));
    assert!(gone(&tier, &guid).await);
    assert_eq!(tier.entries().await, 0);
    assert_eq!(w.run_once().await.unwrap(), 0);

    // Counted by campaign, channel and outcome; nothing about the patient in the metrics.
    let metrics = cache_server::telemetry::render_metrics();
    assert!(
        metrics.contains(r#"outreach_contacts_total{campaign="c-1",channel="sms",outcome="sent"}"#),
        "{metrics}"
    );
    assert!(!metrics.contains(&PHONE[2..]) && !metrics.contains(&guid), "{metrics}");
}

#[tokio::test]
async fn quiet_hours_hold_the_message_until_the_window_opens_in_the_patients_zone() {
    let tier = Tier::start().await;
    let w = worker(&tier, "w.db").await;
    // 15:00 UTC is 10:00 in Toronto but 07:00 in Vancouver.
    let mut west = contact(PHONE, "", "en");
    west.time_zone = "America/Vancouver".into();
    let guid = tier.put(west).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert!(tier.twilio.seen().is_empty(), "nothing sent before 09:00 local");
    assert_eq!(tier.answered(&guid).await, None, "nor recorded");
    assert_eq!(tier.entries().await, 1);

    // Not due again until 09:00 in Vancouver (17:00 UTC).
    tier.clock.advance(SignedDuration::from_secs(2 * 3600 - 1));
    assert_eq!(w.run_once().await.unwrap(), 0);
    tier.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(tier.twilio.accepted_to(PHONE).len(), 1);

    // A contact pushed at 20:00 Toronto time waits for 09:00 the next morning.
    let guid = tier.put(contact(PHONE2, "", "en")).await;
    tier.clock.advance(SignedDuration::from_hours(8)); // 01:00 UTC, 20:00 in Toronto
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert!(tier.twilio.accepted_to(PHONE2).is_empty());
    tier.clock.advance(SignedDuration::from_hours(13)); // 14:00 UTC, 09:00 in Toronto
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(tier.twilio.accepted_to(PHONE2).len(), 1);
    assert!(gone(&tier, &guid).await);
}

#[tokio::test]
async fn provider_answers_429_then_success_21211_and_21610() {
    let tier = Tier::start().await;
    let w = worker(&tier, "w.db").await;
    let busy = "+16139990111";
    let bad = "+16139990112";
    let stopped = "+16139990113";
    tier.twilio.script(busy, [error(20429, 429)]);
    tier.twilio.script(bad, [error(21211, 400)]);
    tier.twilio.script(stopped, [error(21610, 400)]);
    let g_busy = tier.put(contact(busy, "", "en")).await;
    let g_bad = tier.put(contact(bad, "", "en")).await;
    let g_stopped = tier.put(contact(stopped, "", "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 3);

    // 429 then success: retried by the client, sent once.
    assert_eq!(tier.twilio.accepted_to(busy).len(), 1);
    assert_eq!(tier.twilio.seen().iter().filter(|s| s.to == busy).count(), 2);
    // 21211 (not a valid number) and 21610 (replied STOP): nothing more to do, erased.
    for guid in [&g_busy, &g_bad, &g_stopped] {
        assert!(gone(&tier, guid).await);
    }
    assert_eq!(w.suppression.len().await.unwrap(), 1, "the STOP went on the suppression list");

    // A later contact with the STOP number, another campaign: never sent.
    let mut later = contact(stopped, "", "en");
    later.campaign_id = "c-2".into();
    let guid = tier.put(later).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(tier.twilio.seen().iter().filter(|s| s.to == stopped).count(), 1);
    assert!(gone(&tier, &guid).await);
    assert_eq!(tier.answered(&guid).await, None, "a suppressed contact is not recorded either");
}

#[tokio::test]
async fn a_provider_that_stays_busy_makes_the_contact_due_again_later() {
    let tier = Tier::start().await;
    let w = worker(&tier, "w.db").await;
    tier.twilio.script(PHONE, (0..4).map(|_| error(20503, 503)));
    let guid = tier.put(contact(PHONE, "", "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert!(tier.twilio.accepted_to(PHONE).is_empty());
    assert!(!gone(&tier, &guid).await);
    tier.clock.advance(SignedDuration::from_mins(15));
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(tier.twilio.accepted_to(PHONE).len(), 1);
    assert!(gone(&tier, &guid).await);
}

#[tokio::test]
async fn a_late_retry_from_a_lease_taken_again_is_refused_and_plans_no_second_send() {
    let tier = Tier::start().await;
    let w = worker(&tier, "w.db").await;
    tier.twilio.script(PHONE, (0..4).map(|_| error(20503, 503)));
    let guid = tier.put(contact(PHONE, "", "en")).await;
    // This worker's lease runs out before it is done (a slow provider), and another worker
    // takes the contact.
    let mut cache = tier.client("outreach").await;
    let mut lease = async |seconds| {
        let request = LeaseDueRequest { max: 10, lease_seconds: seconds };
        cache.lease_due(request).await.unwrap().into_inner().contacts.remove(0)
    };
    let first = lease(60).await;
    tier.clock.advance(SignedDuration::from_secs(61));
    let second = lease(300).await;
    assert_eq!((first.attempt, second.attempt), (1, 2));

    // The provider stays busy: the first worker's RETRY_AT is refused, fenced by its attempt.
    assert_eq!(w.handle(first).await, (Some(Medium::Sms), Handled::NotAcked));
    // The second worker sends, and its SENT erases the contact: nothing is planned after it
    // (an unfenced RETRY_AT would have put the contact back, to be sent once more later).
    let sent = AckRequest {
        guid: second.guid.clone(),
        outcome: AckOutcome::Sent as i32,
        attempt: second.attempt,
        sent_before: second.sent_before,
        ..Default::default()
    };
    tier.client("outreach").await.ack(sent).await.unwrap();
    assert!(gone(&tier, &guid).await);
}

#[tokio::test]
async fn an_opt_out_survives_a_worker_restart_and_blocks_a_later_contact() {
    let tier = Tier::start().await;
    let guid = tier.put(contact(PHONE, "", "en")).await;
    tier.client("bridge").await.opt_out(OptOutRequest { guid: guid.clone() }).await.unwrap();
    {
        let w = worker(&tier, "w.db").await;
        assert_eq!(w.run_once().await.unwrap(), 1, "handed out once, for suppression");
        assert_eq!(w.suppression.len().await.unwrap(), 1);
        w.suppression.close().await;
    }
    assert!(tier.twilio.seen().is_empty());
    assert_eq!(tier.entries().await, 0, "erased once suppressed");

    // A new worker on the same database; the same phone pushed again for a new visit.
    let w = worker(&tier, "w.db").await;
    let mut again = contact(PHONE, "", "fr");
    again.campaign_id = "c-2".into();
    let guid = tier.put(again).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert!(tier.twilio.seen().is_empty(), "never sent");
    assert!(gone(&tier, &guid).await);

    // A worker on another database knows nothing of it: the list is what blocks it.
    let fresh = worker(&tier, "other.db").await;
    tier.put(contact(PHONE, "", "en")).await;
    fresh.run_once().await.unwrap();
    assert_eq!(tier.twilio.accepted_to(PHONE).len(), 1);
}

#[tokio::test]
async fn the_channel_is_the_preferred_one_else_the_one_available() {
    let tier = Tier::start().await;
    // Only SMS is configured: an email-only contact waits for a worker that has email.
    let w = worker(&tier, "w.db").await;
    let mut prefers_email = contact(PHONE, "someone@example.org", "en");
    prefers_email.channel = Preferred::Email as i32;
    let g1 = tier.put(prefers_email).await;
    let g2 = tier.put(contact("", "nobody@example.org", "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 2);
    assert_eq!(tier.twilio.accepted_to(PHONE).len(), 1, "email preferred but not configured: SMS");
    assert!(gone(&tier, &g1).await);
    assert!(!gone(&tier, &g2).await, "kept for a worker with email");
    let due = tier.client("outreach").await.lease_due(LeaseDueRequest { max: 10, lease_seconds: 60 }).await;
    assert!(due.unwrap().into_inner().contacts.is_empty(), "and not due again at once");
}

#[tokio::test]
async fn a_reminder_goes_out_only_while_the_survey_is_unanswered() {
    let tier = Tier::start().await;
    let mut config = tier.worker_config("w.db");
    config.campaigns.insert("c-1".into(), CampaignSettings { reminder_days: Some(3) });
    let w = app::build(&config, tier.clock.clone()).await.unwrap();
    let quiet = tier.put(contact(PHONE, "", "en")).await;
    let answered = tier.put(contact(PHONE2, "", "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 2);
    assert_eq!(tier.twilio.seen().len(), 2);
    assert!(!gone(&tier, &quiet).await, "kept for the reminder");

    // One patient unsubscribes from the link (a decline: no reminder for them).
    let url = format!("{}/u/{answered}", tier.public_url());
    let response = tier
        .http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(tier.answered(&answered).await, Some(true));

    tier.clock.advance(SignedDuration::from_hours(3 * 24 - 1));
    assert_eq!(w.run_once().await.unwrap(), 0);
    tier.clock.advance(SignedDuration::from_hours(1));
    assert_eq!(w.run_once().await.unwrap(), 2);
    let reminders = tier.twilio.accepted_to(PHONE);
    assert_eq!(reminders.len(), 2, "the reminder");
    assert!(reminders[1].body.contains(&format!("/s/{quiet}")));
    assert_eq!(tier.twilio.accepted_to(PHONE2).len(), 1, "no reminder after an answer");
    assert!(gone(&tier, &quiet).await && gone(&tier, &answered).await, "nothing more planned");
}

#[tokio::test]
async fn an_email_invitation_arrives_in_french_with_the_link_and_one_click_unsubscribe() {
    let Some(sink) = SmtpSink::start(SmtpOptions::default()) else { return };
    let tier = Tier::start().await;
    let mut config = tier.worker_config("w.db");
    config.email = Some(email_settings(sink.port, "Sondage de la clinique <survey@clinic.example.org>"));
    let w = app::build(&config, tier.clock.clone()).await.unwrap();
    let address = "patient.fr@example.org";
    let mut c = contact(PHONE, address, "fr");
    c.channel = Preferred::Email as i32;
    let guid = tier.put(c).await;
    assert_eq!(w.run_once().await.unwrap(), 1);

    let mails = sink.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    assert!(tier.twilio.seen().is_empty(), "email was preferred");
    let mail = &mails[0];
    let public = tier.public_url();
    assert_eq!(mail.header("To"), Some(address));
    assert_eq!(mail.header("Content-Language"), Some("fr"));
    assert_eq!(mail.header("List-Unsubscribe"), Some(format!("<{public}/u/{guid}>").as_str()));
    assert_eq!(mail.header("List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
    let text = mail.part("text/plain").unwrap();
    let html = mail.part("text/html").unwrap();
    assert!(text.contains(&format!("{public}/s/{guid}")), "{text}");
    assert!(html.contains(&format!("href=\"{public}/s/{guid}\"")), "{html}");
    assert!(html.contains("<html lang=\"fr\">"));
    // Nothing else patient-specific: the address only in To (and the sink's envelope line),
    // no phone, no provider, no site.
    let without_to: String = mail
        .raw
        .lines()
        .filter(|l| !l.starts_with("To:") && !l.starts_with("X-RcptTo:") && !l.starts_with("X-Peer"))
        .collect();
    for private in [address, PHONE, &PHONE[2..], "prov-a1", "site-1001"] {
        assert!(!without_to.contains(private), "{private} in the message");
        assert!(!text.contains(private) && !html.contains(private), "{private} in the body");
    }
    assert!(gone(&tier, &guid).await);
    assert_eq!(tier.answered(&guid).await, Some(false), "recorded with the bridge");
}

#[tokio::test]
async fn without_quiet_hours_and_with_the_local_outbox_sms_go_to_a_file_at_any_hour() {
    let tier = Tier::start().await;
    let mut config = tier.worker_config("w.db");
    config.quiet_hours.enabled = false;
    let outbox = tier.path("sms-outbox.jsonl");
    if let Some(sms) = config.sms.as_mut() {
        sms.outbox = Some(outbox.clone());
        sms.account_sid.clear();
    }
    let w = app::build(&config, tier.clock.clone()).await.unwrap();
    tier.clock.advance(SignedDuration::from_hours(10)); // 01:00 UTC, 20:00 in Toronto
    let guid = tier.put(contact(PHONE, "", "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert!(tier.twilio.seen().is_empty(), "nothing to the provider");
    let text = std::fs::read_to_string(&outbox).unwrap();
    assert!(text.contains(PHONE) && text.contains(&format!("/s/{guid}")), "{text}");
    assert!(gone(&tier, &guid).await);
}

#[tokio::test]
async fn a_decline_after_sending_blocks_the_same_patient_later() {
    cache_server::telemetry::install_recorder();
    let tier = Tier::start().await;
    let w = worker(&tier, "w.db").await;
    let sms_only = tier.put(contact(PHONE, "", "en")).await;
    let address = "ana.patient@example.org";
    let both = tier.put(contact(PHONE2, address, "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 2);
    assert_eq!(tier.twilio.accepted_to(PHONE).len(), 1);
    assert_eq!(tier.twilio.accepted_to(PHONE2).len(), 1, "SMS first for CHANNEL_ANY");
    // Sent and erased: the cache has nothing left to hand out for suppression.
    assert!(gone(&tier, &sms_only).await && gone(&tier, &both).await);
    assert_eq!(w.suppression.sent_len().await.unwrap(), 2, "remembered by GUID");
    assert!(w.suppression.is_empty().await.unwrap());

    // The next day one patient declines on the consent page, the other unsubscribes.
    tier.clock.advance(SignedDuration::from_hours(24));
    decline(&tier, &sms_only).await;
    tier.clock.advance(SignedDuration::from_mins(1));
    unsubscribe(&tier, &both).await;
    assert_eq!(pending_opt_outs(&tier).await, [sms_only.clone(), both.clone()]);

    // The worker picks them up before its next batch.
    assert_eq!(w.run_once().await.unwrap(), 0);
    assert!(pending_opt_outs(&tier).await.is_empty(), "confirmed");
    assert_eq!(w.suppression.sent_len().await.unwrap(), 0, "nothing kept once suppressed");
    assert_eq!(w.suppression.len().await.unwrap(), 3, "two phones and an email");
    assert!(w.suppression.is_suppressed(Some(PHONE), None).await.unwrap());
    assert!(w.suppression.is_suppressed(None, Some(address)).await.unwrap());
    assert_eq!(w.sync_opt_outs().await.unwrap(), 0, "nothing more to do");

    // Later visits, another campaign: the same phone; the same email, alone, written
    // otherwise. Neither is sent anything nor recorded; both are erased.
    let mut again = contact(PHONE, "", "fr");
    again.campaign_id = "c-2".into();
    let by_phone = tier.put(again).await;
    let mut again = contact("", &address.to_uppercase(), "en");
    again.campaign_id = "c-2".into();
    let by_email = tier.put(again).await;
    assert_eq!(w.run_once().await.unwrap(), 2);
    assert_eq!(tier.twilio.seen().len(), 2, "nothing more sent");
    for guid in [&by_phone, &by_email] {
        assert!(gone(&tier, guid).await, "acked SUPPRESSED, not left waiting for a channel");
        assert_eq!(tier.answered(guid).await, None);
    }

    let metrics = cache_server::telemetry::render_metrics();
    assert!(metrics.contains(r#"outreach_opt_outs_total{result="suppressed"}"#), "{metrics}");
    assert!(!metrics.contains(&sms_only) && !metrics.contains(&PHONE[2..]), "{metrics}");
}

#[tokio::test]
async fn a_sent_contact_is_remembered_only_as_hmacs_and_only_for_remember_days() {
    let tier = Tier::start().await;
    let mut config = tier.worker_config("w.db");
    config.worker.remember_days = 2;
    let w = app::build(&config, tier.clock.clone()).await.unwrap();
    let address = "bo.patient@example.org";
    let guid = tier.put(contact(PHONE, address, "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(w.suppression.sent_len().await.unwrap(), 1);

    // On disk (the database and its journal): no phone, no email, no GUID in any form.
    let simple = guid.replace('-', "");
    let raw = uuid::Uuid::parse_str(&guid).unwrap().into_bytes();
    let mut files = 0;
    for entry in std::fs::read_dir(tier.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("w.db") {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        for secret in [&PHONE[2..], address, "bo.patient", &guid, &simple] {
            assert!(!text.contains(secret), "{secret} in {}", path.display());
        }
        assert!(!bytes.windows(16).any(|w| w == raw), "the GUID's bytes in {}", path.display());
    }
    assert!(files >= 1);

    // Still remembered the day before remember_days run out; forgotten when they have.
    tier.clock.advance(SignedDuration::from_hours(24));
    w.sync_opt_outs().await.unwrap();
    assert_eq!(w.suppression.sent_len().await.unwrap(), 1);
    tier.clock.advance(SignedDuration::from_hours(24));
    // A decline after that (the link still works) suppresses nothing: the worker no
    // longer knows whom the GUID reached. It is confirmed all the same.
    unsubscribe(&tier, &guid).await;
    assert_eq!(w.sync_opt_outs().await.unwrap(), 1);
    assert_eq!(w.suppression.sent_len().await.unwrap(), 0);
    assert!(w.suppression.is_empty().await.unwrap());
    assert!(pending_opt_outs(&tier).await.is_empty());
    tier.put(contact(PHONE, "", "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(tier.twilio.accepted_to(PHONE).len(), 2);
}
