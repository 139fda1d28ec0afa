//! Accounts of the people who read reports: providers (their own numbers), site
//! administrators (their site's providers) and analysts (all sites, in aggregate).
//!
//! Passwords are hashed with argon2id. The second factor is TOTP (RFC 6238: SHA-1, six
//! digits, 30-second steps, one step of skew); its secret is never stored: it is the HMAC,
//! under a key derived from the bridge's key file, of a random nonce kept per account, so a
//! copy of the database alone cannot produce codes. A code's time step is accepted once.

pub mod cli;
pub mod store;

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use rand::{TryRng, rngs::SysRng};
use totp_rs::{Algorithm, TOTP};

use crate::keys::Keys;

/// What an account may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Their own numbers.
    Provider,
    /// Their site's numbers, by provider; their site's activity log and usage.
    SiteAdmin,
    /// All sites, in aggregate (sites, not providers); usage of every site.
    Analyst,
}

impl Role {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::SiteAdmin => "site_admin",
            Role::Analyst => "analyst",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "provider" => Some(Role::Provider),
            "site_admin" => Some(Role::SiteAdmin),
            "analyst" => Some(Role::Analyst),
            _ => None,
        }
    }
}

/// An account, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The sign-in name.
    pub username: String,
    /// What it may read.
    pub role: Role,
    /// Its site (providers and site administrators).
    pub site_id: Option<String>,
    /// Its provider id (providers).
    pub provider_id: Option<String>,
    /// Whether the second factor is set up.
    pub totp_enrolled: bool,
    /// Unix seconds until which sign-in is refused.
    pub locked_until: i64,
    /// Failed sign-ins since the last success.
    pub failures: i64,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
}

/// An account's secrets, as stored.
pub struct Secrets {
    /// The argon2id PHC string.
    pub password_hash: String,
    /// The nonce the TOTP secret is derived from.
    pub totp_nonce: Option<String>,
    /// The last time step whose code was accepted.
    pub totp_last_step: i64,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A field is unusable; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The operating system's random source failed.
    #[error("the system random source failed")]
    Random,
    /// Hashing failed.
    #[error("password hashing failed")]
    Hash,
}

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Checks a user name, site or provider id: 1 to 64 of `a-z A-Z 0-9 . _ - @`.
pub fn check_id(field: &str, value: &str) -> Result<(), AccountError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!("{field} must be 1 to 64 of a-z, A-Z, 0-9, '.', '_', '-', '@'")))
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AccountError> {
    let mut bytes = [0u8; N];
    SysRng.try_fill_bytes(&mut bytes).map_err(|_| AccountError::Random)?;
    Ok(bytes)
}

/// A new random password of 20 characters (about 115 bits), for an operator to hand over.
pub fn new_password() -> Result<String, AccountError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = random_bytes::<20>()?;
    Ok(bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect())
}

/// A new TOTP nonce, in hex.
pub fn new_totp_nonce() -> Result<String, AccountError> {
    Ok(hex::encode(random_bytes::<16>()?))
}

/// A new session token, in hex (256 bits).
pub fn new_session_token() -> Result<String, AccountError> {
    Ok(hex::encode(random_bytes::<32>()?))
}

/// The argon2id hash of `password`, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AccountError::Invalid(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|_| AccountError::Hash)
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// A hash that matches no password, verified against for unknown user names so that they
/// take as long as known ones.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let password = new_password().unwrap_or_else(|_| "unguessable-placeholder".into());
        hash_password(&password).unwrap_or_default()
    })
}

/// The TOTP of an account whose nonce is `nonce`.
pub fn totp(keys: &Keys, nonce: &str) -> TOTP {
    TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, keys.totp_secret(nonce).to_vec())
}

/// The time step of a valid `code` at `now` (Unix seconds), if it is one.
pub fn check_code(totp: &TOTP, code: &str, now: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(now).ok()?;
    let step = now / 30;
    // The current step first, then one step each side (clock drift).
    [step, step.saturating_sub(1), step + 1]
        .into_iter()
        .find(|s| same(totp.generate(s * 30).as_bytes(), code.as_bytes()))
        .and_then(|s| i64::try_from(s).ok())
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `otpauth://` address an authenticator app reads from the enrolment QR code.
pub fn otpauth_uri(totp: &TOTP, issuer: &str, username: &str) -> String {
    let label = format!("{}:{}", encode(issuer), encode(username));
    format!(
        "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        totp.get_secret_base32(),
        encode(issuer)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The enrolment QR code of `uri`, as an SVG element.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build();
    // Drop the XML declaration: the SVG is inlined in the page.
    Some(svg.find("<svg").map_or(svg.clone(), |at| svg[at..].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("x", "not a hash"));
        assert!(matches!(hash_password("short"), Err(AccountError::Invalid(_))));
        assert!(!verify_password("", dummy_hash()));
    }

    #[test]
    fn codes_follow_rfc_6238_and_allow_one_step_of_drift() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890", T = 59 -> 94287082
        // (eight digits); six digits are its last six.
        let rfc = TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, b"12345678901234567890".to_vec());
        assert_eq!(rfc.generate(59), "287082");
        assert_eq!(check_code(&rfc, "287082", 59), Some(1));
        assert_eq!(check_code(&rfc, "287082", 75), Some(1), "one step late");
        assert_eq!(check_code(&rfc, "287082", 95), None, "two steps late");
        assert_eq!(check_code(&rfc, "28708", 59), None);
        assert_eq!(check_code(&rfc, "28708a", 59), None);

        let keys = Keys::derive(&Zeroizing::new([7u8; 32]));
        let a = totp(&keys, "00aa");
        let b = totp(&keys, "00ab");
        assert_ne!(a.generate(1_000_000), b.generate(1_000_000), "each nonce its own secret");
        let uri = otpauth_uri(&a, "Survey bridge", "dr.lee@site-1001");
        assert!(uri.starts_with("otpauth://totp/Survey%20bridge:dr.lee%40site-1001?secret="), "{uri}");
        assert!(qr_svg(&uri).unwrap().starts_with("<svg"));
    }

    #[test]
    fn generated_secrets_are_random_and_well_formed() {
        let (a, b) = (new_password().unwrap(), new_password().unwrap());
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert_eq!(new_session_token().unwrap().len(), 64);
        assert!(check_id("username", "dr.lee@site-1001").is_ok());
        assert!(check_id("username", "dr lee").is_err());
        assert!(check_id("site_id", "").is_err());
    }
}
