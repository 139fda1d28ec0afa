//! Day keys and AES-256-GCM sealing.
//!
//! Every contact is sealed under the key of the UTC day it was stored on, with a fresh random
//! nonce and its GUID and site as associated data, so a sealed value moved to another GUID or
//! site does not open. Keys live in guarded allocations (memsec: locked, kept out of core
//! dumps, fenced by no-access pages, read-only after creation) and are wiped when dropped.
//! Destroying a day's key is what makes that day's contacts unreadable for good
//! (crypto-shredding): the sweep destroys it when the day's retention ends.

use std::{
    collections::BTreeMap,
    fmt,
    ptr::NonNull,
    sync::{Arc, PoisonError, RwLock},
};

use aes_gcm::{
    Aes256Gcm, KeyInit,
    aead::{Aead, AeadInOut, Nonce, Payload},
};
use rand::{Rng, TryRng, rngs::SysRng};
use zeroize::Zeroizing;

/// Length of the nonce that starts every sealed value.
pub const NONCE_LEN: usize = 12;
/// Length of the authentication tag that ends every sealed value.
pub const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// Sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The operating system's random source failed.
    #[error("the operating system's random source failed")]
    Random,
    /// A guarded allocation for a key could not be made.
    #[error("a guarded allocation for a day key failed")]
    Alloc,
    /// The key of that day no longer exists.
    #[error("the day key is gone")]
    KeyGone,
    /// The sealed value did not authenticate under its key and associated data.
    #[error("the sealed value does not open")]
    Open,
    /// AES-GCM refused to seal (input too long).
    #[error("sealing failed")]
    Seal,
}

/// One day's 256-bit key in a guarded, locked, read-only allocation.
pub struct DayKey {
    ptr: NonNull<[u8; KEY_LEN]>,
}

// SAFETY: the allocation is owned by this value alone, written once before it is shared, and
// read-only afterwards; it is freed only in `drop`, when no reference can remain.
unsafe impl Send for DayKey {}
// SAFETY: see `Send`: shared access only ever reads.
unsafe impl Sync for DayKey {}

impl DayKey {
    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, CryptoError> {
        // SAFETY: memsec::malloc returns a fresh, writable, suitably aligned allocation of
        // the requested type's size, or None.
        let ptr = unsafe { memsec::malloc::<[u8; KEY_LEN]>() }.ok_or(CryptoError::Alloc)?;
        let key = DayKey { ptr };
        // SAFETY: we own the allocation and nothing else refers to it yet.
        let bytes = unsafe { &mut *ptr.as_ptr() };
        SysRng.try_fill_bytes(bytes).map_err(|_| CryptoError::Random)?;
        // SAFETY: ptr came from memsec::malloc; read-only is enough from now on.
        unsafe { memsec::mprotect(ptr, memsec::Prot::ReadOnly) };
        Ok(key)
    }

    fn cipher(&self) -> Aes256Gcm {
        // SAFETY: the allocation is live and readable for as long as `self` is.
        let bytes = unsafe { self.ptr.as_ref() };
        // The expanded key schedule lives in the returned cipher, which wipes it on drop.
        Aes256Gcm::new_from_slice(bytes).expect("a 32-byte key is valid for AES-256")
    }

    /// Seals `plaintext` under this key with a fresh random nonce: nonce || ciphertext || tag.
    ///
    /// The nonce comes from rand's thread-local CSPRNG (ChaCha12, seeded from the operating
    /// system and reseeded every 64 KiB): no system call per seal. Random 96-bit nonces are
    /// safe for far more seals than one day's key ever makes (NIST SP 800-38D: 2^32).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = Nonce::<Aes256Gcm>::default();
        rand::rng().fill_bytes(&mut nonce);
        // One buffer, encrypted in place: no second allocation and copy of the ciphertext.
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let tag = self
            .cipher()
            .encrypt_inout_detached(&nonce, aad, (&mut sealed[NONCE_LEN..]).into())
            .map_err(|_| CryptoError::Seal)?;
        sealed.extend_from_slice(&tag);
        Ok(sealed)
    }

    /// Opens what [`DayKey::seal`] made with the same associated data.
    ///
    /// The plaintext is wiped when the returned buffer is dropped.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| CryptoError::Open)?;
        self.cipher()
            .decrypt(&nonce, Payload { msg: body, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }
}

impl Drop for DayKey {
    fn drop(&mut self) {
        // SAFETY: ptr came from memsec::malloc and is freed exactly once, here. Making it
        // writable first lets us wipe it; memsec::free wipes and unlocks it again.
        unsafe {
            memsec::mprotect(self.ptr, memsec::Prot::ReadWrite);
            memsec::memzero(self.ptr.as_ptr().cast::<u8>(), KEY_LEN);
            memsec::free(self.ptr);
        }
    }
}

impl fmt::Debug for DayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DayKey(<secret>)")
    }
}

/// The day keys alive, by UTC day number.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: RwLock<BTreeMap<i64, Arc<DayKey>>>,
}

impl KeyRing {
    /// The key of `day`, made on first use.
    pub fn get_or_create(&self, day: i64) -> Result<Arc<DayKey>, CryptoError> {
        if let Some(key) = self.get(day) {
            return Ok(key);
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = keys.get(&day) {
            return Ok(key.clone());
        }
        let key = Arc::new(DayKey::generate()?);
        keys.insert(day, key.clone());
        Ok(key)
    }

    /// The key of `day`, if it still exists.
    pub fn get(&self, day: i64) -> Option<Arc<DayKey>> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.get(&day).cloned()
    }

    /// Destroys the keys of every day up to and including `last_day`; returns those days.
    ///
    /// A key still in use by a request in flight is wiped as soon as that request drops it.
    pub fn destroy_through(&self, last_day: i64) -> Vec<i64> {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let keep = keys.split_off(&last_day.saturating_add(1));
        let gone = std::mem::replace(&mut *keys, keep);
        gone.into_keys().collect()
    }

    /// Destroys every key.
    pub fn destroy_all(&self) {
        self.keys.write().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// How many keys are alive.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no key is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let key = DayKey::generate().unwrap();
        let sealed = key.seal(b"+16139990101", b"guid-a|site-1").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + 12 + TAG_LEN);
        assert!(!sealed.windows(12).any(|w| w == b"+16139990101"));
        assert_eq!(&key.open(&sealed, b"guid-a|site-1").unwrap()[..], b"+16139990101");
        assert!(matches!(key.open(&sealed, b"guid-b|site-1"), Err(CryptoError::Open)));
        assert!(matches!(key.open(&sealed[..10], b"guid-a|site-1"), Err(CryptoError::Open)));
    }

    #[test]
    fn nonces_are_fresh() {
        let key = DayKey::generate().unwrap();
        let a = key.seal(b"same", b"").unwrap();
        let b = key.seal(b"same", b"").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

    #[test]
    fn another_days_key_does_not_open() {
        let ring = KeyRing::default();
        let sealed = ring.get_or_create(10).unwrap().seal(b"x", b"").unwrap();
        assert!(ring.get_or_create(11).unwrap().open(&sealed, b"").is_err());
        assert!(ring.get_or_create(10).unwrap().open(&sealed, b"").is_ok());
    }

    #[test]
    fn shredded_day_key_makes_its_sealed_bytes_unopenable() {
        let ring = KeyRing::default();
        let sealed = ring.get_or_create(10).unwrap().seal(b"secret", b"").unwrap();
        ring.get_or_create(12).unwrap();
        assert_eq!(ring.destroy_through(10), vec![10]);
        assert!(ring.get(10).is_none());
        assert_eq!(ring.len(), 1);
        // A new key for the same day is a different key: the old bytes stay sealed.
        let fresh = ring.get_or_create(10).unwrap();
        assert!(matches!(fresh.open(&sealed, b""), Err(CryptoError::Open)));
    }
}
