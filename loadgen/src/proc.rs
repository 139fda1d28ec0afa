//! What `/proc` says about a process: CPU time used, resident and locked memory.

use std::{fs, io};

/// CPU seconds (user + system) that process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| bad("stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; after ')' the state is field 3, so index 11, 12.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or_else(|| bad("stat"));
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf reads a constant and touches no memory of ours.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = if per_second > 0 { per_second as f64 } else { 100.0 };
    Ok(total as f64 / per_second)
}

/// Resident and locked memory of process `pid`, in bytes (`VmRSS`, `VmLck`, `VmHWM`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident set.
    pub rss: u64,
    /// Locked.
    pub locked: u64,
    /// Peak resident set.
    pub peak_rss: u64,
}

/// Reads [`Memory`] of process `pid`.
pub fn memory(pid: u32) -> io::Result<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> io::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .ok_or_else(|| bad(name))
    };
    Ok(Memory { rss: field("VmRSS:")?, locked: field("VmLck:")?, peak_rss: field("VmHWM:")? })
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unexpected /proc format ({what})"))
}
