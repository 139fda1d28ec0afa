//! Helpers of the deploy files' checks (`deploy_files.rs`, `deploy_alerts.rs`,
//! `deploy_certificates.rs`): where things are, the daemons as deployed, optional tools.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

// ---------------------------------------------------------------------------------------
// Where things are
// ---------------------------------------------------------------------------------------

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One daemon as deployed: its unit, user, directories and example configuration.
pub struct Daemon {
    pub unit: &'static str,
    pub binary: &'static str,
    pub user: &'static str,
    pub config_dir: &'static str,
    pub config_file: &'static str,
    pub example: &'static str,
}

pub const DAEMONS: [Daemon; 3] = [
    Daemon {
        unit: "cache-server",
        binary: "cache-server",
        user: "contact-cache",
        config_dir: "/etc/contact-cache",
        config_file: "/etc/contact-cache/cache-server.toml",
        example: "cache-server.example.toml",
    },
    Daemon {
        unit: "survey-bridge",
        binary: "survey-bridge",
        user: "survey-bridge",
        config_dir: "/etc/survey-bridge",
        config_file: "/etc/survey-bridge/survey-bridge.toml",
        example: "survey-bridge.example.toml",
    },
    Daemon {
        unit: "outreach-worker",
        binary: "outreach-worker",
        user: "outreach-worker",
        config_dir: "/etc/outreach-worker",
        config_file: "/etc/outreach-worker/outreach-worker.toml",
        example: "outreach-worker.example.toml",
    },
];

// ---------------------------------------------------------------------------------------
// Optional tools
// ---------------------------------------------------------------------------------------

/// Whether `tool` runs here (`openssl version`, `<tool> --version` for the others). When it
/// does not: a note on stderr, or a failure when the environment variable `require` is 1.
pub fn have(tool: &str, require: &str) -> bool {
    let probe = if tool == "openssl" { "version" } else { "--version" };
    let found = Command::new(tool).arg(probe).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var(require).as_deref() != Ok("1"),
            "{tool} is not on PATH and {require}=1 asks for it"
        );
        eprintln!("note: {tool} is not on PATH; skipping its checks (set {require}=1 to require it)");
    }
    found
}

pub fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}
