//! The bridge killed with SIGKILL during a burst of answers loses no answer whose patient saw
//! the thank-you page, and counts none twice (the binary, on SQLite).
//!
//! A response is two transactions (the invitation marked responded, then the sealed answers
//! put into the pool), and the thank-you page comes only after both. Here the binary is
//! killed while answers are in flight, started again on the same database and keys, and every
//! patient who saw no thank-you page tries once more. Each patient has a provider of their
//! own, so the counts of their group say whether their answer was counted, and how often,
//! although nothing in the database ties an answer to its link. The only answers allowed to
//! be lost are those of requests the kill cut off: their link is used, their patient saw no
//! thank-you page, and the retry gets the neutral page.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cache_server::guid::Guid;
use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use sqlx::Row;
use survey_bridge::{
    config::BridgeConfig,
    db::{Db, Invitation},
    keys::Keys,
    ledger::month_of,
};
use tokio::{process::Child, sync::Notify};

/// Patients invited, all consented, before the burst.
const PATIENTS: usize = 120;
/// Requests in flight at once during the burst.
const CONCURRENCY: usize = 16;
/// The bridge is killed as soon as this many thank-you pages have come back.
const KILL_AFTER: usize = 30;

const SITE: &str = "site-1001";
const CAMPAIGN: &str = "pcpe-2026q4";

/// One invited patient: their link, and the form token of their survey page.
struct Patient {
    guid: String,
    provider: String,
    csrf: String,
}

/// What one POST of the survey came to, as the patient saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Not sent: the burst stopped first.
    NotSent,
    /// The thank-you page, whole.
    Thanks,
    /// Another page, by its status.
    Status(u16),
    /// No page: the connection failed or was cut.
    Failed,
}

/// The binary, running; killed when dropped.
struct Daemon {
    child: Child,
    https_port: u16,
    log: PathBuf,
}

impl Daemon {
    /// Starts the binary with `config` on two new loopback ports, its config file and log
    /// named after `run` in `dir`, and waits until its pages answer.
    async fn start(mut config: BridgeConfig, dir: &Path, run: &str) -> Daemon {
        config.listen = ([127, 0, 0, 1], free_port()).into();
        config.grpc_listen = ([127, 0, 0, 1], free_port()).into();
        let config_file = dir.join(format!("{run}.toml"));
        std::fs::write(&config_file, toml::to_string(&config).unwrap()).unwrap();
        let log = dir.join(format!("{run}.log"));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_survey-bridge"))
            .arg("--config")
            .arg(&config_file)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, https_port: config.listen.port(), log };
        daemon.wait_until_serving(&dir.join("ca.pem")).await;
        daemon
    }

    /// Waits until the pages answer (the port is bound before the database is opened).
    async fn wait_until_serving(&mut self, ca: &Path) {
        let http = self.http(ca);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("survey-bridge exited at start ({status}): {}", self.log_text());
            }
            let url = format!("https://localhost:{}/favicon.ico", self.https_port);
            if let Ok(response) = http.get(url).send().await {
                assert_eq!(response.status(), StatusCode::NO_CONTENT);
                return;
            }
            assert!(Instant::now() < deadline, "survey-bridge did not serve: {}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client of its pages that trusts the test CA.
    fn http(&self, ca: &Path) -> reqwest::Client {
        test_support::https_client(ca, ([127, 0, 0, 1], self.https_port).into())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and its exit.
    async fn kill(mut self) -> std::process::ExitStatus {
        self.child.kill().await.unwrap();
        self.child.wait().await.unwrap()
    }

    /// SIGTERM, and its exit once it has drained.
    async fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        self.child.wait().await.unwrap()
    }
}

/// A loopback port free at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Records and consents `PATIENTS` invitations straight in the database, each for a
/// provider of its own, sent now by the system clock (which the binary runs on).
async fn seed(config: &BridgeConfig, keys: &Keys, month: &str) -> Vec<Patient> {
    let db = Db::connect(&config.database_url).await.unwrap();
    let now = Timestamp::now();
    let mut patients = Vec::new();
    for i in 0..PATIENTS {
        let guid = common::guid();
        let hmac = keys.guid_hmac(&guid.parse::<Guid>().unwrap());
        let provider = format!("prov-k{i:03}");
        let invitation = Invitation {
            guid_hmac: hmac.clone(),
            site_id: SITE.into(),
            provider_id: provider.clone(),
            campaign_id: CAMPAIGN.into(),
            channel: "email".into(),
            language: "en".into(),
            month: month.into(),
            expires_at: (now + SignedDuration::from_hours(24)).as_second(),
        };
        assert!(db.record_invitation(&invitation).await.unwrap());
        assert_eq!(db.consent(&hmac, now).await.unwrap(), survey_bridge::db::Outcome::Accepted);
        let csrf = keys.csrf(&hmac, "survey");
        patients.push(Patient { guid, provider, csrf });
    }
    patients
}

/// Posts the patient's survey (`overall` 9) to the bridge on `port`.
async fn answer(http: &reqwest::Client, port: u16, patient: &Patient) -> Attempt {
    let sent = http
        .post(format!("https://localhost:{port}/s/{}/survey", patient.guid))
        .form(&[("csrf", patient.csrf.as_str()), ("overall", "9")])
        .send()
        .await;
    let Ok(response) = sent else { return Attempt::Failed };
    let status = response.status();
    match response.text().await {
        Ok(body) if status == StatusCode::OK => {
            assert!(body.contains("Thank you"), "a 200 that is not the thank-you page: {body}");
            Attempt::Thanks
        }
        Ok(_) => Attempt::Status(status.as_u16()),
        Err(_) => Attempt::Failed,
    }
}

/// Every patient answers, `CONCURRENCY` at a time; the bridge is killed as soon as the
/// `KILL_AFTER`th thank-you page has come back, with the other requests still in flight.
/// What each patient saw.
async fn burst_then_kill(
    daemon: Daemon,
    http: &reqwest::Client,
    patients: &Arc<Vec<Patient>>,
) -> Vec<Attempt> {
    let next = Arc::new(AtomicUsize::new(0));
    let thanks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicUsize::new(CONCURRENCY));
    let kill = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, thanks, stop, running, kill) =
            (next.clone(), thanks.clone(), stop.clone(), running.clone(), kill.clone());
        let (http, patients, port) = (http.clone(), patients.clone(), daemon.https_port);
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= patients.len() {
                    break;
                }
                let attempt = answer(&http, port, &patients[i]).await;
                if attempt == Attempt::Thanks && thanks.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    stop.store(true, Ordering::SeqCst);
                    kill.notify_one();
                }
                seen.push((i, attempt));
            }
            // Should the burst end without the kill, the last task out wakes the killer.
            if running.fetch_sub(1, Ordering::SeqCst) == 1 {
                kill.notify_one();
            }
            seen
        }));
    }
    kill.notified().await;
    assert!(stop.load(Ordering::SeqCst), "the burst ended before {KILL_AFTER} thank-you pages came back");
    let log = daemon.log.clone();
    let status = daemon.kill().await;
    assert_eq!(status.signal(), Some(9), "survey-bridge was not killed but exited ({status}): {log:?}");
    let mut attempts = vec![Attempt::NotSent; patients.len()];
    for task in tasks {
        for (i, attempt) in task.await.unwrap() {
            attempts[i] = attempt;
        }
    }
    attempts
}

/// Posts the surveys of `which` patients, `CONCURRENCY` at a time.
async fn answer_all(
    http: &reqwest::Client,
    port: u16,
    patients: &Arc<Vec<Patient>>,
    which: &[usize],
) -> Vec<Attempt> {
    let mut seen = vec![Attempt::NotSent; patients.len()];
    for chunk in which.chunks(CONCURRENCY) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let (http, patients) = (http.clone(), patients.clone());
            tasks.push(tokio::spawn(async move { (i, answer(&http, port, &patients[i]).await) }));
        }
        for task in tasks {
            let (i, attempt) = task.await.unwrap();
            seen[i] = attempt;
        }
    }
    seen
}

#[tokio::test]
async fn a_bridge_killed_mid_burst_loses_no_thanked_answer_and_counts_none_twice() {
    let (mut config, dir) = common::test_config(None);
    // The daemon's fold runs once at start, then not again during the test: the test folds.
    config.answers.fold_every_seconds = 3600;
    let keys = Keys::load(&config.key_file).unwrap();
    let month = month_of(Timestamp::now());
    let patients = Arc::new(seed(&config, &keys, &month).await);
    let ca = dir.path().join("ca.pem");

    // The burst, cut by SIGKILL.
    let first = Daemon::start(config.clone(), dir.path(), "first").await;
    let http = first.http(&ca);
    let run1 = burst_then_kill(first, &http, &patients).await;
    let thanked1 = run1.iter().filter(|a| **a == Attempt::Thanks).count();
    let in_flight = run1.iter().filter(|a| **a == Attempt::Failed).count();
    let not_sent = run1.iter().filter(|a| **a == Attempt::NotSent).count();
    assert!(thanked1 >= KILL_AFTER, "{run1:?}");
    assert!(in_flight > 0, "the kill cut no request off: {run1:?}");
    assert!(
        run1.iter().all(|a| matches!(a, Attempt::Thanks | Attempt::Failed | Attempt::NotSent)),
        "{run1:?}"
    );

    // The same database and keys again; whoever saw no thank-you page tries once more.
    let second = Daemon::start(config.clone(), dir.path(), "second").await;
    let http = second.http(&ca);
    let again: Vec<usize> = (0..PATIENTS).filter(|&i| run1[i] != Attempt::Thanks).collect();
    let run2 = answer_all(&http, second.https_port, &patients, &again).await;
    for &i in &again {
        match (run1[i], run2[i]) {
            // A request the kill cut off may have used the link (and its answers kept, or not).
            (Attempt::Failed, Attempt::Thanks | Attempt::Status(404)) => {}
            // A link never tried is open.
            (Attempt::NotSent, Attempt::Thanks) => {}
            other => panic!("patient {i}: {other:?}"),
        }
    }
    let thanked: Vec<usize> =
        (0..PATIENTS).filter(|&i| run1[i] == Attempt::Thanks || run2[i] == Attempt::Thanks).collect();
    // A patient who saw the thank-you page finds the link closed, with the neutral page.
    let closed = answer_all(&http, second.https_port, &patients, &thanked).await;
    for &i in &thanked {
        assert_eq!(closed[i], Attempt::Status(404), "patient {i} answered twice");
    }
    let log = second.log.clone();
    let status = second.stop().await;
    assert!(status.success(), "survey-bridge after SIGTERM: {status}: {log:?}");

    // Count everything the pool holds, then look at each patient's group.
    let folded = common::fold(&config.database_url, &config.key_file, Timestamp::now()).await;
    assert_eq!((folded.waiting, folded.unreadable), (0, 0), "{folded:?}");
    let db = Db::connect(&config.database_url).await.unwrap();
    assert_eq!(db.answers_waiting().await.unwrap(), 0, "the pool is empty after the fold");
    let mut counted = vec![0i64; PATIENTS];
    for (i, patient) in patients.iter().enumerate() {
        let key = (SITE, patient.provider.as_str(), CAMPAIGN, month.as_str());
        let period = db.period_counts(SITE, &patient.provider, CAMPAIGN, &month).await.unwrap();
        assert_eq!(period.invitations, 1, "patient {i}");
        assert_eq!(db.answer_count(key, "overall", "9").await.unwrap(), period.responses, "patient {i}");
        assert!(period.responses <= 1, "patient {i}'s answer counted {} times", period.responses);
        counted[i] = period.responses;
    }
    let responded: i64 = sqlx::query("SELECT COUNT(*) FROM invitations WHERE state = 'responded'")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    let total: i64 = counted.iter().sum();

    // No answer whose patient saw the thank-you page is lost.
    let thanked_uncounted: Vec<usize> = thanked.iter().copied().filter(|&i| counted[i] == 0).collect();
    assert_eq!(thanked_uncounted, Vec::<usize>::new(), "thanked patients whose answers were lost");
    assert!(total >= thanked.len() as i64);
    // None counted twice, nor without its link used.
    assert_eq!(responded, PATIENTS as i64, "every link is used by the end");
    assert!(total <= responded);
    // Who never saw the thank-you page: only patients whose first request the kill cut off.
    let never: Vec<usize> = (0..PATIENTS).filter(|&i| !thanked.contains(&i)).collect();
    for &i in &never {
        assert_eq!((run1[i], run2[i]), (Attempt::Failed, Attempt::Status(404)), "patient {i}");
    }
    assert!(never.len() <= in_flight, "{} never thanked, {in_flight} in flight", never.len());
    let lost = never.iter().filter(|&&i| counted[i] == 0).count();
    let kept_unthanked = never.len() - lost;
    eprintln!(
        "killed after {thanked1} thank-you pages: {in_flight} requests in flight, {not_sent} not sent; \
         after the restart {} more thanked, {} never thanked: {lost} answers lost, \
         {kept_unthanked} counted without a thank-you page; {total} counted of {PATIENTS}",
        thanked.len() - thanked1,
        never.len(),
    );
}
