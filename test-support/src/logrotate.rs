//! Running the shipped logrotate files against a running daemon.

use std::{path::Path, process::Command};

/// Whether logrotate runs here; when it does not, a note (or a failure with
/// DEPLOY_REQUIRE_LOGROTATE=1, as in CI).
pub fn have_logrotate() -> bool {
    let found = Command::new("logrotate").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("DEPLOY_REQUIRE_LOGROTATE").as_deref() != Ok("1"),
            "logrotate is not on PATH and DEPLOY_REQUIRE_LOGROTATE=1 asks for it"
        );
        eprintln!("note: logrotate is not on PATH; skipping (set DEPLOY_REQUIRE_LOGROTATE=1 to require it)");
    }
    found
}

/// `<user> <group>` of this process, as a logrotate `create` line names them.
pub fn user_and_group() -> String {
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).output().expect("id runs");
        String::from_utf8(out.stdout).expect("id prints UTF-8").trim().to_string()
    };
    format!("{} {}", id("-un"), id("-gn"))
}

/// Writes `config` (a shipped file with this test's paths, user and signal in place) into
/// `dir` and runs logrotate on it once, forced, with its state in `dir`; panics unless it
/// succeeds.
pub fn rotate_now(dir: &Path, config: &str) {
    let conf = dir.join("logrotate.conf");
    std::fs::write(&conf, config).expect("the logrotate configuration written");
    let output = Command::new("logrotate")
        .arg("--force")
        .arg("--state")
        .arg(dir.join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("logrotate runs");
    assert!(output.status.success(), "logrotate: {}", String::from_utf8_lossy(&output.stderr));
}
