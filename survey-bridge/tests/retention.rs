//! Retention, with the clock moved:
//!
//! - an invitation keeps its GUID's HMAC until its link has expired and its month is
//!   released (`reports.settle_days` after the month ends), then keeps only what the counts
//!   and the usage export need; the retired link answers as an unknown one everywhere, and
//!   the figures do not move (SQLite and PostgreSQL);
//! - the shipped logrotate files keep the audit trails, whose lines carry GUID HMACs, for
//!   their documented retention and no longer (logrotate's own clock moved: its state file
//!   and the rotated files' times set into the past).
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    time::{Duration, SystemTime},
};

use common::{Bridge, databases, guid, start};
use jiff::Timestamp;
use proto::ledger::InvitationAnsweredRequest;
use reqwest::StatusCode;
use sqlx::Row;
use survey_bridge::{
    db::{Db, Invitation},
    keys::Keys,
};
use tonic::Code;

const KEY: (&str, &str, &str, &str) = ("site-1001", "prov-a1", "pcpe-2026q4", "2026-11");

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// What the usage export and the report counts are made of, taken whole: the invitations
/// by site, month, channel and state; the period counts; the answer counts.
#[derive(Debug, PartialEq, Eq)]
struct Figures {
    usage: Vec<(String, String, String, String, i64)>,
    periods: Vec<(String, String, String, String, i64, i64, i64)>,
    answers: Vec<(String, String, String, String, String, String, i64)>,
}

async fn figures(db: &Db) -> Figures {
    let rows = |sql: &'static str| sqlx::query(sql).fetch_all(db.pool());
    let usage = rows(
        "SELECT site_id, month, channel, state, CAST(COUNT(*) AS BIGINT) FROM invitations \
         GROUP BY site_id, month, channel, state ORDER BY site_id, month, channel, state",
    )
    .await
    .unwrap();
    let periods = rows(
        "SELECT site_id, provider_id, campaign_id, month, invitations, responses, opt_outs \
         FROM period_counts ORDER BY site_id, provider_id, campaign_id, month",
    )
    .await
    .unwrap();
    let answers = rows(
        "SELECT site_id, provider_id, campaign_id, month, question, answer, responses FROM answer_counts \
         ORDER BY site_id, provider_id, campaign_id, month, question, answer",
    )
    .await
    .unwrap();
    Figures {
        usage: usage.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect(),
        periods: periods
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
            .collect(),
        answers: answers
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
            .collect(),
    }
}

/// Every invitation row but its key and its expiry, in a stable order.
async fn rows_but_the_key(db: &Db) -> Vec<Vec<String>> {
    let rows = sqlx::query(
        "SELECT site_id, provider_id, campaign_id, channel, language, month, state FROM invitations",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut out: Vec<Vec<String>> = rows.iter().map(|r| (0..7).map(|i| r.get(i)).collect()).collect();
    out.sort();
    out
}

/// Every value of every column of every table of the bridge's database, as text.
async fn every_value(db: &Db, url: &str) -> Vec<(String, String, String)> {
    let sql = if url.starts_with("sqlite") {
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'"
    } else {
        "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = 'public'"
    };
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in sqlx::query(sql).fetch_all(db.pool()).await.unwrap() {
        tables.entry(row.get(0)).or_default().push(row.get(1));
    }
    assert!(tables.contains_key("invitations") && tables.contains_key("worker_opt_outs"), "{tables:?}");
    let mut values = Vec::new();
    for (table, columns) in tables.iter().filter(|(t, _)| !t.starts_with("_sqlx")) {
        for column in columns {
            let select = format!("SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\"");
            for row in sqlx::query(sqlx::AssertSqlSafe(select)).fetch_all(db.pool()).await.unwrap() {
                if let Some(value) = row.get::<Option<String>, _>(0) {
                    values.push((table.clone(), column.clone(), value));
                }
            }
        }
    }
    values
}

/// The cells of the database that hold one of `hmacs`.
async fn cells_holding(db: &Db, url: &str, hmacs: &[String]) -> Vec<(String, String, String)> {
    every_value(db, url).await.into_iter().filter(|(_, _, value)| hmacs.contains(value)).collect()
}

/// The `LINKS_RETIRED` lines of the bridge's audit log, once there are `n` of them.
async fn retired_lines(bridge: &Bridge, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..400 {
        let lines: Vec<_> =
            bridge.audit_lines().into_iter().filter(|l| l["action"] == "LINKS_RETIRED").collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} LINKS_RETIRED lines in the audit log");
}

async fn answered(bridge: &Bridge, guid: &str) -> Result<bool, tonic::Status> {
    let mut ledger = bridge.ledger_as("outreach").await;
    let request = InvitationAnsweredRequest { guid: guid.into() };
    ledger.invitation_answered(request).await.map(|r| r.into_inner().answered)
}

/// The status and body of the consent page of `guid`.
async fn page(bridge: &Bridge, guid: &str) -> (StatusCode, String) {
    let response = bridge.http().get(bridge.url(&format!("/s/{guid}"))).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The bytes of a SQLite database file hold `text`.
fn file_holds(path: &Path, text: &str) -> bool {
    fs::read(path).unwrap().windows(text.len()).any(|w| w == text.as_bytes())
}

#[tokio::test]
async fn a_link_forgets_its_guid_once_expired_and_released_and_the_figures_stay() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        // The bridge's own timer folds and retires every second here.
        let bridge = start(&url, |c| c.answers.fold_every_seconds = 1).await;
        let keys = Keys::load(&bridge.config.key_file).unwrap();
        let hmac = |g: &String| keys.guid_hmac(&g.parse().unwrap());

        // November: one link sent early in the month (it expires on 2 December, before the
        // month is released on the 8th), and four sent on the 24th (they expire on
        // 24 December, after it), answered, declined, consented only, and unused.
        let early = guid();
        bridge.invite_at(&early, "prov-a1", "en", at("2026-11-02T10:00:00Z")).await;
        // (Connected once the bridge has answered, so after its migrations.)
        let db = Db::connect(&url).await.unwrap().with_settle_days(bridge.config.reports.settle_days);
        let (done, declined, consented, unused) = (guid(), guid(), guid(), guid());
        for g in [&done, &declined, &consented, &unused] {
            bridge.invite(g, "prov-a1", "en").await;
        }
        bridge.answer_survey(&done).await;
        bridge.decline(&declined).await;
        bridge.consent(&consented).await;
        assert_eq!(bridge.fold().await.counted, 1);
        let november = [&early, &done, &declined, &consented, &unused];
        let hmacs: Vec<String> = november.iter().map(|g| hmac(g)).collect();
        let before = figures(&db).await;
        let rows_before = rows_but_the_key(&db).await;
        assert_eq!(before.periods, [(KEY.0.into(), KEY.1.into(), KEY.2.into(), KEY.3.into(), 5, 1, 1)]);
        assert_eq!(cells_holding(&db, &url, &hmacs).await.len(), 5, "each link is known by its HMAC: {url}");
        let sqlite_file = url.starts_with("sqlite").then(|| dir.path().join("bridge.db"));
        if let Some(file) = &sqlite_file {
            assert!(file_holds(file, &hmacs[0]), "the control: an HMAC is found in the file's bytes");
        }

        // The early link expired but its month not yet released: kept.
        assert_eq!(db.retire_expired_links(at("2026-12-07T23:59:59Z")).await.unwrap(), 0, "{url}");
        assert_eq!(cells_holding(&db, &url, &hmacs).await.len(), 5);

        // 8 December: November is released, and the early link has expired.
        bridge.clock.advance(at("2026-12-08T00:00:00Z").duration_since(bridge.clock.now()));
        let lines = retired_lines(&bridge, 1).await;
        assert_eq!(lines[0]["count"], 1, "{url}: {lines:?}");
        let held = cells_holding(&db, &url, &hmacs).await;
        assert!(held.iter().all(|(_, _, v)| *v != hmacs[0]) && held.len() == 4, "{url}: {held:?}");
        assert!(!answered(&bridge, &unused).await.unwrap(), "an open link still works");
        // The others: their month released, their links not yet expired: kept.
        assert_eq!(db.retire_expired_links(at("2026-12-24T14:59:59Z")).await.unwrap(), 0, "{url}");
        // A December invitation, whose month is not released before its link expires.
        let december = guid();
        bridge.invite(&december, "prov-a2", "en").await;

        // 24 December: the other November links expire.
        bridge.clock.advance(at("2026-12-24T15:00:00Z").duration_since(bridge.clock.now()));
        let lines = retired_lines(&bridge, 2).await;
        assert_eq!(lines[1]["count"], 4, "{url}: {lines:?}");
        // No row anywhere holds a November GUID's HMAC; the December link keeps its own.
        assert_eq!(cells_holding(&db, &url, &hmacs).await, [], "{url}");
        assert_eq!(cells_holding(&db, &url, &[hmac(&december)]).await.len(), 1, "{url}");
        // In their place: random keys, and no expiry (which would give the second of sending).
        let retired: Vec<(String, i64)> =
            sqlx::query("SELECT guid_hmac, expires_at FROM invitations WHERE month = '2026-11'")
                .fetch_all(db.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
        assert_eq!(retired.len(), 5);
        assert!(
            retired.iter().all(|(k, at)| k.starts_with("retired:") && k.len() == 40 && *at == 0),
            "{retired:?}"
        );
        if let Some(file) = &sqlite_file {
            for h in &hmacs {
                assert!(!file_holds(file, h), "an HMAC is left in the file's bytes (secure_delete)");
            }
        }

        // The rows keep what the counts and the usage export read: nothing moved.
        let mut after = figures(&db).await;
        after.usage.retain(|(_, month, ..)| month == "2026-11");
        after.periods.retain(|p| p.3 == "2026-11");
        assert_eq!(after, before, "{url}");
        let mut rows_after = rows_but_the_key(&db).await;
        rows_after.retain(|r| r[5] == "2026-11");
        assert_eq!(rows_after, rows_before, "{url}");

        // A retired link is an unknown link: the same page, the worker's NOT_FOUND, and the
        // unsubscribe page's 404; and opening it changes nothing.
        let settled = figures(&db).await;
        let unknown = page(&bridge, &guid()).await;
        assert_eq!(unknown.0, StatusCode::NOT_FOUND);
        for g in november {
            assert_eq!(page(&bridge, g).await, unknown, "{url}");
            assert_eq!(answered(&bridge, g).await.unwrap_err().code(), Code::NotFound, "{url}");
            assert_eq!(bridge.one_click(g).await.status(), StatusCode::NOT_FOUND, "{url}");
        }
        let rejected: Vec<_> =
            bridge.audit_lines().into_iter().filter(|l| l["action"] == "GUID_REJECTED").collect();
        assert_eq!(rejected.len(), 1 + 2 * november.len(), "{rejected:?}");
        assert!(rejected.iter().all(|l| l["result"] == "unknown"), "{rejected:?}");
        assert_eq!(figures(&db).await, settled, "{url}");

        // January 8: December is released and its link has expired.
        bridge.clock.advance(at("2027-01-08T00:00:00Z").duration_since(bridge.clock.now()));
        let lines = retired_lines(&bridge, 3).await;
        assert_eq!(lines[2]["count"], 1);
        assert_eq!(cells_holding(&db, &url, &[hmac(&december)]).await, [], "{url}");

        // Each line says how many, on which day, and nothing about any link.
        assert_eq!(
            lines.iter().map(|l| l["time"].as_str().unwrap()).collect::<Vec<_>>(),
            ["2026-12-08", "2026-12-24", "2027-01-08"]
        );
        for line in &lines {
            assert!(line.get("guid_hmac").is_none_or(serde_json::Value::is_null), "{line}");
            assert_eq!(line["result"], "ok");
        }
        bridge.stop().await.unwrap();
    }
}

#[tokio::test]
async fn retirement_waits_for_both_the_link_and_the_month_and_happens_once() {
    let dir = tempfile::tempdir().unwrap();
    for url in databases(dir.path()).await {
        for settle_days in [7, 0] {
            let db = Db::connect(&url).await.unwrap().with_settle_days(settle_days);
            for table in ["invitations", "period_counts"] {
                let delete = format!("DELETE FROM {table}");
                sqlx::query(sqlx::AssertSqlSafe(delete)).execute(db.pool()).await.unwrap();
            }
            let invitation = |hmac: &str, month: &str, expires: &str| Invitation {
                guid_hmac: hmac.into(),
                site_id: "site-1001".into(),
                provider_id: "prov-a1".into(),
                campaign_id: "pcpe-2026q4".into(),
                channel: "sms".into(),
                language: "fr".into(),
                month: month.into(),
                expires_at: at(expires).as_second(),
            };
            let (a, b) = ("a".repeat(64), "b".repeat(64));
            // A link that expires before its month is released, and one that expires after.
            db.record_invitation(&invitation(&a, "2026-11", "2026-12-02T10:00:00Z")).await.unwrap();
            db.record_invitation(&invitation(&b, "2026-11", "2026-12-24T15:00:00Z")).await.unwrap();
            let released = if settle_days == 7 { "2026-12-08T00:00:00Z" } else { "2026-12-01T00:00:00Z" };
            let just_before = at(released).checked_sub(jiff::SignedDuration::from_secs(1)).unwrap();
            assert_eq!(db.retire_expired_links(just_before).await.unwrap(), 0, "{url}");
            let a_due = if settle_days == 7 { at(released) } else { at("2026-12-02T10:00:00Z") };
            let a_before = a_due.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap();
            assert_eq!(db.retire_expired_links(a_before).await.unwrap(), 0, "{url} {settle_days}");
            assert_eq!(db.retire_expired_links(a_due).await.unwrap(), 1, "{url} {settle_days}");
            assert!(db.invitation(&a).await.unwrap().is_none());
            assert!(db.invitation(&b).await.unwrap().is_some());
            assert_eq!(db.retire_expired_links(at("2026-12-24T14:59:59Z")).await.unwrap(), 0);
            assert_eq!(db.retire_expired_links(at("2026-12-24T15:00:00Z")).await.unwrap(), 1);
            assert!(db.invitation(&b).await.unwrap().is_none());

            // Once retired, a row is left alone: its key does not change again.
            let keys = || async {
                let rows = sqlx::query("SELECT guid_hmac FROM invitations ORDER BY guid_hmac")
                    .fetch_all(db.pool())
                    .await
                    .unwrap();
                rows.iter().map(|r| r.get::<String, _>(0)).collect::<Vec<_>>()
            };
            let retired = keys().await;
            assert_eq!(db.retire_expired_links(at("2027-06-01T00:00:00Z")).await.unwrap(), 0);
            assert_eq!(keys().await, retired);
            assert_ne!(retired[0], retired[1]);
            let counts = db.period_counts("site-1001", "prov-a1", "pcpe-2026q4", "2026-11").await.unwrap();
            assert_eq!(counts.invitations, 2, "the counts stay");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The audit trails
// ---------------------------------------------------------------------------------------

/// The retention the shipped logrotate files give the audit trails (SECURITY.md, "What is
/// kept, where, for how long"): rotated daily, 89 rotated files kept besides the current
/// one, and none older than 90 days.
const AUDIT_DAYS: u64 = 90;
const ROTATED_FILES: u64 = AUDIT_DAYS - 1;

const DAY: Duration = Duration::from_secs(86_400);

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The rotated files in `dir` (`audit.jsonl.N`, `audit.jsonl.N.gz`) by number, with their
/// age in whole days.
fn rotated(dir: &Path) -> BTreeMap<u64, u64> {
    let mut found = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let Some(rest) = name.strip_prefix("audit.jsonl.") else { continue };
        let Ok(n) = rest.trim_end_matches(".gz").parse::<u64>() else { continue };
        let modified = entry.metadata().unwrap().modified().unwrap();
        let age = SystemTime::now().duration_since(modified).unwrap_or_default();
        found.insert(n, age.as_secs() / 86_400);
    }
    found
}

/// Writes `name` in `dir`, last written `days_ago` days (and an hour) ago.
fn write_aged(dir: &Path, name: &str, text: &str, days_ago: u64) {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    let when = SystemTime::now() - DAY * u32::try_from(days_ago).unwrap() - Duration::from_secs(3600);
    fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
}

/// Runs logrotate on `config` as its timer would, `days_ago` days after the last rotation
/// (logrotate's own clock, in its state file, moved back), without forcing it.
fn run_logrotate(dir: &Path, config: &str, last_rotated_days_ago: i64) {
    let conf = dir.join("logrotate.conf");
    fs::write(&conf, config).unwrap();
    let last =
        jiff::ZonedDateTime::now().checked_sub(jiff::SignedDuration::from_hours(24 * last_rotated_days_ago));
    let last = last.unwrap().strftime("%Y-%-m-%-d-%-H:%-M:%-S").to_string();
    let log = dir.join("audit.jsonl");
    let state = dir.join("logrotate.state");
    fs::write(&state, format!("logrotate state -- version 2\n\"{}\" {last}\n", log.display())).unwrap();
    let output =
        std::process::Command::new("logrotate").arg("--state").arg(&state).arg(&conf).output().unwrap();
    assert!(output.status.success(), "logrotate: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_shipped_logrotate_files_keep_the_audit_trails_for_their_retention_and_no_longer() {
    if !test_support::have_logrotate() {
        return;
    }
    let line = "{\"time\":\"2026-12-03T10:00:00Z\",\"action\":\"CONSENT_GIVEN\",\"guid_hmac\":\"ab12\"}\n";
    for (file, path, owner, reload) in [
        (
            "deploy/logrotate/survey-bridge",
            "/var/log/survey-bridge/audit.jsonl",
            "survey-bridge survey-bridge",
            "systemctl reload survey-bridge",
        ),
        (
            "deploy/logrotate/cache-server",
            "/var/log/contact-cache/audit.jsonl",
            "contact-cache contact-cache",
            "systemctl reload cache-server",
        ),
    ] {
        let shipped = fs::read_to_string(repo().join(file)).unwrap();
        let directives: Vec<&str> = shipped.lines().map(str::trim).collect();
        for directive in
            ["daily", &format!("rotate {ROTATED_FILES}"), &format!("maxage {AUDIT_DAYS}"), "ifempty"]
        {
            assert!(directives.contains(&directive), "{file} no longer says {directive:?}");
        }
        assert!(!directives.contains(&"notifempty"), "{file}: an idle day must rotate too");

        // A day in the steady state, a day on which nothing was written, and the first run
        // after the machine was off for months (or the files were restored from a backup).
        for scenario in ["steady", "idle", "late"] {
            let dir = tempfile::tempdir().unwrap();
            let mut config = shipped.clone();
            for (from, to) in [
                (path, dir.path().join("audit.jsonl").display().to_string()),
                (owner, test_support::user_and_group()),
                (reload, "true".to_string()),
            ] {
                assert!(config.contains(from), "{file} no longer says {from:?}");
                config = config.replace(from, &to);
            }
            let today = if scenario == "idle" { "" } else { line };
            write_aged(dir.path(), "audit.jsonl", today, 0);
            let (first_age, last_rotation) = if scenario == "late" { (95, 100) } else { (1, 1) };
            write_aged(dir.path(), "audit.jsonl.1", line, first_age);
            for n in 2..=ROTATED_FILES {
                write_aged(dir.path(), &format!("audit.jsonl.{n}.gz"), "old", first_age + n - 1);
            }
            run_logrotate(dir.path(), &config, last_rotation);

            let left = rotated(dir.path());
            let oldest = left.values().max().copied().unwrap_or(0);
            assert!(oldest < AUDIT_DAYS, "{file} {scenario}: a file {oldest} days old is kept: {left:?}");
            assert!(left.len() as u64 <= ROTATED_FILES, "{file} {scenario}: {left:?}");
            match scenario {
                // The oldest day went; the 88 younger ones are kept, one number further on.
                "steady" | "idle" => {
                    assert_eq!(left.len() as u64, ROTATED_FILES, "{file} {scenario}: {left:?}");
                    assert_eq!(oldest, ROTATED_FILES - 1, "{file} {scenario}: {left:?}");
                }
                // Every file past the retention went at once; today's lines are kept.
                _ => assert_eq!(left.keys().copied().collect::<Vec<_>>(), [1], "{file}: {left:?}"),
            }
            assert_eq!(fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap(), today);
            let current = dir.path().join("audit.jsonl");
            assert_eq!(fs::read_to_string(&current).unwrap(), "", "a new file for the new day");
            assert_eq!(fs::metadata(&current).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
