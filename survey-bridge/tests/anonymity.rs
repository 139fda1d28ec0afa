//! The patient side, tried as an intruder would, against a real bridge:
//!
//! - consent comes first: the survey page, its POST (even with a good form token) and every
//!   other answer path refuse a link whose patient has not agreed;
//! - a link's state is no oracle: answered, declined and expired links (and unknown ones)
//!   show one page, with one status, in the patient's language, and none of them counts
//!   toward the guessing throttle;
//! - answers wait sealed in the pool and are counted only by a fold, a whole group at a time;
//! - on PostgreSQL, no transaction id (`xmin`) ties a count or a pooled answer to its
//!   invitation; on SQLite, the order of the counts' rows says nothing about the order in
//!   which patients answered, and deleted rows are overwritten (`secure_delete`);
//! - the audit lines of responses carry no GUID HMAC and no time finer than the day.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Bridge, csrf, databases, guid, sqlite, start};
use jiff::SignedDuration;
use reqwest::StatusCode;
use sqlx::Row;
use survey_bridge::{db::Db, keys::Keys};

const MONTH: &str = "2026-11";
const KEY: (&str, &str, &str, &str) = ("site-1001", "prov-a1", "pcpe-2026q4", MONTH);

fn keys(bridge: &Bridge) -> Keys {
    Keys::load(&bridge.config.key_file).unwrap()
}

/// Consents on the page of `guid` and sends `answers` through the built-in survey.
async fn answer(bridge: &Bridge, guid: &str, answers: &[(&str, &str)]) {
    let http = bridge.http();
    let location = bridge.consent(guid).await;
    let survey = http.get(bridge.url(&location)).send().await.unwrap().text().await.unwrap();
    let token = csrf(&survey);
    let mut form = vec![("csrf", token.as_str())];
    form.extend_from_slice(answers);
    let sent = http.post(bridge.url(&format!("/s/{guid}/survey"))).form(&form).send().await.unwrap();
    assert_eq!(sent.status(), StatusCode::OK);
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(db.pool()).await.unwrap().try_get(0).unwrap()
}

#[tokio::test]
async fn the_survey_needs_consent_first_even_with_a_good_form_token() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        let http = bridge.http();
        let g = guid();
        bridge.invite(&g, "prov-a1", "fr").await;
        let db = Db::connect(&url).await.unwrap();

        // The survey page sends the patient to the consent page, in their language.
        let page = http.get(bridge.url(&format!("/s/{g}/survey"))).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::SEE_OTHER, "{url}");
        assert_eq!(page.headers()["location"], format!("/s/{g}?lang=fr"));

        // A POST with the form token the survey page would carry (made here with the
        // bridge's key: more than anyone skipping consent could have) is not counted either.
        let token = keys(&bridge).csrf(&keys(&bridge).guid_hmac(&g.parse().unwrap()), "survey");
        let posted = http
            .post(bridge.url(&format!("/s/{g}/survey")))
            .form(&[("csrf", token.as_str()), ("overall", "9")])
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), StatusCode::SEE_OTHER, "{url}");
        assert_eq!(bridge.fold().await.counted, 0);
        assert_eq!(db.period_counts(KEY.0, KEY.1, KEY.2, MONTH).await.unwrap().responses, 0);
        assert_eq!(db.answer_count(KEY, "overall", "9").await.unwrap(), 0);

        // Once the patient agrees, the same survey is open and counted.
        answer(&bridge, &g, &[("overall", "9")]).await;
        assert_eq!(bridge.fold().await.counted, 1);
        assert_eq!(db.answer_count(KEY, "overall", "9").await.unwrap(), 1, "{url}");
        bridge.stop().await.unwrap();
    }
}

#[tokio::test]
async fn answered_declined_expired_and_unknown_links_show_one_neutral_page() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |c| c.max_bad_links_per_minute = 3).await;
    let http = bridge.http();
    let expired = guid();
    bridge.invite(&expired, "prov-a1", "fr").await;
    bridge.clock.advance(SignedDuration::from_hours(24 * 31));
    let (answered, declined) = (guid(), guid());
    for g in [&answered, &declined] {
        bridge.invite(g, "prov-a1", "fr").await;
    }
    answer(&bridge, &answered, &[("overall", "9")]).await;
    bridge.decline(&declined).await;

    let keys = keys(&bridge);
    let mut seen = Vec::new();
    // Opened again and again (more often than the guessing throttle allows for unknown
    // links): the same answer each time, and the client is never blocked.
    for _ in 0..5 {
        for g in [&answered, &declined, &expired] {
            let hmac = keys.guid_hmac(&g.parse().unwrap());
            let consent_token = keys.csrf(&hmac, "consent");
            let survey_token = keys.csrf(&hmac, "survey");
            let responses = [
                http.get(bridge.url(&format!("/s/{g}"))).send().await.unwrap(),
                http.get(bridge.url(&format!("/s/{g}/survey"))).send().await.unwrap(),
                http.post(bridge.url(&format!("/s/{g}/consent")))
                    .form(&[("csrf", consent_token.as_str()), ("choice", "agree")])
                    .send()
                    .await
                    .unwrap(),
                http.post(bridge.url(&format!("/s/{g}/consent")))
                    .form(&[("csrf", consent_token.as_str()), ("choice", "decline")])
                    .send()
                    .await
                    .unwrap(),
                http.post(bridge.url(&format!("/s/{g}/survey")))
                    .form(&[("csrf", survey_token.as_str()), ("overall", "1")])
                    .send()
                    .await
                    .unwrap(),
            ];
            for response in responses {
                let status = response.status();
                seen.push((status, response.text().await.unwrap()));
            }
        }
    }
    // An unknown link, asked in French, reads the same.
    let unknown = http.get(bridge.url(&format!("/s/{}?lang=fr", guid()))).send().await.unwrap();
    seen.push((unknown.status(), unknown.text().await.unwrap()));

    let (status, body) = &seen[0];
    assert_eq!(*status, StatusCode::NOT_FOUND);
    assert!(body.contains("Ce lien n'est plus ouvert") && body.contains("lang=\"fr\""), "{body}");
    for (i, (other_status, other_body)) in seen.iter().enumerate() {
        assert_eq!((other_status, other_body), (status, body), "response {i} differs");
    }
    // Nothing changed: still one response, one opt-out.
    bridge.fold().await;
    let db = Db::connect(&bridge.database_url).await.unwrap();
    let counts = db.period_counts(KEY.0, KEY.1, KEY.2, "2026-12").await.unwrap();
    assert_eq!((counts.responses, counts.opt_outs), (1, 1));
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn answers_wait_sealed_and_are_counted_a_whole_group_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        let keys = keys(&bridge);
        let guids: Vec<String> = (0..8).map(|_| guid()).collect();
        for g in &guids {
            bridge.invite(g, "prov-a1", "en").await;
        }
        let db = Db::connect(&url).await.unwrap();
        for g in &guids[..4] {
            answer(&bridge, g, &[("overall", "9"), ("listened", "always")]).await;
        }

        // In the pool: sealed, nothing of the group or the answers readable, no GUID HMAC.
        let rows = sqlx::query("SELECT id, sealed FROM answer_pool").fetch_all(db.pool()).await.unwrap();
        assert_eq!(rows.len(), 4, "{url}");
        for row in &rows {
            let sealed: String = row.try_get(1).unwrap();
            assert!(keys.open(&sealed).is_some(), "sealed under the bridge's pool key");
            for plain in ["prov-a1", "site-1001", "overall", "always", MONTH] {
                assert!(
                    !sealed.contains(plain) && !sealed.contains(&hex::encode(plain)),
                    "{plain} in the pool"
                );
            }
            for g in &guids {
                assert!(!sealed.contains(&keys.guid_hmac(&g.parse().unwrap())));
            }
        }

        // Four answers of this month: under min_cell (5), they wait.
        let folded = db.fold(&keys, bridge.clock.now(), 5).await.unwrap();
        assert_eq!((folded.counted, folded.waiting), (0, 4), "{url}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM answer_counts").await, 0);
        assert_eq!(db.period_counts(KEY.0, KEY.1, KEY.2, MONTH).await.unwrap().responses, 0);

        // The fifth makes a group: all five are counted at once, and leave the pool.
        answer(&bridge, &guids[4], &[("overall", "10"), ("listened", "often")]).await;
        let folded = db.fold(&keys, bridge.clock.now(), 5).await.unwrap();
        assert_eq!((folded.counted, folded.waiting), (5, 0));
        assert_eq!(db.answer_count(KEY, "overall", "9").await.unwrap(), 4);
        assert_eq!(db.answer_count(KEY, "overall", "10").await.unwrap(), 1);
        assert_eq!(db.answer_count(KEY, "listened", "often").await.unwrap(), 1);
        assert_eq!(db.period_counts(KEY.0, KEY.1, KEY.2, MONTH).await.unwrap().responses, 5);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM answer_pool").await, 0);

        // One more waits alone until its month is over.
        answer(&bridge, &guids[5], &[("overall", "8")]).await;
        assert_eq!(db.fold(&keys, bridge.clock.now(), 5).await.unwrap().waiting, 1);
        bridge.clock.advance(SignedDuration::from_hours(24 * 7));
        let folded = db.fold(&keys, bridge.clock.now(), 5).await.unwrap();
        assert_eq!((folded.counted, folded.waiting), (1, 0), "{url}");
        assert_eq!(db.period_counts(KEY.0, KEY.1, KEY.2, MONTH).await.unwrap().responses, 6);

        // Once November is released (settle_days, 7, after it ends), what comes later for it
        // counts in the month it comes in: November's figures never change.
        bridge.clock.advance(SignedDuration::from_hours(24 * 8));
        answer(&bridge, &guids[6], &[("overall", "7")]).await;
        bridge.decline(&guids[7]).await;
        assert_eq!(db.fold(&keys, bridge.clock.now(), 5).await.unwrap().waiting, 1, "December is open");
        let november = db.period_counts(KEY.0, KEY.1, KEY.2, MONTH).await.unwrap();
        assert_eq!((november.invitations, november.responses, november.opt_outs), (8, 6, 0), "{url}");
        let december = db.period_counts(KEY.0, KEY.1, KEY.2, "2026-12").await.unwrap();
        assert_eq!((december.invitations, december.responses, december.opt_outs), (0, 0, 1));
        // December over (not yet released): the late answer is counted, in December.
        bridge.clock.advance(SignedDuration::from_hours(24 * 24));
        assert_eq!(db.fold(&keys, bridge.clock.now(), 5).await.unwrap().counted, 1);
        assert_eq!(db.period_counts(KEY.0, KEY.1, KEY.2, "2026-12").await.unwrap().responses, 1);
        assert_eq!(db.answer_count((KEY.0, KEY.1, KEY.2, "2026-12"), "overall", "7").await.unwrap(), 1);
        assert_eq!(db.answer_count(KEY, "overall", "7").await.unwrap(), 0);

        // A pool row sealed under another key is left alone, and said so.
        let other = Keys::derive(&zeroize::Zeroizing::new([9u8; 32]));
        sqlx::query("INSERT INTO answer_pool (id, sealed) VALUES ('x', $1)")
            .bind(other.seal(b"{}"))
            .execute(db.pool())
            .await
            .unwrap();
        let folded = db.fold(&keys, bridge.clock.now(), 5).await.unwrap();
        assert_eq!((folded.counted, folded.unreadable), (0, 1));

        // Audited: each response without its GUID and on its day only.
        let responses: Vec<_> =
            bridge.audit_lines().into_iter().filter(|l| l["action"] == "RESPONSE_ACCEPTED").collect();
        assert_eq!(responses.len(), 7);
        for line in &responses[..6] {
            assert!(line.get("guid_hmac").is_none(), "{line}");
            assert_eq!(line["time"], "2026-11-24", "{line}");
        }
        assert_eq!(responses[6]["time"], "2026-12-09");
        bridge.stop().await.unwrap();
    }
}

#[tokio::test]
async fn no_transaction_id_ties_an_answer_to_its_invitation_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = databases(dir.path()).await.into_iter().find(|url| url.starts_with("postgres")) else {
        return;
    };
    let bridge = start(&url, |_| {}).await;
    let keys = keys(&bridge);
    let guids: Vec<String> = (0..5).map(|_| guid()).collect();
    for g in &guids {
        bridge.invite(g, "prov-a1", "en").await;
    }
    let db = Db::connect(&url).await.unwrap();
    // The join works: recording an invitation counts it in the same transaction, so the
    // invitation and its period's counts share an xmin.
    let control = "SELECT COUNT(*) FROM period_counts p JOIN invitations i ON p.xmin = i.xmin";
    assert!(count(&db, control).await > 0, "the xmin join finds what one transaction wrote");

    for (i, g) in guids.iter().enumerate() {
        let overall = (6 + i).to_string();
        answer(&bridge, g, &[("overall", &overall)]).await;
    }
    let pooled = "SELECT COUNT(*) FROM answer_pool p JOIN invitations i ON p.xmin = i.xmin";
    assert_eq!(count(&db, pooled).await, 0, "a pooled answer shares a transaction with its invitation");
    assert_eq!(db.fold(&keys, bridge.clock.now(), 5).await.unwrap().counted, 5);

    // The attack from the review: each patient's answers by their invitation's xmin.
    for g in &guids {
        let found = sqlx::query(
            "SELECT a.question, a.answer FROM answer_counts a JOIN invitations i ON a.xmin = i.xmin \
             WHERE i.guid_hmac = $1",
        )
        .bind(keys.guid_hmac(&g.parse().unwrap()))
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert!(found.is_empty(), "answers found by xmin");
    }
    let responded = "SELECT COUNT(*) FROM period_counts p JOIN invitations i ON p.xmin = i.xmin \
                     WHERE i.state = 'responded'";
    assert_eq!(count(&db, responded).await, 0);
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn the_order_in_which_patients_answer_is_not_in_the_rows_on_sqlite() {
    let answers: [&[(&str, &str)]; 5] = [
        &[("overall", "10"), ("listened", "always")],
        &[("overall", "3"), ("timely", "never")],
        &[("overall", "7"), ("respect", "often"), ("next_steps", "no")],
        &[("overall", "0")],
        &[("overall", "9"), ("listened", "sometimes"), ("timely", "always")],
    ];
    let mut dumps = Vec::new();
    for reverse in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let bridge = start(&sqlite(dir.path()), |_| {}).await;
        let guids: Vec<String> = (0..5).map(|_| guid()).collect();
        for g in &guids {
            bridge.invite(g, "prov-a1", "en").await;
        }
        let mut order: Vec<usize> = (0..5).collect();
        if reverse {
            order.reverse();
        }
        for i in order {
            answer(&bridge, &guids[i], answers[i]).await;
        }
        assert_eq!(bridge.fold().await.counted, 5);
        let db = Db::connect(&bridge.database_url).await.unwrap();
        let rows = sqlx::query("SELECT rowid, question, answer, responses FROM answer_counts ORDER BY rowid")
            .fetch_all(db.pool())
            .await
            .unwrap();
        let dump: Vec<(i64, String, String, i64)> = rows
            .iter()
            .map(|r| {
                (r.try_get(0).unwrap(), r.try_get(1).unwrap(), r.try_get(2).unwrap(), r.try_get(3).unwrap())
            })
            .collect();
        assert!(dump.len() > 5);
        // The bridge's own connections overwrite what they delete.
        let secure: i64 =
            sqlx::query("PRAGMA secure_delete").fetch_one(db.pool()).await.unwrap().try_get(0).unwrap();
        assert_eq!(secure, 1);
        dumps.push(dump);
        bridge.stop().await.unwrap();
    }
    assert_eq!(dumps[0], dumps[1], "the rows tell the order in which patients answered");
}
