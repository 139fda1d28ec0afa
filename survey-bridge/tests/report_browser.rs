//! The reports portal in a real browser: a provider signs in to Debian's headless Chromium
//! by typing into the forms (password; then, at the first sign-in, the six digits computed
//! from the key shown on the set-up page), reads their report, switches it to French and
//! back, downloads the CSV and JSON, and signs out. Along the way: the session cookie as the
//! browser received and stored it (`__Host-`, Secure, HttpOnly, SameSite=Strict; invisible
//! to scripts), the charts' accessible names as the browser computes them, a full-page
//! screenshot (copied to `target/screenshots/` for people to look at), and the page on a
//! phone-sized screen, which must not scroll sideways.
//!
//! Chromium is `/usr/bin/chromium`. Where it is missing this test prints a note and passes,
//! unless `BRIDGE_REQUIRE_CHROMIUM` is set (CI sets it), in which case it fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use chromiumoxide::{
    cdp::browser_protocol::{
        accessibility::GetPartialAxTreeParams,
        browser::{
            DownloadProgressState, EventDownloadProgress, EventDownloadWillBegin,
            SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
        },
        emulation::{ClearDeviceMetricsOverrideParams, SetDeviceMetricsOverrideParams},
        network::CookieSameSite,
        page::Viewport,
    },
    page::{Page, ScreenshotParams},
};
use common::{
    Bridge,
    browser::{Chromium, Loaded, chromium_present, next},
    start,
};
use survey_bridge::{
    db::{Db, Invitation},
    portal::COOKIE,
    questionnaire::{Lang, Questionnaire},
};

const CAMPAIGN: &str = "pcpe-2026q4";

/// Runs `survey-bridge account add ...` against the bridge's database; returns the first
/// password it prints.
fn add_account(bridge: &Bridge, args: &[&str]) -> String {
    let config_file = bridge.path("account.toml");
    std::fs::write(&config_file, toml::to_string(&bridge.config).unwrap()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_survey-bridge"))
        .arg("--config")
        .arg(&config_file)
        .args(["account", "add"])
        .args(args)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{out} {}", String::from_utf8_lossy(&output.stderr));
    out.split("first password: ").nth(1).unwrap().split_whitespace().next().unwrap().to_string()
}

/// How every ten respondents answer each question: how many of the ten pick each option.
/// Respondent `i` is the `i % 10`th of these ten (shifted per provider, so that populations
/// differ). Most options given are picked by at least a fifth, so that with enough
/// responses the report has numbers to show rather than only "suppressed".
const DECKS: [(&str, &[(&str, usize)]); 8] = [
    ("timely", &[("always", 4), ("often", 3), ("sometimes", 3)]),
    ("listened", &[("always", 6), ("often", 2), ("sometimes", 2)]),
    ("explained", &[("always", 5), ("often", 3), ("rarely", 2)]),
    ("involved", &[("always", 3), ("often", 3), ("sometimes", 2), ("never", 2)]),
    ("respect", &[("always", 8), ("often", 2)]),
    ("enough_time", &[("always", 2), ("often", 4), ("sometimes", 2), ("rarely", 2)]),
    ("next_steps", &[("yes", 8), ("no", 2)]),
    ("overall", &[("10", 3), ("9", 3), ("8", 2), ("6", 2)]),
];

/// The answer of the `j`th of ten respondents (`j < 10`) from `deck`.
fn pick<'a>(deck: &[(&'a str, usize)], j: usize) -> &'a str {
    let mut left = j;
    for &(option, times) in deck {
        if left < times {
            return option;
        }
        left -= times;
    }
    unreachable!("a deck covers ten respondents")
}

/// Records `invited` invitations for a provider in `month`, and answers for the first
/// `answered` of them, from [`DECKS`] starting at `shift`.
async fn seed(
    db: &Db,
    bridge: &Bridge,
    (site, provider): (&str, &str),
    month: &str,
    counts: (usize, usize),
    shift: usize,
) {
    let (invited, answered) = counts;
    let now = bridge.clock.now();
    for i in 0..invited {
        let guid_hmac = format!("{site}-{provider}-{month}-{i}-{}", uuid::Uuid::new_v4());
        let invitation = Invitation {
            guid_hmac: guid_hmac.clone(),
            site_id: site.into(),
            provider_id: provider.into(),
            campaign_id: CAMPAIGN.into(),
            channel: if i % 2 == 0 { "sms".into() } else { "email".into() },
            language: "en".into(),
            month: month.into(),
            expires_at: now.as_second() + 86_400,
        };
        db.record_invitation(&invitation).await.unwrap();
        if i < answered {
            let answers: Vec<(String, String)> = DECKS
                .iter()
                .map(|(q, deck)| (q.to_string(), pick(deck, (i + shift) % 10).to_string()))
                .collect();
            common::respond(db, bridge, &guid_hmac, &answers).await;
        }
    }
}

/// The six digits an authenticator shows for `key` (base32) at the bridge's time.
fn totp_code(bridge: &Bridge, key: &str) -> String {
    let secret = totp_rs::Secret::Encoded(key.to_string()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, secret);
    totp.generate(u64::try_from(bridge.clock.now().as_second()).unwrap())
}

/// The session cookie set on the way to `loaded`, checked for its attributes; returns its
/// token.
fn session_cookie_set(loaded: &Loaded) -> String {
    assert_eq!(loaded.blocked_cookies, Vec::<String>::new(), "{}: the browser refused a cookie", loaded.url);
    let set: Vec<&str> =
        loaded.set_cookies().into_iter().filter(|c| c.starts_with(&format!("{COOKIE}="))).collect();
    assert_eq!(set.len(), 1, "{}: one session cookie: {:?}", loaded.url, loaded.raw_headers);
    let attributes: Vec<&str> = set[0].split(';').map(str::trim).collect();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&attribute), "{attribute} missing: {}", set[0]);
    }
    assert!(!attributes.iter().any(|a| a.to_ascii_lowercase().starts_with("domain=")), "{}", set[0]);
    let token = attributes[0].split_once('=').unwrap().1;
    assert_eq!(token.len(), 64, "{}", set[0]);
    token.to_string()
}

/// The browser's session cookie, if it holds one: its value, checked to be stored as
/// Secure, HttpOnly and SameSite=Strict for this host only.
async fn stored_session(chromium: &Chromium) -> Option<String> {
    let cookies = chromium.browser.get_cookies().await.unwrap();
    let mut session = cookies.iter().filter(|c| c.name == COOKIE);
    let cookie = session.next()?;
    assert!(session.next().is_none(), "one session cookie: {cookies:?}");
    assert!(cookie.secure && cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.same_site, Some(CookieSameSite::Strict), "{cookie:?}");
    assert_eq!((cookie.domain.as_str(), cookie.path.as_str()), ("localhost", "/"), "{cookie:?}");
    Some(cookie.value.clone())
}

/// The rows of the first table under `section_heading`: each row's header and cells, as
/// rendered.
async fn table_rows(chromium: &Chromium, section_heading: &str) -> Vec<Vec<String>> {
    let heading = serde_json::to_string(section_heading).unwrap();
    let script = format!(
        "Array.from(
            Array.from(document.querySelectorAll('main section'))
                .find(s => s.querySelector('h2').innerText.trim() === {heading})
                .querySelector('table').tBodies[0].rows,
            r => Array.from(r.cells, c => c.innerText.trim()))"
    );
    chromium.eval(&script).await
}

/// The texts of every element matching `selector`, as rendered.
async fn texts(chromium: &Chromium, selector: &str) -> Vec<String> {
    let selector = serde_json::to_string(selector).unwrap();
    chromium
        .eval(&format!("Array.from(document.querySelectorAll({selector}), e => e.innerText.trim())"))
        .await
}

/// What a provider reads on the report page, per language.
struct Words {
    lang: Lang,
    heading: &'static str,
    sign_out: &'static str,
    switch: &'static str,
    summary: &'static str,
    invitations: &'static str,
    responses: &'static str,
    rate: &'static str,
    trend_chart: &'static str,
}

const EN: Words = Words {
    lang: Lang::En,
    heading: "Patient experience report",
    sign_out: "Sign out",
    switch: "Français",
    summary: "Summary",
    invitations: "Invitations sent",
    responses: "Responses",
    rate: "65%",
    trend_chart: "Response rate (bars) and top box (line) by month",
};

const FR: Words = Words {
    lang: Lang::Fr,
    heading: "Rapport sur l'expérience des patients",
    sign_out: "Se déconnecter",
    switch: "English",
    summary: "Résumé",
    invitations: "Invitations envoyées",
    responses: "Réponses",
    rate: "65\u{a0}%",
    trend_chart: "Taux de réponse (barres) et réponses favorables (ligne) par mois",
};

/// The report of prov-a1 in `words`' language: headings, who is signed in, the scope, the
/// summary's numbers, every question of the questionnaire, the charts and their accessible
/// names, the downloads and the switch to the other language.
async fn assert_report_page(chromium: &Chromium, loaded: &Loaded, words: &Words) {
    let q = Questionnaire::builtin();
    let lang = words.lang.as_str();
    assert_eq!(loaded.status, 200, "{}", loaded.url);
    loaded.check_security_headers();
    assert_eq!(chromium.attribute("html", "lang").await.as_deref(), Some(lang));
    // A whole document: the navigation goes inside it, so the page is not in quirks mode.
    assert_eq!(chromium.eval::<String>("document.compatMode").await, "CSS1Compat");
    let title = format!("{}: {}", words.heading, q.title.get(words.lang));
    assert_eq!(chromium.page.get_title().await.unwrap().as_deref(), Some(title.as_str()));
    assert_eq!(chromium.text("h1").await, words.heading);
    assert_eq!(chromium.text("main .subtitle").await, q.title.get(words.lang));

    // The navigation: who, and a sign-out button.
    let nav = chromium.text("nav.portal").await;
    assert!(nav.contains("dr.a") && nav.contains("provider"), "{nav}");
    assert_eq!(chromium.text("nav.portal form[action='/logout'] button[type=submit]").await, words.sign_out);

    // The scope: this provider at this site.
    let scope = texts(chromium, "main dl.scope dd").await;
    assert_eq!(scope[..3], ["prov-a1", "site-1001", CAMPAIGN], "{scope:?}");

    // The summary: 46 invitations, 30 responses.
    let summary = table_rows(chromium, words.summary).await;
    assert_eq!(summary[0], [words.invitations, "46"], "{summary:?}");
    assert_eq!(summary[1], [words.responses, "30"], "{summary:?}");
    assert_eq!(summary[2][1], words.rate, "{summary:?}");

    // Every question of the questionnaire, in order, in this language.
    let expected: Vec<String> = q
        .questions
        .iter()
        .enumerate()
        .map(|(i, x)| format!("{}. {}", i + 1, x.text.get(words.lang)))
        .collect();
    assert_eq!(texts(chromium, "main article.question h3").await, expected);

    // Charts: the trend, the comparison, one per question; each an image whose accessible
    // name (as the browser computes it) starts with its title. Some bars are drawn.
    let charts = chromium.page.find_elements("main svg.chart").await.unwrap();
    assert_eq!(charts.len(), 2 + q.questions.len());
    for (i, chart) in charts.iter().enumerate() {
        let ax = chromium
            .page
            .execute(
                GetPartialAxTreeParams::builder()
                    .backend_node_id(chart.backend_node_id)
                    .fetch_relatives(false)
                    .build(),
            )
            .await
            .unwrap();
        let node =
            ax.result.nodes.first().unwrap_or_else(|| panic!("chart {i}: not in the accessibility tree"));
        let value = |v: &Option<chromiumoxide::cdp::browser_protocol::accessibility::AxValue>| {
            v.as_ref().and_then(|v| v.value.as_ref()).and_then(|v| v.as_str()).unwrap_or_default().to_string()
        };
        assert!(!node.ignored, "chart {i} is hidden from assistive technology");
        assert_eq!(value(&node.role), "image", "chart {i}");
        let name = value(&node.name);
        let svg_title = chart
            .find_element("title")
            .await
            .unwrap()
            .string_property("textContent")
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(!svg_title.is_empty(), "chart {i} has a title");
        assert!(name.starts_with(&svg_title), "chart {i}: name {name:?}, title {svg_title:?}");
        if i == 0 {
            assert_eq!(svg_title, words.trend_chart);
        }
    }
    // A quarter shows a sum only where both months show it, so fewer bars than a month.
    let bars = chromium.count("main svg.chart rect.bar").await;
    assert!(bars > 3, "bars drawn: {bars}");

    // The downloads: the same report, as CSV and JSON.
    let csv = chromium.attribute("main p.downloads a[href*='report.csv']", "href").await.unwrap();
    let json = chromium.attribute("main p.downloads a[href*='report.json']", "href").await.unwrap();
    for (href, path) in [(&csv, "/reports/report.csv?"), (&json, "/reports/report.json?")] {
        assert!(href.starts_with(path), "{href}");
        for part in [&format!("campaign={CAMPAIGN}"), "site=site-1001", "provider=prov-a1"] {
            assert!(href.contains(part), "{href}");
        }
    }

    // The switch: the other language's name, in that language.
    let other = words.lang.other().as_str();
    assert_eq!(chromium.text("main p.lang a").await, words.switch);
    assert_eq!(chromium.attribute("main p.lang a", "hreflang").await.as_deref(), Some(other));
    assert_eq!(chromium.attribute("main p.lang a", "lang").await.as_deref(), Some(other));
}

/// Clicks the download link `selector` and waits until the browser has saved the file into
/// `dir`; returns its bytes.
async fn download(chromium: &Chromium, selector: &str, dir: &Path) -> Vec<u8> {
    let mut begun = chromium.browser.event_listener::<EventDownloadWillBegin>().await.unwrap();
    let mut progress = chromium.browser.event_listener::<EventDownloadProgress>().await.unwrap();
    chromium.click(selector).await;
    let guid = next(&mut begun, "the download to begin").await.guid.clone();
    loop {
        let event = next(&mut progress, "the download to finish").await;
        if event.guid != guid {
            continue;
        }
        match event.state {
            DownloadProgressState::Completed => break,
            DownloadProgressState::Canceled => panic!("{selector}: the download was cancelled"),
            DownloadProgressState::InProgress => {}
        }
    }
    // `allowAndName` saves each download under its GUID.
    std::fs::read(dir.join(&guid)).unwrap()
}

/// Where screenshots are left for people to look at: `target/screenshots/` of the workspace.
fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A PNG of a plausible size.
fn assert_png(bytes: &[u8], what: &str) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{what}: not a PNG");
    assert!(bytes.len() > 10 * 1024, "{what}: only {} bytes", bytes.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_reads_their_report_in_the_browser() {
    if !chromium_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    // The first request makes sure the bridge has migrated before this connection.
    assert_eq!(bridge.http().get(bridge.url("/login")).send().await.unwrap().status(), 200);
    let db = Db::connect(&url).await.unwrap();
    // prov-a1: 46 invitations and 30 responses over two months (with 8 who neither answered
    // nor declined in December, enough that its withheld opt-outs keep its invitations
    // shown); a colleague at the same
    // site and a provider at another site, to compare with. Each month's answers come in
    // that month; the report is read once the fourth quarter is released.
    seed(&db, &bridge, ("site-1001", "prov-a1"), "2026-11", (20, 12), 0).await;
    bridge.fold().await;
    bridge.clock.advance(jiff::SignedDuration::from_hours(24 * 17));
    seed(&db, &bridge, ("site-1001", "prov-a1"), "2026-12", (26, 18), 0).await;
    seed(&db, &bridge, ("site-1001", "prov-b2"), "2026-12", (20, 10), 3).await;
    seed(&db, &bridge, ("site-2002", "prov-c3"), "2026-12", (30, 20), 6).await;
    bridge.fold().await;
    bridge.clock.advance(jiff::SignedDuration::from_hours(24 * 29));
    let password =
        add_account(&bridge, &["dr.a", "--role", "provider", "--site", "site-1001", "--provider", "prov-a1"]);
    let chromium = Chromium::launch(&bridge).await;

    // The password form.
    let login = chromium.open(&bridge.url("/login")).await;
    assert_eq!(login.status, 200);
    login.check_security_headers();
    assert_eq!(chromium.text("h1").await, "Sign in to the reports");
    chromium.type_into("#username", "dr.a").await;
    chromium.type_into("#password", &password).await;
    let enrol = chromium.click_through("form button[type=submit]").await;

    // The first sign-in sets up the second factor: a QR code and the key as text.
    assert_eq!((enrol.status, enrol.path()), (200, "/login/enrol?lang=en"));
    enrol.check_security_headers();
    let first_token = session_cookie_set(&enrol);
    assert_eq!(chromium.text("h1").await, "Set up your second factor");
    assert_eq!(chromium.count("figure.qr svg").await, 1, "a QR code");
    let key = chromium.text("#totp-key").await;
    assert!(
        key.len() >= 16 && key.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "{key}"
    );
    chromium.type_into("#code", &totp_code(&bridge, &key)).await;
    let report = chromium.click_through("form button[type=submit]").await;

    // Signed in: a new token, stored as sent, out of reach of scripts.
    assert_eq!(report.path(), "/reports?lang=en");
    let token = session_cookie_set(&report);
    assert_ne!(token, first_token, "a new token after the second factor");
    assert_eq!(stored_session(&chromium).await.as_deref(), Some(token.as_str()));
    assert_eq!(chromium.eval::<String>("document.cookie").await, "", "HttpOnly: no cookie for scripts");
    assert_report_page(&chromium, &report, &EN).await;

    // The downloads hold the page's numbers.
    let downloads = tempfile::tempdir().unwrap();
    let allow = SetDownloadBehaviorParams::builder()
        .behavior(SetDownloadBehaviorBehavior::AllowAndName)
        .download_path(downloads.path().to_str().unwrap())
        .events_enabled(true)
        .build()
        .unwrap();
    chromium.browser.execute(allow).await.unwrap();
    let csv = download(&chromium, "main p.downloads a[href*='report.csv']", downloads.path()).await;
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains("summary,,,,provider,invitations,46"), "{csv}");
    assert!(csv.contains("summary,,,,provider,responses,30"), "{csv}");
    let json = download(&chromium, "main p.downloads a[href*='report.json']", downloads.path()).await;
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        (json["provider_id"].as_str(), json["summary"]["responses"].as_u64()),
        (Some("prov-a1"), Some(30))
    );

    // In French, and back.
    let french = chromium.click_through("main p.lang a").await;
    assert!(
        french.path().starts_with("/reports?") && french.path().ends_with("&lang=fr"),
        "{}",
        french.path()
    );
    assert_report_page(&chromium, &french, &FR).await;
    let english = chromium.click_through("main p.lang a").await;
    assert!(english.path().ends_with("&lang=en"), "{}", english.path());
    assert_report_page(&chromium, &english, &EN).await;

    // A full-page screenshot at a laptop's width, for people to look at.
    chromium.page.execute(SetDeviceMetricsOverrideParams::new(1024, 768, 1.0, false)).await.unwrap();
    let png = chromium.page.screenshot(ScreenshotParams::builder().full_page(true).build()).await.unwrap();
    assert_png(&png, "report-en.png");
    std::fs::write(dir.path().join("report-en.png"), &png).unwrap();
    std::fs::copy(dir.path().join("report-en.png"), screenshots_dir().join("report-en.png")).unwrap();

    // On a phone, the page itself does not scroll sideways (wide tables scroll in their box).
    chromium.page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 1.0, true)).await.unwrap();
    let (scroll_width, client_width): (f64, f64) =
        chromium.eval("[document.documentElement.scrollWidth, document.documentElement.clientWidth]").await;
    assert_eq!(client_width, 390.0, "the page is laid out for the phone's width");
    assert!(
        scroll_width <= client_width + 1.0,
        "the page is {scroll_width}px wide on a {client_width}px screen"
    );
    let height: f64 = chromium.eval("document.documentElement.scrollHeight").await;
    let phone = ScreenshotParams::builder()
        .capture_beyond_viewport(true)
        .clip(Viewport { x: 0.0, y: 0.0, width: 390.0, height, scale: 1.0 })
        .build();
    let png = chromium.page.screenshot(phone).await.unwrap();
    assert_png(&png, "report-phone.png");
    std::fs::write(screenshots_dir().join("report-phone.png"), &png).unwrap();
    chromium.page.execute(ClearDeviceMetricsOverrideParams {}).await.unwrap();

    // Signing out removes the cookie; the report then leads to the sign-in form.
    let out = chromium.click_through("nav.portal button[type=submit]").await;
    assert_eq!(out.path(), "/login");
    assert!(
        out.set_cookies().iter().any(|c| c.starts_with(&format!("{COOKIE}=;")) && c.contains("Max-Age=0")),
        "{:?}",
        out.raw_headers
    );
    assert_eq!(stored_session(&chromium).await, None);
    let again = chromium.open(&bridge.url("/reports")).await;
    assert_eq!((again.status, again.path()), (200, "/login"));
    again.check_security_headers();
    assert_eq!(chromium.text("h1").await, "Sign in to the reports");

    chromium.close().await;
    bridge.stop().await.unwrap();
}

/// Decided: `Origin: null` is refused. The reports' pages send referrers to the bridge itself
/// (`Referrer-Policy: same-origin`), so Chromium posts their forms with the bridge's origin
/// (the sign-in above works); a form on a page of no origin (here a `data:` page, as a
/// sandboxed frame would be) posts with `Origin: null` and `Sec-Fetch-Site: cross-site`,
/// and is refused before it is read: it neither signs in nor counts toward the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_form_on_a_page_of_no_origin_is_refused_in_chromium() {
    if !chromium_present() {
        return;
    }
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    assert_eq!(bridge.http().get(bridge.url("/login")).send().await.unwrap().status(), 200);
    let password =
        add_account(&bridge, &["dr.a", "--role", "provider", "--site", "site-1001", "--provider", "prov-a1"]);
    let chromium = Chromium::launch(&bridge).await;
    let form = format!(
        "<!doctype html><form method=post action=\"{}\"><input name=username value=dr.a>\
         <input name=password value=\"{password}\"></form>",
        bridge.url("/login")
    );
    let data = format!("data:text/html;base64,{}", base64::engine::general_purpose::STANDARD.encode(form));
    chromium.page.goto(data).await.unwrap();
    let refused = chromium
        .navigate(async |page: &Page| {
            page.evaluate("document.forms[0].submit()").await.unwrap();
        })
        .await;
    assert_eq!(refused.status, 403, "{}", refused.url);
    assert!(stored_session(&chromium).await.is_none(), "no session");
    let db = Db::connect(&url).await.unwrap();
    let logins =
        db.activity(Some("site-1001")).await.unwrap().into_iter().filter(|a| a.action == "LOGIN").count();
    assert_eq!(logins, 0, "the form was not read");
    chromium.close().await;
    bridge.stop().await.unwrap();
}
