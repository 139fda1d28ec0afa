//! The `cache-loadgen` and `cache-lab-server` binaries' flags: a bad one exits 64 (EX_USAGE,
//! not clap's 2) and names itself; `--help` exits 0 and says what each exit code means;
//! `--version` exits 0.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

const LOADGEN: &str = env!("CARGO_BIN_EXE_cache-loadgen");
const LAB: &str = env!("CARGO_BIN_EXE_cache-lab-server");

fn run(bin: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } = Command::new(bin).args(args).output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn a_bad_flag_exits_64_naming_it_loadgen() {
    let (code, _, stderr) = run(LOADGEN, &["--no-such-flag"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn a_bad_flag_after_a_subcommand_exits_64_loadgen() {
    let (code, _, stderr) = run(LOADGEN, &["run", "--no-such-flag"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn help_lists_every_exit_code_loadgen() {
    let (code, stdout, stderr) = run(LOADGEN, &["--help"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("Exit codes:"), "{stdout}");
    for exit in [0, 1, 64, 70] {
        let listed = stdout.lines().any(|l| l.trim_start().starts_with(&format!("{exit} ")));
        assert!(listed, "exit code {exit} not in\n{stdout}");
    }
    let (code, stdout, _) = run(LOADGEN, &["--version"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}

#[test]
fn a_bad_flag_exits_64_naming_it_lab() {
    let (code, _, stderr) = run(LAB, &["--no-such-flag"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn help_lists_every_exit_code_lab() {
    let (code, stdout, stderr) = run(LAB, &["--help"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("Exit codes:"), "{stdout}");
    for exit in [0, 64, 69, 70] {
        let listed = stdout.lines().any(|l| l.trim_start().starts_with(&format!("{exit} ")));
        assert!(listed, "exit code {exit} not in\n{stdout}");
    }
    let (code, stdout, _) = run(LAB, &["--version"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}
