//! Results from external surveys, against a real bridge: the consent page's redirect (which
//! records consent first) and its CSP; the signed webhook (good, without consent, bad
//! signature, replay, bad answers) on SQLite and on PostgreSQL; and the plain-HTTP port that
//! only redirects.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Bridge, csrf, databases, guid, sqlite, start};
use jiff::SignedDuration;
use reqwest::StatusCode;
use survey_bridge::{
    config::{CampaignConfig, WebhookConfig},
    db::Db,
    results::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign},
};

const SECRET: &str = "a-shared-secret-of-more-than-32-characters";
const KEY: (&str, &str, &str, &str) = ("site-1001", "prov-w1", "pcpe-2026q4", "2026-11");

/// A bridge with the webhook on, its secret written beside the other test files.
async fn webhook_bridge(url: &str) -> Bridge {
    start(url, |config| {
        let secret_file = config.tls.cert.with_file_name("webhook.secret");
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        config.webhook = Some(WebhookConfig { secret_file, ..WebhookConfig::default() });
    })
    .await
}

/// Posts `body` signed with `secret` at `timestamp`.
async fn post(bridge: &Bridge, secret: &str, timestamp: i64, body: &str) -> (StatusCode, serde_json::Value) {
    let response = bridge
        .http()
        .post(bridge.url("/results"))
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, sign(secret.as_bytes(), timestamp, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

/// Posts `body` signed now with the right secret.
async fn post_now(bridge: &Bridge, body: &str) -> (StatusCode, serde_json::Value) {
    post(bridge, SECRET, bridge.clock.now().as_second(), body).await
}

fn error_of(reply: &serde_json::Value) -> &str {
    reply["error"].as_str().unwrap_or_default()
}

fn audit_results(bridge: &Bridge, action: &str) -> Vec<String> {
    bridge
        .audit_lines()
        .iter()
        .filter(|line| line["action"] == action)
        .map(|line| line["result"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_webhook_counts_signed_results_once() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = webhook_bridge(&url).await;
        let g = guid();
        bridge.invite(&g, "prov-w1", "fr").await;
        let db = Db::connect(&url).await.unwrap();

        let body = serde_json::json!({
            "guid": g,
            "answers": { "timely": "often", "next_steps": "yes", "overall": 8 },
        })
        .to_string();
        // Before the patient agreed on the consent page: refused, and nothing kept.
        let (status, reply) = post_now(&bridge, &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{url}: {reply}");
        assert!(error_of(&reply).contains("has not agreed"), "{reply}");
        assert_eq!(bridge.fold().await.counted, 0);
        assert_eq!(db.answer_count(KEY, "overall", "8").await.unwrap(), 0, "{url}");

        bridge.consent(&g).await;
        let (status, reply) = post_now(&bridge, &body).await;
        assert_eq!(status, StatusCode::OK, "{url}: {reply}");
        assert_eq!(reply["status"], "accepted");
        assert_eq!(bridge.fold().await.counted, 1);
        assert_eq!(db.answer_count(KEY, "timely", "often").await.unwrap(), 1, "{url}");
        assert_eq!(db.answer_count(KEY, "next_steps", "yes").await.unwrap(), 1);
        assert_eq!(db.answer_count(KEY, "overall", "8").await.unwrap(), 1);

        // Delivered again (a retry by the survey tool): 409, and nothing changes.
        let (status, reply) = post_now(&bridge, &body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{reply}");
        assert!(error_of(&reply).contains("already answered"), "{reply}");
        assert_eq!(db.answer_count(KEY, "overall", "8").await.unwrap(), 1);
        let counts = db.period_counts("site-1001", "prov-w1", "pcpe-2026q4", "2026-11").await.unwrap();
        assert_eq!((counts.invitations, counts.responses), (1, 1));

        // The link is used: the consent page says it is not open, as for any other link.
        let page = bridge.http().get(bridge.url(&format!("/s/{g}"))).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::NOT_FOUND);

        // A GUID never recorded, and one whose link expired: 404, the same words.
        let (status, unknown) =
            post_now(&bridge, &serde_json::json!({"guid": guid(), "answers": {"overall": 5}}).to_string())
                .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let late = guid();
        bridge.invite(&late, "prov-w1", "en").await;
        bridge.clock.advance(SignedDuration::from_hours(24 * 31));
        let (status, expired) =
            post_now(&bridge, &serde_json::json!({"guid": late, "answers": {"overall": 5}}).to_string())
                .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error_of(&unknown), error_of(&expired));
        assert_eq!(db.answer_count(KEY, "overall", "5").await.unwrap(), 0);

        assert_eq!(audit_results(&bridge, "RESPONSE_ACCEPTED"), ["no_consent", "ok"]);
        assert_eq!(audit_results(&bridge, "GUID_REJECTED"), ["used", "used", "unknown", "expired"]);
        // A response (or answers refused for want of consent) is not tied to its GUID, nor
        // placed in time finer than the day.
        for line in bridge.audit_lines().iter().filter(|line| line["action"] == "RESPONSE_ACCEPTED") {
            assert!(line.get("guid_hmac").is_none(), "{line}");
            assert_eq!(line["time"], "2026-11-24", "{line}");
        }
        let audit = std::fs::read_to_string(bridge.path("audit.jsonl")).unwrap();
        assert!(!audit.contains(&g) && !audit.contains(&late), "a raw GUID in the audit log");
        bridge.stop().await.unwrap();
    }
}

#[tokio::test]
async fn unsigned_badly_signed_and_replayed_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = webhook_bridge(&sqlite(dir.path())).await;
    let g = guid();
    bridge.invite(&g, "prov-w1", "en").await;
    // Opened once the bridge has answered, so its migrations are done.
    let db = Db::connect(&bridge.database_url).await.unwrap();
    bridge.consent(&g).await;
    let body = serde_json::json!({"guid": g, "answers": {"overall": 10}}).to_string();
    let now = bridge.clock.now().as_second();
    let http = bridge.http();

    // No signature at all.
    let response = http.post(bridge.url("/results")).body(body.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.text().await.unwrap().contains("X-Bridge-Timestamp is missing"));

    // Signed with another secret; the body changed after signing; a signature that is not
    // hex.
    let (status, reply) = post(&bridge, "not-the-secret-but-just-as-long-as-it", now, &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&reply).contains("does not match"), "{reply}");
    let tampered = http
        .post(bridge.url("/results"))
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(SIGNATURE_HEADER, sign(SECRET.as_bytes(), now, body.as_bytes()))
        .body(body.replace("10", "0"))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), StatusCode::UNAUTHORIZED);
    let garbled = http
        .post(bridge.url("/results"))
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(SIGNATURE_HEADER, "sha256=zz")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), StatusCode::UNAUTHORIZED);

    // Correctly signed, but long ago or far ahead: a replay, refused.
    let (status, reply) = post(&bridge, SECRET, now - 301, &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&reply).contains("outside the accepted window"), "{reply}");
    let (status, _) = post(&bridge, SECRET, now + 301, &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(db.answer_count(KEY, "overall", "10").await.unwrap(), 0, "nothing counted");

    // A request captured in flight and sent again ten minutes later is stale.
    let (status, _) = post(&bridge, SECRET, now - 10, &body).await;
    assert_eq!(status, StatusCode::OK);
    bridge.clock.advance(SignedDuration::from_mins(10));
    let (status, _) = post(&bridge, SECRET, now - 10, &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    bridge.fold().await;
    assert_eq!(db.answer_count(KEY, "overall", "10").await.unwrap(), 1);

    assert_eq!(
        audit_results(&bridge, "WEBHOOK_REFUSED"),
        ["unsigned", "bad_signature", "bad_signature", "malformed", "stale", "stale", "stale"]
    );
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn the_webhook_names_what_is_wrong_with_a_body() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = webhook_bridge(&sqlite(dir.path())).await;
    let g = guid();
    bridge.invite(&g, "prov-w1", "en").await;
    // Opened once the bridge has answered, so its migrations are done.
    let db = Db::connect(&bridge.database_url).await.unwrap();

    let cases: &[(serde_json::Value, &str)] = &[
        (
            serde_json::json!({"guid": g, "answers": {"wait": "long", "overall": 3}}),
            "unknown question \"wait\"",
        ),
        (serde_json::json!({"guid": g, "answers": {"timely": "daily", "overall": 3}}), "no option \"daily\""),
        (serde_json::json!({"guid": g, "answers": {"overall": 11}}), "no option \"11\""),
        (serde_json::json!({"guid": g, "answers": {"timely": true, "overall": 3}}), "answers.timely"),
        (serde_json::json!({"guid": g, "answers": {"timely": "always"}}), "\"overall\" must be answered"),
        (serde_json::json!({"guid": "not-a-guid", "answers": {"overall": 3}}), "guid"),
        (serde_json::json!({"guid": g}), "answers"),
        (serde_json::json!({"guid": g, "answers": {"overall": 3}, "patient": "x"}), "unknown field"),
    ];
    for (body, named) in cases {
        let (status, reply) = post_now(&bridge, &body.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {reply}");
        assert!(error_of(&reply).contains(named), "{body}: {reply} should name {named}");
    }
    let (status, reply) = post_now(&bridge, "{not json").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&reply).contains("must be JSON"), "{reply}");
    let huge = format!("{{\"guid\": \"{g}\", \"pad\": \"{}\"}}", "x".repeat(70 * 1024));
    let (status, _) = post_now(&bridge, &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // None of that used the link: a good body is still counted.
    let counts = db.period_counts("site-1001", "prov-w1", "pcpe-2026q4", "2026-11").await.unwrap();
    assert_eq!(counts.responses, 0);
    bridge.consent(&g).await;
    let (status, reply) =
        post_now(&bridge, &serde_json::json!({"guid": g, "answers": {"overall": 3}}).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    bridge.fold().await;
    assert_eq!(db.answer_count(KEY, "overall", "3").await.unwrap(), 1);
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_secret_there_is_no_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |_| {}).await;
    let (status, _) = post_now(&bridge, "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn consent_redirects_to_an_external_survey_that_the_csp_allows() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |config| {
        config.campaigns.insert(
            "pcpe-2026q4".into(),
            CampaignConfig {
                external_url: Some("https://survey.example.org/start?ref={guid}&src=sms".into()),
            },
        );
    })
    .await;
    let http = bridge.http();
    let g = guid();
    bridge.invite(&g, "prov-w1", "en").await;
    let consent = http.get(bridge.url(&format!("/s/{g}"))).send().await.unwrap();
    let csp = consent.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("form-action 'self' https://survey.example.org;"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let page = consent.text().await.unwrap();
    // The built-in survey is not open before the patient agrees: it sends them to consent.
    let early = http.get(bridge.url(&format!("/s/{g}/survey"))).send().await.unwrap();
    assert_eq!(early.status(), StatusCode::SEE_OTHER);
    assert_eq!(early.headers()["location"], format!("/s/{g}?lang=en"));
    let agreed = http
        .post(bridge.url(&format!("/s/{g}/consent")))
        .form(&[("csrf", csrf(&page).as_str()), ("choice", "agree")])
        .send()
        .await
        .unwrap();
    assert_eq!(agreed.status(), StatusCode::SEE_OTHER);
    assert_eq!(agreed.headers()["location"], format!("https://survey.example.org/start?ref={g}&src=sms"));
    assert_eq!(agreed.headers()["referrer-policy"], "no-referrer");
    // The consent was recorded before the patient left for the external survey.
    let after = http.get(bridge.url(&format!("/s/{g}/survey"))).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn the_plain_http_port_only_redirects_to_https() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |config| {
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let port = bridge.http.unwrap().port();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", bridge.http.unwrap())
        .build()
        .unwrap();
    let g = guid();
    bridge.invite(&g, "prov-w1", "en").await;
    for path in [format!("/s/{g}?lang=fr"), "/".to_string(), "/results".to_string()] {
        let response = http.get(format!("http://localhost:{port}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(response.headers()["location"], bridge.url(&path));
        assert!(response.text().await.unwrap().is_empty(), "no page in clear");
    }
    let post = http.post(format!("http://localhost:{port}/s/{g}/consent")).body("choice=agree").send().await;
    assert_eq!(post.unwrap().status(), StatusCode::PERMANENT_REDIRECT);
    // A Host header that is not a host name is not echoed into a redirect.
    let odd =
        http.get(format!("http://localhost:{port}/")).header("host", "evil.example/x").send().await.unwrap();
    assert_eq!(odd.status(), StatusCode::BAD_REQUEST);
    // Nothing was consented to over plain HTTP.
    assert!(bridge.audit_lines().iter().all(|line| line["action"] != "CONSENT_GIVEN"));
    bridge.stop().await.unwrap();
}
