//! The outreach queue: due entries leased to workers, and the outcomes workers report.
//!
//! There is no queue beside the map: whether an entry is due is read from its state and
//! `due_at`, so a lease that runs out needs no timer; [`Store::lease_due`] simply treats it
//! as due. Each call scans the whole map (one shard read lock at a time, keeping only the
//! `max` oldest candidates in a small heap), which costs O(entries) per call, about 30 ms
//! per million entries (`lease/*` in `benches/store.rs`): an index ordered by due time would
//! cost more memory per entry than ten million contacts in 3 GiB leave (BENCHMARKS.md).
//! Each candidate is then checked again and leased under its shard's write lock, so two
//! calls at once never hand out the same entry. Nothing here awaits: no lock is ever held across an await point.

use std::collections::BinaryHeap;

use jiff::Timestamp;
use proto::v1::Contact;
use tracing::error;
use zeroize::Zeroize;

use super::{DueKind, Entry, EntryState, Store, StoreError, lease_until};
use crate::{guid::Guid, validate::FieldError};

/// One entry handed out by [`Store::lease_due`], with its contact.
#[derive(Debug)]
pub struct Due {
    /// The entry's GUID.
    pub guid: Guid,
    /// Its contact, opened.
    pub contact: Contact,
    /// What it is handed out for.
    pub kind: DueKind,
    /// When the lease runs out.
    pub lease_expires_at: Timestamp,
    /// Times the current work has been handed out, this one included.
    pub attempt: u32,
    /// Messages already sent to the contact (0: the invitation is due; 1: a reminder).
    pub sent_before: u32,
}

/// What a worker reports for one leased entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent; with a retry time, a reminder is planned then.
    Sent,
    /// Not sent now; due again at the retry time.
    RetryAt,
    /// Cannot be sent, ever.
    FailedPermanent,
    /// The contact is on the worker's suppression list.
    Suppressed,
    /// Nothing to send any more: a planned reminder no longer needed.
    Skipped,
}

impl Outcome {
    /// The outcome's name in metrics and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::RetryAt => "retry_at",
            Outcome::FailedPermanent => "failed_permanent",
            Outcome::Suppressed => "suppressed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// The lease a fenced Ack answers: the `attempt` and `sent_before` its [`Due`] carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// [`Due::attempt`].
    pub attempt: u32,
    /// [`Due::sent_before`].
    pub sent_before: u32,
}

/// What an Ack did to the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// It was erased: nothing more is planned for it.
    Erased,
    /// It waits again, until the retry time.
    DueAgain,
}

/// What `entry` is due for at `now` (Unix seconds), if anything. Expiry is checked apart.
fn due_kind(entry: &Entry, now: i64) -> Option<DueKind> {
    match entry.state {
        EntryState::Pending => (entry.due_at <= now).then_some(DueKind::Invite),
        EntryState::OptedOut => Some(DueKind::Suppress),
        EntryState::Leased { kind, until } => (i64::from(until) <= now).then_some(kind),
    }
}

fn bad(field: &'static str, message: &'static str) -> StoreError {
    StoreError::Invalid(FieldError { field, message })
}

impl Store {
    /// Leases up to `max` due entries for `lease_seconds` and returns them with their
    /// contacts, oldest `due_at` first.
    ///
    /// Due: pending with `due_at` passed, opted out (for suppression), or leased with the
    /// lease run out; never expired. May return fewer than `max` when another call takes
    /// some of the same entries at the same moment. An entry that does not open is logged
    /// and left as it was.
    pub fn lease_due(&self, max: usize, lease_seconds: u32) -> Vec<Due> {
        let now = self.clock.now();
        let now_s = now.as_second();
        let until = lease_until(now_s.saturating_add(i64::from(lease_seconds)));
        let lease_expires_at = Timestamp::from_second(i64::from(until)).unwrap_or(Timestamp::MAX);

        // The `max` oldest candidates: a max-heap that drops its largest past `max`.
        let mut oldest = BinaryHeap::with_capacity(max.saturating_add(1));
        for entry in self.entries.iter() {
            let candidate = (entry.due_at, *entry.key());
            // Once `max` are kept, a candidate no older than the youngest of them is passed
            // over before anything else is read: most are, when much is due.
            if oldest.len() >= max && oldest.peek().is_some_and(|youngest| candidate >= *youngest) {
                continue;
            }
            if due_kind(&entry, now_s).is_some() && !self.is_expired(&entry, now) {
                oldest.push(candidate);
                if oldest.len() > max {
                    oldest.pop();
                }
            }
        }

        let mut leased = Vec::with_capacity(oldest.len());
        for (_, guid) in oldest.into_sorted_vec() {
            let Some(mut entry) = self.entries.get_mut(&guid) else { continue };
            // Checked again under the write lock: another call may have leased it, an Ack
            // or a delete may have come in between.
            if self.is_expired(&entry, now) {
                continue;
            }
            let Some(kind) = due_kind(&entry, now_s) else { continue };
            let contact = match self.open(&guid, &entry) {
                Ok(contact) => contact,
                Err(err) => {
                    error!(cause = %err, "a due entry did not open; left as it was");
                    continue;
                }
            };
            entry.attempts = entry.attempts.saturating_add(1);
            entry.state = EntryState::Leased { kind, until };
            let sent_before = match kind {
                DueKind::Invite => u32::from(entry.sent),
                DueKind::Suppress => 0,
            };
            leased.push(Due {
                guid,
                contact,
                kind,
                lease_expires_at,
                attempt: u32::from(entry.attempts),
                sent_before,
            });
        }
        leased
    }

    /// Gives back leases just taken by [`Store::lease_due`] whose contacts could not be
    /// handed out: each entry still under that lease is due again at once, and the attempt
    /// is not counted.
    pub fn give_back(&self, leased: &[Due]) {
        for due in leased {
            let Some(mut entry) = self.entries.get_mut(&due.guid) else { continue };
            let lease =
                EntryState::Leased { kind: due.kind, until: lease_until(due.lease_expires_at.as_second()) };
            if entry.state == lease {
                entry.state = match due.kind {
                    DueKind::Invite => EntryState::Pending,
                    DueKind::Suppress => EntryState::OptedOut,
                };
                entry.attempts = entry.attempts.saturating_sub(1);
            }
        }
    }

    /// Records the outcome of the lease on `guid`.
    ///
    /// A lease that ran out still takes its Ack while nobody else has leased the entry (a
    /// late Ack saves a second send). Once leased again, a fenced Ack (`fence`: the attempt
    /// and sent count its lease was handed out with) is refused (`Superseded`) and the new
    /// lease stands; an unfenced one applies to the new lease, since it names only the GUID.
    ///
    /// Suppression work is erased by SUPPRESSED or FAILED_PERMANENT. SENT, RETRY_AT and
    /// SKIPPED cannot be its outcome: they can only be a late Ack of the invitation leased before
    /// the opt-out, and taking them would lose the suppression, so they are refused
    /// (`LeasedForSuppression`) and the lease stands.
    ///
    /// Errors: `NotFound` for unknown, expired or erased GUIDs; `NotLeased` for an entry
    /// that is waiting rather than leased; `Superseded` for a fence that is not the current
    /// lease's; `Invalid` naming `retry_at` when it is missing (RETRY_AT), not in the future,
    /// or not before the entry expires.
    pub fn ack(
        &self,
        guid: &Guid,
        fence: Option<Fence>,
        outcome: Outcome,
        retry_at: Option<Timestamp>,
    ) -> Result<Acked, StoreError> {
        let now = self.clock.now();
        let dashmap::Entry::Occupied(mut slot) = self.entries.entry(*guid) else {
            return Err(StoreError::NotFound);
        };
        let entry = slot.get();
        if self.is_expired(entry, now) {
            return Err(StoreError::NotFound);
        }
        let EntryState::Leased { kind, .. } = entry.state else {
            return Err(StoreError::NotLeased);
        };
        if let Some(fence) = fence {
            // What `lease_due` handed this lease out with: another attempt, or the next
            // piece of work, is another lease.
            let current = Fence {
                attempt: u32::from(entry.attempts),
                sent_before: match kind {
                    DueKind::Invite => u32::from(entry.sent),
                    DueKind::Suppress => 0,
                },
            };
            if fence != current {
                return Err(StoreError::Superseded);
            }
        }
        let again = match (kind, outcome) {
            (_, Outcome::FailedPermanent | Outcome::Suppressed) => None,
            (DueKind::Suppress, Outcome::Sent | Outcome::RetryAt | Outcome::Skipped) => {
                return Err(StoreError::LeasedForSuppression);
            }
            (DueKind::Invite, Outcome::Sent) => retry_at,
            (DueKind::Invite, Outcome::Skipped) => None,
            (DueKind::Invite, Outcome::RetryAt) => {
                Some(retry_at.ok_or_else(|| bad("retry_at", "is required with ACK_OUTCOME_RETRY_AT"))?)
            }
        };
        let Some(at) = again else {
            let (_, mut entry) = slot.remove_entry();
            self.release(entry.size());
            entry.sealed.zeroize();
            return Ok(Acked::Erased);
        };
        if at <= now {
            return Err(bad("retry_at", "must be in the future"));
        }
        if at >= self.expires_at(i64::from(entry.day)) {
            return Err(bad("retry_at", "is after the contact would expire"));
        }
        let entry = slot.get_mut();
        entry.state = EntryState::Pending;
        entry.due_at = at.as_second();
        if outcome == Outcome::Sent {
            // A reminder is new work: its attempts count from one again.
            entry.attempts = 0;
            entry.sent = entry.sent.saturating_add(1);
        }
        Ok(Acked::DueAgain)
    }
}
