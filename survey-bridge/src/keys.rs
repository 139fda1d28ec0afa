//! The bridge's secrets, all derived from one 256-bit key file: the key under which GUIDs
//! are stored (as HMACs), the key that makes form tokens, and the key from which report
//! readers' TOTP secrets are derived.

use std::path::Path;

use cache_server::{audit::AuditKey, guid::Guid};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The derived keys, wiped when dropped.
pub struct Keys {
    guid: Zeroizing<[u8; 32]>,
    csrf: Zeroizing<[u8; 32]>,
    totp: Zeroizing<[u8; 32]>,
}

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
}
