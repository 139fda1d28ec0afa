//! The bridge's Prometheus page: every metric has help text, the build information and the
//! process metrics are there, and nothing names a patient or a link. One bridge in this
//! process: the recorder is process-wide.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::{guid, sqlite, start_with, test_config};

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
    let data = tempfile::tempdir().unwrap();
    let (mut config, dir) = test_config(Some(sqlite(data.path())));
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let bridge = start_with(config, dir).await;

    // Something of each kind first: an unknown link, a survey answered, a decline.
    let unknown = guid();
    let status = bridge.http().get(bridge.url(&format!("/s/{unknown}"))).send().await.unwrap().status();
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    let (answered, declined) = (guid(), guid());
    for g in [&answered, &declined] {
        bridge.invite(g, "prov-a1", "en").await;
    }
    bridge.answer_survey(&answered).await;
    bridge.decline(&declined).await;

    let url = format!("http://{}/metrics", bridge.metrics.unwrap());
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let text = response.text().await.unwrap();
    assert_described(&text);
    assert!(text.contains(r#"bridge_consents_total{choice="agree"} 1"#), "{text}");
    let build_info = format!(r#"bridge_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION"));
    assert!(text.lines().any(|l| l == build_info), "no {build_info} in\n{text}");
    assert!(value(&text, "process_resident_memory_bytes") > 0.0, "{text}");
    assert!(value(&text, "process_open_fds") > 0.0, "{text}");
    assert!(value(&text, "process_start_time_seconds") > 1.6e9, "{text}");
    for g in [&unknown, &answered, &declined] {
        assert!(!text.contains(g.as_str()) && !text.contains(&g.replace('-', "")), "a GUID in the metrics");
    }
    assert!(!text.contains('@'), "an email address in the metrics:\n{text}");
    bridge.stop().await.unwrap();
}
