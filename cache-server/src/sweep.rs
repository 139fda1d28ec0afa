//! The daily sweep: erases expired contacts and destroys their day keys, on a cron schedule.

use std::{sync::Arc, time::Instant};

use tokio::sync::oneshot;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tracing::{error, info};

use crate::{
    audit::{Action, Actor, Audit, Event},
    clock::day_start,
    store::{Store, SweepReport},
};

/// Starts a scheduler that sweeps `store` on `schedule` (cron with seconds, UTC).
pub async fn start(
    schedule: &str,
    store: Arc<Store>,
    audit: Arc<Audit>,
) -> Result<JobScheduler, JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let job = Job::new_async(schedule, move |_, _| {
        let (store, audit) = (store.clone(), audit.clone());
        Box::pin(async move {
            run(store, &audit).await;
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    Ok(scheduler)
}

/// The nice value of the sweep's thread: below the threads that serve calls, so that on a
/// busy machine the sweep takes the CPU they leave rather than theirs.
const SWEEP_NICE: libc::c_int = 10;

/// Sweeps `store` once, on a thread of its own at a lower priority ([`SWEEP_NICE`]), and
/// records what it did in the metrics, the log and the audit trail.
pub async fn run(store: Arc<Store>, audit: &Audit) -> Option<SweepReport> {
    let started = Instant::now();
    let (done, report) = oneshot::channel();
    let spawned = std::thread::Builder::new().name("cache-sweep".into()).spawn(move || {
        // SAFETY: setpriority with PRIO_PROCESS and a thread id changes that thread's nice
        // value (Linux); it reads and writes no memory of ours. A failure leaves it as is.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, SWEEP_NICE);
        }
        let _ = done.send(store.sweep());
    });
    if let Err(err) = spawned {
        error!(cause = %err, "cannot start the sweep");
        return None;
    }
    let report = match report.await {
        Ok(report) => report,
        Err(_) => {
            error!("sweep failed");
            return None;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    metrics::histogram!("cache_sweep_duration_seconds").record(seconds);
    metrics::counter!("cache_sweep_removed_total").increment(report.removed as u64);
    metrics::counter!("cache_sweeps_total").increment(1);
    metrics::counter!("cache_day_keys_destroyed_total").increment(report.keys_destroyed.len() as u64);
    metrics::gauge!("cache_last_sweep_timestamp_seconds").set(report.at.as_second() as f64);
    info!(
        removed = report.removed,
        day_keys_destroyed = report.keys_destroyed.len(),
        seconds,
        "sweep completed"
    );
    let mut event = Event::new(Action::SweepCompleted, "ok", Actor::System);
    event.count = Some(report.removed as u64);
    let mut audited = audit.record(event);
    for day in &report.keys_destroyed {
        let date = day_start(*day).to_string();
        let mut event = Event::new(Action::DayKeyDestroyed, "ok", Actor::System);
        event.detail = Some(date.get(..10).unwrap_or(&date));
        audited = audited.and(audit.record(event));
    }
    if let Err(err) = audited {
        error!(cause = %err, "cannot audit the sweep");
    }
    Some(report)
}
