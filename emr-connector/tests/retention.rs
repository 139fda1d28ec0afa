//! The GUID map keeps an entry no longer than the cache keeps its contact: each run drops
//! the entries whose `expires_at` has passed, with the clock moved (the cache's and the
//! run's together), and the real binary says how many.
#![allow(clippy::unwrap_used)]

mod common;

use std::{os::unix::fs::PermissionsExt, path::Path};

use cache_server::clock::Clock;
use common::{Cache, assert_no_contact_data, connector, map_lines, push_args, sample_of};
use emr_connector::{
    app::{self, Console, PushArgs},
    config::{CacheConfig, ConnectorConfig},
};
use jiff::{SignedDuration, Timestamp};

/// The arguments of a push of `csv` for site-1001 to `cache`, with the map at `map`.
fn args(cache: &Cache, csv: &Path, map: &Path, dry_run: bool) -> PushArgs {
    let pki = |name: &str| cache.pki.path(name);
    let config = ConnectorConfig {
        send_after_hours: 2,
        default_region: Default::default(),
        cache: CacheConfig {
            url: format!("https://127.0.0.1:{}", cache.addr.port()),
            server_name: "localhost".into(),
            ca: pki("ca.pem"),
            cert: pki("emr-site-1001.pem"),
            key: pki("emr-site-1001.key"),
            connect_timeout_seconds: 5,
        },
    };
    PushArgs { csv: csv.to_path_buf(), map: map.to_path_buf(), config, dry_run }
}

/// The sample's header and its site-1001 rows from `from` to `to`.
fn rows(from: usize, to: usize) -> String {
    let sample = sample_of("site-1001");
    let mut lines = sample.lines();
    let mut text = format!("{}\n", lines.next().unwrap());
    for line in lines.skip(from).take(to - from) {
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_drops_the_map_entries_whose_contacts_have_expired() {
    let start: Timestamp = "2026-11-24T15:00:00Z".parse().unwrap();
    let clock = Clock::manual(start);
    let cache = Cache::start_on(clock.clone()).await;
    let map = cache.pki.path("clinic-map.csv");
    let push = |csv: &Path, dry_run: bool| {
        let args = args(&cache, csv, &map, dry_run);
        let now = clock.now();
        async move { app::push(&args, &mut Console::default(), now).await }
    };

    // Day 0 and day 20: two exports, each with its own rows, into one map.
    let first = cache.pki.write("day-0.csv", &rows(0, 30));
    let report = push(&first, false).await;
    assert_eq!((report.exit_code(), report.summary.pushed, report.summary.pruned), (0, 30, 0));
    let day_0 = map_lines(&map);
    clock.advance(SignedDuration::from_hours(24 * 20));
    let second = cache.pki.write("day-20.csv", &rows(30, 60));
    let report = push(&second, false).await;
    assert_eq!((report.exit_code(), report.summary.pushed, report.summary.pruned), (0, 30, 0));
    let day_20 = map_lines(&map)[30..].to_vec();
    // The cache keeps a contact until the start of the 30th day after the day it was stored.
    let expiry = |lines: &[Vec<String>]| {
        let at: Vec<Timestamp> = lines.iter().map(|l| l[2].parse().unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] == w[1]));
        at[0]
    };
    assert_eq!(expiry(&day_0), "2026-12-24T00:00:00Z".parse().unwrap());
    assert_eq!(expiry(&day_20), "2027-01-13T00:00:00Z".parse().unwrap());

    // Day 30, when the first export's contacts expire: a dry run says what it would drop
    // and changes nothing.
    clock.advance(expiry(&day_0).duration_since(clock.now()));
    let third = cache.pki.write("day-30.csv", &rows(60, 88));
    let before = std::fs::read(&map).unwrap();
    let report = push(&third, true).await;
    assert_eq!((report.summary.pushed, report.summary.pruned), (28, 30));
    assert!(report.summary.to_string().ends_with(", would forget 30 expired map entries"));
    assert_eq!(std::fs::read(&map).unwrap(), before);

    // The run drops them, keeps the second export's, and adds the third's.
    let report = push(&third, false).await;
    assert_eq!(report.exit_code(), 0, "{:?}", report.failure);
    assert_eq!(
        report.summary.to_string(),
        "pushed 28, skipped 0 (already in the map), refused 0 (see above), forgot 30 expired map entries"
    );
    let now = map_lines(&map);
    assert_eq!(now.len(), 58);
    assert_eq!(now[..30], day_20[..], "the live entries are kept as they were, in order");
    let text = std::fs::read_to_string(&map).unwrap();
    for line in &day_0 {
        assert!(!text.contains(&line[1]) && !text.contains(&format!("{},", line[0])), "{line:?}");
    }
    assert_eq!(std::fs::metadata(&map).unwrap().permissions().mode() & 0o777, 0o600);
    let beside: Vec<_> = std::fs::read_dir(cache.pki.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains("clinic-map"))
        .collect();
    assert_eq!(beside, ["clinic-map.csv"], "no temporary file left");

    // The second export again: still skipped, nothing more to drop.
    let report = push(&second, false).await;
    assert_eq!((report.summary.pushed, report.summary.skipped, report.summary.pruned), (0, 30, 0));

    // Once every contact has expired, the map holds its header only.
    clock.advance(SignedDuration::from_hours(24 * 60));
    let report = push(&second, true).await;
    assert_eq!(report.summary.pruned, 58);
    let empty = cache.pki.write("empty.csv", &rows(0, 0));
    let report = push(&empty, false).await;
    assert_eq!((report.exit_code(), report.summary.pruned), (0, 58));
    assert_eq!(std::fs::read_to_string(&map).unwrap(), "row_id,guid,expires_at\n");
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_drops_expired_entries_and_says_how_many_without_contact_data() {
    let cache = Cache::start().await;
    let text = rows(0, 10);
    let csv = cache.pki.write("today.csv", &text);
    let map = cache.pki.path("clinic-map.csv");
    let flag = map.display().to_string();
    // An earlier export's entries, whose contacts expired yesterday (the map's clock moved
    // back, since the binary runs on the system's), and one the cache gave no expiry.
    let yesterday = Timestamp::now().checked_sub(SignedDuration::from_hours(24)).unwrap();
    let guid = |n: u8| format!("0b6f6f43-52a2-4c1f-8f3e-0d1e2f3a4b{n:02x}");
    let mut earlier = String::from("row_id,guid,expires_at\n");
    for n in 0..5 {
        earlier.push_str(&format!("OLD{n},{},{yesterday}\n", guid(n)));
    }
    earlier.push_str(&format!("ODD1,{},\n", guid(9)));
    std::fs::write(&map, &earlier).unwrap();
    std::fs::set_permissions(&map, std::fs::Permissions::from_mode(0o600)).unwrap();

    let run = connector(&push_args(cache.flags("site-1001"), &["--map", &flag], &csv)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "pushed 10, skipped 0 (already in the map), refused 0 (see above), forgot 5 expired map entries\n"
    );
    assert_eq!(
        run.stderr,
        format!(
            "warning: {flag}: 1 entries have no readable expires_at and are kept; remove them once their \
             contacts have expired\n"
        )
    );
    assert_no_contact_data(&run, &text);
    let lines = map_lines(&map);
    assert_eq!(lines.len(), 11);
    assert_eq!(lines[0], ["ODD1".to_string(), guid(9), String::new()]);
    assert!(lines.iter().all(|l| !l[0].starts_with("OLD")));
    assert_eq!(std::fs::metadata(&map).unwrap().permissions().mode() & 0o777, 0o600);
    cache.stop().await;
}
