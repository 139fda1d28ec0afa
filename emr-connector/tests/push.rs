//! The `push` command end to end: the real binary against a real cache-server over mutual TLS.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use cache_server::guid::Guid;
use common::{Cache, Pki, assert_no_contact_data, connector, map_lines, push_args, sample_of, testdata};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_is_pushed_once_and_a_rerun_skips_it() {
    let cache = Cache::start().await;
    let text = sample_of("site-1001");
    let rows = text.lines().count() - 1;
    assert_eq!(rows, 88);
    let csv = cache.pki.write("site-1001.csv", &text);
    let map = cache.pki.path("site-1001.csv.guids.csv");

    let run = connector(&push_args(cache.flags("site-1001"), &[], &csv)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, format!("pushed {rows}, skipped 0 (already in the map), refused 0 (see above)\n"));
    assert_eq!(run.stderr, "", "nothing to report, and no progress bar off a terminal");
    assert_no_contact_data(&run, &text);

    let lines = map_lines(&map);
    assert_eq!(lines.len(), rows);
    let ids: Vec<_> = text.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    assert_eq!(lines.iter().map(|l| l[0].clone()).collect::<Vec<_>>(), ids, "one line per row, in order");
    for line in &lines {
        line[1].parse::<Guid>().unwrap();
        let expires: jiff::Timestamp = line[2].parse().unwrap();
        assert!(expires > jiff::Timestamp::now());
    }
    let guids: std::collections::HashSet<_> = lines.iter().map(|l| &l[1]).collect();
    assert_eq!(guids.len(), rows);
    assert_eq!(std::fs::metadata(&map).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(cache.entries().await, rows as u64);

    let again = connector(&push_args(cache.flags("site-1001"), &[], &csv)).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        again.stdout,
        format!("pushed 0, skipped {rows} (already in the map), refused 0 (see above)\n")
    );
    assert_eq!(map_lines(&map), lines);
    assert_eq!(cache.entries().await, rows as u64, "nothing new in the cache");
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_an_interruption_sends_only_the_rest() {
    let cache = Cache::start().await;
    let text = sample_of("site-1001");
    let first_half: String = text.lines().take(41).map(|l| format!("{l}\n")).collect();
    let csv = cache.pki.write("export.csv", &first_half);
    let map = cache.pki.path("clinic-map.csv");
    let map_flag = map.display().to_string();

    let run = connector(&push_args(cache.flags("site-1001"), &["--map", &map_flag], &csv)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("pushed 40, skipped 0"), "{run:?}");

    std::fs::write(&csv, &text).unwrap();
    let run = connector(&push_args(cache.flags("site-1001"), &["--map", &map_flag], &csv)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("pushed 48, skipped 40 (already in the map)"), "{run:?}");
    assert_eq!(map_lines(&map).len(), 88);
    assert_eq!(cache.entries().await, 88);
    assert!(!cache.pki.path("export.csv.guids.csv").exists(), "--map is where the map goes");
}

/// The line of each row of `contacts-bad.csv` in the file itself, and its field. B009's
/// email holds a line break, so the rows after it start one line further down. B001 is not
/// here: its phone, `613-555-0101`, is bad for the cache (not E.164) but the connector reads
/// it as a number of its default region, CA (tests/phone_formats.rs).
const BAD: [(u64, &str, &str); 11] = [
    (3, "B002", "contact.email"),
    (4, "B003", "contact"),
    (5, "B004", "contact.language"),
    (6, "B005", "contact.time_zone"),
    (7, "B006", "contact.site_id"),
    (8, "B007", "contact.provider_id"),
    (9, "B008", "contact.phone"),
    (10, "B009", "contact.email"),
    (12, "B010", "appointment_at"),
    (13, "B011", "contact.channel"),
    (14, "B012", "contact.provider_id"),
];

/// Values of `contacts-bad.csv` that must never be shown.
const BAD_VALUES: [&str; 10] = [
    "613-555-0101",
    "not-an-email",
    "Mars/Olympus",
    "xxxxxxxxxx",
    "99999999",
    "Bcc",
    "everyone@",
    "yesterday",
    "pigeon",
    "\0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_row_is_reported_by_line_and_field_and_the_good_ones_still_go() {
    let cache = Cache::start().await;
    let bad = testdata("contacts-bad.csv");

    // The bad sample alone: every row refused but B001, whose phone the connector reads.
    let csv = cache.pki.write("contacts-bad.csv", &bad);
    let run = connector(&push_args(cache.flags("site-1001"), &[], &csv)).await;
    assert_eq!(run.code, 65, "{run:?}");
    assert_eq!(run.stdout, "pushed 1, skipped 0 (already in the map), refused 11 (see above)\n");
    let name = csv.display().to_string();
    for (line, id, field) in BAD {
        let want = format!("{name}:{line}: row {id}: {field}: ");
        assert!(run.stderr.lines().any(|l| l.starts_with(&want)), "{want:?} missing:\n{run:?}");
    }
    assert_eq!(run.stderr.lines().count(), 11, "{run:?}");
    for value in BAD_VALUES {
        assert!(!run.stderr.contains(value) && !run.stdout.contains(value), "{value:?} echoed:\n{run:?}");
    }
    assert_no_contact_data(&run, &bad);
    let ids: Vec<_> =
        map_lines(&cache.pki.path("contacts-bad.csv.guids.csv")).into_iter().map(|l| l[0].clone()).collect();
    assert_eq!(ids, ["B001"]);
    assert_eq!(cache.entries().await, 1);

    // Good rows around the bad ones are pushed all the same.
    let good = sample_of("site-1001");
    let good: Vec<&str> = good.lines().skip(1).take(3).collect();
    let mut bad_lines = bad.split_inclusive('\n');
    let header = bad_lines.next().unwrap();
    let mixed = format!("{header}{}\n{}{}\n{}\n", good[0], bad_lines.collect::<String>(), good[1], good[2]);
    let csv = cache.pki.write("mixed.csv", &mixed);
    let run = connector(&push_args(cache.flags("site-1001"), &[], &csv)).await;
    assert_eq!(run.code, 65, "{run:?}");
    assert_eq!(run.stdout, "pushed 4, skipped 0 (already in the map), refused 11 (see above)\n");
    let name = csv.display().to_string();
    for (line, id, field) in BAD {
        let want = format!("{name}:{}: row {id}: {field}: ", line + 1);
        assert!(run.stderr.lines().any(|l| l.starts_with(&want)), "{want:?} missing:\n{run:?}");
    }
    assert_no_contact_data(&run, &mixed);
    let ids: Vec<_> =
        map_lines(&cache.pki.path("mixed.csv.guids.csv")).into_iter().map(|l| l[0].clone()).collect();
    let mut want: Vec<_> = good.iter().map(|l| l.split(',').next().unwrap().to_string()).collect();
    want.insert(1, "B001".into());
    assert_eq!(ids, want);
    assert_eq!(cache.entries().await, 1 + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_of_another_site_is_refused_by_the_cache_with_its_field() {
    let cache = Cache::start().await;
    let sample = testdata("contacts.csv");
    let mut lines = sample.lines();
    let header = lines.next().unwrap();
    let ours: Vec<&str> = lines.clone().filter(|l| l.contains(",site-1001,")).take(2).collect();
    let theirs = lines.clone().find(|l| l.contains(",site-1002,")).unwrap();
    let text = format!("{header}\n{}\n{theirs}\n{}\n", ours[0], ours[1]);
    let csv = cache.pki.write("two-sites.csv", &text);

    let run = connector(&push_args(cache.flags("site-1001"), &[], &csv)).await;
    assert_eq!(run.code, 65, "{run:?}");
    assert_eq!(run.stdout, "pushed 2, skipped 0 (already in the map), refused 1 (see above)\n");
    let their_id = theirs.split(',').next().unwrap();
    assert_eq!(
        run.stderr,
        format!("{}:3: row {their_id}: contact.site_id: is not the caller's site\n", csv.display())
    );
    assert_no_contact_data(&run, &text);
    let ids: Vec<_> =
        map_lines(&cache.pki.path("two-sites.csv.guids.csv")).into_iter().map(|l| l[0].clone()).collect();
    assert!(!ids.contains(&their_id.to_string()));
    assert_eq!(ids.len(), 2);
    assert_eq!(cache.entries().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_is_down_exits_69_and_records_nothing() {
    let pki = Pki::new();
    // A port with nothing behind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = sample_of("site-1001");
    let csv = pki.write("site-1001.csv", &text);

    let run = connector(&push_args(pki.flags(port, "site-1001"), &[], &csv)).await;
    assert_eq!(run.code, 69, "{run:?}");
    assert!(
        run.stdout
            .starts_with("pushed 0, skipped 0 (already in the map), refused 0 (see above), not sent 88"),
        "{run:?}"
    );
    assert!(run.stderr.contains("cannot reach the cache at https://127.0.0.1:"), "{run:?}");
    assert_no_contact_data(&run, &text);
    let map = pki.path("site-1001.csv.guids.csv");
    assert!(map_lines(&map).is_empty(), "the map is made (checked writable) but holds no row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_certificate_is_refused_as_a_whole() {
    let cache = Cache::start().await;
    let csv = cache.pki.write("site-1001.csv", &sample_of("site-1001"));
    let mut flags = cache.flags("site-1001");
    let at = flags.iter().position(|f| f == "--cert").unwrap();
    flags[at + 1] = cache.pki.path("outreach.pem").display().to_string();
    flags[at + 3] = cache.pki.path("outreach.key").display().to_string();
    let run = connector(&push_args(flags, &[], &csv)).await;
    assert_eq!(run.code, 77, "{run:?}");
    assert!(run.stderr.contains("refused this connector's certificate"), "{run:?}");
    assert_eq!(cache.entries().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_input_config_and_flags_have_their_exit_codes() {
    let pki = Pki::new();
    let port = 9; // never reached: each run stops before connecting
    let flags = || pki.flags(port, "site-1001");

    let no_column = pki.write(
        "no-phone.csv",
        "row_id,site_id,provider_id,campaign_id,email,language,time_zone,appointment_at,channel\n",
    );
    let run = connector(&push_args(flags(), &[], &no_column)).await;
    assert_eq!(run.code, 65, "{run:?}");
    assert!(run.stderr.contains("no-phone.csv: missing column(s) phone"), "{run:?}");

    let run = connector(&push_args(flags(), &[], &pki.path("absent.csv"))).await;
    assert_eq!(run.code, 66, "{run:?}");
    assert!(run.stderr.contains("absent.csv"), "{run:?}");

    let csv = pki.write("one.csv", &sample_of("site-1001"));
    let run = connector(&push_args(flags(), &["--send-after-hours", "721"], &csv)).await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("send_after_hours"), "{run:?}");

    let mut no_key = flags();
    let at = no_key.iter().position(|f| f == "--key").unwrap();
    no_key[at + 1] = pki.path("nowhere.key").display().to_string();
    let run = connector(&push_args(no_key, &[], &csv)).await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("cache.key"), "{run:?}");

    let run = connector(&["push".into(), "--no-such-flag".into(), csv.display().to_string()]).await;
    assert_eq!(run.code, 64, "{run:?}");

    // A map that cannot be made stops the run before anything is sent.
    let nowhere = pki.path("no-such-folder/map.csv").display().to_string();
    let run = connector(&push_args(flags(), &["--map", &nowhere], &csv)).await;
    assert_eq!(run.code, 73, "{run:?}");
    assert!(run.stderr.contains("no-such-folder/map.csv"), "{run:?}");

    // A map this connector did not write is not guessed at.
    let map = pki.write("bad-map.csv", "guid,row_id\n");
    let run = connector(&push_args(flags(), &["--map", &map.display().to_string()], &csv)).await;
    assert_eq!(run.code, 65, "{run:?}");
    assert!(run.stderr.contains("bad-map.csv:1: not a row_id,guid,expires_at line"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_checks_and_sends_nothing() {
    let pki = Pki::new();
    let text = sample_of("site-1002");
    let csv = pki.write("site-1002.csv", &text);
    // No cache and no certificate needed.
    let run = connector(&["push".into(), "--dry-run".into(), csv.display().to_string()]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "would push 77, skipped 0 (already in the map), refused 0 (see above)\n");
    assert!(!pki.path("site-1002.csv.guids.csv").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_a_config_file() {
    let cache = Cache::start().await;
    let p = |name: &str| cache.pki.path(name).display().to_string();
    let config = format!(
        "send_after_hours = 0\n[cache]\nurl = \"https://127.0.0.1:{}\"\nserver_name = \"localhost\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        cache.addr.port(),
        p("ca.pem"),
        p("emr-site-1002.pem"),
        p("emr-site-1002.key"),
    );
    let config = cache.pki.write("emr-connector.toml", &config);
    let csv = cache.pki.write("site-1002.csv", &sample_of("site-1002"));
    let run = connector(&[
        "push".into(),
        "--config".into(),
        config.display().to_string(),
        csv.display().to_string(),
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("pushed 77,"), "{run:?}");
    assert_eq!(cache.entries().await, 77);
}
