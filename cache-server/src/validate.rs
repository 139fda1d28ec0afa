//! Checks a contact before it is stored; every refusal names the field at fault.
//!
//! Messages never repeat the value that was sent: it may be a phone number or an email.

use email_address::{EmailAddress, Options};
use jiff::Timestamp;
use proto::v1::{Channel, Contact};

/// Longest site, provider or campaign id, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest email address, in bytes (RFC 5321's path limit less the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest time zone name, in bytes.
pub const MAX_TIME_ZONE_LEN: usize = 64;

/// One field of a request is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's path in the request, e.g. `contact.phone`.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: &'static str,
}

fn bad(field: &'static str, message: &'static str) -> FieldError {
    FieldError { field, message }
}

/// Checks `contact` and fills in defaults (`channel` unspecified becomes `CHANNEL_ANY`).
///
/// `latest_send_after` is when the new entry would expire: a later `send_after` could
/// never be honoured and is refused.
pub fn contact(contact: &mut Contact, latest_send_after: Timestamp) -> Result<(), FieldError> {
    id("contact.site_id", &contact.site_id)?;
    id("contact.provider_id", &contact.provider_id)?;
    id("contact.campaign_id", &contact.campaign_id)?;

    if contact.phone.is_empty() && contact.email.is_empty() {
        return Err(bad("contact", "at least one of contact.phone and contact.email is required"));
    }
    if !contact.phone.is_empty() {
        phone(&contact.phone)?;
    }
    if !contact.email.is_empty() {
        email(&contact.email)?;
    }

    if !matches!(contact.language.as_str(), "en" | "fr") {
        return Err(bad("contact.language", "must be \"en\" or \"fr\""));
    }
    time_zone(&contact.time_zone)?;

    if let Some(at) = &contact.send_after {
        let at = timestamp("contact.send_after", at)?;
        if at >= latest_send_after {
            return Err(bad("contact.send_after", "is after the contact would expire"));
        }
    }

    let channel = Channel::try_from(contact.channel)
        .map_err(|_| bad("contact.channel", "must be CHANNEL_SMS, CHANNEL_EMAIL or CHANNEL_ANY"))?;
    match channel {
        Channel::Unspecified => contact.set_channel(Channel::Any),
        Channel::Sms if contact.phone.is_empty() => {
            return Err(bad("contact.channel", "is CHANNEL_SMS but contact.phone is empty"));
        }
        Channel::Email if contact.email.is_empty() => {
            return Err(bad("contact.channel", "is CHANNEL_EMAIL but contact.email is empty"));
        }
        Channel::Sms | Channel::Email | Channel::Any => {}
    }
    Ok(())
}

/// A protobuf timestamp as a [`Timestamp`].
pub fn timestamp(field: &'static str, at: &prost_types::Timestamp) -> Result<Timestamp, FieldError> {
    // The protobuf Timestamp allows only 0..1e9 nanos; jiff would accept negative ones.
    (0..1_000_000_000)
        .contains(&at.nanos)
        .then(|| Timestamp::new(at.seconds, at.nanos).ok())
        .flatten()
        .ok_or(bad(field, "is not a valid timestamp"))
}

/// A site, provider or campaign id: 1 to 64 of `[A-Za-z0-9._:-]`.
pub fn id(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(bad(field, "is required"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(bad(field, "must be at most 64 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')) {
        return Err(bad(field, "may hold only letters, digits and . _ : -"));
    }
    Ok(())
}

/// An E.164 number: `+`, a non-zero digit, then 6 to 14 more digits.
pub fn phone(value: &str) -> Result<(), FieldError> {
    const MESSAGE: &str = "must be E.164: + then 7 to 15 digits, the first not 0";
    let digits = value.strip_prefix('+').ok_or(bad("contact.phone", MESSAGE))?;
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok { Ok(()) } else { Err(bad("contact.phone", MESSAGE)) }
}

/// A bare address (no display name, no domain literal) with a dotted domain.
pub fn email(value: &str) -> Result<(), FieldError> {
    if value.len() > MAX_EMAIL_LEN {
        return Err(bad("contact.email", "must be at most 254 characters"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("contact.email", "must not hold spaces or control characters"));
    }
    let options = Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
        ..Options::default()
    };
    EmailAddress::parse_with_options(value, options)
        .map(|_| ())
        .map_err(|_| bad("contact.email", "is not an email address"))
}

/// An IANA time zone name known to the bundled time zone database.
pub fn time_zone(value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(bad("contact.time_zone", "is required"));
    }
    if value.len() > MAX_TIME_ZONE_LEN || value.chars().any(|c| c.is_control()) {
        return Err(bad("contact.time_zone", "is not an IANA time zone name"));
    }
    jiff::tz::db()
        .get(value)
        .map(|_| ())
        .map_err(|_| bad("contact.time_zone", "is not an IANA time zone name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn good() -> Contact {
        Contact {
            site_id: "site-1001".into(),
            provider_id: "prov-a1".into(),
            campaign_id: "pcpe-2026q4".into(),
            phone: "+16139990101".into(),
            email: "patient@example.org".into(),
            language: "en".into(),
            time_zone: "America/Toronto".into(),
            send_after: None,
            channel: Channel::Sms as i32,
        }
    }

    fn far() -> Timestamp {
        Timestamp::MAX
    }

    fn field_of(c: &mut Contact) -> &'static str {
        contact(c, far()).unwrap_err().field
    }

    #[test]
    fn accepts_a_good_contact_and_defaults_the_channel() {
        let mut c = good();
        c.channel = 0;
        contact(&mut c, far()).unwrap();
        assert_eq!(c.channel(), Channel::Any);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Spoil = fn(&mut Contact);
        let cases: Vec<(Spoil, &str)> = vec![
            (|c| c.phone = "613-555-0101".into(), "contact.phone"),
            (|c| c.phone = "+1613999010799999999".into(), "contact.phone"),
            (|c| c.email = "not-an-email".into(), "contact.email"),
            (|c| c.email = "a@b.c\r\nBcc: everyone@example.org".into(), "contact.email"),
            (|c| c.email = "Name <a@example.org>".into(), "contact.email"),
            (
                |c| {
                    c.phone.clear();
                    c.email.clear();
                },
                "contact",
            ),
            (|c| c.language = "de".into(), "contact.language"),
            (|c| c.time_zone = "Mars/Olympus_Mons".into(), "contact.time_zone"),
            (|c| c.site_id.clear(), "contact.site_id"),
            (|c| c.provider_id = "x".repeat(65), "contact.provider_id"),
            (|c| c.provider_id = "prov-a1\0".into(), "contact.provider_id"),
            (|c| c.campaign_id = "camp aign".into(), "contact.campaign_id"),
            (|c| c.channel = 7, "contact.channel"),
            (
                |c| {
                    c.phone.clear();
                    c.channel = Channel::Sms as i32;
                },
                "contact.channel",
            ),
            (|c| c.send_after = Some(prost_types::Timestamp { seconds: 0, nanos: -5 }), "contact.send_after"),
        ];
        for (spoil, field) in cases {
            let mut c = good();
            spoil(&mut c);
            assert_eq!(field_of(&mut c), field, "{c:?}");
        }
    }

    #[test]
    fn send_after_past_expiry_is_refused() {
        let mut c = good();
        c.send_after = Some(prost_types::Timestamp { seconds: 2_000_000_000, nanos: 0 });
        let expiry = Timestamp::from_second(1_900_000_000).unwrap();
        assert_eq!(contact(&mut c, expiry).unwrap_err().field, "contact.send_after");
    }

    #[test]
    fn messages_never_repeat_the_value() {
        let mut c = good();
        c.phone = "+1613555019x".into();
        let e = contact(&mut c, far()).unwrap_err().to_string();
        assert!(!e.contains("555019"), "{e}");
    }

    proptest! {
        #[test]
        fn e164_shapes(digits in "[1-9][0-9]{6,14}") {
            let plus = format!("+{digits}");
            prop_assert!(phone(&plus).is_ok());
            prop_assert!(phone(&digits).is_err());
            let with_zero = format!("+0{}", &digits[1..]);
            prop_assert!(phone(&with_zero).is_err());
        }

        #[test]
        fn phone_check_never_panics(s in "\\PC*") {
            let _ = phone(&s);
            let _ = email(&s);
            let _ = time_zone(&s);
            let _ = id("x", &s);
        }

        #[test]
        fn ids_accept_their_alphabet(s in "[A-Za-z0-9._:-]{1,64}") {
            prop_assert!(id("x", &s).is_ok());
        }
    }
}
