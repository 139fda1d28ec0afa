//! The real `cache-server` binary's Prometheus page: every metric has help text, the build
//! information and the process metrics are there, and nothing names a patient.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::collections::HashMap;

use common::contact;
use daemon::{Launch, setup, spawn};
use proto::v1::{GetContactRequest, PutContactRequest};

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
    assert!(typed > 10, "{typed} metrics in\n{text}");
}

/// The value of the sample line `name value`.
fn value(text: &str, name: &str) -> f64 {
    let prefix = format!("{name} ");
    let line = text.lines().find_map(|l| l.strip_prefix(&prefix));
    line.unwrap_or_else(|| panic!("no {name} in\n{text}")).parse().unwrap()
}

#[tokio::test]
async fn every_metric_has_help_and_build_info_and_the_process_metrics_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    let args = vec!["--allow-unlocked".to_string()];
    let daemon = spawn(&config, dir.path(), Launch { args, ..Launch::default() }).await;

    // Some traffic first, so that the request counters exist: contacts stored and read back.
    let mut emr = daemon.client("emr-site-1001").await;
    let mut outreach = daemon.client("outreach").await;
    let mut planted = Vec::new();
    for n in 0..3 {
        let contact = contact(7300 + n);
        planted.extend([contact.phone.clone(), contact.phone[2..].to_string(), contact.email.clone()]);
        let request = PutContactRequest { contact: Some(contact) };
        let guid = emr.put_contact(request).await.unwrap().into_inner().guid;
        outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap();
        planted.push(guid);
    }

    let page = daemon.metrics().await;
    let (head, text) = page.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_described(text);
    assert!(text.contains(r#"cache_requests_total{rpc="PutContact",code="ok"} 3"#), "{text}");
    let build_info = format!(r#"cache_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION"));
    assert!(text.lines().any(|l| l == build_info), "no {build_info} in\n{text}");
    assert!(value(text, "process_resident_memory_bytes") > 0.0, "{text}");
    assert!(value(text, "process_open_fds") > 0.0, "{text}");
    let started = value(text, "process_start_time_seconds");
    assert!(started > 1.6e9 && started <= jiff::Timestamp::now().as_second() as f64 + 1.0, "{started}");
    assert!(text.contains("process_cpu_seconds_total"), "{text}");
    for value in &planted {
        assert!(!text.contains(value.as_str()), "{value} in the metrics");
    }
    assert!(!text.contains('@'), "an email address in the metrics:\n{text}");

    let (status, _) = daemon.terminate().await;
    assert_eq!(status.code(), Some(0));
}
