//! Support for the end-to-end tests: the tier's binaries as real processes on loopback
//! ports, each with its log in the state folder, stopped by SIGTERM (or killed) when done.
//!
//! The binaries are those `cargo test --workspace` built next to this test
//! (`target/debug/`): cache-server, survey-bridge, outreach-worker and emr-connector all have
//! integration tests, so cargo builds them before any test runs.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// The path of a workspace binary built beside the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/tier-<hash> -> target/debug/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target/debug");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo test --workspace)",
        path.display()
    );
    path
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Waits until `127.0.0.1:port` accepts connections.
pub async fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `done` every 100 ms for up to `seconds`.
pub async fn wait_until(what: &str, seconds: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running daemon. Dropping it kills it.
#[derive(Debug)]
pub struct Daemon {
    /// Its name, for messages.
    pub name: String,
    /// Its stderr, in the state folder.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `bin(name)` with `args`, stderr to `log`.
    pub fn spawn(name: &str, args: &[String], log: &Path) -> Daemon {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("the log file");
        let child = Command::new(bin(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        Daemon { name: name.to_string(), log: log.to_path_buf(), child: Some(child) }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on the pid of a child we have not yet waited for.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        child.wait().expect("its exit")
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `bin(name)` with `args` to completion; returns the exit code, stdout and stderr.
pub fn run(name: &str, args: &[String]) -> (Option<i32>, String, String) {
    let out = Command::new(bin(name)).args(args).output().unwrap_or_else(|e| panic!("{name}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The value of the metric line that starts with `name` (with its labels, if any) in a
/// Prometheus text page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}
