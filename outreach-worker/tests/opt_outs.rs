//! Opt-outs waiting at the bridge (a backlog, after a worker outage): the worker applies every
//! one of them, page after page, before it leases a contact; and while it cannot ask the
//! bridge, it leases nothing. Against a real cache-server and survey-bridge on one manual
//! clock, and the Twilio stand-in.
#![allow(clippy::unwrap_used)]

mod common;

use common::tier::{Tier, contact};
use futures_util::StreamExt;
use jiff::SignedDuration;
use outreach_worker::{app, suppression::ContactKeys, worker::Worker};
use proto::{
    ledger::{
        InvitationChannel, PendingOptOutsRequest, RecordInvitationRequest,
        invitation_ledger_client::InvitationLedgerClient,
    },
    v1::GetContactRequest,
};
use tonic::{Code, transport::Channel};

/// A patient who never opted out: the 613-999-01xx block used in the examples.
const PHONE: &str = "+16139990101";

/// Opt-outs waiting when the worker comes back: ten of the worker's old pages of 100, and
/// more than one of the bridge's largest (500).
const OPTED_OUT: usize = 1_000;

/// Patient `n`'s phone: +1 613 999 2000 to 2999.
fn phone(n: usize) -> String {
    format!("+1613999{:04}", 2000 + n)
}

fn email(n: usize) -> String {
    format!("patient{n}@example.org")
}

async fn worker(tier: &Tier, db: &str) -> Worker {
    app::build(&tier.worker_config(db), tier.clock.clone()).await.unwrap()
}

async fn gone(tier: &Tier, guid: &str) -> bool {
    let request = GetContactRequest { guid: guid.into() };
    tier.client("outreach").await.get_contact(request).await.is_err_and(|s| s.code() == Code::NotFound)
}

/// The opt-outs the bridge holds for the worker (at most a page).
async fn pending_opt_outs(tier: &Tier) -> Vec<String> {
    let request = PendingOptOutsRequest { max: 500 };
    tier.ledger().await.pending_opt_outs(request).await.unwrap().into_inner().guids
}

/// Patient `n` was invited under a GUID of its own, by SMS and email, as the worker does when
/// it sends (the invitation recorded with the bridge, the contact remembered by GUID), and
/// has since unsubscribed with the link's one-click POST.
async fn invited_then_unsubscribed(
    tier: &Tier,
    w: &Worker,
    mut ledger: InvitationLedgerClient<Channel>,
    http: reqwest::Client,
    n: usize,
) {
    let guid = uuid::Uuid::new_v4().to_string();
    let now = tier.clock.now();
    let request = RecordInvitationRequest {
        guid: guid.clone(),
        site_id: "site-1001".into(),
        provider_id: "prov-a1".into(),
        campaign_id: "c-1".into(),
        channel: InvitationChannel::Sms as i32,
        language: "en".into(),
        sent_at: Some(prost_types::Timestamp { seconds: now.as_second(), nanos: 0 }),
    };
    ledger.record_invitation(request).await.unwrap();
    let keys = ContactKeys { phone: Some(phone(n)), email: Some(email(n)) };
    let forget_at = now.as_second() + 31 * 86_400;
    w.suppression.remember_sent(&guid, &keys, forget_at).await.unwrap();
    let response = http
        .post(format!("{}/u/{guid}", tier.public_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test]
async fn every_pending_opt_out_is_applied_before_a_lease_even_a_backlog_of_a_thousand() {
    let tier = Tier::start().await;
    let w = worker(&tier, "w.db").await;
    let (ledger, http) = (tier.ledger().await, tier.http());
    // 999 patients opt out while the worker is down, then, a second later, the 1,000th: the
    // last in the bridge's queue (oldest first).
    futures_util::stream::iter(0..OPTED_OUT - 1)
        .for_each_concurrent(8, |n| invited_then_unsubscribed(&tier, &w, ledger.clone(), http.clone(), n))
        .await;
    tier.clock.advance(SignedDuration::from_secs(1));
    let last = OPTED_OUT - 1;
    invited_then_unsubscribed(&tier, &w, ledger.clone(), http.clone(), last).await;
    let first_page = pending_opt_outs(&tier).await;
    assert_eq!(first_page.len(), 500, "a backlog longer than a page");
    assert!(w.suppression.is_empty().await.unwrap());

    // The 1,000th patient comes back for another campaign, beside a patient who never opted
    // out. The worker's first batch after the outage must not invite them.
    let mut again = contact(&phone(last), &email(last), "en");
    again.campaign_id = "c-2".into();
    let again = tier.put(again).await;
    let control = tier.put(contact(PHONE, "", "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 2);
    assert!(
        tier.twilio.accepted_to(&phone(last)).is_empty(),
        "the 1,000th opted-out patient was sent an invitation"
    );
    assert_eq!(tier.twilio.seen().len(), 1, "only the patient who never opted out is sent anything");
    assert_eq!(tier.twilio.accepted_to(PHONE).len(), 1);
    assert!(gone(&tier, &again).await, "acked SUPPRESSED");
    assert_eq!(tier.answered(&again).await, None, "not recorded either");
    assert!(gone(&tier, &control).await);

    // All of them applied and confirmed: a phone and an email each; of the messages
    // remembered by GUID, only the one just sent is left.
    assert!(pending_opt_outs(&tier).await.is_empty(), "every opt-out confirmed");
    assert_eq!(w.suppression.len().await.unwrap(), 2 * OPTED_OUT as i64);
    assert_eq!(w.suppression.sent_len().await.unwrap(), 1);
    for n in [0, 99, 100, 499, 500, last] {
        assert!(w.suppression.is_suppressed(Some(&phone(n)), None).await.unwrap(), "patient {n}'s phone");
        assert!(w.suppression.is_suppressed(None, Some(&email(n))).await.unwrap(), "patient {n}'s email");
    }
    assert_eq!(w.sync_opt_outs().await.unwrap(), 0, "nothing more to do");
}

#[tokio::test]
async fn while_the_bridge_cannot_say_which_opt_outs_wait_nothing_is_leased() {
    let tier = Tier::start().await;
    let mut config = tier.worker_config("w.db");
    // A loopback port that nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    config.bridge.grpc.url = format!("https://{closed}");
    let cut_off = app::build(&config, tier.clock.clone()).await.unwrap();
    let guid = tier.put(contact(PHONE, "", "en")).await;
    assert_eq!(cut_off.run_once().await.unwrap(), 0, "nothing leased without the opt-outs");
    assert!(tier.twilio.seen().is_empty());

    // The contact was not taken: a worker that reaches the bridge sends it at once.
    let w = worker(&tier, "other.db").await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(tier.twilio.accepted_to(PHONE).len(), 1);
    assert!(gone(&tier, &guid).await);
}
