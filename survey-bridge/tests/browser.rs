//! The patient pages in a real browser: Debian's headless Chromium, driven over the DevTools
//! protocol (`chromiumoxide`), clicks its way through consent, the language switch, the
//! survey and the outcomes, in English and in French. Each page's response headers are read
//! as the browser received them (`Network.responseReceived` and its raw `ExtraInfo`), and
//! the browser's cookie jar is checked to stay empty. A campaign with an external survey is
//! followed to a stand-in survey tool on another loopback origin, which must get the GUID
//! and nothing else.
//!
//! Chromium is `/usr/bin/chromium`. Where it is missing these tests print a note and pass,
//! unless `BRIDGE_REQUIRE_CHROMIUM` is set (CI sets it), in which case they fail.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, sync::Arc, time::Duration};

use base64::Engine as _;
use chromiumoxide::{
    Browser, BrowserConfig, Page,
    cdp::browser_protocol::{
        network::{EventLoadingFailed, EventResponseReceived, EventResponseReceivedExtraInfo, ResourceType},
        page::EventLoadEventFired,
    },
    listeners::EventStream,
};
use common::{Bridge, guid, start};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
    task::JoinHandle,
};

const CHROMIUM: &str = "/usr/bin/chromium";

/// How long any one step (launch, a navigation, an event) may take before the test fails.
/// Generous: only a broken flow, never a slow machine, should reach it.
const WAIT: Duration = Duration::from_secs(60);

const MONTH: &str = "2026-11";

/// Flags for headless Chromium as root in a container, with nothing sent anywhere unasked
/// (chromiumoxide adds `--headless`, `--no-sandbox`, `--user-data-dir` and its own defaults).
const FLAGS: [&str; 6] = [
    "disable-gpu",
    "disable-quic",
    "no-first-run",
    "disable-background-networking",
    "disable-component-update",
    "disable-sync",
];

/// Whether Chromium is here; its absence fails the test when `BRIDGE_REQUIRE_CHROMIUM` is set.
fn chromium_present() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    if std::env::var_os("BRIDGE_REQUIRE_CHROMIUM").is_some() {
        panic!("BRIDGE_REQUIRE_CHROMIUM is set but {CHROMIUM} is missing");
    }
    eprintln!("{CHROMIUM} not found: browser tests skipped here");
    false
}

/// The base64 SHA-256 of a certificate's SubjectPublicKeyInfo, as Chromium's
/// `--ignore-certificate-errors-spki-list` takes it.
fn spki_hash(pem_file: &Path) -> String {
    let pem = std::fs::read(pem_file).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(cert.public_key().raw))
}

/// One top-level page the browser loaded: its final response, as the browser saw it.
#[derive(Debug)]
struct Loaded {
    url: String,
    status: i64,
    /// Headers of the final response, names in lower case.
    headers: Vec<(String, String)>,
    /// Raw headers of every response on the way, redirects included, names in lower case.
    raw_headers: Vec<(String, String)>,
}

impl Loaded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The path and query of the page's address.
    fn path(&self) -> &str {
        let rest = self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest);
        rest.find('/').map_or("/", |at| &rest[at..])
    }

    /// The headers every patient page must carry, and no cookie.
    fn check_privacy_headers(&self) {
        let what = &self.url;
        let csp = self.header("content-security-policy").unwrap_or_else(|| panic!("no CSP: {what}"));
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
        assert_eq!(self.header("referrer-policy"), Some("no-referrer"), "{what}");
        let hsts = self.header("strict-transport-security").unwrap_or_else(|| panic!("no HSTS: {what}"));
        assert!(hsts.starts_with("max-age="), "{what}: {hsts}");
        assert_eq!(self.header("x-content-type-options"), Some("nosniff"), "{what}");
        assert_eq!(self.header("cache-control"), Some("no-store"), "{what}");
        assert!(self.header("set-cookie").is_none(), "{what} sets a cookie");
        assert!(!self.raw_headers.is_empty(), "{what}: no raw headers seen");
        assert!(
            self.raw_headers.iter().all(|(name, _)| name != "set-cookie"),
            "{what}: a response on the way set a cookie: {:?}",
            self.raw_headers
        );
    }
}

fn lowercase_headers(headers: &serde_json::Value) -> Vec<(String, String)> {
    let object = headers.as_object().expect("headers are an object");
    object
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// The next item of `stream`, or a failure naming `what` after [`WAIT`].
async fn next<T>(stream: &mut EventStream<T>, what: &str) -> Arc<T>
where
    T: chromiumoxide::cdp::IntoEventKind + Unpin + std::fmt::Debug,
{
    tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("the browser went away waiting for {what}"))
}

/// Headless Chromium with one tab, in a new empty profile.
struct Chromium {
    browser: Browser,
    page: Page,
    handler: JoinHandle<()>,
    _profile: TempDir,
}

impl Chromium {
    /// Launches Chromium for `bridge`. `localhost` resolves to 127.0.0.1 and no other name
    /// resolves at all (the IP literal 127.0.0.1 is left alone). The bridge's certificate is
    /// trusted by pinning its public key: Chromium's SPKI allow-list matches only the leaf
    /// of an untrusted chain, so pinning the test CA's key is not enough. No other
    /// certificate error is overlooked (`respect_https_errors`).
    async fn launch(bridge: &Bridge) -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let server_key = spki_hash(&bridge.path("survey-bridge.pem"));
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .no_sandbox()
            .user_data_dir(profile.path())
            .respect_https_errors()
            .launch_timeout(WAIT)
            .request_timeout(WAIT)
            .args(FLAGS)
            .arg(("host-resolver-rules", "MAP localhost 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"))
            .arg(("ignore-certificate-errors-spki-list", server_key.as_str()))
            .build()
            .unwrap();
        let (browser, mut handler) = tokio::time::timeout(WAIT, Browser::launch(config))
            .await
            .expect("chromium launch timed out")
            .unwrap();
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if event.is_err() {
                    break;
                }
            }
        });
        let page = tokio::time::timeout(WAIT, browser.new_page("about:blank")).await.unwrap().unwrap();
        Chromium { browser, page, handler, _profile: profile }
    }

    /// Runs `act`, which starts a top-level navigation, and waits until the new page has
    /// loaded; returns what the browser received for it.
    async fn navigate<F>(&self, act: F) -> Loaded
    where
        F: AsyncFnOnce(&Page),
    {
        // Listen first, so that no event of the navigation can be missed.
        let mut responses = self.page.event_listener::<EventResponseReceived>().await.unwrap();
        let mut extras = self.page.event_listener::<EventResponseReceivedExtraInfo>().await.unwrap();
        let mut loads = self.page.event_listener::<EventLoadEventFired>().await.unwrap();
        let mut failures = self.page.event_listener::<EventLoadingFailed>().await.unwrap();
        act(&self.page).await;

        let document = loop {
            tokio::select! {
                event = next(&mut responses, "the page's response") => {
                    if event.r#type == ResourceType::Document {
                        break event;
                    }
                }
                failed = next(&mut failures, "the page's response") => {
                    assert!(
                        failed.r#type != ResourceType::Document,
                        "the page failed to load: {} {:?}",
                        failed.error_text,
                        failed.blocked_reason
                    );
                }
            }
        };
        let response = &document.response;
        assert!(response.security_details.is_some(), "{}: not over TLS", response.url);

        // The raw headers of every response for this request (a redirect keeps the request
        // id), up to the final one.
        let mut raw_headers = Vec::new();
        if document.has_extra_info {
            loop {
                let extra = next(&mut extras, "the page's raw headers").await;
                if extra.request_id != document.request_id {
                    continue;
                }
                raw_headers.extend(lowercase_headers(extra.headers.inner()));
                if extra.status_code == response.status {
                    break;
                }
            }
        }
        next(&mut loads, "the page's load event").await;
        Loaded {
            url: response.url.clone(),
            status: response.status,
            headers: lowercase_headers(response.headers.inner()),
            raw_headers,
        }
    }

    /// Opens `url` as if typed in the address bar.
    async fn open(&self, url: &str) -> Loaded {
        let url = url.to_string();
        self.navigate(async move |page: &Page| {
            page.goto(url).await.unwrap();
        })
        .await
    }

    /// Clicks the element `selector` (a link or a submit button) and waits for the next page.
    async fn click_through(&self, selector: &str) -> Loaded {
        let element =
            self.page.find_element(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}"));
        self.navigate(async move |_: &Page| {
            element.click().await.unwrap();
        })
        .await
    }

    /// Clicks `selector` without leaving the page (e.g. a radio's label).
    async fn click(&self, selector: &str) {
        let element =
            self.page.find_element(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}"));
        element.click().await.unwrap();
    }

    /// The rendered text of the first element matching `selector`.
    async fn text(&self, selector: &str) -> String {
        let element =
            self.page.find_element(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}"));
        element.inner_text().await.unwrap().unwrap_or_default().trim().to_string()
    }

    /// An attribute of the first element matching `selector`.
    async fn attribute(&self, selector: &str, name: &str) -> Option<String> {
        let element =
            self.page.find_element(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}"));
        element.attribute(name).await.unwrap()
    }

    /// How many elements match `selector` (CSS state selectors such as `:checked` and
    /// `:invalid` included).
    async fn count(&self, selector: &str) -> usize {
        self.page.find_elements(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}")).len()
    }

    /// Every cookie the browser holds, for any site.
    async fn cookies(&self) -> Vec<String> {
        let cookies = self.browser.get_cookies().await.unwrap();
        cookies.into_iter().map(|c| format!("{}={} ({})", c.name, c.value, c.domain)).collect()
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.browser.close()).await;
        let _ = tokio::time::timeout(WAIT, self.browser.wait()).await;
        if tokio::time::timeout(WAIT, &mut self.handler).await.is_err() {
            self.handler.abort();
        }
    }
}

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
    already: &'static str,
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
    declined_text: "You will not receive any further invitation for this survey.",
    already: "Already answered",
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
    declined_text: "Vous ne recevrez plus d'invitation pour ce sondage.",
    already: "Déjà rempli",
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
    assert_eq!(chromium.text("button[type=submit]").await, words.send);
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

    let thanks = chromium.click_through("button[type=submit]").await;
    assert_eq!(thanks.path(), format!("/s/{g}/survey"));
    assert_message_page(&chromium, &thanks, 200, words.lang, words.thanks).await;

    // What the browser sent was counted, once, under the invitation's provider.
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

    // The link again: already answered, in the invitation's language.
    let again = chromium.open(&bridge.url(&format!("/s/{g}"))).await;
    assert_message_page(&chromium, &again, 409, words.lang, words.already).await;
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

    // The link and the survey behind it stay closed.
    let again = chromium.open(&bridge.url(&format!("/s/{g}"))).await;
    assert_message_page(&chromium, &again, 409, words.lang, words.declined).await;
    let survey = chromium.open(&bridge.url(&format!("/s/{g}/survey"))).await;
    assert_message_page(&chromium, &survey, 409, words.lang, words.declined).await;
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
