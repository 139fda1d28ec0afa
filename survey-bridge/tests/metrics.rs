//! The bridge's Prometheus port: counts by outcome, the opt-out outbox, reloads and the
//! certificate's end; never a GUID. One bridge in this process: the recorder is
//! process-wide.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{guid, sqlite, start_reloadable, test_config};
use tokio::sync::mpsc;

#[tokio::test]
async fn the_metrics_port_counts_outcomes_and_the_waiting_opt_outs_without_a_guid() {
    let data = tempfile::tempdir().unwrap();
    let (mut config, dir) = test_config(Some(sqlite(data.path())));
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let secret = "a-shared-secret-of-more-than-32-characters";
    let secret_file = config.tls.cert.with_file_name("webhook.secret");
    std::fs::write(&secret_file, secret).unwrap();
    config.webhook = Some(survey_bridge::config::WebhookConfig {
        secret_file,
        ..survey_bridge::config::WebhookConfig::default()
    });
    let (reloads, receiver) = mpsc::channel(1);
    let bridge = start_reloadable(config, Arc::clone(&dir), receiver).await;
    let scrape = async || {
        let url = format!("http://{}/metrics", bridge.metrics.unwrap());
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        response.text().await.unwrap()
    };

    // An unknown link, a survey answered, a decline (no cache is configured: it waits in the
    // outbox), a reload.
    let unknown = guid();
    let status = bridge.http().get(bridge.url(&format!("/s/{unknown}"))).send().await.unwrap().status();
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    let (answered, declined) = (guid(), guid());
    for g in [&answered, &declined] {
        bridge.invite(g, "prov-a1", "en").await;
    }
    bridge.answer_survey(&answered).await;
    bridge.decline(&declined).await;
    // Answers from an external survey for a patient who never agreed: refused, and counted.
    let unconsented = guid();
    bridge.invite(&unconsented, "prov-a1", "en").await;
    let body = serde_json::json!({ "guid": unconsented, "answers": { "overall": 8 } }).to_string();
    let now = bridge.clock.now().as_second();
    let status = bridge
        .http()
        .post(bridge.url("/results"))
        .header("content-type", "application/json")
        .header(survey_bridge::results::TIMESTAMP_HEADER, now.to_string())
        .header(
            survey_bridge::results::SIGNATURE_HEADER,
            survey_bridge::results::sign(secret.as_bytes(), now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    reloads.send(()).await.unwrap();
    let mut text = String::new();
    for _ in 0..200 {
        text = scrape().await;
        if text.contains("bridge_reloads_total") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    for line in [
        r#"bridge_links_refused_total{reason="unknown"} 1"#,
        r#"bridge_consents_total{choice="agree"} 1"#,
        r#"bridge_consents_total{choice="decline"} 1"#,
        r#"bridge_responses_total{result="ok"} 1"#,
        r#"bridge_answers_refused_total{reason="no_consent",source="webhook"} 1"#,
        r#"bridge_reloads_total{result="ok"} 1"#,
        "bridge_opt_outs_waiting 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    // The free share of the audit trail's file system, read at the scrape.
    let free: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("bridge_audit_disk_free_ratio "))
        .expect("bridge_audit_disk_free_ratio")
        .parse()
        .unwrap();
    assert!(free > 0.0 && free <= 1.0, "{free}");
    // The certificate's end, as the test PKI wrote it: some time ahead.
    let expiry = text
        .lines()
        .find_map(|l| l.strip_prefix("bridge_tls_certificate_expiry_timestamp_seconds "))
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!(expiry > jiff::Timestamp::now().as_second() as f64, "{expiry}");
    for g in [&unknown, &answered, &declined, &unconsented] {
        assert!(!text.contains(g.as_str()), "a GUID in the metrics");
    }
    bridge.stop().await.unwrap();
}

/// The binary (another process: the recorder above is not touched) will not start without
/// a port it was told to serve metrics on: exit 69, naming the setting.
#[tokio::test]
async fn a_metrics_port_in_use_stops_the_binary_with_69() {
    let data = tempfile::tempdir().unwrap();
    let (mut config, _dir) = test_config(Some(sqlite(data.path())));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.metrics_listen = Some(taken.local_addr().unwrap());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.grpc_listen = "127.0.0.1:0".parse().unwrap();
    let file = data.path().join("bridge.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_survey-bridge"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("cannot listen on metrics_listen"), "{stderr}");
}
