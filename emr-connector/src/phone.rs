//! Phone numbers as EMRs export them (`613-555-0101`, `(613) 555-0101`, `1 613 555 0101`,
//! `+1 613 555 0101`), read with libphonenumber's rules (the `phonenumber` crate) and
//! written in E.164 (`+16135550101`), the only form the cache takes.
//!
//! A number written without a country code is read as a number of the configured
//! [`Region`] (`default_region`, CA by default): its national prefix (`1` in North America)
//! and its international prefix (`011`) are understood. A number that is already E.164 is
//! kept as it is, exactly as the cache would take it. Anything else must be a valid number
//! for its country (libphonenumber's metadata), or it is refused.
//!
//! Errors never hold the number, nor any digit of it: a refusal names the line and the
//! field, and says what is wrong. The parser's own temporary copies of the text are freed
//! without being wiped; the E.164 string returned goes into a `Contact`, which zeroizes it.

use std::{fmt, str::FromStr};

use cache_server::validate;
use phonenumber::{Mode, ParseError, country, metadata::DATABASE};
use serde::{Deserialize, Serialize};

/// The region of numbers written without a country code, unless configured otherwise.
pub const DEFAULT_REGION: Region = Region(country::Id::CA);

/// A region (an ISO 3166 two-letter code such as `CA` or `US`) whose numbers an export
/// writes without their country code.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(country::Id);

impl Default for Region {
    fn default() -> Self {
        DEFAULT_REGION
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({self})")
    }
}

/// A region code that names no region with telephone numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a region: give a two-letter country code such as CA or US")]
pub struct RegionError(String);

impl FromStr for Region {
    type Err = RegionError;

    /// `CA`, `us`...: case does not matter.
    fn from_str(code: &str) -> Result<Region, RegionError> {
        let refuse = || RegionError(code.chars().take(8).collect());
        let upper = code.trim().to_ascii_uppercase();
        if upper.len() != 2 || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(refuse());
        }
        let id: country::Id = upper.parse().map_err(|_| refuse())?;
        // Every region the parser can read numbers of has metadata.
        DATABASE.by_id(id.as_ref()).ok_or_else(refuse)?;
        Ok(Region(id))
    }
}

impl TryFrom<String> for Region {
    type Error = RegionError;

    fn try_from(code: String) -> Result<Region, RegionError> {
        code.parse()
    }
}

impl From<Region> for String {
    fn from(region: Region) -> String {
        region.to_string()
    }
}

/// Why a phone number cannot be read. The messages say what is wrong, never the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// No phone number could be found in the text.
    #[error("is not a phone number")]
    NotANumber,
    /// Too few digits for any number.
    #[error("has too few digits for a phone number")]
    TooShort,
    /// Too many digits for any number.
    #[error("has too many digits for a phone number")]
    TooLong,
    /// A `+` or international prefix followed by no known country code.
    #[error("has an unknown country code")]
    UnknownCountry,
    /// An extension (`ext. 12`), which an invitation by text message cannot reach.
    #[error("has an extension: an invitation cannot reach one")]
    Extension,
    /// Digits that are no number in use in their country.
    #[error(
        "is not a valid number of {0}: check its digits, or write a number of another \
         country with its country code (+...)"
    )]
    Invalid(Region),
}

/// `text`, a phone number as an export writes it, in E.164; numbers without a country code
/// are numbers of `region`. An empty `text` stays empty (no phone).
pub fn to_e164(text: &str, region: Region) -> Result<String, PhoneError> {
    if text.is_empty() || validate::phone(text).is_ok() {
        return Ok(text.to_string());
    }
    let number = phonenumber::parse(Some(region.0), text).map_err(|e| match e {
        ParseError::InvalidCountryCode => PhoneError::UnknownCountry,
        ParseError::TooShortAfterIdd | ParseError::TooShortNsn => PhoneError::TooShort,
        ParseError::TooLong => PhoneError::TooLong,
        ParseError::NoNumber | ParseError::MalformedInteger(_) => PhoneError::NotANumber,
    })?;
    if number.extension().is_some() {
        return Err(PhoneError::Extension);
    }
    if !number.is_valid() {
        return Err(PhoneError::Invalid(region));
    }
    let e164 = number.format().mode(Mode::E164).to_string();
    // What the parser wrote is checked with the cache's own rule, so that a row that passes
    // here passes there.
    validate::phone(&e164).map_err(|_| PhoneError::Invalid(region))?;
    Ok(e164)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(text: &str) -> Result<String, PhoneError> {
        to_e164(text, Region::default())
    }

    #[test]
    fn the_formats_emrs_export_are_read_in_the_default_region() {
        for text in [
            "613-555-0101",
            "(613) 555-0101",
            "1 613 555 0101",
            "+1 613 555 0101",
            "613.555.0101",
            "6135550101",
            "1-613-555-0101",
            "+1 (613) 555-0101",
            "tel:+1-613-555-0101",
        ] {
            assert_eq!(ca(text).as_deref(), Ok("+16135550101"), "{text}");
        }
    }

    #[test]
    fn e164_is_kept_as_it_is() {
        assert_eq!(ca("+16135550101").as_deref(), Ok("+16135550101"));
        assert_eq!(ca("+442079460958").as_deref(), Ok("+442079460958"));
        assert_eq!(ca("").as_deref(), Ok(""));
    }

    #[test]
    fn another_region_reads_its_own_national_numbers() {
        let gb: Region = "gb".parse().unwrap();
        assert_eq!(to_e164("020 7946 0958", gb).as_deref(), Ok("+442079460958"));
        // A North American number keeps its own country code, whatever the region.
        assert_eq!(to_e164("+1 613 555 0101", gb).as_deref(), Ok("+16135550101"));
        let us: Region = "US".parse().unwrap();
        assert_eq!(to_e164("(212) 555-0101", us).as_deref(), Ok("+12125550101"));
        // From Canada, other countries are dialled with 011.
        assert_eq!(ca("011 44 20 7946 0958").as_deref(), Ok("+442079460958"));
    }

    #[test]
    fn what_cannot_be_read_is_refused_by_kind() {
        assert_eq!(ca("call the front desk"), Err(PhoneError::NotANumber));
        assert_eq!(ca("555-0101"), Err(PhoneError::Invalid(Region::default())));
        assert_eq!(ca("613-555-0101-0101-0101-01"), Err(PhoneError::TooLong));
        assert_eq!(ca("+1613555010799999999"), Err(PhoneError::TooLong));
        assert_eq!(ca("+999 613 555 0101"), Err(PhoneError::UnknownCountry));
        assert_eq!(ca("613-555-0101 ext. 12"), Err(PhoneError::Extension));
        // 0 and 1 cannot start a North American area code or exchange.
        assert_eq!(ca("(013) 555-0101"), Err(PhoneError::Invalid(Region::default())));
    }

    #[test]
    fn no_error_shows_the_number() {
        for text in ["555-0101", "613-555-0101 ext. 12", "+1613555010799999999", "+999 613 555 0101"] {
            let shown = format!("{} {:?}", ca(text).unwrap_err(), ca(text));
            for digits in ["555", "0101", "613", "999"] {
                assert!(!shown.contains(digits), "{text}: {shown}");
            }
        }
    }

    #[test]
    fn regions_are_two_letter_codes_of_any_case() {
        assert_eq!("ca".parse::<Region>(), Ok(DEFAULT_REGION));
        assert_eq!(" US ".parse::<Region>().map(|r| r.to_string()).as_deref(), Ok("US"));
        for bad in ["", "C", "CAN", "ZZ", "001", "12", "Canada"] {
            let e = bad.parse::<Region>().unwrap_err().to_string();
            assert!(e.contains("is not a region"), "{bad}: {e}");
        }
        assert_eq!(format!("{:?}", Region::default()), "Region(CA)");
    }

    proptest::proptest! {
        /// However an export spaces and punctuates a Canadian number, it reads the same.
        #[test]
        fn any_layout_of_a_number_reads_the_same(
            area in proptest::sample::select(vec!["613", "416", "514", "604", "905", "780"]),
            exchange in 200u32..1000,
            line in 0u32..10_000,
            layout in 0usize..6,
        ) {
            let (exchange, line) = (exchange.to_string(), format!("{line:04}"));
            let text = match layout {
                0 => format!("{area}-{exchange}-{line}"),
                1 => format!("({area}) {exchange}-{line}"),
                2 => format!("1 {area} {exchange} {line}"),
                3 => format!("+1 {area} {exchange} {line}"),
                4 => format!("{area}.{exchange}.{line}"),
                _ => format!("{area}{exchange}{line}"),
            };
            let e164 = format!("+1{area}{exchange}{line}");
            proptest::prop_assert_eq!(ca(&text), Ok(e164));
        }

        /// Whatever the text, the answer is E.164 the cache takes, or an error without it.
        #[test]
        fn any_text_is_e164_or_refused_without_its_digits(text in "[0-9+()., a-z-]{0,30}|\\PC{0,40}") {
            match ca(&text) {
                Ok(e164) => proptest::prop_assert!(e164.is_empty() || validate::phone(&e164).is_ok()),
                Err(e) => proptest::prop_assert!(!e.to_string().bytes().any(|b| b.is_ascii_digit())),
            }
        }
    }
}
