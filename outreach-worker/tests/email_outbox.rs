//! The local email outbox (`email_outbox`, development only), against a real cache-server and
//! survey-bridge in this process: an invitation lands as one Maildir file holding the link and,
//! of the contact, only the address it is sent to; nothing goes to the SMTP relay; the
//! address is in no log line; an unusable directory stops the start with the setting named.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use common::{
    email::email_settings,
    smtp::{Mail, free_port},
    tier::{Tier, contact},
};
use outreach_worker::{app, config::WorkerConfig};
use proto::v1::{Channel as Preferred, GetContactRequest};

const FROM: &str = "Clinic survey <survey@clinic.example.org>";
const PHONE: &str = "+16139990101";
const ADDRESS: &str = "patient.outbox@example.net";

/// The worker's log lines (its own crate only) on this thread: the test's runtime is
/// current-thread, so the worker's tasks log here too.
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
            .with_env_filter("outreach_worker=trace")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// The tier's worker configuration with email to a relay port nothing listens on, and the
/// outbox in `maildir`.
fn outbox_config(tier: &Tier, maildir: &Path) -> WorkerConfig {
    let mut config = tier.worker_config("w.db");
    config.email = Some(email_settings(free_port(), FROM));
    config.email_outbox = Some(maildir.to_path_buf());
    config
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect()
}

#[tokio::test]
async fn an_invitation_email_lands_in_the_maildir_with_the_link_and_only_the_address() {
    let (logs, _guard) = Logs::capture();
    let tier = Tier::start().await;
    let maildir = tier.path("mail");
    let config = outbox_config(&tier, &maildir);
    let worker = app::build(&config, tier.clock.clone()).await.unwrap();
    let mut c = contact(PHONE, ADDRESS, "en");
    c.channel = Preferred::Email as i32;
    let guid = tier.put(c).await;
    assert_eq!(worker.run_once().await.unwrap(), 1);

    // One file in new/, complete (nothing left in tmp/), owner-only; nothing to the SMS
    // provider, and the relay's port has no listener: the send came from the outbox.
    let new = files(&maildir.join("new"));
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(files(&maildir.join("tmp")).is_empty());
    assert_eq!(std::fs::metadata(&new[0]).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&maildir).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(tier.twilio.seen().is_empty(), "email was preferred");

    let mail = Mail::parse(&std::fs::read_to_string(&new[0]).unwrap());
    let public = tier.public_url();
    assert_eq!(mail.header("To"), Some(ADDRESS));
    assert_eq!(mail.header("From"), Some("\"Clinic survey\" <survey@clinic.example.org>"));
    assert_eq!(mail.header("List-Unsubscribe"), Some(format!("<{public}/u/{guid}>").as_str()));
    let text = mail.part("text/plain").unwrap();
    let html = mail.part("text/html").unwrap();
    assert!(text.contains(&format!("{public}/s/{guid}")), "{text}");
    assert!(html.contains(&format!("href=\"{public}/s/{guid}\"")), "{html}");
    // Of the contact, only the address, and only in To.
    let without_to: String = mail.raw.lines().filter(|l| !l.starts_with("To:")).collect();
    for private in [ADDRESS, PHONE, &PHONE[2..], "prov-a1", "site-1001", "America/Toronto"] {
        assert!(!without_to.contains(private), "{private} in the message");
        assert!(!text.contains(private) && !html.contains(private), "{private} in the body");
    }

    // Sent as over SMTP: recorded with the bridge, the contact erased.
    assert_eq!(tier.answered(&guid).await, Some(false));
    let request = GetContactRequest { guid: guid.clone() };
    let gone = tier.client("outreach").await.get_contact(request).await;
    assert!(gone.is_err_and(|s| s.code() == tonic::Code::NotFound));

    let logs = logs.text();
    assert!(logs.contains("local Maildir outbox") && logs.contains("development only"), "{logs}");
    for private in [ADDRESS, "patient.outbox", PHONE, &PHONE[2..]] {
        assert!(!logs.contains(private), "{private} in the logs:\n{logs}");
    }
    worker.suppression.close().await;
}

/// Why `config` is refused at start, or a panic when it is not.
async fn refused(tier: &Tier, config: &WorkerConfig) -> String {
    match app::build(config, tier.clock.clone()).await {
        Ok(_) => panic!("started with an unusable email_outbox"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn an_unusable_outbox_directory_stops_the_start_and_names_the_setting() {
    let tier = Tier::start().await;
    let file = tier.path("not-a-directory");
    std::fs::write(&file, "").unwrap();
    let err = refused(&tier, &outbox_config(&tier, &file.join("mail"))).await;
    assert!(err.starts_with("email_outbox ") && err.contains("not-a-directory"), "{err}");

    let mut no_email = outbox_config(&tier, &tier.path("mail"));
    no_email.email = None;
    let err = refused(&tier, &no_email).await;
    assert!(err.contains("email_outbox: needs the [email] section"), "{err}");
}
