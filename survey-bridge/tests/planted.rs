//! The planted-patients attack, end to end: a provider who colludes with the clinic's EMR
//! plants patients of its own (`k` answering yes and `k` answering no) in a month with one
//! real patient. Every count is then at least `k`, so suppression shows them all, and the one
//! count above its planted value is the real patient's answer. Without noise the attack
//! gives every real patient away (SECURITY.md says so); with `reports.noise_epsilon` the
//! released counts carry noise drawn once per unit, the report says so, and the attack no
//! longer does. (How often it can still guess right, against the bound epsilon sets, is
//! measured in `src/report/noise/tests.rs`.)
#![allow(clippy::unwrap_used)]

mod common;

use common::{Bridge, reader::Reader, sqlite, start_at};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::Value;
use survey_bridge::db::{Db, Invitation};

const K: u64 = 5;
/// Providers, each with one planted month: the attack is tried once per provider.
const PROVIDERS: usize = 24;

const SURVEY: &str = r#"
id = "planted-v1"
[title]
en = "Your visit"
fr = "Votre visite"
[intro]
en = "One question."
fr = "Une question."
[[questions]]
id = "next_steps"
kind = "yes_no"
top_box = ["yes"]
required = true
[questions.text]
en = "Did you know what to do next?"
fr = "Saviez-vous quoi faire ensuite?"
"#;

fn provider(p: usize) -> String {
    format!("prov-{p:02}")
}

/// Plants `K` yes and `K` no beside one real patient at every provider, in March 2026;
/// returns what each real patient answered (true: yes).
async fn plant(bridge: &Bridge, db: &Db) -> Vec<bool> {
    let mut rng = StdRng::seed_from_u64(7);
    let now = bridge.clock.now();
    let mut real = Vec::new();
    for p in 0..PROVIDERS {
        let says_yes = rng.random_bool(0.5);
        real.push(says_yes);
        let answers =
            (0..K).map(|_| "yes").chain((0..K).map(|_| "no")).chain([if says_yes { "yes" } else { "no" }]);
        for (i, answer) in answers.enumerate() {
            let hmac = format!("{}-{i}-{}", provider(p), uuid::Uuid::new_v4());
            let invitation = Invitation {
                guid_hmac: hmac.clone(),
                site_id: "site-1001".into(),
                provider_id: provider(p),
                campaign_id: "pcpe-ongoing".into(),
                channel: "sms".into(),
                language: "en".into(),
                month: "2026-03".into(),
                expires_at: now.as_second() + 86_400,
            };
            db.record_invitation(&invitation).await.unwrap();
            common::respond(db, bridge, &hmac, &[("next_steps".into(), answer.into())]).await;
        }
    }
    bridge.fold().await;
    real
}

/// What one run of the attack saw and guessed.
struct Run {
    /// Each provider's March report (JSON).
    reports: Vec<Value>,
    /// The first provider's report as a page and as CSV.
    page: String,
    csv: String,
    /// What each real patient answered, and what the attacker guessed (true: yes).
    real: Vec<bool>,
    guesses: Vec<bool>,
}

/// Runs the attack against a bridge with `noise_epsilon`: each provider's March report,
/// read twice, and the attacker's guess of its real patient's answer.
async fn attack(noise_epsilon: Option<f64>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite(dir.path());
    let survey = dir.path().join("survey.toml");
    std::fs::write(&survey, SURVEY).unwrap();
    let bridge = start_at(&url, "2026-03-10T12:00:00Z", |config| {
        config.questionnaire = Some(survey);
        config.reports.noise_epsilon = noise_epsilon;
    })
    .await;
    // Up, its database migrated, before the test opens the database too.
    assert_eq!(bridge.http().get(bridge.url("/login")).send().await.unwrap().status(), 200);
    let db = Db::connect(&url).await.unwrap();
    let real = plant(&bridge, &db).await;
    // March is released a week after it ends.
    let released = "2026-04-09T12:00:00Z".parse::<jiff::Timestamp>().unwrap();
    bridge.clock.advance(released.duration_since(bridge.clock.now()));
    // The site administrator reads the very units each provider reads.
    let password =
        common::reader::add(&bridge, &["admin.1001", "--role", "site_admin", "--site", "site-1001"]);
    let mut reader = Reader::new(&bridge);
    reader.first_sign_in("admin.1001", &password).await;
    let (mut reports, mut guesses) = (Vec::new(), Vec::new());
    for p in 0..PROVIDERS {
        let query = format!("?campaign=pcpe-ongoing&period=2026-03&provider={}", provider(p));
        let (status, report) = reader.json(&query).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{report}");
        let (_, again) = reader.json(&query).await;
        assert_eq!(report, again, "the same request gets the same numbers: noise is drawn once");
        // The option shown above what was planted is the real answer (yes on a tie, or
        // when nothing tells).
        let over = |option: usize| {
            report["questions"][0]["options"][option]["count"].as_i64().map_or(0, |count| count - K as i64)
        };
        guesses.push(over(0) >= over(1));
        reports.push(report);
    }
    let query = format!("?campaign=pcpe-ongoing&period=2026-03&provider={}", provider(0));
    let page = reader.get(&format!("/reports{query}")).await.text().await.unwrap();
    let csv = reader.get(&format!("/reports/report.csv{query}")).await.text().await.unwrap();
    bridge.stop().await.unwrap();
    Run { reports, page, csv, real, guesses }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_patients_give_the_real_one_away_unless_the_counts_carry_noise() {
    // Without noise: every real patient's answer, read off the report.
    let run = attack(None).await;
    assert_eq!(run.guesses, run.real, "suppression cannot stop planted patients");
    for report in &run.reports {
        assert_eq!(report["questions"][0]["answered"], 2 * K + 1, "exact counts: {report}");
        assert!(report.get("noise_epsilon").is_none(), "{report}");
    }
    assert!(!run.page.contains("differential privacy") && !run.csv.contains("noise_epsilon"));

    // With noise (epsilon 1): the reports say so, their counts are not the exact ones, and
    // the attack no longer gives every patient away (it guesses about half of them, as a
    // coin would; all 24 right would happen about once in a million runs).
    let Run { reports, page, csv, real, guesses } = attack(Some(1.0)).await;
    for report in &reports {
        assert_eq!(report["noise_epsilon"], 1.0, "{report}");
    }
    assert!(page.contains("differential privacy, ε\u{a0}=\u{a0}1)"), "{page}");
    assert!(csv.lines().nth(1).unwrap().starts_with("report,,,,provider,noise_epsilon,1"), "{csv}");
    let exact = reports.iter().filter(|r| r["questions"][0]["answered"] == 2 * K + 1).count();
    assert!(exact < PROVIDERS / 2, "{exact} of {PROVIDERS} months show their exact count");
    let right = guesses.iter().zip(&real).filter(|(guess, truth)| guess == truth).count();
    assert!(right < PROVIDERS, "the attack still guessed all {PROVIDERS} real answers");
}
