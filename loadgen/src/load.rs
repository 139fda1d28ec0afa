//! The drivers: unary PutContact/GetContact mixes and streaming PutContacts, a fixed number
//! of requests with a fixed number in flight, latencies in an HDR histogram.

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use proto::v1::{Contact, GetContactRequest, PutContactRequest, contact_cache_client::ContactCacheClient};
use tonic::transport::Channel;

use crate::{conn::BoxError, h2c::H2Client, proc, sample};

/// A cache client on one connection.
pub type Client = ContactCacheClient<Channel>;

/// A connection for unary calls: tonic's client, or the lean one of [`crate::h2c`].
#[derive(Debug, Clone)]
pub enum Conn {
    /// tonic over its hyper channel.
    Tonic(Client),
    /// gRPC frames on `h2` directly.
    H2(H2Client),
}

impl Conn {
    async fn put(&mut self, contact: Contact) -> Result<(), String> {
        let request = PutContactRequest { contact: Some(contact) };
        match self {
            Conn::Tonic(client) => client.put_contact(request).await.map(drop).map_err(status_text),
            Conn::H2(client) => client.unary("PutContact", &request).await,
        }
    }

    async fn get(&mut self, guid: String) -> Result<(), String> {
        let request = GetContactRequest { guid };
        match self {
            Conn::Tonic(client) => client.get_contact(request).await.map(drop).map_err(status_text),
            Conn::H2(client) => client.unary("GetContact", &request).await,
        }
    }
}

fn status_text(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// What a run did and how fast.
#[derive(Debug)]
pub struct Report {
    /// The scenario's name.
    pub name: String,
    /// Requests (or streamed contacts) answered OK.
    pub ok: u64,
    /// Requests (or items) answered with an error.
    pub errors: u64,
    /// The first error, to say what went wrong (never contact data: statuses only).
    pub first_error: Option<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency of each request (each item, for streams), in microseconds.
    pub latency: Histogram<u64>,
    /// CPU seconds the server used during the run, if its pid was given.
    pub server_cpu: Option<f64>,
    /// CPU seconds this process used during the run.
    pub client_cpu: Option<f64>,
}

impl Report {
    /// Requests (or contacts) per second.
    pub fn per_second(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = (self.ok + self.errors).max(1) as f64;
        let q = |q: f64| self.latency.value_at_quantile(q);
        write!(
            f,
            "RESULT scenario={} ok={} errors={} seconds={:.3} per_second={:.0} p50_us={} p99_us={} p999_us={} max_us={}",
            self.name,
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            q(0.5),
            q(0.99),
            q(0.999),
            self.latency.max(),
        )?;
        if let Some(cpu) = self.server_cpu {
            write!(f, " server_cpu_us_per_req={:.1}", cpu * 1e6 / total)?;
        }
        if let Some(cpu) = self.client_cpu {
            write!(f, " client_cpu_us_per_req={:.1}", cpu * 1e6 / total)?;
        }
        if let Some(err) = &self.first_error {
            write!(f, " first_error={err:?}")?;
        }
        Ok(())
    }
}

/// Measures CPU use of the server and of this process around a run.
#[derive(Debug)]
pub struct CpuMeter {
    server: Option<(u32, f64)>,
    client: Option<f64>,
}

impl CpuMeter {
    /// Starts measuring; `server_pid` is the cache server's process, if known.
    pub fn start(server_pid: Option<u32>) -> Self {
        CpuMeter {
            server: server_pid.and_then(|pid| proc::cpu_seconds(pid).ok().map(|s| (pid, s))),
            client: proc::cpu_seconds(std::process::id()).ok(),
        }
    }

    /// CPU seconds of the server and of this process since [`CpuMeter::start`].
    pub fn stop(&self) -> (Option<f64>, Option<f64>) {
        let server = self.server.and_then(|(pid, s)| proc::cpu_seconds(pid).ok().map(|e| e - s));
        let client = self.client.and_then(|s| proc::cpu_seconds(std::process::id()).ok().map(|e| e - s));
        (server, client)
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000)
}

/// A pool of contacts to send, so that making them costs the run nothing.
pub fn contact_pool(site: &str, value_size: Option<usize>, n: usize) -> Arc<Vec<Contact>> {
    Arc::new(
        (0..n as u64)
            .map(|i| match value_size {
                Some(size) => sample::sized(site, i, size),
                None => sample::realistic(site, i),
            })
            .collect(),
    )
}

/// A unary workload: the share of GetContact among the requests, in percent (0: all
/// PutContact, 100: all GetContact).
#[derive(Debug, Clone)]
pub struct Unary {
    /// The scenario's name in the report.
    pub name: String,
    /// Percent of requests that are GetContact.
    pub get_percent: u8,
    /// Requests in all.
    pub requests: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
}

struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Tally { ok: 0, errors: 0, first_error: None, latency: histogram() }
    }

    fn error(&mut self, err: impl fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(err.to_string());
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    /// The report of a run named `name` that took `elapsed`, with the CPU `cpu` measured.
    fn report(self, name: &str, elapsed: Duration, cpu: &CpuMeter) -> Report {
        let (server_cpu, client_cpu) = cpu.stop();
        Report {
            name: name.to_string(),
            ok: self.ok,
            errors: self.errors,
            first_error: self.first_error,
            elapsed,
            latency: self.latency,
            server_cpu,
            client_cpu,
        }
    }
}

/// Runs a unary workload: puts over `put_clients` (an EMR connector's connections), gets of
/// `guids` over `get_clients` (the outreach worker's). Request `i` goes on connection
/// `task % connections`.
pub async fn unary(
    work: &Unary,
    put_clients: &[Conn],
    get_clients: &[Conn],
    pool: Arc<Vec<Contact>>,
    guids: Arc<Vec<String>>,
    server_pid: Option<u32>,
) -> Result<Report, BoxError> {
    if work.get_percent > 0 && (guids.is_empty() || get_clients.is_empty()) {
        return Err("GetContact needs stored GUIDs and outreach connections".into());
    }
    if work.get_percent < 100 && (put_clients.is_empty() || pool.is_empty()) {
        return Err("PutContact needs EMR connections".into());
    }
    let next = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start(server_pid);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(work.concurrency);
    for task in 0..work.concurrency.max(1) {
        let mut put = (!put_clients.is_empty()).then(|| put_clients[task % put_clients.len()].clone());
        let mut get = (!get_clients.is_empty()).then(|| get_clients[task % get_clients.len()].clone());
        let (next, pool, guids) = (next.clone(), pool.clone(), guids.clone());
        let (requests, get_percent) = (work.requests, u64::from(work.get_percent));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                // A fixed scramble of i: the same mix and GUID order on every run.
                let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
                let is_get = h % 100 < get_percent;
                let begun = Instant::now();
                let answer = match (is_get, &mut get, &mut put) {
                    (true, Some(client), _) => {
                        let guid = guids[(h >> 8) as usize % guids.len()].clone();
                        client.get(guid).await
                    }
                    (false, _, Some(client)) => client.put(pool[i as usize % pool.len()].clone()).await,
                    _ => Err("no connection for this request".to_string()),
                };
                tally.latency.saturating_record(micros(begun.elapsed()));
                match answer {
                    Ok(()) => tally.ok += 1,
                    Err(err) => tally.error(err),
                }
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for task in tasks {
        total.merge(task.await?);
    }
    Ok(total.report(&work.name, started.elapsed(), &cpu))
}

/// A streaming workload: `contacts` in all over `streams` concurrent PutContacts streams.
#[derive(Debug, Clone)]
pub struct Streaming {
    /// The scenario's name in the report.
    pub name: String,
    /// Contacts in all.
    pub contacts: u64,
    /// Streams open at once (spread over the connections).
    pub streams: usize,
    /// Keep the GUID of every n-th stored contact (0: keep none).
    pub keep_every: u64,
}

/// Runs a streaming workload over `clients`; returns the report and the GUIDs kept.
pub async fn streaming(
    work: &Streaming,
    clients: &[Client],
    pool: Arc<Vec<Contact>>,
    server_pid: Option<u32>,
) -> Result<(Report, Vec<String>), BoxError> {
    if clients.is_empty() || pool.is_empty() {
        return Err("PutContacts needs EMR connections".into());
    }
    let streams = work.streams.max(1) as u64;
    let cpu = CpuMeter::start(server_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let share = work.contacts / streams + u64::from(s < work.contacts % streams);
        let mut client = clients[s as usize % clients.len()].clone();
        let pool = pool.clone();
        let keep_every = work.keep_every;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut kept = Vec::new();
            // When each item was handed to the transport, in order: results come back in order.
            let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
            let sent_by_body = sent.clone();
            let offset = s as usize * 7919;
            let body = futures_util::stream::iter(0..share).map(move |j| {
                sent_by_body.lock().unwrap_or_else(PoisonError::into_inner).push_back(Instant::now());
                let contact = pool[(offset + j as usize) % pool.len()].clone();
                PutContactRequest { contact: Some(contact) }
            });
            let mut results = match client.put_contacts(body).await {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    tally.error(format_args!("{:?}: {}", status.code(), status.message()));
                    return (tally, kept);
                }
            };
            loop {
                match results.message().await {
                    Ok(Some(result)) => {
                        let begun = sent.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
                        if let Some(begun) = begun {
                            tally.latency.saturating_record(micros(begun.elapsed()));
                        }
                        match result.error {
                            None => {
                                if keep_every > 0 && result.index % keep_every == 0 {
                                    kept.push(result.guid);
                                }
                                tally.ok += 1;
                            }
                            Some(e) => {
                                tally.error(format_args!("item code {} {}: {}", e.code, e.field, e.message))
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tally.error(format_args!("{:?}: {}", status.code(), status.message()));
                        break;
                    }
                }
            }
            (tally, kept)
        }));
    }
    let mut total = Tally::new();
    let mut guids = Vec::new();
    for task in tasks {
        let (tally, kept) = task.await?;
        total.merge(tally);
        guids.extend(kept);
    }
    Ok((total.report(&work.name, started.elapsed(), &cpu), guids))
}
