//! The patient pages in a real browser: Debian's headless Chromium, driven over the DevTools
//! protocol (`chromiumoxide`), clicks its way through consent, the language switch, the
//! survey and the outcomes, in English and in French. Each page's response headers are read
//! as the browser received them (`Network.responseReceived` and its raw `ExtraInfo`), and
//! the browser's cookie jar is checked to stay empty. A campaign with an external survey is
//! followed to a stand-in survey tool on another loopback origin, which must get the GUID
//! and nothing else.
//!
//! Chromium is `/usr/bin/chromium`. Where it is missing these tests print a note and pass,
//! unless `BRIDGE_REQUIRE_CHROMIUM` is set (CI sets it), in which case they fail. The
//! launch and wait helpers are in `common/browser.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{
    Bridge,
    browser::{Chromium, Loaded, WAIT, chromium_present},
    guid, start,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
    task::JoinHandle,
};

const MONTH: &str = "2026-11";

/// What a patient reads, per language.
struct Words {
    lang: &'static str,
    title: &'static str,
    agree: &'static str,
    decline: &'static str,
    /// The switch link's label: the other language's name.
    switch: &'static str,
    required: &'static str,
    send: &'static str,
    thanks: &'static str,
    declined: &'static str,
    declined_text: &'static str,
    /// The one page of a link that is no longer open (answered, declined, expired).
    not_open: &'static str,
}

const EN: Words = Words {
    lang: "en",
    title: "Your recent visit",
    agree: "Take the survey",
    decline: "No, thank you",
    switch: "Français",
    required: "(required)",
    send: "Send my answers",
    thanks: "Thank you",
    declined: "You declined",
    declined_text: "You will not receive any more messages from this service, for this survey or any other.",
    not_open: "This link is no longer open",
};

const FR: Words = Words {
    lang: "fr",
    title: "Votre visite récente",
    agree: "Répondre au sondage",
    decline: "Non merci",
    switch: "English",
    required: "(obligatoire)",
    send: "Envoyer mes réponses",
    thanks: "Merci",
    declined: "Vous avez refusé",
    declined_text: "Vous ne recevrez plus aucun message de ce service, pour ce sondage ni pour un autre.",
    not_open: "Ce lien n'est plus ouvert",
};

fn other(words: &Words) -> &'static Words {
    if words.lang == "en" { &FR } else { &EN }
}

/// The consent page is shown in `words`' language, with its title, both choices and the switch.
async fn assert_consent_page(chromium: &Chromium, loaded: &Loaded, words: &Words) {
    assert_eq!(loaded.status, 200, "{}", loaded.url);
    loaded.check_privacy_headers();
    assert_eq!(chromium.attribute("html", "lang").await.as_deref(), Some(words.lang));
    assert_eq!(chromium.page.get_title().await.unwrap().as_deref(), Some(words.title));
    assert_eq!(chromium.text("h1").await, words.title);
    assert_eq!(chromium.text("button[value=agree]").await, words.agree);
    assert_eq!(chromium.text("button[value=decline]").await, words.decline);
    assert_eq!(chromium.text("p.lang a").await, words.switch);
    assert_eq!(chromium.attribute("p.lang a", "hreflang").await.as_deref(), Some(other(words).lang));
}

/// A message page (thanks, declined, already answered) in `lang`, headed `heading`.
async fn assert_message_page(chromium: &Chromium, loaded: &Loaded, status: i64, lang: &str, heading: &str) {
    assert_eq!(loaded.status, status, "{}", loaded.url);
    loaded.check_privacy_headers();
    assert_eq!(chromium.attribute("html", "lang").await.as_deref(), Some(lang));
    assert_eq!(chromium.text("h1").await, heading);
    assert_eq!(chromium.page.get_title().await.unwrap().as_deref(), Some(heading));
}

/// An invitation in `words`' language, answered in the browser: consent, the switch to the
/// other language and back, agree, the survey (the required question and two optional
/// ones, picked by their labels), thanks; then the link again says it was answered.
async fn answer_in_the_browser(words: &'static Words) {
    if !chromium_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    let g = guid();
    bridge.invite(&g, "prov-b1", words.lang).await;
    let chromium = Chromium::launch(&bridge).await;

    let consent = chromium.open(&bridge.url(&format!("/s/{g}"))).await;
    assert_eq!(consent.path(), format!("/s/{g}"));
    assert_consent_page(&chromium, &consent, words).await;
    assert_eq!(chromium.cookies().await, Vec::<String>::new(), "no cookies");

    // The switch shows the other language, and its own switch leads back.
    let switched = chromium.click_through("p.lang a").await;
    assert_eq!(switched.path(), format!("/s/{g}?lang={}", other(words).lang));
    assert_consent_page(&chromium, &switched, other(words)).await;
    let back = chromium.click_through("p.lang a").await;
    assert_eq!(back.path(), format!("/s/{g}?lang={}", words.lang));
    assert_consent_page(&chromium, &back, words).await;

    // Agree: the redirect lands on the survey, in the same language.
    let survey = chromium.click_through("button[value=agree]").await;
    assert_eq!(survey.status, 200);
    assert_eq!(survey.path(), format!("/s/{g}/survey?lang={}", words.lang));
    survey.check_privacy_headers();
    assert_eq!(chromium.attribute("html", "lang").await.as_deref(), Some(words.lang));
    assert_eq!(chromium.text("h1").await, words.title);
    assert_eq!(chromium.text("button.primary").await, words.send);
    assert_eq!(chromium.count("fieldset").await, 8);
    assert_eq!(chromium.text("fieldset:last-of-type legend .required").await, words.required);
    assert_eq!(chromium.count("fieldset .required").await, 1, "only the overall rating is required");

    // The browser itself holds the form back until the required question is answered.
    assert_eq!(chromium.count("form:invalid").await, 1);
    assert_eq!(chromium.count("input[name=overall]:invalid").await, 11);
    for id in ["overall-9", "listened-always", "next_steps-yes"] {
        chromium.click(&format!("label[for=\"{id}\"]")).await;
    }
    assert_eq!(chromium.count("input:checked").await, 3);
    for id in ["overall-9", "listened-always", "next_steps-yes"] {
        assert_eq!(chromium.count(&format!("input#{id}:checked")).await, 1, "{id} not picked");
    }
    assert_eq!(chromium.count("form:invalid").await, 0);

    // Switching language half-way keeps what is ticked, and sends nothing; switching back too.
    assert_eq!(chromium.text("p.lang button").await, words.switch);
    let switched = chromium.click_through("p.lang button").await;
    assert_eq!((switched.status, switched.path()), (200, format!("/s/{g}/survey").as_str()));
    assert_eq!(chromium.attribute("html", "lang").await.as_deref(), Some(other(words).lang));
    assert_eq!(chromium.text("button.primary").await, other(words).send);
    chromium.click_through("p.lang button").await;
    assert_eq!(chromium.attribute("html", "lang").await.as_deref(), Some(words.lang));
    assert_eq!(chromium.count("input:checked").await, 3);
    for id in ["overall-9", "listened-always", "next_steps-yes"] {
        assert_eq!(chromium.count(&format!("input#{id}:checked")).await, 1, "{id} lost in the switch");
    }

    let thanks = chromium.click_through("button.primary").await;
    assert_eq!(thanks.path(), format!("/s/{g}/survey"));
    assert_message_page(&chromium, &thanks, 200, words.lang, words.thanks).await;

    // What the browser sent was counted, once, under the invitation's provider.
    assert_eq!(bridge.fold().await.counted, 1);
    let db = survey_bridge::db::Db::connect(&url).await.unwrap();
    let counts = db.period_counts("site-1001", "prov-b1", "pcpe-2026q4", MONTH).await.unwrap();
    assert_eq!((counts.invitations, counts.responses, counts.opt_outs), (1, 1, 0));
    let key = ("site-1001", "prov-b1", "pcpe-2026q4", MONTH);
    assert_eq!(db.answer_count(key, "overall", "9").await.unwrap(), 1);
    assert_eq!(db.answer_count(key, "listened", "always").await.unwrap(), 1);
    assert_eq!(db.answer_count(key, "next_steps", "yes").await.unwrap(), 1);
    assert_eq!(db.answer_count(key, "timely", "always").await.unwrap(), 0, "not answered");
    let audit = bridge.audit_lines();
    for action in ["CONSENT_GIVEN", "RESPONSE_ACCEPTED"] {
        assert!(audit.iter().any(|line| line["action"] == action), "{action} not audited");
    }

    // The link again: no longer open (the same page as a declined or expired link), in the
    // invitation's language.
    let again = chromium.open(&bridge.url(&format!("/s/{g}"))).await;
    assert_message_page(&chromium, &again, 404, words.lang, words.not_open).await;
    assert_eq!(chromium.cookies().await, Vec::<String>::new(), "no cookies");

    chromium.close().await;
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn english_invitation_answered_in_the_browser() {
    answer_in_the_browser(&EN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn french_invitation_answered_in_the_browser() {
    answer_in_the_browser(&FR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn french_invitation_declined_in_the_browser() {
    if !chromium_present() {
        return;
    }
    let words = &FR;
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    let g = guid();
    bridge.invite(&g, "prov-b2", words.lang).await;
    let chromium = Chromium::launch(&bridge).await;

    let consent = chromium.open(&bridge.url(&format!("/s/{g}"))).await;
    assert_consent_page(&chromium, &consent, words).await;
    let declined = chromium.click_through("button[value=decline]").await;
    assert_eq!(declined.path(), format!("/s/{g}/consent"));
    assert_message_page(&chromium, &declined, 200, words.lang, words.declined).await;
    assert_eq!(chromium.text("main p").await, words.declined_text);

    let db = survey_bridge::db::Db::connect(&url).await.unwrap();
    let counts = db.period_counts("site-1001", "prov-b2", "pcpe-2026q4", MONTH).await.unwrap();
    assert_eq!((counts.invitations, counts.responses, counts.opt_outs), (1, 0, 1));

    // The link and the survey behind it stay closed, with the page every closed link shows.
    let again = chromium.open(&bridge.url(&format!("/s/{g}"))).await;
    assert_message_page(&chromium, &again, 404, words.lang, words.not_open).await;
    let survey = chromium.open(&bridge.url(&format!("/s/{g}/survey"))).await;
    assert_message_page(&chromium, &survey, 404, words.lang, words.not_open).await;
    assert_eq!(chromium.cookies().await, Vec::<String>::new(), "no cookies");

    chromium.close().await;
    bridge.stop().await.unwrap();
}

/// A stand-in for an external survey tool: HTTPS on its own loopback port (another origin),
/// with the bridge's test certificate; it answers every request with a small page and
/// reports each request's head (request line and headers).
fn serve_external_survey(
    bridge: &Bridge,
    listener: TcpListener,
) -> (mpsc::UnboundedReceiver<String>, JoinHandle<()>) {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs = CertificateDer::pem_file_iter(bridge.path("survey-bridge.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(bridge.path("survey-bridge.key")).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "<!doctype html><html lang=\"en\"><title>External</title><h1>External survey</h1>";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            });
        }
    });
    (rx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_leads_the_browser_to_an_external_survey_with_only_the_guid() {
    if !chromium_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let external = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = external.local_addr().unwrap().port();
    let bridge = start(&url, |config| {
        let campaign = survey_bridge::config::CampaignConfig {
            external_url: Some(format!("https://127.0.0.1:{port}/start?id={{guid}}")),
        };
        config.campaigns.insert("pcpe-2026q4".into(), campaign);
    })
    .await;
    let (mut requests, server) = serve_external_survey(&bridge, external);
    let g = guid();
    bridge.invite(&g, "prov-b3", "en").await;
    let chromium = Chromium::launch(&bridge).await;

    let consent = chromium.open(&bridge.url(&format!("/s/{g}"))).await;
    assert_consent_page(&chromium, &consent, &EN).await;
    let csp = consent.header("content-security-policy").unwrap();
    assert!(csp.contains(&format!("form-action 'self' https://127.0.0.1:{port}")), "{csp}");

    // The form's redirect to another origin is allowed by the page's CSP, and the survey
    // tool is told the GUID and nothing else: no referrer, no cookie.
    let landed = chromium.click_through("button[value=agree]").await;
    assert_eq!(landed.url, format!("https://127.0.0.1:{port}/start?id={g}"));
    assert_eq!(landed.status, 200);
    assert_eq!(chromium.text("h1").await, "External survey");
    let head = loop {
        let head = tokio::time::timeout(WAIT, requests.recv()).await.unwrap().unwrap();
        if head.starts_with("GET /start?") {
            break head;
        }
    };
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some(format!("GET /start?id={g} HTTP/1.1").as_str()));
    let names: Vec<String> =
        lines.filter_map(|line| line.split_once(':').map(|(name, _)| name.to_ascii_lowercase())).collect();
    assert!(!names.iter().any(|n| n == "referer" || n == "cookie"), "{head}");
    assert!(bridge.audit_lines().iter().any(|l| l["action"] == "CONSENT_GIVEN"));
    assert_eq!(chromium.cookies().await, Vec::<String>::new(), "no cookies");

    chromium.close().await;
    server.abort();
    bridge.stop().await.unwrap();
}
