//! The whole tier as real processes: cache-server, survey-bridge and outreach-worker on
//! loopback ports with a development PKI, the EMR connector pushing the sample contacts, a
//! real SMTP server (aiosmtpd) and a Twilio-format stand-in taking the invitations, patients
//! answering through the pages, an opt-out that stops the same patient's next visit, a
//! provider's report with small cells suppressed, a cache restart, and at the end a search of
//! every file the tier wrote for every planted phone and email.
#![allow(clippy::unwrap_used)]

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../survey-bridge/tests/common/browser.rs"]
mod browser;
#[allow(dead_code, clippy::unwrap_used)]
#[path = "../outreach-worker/tests/common/smtp.rs"]
mod smtp;
#[allow(dead_code, clippy::unwrap_used)]
#[path = "../outreach-worker/tests/common/twilio.rs"]
mod twilio;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use test_support::{csrf, https_client};
use tier_tests::{Daemon, files_under, free_port, metric, run, wait_for_port, wait_until};

/// What the bridge's browser helper needs of a bridge: where its certificate is.
#[derive(Debug)]
pub struct Bridge {
    pki: PathBuf,
}

impl Bridge {
    /// A file in the PKI folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.pki.join(name)
    }
}

/// Answers the survey of `guid` in headless Chromium, as a patient on a phone would: the
/// consent page, agree, three answers ticked, send, the thank-you page.
async fn answer_in_chromium(chromium: &browser::Chromium, public: &str, guid: &str) {
    let consent = chromium.open(&format!("{public}/s/{guid}")).await;
    assert_eq!(consent.status, 200);
    consent.check_privacy_headers();
    let survey = chromium.click_through("button[value=agree]").await;
    assert_eq!(survey.status, 200);
    assert!(survey.path().starts_with(&format!("/s/{guid}/survey")), "{}", survey.path());
    for id in ["overall-9", "listened-always", "next_steps-yes"] {
        chromium.click(&format!("label[for=\"{id}\"]")).await;
    }
    assert_eq!(chromium.count("form:invalid").await, 0);
    let thanks = chromium.click_through("button.primary").await;
    assert_eq!(thanks.status, 200);
    assert_eq!(thanks.path(), format!("/s/{guid}/survey"));
    assert_eq!(chromium.cookies().await, Vec::<String>::new(), "no cookies");
}

/// One row of the sample appointments.
#[derive(Debug, Clone, serde::Deserialize)]
struct Row {
    row_id: String,
    site_id: String,
    provider_id: String,
    phone: String,
    email: String,
}

fn sample() -> (Vec<String>, Vec<csv::StringRecord>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/contacts.csv");
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().iter().map(str::to_string).collect();
    (headers, reader.records().map(Result::unwrap).collect())
}

fn write_csv(path: &Path, headers: &[String], rows: &[&csv::StringRecord]) {
    let mut writer = csv::Writer::from_path(path).unwrap();
    writer.write_record(headers).unwrap();
    for row in rows {
        writer.write_record(*row).unwrap();
    }
    writer.flush().unwrap();
}

fn set(pairs: &[(&str, String)]) -> Vec<String> {
    pairs.iter().flat_map(|(k, v)| ["--set".to_string(), format!("{k}={v}")]).collect()
}

/// The GUIDs in invitation links in `text`.
fn links(text: &str, public: &str) -> Vec<String> {
    let prefix = format!("{public}/s/");
    text.match_indices(&prefix)
        .map(|(at, _)| text[at + prefix.len()..at + prefix.len() + 36].to_string())
        .collect()
}

struct Tier {
    state: PathBuf,
    pki: PathBuf,
    cache_port: u16,
    cache_metrics: u16,
    https: u16,
    grpc: u16,
}

impl Tier {
    fn start_cache(&self) -> Daemon {
        let p = |f: &str| self.pki.join(f).display().to_string();
        let mut args = vec![
            "--listen".to_string(),
            format!("127.0.0.1:{}", self.cache_port),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", self.cache_metrics),
            "--allow-unlocked".into(),
        ];
        args.extend(set(&[
            ("tls.cert", p("cache-server.pem")),
            ("tls.key", p("cache-server.key")),
            ("tls.client_ca", p("ca.pem")),
            ("audit.path", self.state.join("cache-audit.jsonl").display().to_string()),
            ("audit.key_file", p("audit.key")),
            ("log.filter", "debug".into()),
        ]));
        Daemon::spawn("cache-server", &args, &self.state.join("cache.log"))
    }

    fn bridge_args(&self) -> Vec<String> {
        let p = |f: &str| self.pki.join(f).display().to_string();
        set(&[
            ("listen", format!("127.0.0.1:{}", self.https)),
            ("grpc_listen", format!("127.0.0.1:{}", self.grpc)),
            ("database_url", format!("sqlite://{}?mode=rwc", self.state.join("bridge.db").display())),
            ("key_file", p("survey-bridge-secret.key")),
            ("tls.cert", p("survey-bridge.pem")),
            ("tls.key", p("survey-bridge.key")),
            ("tls.client_ca", p("ca.pem")),
            ("audit.path", self.state.join("bridge-audit.jsonl").display().to_string()),
            ("audit.key_file", p("audit.key")),
            ("cache.url", format!("https://127.0.0.1:{}", self.cache_port)),
            ("cache.server_name", "localhost".into()),
            ("cache.ca", p("ca.pem")),
            ("cache.cert", p("bridge.pem")),
            ("cache.key", p("bridge.key")),
            ("cache.retry_seconds", "1".into()),
            ("reports.min_cell", "5".into()),
            ("answers.fold_every_seconds", "1".into()),
            ("log.filter", "debug".into()),
        ])
    }

    /// How many responses the bridge's folds have counted so far (its audit says).
    fn folded(&self) -> u64 {
        let audit = std::fs::read_to_string(self.state.join("bridge-audit.jsonl")).unwrap_or_default();
        audit
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["action"] == "ANSWERS_FOLDED")
            .filter_map(|line| line["count"].as_u64())
            .sum()
    }

    fn public(&self) -> String {
        format!("https://localhost:{}", self.https)
    }

    async fn cache_entries(&self) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.cache_metrics);
        let page = reqwest::get(url).await.ok()?.text().await.ok()?;
        metric(&page, "cache_entries")
    }

    /// Pushes `csv` for `site` with the EMR connector; returns its exit code and output.
    fn push(&self, site: &str, csv: &Path, map: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
        let p = |f: &str| self.pki.join(f).display().to_string();
        let mut args = vec![
            "push".to_string(),
            "--url".into(),
            format!("https://127.0.0.1:{}", self.cache_port),
            "--server-name".into(),
            "localhost".into(),
            "--ca".into(),
            p("ca.pem"),
            "--cert".into(),
            p(&format!("emr-{site}.pem")),
            "--key".into(),
            p(&format!("emr-{site}.key")),
            "--map".into(),
            map.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(csv.display().to_string());
        run("emr-connector", &args)
    }
}

/// Answers the built-in survey on the page of `guid`: consent, then `overall` and `listened`.
async fn answer(http: &reqwest::Client, public: &str, guid: &str, overall: u32, listened: &str) {
    let page = http.get(format!("{public}/s/{guid}")).send().await.unwrap().text().await.unwrap();
    let agreed = http
        .post(format!("{public}/s/{guid}/consent"))
        .form(&[("csrf", csrf(&page).as_str()), ("choice", "agree")])
        .send()
        .await
        .unwrap();
    assert_eq!(agreed.status(), reqwest::StatusCode::SEE_OTHER, "consent for a sent link");
    let location = agreed.headers()["location"].to_str().unwrap().to_string();
    let survey = http.get(format!("{public}{location}")).send().await.unwrap().text().await.unwrap();
    let overall = overall.to_string();
    let sent = http
        .post(format!("{public}/s/{guid}/survey"))
        .form(&[("csrf", csrf(&survey).as_str()), ("overall", overall.as_str()), ("listened", listened)])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), reqwest::StatusCode::OK);
}

/// Declines on the consent page of `guid`.
async fn decline(http: &reqwest::Client, public: &str, guid: &str) {
    let page = http.get(format!("{public}/s/{guid}")).send().await.unwrap().text().await.unwrap();
    let declined = http
        .post(format!("{public}/s/{guid}/consent"))
        .form(&[("csrf", csrf(&page).as_str()), ("choice", "decline")])
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), reqwest::StatusCode::OK);
}

/// Signs in as a provider for the first time (password, then the TOTP set up from the
/// enrolment page) and reads the JSON report with each of `queries`: the statuses and bodies.
async fn read_reports(
    http: &reqwest::Client,
    public: &str,
    username: &str,
    password: &str,
    queries: &[&str],
) -> Vec<(reqwest::StatusCode, String)> {
    let cookie = |r: &reqwest::Response| {
        r.headers().get("set-cookie").map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
    };
    let login = http
        .post(format!("{public}/login"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::SEE_OTHER);
    let session = cookie(&login).unwrap();
    let page = http
        .get(format!("{public}/login/enrol"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let from = page.find("<code id=\"totp-key\">").unwrap() + "<code id=\"totp-key\">".len();
    let key = &page[from..from + page[from..].find("</code>").unwrap()];
    let secret = totp_rs::Secret::Encoded(key.to_string()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, secret);
    let code = totp.generate(jiff::Timestamp::now().as_second() as u64);
    let enrolled = http
        .post(format!("{public}/login/enrol"))
        .header("cookie", &session)
        .form(&[("csrf", csrf(&page).as_str()), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(enrolled.status(), reqwest::StatusCode::SEE_OTHER);
    let session = cookie(&enrolled).unwrap_or(session);
    let mut replies = Vec::new();
    for query in queries {
        let url = format!("{public}/reports/report.json{query}");
        let report = http.get(url).header("cookie", &session).send().await.unwrap();
        replies.push((report.status(), report.text().await.unwrap()));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_tier_end_to_end() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(sink) = smtp::SmtpSink::start(smtp::SmtpOptions::default()) else { return };
    let root = tempfile::tempdir().unwrap();
    // What the tier writes goes to `state`; the EMR's files (its export, its GUID map) and the
    // providers' mailboxes are outside the tier, in `outside` and the sink's Maildir.
    let state = root.path().join("state");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let pki = state.join("pki");
    let sites = "site-1001,site-1002,site-1003";
    let (code, _, err) = run(
        "cache-server",
        &["certs".into(), "--out".into(), pki.display().to_string(), "--sites".into(), sites.into()],
    );
    assert_eq!(code, Some(0), "{err}");
    std::fs::write(pki.join("suppression.key"), format!("{}\n", "5a".repeat(32))).unwrap();

    let tier = Tier {
        state: state.clone(),
        pki: pki.clone(),
        cache_port: free_port(),
        cache_metrics: free_port(),
        https: free_port(),
        grpc: free_port(),
    };
    let mut cache = tier.start_cache();
    let mut bridge = Daemon::spawn("survey-bridge", &tier.bridge_args(), &state.join("bridge.log"));

    let sms = twilio::Twilio::default();
    let sms_url = sms.start().await;
    let worker_metrics = free_port();
    let p = |f: &str| pki.join(f).display().to_string();
    let worker_toml = format!(
        r#"
database_url = "sqlite://{db}?mode=rwc"
key_file = "{key}"
metrics_listen = "127.0.0.1:{worker_metrics}"
[cache]
url = "https://127.0.0.1:{cache_port}"
ca = "{ca}"
cert = "{cert}"
key = "{ckey}"
[bridge]
url = "https://127.0.0.1:{grpc}"
ca = "{ca}"
cert = "{cert}"
key = "{ckey}"
public_url = "{public}"
[worker]
batch = 100
lease_seconds = 30
concurrency = 8
poll_seconds = 1
# The sample's time zones span the country and the test runs at any hour.
[quiet_hours]
enabled = false
[sms]
base_url = "{sms_url}"
account_sid = "{sid}"
auth_token = "{token}"
from = "{from}"
per_second = 1000
base_delay_ms = 1
max_delay_ms = 5
[email]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "Clinic survey <survey@clinic.example.org>"
per_second = 1000
# Locked when it can be (as root, as in CI), as the cache is started here.
[memory]
allow_unlocked = true
[log]
filter = "outreach_worker=debug,info"
"#,
        db = state.join("worker.db").display(),
        key = p("suppression.key"),
        cache_port = tier.cache_port,
        ca = p("ca.pem"),
        cert = p("outreach.pem"),
        ckey = p("outreach.key"),
        grpc = tier.grpc,
        public = tier.public(),
        sid = twilio::SID,
        token = twilio::TOKEN,
        from = twilio::FROM,
        smtp_port = sink.port,
    );
    std::fs::write(state.join("worker.toml"), worker_toml).unwrap();
    for (port, what) in [(tier.cache_port, "cache"), (tier.https, "bridge"), (tier.grpc, "ledger")] {
        wait_for_port(port, what).await;
    }
    let mut worker = Daemon::spawn(
        "outreach-worker",
        &["--config".into(), state.join("worker.toml").display().to_string()],
        &state.join("worker.log"),
    );
    wait_for_port(worker_metrics, "worker metrics").await;
    // Both daemons that hold contacts lock their memory when they can (as root, as in CI).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        for (port, gauge) in
            [(worker_metrics, "outreach_memory_locked"), (tier.cache_metrics, "cache_memory_locked")]
        {
            let page =
                reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
            assert_eq!(metric(&page, gauge), Some(1.0), "{gauge}");
        }
    }

    // 1. The EMR pushes the first 200 appointments, site by site (one certificate per site).
    let (headers, records) = sample();
    let rows: Vec<Row> = records
        .iter()
        .map(|r| r.deserialize(Some(&csv::StringRecord::from(headers.clone()))).unwrap())
        .collect();
    let first: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].row_id.as_str() <= "R00200").collect();
    let later: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].row_id.as_str() > "R00200").collect();
    let mut guid_of = BTreeMap::new();
    for site in ["site-1001", "site-1002", "site-1003"] {
        let mine: Vec<&csv::StringRecord> =
            first.iter().filter(|&&i| rows[i].site_id == site).map(|&i| &records[i]).collect();
        let file = outside.join(format!("{site}.csv"));
        write_csv(&file, &headers, &mine);
        let map = outside.join(format!("{site}.guids.csv"));
        let (code, out, err) = tier.push(site, &file, &map, &[]);
        assert_eq!(code, Some(0), "{out}\n{err}");
        for line in std::fs::read_to_string(&map).unwrap().lines().skip(1) {
            let mut cells = line.split(',');
            guid_of.insert(cells.next().unwrap().to_string(), cells.next().unwrap().to_string());
        }
    }
    assert_eq!(guid_of.len(), first.len(), "a GUID per row");

    // 2. The worker sends every invitation, and the cache forgets each contact once sent.
    wait_until("the cache to send and forget every contact", 120, async || {
        tier.cache_entries().await == Some(0.0)
    })
    .await;
    let public = tier.public();
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for s in sms.seen() {
        for guid in links(&s.body, &public) {
            *sent.entry(guid).or_default() += 1;
        }
    }
    for mail in sink.messages() {
        let text = mail.part("text/plain").unwrap_or_default();
        for guid in links(&text, &public).into_iter().collect::<BTreeSet<_>>() {
            *sent.entry(guid).or_default() += 1;
        }
    }
    assert_eq!(sent.len(), first.len(), "one invitation per contact");
    assert!(sent.values().all(|&n| n == 1), "none twice");
    for i in &first {
        assert!(sent.contains_key(&guid_of[&rows[*i].row_id]), "row {} invited", rows[*i].row_id);
    }

    // 3. Patients answer through the pages; R00001 declines.
    let http = https_client(&pki.join("ca.pem"), ([127, 0, 0, 1], tier.https).into());
    let decliner = &rows[0];
    assert_eq!(decliner.row_id, "R00001");
    decline(&http, &public, &guid_of["R00001"]).await;
    let chromium = if browser::chromium_present() {
        Some(browser::Chromium::launch(&Bridge { pki: pki.clone() }).await)
    } else {
        None
    };
    let prov_a1: Vec<&Row> = first
        .iter()
        .map(|&i| &rows[i])
        .filter(|r| r.provider_id == "prov-a1" && r.site_id == "site-1001")
        .collect();
    let mut answered: u64 = 0;
    for (n, row) in prov_a1.iter().enumerate() {
        if row.row_id == "R00001" || n % 4 == 3 {
            continue; // some never answer
        }
        if n < 2 && chromium.is_some() {
            continue; // these two answer in the browser, below
        }
        let listened = if n % 7 == 0 { "rarely" } else { "always" };
        answer(&http, &public, &guid_of[&row.row_id], 6 + (n % 5) as u32, listened).await;
        answered += 1;
    }
    if let Some(chromium) = chromium {
        for row in prov_a1.iter().take(2) {
            assert_ne!(row.row_id, "R00001", "the decliner is not among the first two");
            answer_in_chromium(&chromium, &public, &guid_of[&row.row_id]).await;
            answered += 1;
        }
        chromium.close().await;
    }
    assert!(answered >= 5, "enough answers for a report ({answered})");
    // The answers wait in the pool until the bridge folds them, a group of at least
    // reports.min_cell (5) at a time: what is left over waits for more, or the month's end.
    wait_until("the answers folded", 60, async || answered - tier.folded() < 5).await;
    let folded = tier.folded();

    // 4. The same patients come back (R00201-R00240 reuse the phones of R00001-R00040): the
    //    one who declined gets nothing; the others are invited again.
    let before = sms.seen().len() + sink.messages().len();
    for site in ["site-1001", "site-1002", "site-1003"] {
        let mine: Vec<&csv::StringRecord> =
            later.iter().filter(|&&i| rows[i].site_id == site).map(|&i| &records[i]).collect();
        if mine.is_empty() {
            continue;
        }
        let file = outside.join(format!("{site}-later.csv"));
        write_csv(&file, &headers, &mine);
        let (code, out, err) = tier.push(site, &file, &outside.join(format!("{site}-later.guids.csv")), &[]);
        assert_eq!(code, Some(0), "{out}\n{err}");
    }
    wait_until("the second visits", 120, async || tier.cache_entries().await == Some(0.0)).await;
    let again = rows.iter().find(|r| r.row_id.as_str() > "R00200" && r.phone == decliner.phone).unwrap();
    assert!(
        sms.seen().iter().filter(|s| s.to == decliner.phone).count() <= 1
            && sink.messages().iter().filter(|m| m.header("To") == Some(decliner.email.as_str())).count()
                <= 1,
        "{} declined, so {} got nothing",
        decliner.row_id,
        again.row_id
    );
    let after = sms.seen().len() + sink.messages().len();
    assert_eq!(after - before, later.len() - 1, "every other returning patient is invited");

    // 5. The provider reads the report: counts, and small cells suppressed.
    let mut account_args = tier.bridge_args();
    account_args.extend(
        ["account", "add", "dr.e2e", "--role", "provider", "--site", "site-1001", "--provider", "prov-a1"]
            .map(String::from),
    );
    let (code, out, err) = run("survey-bridge", &account_args);
    assert_eq!(code, Some(0), "{out}{err}");
    let password =
        out.split("first password: ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    // Reports show released periods only: this month is live, so it is refused, and the
    // default (the latest released quarter) holds nothing of this run yet. The answers are
    // counted all the same, in this month: the bridge's database says so.
    let this_month = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let replies =
        read_reports(&http, &public, "dr.e2e", &password, &["", &format!("?period={this_month}")]).await;
    assert_eq!(replies[0].0, reqwest::StatusCode::OK, "{}", replies[0].1);
    let report: serde_json::Value = serde_json::from_str(&replies[0].1).unwrap();
    assert_eq!(report["provider_id"], "prov-a1");
    assert_eq!(report["status"], "too_few_responses", "{report}");
    assert_eq!(replies[1].0, reqwest::StatusCode::BAD_REQUEST);
    assert!(replies[1].1.contains("not released yet"), "{}", replies[1].1);
    let db = format!("sqlite://{}?mode=ro", tier.state.join("bridge.db").display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db).await.unwrap();
    let counted: i64 = sqlx::query_scalar(
        "SELECT CAST(SUM(responses) AS BIGINT) FROM period_counts WHERE provider_id = 'prov-a1' AND month = $1",
    )
    .bind(&this_month)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(u64::try_from(counted).unwrap(), folded, "the folded answers, counted in {this_month}");

    // 6. A restart empties the cache; contacts pushed for later are gone with it.
    let map = outside.join("restart.guids.csv");
    // Appointments next week: not due before the restart.
    let next_week = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 7)).to_string();
    let at = headers.iter().position(|h| h == "appointment_at").unwrap();
    let future: Vec<csv::StringRecord> = first
        .iter()
        .filter(|&&i| rows[i].site_id == "site-1002")
        .take(3)
        .map(|&i| {
            records[i].iter().enumerate().map(|(n, v)| if n == at { next_week.as_str() } else { v }).collect()
        })
        .collect();
    let file = outside.join("restart.csv");
    write_csv(&file, &headers, &future.iter().collect::<Vec<_>>());
    let (code, out, err) = tier.push("site-1002", &file, &map, &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(tier.cache_entries().await, Some(3.0));
    assert!(cache.stop().success(), "a clean stop");
    let mut cache = tier.start_cache();
    wait_for_port(tier.cache_port, "the restarted cache").await;
    assert_eq!(tier.cache_entries().await, Some(0.0), "nothing survives a restart");
    assert!(worker.running(), "the worker carries on");

    // 7. Every daemon stops cleanly, and nothing the tier wrote holds a phone or an email.
    for daemon in [&mut worker, &mut bridge, &mut cache] {
        let name = daemon.name.clone();
        assert!(daemon.stop().success(), "{name} stops cleanly");
    }
    let files = files_under(&state);
    assert!(
        files.iter().any(|f| f.ends_with("worker.log")) && files.iter().any(|f| f.ends_with("bridge.db"))
    );
    let mut hits = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for row in &rows {
            for value in [row.phone.as_str(), row.phone.trim_start_matches('+'), row.email.as_str()] {
                if !value.is_empty() && text.contains(value) {
                    hits.push(format!("{}: {}", file.display(), row.row_id));
                }
            }
        }
    }
    assert!(hits.is_empty(), "contact data in the tier's files: {hits:?}");
}
