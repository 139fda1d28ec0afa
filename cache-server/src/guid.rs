//! GUIDs: 128 bits from the operating system's CSPRNG, in UUID text form.

use std::{fmt, str::FromStr};

use rand::{TryRng, rngs::SysRng};
use uuid::Uuid;

/// The only name a contact has outside the cache.
///
/// All 128 bits come from the OS random source, so a GUID is never derived from the contact
/// and cannot be guessed. The text form is a lower-case hyphenated UUID; the version and
/// variant bits are random too, so parsers must not insist on version 4.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(Uuid);

/// The text was not a GUID.
#[derive(Debug, thiserror::Error)]
#[error("guid is not a UUID in text form")]
pub struct ParseGuidError;

/// The operating system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed")]
pub struct RandomError;

impl Guid {
    /// A new random GUID.
    pub fn random() -> Result<Self, RandomError> {
        let mut bytes = [0u8; 16];
        SysRng.try_fill_bytes(&mut bytes).map_err(|_| RandomError)?;
        Ok(Guid(Uuid::from_bytes(bytes)))
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl FromStr for Guid {
    type Err = ParseGuidError;

    /// Accepts the hyphenated form only (36 characters), in either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(ParseGuidError);
        }
        Uuid::try_parse(s).map(Guid).map_err(|_| ParseGuidError)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_guids_differ_and_round_trip() {
        let a = Guid::random().unwrap();
        let b = Guid::random().unwrap();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(text.parse::<Guid>().unwrap(), a);
    }

    #[test]
    fn all_bits_vary() {
        // Over 64 draws every one of the 128 bits should have been seen both set and clear;
        // a v4 UUID would pin six of them.
        let (mut ones, mut zeros) = (0u128, 0u128);
        for _ in 0..64 {
            let v = u128::from_be_bytes(*Guid::random().unwrap().as_bytes());
            ones |= v;
            zeros |= !v;
        }
        assert_eq!(ones, u128::MAX);
        assert_eq!(zeros, u128::MAX);
    }

    #[test]
    fn rejects_other_forms() {
        for bad in ["", "abc", "00000000000000000000000000000000", "{00000000-0000-0000-0000-000000000000}"] {
            assert!(bad.parse::<Guid>().is_err(), "{bad}");
        }
        assert!("ABCDEF01-2345-6789-ABCD-EF0123456789".parse::<Guid>().is_ok());
    }
}
