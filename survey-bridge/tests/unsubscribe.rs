//! Unsubscribing at `/u/{guid}`, against a real bridge on SQLite and on PostgreSQL: the
//! RFC 8058 one-click POST (urlencoded and multipart), the page and its token-checked form,
//! answered and declined invitations, bad links, and repeats. Without a cache configured,
//! an opt-out waits in the outbox, which is where these tests look for it
//! (`tests/opt_out.rs` shows the outbox reaching a real cache).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Bridge, csrf, databases, guid, start};
use jiff::SignedDuration;
use proto::ledger::InvitationAnsweredRequest;
use reqwest::{Response, StatusCode};
use survey_bridge::db::Db;

const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

async fn one_click_multipart(bridge: &Bridge, guid: &str) -> Response {
    let body = "--7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n\
                One-Click\r\n--7MA4YWxkTrZu0gW--\r\n";
    bridge
        .http()
        .post(bridge.url(&format!("/u/{guid}")))
        .header("content-type", "multipart/form-data; boundary=7MA4YWxkTrZu0gW")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn get_page(bridge: &Bridge, path: &str) -> (StatusCode, String) {
    let response = bridge.http().get(bridge.url(path)).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn answered(bridge: &Bridge, guid: &str) -> bool {
    let mut ledger = bridge.ledger_as("outreach").await;
    let request = InvitationAnsweredRequest { guid: guid.into() };
    ledger.invitation_answered(request).await.unwrap().into_inner().answered
}

/// The GUIDs waiting in the opt-out outbox.
async fn queued(db: &Db) -> Vec<String> {
    db.pending_opt_outs().await.unwrap().into_iter().map(|(g, _)| g).collect()
}

/// The unsubscribe events in the audit log, by result.
fn opt_out_results(bridge: &Bridge) -> Vec<String> {
    bridge
        .audit_lines()
        .iter()
        .filter(|l| l["action"] == "OPT_OUT" && l["detail"] == "unsubscribe")
        .map(|l| l["result"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn one_click_unsubscribes_and_a_repeat_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        let g = guid();
        bridge.invite(&g, "prov-a1", "fr").await;
        let db = Db::connect(&url).await.unwrap();
        assert!(!answered(&bridge, &g).await);

        let response = bridge.one_click(&g).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let body = response.text().await.unwrap();
        assert!(body.contains("<html lang=\"fr\">") && body.contains("aucun message"), "{body}");
        assert_eq!(queued(&db).await, vec![g.clone()], "the GUID waits for the cache's OptOut: {url}");
        assert!(answered(&bridge, &g).await, "no reminder after an unsubscribe");
        let counts = db.period_counts("site-1001", "prov-a1", "pcpe-2026q4", "2026-11").await.unwrap();
        assert_eq!((counts.responses, counts.opt_outs), (0, 1), "{url}");

        // Again: the same page, nothing more queued or counted.
        let again = bridge.one_click(&g).await;
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(again.text().await.unwrap(), body);
        assert_eq!(queued(&db).await, vec![g.clone()]);
        let counts = db.period_counts("site-1001", "prov-a1", "pcpe-2026q4", "2026-11").await.unwrap();
        assert_eq!(counts.opt_outs, 1);
        assert_eq!(opt_out_results(&bridge), ["ok", "already_exists"]);
        // The page still offers the form: it does not tell whoever holds the link what the
        // patient did.
        let (status, page) = get_page(&bridge, &format!("/u/{g}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("<form"), "{page}");
        // And the survey link is closed.
        assert_eq!(get_page(&bridge, &format!("/s/{g}")).await.0, StatusCode::NOT_FOUND);

        let audit = std::fs::read_to_string(bridge.path("audit.jsonl")).unwrap();
        assert!(!audit.contains(&g), "a raw GUID in the audit log");
    }
}

#[tokio::test]
async fn one_click_may_be_multipart() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    let g = guid();
    bridge.invite(&g, "prov-a1", "en").await;
    let response = one_click_multipart(&bridge, &g).await;
    assert_eq!(response.status(), StatusCode::OK);
    let db = Db::connect(&url).await.unwrap();
    assert_eq!(queued(&db).await, vec![g.clone()]);
    assert!(answered(&bridge, &g).await);

    // A malformed multipart body is refused before anything is looked up.
    let other = guid();
    bridge.invite(&other, "prov-a1", "en").await;
    let response = bridge
        .http()
        .post(bridge.url(&format!("/u/{other}")))
        .header("content-type", "multipart/form-data; boundary=b")
        .body("--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(queued(&db).await, vec![g]);
}

#[tokio::test]
async fn the_page_explains_in_both_languages_and_does_not_unsubscribe() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        let g = guid();
        bridge.invite(&g, "prov-a1", "fr").await;
        let db = Db::connect(&url).await.unwrap();

        let response = bridge.http().get(bridge.url(&format!("/u/{g}"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let h = response.headers();
        assert!(h["content-security-policy"].to_str().unwrap().contains("form-action 'self'"));
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h.get("set-cookie").is_none());
        let fr = response.text().await.unwrap();
        assert!(fr.contains("<html lang=\"fr\">"), "the invitation's language");
        assert!(fr.contains("définitif") && fr.contains("Me désabonner"), "{fr}");
        assert!(fr.contains(&format!("method=\"post\" action=\"/u/{g}\"")));
        assert!(fr.contains("name=\"viewport\""));
        assert_eq!(fr.matches("<button").count(), 1);
        assert!(!fr.contains("<script") && !fr.contains("https://"));

        let (status, en) = get_page(&bridge, &format!("/u/{g}?lang=en")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(en.contains("<html lang=\"en\">"));
        assert!(en.contains("any more messages") && en.contains("final"), "{en}");
        assert!(en.contains("?lang=fr"), "a switch to French");

        // Looking (twice, as a mail scanner might) changes nothing.
        assert!(queued(&db).await.is_empty(), "{url}");
        assert!(!answered(&bridge, &g).await);
        assert!(opt_out_results(&bridge).is_empty());
        assert_eq!(get_page(&bridge, &format!("/s/{g}")).await.0, StatusCode::OK, "the survey still works");
    }
}

#[tokio::test]
async fn the_form_needs_the_page_token() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        let (g, other) = (guid(), guid());
        bridge.invite(&g, "prov-a1", "en").await;
        bridge.invite(&other, "prov-a1", "en").await;
        let db = Db::connect(&url).await.unwrap();
        let http = bridge.http();
        let post = |fields: Vec<(&'static str, String)>| {
            let request = http.post(bridge.url(&format!("/u/{g}"))).form(&fields);
            async move { request.send().await.unwrap().status() }
        };

        let (_, other_page) = get_page(&bridge, &format!("/u/{other}")).await;
        let (_, consent) = get_page(&bridge, &format!("/s/{g}")).await;
        for refused in [
            vec![],
            vec![("lang", "en".to_string())],
            vec![("csrf", "00ff".to_string())],
            vec![("csrf", csrf(&other_page))],
            vec![("csrf", csrf(&consent))],
            vec![("List-Unsubscribe", "One-Click".to_string()), ("lang", "en".to_string())],
        ] {
            assert_eq!(post(refused.clone()).await, StatusCode::FORBIDDEN, "{refused:?}");
        }
        // Nor does a body that is not a form.
        let plain = http
            .post(bridge.url(&format!("/u/{g}")))
            .header("content-type", "text/plain")
            .body(ONE_CLICK)
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status(), StatusCode::FORBIDDEN);
        assert!(queued(&db).await.is_empty(), "{url}");
        assert!(!answered(&bridge, &g).await);

        let (_, page) = get_page(&bridge, &format!("/u/{g}")).await;
        let status = post(vec![("csrf", csrf(&page)), ("lang", "en".into())]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(queued(&db).await, vec![g.clone()], "{url}");
        assert!(answered(&bridge, &g).await);
        assert!(!answered(&bridge, &other).await);
        // The same form again: the same answer.
        assert_eq!(post(vec![("csrf", csrf(&page))]).await, StatusCode::OK);
        assert_eq!(queued(&db).await, vec![g.clone()]);
    }
}

#[tokio::test]
async fn an_answered_survey_is_still_opted_out() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        let g = guid();
        bridge.invite(&g, "prov-a1", "en").await;
        bridge.answer_survey(&g).await;
        assert!(answered(&bridge, &g).await);
        let db = Db::connect(&url).await.unwrap();
        assert!(queued(&db).await.is_empty());

        // The page still offers to unsubscribe.
        let (status, page) = get_page(&bridge, &format!("/u/{g}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("name=\"csrf\""));

        let response = bridge.one_click(&g).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert_eq!(queued(&db).await, vec![g.clone()], "queued for the cache's OptOut: {url}");
        bridge.fold().await;
        // The response stands, and is not also counted as an opt-out.
        let counts = db.period_counts("site-1001", "prov-a1", "pcpe-2026q4", "2026-11").await.unwrap();
        assert_eq!((counts.responses, counts.opt_outs), (1, 0), "{url}");
        assert!(answered(&bridge, &g).await);
        // Again: the same page; still one queued opt-out.
        assert_eq!(bridge.one_click(&g).await.status(), StatusCode::OK);
        assert_eq!(queued(&db).await, vec![g.clone()]);
        assert_eq!(opt_out_results(&bridge), ["ok", "ok"]);
    }
}

#[tokio::test]
async fn a_declined_invitation_is_already_unsubscribed() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::sqlite(dir.path());
    let bridge = start(&url, |_| {}).await;
    let g = guid();
    bridge.invite(&g, "prov-a1", "en").await;
    let (_, consent) = get_page(&bridge, &format!("/s/{g}")).await;
    let declined = bridge
        .http()
        .post(bridge.url(&format!("/s/{g}/consent")))
        .form(&[("csrf", csrf(&consent).as_str()), ("choice", "decline")])
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), StatusCode::OK);
    // The page is the one every open link shows (it must not tell what the patient did);
    // sending it confirms.
    let (status, page) = get_page(&bridge, &format!("/u/{g}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<form"), "{page}");
    let confirmed = bridge.one_click(&g).await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    assert!(confirmed.text().await.unwrap().contains("You are unsubscribed"));
    let db = Db::connect(&url).await.unwrap();
    assert_eq!(queued(&db).await, vec![g], "queued once, by the decline");
    let counts = db.period_counts("site-1001", "prov-a1", "pcpe-2026q4", "2026-11").await.unwrap();
    assert_eq!(counts.opt_outs, 1);
}

#[tokio::test]
async fn unknown_malformed_and_expired_links_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |c| c.link_valid_days = 30).await;
        let g = guid();
        bridge.invite(&g, "prov-a1", "en").await;
        let (_, page) = get_page(&bridge, &format!("/u/{g}")).await;
        for bad in [guid(), "not-a-guid".to_string()] {
            let (status, body) = get_page(&bridge, &format!("/u/{bad}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
            assert!(body.contains("This link is no longer open"));
            assert_eq!(bridge.one_click(&bad).await.status(), StatusCode::NOT_FOUND, "{bad}");
        }
        bridge.clock.advance(SignedDuration::from_hours(24 * 30));
        assert_eq!(get_page(&bridge, &format!("/u/{g}")).await.0, StatusCode::NOT_FOUND);
        assert_eq!(bridge.one_click(&g).await.status(), StatusCode::NOT_FOUND, "expired: {url}");
        let late = bridge
            .http()
            .post(bridge.url(&format!("/u/{g}")))
            .form(&[("csrf", csrf(&page))])
            .send()
            .await
            .unwrap();
        assert_eq!(late.status(), StatusCode::NOT_FOUND);
        let db = Db::connect(&url).await.unwrap();
        assert!(queued(&db).await.is_empty(), "{url}");
        let rejected = bridge.audit_lines().iter().filter(|l| l["action"] == "GUID_REJECTED").count();
        assert_eq!(rejected, 7, "each bad look-up is audited");
    }
}

#[tokio::test]
async fn guesses_at_unsubscribe_links_count_toward_the_throttle() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&common::sqlite(dir.path()), |c| c.max_bad_links_per_minute = 3).await;
    // Guesses completing a link seen in part: all share its first four hex digits.
    let with_prefix = |prefix: &str| format!("{prefix}{}", &guid()[4..]);
    let g = with_prefix("3f2a");
    bridge.invite(&g, "prov-a1", "en").await;
    for _ in 0..2 {
        assert_eq!(get_page(&bridge, &format!("/u/{}", with_prefix("3f2a"))).await.0, StatusCode::NOT_FOUND);
        assert_eq!(bridge.one_click(&with_prefix("3f2a")).await.status(), StatusCode::NOT_FOUND);
    }
    // Blocked on every page, even for a good link of that prefix; not for another prefix.
    let neighbour = with_prefix("b7c1");
    bridge.invite(&neighbour, "prov-a1", "en").await;
    assert_eq!(bridge.one_click(&neighbour).await.status(), StatusCode::OK);
    assert_eq!(get_page(&bridge, &format!("/s/{g}")).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get_page(&bridge, &format!("/u/{g}")).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(bridge.one_click(&g).await.status(), StatusCode::TOO_MANY_REQUESTS);
    bridge.clock.advance(SignedDuration::from_secs(61));
    assert_eq!(bridge.one_click(&g).await.status(), StatusCode::OK);
}
