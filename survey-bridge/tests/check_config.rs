//! `survey-bridge check-config`, the binary: 0 when the bridge would start with the
//! configuration, 64 naming the first thing that would stop it; nothing bound or served.
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, process::Output};

use common::{sqlite, start};
use survey_bridge::config::BridgeConfig;

/// Points one setting of a configuration at a file that does not exist.
type Break = fn(&mut BridgeConfig, &Path);

/// Runs `survey-bridge --config <config> check-config`.
fn check(config: &BridgeConfig, dir: &Path) -> Output {
    let file = dir.join("check.toml");
    std::fs::write(&file, toml::to_string(config).unwrap()).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_survey-bridge"))
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_usable_configuration_passes_and_each_unusable_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |_| {}).await;
    // Checked beside the running bridge (whose files the configuration names): nothing is
    // bound, so nothing clashes.
    let config = bridge.config.clone();

    let ok = check(&config, dir.path());
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert_eq!(ok.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("config ok"), "{stderr}");

    let missing = dir.path().join("no-such-file");
    let cases: [(&str, Break); 3] = [
        ("certificate", |c, p| c.tls.cert = p.to_path_buf()),
        ("link key", |c, p| c.key_file = p.to_path_buf()),
        ("audit key", |c, p| c.audit.key_file = p.to_path_buf()),
    ];
    for (what, break_it) in cases {
        let mut bad = config.clone();
        break_it(&mut bad, &missing);
        let refused = check(&bad, dir.path());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(64), "{what}: {stderr}");
        assert!(stderr.contains("no-such-file"), "{what}: the file is named: {stderr}");
    }
    bridge.stop().await.unwrap();
}
