//! `survey-bridge import`, the binary, against the database of a running bridge, on SQLite
//! and on PostgreSQL: good rows counted, bad rows (and rows of patients who never agreed on
//! the consent page) reported by line, the rest imported.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, process::Output};

use common::{Bridge, databases, guid, sqlite, start};
use jiff::Timestamp;
use reqwest::StatusCode;
use survey_bridge::{config::BridgeConfig, db::Db};

/// Runs `survey-bridge --config <config> import export.csv` in `dir`.
fn import(config: &BridgeConfig, dir: &Path, csv: &str) -> Output {
    let config_file = dir.join("import.toml");
    std::fs::write(&config_file, toml::to_string(config).unwrap()).unwrap();
    std::fs::write(dir.join("export.csv"), csv).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_survey-bridge"))
        .arg("--config")
        .arg(&config_file)
        .arg("import")
        .arg("export.csv")
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Invites `n` new GUIDs now (by the system clock, which the import runs on).
async fn invite_now(bridge: &Bridge, n: usize) -> Vec<String> {
    let mut guids = Vec::new();
    for _ in 0..n {
        let g = guid();
        bridge.invite_at(&g, "prov-i1", "en", Timestamp::now()).await;
        guids.push(g);
    }
    guids
}

fn this_month() -> String {
    Timestamp::now().strftime("%Y-%m").to_string()
}

#[tokio::test]
async fn bad_rows_are_reported_by_line_and_the_rest_imported() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        let bridge = start(&url, |_| {}).await;
        let g = invite_now(&bridge, 5).await;
        // The fifth patient never agrees on the consent page.
        for g in &g[..4] {
            bridge.consent(g).await;
        }
        let db = Db::connect(&url).await.unwrap();
        let mut config = bridge.config.clone();
        config.import.guid_column = "Reference".into();
        config.import.columns = [
            ("Could you get an appointment when needed?".to_string(), "timely".to_string()),
            ("Overall (0-10)".to_string(), "overall".to_string()),
            ("Next steps explained".to_string(), "next_steps".to_string()),
        ]
        .into();
        let csv = format!(
            "Response ID,Reference,Could you get an appointment when needed?,Overall (0-10),Next steps explained,Submitted\n\
             1,{g0},Always,9,yes,2026-11-20 10:01\n\
             2,{g1},toujours,7,,2026-11-20 10:02\n\
             3,not-a-guid,Often,5,no,2026-11-20 10:03\n\
             4,{unknown},Often,5,no,2026-11-20 10:04\n\
             5,{g2},Weekly,5,no,2026-11-20 10:05\n\
             6,{g0},Often,4,no,2026-11-20 10:06\n\
             7,{g3},Often,,no,2026-11-20 10:07\n\
             \n\
             \"8\",\"{g3}\",\"Often\",\"6\",\"Oui\",\"2026-11-20\n10:08\"\n\
             9,{g4},Always,10,yes,2026-11-20 10:09\n",
            g0 = g[0],
            g1 = g[1],
            g2 = g[2],
            g3 = g[3],
            g4 = g[4],
            unknown = guid(),
        );
        let output = import(&config, dir.path(), &csv);
        let out = stdout(&output);
        assert_eq!(
            output.status.code(),
            Some(65),
            "{url}: {out} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let expected = [
            "export.csv:4: guid: not a GUID",
            "export.csv:5: guid: no invitation with this GUID, or its link has expired",
            "export.csv:6: column \"Could you get an appointment when needed?\": question \"timely\" has no option \"Weekly\"",
            "export.csv:7: guid: already answered",
            "export.csv:8: answers: question \"overall\" must be answered",
            "export.csv:12: guid: the patient has not agreed to the survey on its consent page",
            "imported 3 rows, refused 6",
        ];
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines, expected, "{url}");

        // Rows 2, 3 and 10 (which spans two lines) were counted, once folded from the pool;
        // the labels in either language were read as their options.
        assert_eq!(bridge.fold().await.counted, 3, "{url}");
        let month = this_month();
        let key = ("site-1001", "prov-i1", "pcpe-2026q4", month.as_str());
        assert_eq!(db.answer_count(key, "timely", "always").await.unwrap(), 2, "{url}");
        assert_eq!(db.answer_count(key, "timely", "often").await.unwrap(), 1);
        assert_eq!(db.answer_count(key, "overall", "9").await.unwrap(), 1);
        assert_eq!(db.answer_count(key, "overall", "6").await.unwrap(), 1);
        assert_eq!(db.answer_count(key, "overall", "4").await.unwrap(), 0, "the duplicate row");
        assert_eq!(db.answer_count(key, "overall", "10").await.unwrap(), 0, "no consent");
        assert_eq!(db.answer_count(key, "next_steps", "yes").await.unwrap(), 2);
        let counts = db.period_counts("site-1001", "prov-i1", "pcpe-2026q4", &month).await.unwrap();
        assert_eq!((counts.invitations, counts.responses), (5, 3));

        // The refused row's link was not used: the patient can still answer.
        let page = bridge.http().get(bridge.url(&format!("/s/{}", g[2]))).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let used = bridge.http().get(bridge.url(&format!("/s/{}", g[0]))).send().await.unwrap();
        assert_eq!(used.status(), StatusCode::NOT_FOUND);

        // Audited by the import, GUIDs only as HMACs.
        let audit = std::fs::read_to_string(bridge.path("audit.jsonl")).unwrap();
        let accepted = bridge
            .audit_lines()
            .into_iter()
            .filter(|l| l["action"] == "RESPONSE_ACCEPTED" && l["detail"] == "import" && l["result"] == "ok")
            .count();
        assert_eq!(accepted, 3);
        assert!(g.iter().all(|g| !audit.contains(g.as_str())), "a raw GUID in the audit log");

        // Importing the same file again counts nothing more.
        let again = import(&config, dir.path(), &csv);
        assert!(stdout(&again).ends_with("imported 0 rows, refused 9\n"), "{}", stdout(&again));
        bridge.fold().await;
        let counts = db.period_counts("site-1001", "prov-i1", "pcpe-2026q4", &month).await.unwrap();
        assert_eq!(counts.responses, 3);
        bridge.stop().await.unwrap();
    }
}

#[tokio::test]
async fn columns_named_after_questions_need_no_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |_| {}).await;
    let g = invite_now(&bridge, 1).await;
    bridge.consent(&g[0]).await;
    let csv = format!("guid,overall,respect,notes\n{},10,Souvent,free text is ignored\n", g[0]);
    let output = import(&bridge.config, dir.path(), &csv);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(stdout(&output), "imported 1 rows, refused 0\n");
    bridge.fold().await;
    let db = Db::connect(&bridge.database_url).await.unwrap();
    let month = this_month();
    let key = ("site-1001", "prov-i1", "pcpe-2026q4", month.as_str());
    assert_eq!(db.answer_count(key, "respect", "often").await.unwrap(), 1);
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn a_file_that_cannot_be_read_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |_| {}).await;
    let g = invite_now(&bridge, 1).await;

    let no_guid = import(&bridge.config, dir.path(), &format!("id,overall\n{},5\n", g[0]));
    assert_eq!(no_guid.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&no_guid.stderr).contains("line 1: no column \"guid\""));

    let mut config = bridge.config.clone();
    config.import.columns = [("Overall".to_string(), "overall".to_string())].into();
    let missing = import(&config, dir.path(), &format!("guid,overall\n{},5\n", g[0]));
    assert_eq!(missing.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no column \"Overall\""));

    config.import.columns = [("overall".to_string(), "wait_time".to_string())].into();
    let unknown = import(&config, dir.path(), &format!("guid,overall\n{},5\n", g[0]));
    assert_eq!(unknown.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown question \"wait_time\""));

    let absent = std::process::Command::new(env!("CARGO_BIN_EXE_survey-bridge"))
        .arg("--config")
        .arg(dir.path().join("import.toml"))
        .arg("import")
        .arg(dir.path().join("no-such.csv"))
        .output()
        .unwrap();
    assert_eq!(absent.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&absent.stderr).contains("no-such.csv"));

    // Nothing was counted; the link still works.
    let page = bridge.http().get(bridge.url(&format!("/s/{}", g[0]))).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    bridge.stop().await.unwrap();
}
