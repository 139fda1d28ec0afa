//! The SMTP mailer against Debian's aiosmtpd on a loopback port: delivery in both languages
//! with the one-click unsubscribe headers, STARTTLS and implicit TLS with a private CA,
//! authentication, outcome classes (550, 451, down, stalled), the pool, and logs free of
//! addresses. Skipped with a note when aiosmtpd is missing, unless OUTREACH_REQUIRE_SMTP=1.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeSet,
    io::Write,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{
    email::smtp_config,
    smtp::{SmtpOptions, SmtpSink, free_port},
};
use outreach_worker::{
    email::{EmailConfig, EmailMessage, EmailOutcome, Mailer, SmtpTls},
    templates::{Templates, Vars},
};

const GUID: &str = "3f2a9c4e-8b1d-4e6f-a2c5-7d9e0b1f4a6c";
const FROM: &str = "Clinic survey <survey@clinic.example.org>";
/// Test addresses under example.net (RFC 2606).
const PATIENT_EN: &str = "patient.en@example.net";
const PATIENT_FR: &str = "patient.fr@example.net";
const NOBODY: &str = "nobody@example.net";
const BUSY: &str = "busy@example.net";
/// Headers the sink adds itself (the peer and the envelope); not sent by the mailer.
const SINK_HEADERS: [&str; 3] = ["X-Peer", "X-MailFrom", "X-RcptTo"];

fn link() -> String {
    format!("https://bridge.example.org/s/{GUID}")
}

fn unsubscribe() -> String {
    format!("https://bridge.example.org/u/{GUID}")
}

fn config(port: u16, tls: SmtpTls) -> EmailConfig {
    smtp_config(port, tls, FROM)
}

fn message(to: &str, lang: &str) -> EmailMessage {
    let vars = Vars {
        link: link(),
        unsubscribe_link: unsubscribe(),
        reminder: false,
        campaign_id: "spring".into(),
        ..Vars::default()
    };
    EmailMessage {
        to: to.into(),
        lang: lang.into(),
        body: Templates::builtin().email("spring", lang, &vars).unwrap(),
        unsubscribe_url: unsubscribe(),
    }
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
async fn plain_delivery_in_english_and_french() {
    let Some(sink) = SmtpSink::start(SmtpOptions::default()) else { return };
    let (logs, _guard) = Logs::capture();
    let mailer = Mailer::new(&config(sink.port, SmtpTls::None)).unwrap();
    assert_eq!(mailer.send(&message(PATIENT_EN, "en")).await, EmailOutcome::Sent);
    assert_eq!(mailer.send(&message(PATIENT_FR, "fr")).await, EmailOutcome::Sent);

    let mails = sink.wait_for(2).await;
    assert_eq!(mails.len(), 2);
    for (to, lang) in [(PATIENT_EN, "en"), (PATIENT_FR, "fr")] {
        let mail =
            mails.iter().find(|m| m.header("To") == Some(to)).unwrap_or_else(|| panic!("no mail to {lang}"));
        let expected = message(to, lang).body;
        assert_eq!(mail.header("X-RcptTo"), Some(to), "envelope recipient");
        assert!(mail.header("From").unwrap().ends_with("<survey@clinic.example.org>"));
        assert_eq!(mail.subject(), expected.subject);
        assert_eq!(mail.header("Content-Language"), Some(lang));
        assert_eq!(mail.header("List-Unsubscribe"), Some(format!("<{}>", unsubscribe()).as_str()));
        assert_eq!(mail.header("List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
        assert!(mail.header("Content-Type").unwrap().starts_with("multipart/alternative"));
        assert!(mail.header("Message-ID").unwrap().ends_with("@clinic.example.org>"));
        assert!(mail.header("Date").is_some());

        let text = mail.part("text/plain").unwrap();
        let html = mail.part("text/html").unwrap();
        assert_eq!(text.trim_end(), expected.text.replace("\r\n", "\n").trim_end());
        assert!(text.contains(&link()) && text.contains(&unsubscribe()));
        assert!(html.contains(&format!("href=\"{}\"", link())));
        assert!(html.contains(&format!("href=\"{}\"", unsubscribe())));
        assert!(html.contains(&format!("<html lang=\"{lang}\">")));

        // Nothing else about the patient: exactly these headers (beside the sink's own), and
        // the address only in To.
        let names: BTreeSet<&str> =
            mail.header_names().into_iter().filter(|n| !SINK_HEADERS.contains(n)).collect();
        let expected_names = BTreeSet::from([
            "Content-Language",
            "Content-Type",
            "Date",
            "From",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "MIME-Version",
            "Message-ID",
            "Subject",
            "To",
        ]);
        assert_eq!(names, expected_names);
        let sent: String = mail
            .raw
            .lines()
            .filter(|line| !SINK_HEADERS.iter().any(|h| line.starts_with(&format!("{h}:"))))
            .collect();
        assert_eq!(sent.matches(to).count(), 1, "{lang}: the address only in To");
    }
    let logs = logs.text();
    assert!(!logs.contains("example.net"), "{logs}");
}

#[tokio::test]
async fn starttls_with_the_test_ca_and_refused_without_it() {
    let Some(sink) = SmtpSink::start(SmtpOptions { starttls: true, ..SmtpOptions::default() }) else {
        return;
    };
    let trusted =
        Mailer::new(&EmailConfig { ca_file: Some(sink.ca_file()), ..config(sink.port, SmtpTls::Starttls) })
            .unwrap();
    assert_eq!(trusted.send(&message(PATIENT_EN, "en")).await, EmailOutcome::Sent);

    // The public roots do not include the test CA: the handshake fails, nothing is sent.
    let untrusted = Mailer::new(&config(sink.port, SmtpTls::Starttls)).unwrap();
    assert_eq!(untrusted.send(&message(PATIENT_FR, "fr")).await, EmailOutcome::Retry { code: None });

    // The sink requires STARTTLS: a plaintext client is refused before MAIL (530).
    let plain = Mailer::new(&config(sink.port, SmtpTls::None)).unwrap();
    assert_eq!(plain.send(&message(PATIENT_FR, "fr")).await, EmailOutcome::Retry { code: Some(530) });

    let mails = sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mails_later = sink.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails_later.len(), 1);
    assert_eq!(mails[0].header("To"), Some(PATIENT_EN));
}

#[tokio::test]
async fn implicit_tls_with_the_test_ca() {
    let Some(sink) = SmtpSink::start(SmtpOptions { implicit_tls: true, ..SmtpOptions::default() }) else {
        return;
    };
    let mailer =
        Mailer::new(&EmailConfig { ca_file: Some(sink.ca_file()), ..config(sink.port, SmtpTls::Implicit) })
            .unwrap();
    assert_eq!(mailer.send(&message(PATIENT_FR, "fr")).await, EmailOutcome::Sent);
    let mails = sink.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].header("Content-Language"), Some("fr"));
    // A STARTTLS client against an SMTPS port fails to talk and is retried.
    let wrong = Mailer::new(&EmailConfig {
        ca_file: Some(sink.ca_file()),
        timeout_seconds: 2,
        ..config(sink.port, SmtpTls::Starttls)
    })
    .unwrap();
    assert_eq!(wrong.send(&message(PATIENT_EN, "en")).await, EmailOutcome::Retry { code: None });
}

#[tokio::test]
async fn authentication_over_starttls() {
    let options = SmtpOptions {
        starttls: true,
        login: Some(("survey".into(), "correct horse".into())),
        ..SmtpOptions::default()
    };
    let Some(sink) = SmtpSink::start(options) else { return };
    let (logs, _guard) = Logs::capture();
    let with = |username: Option<&str>, password: Option<&str>| EmailConfig {
        ca_file: Some(sink.ca_file()),
        username: username.map(Into::into),
        password: password.map(Into::into),
        ..config(sink.port, SmtpTls::Starttls)
    };
    let good = Mailer::new(&with(Some("survey"), Some("correct horse"))).unwrap();
    assert_eq!(good.send(&message(PATIENT_EN, "en")).await, EmailOutcome::Sent);

    // Bad or missing credentials are our configuration, not the patient's address: retried.
    let bad = Mailer::new(&with(Some("survey"), Some("wrong"))).unwrap();
    assert_eq!(bad.send(&message(PATIENT_EN, "en")).await, EmailOutcome::Retry { code: Some(535) });
    let none = Mailer::new(&with(None, None)).unwrap();
    assert_eq!(none.send(&message(PATIENT_EN, "en")).await, EmailOutcome::Retry { code: Some(530) });

    assert_eq!(sink.wait_for(1).await.len(), 1);
    let logs = logs.text();
    assert!(logs.contains("535") && logs.contains("530"), "{logs}");
    assert!(
        !logs.contains("correct horse") && !logs.contains("wrong") && !logs.contains("example.net"),
        "{logs}"
    );
}

#[tokio::test]
async fn refused_recipients_are_classified_and_never_logged() {
    let options =
        SmtpOptions { reject: vec![NOBODY.into()], defer: vec![BUSY.into()], ..SmtpOptions::default() };
    let Some(sink) = SmtpSink::start(options) else { return };
    let (logs, _guard) = Logs::capture();
    let mailer = Mailer::new(&config(sink.port, SmtpTls::None)).unwrap();

    // The server's answers echo the address ("550 5.1.1 <nobody@...>: no such user").
    assert_eq!(mailer.send(&message(NOBODY, "en")).await, EmailOutcome::FailedPermanent { code: Some(550) });
    assert_eq!(mailer.send(&message(BUSY, "fr")).await, EmailOutcome::Retry { code: Some(451) });
    // Invalid addresses never reach the server.
    for to in ["not an address", "a@b@example.net", ""] {
        assert_eq!(mailer.send(&message(to, "en")).await, EmailOutcome::FailedPermanent { code: None });
    }
    // The same mailer still delivers afterwards.
    assert_eq!(mailer.send(&message(PATIENT_EN, "en")).await, EmailOutcome::Sent);

    let mails = sink.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].header("To"), Some(PATIENT_EN));
    let logs = logs.text();
    assert!(logs.contains("550") && logs.contains("451"), "{logs}");
    for secret in ["example.net", "nobody", "busy", "no such user", "try again", "not an address"] {
        assert!(!logs.contains(secret), "{secret:?} in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn server_down_is_retried() {
    // Nothing listens on a port that was just free.
    let port = free_port();
    let mailer = Mailer::new(&config(port, SmtpTls::None)).unwrap();
    assert_eq!(mailer.send(&message(PATIENT_EN, "en")).await, EmailOutcome::Retry { code: None });
}

#[tokio::test]
async fn stalled_server_times_out_and_is_retried() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            keep.lock().unwrap().push(stream);
        }
    });
    let mailer = Mailer::new(&EmailConfig { timeout_seconds: 1, ..config(port, SmtpTls::None) }).unwrap();
    let started = Instant::now();
    assert_eq!(mailer.send(&message(PATIENT_EN, "en")).await, EmailOutcome::Retry { code: None });
    assert_eq!(mailer.send(&message(PATIENT_EN, "en")).await, EmailOutcome::Retry { code: None });
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(held.lock().unwrap().len(), 2, "a new connection after the time-out");
}

#[tokio::test]
async fn pool_reuses_connections_and_delivers_everything() {
    let Some(sink) = SmtpSink::start(SmtpOptions::default()) else { return };
    let mailer = Arc::new(Mailer::new(&config(sink.port, SmtpTls::None)).unwrap());

    // One after the other: one connection, reused (the sink records the client's port).
    for i in 0..5 {
        let to = format!("patient{i}@example.net");
        assert_eq!(mailer.send(&message(&to, "en")).await, EmailOutcome::Sent);
        // Let the pool take the connection back before the next send.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mails = sink.wait_for(5).await;
    assert_eq!(mails.len(), 5);
    let peers: BTreeSet<&str> = mails.iter().map(|m| m.header("X-Peer").unwrap()).collect();
    assert_eq!(peers.len(), 1, "one connection for five messages: {peers:?}");

    // Five at once through a pool of two: all arrive.
    let sends = (5..10).map(|i| {
        let mailer = mailer.clone();
        tokio::spawn(async move { mailer.send(&message(&format!("patient{i}@example.net"), "fr")).await })
    });
    for send in sends.collect::<Vec<_>>() {
        assert_eq!(send.await.unwrap(), EmailOutcome::Sent);
    }
    let mails = sink.wait_for(10).await;
    let recipients: BTreeSet<String> = mails.iter().map(|m| m.header("To").unwrap().to_string()).collect();
    let expected: BTreeSet<String> = (0..10).map(|i| format!("patient{i}@example.net")).collect();
    assert_eq!(recipients, expected);
}
