//! Messages name the clinic they are sent on behalf of (CASL sender identification): the
//! `[sites.<id>]` entry of the contact's site, in the SMS and the email that arrive; for a
//! site without an entry, the generic wording and one warning, or no message at all while
//! `worker.require_site_identity` is on. Against a real cache-server and survey-bridge, the
//! Twilio stand-in and an aiosmtpd sink, as in `tests/worker.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use common::{
    email::email_settings,
    smtp::{SmtpOptions, SmtpSink},
    tier::{Tier, contact},
};
use jiff::SignedDuration;
use outreach_worker::{app, config::SiteIdentity};
use proto::v1::{Channel as Preferred, GetContactRequest};
use tonic::Code;

/// Test phone numbers: the 613-999-01xx block used in the examples.
const PHONE: &str = "+16139990131";
const PHONE2: &str = "+16139990132";

const CONTACT: &str = "250 rue Principale, Gatineau QC J8X 1A1 · 613-999-0150 · soleil.example";

/// The clinic of site-1001, the tier's EMR site.
fn soleil() -> SiteIdentity {
    SiteIdentity { name: "Clinique Soleil".into(), contact: CONTACT.into() }
}

/// Another site's clinic, which no message of site-1001 may name.
fn other() -> SiteIdentity {
    SiteIdentity {
        name: "Riverside Family Health".into(),
        contact: "9 River Road, Ottawa ON K1A 0A1 · riverside.example".into(),
    }
}

async fn gone(tier: &Tier, guid: &str) -> bool {
    let request = GetContactRequest { guid: guid.into() };
    tier.client("outreach").await.get_contact(request).await.is_err_and(|s| s.code() == Code::NotFound)
}

/// Collects this thread's log lines (the tests run on a current-thread runtime).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn an_sms_names_the_clinic_of_the_contacts_site() {
    let tier = Tier::start().await;
    let mut config = tier.worker_config("w.db");
    config.sites.insert("site-1001".into(), soleil());
    config.sites.insert("site-2002".into(), other());
    let w = app::build(&config, tier.clock.clone()).await.unwrap();
    let fr = tier.put(contact(PHONE, "", "fr")).await;
    let en = tier.put(contact(PHONE2, "", "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 2);

    let public = tier.public_url();
    let body = &tier.twilio.accepted_to(PHONE)[0].body;
    assert!(body.starts_with("Clinique Soleil vous invite à un sondage facultatif"), "{body}");
    assert!(body.contains(&format!("{public}/s/{fr}")), "{body}");
    let body = &tier.twilio.accepted_to(PHONE2)[0].body;
    assert!(body.starts_with("Clinique Soleil invites you to an optional"), "{body}");
    assert!(body.contains(&format!("{public}/s/{en}")), "{body}");
    for seen in tier.twilio.seen() {
        let body = seen.body.to_lowercase();
        assert!(!body.contains("your clinic") && !body.contains("votre clinique"), "{body}");
        assert!(!body.contains("riverside") && !body.contains("site-1001"), "{body}");
    }
    assert!(gone(&tier, &fr).await && gone(&tier, &en).await);
}

#[tokio::test]
async fn an_email_names_the_clinic_and_how_to_reach_it() {
    let Some(sink) = SmtpSink::start(SmtpOptions::default()) else { return };
    let tier = Tier::start().await;
    let mut config = tier.worker_config("w.db");
    config.sites.insert("site-1001".into(), soleil());
    config.sites.insert("site-2002".into(), other());
    config.email = Some(email_settings(sink.port, "Patient survey <survey@clinic.example.org>"));
    let w = app::build(&config, tier.clock.clone()).await.unwrap();
    for (address, lang) in [("ana.patient@example.org", "en"), ("bea.patiente@example.org", "fr")] {
        let mut c = contact("", address, lang);
        c.channel = Preferred::Email as i32;
        tier.put(c).await;
    }
    assert_eq!(w.run_once().await.unwrap(), 2);

    let mails = sink.wait_for(2).await;
    assert_eq!(mails.len(), 2);
    for mail in &mails {
        let lang = mail.header("Content-Language").unwrap();
        let subject = mail.subject();
        let expected = match lang {
            "en" => "Patient-experience survey from Clinique Soleil (optional)",
            _ => "Sondage sur l'expérience des patients – Clinique Soleil (facultatif)",
        };
        assert_eq!(subject, expected);
        let text = mail.part("text/plain").unwrap();
        let html = mail.part("text/html").unwrap();
        for body in [&text, &html] {
            assert!(body.contains("Clinique Soleil"), "{lang}: {body}");
            assert!(body.contains(CONTACT), "{lang}: the contact line: {body}");
            let lower = body.to_lowercase();
            assert!(!lower.contains("your clinic") && !lower.contains("votre clinique"), "{body}");
            assert!(!body.contains("Riverside"), "another site's clinic: {body}");
        }
    }
    assert_eq!(tier.entries().await, 0);
}

#[tokio::test]
async fn a_site_without_an_entry_gets_the_generic_wording_or_waits_when_identity_is_required() {
    cache_server::telemetry::install_recorder();
    let (logs, _guard) = Logs::capture();
    let tier = Tier::start().await;
    // Only another site has an entry: site-1001's contacts have no clinic identity.
    let mut config = tier.worker_config("w.db");
    config.sites.insert("site-2002".into(), other());
    let w = app::build(&config, tier.clock.clone()).await.unwrap();
    tier.put(contact(PHONE, "", "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    tier.put(contact(PHONE2, "", "fr")).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    let body = &tier.twilio.accepted_to(PHONE)[0].body;
    assert!(body.starts_with("Your clinic invites you"), "{body}");
    let body = &tier.twilio.accepted_to(PHONE2)[0].body;
    assert!(body.starts_with("Votre clinique vous invite"), "{body}");
    assert!(tier.twilio.seen().iter().all(|s| !s.body.contains("Riverside")));
    // Warned once for the site, across batches; never with the contact.
    let log = logs.text();
    let warnings: Vec<&str> =
        log.lines().filter(|l| l.contains("WARN") && l.contains("no [sites] entry")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("site-1001") && warnings[0].contains("generic wording"), "{log}");
    assert!(!log.contains(&PHONE[2..]) && !log.contains(&PHONE2[2..]), "{log}");

    // With require_site_identity the contact is neither recorded nor sent: it comes back an
    // hour later, and goes out once the site has its entry (the worker restarted with it).
    let mut strict = tier.worker_config("strict.db");
    strict.sites.insert("site-2002".into(), other());
    strict.worker.require_site_identity = true;
    let w = app::build(&strict, tier.clock.clone()).await.unwrap();
    let waiting = tier.put(contact("+16139990133", "", "en")).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(tier.twilio.seen().len(), 2, "nothing more sent");
    assert!(!gone(&tier, &waiting).await, "kept for later");
    assert_eq!(tier.answered(&waiting).await, None, "not recorded with the bridge either");
    tier.clock.advance(SignedDuration::from_secs(3600 - 1));
    assert_eq!(w.run_once().await.unwrap(), 0, "not due again before the hour");
    tier.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(w.run_once().await.unwrap(), 1, "due again after it");
    assert_eq!(tier.twilio.seen().len(), 2, "and still not sent");
    let metrics = cache_server::telemetry::render_metrics();
    assert!(
        metrics
            .contains(r#"outreach_contacts_total{campaign="c-1",channel="none",outcome="no_site_identity"}"#),
        "{metrics}"
    );

    strict.sites.insert("site-1001".into(), soleil());
    let w = app::build(&strict, tier.clock.clone()).await.unwrap();
    tier.clock.advance(SignedDuration::from_hours(1));
    assert_eq!(w.run_once().await.unwrap(), 1);
    let body = &tier.twilio.accepted_to("+16139990133")[0].body;
    assert!(body.starts_with("Clinique Soleil invites you"), "{body}");
    assert!(gone(&tier, &waiting).await);
    assert_eq!(tier.answered(&waiting).await, Some(false));
}
