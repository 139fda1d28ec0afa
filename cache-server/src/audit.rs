//! The audit trail: one JSON line per operation and per denial.
//!
//! Each line says when, who (caller name, role, site, peer address), what (an action such
//! as `CONTACT_GET`) and with what result. A GUID appears only as `guid_hmac`, the
//! HMAC-SHA256 of its 16 bytes under the audit key, so an auditor holding the key can find a
//! GUID's events (`cache-server audit-hash`) but the log alone links nothing. No contact
//! field ever enters a line: the event type has no place for one.
//!
//! Writing is fail-closed: if a line cannot be written, [`Audit::record`] returns an error
//! and the request that caused it fails (see the service).
//!
//! Requests are audited through [`Audit::commit`], a group commit: the lines of the requests
//! that are ready on the runtime at the same moment go out in one `write(2)`, and each
//! request goes on only once that write has returned (or fails if it failed). The first
//! request to find no write under way leads: it yields once, so that the other ready
//! requests add their lines, then writes everything pending, and again while more comes.
//!
//! A log opened on a file can be reopened ([`Audit::reopen`], on SIGHUP): after logrotate
//! has renamed the file, the lines from then on go to a new file under the configured name.

use std::{
    fs,
    io::{self, Write},
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
};

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::{auth::Caller, clock::Clock, guid::Guid};

/// What happened, in the cache. (Other parts of the tier name their own actions: an
/// [`Event`] takes any name.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A contact was stored (or refused).
    ContactPut,
    /// A contact was read.
    ContactGet,
    /// A contact was erased.
    ContactDelete,
    /// A contact was opted out.
    OptOut,
    /// Counts were read.
    StatsRead,
    /// Due contacts were leased to the outreach worker; `count` of them.
    OutreachLease,
    /// The outreach worker reported the outcome of one lease; `detail` is the outcome.
    OutreachAck,
    /// The sweep ran; `count` entries were erased.
    SweepCompleted,
    /// A day's key was destroyed; `detail` is the day.
    DayKeyDestroyed,
    /// A connection or call came without a usable identity.
    AuthFailed,
    /// A caller called what its role may not.
    PermissionDenied,
    /// A caller hit the NOT_FOUND limit and is throttled for a while.
    CallerThrottled,
    /// A peer hit the handshake-failure limit and is refused for a while.
    PeerThrottled,
    /// The daemon started; `detail` is the SHA-256 of its configuration.
    ServerStart,
    /// The daemon stopped.
    ServerStop,
    /// The daemon read its certificates again and reopened its audit file; `detail` says
    /// what failed, if anything did (what failed is kept as it was).
    Reload,
}

impl Action {
    /// The name written to the log, e.g. `CONTACT_GET`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ContactPut => "CONTACT_PUT",
            Action::ContactGet => "CONTACT_GET",
            Action::ContactDelete => "CONTACT_DELETE",
            Action::OptOut => "OPT_OUT",
            Action::StatsRead => "STATS_READ",
            Action::OutreachLease => "OUTREACH_LEASE",
            Action::OutreachAck => "OUTREACH_ACK",
            Action::SweepCompleted => "SWEEP_COMPLETED",
            Action::DayKeyDestroyed => "DAY_KEY_DESTROYED",
            Action::AuthFailed => "AUTH_FAILED",
            Action::PermissionDenied => "PERMISSION_DENIED",
            Action::CallerThrottled => "CALLER_THROTTLED",
            Action::PeerThrottled => "PEER_THROTTLED",
            Action::ServerStart => "SERVER_START",
            Action::ServerStop => "SERVER_STOP",
            Action::Reload => "RELOAD",
        }
    }
}

impl<'a> From<Action> for &'a str {
    fn from(action: Action) -> &'a str {
        action.as_str()
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// The daemon itself (start, stop, sweep).
    System,
    /// An identified caller.
    Caller(&'a Caller, Option<SocketAddr>),
    /// A peer with no usable identity.
    Peer(Option<SocketAddr>),
}

/// One audit event.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// What happened, e.g. `CONTACT_GET`.
    pub action: &'a str,
    /// How it ended: `ok`, or a lower-case gRPC code name such as `not_found` or `denied`.
    pub result: &'a str,
    /// Who acted.
    pub actor: Actor<'a>,
    /// The GUID concerned, written only as its HMAC.
    pub guid: Option<&'a Guid>,
    /// A count (entries swept, contacts leased).
    pub count: Option<u64>,
    /// The RPC concerned.
    pub rpc: Option<&'a str>,
    /// A short fixed detail (never request content).
    pub detail: Option<&'a str>,
    /// Write the time as the UTC day only (`2026-12-03`): for events that must not be placed
    /// in time beside others, such as a survey response, which an exact time would tie to
    /// its invitation's other traces.
    pub day_only: bool,
}

impl<'a> Event<'a> {
    /// An event with no GUID, count, RPC or detail.
    pub fn new(action: impl Into<&'a str>, result: &'a str, actor: Actor<'a>) -> Self {
        Event {
            action: action.into(),
            result,
            actor,
            guid: None,
            count: None,
            rpc: None,
            detail: None,
            day_only: false,
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    action: &'a str,
    result: &'a str,
    caller: &'a str,
    role: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guid_hmac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

/// The audit sink could not be written.
#[derive(Debug, thiserror::Error)]
#[error("audit sink failed: {0}")]
pub struct AuditError(#[from] io::Error);

/// Loading the audit key or opening the sink failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditSetupError {
    /// The key file is missing or not 64 hex digits.
    #[error("audit.key_file {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The log file could not be opened for appending.
    #[error("audit.path {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
}

/// The 256-bit key under which GUIDs are hashed.
pub type AuditKey = Zeroizing<[u8; 32]>;

/// Reads a key file: 64 hex digits, surrounding whitespace ignored.
pub fn load_key(path: &Path) -> Result<AuditKey, AuditSetupError> {
    let err = |reason: &str| AuditSetupError::Key { path: path.display().to_string(), reason: reason.into() };
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| err(&e.to_string()))?);
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut key[..]).map_err(|_| err("must hold 64 hex digits"))?;
    Ok(key)
}

/// The HMAC-SHA256 of `guid` under `key`, in hex: how a GUID appears in the audit log.
pub fn guid_hmac(key: &[u8; 32], guid: &Guid) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(guid.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What to undo if the lines of a commit cannot be written (see [`Audit::commit_or_undo`]).
pub type Undo = Box<dyn FnOnce() + Send>;

/// One commit waiting for its write.
struct Waiter {
    /// Told whether its lines were written.
    done: oneshot::Sender<Result<(), io::ErrorKind>>,
    /// Run by the writer if the write failed.
    undo: Option<Undo>,
}

/// Lines waiting for a group commit, and who waits for them.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// One per waiting commit.
    waiters: Vec<Waiter>,
    /// A commit has taken the lead: it will write what is pending.
    led: bool,
}

/// The audit log.
pub struct Audit {
    sink: Mutex<Box<dyn Write + Send>>,
    /// The file the sink appends to, if it is one.
    path: Option<PathBuf>,
    pending: Mutex<Pending>,
    key: AuditKey,
    clock: Clock,
    system_name: &'static str,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").finish_non_exhaustive()
    }
}

impl Audit {
    /// An audit log writing to `sink`.
    pub fn new(sink: Box<dyn Write + Send>, key: AuditKey, clock: Clock) -> Self {
        Audit {
            sink: Mutex::new(sink),
            path: None,
            pending: Mutex::default(),
            key,
            clock,
            system_name: "cache-server",
        }
    }

    /// Names the daemon in its own (system) events; `cache-server` unless told otherwise.
    pub fn with_system_name(mut self, name: &'static str) -> Self {
        self.system_name = name;
        self
    }

    /// An audit log appending to `path` (created owner-only), or to stdout for `-`.
    pub fn open(path: &Path, key: AuditKey, clock: Clock) -> Result<Self, AuditSetupError> {
        if path == Path::new("-") {
            return Ok(Audit::new(Box::new(io::stdout()), key, clock));
        }
        let mut audit = Audit::new(Box::new(append(path)?), key, clock);
        audit.path = Some(path.to_path_buf());
        Ok(audit)
    }

    /// Opens the log's file again by its name (created owner-only if it is gone) and writes
    /// the lines from now on there: what logrotate needs after it has renamed the file.
    /// Gives `false` for a log that is not a file. If the file cannot be opened, the log
    /// goes on writing where it did.
    pub fn reopen(&self) -> Result<bool, AuditSetupError> {
        let Some(path) = &self.path else { return Ok(false) };
        let file = append(path)?;
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = sink.flush();
        *sink = Box::new(file);
        Ok(true)
    }

    /// The hash under which `guid` appears in this log.
    pub fn guid_hmac(&self, guid: &Guid) -> String {
        guid_hmac(&self.key, guid)
    }

    /// Writes one line for `event`. An error means the line is not on record.
    pub fn record(&self, event: Event<'_>) -> Result<(), AuditError> {
        self.record_all(&[event])
    }

    /// Writes one line for each of `events` with a single write (PutContacts audits a batch
    /// of items this way). An error means none of them is on record.
    pub fn record_all(&self, events: &[Event<'_>]) -> Result<(), AuditError> {
        let bytes = self.lines(events)?;
        Ok(self.write(&bytes)?)
    }

    /// Writes one line for each of `events`, together with the lines of the other commits
    /// ready at the same moment (see the module documentation). The lines are made and
    /// queued when this is called, so the future holds none of `events`; it completes once
    /// the write that carried them has returned. An error means none of them is on record.
    ///
    /// If the future is dropped before it completes, its lines may still be written.
    pub fn commit<'a>(
        &'a self,
        events: &[Event<'_>],
    ) -> impl Future<Output = Result<(), AuditError>> + use<'a> {
        self.commit_or_undo(events, None)
    }

    /// [`Audit::commit`], and if the write that carries the lines fails, `undo` runs (on
    /// whichever call wrote them) even if this future was dropped in the meantime: a call
    /// cancelled while its line is being written cannot leave behind what was not audited.
    pub fn commit_or_undo<'a>(
        &'a self,
        events: &[Event<'_>],
        undo: Option<Undo>,
    ) -> impl Future<Output = Result<(), AuditError>> + use<'a> {
        let queued = self.lines(events).map(|bytes| {
            let (done, written) = oneshot::channel();
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.bytes.extend_from_slice(&bytes);
            pending.waiters.push(Waiter { done, undo });
            // The first commit to find no write under way leads. Dropping its guard writes
            // what is pending, even if the future is dropped unpolled or while it yields:
            // the lead is never lost.
            let lead = !std::mem::replace(&mut pending.led, true);
            drop(pending);
            (written, lead.then(|| Leader(self)))
        });
        async move {
            let (written, leader) = queued?;
            if let Some(guard) = leader {
                tokio::task::yield_now().await;
                drop(guard);
            }
            match written.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(kind)) => Err(AuditError(io::Error::new(kind, "the group write failed"))),
                Err(_) => Err(AuditError(io::Error::other("the group write was abandoned"))),
            }
        }
    }

    /// Writes what is pending, in rounds, until nothing is, then gives up the lead.
    fn write_pending(&self) {
        loop {
            let (bytes, waiters) = {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                if pending.waiters.is_empty() {
                    pending.led = false;
                    return;
                }
                (std::mem::take(&mut pending.bytes), std::mem::take(&mut pending.waiters))
            };
            let written = self.write(&bytes).map_err(|err| err.kind());
            for waiter in waiters {
                if written.is_err()
                    && let Some(undo) = waiter.undo
                {
                    undo();
                }
                let _ = waiter.done.send(written);
            }
        }
    }

    /// The lines of `events`.
    fn lines(&self, events: &[Event<'_>]) -> Result<Vec<u8>, AuditError> {
        let mut bytes = Vec::with_capacity(320 * events.len());
        for event in events {
            self.line(event, &mut bytes)?;
        }
        Ok(bytes)
    }

    /// One write of `bytes` to the sink.
    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let written = sink.write_all(bytes).and_then(|()| sink.flush());
        if written.is_err() {
            metrics::counter!("cache_audit_failures_total").increment(1);
        }
        written
    }

    /// Appends the JSON line of `event` to `out`.
    fn line(&self, event: &Event<'_>, out: &mut Vec<u8>) -> Result<(), AuditError> {
        let (caller, role, site, peer) = match event.actor {
            Actor::System => (self.system_name, "system", None, None),
            Actor::Caller(c, peer) => (c.name.as_str(), c.role.as_str(), c.site.as_deref(), peer),
            Actor::Peer(peer) => ("unknown", "none", None, peer),
        };
        let now = self.clock.now();
        let time = if event.day_only { now.strftime("%Y-%m-%d").to_string() } else { now.to_string() };
        let line = Line {
            time,
            action: event.action,
            result: event.result,
            caller,
            role,
            site,
            peer: peer.map(|p| p.to_string()),
            rpc: event.rpc,
            guid_hmac: event.guid.map(|g| self.guid_hmac(g)),
            count: event.count,
            detail: event.detail,
        };
        serde_json::to_writer(&mut *out, &line).map_err(io::Error::other)?;
        out.push(b'\n');
        Ok(())
    }
}

/// `path` opened for appending, created owner-only.
fn append(path: &Path) -> Result<fs::File, AuditSetupError> {
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| AuditSetupError::Open { path: path.display().to_string(), source })
}

/// The lead of a group commit: writes what is pending when dropped.
struct Leader<'a>(&'a Audit);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.0.write_pending();
    }
}

/// The share of the file system under `path` (the audit file, or its directory when the
/// file is not there yet) still free for an unprivileged writer, between 0 and 1; `None`
/// when it cannot be read. The audit log is fail-closed: when that space runs out, every
/// request is refused, so the daemons export this for an alert well before.
pub fn free_space_ratio(path: &Path) -> Option<f64> {
    let at = if path.exists() { path } else { path.parent()? };
    let stat = rustix::fs::statvfs(at).ok()?;
    let total = stat.f_blocks as f64;
    (total > 0.0).then(|| (stat.f_bavail as f64 / total).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests;
