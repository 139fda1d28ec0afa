//! The bridge's secrets, all derived from one 256-bit key file: the key under which GUIDs
//! are stored (as HMACs), the key that makes form tokens, the key from which report
//! readers' TOTP secrets are derived, and the key that seals answers while they wait in the
//! pool (so that a database reader cannot read them, whatever row they tie them to).

use std::path::Path;

use aes_gcm::{
    Aes256Gcm,
    aead::{Aead, Nonce},
};
use cache_server::{audit::AuditKey, guid::Guid};
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The derived keys, wiped when dropped.
pub struct Keys {
    guid: Zeroizing<[u8; 32]>,
    csrf: Zeroizing<[u8; 32]>,
    totp: Zeroizing<[u8; 32]>,
    pool: Zeroizing<[u8; 32]>,
}

/// The length of an AES-GCM nonce.
const NONCE_LEN: usize = 12;

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<secret>)")
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl Keys {
    /// Derives the keys from the master key in `path` (64 hex digits).
    pub fn load(path: &Path) -> Result<Keys, cache_server::audit::AuditSetupError> {
        Ok(Keys::derive(&cache_server::audit::load_key(path)?))
    }

    /// Derives the keys from `master`.
    pub fn derive(master: &AuditKey) -> Keys {
        Keys {
            guid: Zeroizing::new(mac(&master[..], &[b"guid"])),
            csrf: Zeroizing::new(mac(&master[..], &[b"csrf"])),
            totp: Zeroizing::new(mac(&master[..], &[b"totp"])),
            pool: Zeroizing::new(mac(&master[..], &[b"pool"])),
        }
    }

    /// How a GUID is stored: the hex HMAC-SHA256 of its bytes.
    pub fn guid_hmac(&self, guid: &Guid) -> String {
        hex::encode(mac(&self.guid[..], &[guid.as_bytes()]))
    }

    /// The 160-bit TOTP secret of the account whose nonce is `nonce`.
    pub fn totp_secret(&self, nonce: &str) -> Zeroizing<[u8; 20]> {
        let full = mac(&self.totp[..], &[nonce.as_bytes()]);
        let mut secret = Zeroizing::new([0u8; 20]);
        secret.copy_from_slice(&full[..20]);
        secret
    }

    /// The form token for `purpose` on the page of `guid_hmac`.
    ///
    /// The pages set no cookies, so the token is stateless: it proves the form was served
    /// by this bridge for this link.
    pub fn csrf(&self, guid_hmac: &str, purpose: &str) -> String {
        hex::encode(mac(&self.csrf[..], &[guid_hmac.as_bytes(), purpose.as_bytes()]))
    }

    /// Whether `token` is the form token for `purpose` on the page of `guid_hmac`.
    pub fn csrf_ok(&self, guid_hmac: &str, purpose: &str, token: &str) -> bool {
        let Ok(given) = hex::decode(token) else { return false };
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.csrf[..]).expect("any key length");
        for part in [guid_hmac.as_bytes(), purpose.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.verify_slice(&given).is_ok()
    }
}

impl Keys {
    fn pool_cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.pool[..]).expect("a 32-byte key is valid for AES-256")
    }

    /// Seals `plaintext` for the answer pool: the hex of a random nonce, the ciphertext and
    /// its tag (AES-256-GCM).
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = Nonce::<Aes256Gcm>::default();
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self.pool_cipher().encrypt(&nonce, plaintext).expect("AES-GCM seals any short message");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        hex::encode(out)
    }

    /// Opens what [`Keys::seal`] made; `None` if it was not sealed under this key or was
    /// altered. The plaintext is wiped when dropped.
    pub fn open(&self, sealed: &str) -> Option<Zeroizing<Vec<u8>>> {
        let bytes = hex::decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::<Aes256Gcm>::try_from(nonce).ok()?;
        self.pool_cipher().decrypt(&nonce, body).ok().map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_link_and_purpose() {
        let keys = Keys::derive(&Zeroizing::new([3u8; 32]));
        let other = Keys::derive(&Zeroizing::new([4u8; 32]));
        let guid = Guid::random().unwrap();
        let h = keys.guid_hmac(&guid);
        assert_eq!(h.len(), 64);
        assert_ne!(h, other.guid_hmac(&guid));
        let t = keys.csrf(&h, "consent");
        assert!(keys.csrf_ok(&h, "consent", &t));
        assert!(!keys.csrf_ok(&h, "survey", &t));
        assert!(!keys.csrf_ok("other", "consent", &t));
        assert!(!other.csrf_ok(&h, "consent", &t));
        assert!(!keys.csrf_ok(&h, "consent", "zz"));
    }

    #[test]
    fn sealed_answers_open_only_under_their_key_and_unaltered() {
        let keys = Keys::derive(&Zeroizing::new([3u8; 32]));
        let other = Keys::derive(&Zeroizing::new([4u8; 32]));
        let a = keys.seal(b"overall=9");
        let b = keys.seal(b"overall=9");
        // A fresh nonce each time: equal answers do not look equal in the database.
        assert_ne!(a, b);
        assert!(!a.contains(&hex::encode(b"overall=9")));
        assert_eq!(keys.open(&a).as_deref().map(Vec::as_slice), Some(&b"overall=9"[..]));
        assert_eq!(other.open(&a), None);
        let mut altered = a.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(keys.open(std::str::from_utf8(&altered).unwrap()), None);
        assert_eq!(keys.open("zz"), None);
        assert_eq!(keys.open("00"), None);
    }
}
