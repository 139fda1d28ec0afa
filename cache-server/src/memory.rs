//! Keeps a daemon's memory out of swap and out of core dumps: the cache's, and the outreach
//! worker's, which holds each contact in the clear while it sends.
//!
//! At start-up: no core files (`RLIMIT_CORE` = 0), not dumpable or ptrace-attachable by
//! other users (`PR_SET_DUMPABLE` = 0), and every page locked in RAM, now and in future
//! (`mlockall(MCL_CURRENT | MCL_FUTURE)`). Locking needs `CAP_IPC_LOCK` or a large enough
//! `RLIMIT_MEMLOCK`; without it the daemon refuses to start, unless the operator allowed it
//! to run unlocked.

use std::io;

use tracing::{error, info};

/// Memory protection could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Core dumps could not be switched off.
    #[error("cannot disable core dumps: {0}")]
    Core(io::Error),
    /// The process could not be made non-dumpable.
    #[error("cannot clear the dumpable flag: {0}")]
    Dumpable(io::Error),
    /// Memory could not be locked and running unlocked was not allowed.
    #[error(
        "cannot lock memory ({0}); give the daemon CAP_IPC_LOCK or LimitMEMLOCK=infinity, or set memory.allow_unlocked = true for development only"
    )]
    Lock(io::Error),
}

/// What protection is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// Whether all memory is locked.
    pub locked: bool,
}

/// Disables core dumps, clears the dumpable flag and locks all memory. The caller reports
/// the outcome in its own metric (`cache_memory_locked`, `outreach_memory_locked`).
pub fn protect(allow_unlocked: bool) -> Result<Protection, MemoryError> {
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } != 0 {
        return Err(MemoryError::Core(io::Error::last_os_error()));
    }
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(MemoryError::Dumpable(io::Error::last_os_error()));
    }
    // SAFETY: mlockall changes only the residency of our own pages.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        let err = io::Error::last_os_error();
        if !allow_unlocked {
            return Err(MemoryError::Lock(err));
        }
        error!(
            cause = %err,
            "MEMORY IS NOT LOCKED: contact data may be written to swap; memory.allow_unlocked is set, which is for development only"
        );
        return Ok(Protection { locked: false });
    }
    info!(locked_kib = locked_kib().unwrap_or(0), "memory locked, core dumps off");
    Ok(Protection { locked: true })
}

/// The process's locked memory (`VmLck` in `/proc/self/status`), in KiB.
pub fn locked_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmLck:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
