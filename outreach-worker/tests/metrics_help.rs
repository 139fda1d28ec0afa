//! The worker binary's Prometheus page: every metric has help text, the build information
//! and the process metrics are there, and nothing names a patient. The binary, not `run` in
//! this process: the descriptions and the build information are set up by its `main`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::HashMap,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cache_server::clock::Clock;
use common::{
    smtp::free_port,
    tier::{Tier, contact},
};

const PHONE: &str = "+16139990151";

/// The worker process, killed if the test ends before it stops.
struct Worker(std::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts that every `# TYPE` line of `text` has a `# HELP` line with some text.
fn assert_described(text: &str) {
    let help: HashMap<&str, &str> =
        text.lines().filter_map(|l| l.strip_prefix("# HELP ")).filter_map(|l| l.split_once(' ')).collect();
    let mut typed = 0;
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = line.split(' ').next().unwrap();
        let described = help.get(name).is_some_and(|h| !h.trim().is_empty());
        assert!(described, "{name} has no help text in\n{text}");
        typed += 1;
    }
    assert!(typed > 5, "{typed} metrics in\n{text}");
}

/// The value of the sample line `name value`.
fn value(text: &str, name: &str) -> f64 {
    let prefix = format!("{name} ");
    let line = text.lines().find_map(|l| l.strip_prefix(&prefix));
    line.unwrap_or_else(|| panic!("no {name} in\n{text}")).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_has_help_and_build_info_and_the_process_metrics_are_served() {
    let tier = Tier::start_with(Clock::System).await;
    let mut config = tier.worker_config("w.db");
    config.quiet_hours.enabled = false;
    config.worker.poll_seconds = 1;
    let port = free_port();
    config.metrics_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
    let file = tier.path("worker.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    let guid = tier.put(contact(PHONE, "", "en")).await;

    let mut worker = Worker(
        Command::new(env!("CARGO_BIN_EXE_outreach-worker"))
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(tier.path("worker.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // Scraped once the message is sent, so that the contact counters exist.
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = loop {
        assert!(Instant::now() < deadline, "no message sent and counted");
        if let Ok(response) = reqwest::get(&url).await {
            let text = response.text().await.unwrap();
            if text.contains("outreach_contacts_total") {
                break text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Command::new("kill").arg("-TERM").arg(worker.0.id().to_string()).status().unwrap();
    assert!(worker.0.wait().unwrap().success(), "a clean stop on SIGTERM");

    assert_described(&text);
    assert!(
        text.contains(r#"outreach_contacts_total{campaign="c-1",channel="sms",outcome="sent"} 1"#),
        "{text}"
    );
    let build_info = format!(r#"outreach_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION"));
    assert!(text.lines().any(|l| l == build_info), "no {build_info} in\n{text}");
    assert!(value(&text, "process_resident_memory_bytes") > 0.0, "{text}");
    assert!(value(&text, "process_open_fds") > 0.0, "{text}");
    assert!(value(&text, "process_start_time_seconds") > 1.6e9, "{text}");
    assert!(!text.contains(&PHONE[2..]) && !text.contains(&guid), "contact data in the metrics:\n{text}");
    assert!(!text.contains('@'), "an email address in the metrics:\n{text}");
}
