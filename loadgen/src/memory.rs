//! The memory and sweep run, against a `lab-server` process: resident and locked memory per
//! contact at each checkpoint while filling, then GetContact latency without and during a
//! sweep that erases a day of contacts.
//!
//! The fill stores `old_percent` of the contacts first, moves the server's clock a day on
//! (SIGUSR1), and stores the rest. After the last checkpoint it waits for a scheduled sweep
//! to end (the server's `cache_sweeps_total` metric), measures GetContact for a while with
//! no sweep running, moves the clock another day on (the first day's contacts expire with
//! `retention_days = 2`), and measures GetContact again until the next scheduled sweep has
//! ended. Gets that started inside the sweep (its end, as seen by polling the metric, minus
//! the duration it recorded) make the "during" histogram.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use proto::v1::GetContactRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    conn::BoxError,
    load::{self, Client, Streaming},
    proc,
};

/// Settings of the memory run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The lab server's process id.
    pub pid: u32,
    /// Its metrics address.
    pub metrics: SocketAddr,
    /// Contact counts at which memory is read; the last is the total.
    pub checkpoints: Vec<u64>,
    /// Percent of the total stored on the first day (erased by the sweep).
    pub old_percent: u64,
    /// PutContacts streams during the fill.
    pub streams: usize,
    /// GetContact requests in flight while probing.
    pub concurrency: usize,
    /// How long the no-sweep probe runs.
    pub probe: Duration,
}

/// Writes one line for a run (stdout is for results).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Fills the server, reads its memory at each checkpoint, then probes GetContact around a
/// sweep.
pub async fn run(
    plan: &Plan,
    emr: &[Client],
    outreach: &[Client],
    pool: Arc<Vec<proto::v1::Contact>>,
) -> Result<(), BoxError> {
    let total = *plan.checkpoints.last().ok_or("no checkpoints")?;
    let empty = proc::memory(plan.pid)?;
    say(&format!("MEMORY contacts=0 rss_bytes={} locked_bytes={}", empty.rss, empty.locked));

    let old = total * plan.old_percent / 100;
    let mut stored = 0u64;
    if old > 0 {
        let (report, _) = fill(plan, emr, pool.clone(), "fill-old-day", old, 0).await?;
        say(&report.to_string());
        stored += report.ok;
    }
    next_day(plan.pid)?;
    let mut guids = Vec::new();
    for &checkpoint in &plan.checkpoints {
        if checkpoint > stored {
            let count = checkpoint - stored;
            // Keep about 200 000 GUIDs of the live day for the probes.
            let keep_every = (total / 200_000).max(1);
            let (report, kept) = fill(plan, emr, pool.clone(), "fill", count, keep_every).await?;
            say(&report.to_string());
            stored += report.ok;
            guids.extend(kept);
        }
        let m = proc::memory(plan.pid)?;
        say(&format!(
            "MEMORY contacts={stored} rss_bytes={} locked_bytes={} peak_rss_bytes={} rss_per_contact={:.0} added_rss_per_contact={:.0} all_locked={}",
            m.rss,
            m.locked,
            m.peak_rss,
            m.rss as f64 / stored.max(1) as f64,
            m.rss.saturating_sub(empty.rss) as f64 / stored.max(1) as f64,
            m.locked >= m.rss,
        ));
    }
    if guids.is_empty() {
        return Err("no GUIDs kept for the probes".into());
    }
    let guids = Arc::new(guids);

    say("waiting for a scheduled sweep to end (scans only: nothing has expired yet)");
    let before = Sweeps::read(plan.metrics).await?;
    let scan_only = wait_for_sweep(plan.metrics, before, None).await?;
    say(&format!(
        "SWEEP kind=scan-only seconds={:.3} removed={}",
        scan_only.1 - before.1,
        scan_only.2 - before.2
    ));

    let quiet =
        probe(outreach, guids.clone(), plan.concurrency, Stop::After(plan.probe), plan.metrics).await?;
    let without = histogram_of(&quiet.samples, None);
    say(&format!("GETS phase=no-sweep {}", summary(&without)));

    next_day(plan.pid)?;
    let before = Sweeps::read(plan.metrics).await?;
    let during = probe(outreach, guids, plan.concurrency, Stop::AfterSweep(before), plan.metrics).await?;
    let (ended, after) = during.sweep.ok_or("the sweep did not end")?;
    let seconds = after.1 - before.1;
    let begun = ended.checked_sub(Duration::from_secs_f64(seconds)).unwrap_or(ended);
    let inside = histogram_of(&during.samples, Some((begun, ended)));
    say(&format!("GETS phase=during-sweep {}", summary(&inside)));
    let m = proc::memory(plan.pid)?;
    say(&format!(
        "SWEEP kind=erasing seconds={seconds:.3} removed={} get_p99_ratio={:.2} rss_bytes_after={} locked_bytes_after={}",
        after.2 - before.2,
        inside.value_at_quantile(0.99) as f64 / without.value_at_quantile(0.99).max(1) as f64,
        m.rss,
        m.locked,
    ));
    Ok(())
}

async fn fill(
    plan: &Plan,
    emr: &[Client],
    pool: Arc<Vec<proto::v1::Contact>>,
    name: &str,
    contacts: u64,
    keep_every: u64,
) -> Result<(load::Report, Vec<String>), BoxError> {
    let work = Streaming { name: name.into(), contacts, streams: plan.streams, keep_every };
    let (report, kept) = load::streaming(&work, emr, pool, Some(plan.pid)).await?;
    if report.errors > 0 {
        return Err(format!("the fill failed: {report}").into());
    }
    Ok((report, kept))
}

fn next_day(pid: u32) -> Result<(), BoxError> {
    let pid = libc::pid_t::try_from(pid)?;
    // SAFETY: kill sends a signal and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
        return Err(format!("cannot signal the lab server: {}", std::io::Error::last_os_error()).into());
    }
    // The signal is handled asynchronously: give it a moment before relying on the new day.
    std::thread::sleep(Duration::from_millis(200));
    say("clock moved a day on");
    Ok(())
}

/// Sweeps done, seconds spent sweeping, entries removed: from the server's metrics.
#[derive(Debug, Clone, Copy, Default)]
struct Sweeps(f64, f64, f64);

impl Sweeps {
    async fn read(addr: SocketAddr) -> Result<Sweeps, BoxError> {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        let value = |name: &str| {
            text.lines()
                .filter_map(|line| line.strip_prefix(name))
                .filter(|rest| rest.starts_with(' '))
                .find_map(|rest| rest.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(Sweeps(
            value("cache_sweeps_total"),
            value("cache_sweep_duration_seconds_sum"),
            value("cache_sweep_removed_total"),
        ))
    }
}

async fn wait_for_sweep(
    addr: SocketAddr,
    before: Sweeps,
    stop: Option<&AtomicBool>,
) -> Result<Sweeps, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let now = Sweeps::read(addr).await?;
        if now.0 > before.0 {
            if let Some(stop) = stop {
                stop.store(true, Ordering::Relaxed);
            }
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err("no sweep ended within 150 s: is store.sweep_schedule every minute?".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

enum Stop {
    After(Duration),
    AfterSweep(Sweeps),
}

struct Probe {
    /// When each GetContact started and how long it took (microseconds).
    samples: Vec<(Instant, u64)>,
    /// When the sweep's end was seen, and the metrics then.
    sweep: Option<(Instant, Sweeps)>,
}

async fn probe(
    clients: &[Client],
    guids: Arc<Vec<String>>,
    concurrency: usize,
    stop_when: Stop,
    metrics: SocketAddr,
) -> Result<Probe, BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for task in 0..concurrency.max(1) {
        let mut client = clients[task % clients.len()].clone();
        let (stop, samples, guids, errors) = (stop.clone(), samples.clone(), guids.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut i = task as u64;
            while !stop.load(Ordering::Relaxed) {
                let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
                i += concurrency as u64;
                let guid = guids[h as usize % guids.len()].clone();
                let begun = Instant::now();
                let answer = client.get_contact(GetContactRequest { guid }).await;
                mine.push((begun, u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX).max(1)));
                if let Err(status) = answer {
                    errors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
                    stop.store(true, Ordering::Relaxed);
                }
            }
            samples.lock().unwrap_or_else(PoisonError::into_inner).extend(mine);
        }));
    }
    let sweep = match stop_when {
        Stop::After(d) => {
            tokio::time::sleep(d).await;
            stop.store(true, Ordering::Relaxed);
            None
        }
        Stop::AfterSweep(before) => {
            let after = wait_for_sweep(metrics, before, Some(&*stop)).await;
            stop.store(true, Ordering::Relaxed);
            Some((Instant::now(), after?))
        }
    };
    for task in tasks {
        task.await?;
    }
    if let Some(err) = errors.lock().unwrap_or_else(PoisonError::into_inner).take() {
        return Err(format!("GetContact failed while probing: {err}").into());
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(Probe { samples, sweep })
}

fn histogram_of(samples: &[(Instant, u64)], window: Option<(Instant, Instant)>) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid");
    for (begun, us) in samples {
        if window.is_none_or(|(from, to)| *begun >= from && *begun <= to) {
            h.saturating_record(*us);
        }
    }
    h
}

fn summary(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "gets={} p50_us={} p99_us={} p999_us={} max_us={}",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
    s
}
