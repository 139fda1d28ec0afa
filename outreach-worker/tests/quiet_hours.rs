//! Quiet hours hold at the moment of sending, not only when a contact is picked up: a
//! message whose rate-limit wait or SMS retry runs past the window's end is not sent, and
//! comes back when the window opens. Against a real cache-server and survey-bridge on one
//! manual clock, and the Twilio stand-in, which moves that clock while the worker waits.
#![allow(clippy::unwrap_used)]

mod common;

use cache_server::clock::Clock;
use common::{
    tier::{Tier, contact},
    twilio::error,
};
use jiff::{SignedDuration, Timestamp};
use outreach_worker::{app, worker::Worker};
use proto::v1::GetContactRequest;
use tonic::Code;

/// Test phone numbers: the 613-999-01xx block used in the examples.
const PHONE: &str = "+16139990101";
const PHONE2: &str = "+16139990102";

/// 19:59 in Toronto (EST, UTC-5): the last minute of the default 09:00-20:00 window.
const LAST_MINUTE: &str = "2026-11-27T00:59:00Z";
/// 09:00 the next morning in Toronto: the window opens again.
const NEXT_OPENING: &str = "2026-11-27T14:00:00Z";

async fn worker(tier: &Tier, config: &outreach_worker::config::WorkerConfig) -> Worker {
    app::build(config, tier.clock.clone()).await.unwrap()
}

async fn gone(tier: &Tier, guid: &str) -> bool {
    let request = GetContactRequest { guid: guid.into() };
    tier.client("outreach").await.get_contact(request).await.is_err_and(|s| s.code() == Code::NotFound)
}

/// Moves the manual clock to `at`.
fn set(clock: &Clock, at: &str) {
    let at: Timestamp = at.parse().unwrap();
    clock.advance(at.duration_since(clock.now()));
}

/// Moves the clock past 20:00 in Toronto when the stand-in takes its first message, before it
/// answers: the worker is then between that message and whatever it does next.
fn close_the_window_at_the_first_message(tier: &Tier) {
    let clock = tier.clock.clone();
    let mut first = true;
    tier.twilio.on_message(move |_| {
        if std::mem::take(&mut first) {
            clock.advance(SignedDuration::from_mins(2));
        }
    });
}

/// The held contact is not due during the night, and goes out once when the window opens.
async fn sent_once_when_the_window_opens(tier: &Tier, w: &Worker, phone: &str, guid: &str) {
    assert!(!gone(tier, guid).await, "held, not lost");
    set(&tier.clock, NEXT_OPENING);
    tier.clock.advance(SignedDuration::from_mins(-1));
    assert_eq!(w.run_once().await.unwrap(), 0, "not due again before 09:00 in Toronto");
    tier.clock.advance(SignedDuration::from_mins(1));
    assert_eq!(w.run_once().await.unwrap(), 1, "due when the window opens");
    assert_eq!(tier.twilio.accepted_to(phone).len(), 1);
    assert!(gone(tier, guid).await, "sent and erased");
}

#[tokio::test]
async fn an_sms_retry_that_would_go_out_after_the_window_closes_is_held_until_it_opens() {
    let tier = Tier::start().await;
    let w = worker(&tier, &tier.worker_config("w.db")).await;
    let guid = tier.put(contact(PHONE, "", "en")).await;
    set(&tier.clock, LAST_MINUTE);
    // The provider is busy at the first attempt (19:59); while the worker waits to try again,
    // 20:00 passes in Toronto.
    tier.twilio.script(PHONE, [error(20503, 503)]);
    close_the_window_at_the_first_message(&tier);

    assert_eq!(w.run_once().await.unwrap(), 1);
    let statuses: Vec<u16> = tier.twilio.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [503], "one attempt inside the window, none after it closed");
    assert!(tier.twilio.accepted_to(PHONE).is_empty(), "a message went out after 20:00 in Toronto");
    sent_once_when_the_window_opens(&tier, &w, PHONE, &guid).await;
}

#[tokio::test]
async fn a_message_whose_rate_limit_wait_outlasts_the_window_is_held_until_it_opens() {
    let tier = Tier::start().await;
    let mut config = tier.worker_config("w.db");
    // One SMS a second: of two contacts handled together, one waits about a second (real
    // time) for the rate limit, and the test's clock moves past 20:00 meanwhile.
    if let Some(sms) = config.sms.as_mut() {
        sms.per_second = 1;
    }
    let w = worker(&tier, &config).await;
    let g1 = tier.put(contact(PHONE, "", "en")).await;
    let g2 = tier.put(contact(PHONE2, "", "en")).await;
    set(&tier.clock, LAST_MINUTE);
    close_the_window_at_the_first_message(&tier);

    assert_eq!(w.run_once().await.unwrap(), 2);
    let seen = tier.twilio.seen();
    assert_eq!(seen.len(), 1, "one message inside the window, none after it closed");
    let (held_phone, held_guid) = if seen[0].to == PHONE { (PHONE2, &g2) } else { (PHONE, &g1) };
    assert!(tier.twilio.accepted_to(held_phone).is_empty(), "a message went out after 20:00 in Toronto");
    sent_once_when_the_window_opens(&tier, &w, held_phone, held_guid).await;
    assert_eq!(tier.twilio.seen().len(), 2, "each patient got one message");
}
