//! Debian's headless Chromium for tests, driven over the DevTools protocol (`chromiumoxide`):
//! launched for one bridge (its certificate pinned, every other name unresolvable), with
//! event-driven waits for whole page loads ([`Chromium::navigate`]) that return what the
//! browser received ([`Loaded`]), and small helpers to click, type and read the page.
//!
//! Chromium is `/usr/bin/chromium`. Where it is missing, [`chromium_present`] prints a note
//! and says no, unless `BRIDGE_REQUIRE_CHROMIUM` is set (CI sets it), in which case it fails.

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
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::Bridge;

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long any one step (launch, a navigation, an event) may take before the test fails.
/// Generous: only a broken flow, never a slow machine, should reach it.
pub const WAIT: Duration = Duration::from_secs(60);

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
pub fn chromium_present() -> bool {
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
pub struct Loaded {
    pub url: String,
    pub status: i64,
    /// Headers of the final response, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Raw headers of every response on the way, redirects included, names in lower case.
    pub raw_headers: Vec<(String, String)>,
    /// Cookies the browser refused to store from those responses, with its reasons.
    pub blocked_cookies: Vec<String>,
}

impl Loaded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The `Set-Cookie` values of every response on the way, redirects included.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.raw_headers
            .iter()
            .filter(|(name, _)| name == "set-cookie")
            .flat_map(|(_, value)| value.lines())
            .collect()
    }

    /// The path and query of the page's address.
    pub fn path(&self) -> &str {
        let rest = self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest);
        rest.find('/').map_or("/", |at| &rest[at..])
    }

    /// The headers every page of the bridge carries: CSP, no referrer (the reports': to the
    /// bridge itself only), HSTS, nosniff, no caching.
    pub fn check_security_headers(&self) {
        let what = &self.url;
        let csp = self.header("content-security-policy").unwrap_or_else(|| panic!("no CSP: {what}"));
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
        let portal = ["/login", "/logout", "/reports"].iter().any(|p| self.path().starts_with(p));
        let referrer = if portal { "same-origin" } else { "no-referrer" };
        assert_eq!(self.header("referrer-policy"), Some(referrer), "{what}");
        let hsts = self.header("strict-transport-security").unwrap_or_else(|| panic!("no HSTS: {what}"));
        assert!(hsts.starts_with("max-age="), "{what}: {hsts}");
        assert_eq!(self.header("x-content-type-options"), Some("nosniff"), "{what}");
        assert_eq!(self.header("cache-control"), Some("no-store"), "{what}");
        assert!(!self.raw_headers.is_empty(), "{what}: no raw headers seen");
    }

    /// The headers every patient page must carry, and no cookie.
    pub fn check_privacy_headers(&self) {
        let what = &self.url;
        self.check_security_headers();
        assert!(self.header("set-cookie").is_none(), "{what} sets a cookie");
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
pub async fn next<T>(stream: &mut EventStream<T>, what: &str) -> Arc<T>
where
    T: chromiumoxide::cdp::IntoEventKind + Unpin + std::fmt::Debug,
{
    tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("the browser went away waiting for {what}"))
}

/// Headless Chromium with one tab, in a new empty profile.
pub struct Chromium {
    pub browser: Browser,
    pub page: Page,
    handler: JoinHandle<()>,
    _profile: TempDir,
}

impl Chromium {
    /// Launches Chromium for `bridge`. `localhost` resolves to 127.0.0.1 and no other name
    /// resolves at all (the IP literal 127.0.0.1 is left alone). The bridge's certificate is
    /// trusted by pinning its public key: Chromium's SPKI allow-list matches only the leaf
    /// of an untrusted chain, so pinning the test CA's key is not enough. No other
    /// certificate error is overlooked (`respect_https_errors`).
    pub async fn launch(bridge: &Bridge) -> Chromium {
        let server_key = spki_hash(&bridge.path("survey-bridge.pem"));
        // Chromium now and then dies while it starts on these shared machines (SIGSEGV before
        // it answers the DevTools protocol); a start that fails is tried again in a new
        // profile, twice at most. Nothing the tests check happens before a browser is up.
        let mut attempt = 0;
        let (browser, mut handler, profile) = loop {
            attempt += 1;
            let profile = tempfile::tempdir().unwrap();
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
            match tokio::time::timeout(WAIT, Browser::launch(config))
                .await
                .expect("chromium launch timed out")
            {
                Ok((browser, handler)) => break (browser, handler, profile),
                Err(err) if attempt < 3 => eprintln!("chromium did not start (attempt {attempt}): {err}"),
                Err(err) => panic!("chromium did not start in {attempt} attempts: {err:?}"),
            }
        };
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
    pub async fn navigate<F>(&self, act: F) -> Loaded
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
        let mut blocked_cookies = Vec::new();
        if document.has_extra_info {
            loop {
                let extra = next(&mut extras, "the page's raw headers").await;
                if extra.request_id != document.request_id {
                    continue;
                }
                raw_headers.extend(lowercase_headers(extra.headers.inner()));
                blocked_cookies.extend(
                    extra
                        .blocked_cookies
                        .iter()
                        .map(|b| format!("{}: {:?}", b.cookie_line, b.blocked_reasons)),
                );
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
            blocked_cookies,
        }
    }

    /// Opens `url` as if typed in the address bar.
    pub async fn open(&self, url: &str) -> Loaded {
        let url = url.to_string();
        self.navigate(async move |page: &Page| {
            page.goto(url).await.unwrap();
        })
        .await
    }

    /// Clicks the element `selector` (a link or a submit button) and waits for the next page.
    pub async fn click_through(&self, selector: &str) -> Loaded {
        let element =
            self.page.find_element(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}"));
        self.navigate(async move |_: &Page| {
            element.click().await.unwrap();
        })
        .await
    }

    /// Clicks `selector` without leaving the page (e.g. a radio's label).
    pub async fn click(&self, selector: &str) {
        let element =
            self.page.find_element(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}"));
        element.click().await.unwrap();
    }

    /// Clicks into the field `selector` and types `text` there, key by key.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let element =
            self.page.find_element(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}"));
        element.click().await.unwrap();
        element.type_str(text).await.unwrap();
    }

    /// The rendered text of the first element matching `selector`.
    pub async fn text(&self, selector: &str) -> String {
        let element =
            self.page.find_element(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}"));
        element.inner_text().await.unwrap().unwrap_or_default().trim().to_string()
    }

    /// An attribute of the first element matching `selector`.
    pub async fn attribute(&self, selector: &str, name: &str) -> Option<String> {
        let element =
            self.page.find_element(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}"));
        element.attribute(name).await.unwrap()
    }

    /// How many elements match `selector` (CSS state selectors such as `:checked` and
    /// `:invalid` included).
    pub async fn count(&self, selector: &str) -> usize {
        self.page.find_elements(selector).await.unwrap_or_else(|err| panic!("{selector}: {err}")).len()
    }

    /// The value of the JavaScript expression `expression` in the page (DevTools runs it
    /// whatever the page's CSP says).
    pub async fn eval<T: serde::de::DeserializeOwned>(&self, expression: &str) -> T {
        let result = self.page.evaluate(expression).await.unwrap_or_else(|err| panic!("{expression}: {err}"));
        result.into_value().unwrap_or_else(|err| panic!("{expression}: {err}"))
    }

    /// Every cookie the browser holds, for any site.
    pub async fn cookies(&self) -> Vec<String> {
        let cookies = self.browser.get_cookies().await.unwrap();
        cookies.into_iter().map(|c| format!("{}={} ({})", c.name, c.value, c.domain)).collect()
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.browser.close()).await;
        let _ = tokio::time::timeout(WAIT, self.browser.wait()).await;
        if tokio::time::timeout(WAIT, &mut self.handler).await.is_err() {
            self.handler.abort();
        }
    }
}
