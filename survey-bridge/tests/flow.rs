//! The patient flow against a real bridge, on SQLite and on PostgreSQL: record -> consent
//! -> survey -> counters; unknown, expired and used links; bad answers; declines; headers.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Bridge, csrf, databases, guid, start};
use jiff::SignedDuration;
use reqwest::StatusCode;
use survey_bridge::config::SiteConfig;

const MONTH: &str = "2026-11";

fn key(provider: &str) -> (&str, &str, &str, &str) {
    ("site-1001", provider, "pcpe-2026q4", MONTH)
}

async fn consent_and_open_survey(bridge: &Bridge, http: &reqwest::Client, guid: &str) -> String {
    let consent = http.get(bridge.url(&format!("/s/{guid}"))).send().await.unwrap();
    assert_eq!(consent.status(), StatusCode::OK);
    let page = consent.text().await.unwrap();
    let agreed = http
        .post(bridge.url(&format!("/s/{guid}/consent")))
        .form(&[("csrf", csrf(&page).as_str()), ("choice", "agree")])
        .send()
        .await
        .unwrap();
    assert_eq!(agreed.status(), StatusCode::SEE_OTHER);
    let location = agreed.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("/s/{guid}/survey")), "{location}");
    let survey = http.get(bridge.url(&location)).send().await.unwrap();
    assert_eq!(survey.status(), StatusCode::OK);
    survey.text().await.unwrap()
}

async fn submit(
    bridge: &Bridge,
    http: &reqwest::Client,
    guid: &str,
    token: &str,
    answers: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = vec![("csrf", token)];
    form.extend_from_slice(answers);
    http.post(bridge.url(&format!("/s/{guid}/survey"))).form(&form).send().await.unwrap()
}

#[tokio::test]
async fn record_consent_survey_and_count() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |c| {
            let site = SiteConfig { name: "Clinique Soleil".into(), contact: Some("613-999-0150".into()) };
            c.sites.insert("site-1001".into(), site);
        })
        .await;
        let http = bridge.http();
        let (a, b) = (guid(), guid());
        bridge.invite(&a, "prov-a1", "en").await;
        bridge.invite(&b, "prov-a1", "fr").await;
        // The consent page says who asks: the invitation's site, as [sites] names it.
        let consent = http.get(bridge.url(&format!("/s/{b}"))).send().await.unwrap().text().await.unwrap();
        assert!(consent.contains("Clinique Soleil aimerait connaître votre avis"), "{consent}");
        assert!(consent.contains("Des questions sur ce sondage : 613-999-0150"), "{consent}");
        // Opened once the bridge has answered, so its migrations are done.
        let db = survey_bridge::db::Db::connect(&url).await.unwrap();

        let survey = consent_and_open_survey(&bridge, &http, &a).await;
        assert!(survey.contains("lang=\"en\""));
        let answered =
            submit(&bridge, &http, &a, &csrf(&survey), &[("overall", "9"), ("listened", "always")]).await;
        assert_eq!(answered.status(), StatusCode::OK, "{url}");

        let survey = consent_and_open_survey(&bridge, &http, &b).await;
        assert!(survey.contains("lang=\"fr\""), "the invitation's language");
        let answered =
            submit(&bridge, &http, &b, &csrf(&survey), &[("overall", "9"), ("listened", "often")]).await;
        assert_eq!(answered.status(), StatusCode::OK);

        // The answers wait in the pool until a fold counts them.
        assert_eq!(db.answer_count(key("prov-a1"), "overall", "9").await.unwrap(), 0, "{url}");
        assert_eq!(bridge.fold().await.counted, 2);
        assert_eq!(db.answer_count(key("prov-a1"), "overall", "9").await.unwrap(), 2, "{url}");
        assert_eq!(db.answer_count(key("prov-a1"), "listened", "always").await.unwrap(), 1);
        assert_eq!(db.answer_count(key("prov-a1"), "listened", "often").await.unwrap(), 1);
        let counts = db.period_counts("site-1001", "prov-a1", "pcpe-2026q4", MONTH).await.unwrap();
        assert_eq!((counts.invitations, counts.responses, counts.opt_outs), (2, 2, 0));

        // A second submission: the link is not open, and nothing changes.
        let again = submit(&bridge, &http, &a, &csrf(&survey), &[("overall", "1")]).await;
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
        let page = http.get(bridge.url(&format!("/s/{a}"))).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        assert_eq!(bridge.fold().await.counted, 0);
        assert_eq!(db.answer_count(key("prov-a1"), "overall", "1").await.unwrap(), 0);
        assert_eq!(
            db.period_counts("site-1001", "prov-a1", "pcpe-2026q4", MONTH).await.unwrap().responses,
            2
        );

        // The audit trail has the flow, with GUIDs only as HMACs.
        let audit = std::fs::read_to_string(bridge.path("audit.jsonl")).unwrap();
        for action in ["INVITATION_RECORDED", "CONSENT_GIVEN", "RESPONSE_ACCEPTED", "GUID_REJECTED"] {
            assert!(audit.contains(action), "{action}");
        }
        assert!(!audit.contains(&a) && !audit.contains(&b), "a raw GUID in the audit log");
        bridge.stop().await.unwrap();
    }
}

#[tokio::test]
async fn unknown_malformed_and_expired_links_are_not_valid() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |c| c.link_valid_days = 30).await;
        let http = bridge.http();
        let known = guid();
        bridge.invite(&known, "prov-a1", "en").await;
        for path in [format!("/s/{}", guid()), "/s/not-a-guid".into(), "/s/".into(), "/nowhere".into()] {
            let response = http.get(bridge.url(&path)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
        // Grab the form while the link works; submit it after the link expired.
        let survey = consent_and_open_survey(&bridge, &http, &known).await;
        bridge.clock.advance(SignedDuration::from_hours(24 * 30));
        let late = submit(&bridge, &http, &known, &csrf(&survey), &[("overall", "8")]).await;
        assert_eq!(late.status(), StatusCode::NOT_FOUND);
        let page = http.get(bridge.url(&format!("/s/{known}"))).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        let db = survey_bridge::db::Db::connect(&url).await.unwrap();
        assert_eq!(
            db.period_counts("site-1001", "prov-a1", "pcpe-2026q4", MONTH).await.unwrap().responses,
            0
        );
    }
}

#[tokio::test]
async fn every_bad_answer_shape_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    let http = bridge.http();
    let g = guid();
    bridge.invite(&g, "prov-a1", "en").await;
    let survey = consent_and_open_survey(&bridge, &http, &g).await;
    let token = csrf(&survey);
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("no_such_question", "always")], "no_such_question"),
        (&[("listened", "sideways")], "sideways"),
        (&[("listened", "always"), ("listened", "never")], "listened"),
        (&[("listened", "always")], "overall"),
    ];
    for (answers, named) in cases {
        let response = submit(&bridge, &http, &g, &token, answers).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{answers:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains(named), "{named} not named in {body}");
    }
    // A forged form token.
    let forged = submit(&bridge, &http, &g, "00ff", &[("overall", "9")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // Nothing was counted; the link still works.
    let ok = submit(&bridge, &http, &g, &token, &[("overall", "10")]).await;
    assert_eq!(ok.status(), StatusCode::OK);
    bridge.fold().await;
    let db = survey_bridge::db::Db::connect(&url).await.unwrap();
    assert_eq!(db.period_counts("site-1001", "prov-a1", "pcpe-2026q4", MONTH).await.unwrap().responses, 1);
    assert_eq!(db.answer_count(key("prov-a1"), "listened", "always").await.unwrap(), 0);
}

#[tokio::test]
async fn declining_opts_out_and_ends_the_link() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        let http = bridge.http();
        let g = guid();
        bridge.invite(&g, "prov-a2", "fr").await;
        let page = http.get(bridge.url(&format!("/s/{g}"))).send().await.unwrap().text().await.unwrap();
        let declined = http
            .post(bridge.url(&format!("/s/{g}/consent")))
            .form(&[("csrf", csrf(&page).as_str()), ("choice", "decline")])
            .send()
            .await
            .unwrap();
        assert_eq!(declined.status(), StatusCode::OK);
        let db = survey_bridge::db::Db::connect(&url).await.unwrap();
        let counts = db.period_counts("site-1001", "prov-a2", "pcpe-2026q4", MONTH).await.unwrap();
        assert_eq!((counts.invitations, counts.responses, counts.opt_outs), (1, 0, 1), "{url}");
        let again = http.get(bridge.url(&format!("/s/{g}/survey"))).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
        assert!(bridge.audit_lines().iter().any(|l| l["action"] == "OPT_OUT" && l["result"] == "ok"));
    }
}

#[tokio::test]
async fn pages_carry_headers_that_keep_the_guid_in() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    let http = bridge.http();
    let g = guid();
    bridge.invite(&g, "prov-a1", "en").await;
    for path in [format!("/s/{g}"), format!("/s/{}", guid()), "/assets/site.css".into()] {
        let response = http.get(bridge.url(&path)).send().await.unwrap();
        let h = response.headers();
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(h["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.get("set-cookie").is_none(), "no cookies");
    }
    let page = http.get(bridge.url(&format!("/s/{g}"))).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("http://") && !page.contains("https://"), "no absolute (third-party) URLs");
    assert!(!page.contains("<script"));
}

#[tokio::test]
async fn guessing_links_is_throttled_per_client_and_reopening_an_answered_one_is_not_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |c| c.max_bad_links_per_minute = 3).await;
    let http = bridge.http();
    // Someone completing a link seen in part ("3f2a..."): four bad guesses of that prefix.
    let with_prefix = |prefix: &str| format!("{prefix}{}", &guid()[4..]);
    let g = with_prefix("3f2a");
    bridge.invite(&g, "prov-a1", "en").await;
    for _ in 0..4 {
        let response = http.get(bridge.url(&format!("/s/{}", with_prefix("3f2a")))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let blocked = http.get(bridge.url(&format!("/s/{g}"))).send().await.unwrap();
    assert_eq!(
        blocked.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even a good link of that prefix, while blocked"
    );
    // Other links from the same address (another patient behind it) still open.
    let neighbour = with_prefix("b7c1");
    bridge.invite(&neighbour, "prov-a1", "en").await;
    let open = http.get(bridge.url(&format!("/s/{neighbour}"))).send().await.unwrap();
    assert_eq!(open.status(), StatusCode::OK, "another prefix is not blocked");
    bridge.clock.advance(SignedDuration::from_secs(61));
    let open = http.get(bridge.url(&format!("/s/{g}"))).send().await.unwrap();
    assert_eq!(open.status(), StatusCode::OK);

    // A link already answered is a real link, not a guess: opened again and again (by its
    // patient, or by patients behind one address) it never locks the client out.
    bridge.answer_survey(&g).await;
    let other = guid();
    bridge.invite(&other, "prov-a1", "en").await;
    for _ in 0..6 {
        let again = http.get(bridge.url(&format!("/s/{g}"))).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_FOUND, "already answered");
    }
    let fresh = http.get(bridge.url(&format!("/s/{other}"))).send().await.unwrap();
    assert_eq!(fresh.status(), StatusCode::OK, "not blocked by reopening an answered link");
    let used = bridge
        .audit_lines()
        .iter()
        .filter(|l| l["action"] == "GUID_REJECTED" && l["result"] == "used")
        .count();
    assert_eq!(used, 6, "each reopening is still audited");
}
