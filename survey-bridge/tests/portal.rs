//! The reports' side against a real bridge, on SQLite and on PostgreSQL: accounts made by
//! the `account` subcommand; sign-in with password and TOTP (set up at the first sign-in);
//! wrong password, wrong and reused codes; lock-out and its end; roles checked on the
//! server (another provider's or another site's report is 404); reports in HTML, CSV and
//! JSON; small populations; the activity log and usage exports.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    Bridge, databases,
    reader::{Reader, account, add, between},
    sqlite, start,
};
use jiff::SignedDuration;
use reqwest::{StatusCode, header};
use survey_bridge::db::{Db, Invitation};

const MONTH: &str = "2026-11";

/// Records `invited` invitations for a provider at a site and counts `answered` of them as
/// answered: `overall` 9 and `listened` always.
async fn seed(db: &Db, site: &str, provider: &str, invited: usize, answered: usize, bridge: &Bridge) {
    let now = bridge.clock.now();
    for i in 0..invited {
        let hmac = format!("{site}-{provider}-{i}-{}", uuid::Uuid::new_v4());
        let inv = Invitation {
            guid_hmac: hmac.clone(),
            site_id: site.into(),
            provider_id: provider.into(),
            campaign_id: "pcpe-2026q4".into(),
            channel: if i % 2 == 0 { "sms".into() } else { "email".into() },
            language: "en".into(),
            month: MONTH.into(),
            expires_at: now.as_second() + 86_400,
        };
        db.record_invitation(&inv).await.unwrap();
        if i < answered {
            let answers =
                [("listened".to_string(), "always".to_string()), ("overall".to_string(), "9".to_string())];
            common::respond(db, bridge, &hmac, &answers).await;
        }
    }
}

async fn bridge_with_data(url: &str) -> (Bridge, Db) {
    let bridge = start(url, |_| {}).await;
    // The first request makes sure the bridge has migrated before this connection.
    assert_eq!(bridge.http().get(bridge.url("/login")).send().await.unwrap().status(), StatusCode::OK);
    let db = Db::connect(url).await.unwrap();
    seed(&db, "site-1001", "prov-a1", 12, 8, &bridge).await;
    seed(&db, "site-1001", "prov-b2", 10, 3, &bridge).await;
    seed(&db, "site-2002", "prov-c3", 20, 10, &bridge).await;
    bridge.fold().await;
    // Reports show released periods only: November 2026 is released in the fourth quarter,
    // released whole a week after the year ends.
    bridge.clock.advance(jiff::SignedDuration::from_hours(24 * 45));
    (bridge, db)
}

#[tokio::test]
async fn a_provider_signs_in_with_two_factors_and_reads_only_their_report() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let (bridge, _db) = bridge_with_data(&url).await;
        let password =
            add(&bridge, &["dr.a", "--role", "provider", "--site", "site-1001", "--provider", "prov-a1"]);
        let mut reader = Reader::new(&bridge);

        // Nothing without signing in.
        let response = reader.get("/reports").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "/login");

        // A wrong password, an unknown user: the same refusal, no cookie.
        let wrong = reader.password("dr.a", "not-the-password").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let wrong_page = wrong.text().await.unwrap();
        let unknown = reader.password("dr.nobody", &password).await;
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(unknown.text().await.unwrap(), wrong_page);
        assert!(reader.cookie.is_none());

        // The password, then a wrong code, then the right one.
        let response = reader.password("dr.a", &password).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let pre_sign_in_cookie = reader.cookie.clone();
        let page = reader.get("/login/enrol").await.text().await.unwrap();
        let bad = reader.post("/login/enrol", &[("csrf", &common::csrf(&page)), ("code", "000000")]).await;
        assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
        let key = between(&page, "<code id=\"totp-key\">", "</code>");
        let code = reader.code(&key);
        let done = reader.post("/login/enrol", &[("csrf", &common::csrf(&page)), ("code", &code)]).await;
        assert_eq!(done.status(), StatusCode::SEE_OTHER, "{url}");

        // Their own report, in three formats with the same numbers.
        let page = reader.get("/reports").await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        let (body, nav) = (html.find("<body>").unwrap(), html.find("<nav class=\"portal\"").unwrap());
        assert!(body < nav && html[nav..].contains("dr.a") && html.contains("Sign out"), "the navigation");
        let (status, json) = reader.json("").await;
        assert_eq!(status, StatusCode::OK, "{url}");
        assert_eq!(json["status"], "figures", "{json}");
        assert_eq!(json["level"], "provider");
        assert_eq!(json["provider_id"], "prov-a1");
        assert_eq!(json["summary"]["invitations"], 12);
        assert_eq!(json["summary"]["responses"], 8);
        let csv = reader.get("/reports/report.csv").await.text().await.unwrap();
        assert!(csv.contains("summary,,,,provider,invitations,12"), "{csv}");
        assert!(csv.contains("summary,,,,provider,responses,8"), "{csv}");

        // Another provider's report, even at the same site, or another site: 404.
        for query in ["?provider=prov-b2", "?site=site-2002", "?site=site-2002&provider=prov-c3"] {
            let (status, _) = reader.json(query).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{query}");
            assert_eq!(reader.get(&format!("/reports{query}")).await.status(), StatusCode::NOT_FOUND);
        }
        // Exports of other roles: 404.
        assert_eq!(reader.get("/reports/activity.csv").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(reader.get("/reports/usage.csv").await.status(), StatusCode::NOT_FOUND);

        // Signing out ends the session on the server, not only in the browser.
        let html = reader.get("/reports").await.text().await.unwrap();
        let signed_in_cookie = reader.cookie.clone();
        assert_ne!(signed_in_cookie, pre_sign_in_cookie, "a new token after the second factor");
        let out = reader.post("/logout", &[("csrf", &common::csrf(&html))]).await;
        assert_eq!(out.status(), StatusCode::SEE_OTHER);
        reader.cookie = signed_in_cookie;
        assert_eq!(reader.get("/reports").await.status(), StatusCode::SEE_OTHER);

        // The next sign-in asks for a code; the one used before is refused.
        let again = reader.password("dr.a", &password).await;
        assert!(again.headers()["location"].to_str().unwrap().starts_with("/login/code"));
        let page = reader.get("/login/code").await.text().await.unwrap();
        let reused = reader.post("/login/code", &[("csrf", &common::csrf(&page)), ("code", &code)]).await;
        assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
        bridge.clock.advance(SignedDuration::from_secs(30));
        let fresh = reader.code(&key);
        let ok = reader.post("/login/code", &[("csrf", &common::csrf(&page)), ("code", &fresh)]).await;
        assert_eq!(ok.status(), StatusCode::SEE_OTHER);

        let db = Db::connect(&url).await.unwrap();
        let results: Vec<(String, String)> =
            db.activity(Some("site-1001")).await.unwrap().into_iter().map(|a| (a.action, a.result)).collect();
        for expected in [
            ("ACCOUNT_CREATED", "ok"),
            ("LOGIN", "wrong_password"),
            ("TOTP_ENROLLED", "wrong_code"),
            ("TOTP_ENROLLED", "ok"),
            ("REPORT_VIEW", "ok"),
            ("REPORT_EXPORT", "ok"),
            ("REPORT_VIEW", "not_found"),
            ("LOGOUT", "ok"),
            ("TOTP", "code_reused"),
            ("TOTP", "ok"),
        ] {
            assert!(
                results.iter().any(|(a, r)| (a.as_str(), r.as_str()) == expected),
                "{expected:?} in {results:?}"
            );
        }
        bridge.stop().await.unwrap();
    }
}

#[tokio::test]
async fn repeated_failures_lock_an_account_until_the_lock_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (bridge, _db) = bridge_with_data(&sqlite(dir.path())).await;
    let password =
        add(&bridge, &["dr.a", "--role", "provider", "--site", "site-1001", "--provider", "prov-a1"]);
    let mut reader = Reader::new(&bridge);
    reader.first_sign_in("dr.a", &password).await;
    reader.cookie = None;

    for _ in 0..5 {
        assert_eq!(reader.password("dr.a", "wrong-password-guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked: the right password is refused too, with the same words.
    assert_eq!(reader.password("dr.a", &password).await.status(), StatusCode::UNAUTHORIZED);
    let (code, list, _) = account(&bridge, &["list"]);
    assert_eq!(code, Some(0));
    // (The command runs on the system clock, the bridge on the test's: only the row is checked.)
    assert!(list.lines().any(|l| l.starts_with("dr.a\tprovider\tsite-1001\tprov-a1\tset up\t")), "{list}");

    // Fifteen minutes later it opens again.
    bridge.clock.advance(SignedDuration::from_mins(16));
    let response = reader.password("dr.a", &password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(response.headers()["location"].to_str().unwrap().starts_with("/login/code"));

    // An operator's reset unlocks at once, with a new password.
    for _ in 0..5 {
        reader.password("dr.a", "wrong-password-guess").await;
    }
    let (code, out, _) = account(&bridge, &["reset", "dr.a"]);
    assert_eq!(code, Some(0));
    let new_password = out.split("new password: ").nth(1).unwrap().trim().to_string();
    assert_eq!(
        reader.password("dr.a", &password).await.status(),
        StatusCode::UNAUTHORIZED,
        "the old password"
    );
    assert_eq!(reader.password("dr.a", &new_password).await.status(), StatusCode::SEE_OTHER);
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn one_lock_per_account_holds_at_the_second_factor_in_every_session() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite(dir.path());
    let (bridge, _db) = bridge_with_data(&url).await;
    let password =
        add(&bridge, &["dr.a", "--role", "provider", "--site", "site-1001", "--provider", "prov-a1"]);
    let key = Reader::new(&bridge).first_sign_in("dr.a", &password).await;
    // Someone with the password opens three sessions at the code step.
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut reader = Reader::new(&bridge);
        assert_eq!(reader.password("dr.a", &password).await.status(), StatusCode::SEE_OTHER);
        let page = reader.get("/login/code").await.text().await.unwrap();
        let csrf = common::csrf(&page);
        sessions.push((reader, csrf));
    }
    // A code no authenticator shows now (the right one, shifted).
    let right: u32 = sessions[0].0.code(&key).parse().unwrap();
    let wrong = format!("{:06}", (right + 500_000) % 1_000_000);
    // Failures add up across sessions: two wrong codes in one, three in another lock the
    // account (max_failures 5).
    for (s, tries) in [(0, 2), (1, 3)] {
        let (reader, csrf) = &mut sessions[s];
        for _ in 0..tries {
            let response = reader.post("/login/code", &[("csrf", csrf.as_str()), ("code", &wrong)]).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
    }
    // The lock ended every attempt in progress: the third session's right code (of a new
    // time step) is refused, and each session is back at the password.
    bridge.clock.advance(SignedDuration::from_secs(31));
    let (reader, csrf) = &mut sessions[2];
    let code = reader.code(&key);
    let refused = reader.post("/login/code", &[("csrf", csrf.as_str()), ("code", &code)]).await;
    assert_eq!(refused.status(), StatusCode::SEE_OTHER, "a right code while locked");
    assert_eq!(refused.headers()["location"], "/login");
    for (reader, _) in &mut sessions {
        let page = reader.get("/login/code").await;
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        assert_eq!(page.headers()["location"], "/login");
    }
    // A new sign-in is refused at the password, right as it is.
    let mut late = Reader::new(&bridge);
    assert_eq!(late.password("dr.a", &password).await.status(), StatusCode::UNAUTHORIZED);

    // Once the lock ends (15 minutes), the password and a fresh code sign in.
    bridge.clock.advance(SignedDuration::from_mins(16));
    assert_eq!(late.password("dr.a", &password).await.status(), StatusCode::SEE_OTHER);
    let page = late.get("/login/code").await.text().await.unwrap();
    let code = late.code(&key);
    let ok = late.post("/login/code", &[("csrf", &common::csrf(&page)), ("code", &code)]).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert!(ok.headers()["location"].to_str().unwrap().starts_with("/reports"));

    // A lock written while a session waits at the code step (by another request, or
    // another replica, between the two steps) holds too: the right code is refused there.
    let db = Db::connect(&url).await.unwrap();
    let mut waiting = Reader::new(&bridge);
    assert_eq!(waiting.password("dr.a", &password).await.status(), StatusCode::SEE_OTHER);
    let page = waiting.get("/login/code").await.text().await.unwrap();
    let until = bridge.clock.now().as_second() + 600;
    sqlx::query("UPDATE accounts SET locked_until = $1 WHERE username = 'dr.a'")
        .bind(until)
        .execute(db.pool())
        .await
        .unwrap();
    bridge.clock.advance(SignedDuration::from_secs(31));
    let code = waiting.code(&key);
    let refused = waiting.post("/login/code", &[("csrf", &common::csrf(&page)), ("code", &code)]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "a right code while locked");

    let totp: Vec<String> = db
        .activity(Some("site-1001"))
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "TOTP")
        .map(|a| a.result)
        .collect();
    assert_eq!(
        totp,
        ["wrong_code", "wrong_code", "wrong_code", "wrong_code", "wrong_code_now_locked", "ok", "locked"],
        "oldest first"
    );
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn a_sign_in_posted_from_another_site_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let (bridge, _db) = bridge_with_data(&sqlite(dir.path())).await;
    let password =
        add(&bridge, &["dr.a", "--role", "provider", "--site", "site-1001", "--provider", "prov-a1"]);
    let http = bridge.http();
    let forged = |origin: &'static str, site: &'static str, password: String| {
        http.post(bridge.url("/login"))
            .header(header::ORIGIN, origin)
            .header("sec-fetch-site", site)
            .form(&[("username", "dr.a".to_string()), ("password", password)])
            .send()
    };
    // Another site's page posts wrong passwords (to lock the account out) and the right one
    // (to sign the browser in): refused before the form is read.
    for _ in 0..6 {
        let response =
            forged("https://evil.example", "cross-site", "wrong-password-guess".into()).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.headers().get(header::SET_COOKIE).is_none());
    }
    let response = forged("https://evil.example", "cross-site", password.clone()).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(header::SET_COOKIE).is_none(), "no session");
    // A browser that sends no Sec-Fetch-Site is judged by its Origin.
    let old_browser = http
        .post(bridge.url("/login"))
        .header(header::ORIGIN, "https://evil.example")
        .form(&[("username", "dr.a"), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(old_browser.status(), StatusCode::FORBIDDEN);
    // Nothing was counted: the account is not locked, and its own page signs in.
    let own = format!("https://localhost:{}", bridge.https.port());
    let response = http
        .post(bridge.url("/login"))
        .header(header::ORIGIN, own)
        .header("sec-fetch-site", "same-origin")
        .form(&[("username", "dr.a"), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(response.headers()["location"].to_str().unwrap().starts_with("/login/enrol"));
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn a_site_admin_reads_its_site_and_exports_its_activity_but_not_another_site() {
    let dir = tempfile::tempdir().unwrap();
    let (bridge, _db) = bridge_with_data(&sqlite(dir.path())).await;
    let admin = add(&bridge, &["admin.1001", "--role", "site_admin", "--site", "site-1001"]);
    let other = add(&bridge, &["admin.2002", "--role", "site_admin", "--site", "site-2002"]);
    let mut other_reader = Reader::new(&bridge);
    other_reader.first_sign_in("admin.2002", &other).await;
    let mut reader = Reader::new(&bridge);
    reader.first_sign_in("admin.1001", &admin).await;

    let (status, site) = reader.json("").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(site["level"], "site");
    assert_eq!(site["period"], "2026-Q4", "the latest released quarter by default");
    // The site is the sum of its providers' units: prov-b2's month shows nothing (three
    // responses), so no sum it enters is shown either, or the site minus prov-a1 would tell
    // prov-b2's numbers.
    assert_eq!(site["status"], "figures", "{site}");
    assert_eq!(site["summary"]["invitations"], "suppressed", "{site}");
    assert_eq!(site["summary"]["responses"], "suppressed");
    let (status, provider) = reader.json("?provider=prov-b2").await;
    assert_eq!(status, StatusCode::OK);
    // Three responses: under k, so no numbers at all.
    assert_eq!(provider["status"], "too_few_responses", "{provider}");
    assert!(provider.get("summary").is_none());
    let page = reader.get("/reports?provider=prov-b2").await.text().await.unwrap();
    assert!(!page.contains(">3<"), "no count of a small population in the page");
    assert_eq!(reader.json("?site=site-2002").await.0, StatusCode::NOT_FOUND);

    let activity = reader.get("/reports/activity.csv").await;
    assert_eq!(activity.status(), StatusCode::OK);
    assert!(activity.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let activity = activity.text().await.unwrap();
    assert!(activity.starts_with("time,site,user,action,result,detail\n"), "{activity}");
    assert!(activity.contains(",site-1001,admin.1001,TOTP_ENROLLED,ok,"), "{activity}");
    assert!(
        activity.contains(",site-1001,admin.1001,REPORT_EXPORT,ok,json provider site-1001/prov-b2"),
        "{activity}"
    );
    assert!(activity.contains(",site-1001,admin.1001,REPORT_VIEW,not_found,"), "{activity}");
    assert!(!activity.contains("admin.2002") && !activity.contains("site-2002"), "another site's activity");

    let usage = reader.get("/reports/usage.csv").await.text().await.unwrap();
    assert_eq!(
        usage.lines().collect::<Vec<_>>(),
        ["site,month,invitations,responses,opt_outs", "site-1001,2026-11,suppressed,suppressed,suppressed"]
    );
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn an_analyst_sees_sites_in_aggregate_but_no_provider() {
    let dir = tempfile::tempdir().unwrap();
    let (bridge, _db) = bridge_with_data(&sqlite(dir.path())).await;
    let password = add(&bridge, &["analyst", "--role", "analyst"]);
    let mut reader = Reader::new(&bridge);
    reader.first_sign_in("analyst", &password).await;
    let (status, all) = reader.json("").await;
    assert_eq!(status, StatusCode::OK);
    // Analysts read units of a site's month: both sites' are large enough to show.
    assert_eq!((all["level"].as_str(), all["summary"]["responses"].as_u64()), (Some("all"), Some(21)));
    let (status, site) = reader.json("?site=site-2002").await;
    assert_eq!((status, site["summary"]["invitations"].as_u64()), (StatusCode::OK, Some(20)));
    assert_eq!(reader.json("?site=site-1001&provider=prov-a1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(reader.get("/reports/activity.csv").await.status(), StatusCode::NOT_FOUND);
    let usage = reader.get("/reports/usage.csv").await.text().await.unwrap();
    assert_eq!(
        usage.lines().collect::<Vec<_>>(),
        [
            "site,month,invitations,responses,opt_outs",
            "site-1001,2026-11,22,11,suppressed",
            "site-2002,2026-11,20,10,suppressed",
        ],
        "no opt-outs: a count under k"
    );
    // Released periods only: free ranges, unreleased and malformed periods name the field.
    for (query, named) in [
        ("from=2026-11&to=2026-12", "from, to"),
        ("from=2026-13", "from"),
        ("period=2026-13", "period"),
        ("period=2027-01", "not released yet"),
        ("period=2027", "not released yet"),
    ] {
        let bad = reader.get(&format!("/reports/report.json?{query}")).await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(bad.text().await.unwrap().contains(named), "{query} should name {named}");
    }
    for period in ["2026-11", "2026-Q4", "2026"] {
        let (status, report) = reader.json(&format!("?period={period}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(report["summary"]["responses"], 21, "{period}");
    }
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn account_commands_check_their_input() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |_| {}).await;
    assert_eq!(bridge.http().get(bridge.url("/login")).send().await.unwrap().status(), StatusCode::OK);
    for (args, named) in [
        (vec!["add", "x", "--role", "boss"], "--role"),
        (vec!["add", "x", "--role", "provider", "--site", "site-1001"], "--provider"),
        (vec!["add", "x y", "--role", "analyst"], "username"),
        (vec!["add", "x", "--role", "analyst", "--site", "site-1001"], "--site"),
        (vec!["reset", "nobody"], "no account"),
    ] {
        let (code, _, err) = account(&bridge, &args);
        assert_eq!(code, Some(65), "{args:?}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
    add(&bridge, &["x", "--role", "analyst"]);
    let (code, _, err) = account(&bridge, &["add", "x", "--role", "analyst"]);
    assert_eq!(code, Some(65));
    assert!(err.contains("exists"), "{err}");
    bridge.stop().await.unwrap();
}
