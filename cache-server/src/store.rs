//! The contact store: GUID -> sealed entry, in memory only, bounded, expiring.
//!
//! An entry keeps in the clear only what the cache needs to run: the site (for access
//! checks and as associated data), the UTC day it was stored on (which names its key and
//! fixes its expiry), when it may be sent, and its outreach state. Everything else is in
//! the sealed bytes. An entry stored on day D expires at the start of day D + retention,
//! so no contact is readable for longer than the retention; the sweep then erases it and
//! destroys the day's key.

use std::{
    collections::HashSet,
    mem,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use dashmap::DashMap;
use jiff::Timestamp;
use prost::Message;
use proto::{encoded::EncodedContact, v1::Contact};
use zeroize::{Zeroize, Zeroizing};

pub use queue::{Acked, Due, Fence, Outcome};

use crate::{
    clock::{Clock, day_start, utc_day},
    crypto::{CryptoError, KeyRing},
    guid::Guid,
    validate::{self, FieldError},
};

/// Shards in the map: many small locks, so neither a writer nor the sweep holds up much.
const SHARDS: usize = 256;

/// Limits and retention of a [`Store`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Days a contact stays readable, 1 to 30.
    pub retention_days: u32,
    /// Most entries held at once.
    pub max_entries: usize,
    /// Most bytes held at once, as counted by [`Store::stats`].
    pub max_bytes: usize,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A field of the contact is wrong.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// Unknown, expired, erased or opted out: deliberately one answer for all.
    #[error("no contact with this guid")]
    NotFound,
    /// A configured bound would be passed; nothing was evicted.
    #[error("the cache is full ({limit} reached)")]
    Full {
        /// The bound that was hit: `max_entries` or `max_bytes`.
        limit: &'static str,
    },
    /// Sealing, opening or randomness failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// An entry opened but did not decode.
    #[error("a sealed entry did not decode")]
    Corrupt,
    /// An Ack for a contact that is held but not leased.
    #[error("the contact is not leased")]
    NotLeased,
    /// An Ack saying sent or retry for a contact leased for suppression.
    #[error("the contact is leased for suppression, not for sending")]
    LeasedForSuppression,
    /// A fenced Ack whose lease is over: the contact has been handed out again since.
    #[error("attempt: the contact has been handed out again since this lease; the newer lease stands")]
    Superseded,
}

/// Where an entry is in its outreach life.
///
/// ```text
/// Pending --LeaseDue--> Leased(Invite) --Ack SENT + retry_at, RETRY_AT--> Pending
///                                      --Ack SENT, FAILED_PERMANENT, SUPPRESSED--> erased
/// OptedOut --LeaseDue--> Leased(Suppress) --Ack SUPPRESSED, FAILED_PERMANENT--> erased
///                                          (SENT, RETRY_AT refused: the lease stands)
/// Leased(kind) whose `until` has passed: due again, as `kind`.
/// OptOut on Pending or Leased(Invite): OptedOut.
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Waiting for its invitation (or a planned reminder, or a retry): due from `due_at`.
    Pending,
    /// The patient opted out: never read again, due once for suppression.
    OptedOut,
    /// Handed to a worker until `until` (Unix seconds); due again, as `kind`, after that.
    Leased {
        /// What it was handed out for.
        kind: DueKind,
        /// When the lease runs out (see [`lease_until`]).
        until: u32,
    },
}

impl EntryState {
    /// Whether the patient opted out (the contact is then never read by GUID again).
    fn opted_out(self) -> bool {
        matches!(self, EntryState::OptedOut | EntryState::Leased { kind: DueKind::Suppress, .. })
    }
}

/// What a due entry is handed out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueKind {
    /// Send the invitation or a planned reminder.
    Invite,
    /// Add the contact to the suppression list: the patient opted out.
    Suppress,
}

/// One contact in the map: 56 bytes (72 with its GUID, per slot of the hash table), so that
/// ten million fit in 3 GiB (BENCHMARKS.md); `day_index`, [`lease_until`] and `u16` attempts
/// keep it there (`entries_stay_56_bytes` in the tests).
struct Entry {
    /// Shared by every entry of the site (see [`Sites`]): no allocation per entry.
    site_id: Arc<str>,
    /// The UTC day it was stored on (see [`day_index`]).
    day: i32,
    /// When the entry's current work is due (Unix seconds): its send-after time, the time an
    /// Ack planned, or the moment of an opt-out. Orders LeaseDue, oldest first.
    due_at: i64,
    state: EntryState,
    /// Times the current work was handed out (saturating).
    attempts: u16,
    /// Messages acked SENT so far (the invitation, when a reminder is planned).
    sent: u8,
    sealed: Box<[u8]>,
}

impl Entry {
    fn size(&self) -> usize {
        entry_size(self.site_id.len(), self.sealed.len())
    }
}

/// A day number as an entry keeps it: jiff's timestamps span years -9999 to 9999, about
/// 3.7 million days either side of 1970, well inside `i32`.
fn day_index(day: i64) -> i32 {
    i32::try_from(day).unwrap_or(if day < 0 { i32::MIN } else { i32::MAX })
}

/// A lease's end as an entry keeps it: Unix seconds in a `u32`, which lasts until 2106; a
/// later end saturates (the lease then runs until the contact expires).
pub(crate) fn lease_until(seconds: i64) -> u32 {
    u32::try_from(seconds.max(0)).unwrap_or(u32::MAX)
}

/// Decodes an opened contact.
fn decode(encoded: &EncodedContact) -> Result<Contact, StoreError> {
    Contact::decode(encoded.as_bytes()).map_err(|_| StoreError::Corrupt)
}

fn entry_size(site_len: usize, sealed_len: usize) -> usize {
    mem::size_of::<Guid>() + mem::size_of::<Entry>() + site_len + sealed_len
}

/// The associated data of a sealed entry: its GUID and its site.
fn aad(guid: &Guid, site_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + site_id.len());
    aad.extend_from_slice(guid.as_bytes());
    aad.extend_from_slice(site_id.as_bytes());
    aad
}

/// A stored contact's name and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The new GUID.
    pub guid: Guid,
    /// When it stops being readable.
    pub expires_at: Timestamp,
}

/// Counts for the operations view.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    /// Entries held.
    pub entries: usize,
    /// Bytes held.
    pub bytes: usize,
    /// Day keys alive.
    pub day_keys: usize,
    /// The last sweep, if one ran.
    pub last_sweep: Option<SweepReport>,
}

/// What one sweep did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// When it ran, by the store's clock.
    pub at: Timestamp,
    /// Entries erased.
    pub removed: usize,
    /// UTC days whose keys were destroyed.
    pub keys_destroyed: Vec<i64>,
}

/// The site ids seen, each held once and shared by its entries.
///
/// Saves a heap block per entry (about 32 bytes at 10 million contacts). Sites are few (one
/// per EMR connector certificate, and a put must name the caller's own site), so the set
/// stays small; an id is kept until shutdown even when its last entry is gone.
#[derive(Debug, Default)]
struct Sites(RwLock<HashSet<Arc<str>>>);

impl Sites {
    /// The shared copy of `site`.
    fn intern(&self, site: &str) -> Arc<str> {
        if let Some(known) = self.0.read().unwrap_or_else(PoisonError::into_inner).get(site) {
            return known.clone();
        }
        let mut sites = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = sites.get(site) {
            return known.clone();
        }
        let shared: Arc<str> = Arc::from(site);
        sites.insert(shared.clone());
        shared
    }
}

/// Contacts sealed in memory under random GUIDs.
pub struct Store {
    entries: DashMap<Guid, Entry>,
    sites: Sites,
    keys: KeyRing,
    clock: Clock,
    limits: Limits,
    count: AtomicUsize,
    bytes: AtomicUsize,
    last_sweep: Mutex<Option<SweepReport>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("entries", &self.count.load(Ordering::Relaxed))
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty store.
    pub fn new(limits: Limits, clock: Clock) -> Self {
        Store {
            entries: DashMap::with_shard_amount(SHARDS),
            sites: Sites::default(),
            keys: KeyRing::default(),
            clock,
            limits,
            count: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            last_sweep: Mutex::new(None),
        }
    }

    /// When an entry stored on `day` stops being readable.
    fn expires_at(&self, day: i64) -> Timestamp {
        day_start(day.saturating_add(i64::from(self.limits.retention_days)))
    }

    fn is_expired(&self, entry: &Entry, now: Timestamp) -> bool {
        now >= self.expires_at(i64::from(entry.day))
    }

    /// Checks and stores `contact` under a new GUID.
    ///
    /// The contact's phone and email are wiped from memory when it is dropped here, and so
    /// is its serialised form once sealed.
    pub fn put(&self, mut contact: Contact) -> Result<Stored, StoreError> {
        let now = self.clock.now();
        let day = utc_day(now);
        let expires_at = self.expires_at(day);
        validate::contact(&mut contact, expires_at)?;
        let send_after = contact.send_after.as_ref().map_or(now.as_second(), |t| t.seconds);

        let plaintext = Zeroizing::new(contact.encode_to_vec());
        let site_id = self.sites.intern(&mem::take(&mut contact.site_id));
        drop(contact);

        let size =
            entry_size(site_id.len(), crate::crypto::NONCE_LEN + plaintext.len() + crate::crypto::TAG_LEN);
        self.reserve(size)?;
        let stored = self.insert(day, send_after, site_id, &plaintext);
        if stored.is_err() {
            self.release(size);
        }
        stored.map(|guid| Stored { guid, expires_at })
    }

    fn insert(
        &self,
        day: i64,
        send_after: i64,
        site_id: Arc<str>,
        plaintext: &[u8],
    ) -> Result<Guid, StoreError> {
        let key = self.keys.get_or_create(day)?;
        loop {
            let guid = Guid::random().map_err(|_| CryptoError::Random)?;
            // A collision of 128 random bits will not happen; if it ever did, draw again
            // rather than overwrite.
            if let dashmap::Entry::Vacant(slot) = self.entries.entry(guid) {
                let sealed = key.seal(plaintext, &aad(&guid, &site_id))?.into_boxed_slice();
                slot.insert(Entry {
                    site_id,
                    day: day_index(day),
                    due_at: send_after,
                    state: EntryState::Pending,
                    attempts: 0,
                    sent: 0,
                    sealed,
                });
                return Ok(guid);
            }
        }
    }

    fn reserve(&self, size: usize) -> Result<(), StoreError> {
        let max_entries = self.limits.max_entries;
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max_entries).then_some(n + 1))
            .map_err(|_| StoreError::Full { limit: "max_entries" })?;
        let max_bytes = self.limits.max_bytes;
        let fits = self.bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
            b.checked_add(size).filter(|total| *total <= max_bytes)
        });
        if fits.is_err() {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Full { limit: "max_bytes" });
        }
        Ok(())
    }

    fn release(&self, size: usize) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(size, Ordering::AcqRel);
    }

    /// Opens the contact stored under `guid`.
    pub fn get(&self, guid: &Guid) -> Result<Contact, StoreError> {
        decode(&self.get_encoded(guid)?)
    }

    /// Opens the contact stored under `guid` without decoding it: its protobuf encoding,
    /// as GetContact sends it (the bytes sealed by [`Store::put`], which the AEAD tag
    /// vouches for).
    pub fn get_encoded(&self, guid: &Guid) -> Result<EncodedContact, StoreError> {
        let now = self.clock.now();
        let entry = self.entries.get(guid).ok_or(StoreError::NotFound)?;
        if self.is_expired(&entry, now) || entry.state.opted_out() {
            return Err(StoreError::NotFound);
        }
        self.open_encoded(guid, &entry)
    }

    /// Opens and decodes the contact of `entry`.
    fn open(&self, guid: &Guid, entry: &Entry) -> Result<Contact, StoreError> {
        decode(&self.open_encoded(guid, entry)?)
    }

    /// Opens the contact of `entry`: its encoding.
    fn open_encoded(&self, guid: &Guid, entry: &Entry) -> Result<EncodedContact, StoreError> {
        let key = self.keys.get(i64::from(entry.day)).ok_or(StoreError::NotFound)?;
        Ok(EncodedContact::new(key.open(&entry.sealed, &aad(guid, &entry.site_id))?))
    }

    /// Erases the contact stored under `guid` now.
    ///
    /// With `site`, only a contact of that site is erased; another site's is NOT_FOUND.
    pub fn delete(&self, guid: &Guid, site: Option<&str>) -> Result<(), StoreError> {
        let now = self.clock.now();
        let (_, mut entry) = self
            .entries
            .remove_if(guid, |_, entry| {
                !self.is_expired(entry, now) && site.is_none_or(|site| *entry.site_id == *site)
            })
            .ok_or(StoreError::NotFound)?;
        self.release(entry.size());
        entry.sealed.zeroize();
        Ok(())
    }

    /// Marks the contact under `guid` opted out: it is never read by GUID again, and is
    /// due once more, for suppression. Opting out again changes nothing.
    pub fn opt_out(&self, guid: &Guid) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut entry = self.entries.get_mut(guid).ok_or(StoreError::NotFound)?;
        if self.is_expired(&entry, now) {
            return Err(StoreError::NotFound);
        }
        if !entry.state.opted_out() {
            entry.state = EntryState::OptedOut;
            entry.due_at = now.as_second();
            entry.attempts = 0;
        }
        Ok(())
    }

    /// Erases every expired entry and destroys the keys of the days they were stored on.
    ///
    /// Blocking: run it off the async runtime. It scans one shard at a time under a read
    /// lock and removes entries one by one, so readers and writers wait at most for one
    /// small step.
    pub fn sweep(&self) -> SweepReport {
        let now = self.clock.now();
        let last_expired_day = utc_day(now) - i64::from(self.limits.retention_days);
        let expired: Vec<Guid> =
            self.entries.iter().filter(|e| i64::from(e.day) <= last_expired_day).map(|e| *e.key()).collect();
        let mut removed = 0;
        for guid in &expired {
            if let Some((_, mut entry)) =
                self.entries.remove_if(guid, |_, e| i64::from(e.day) <= last_expired_day)
            {
                self.release(entry.size());
                entry.sealed.zeroize();
                removed += 1;
            }
        }
        let keys_destroyed = self.keys.destroy_through(last_expired_day);
        let report = SweepReport { at: now, removed, keys_destroyed };
        *self.last_sweep.lock().unwrap_or_else(PoisonError::into_inner) = Some(report.clone());
        report
    }

    /// Counts for the operations view.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            entries: self.count.load(Ordering::Acquire),
            bytes: self.bytes.load(Ordering::Acquire),
            day_keys: self.keys.len(),
            last_sweep: self.last_sweep.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Erases every entry and destroys every key (at shutdown).
    pub fn clear(&self) {
        self.entries.retain(|_, entry| {
            entry.sealed.zeroize();
            false
        });
        self.keys.destroy_all();
        self.count.store(0, Ordering::Release);
        self.bytes.store(0, Ordering::Release);
    }
}

mod queue;
#[cfg(test)]
mod tests;
