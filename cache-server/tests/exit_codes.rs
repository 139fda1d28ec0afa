//! The `cache-server` binary's flags: a bad one exits 64 (EX_USAGE) and names itself;
//! `--help` exits 0 and says what each exit code means; `--version` exits 0.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_cache-server");

fn run(bin: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } = Command::new(bin).args(args).output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn a_bad_flag_exits_64_naming_it() {
    let (code, _, stderr) = run(BIN, &["--no-such-flag"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn a_bad_flag_after_a_subcommand_exits_64() {
    let (code, _, stderr) = run(BIN, &["check-config", "--no-such-flag"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn help_lists_every_exit_code() {
    let (code, stdout, stderr) = run(BIN, &["--help"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("Exit codes:"), "{stdout}");
    for exit in [0, 64, 69, 70, 71] {
        let listed = stdout.lines().any(|l| l.trim_start().starts_with(&format!("{exit} ")));
        assert!(listed, "exit code {exit} not in\n{stdout}");
    }
    let (code, stdout, _) = run(BIN, &["--version"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}
