//! The cache's contact checks (`cache_server::validate`): an accepted contact is what each
//! rule says and is accepted again unchanged (the only normalisation, the channel default,
//! is idempotent); each refusal names a field that is wrong; the phone and id rules agree
//! with a second, independent reading of their documentation.
//!
//! Input: the contact's fields, one per line: site id, provider id, campaign id, phone,
//! email, language, time zone, send-after (`SECONDS NANOS`, empty for none), channel (a
//! number).
#![no_main]

use cache_server::validate;
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use proto::v1::{Channel, Contact};

/// When the contact would expire: 2033-05-18.
const LATEST: i64 = 2_000_000_000;

/// `+`, then 7 to 15 ASCII digits, the first not 0.
fn e164(s: &str) -> bool {
    let b = s.as_bytes();
    b.first() == Some(&b'+')
        && (8..=16).contains(&b.len())
        && b[1] != b'0'
        && b[1..].iter().all(u8::is_ascii_digit)
}

/// 1 to 64 of `[A-Za-z0-9._:-]`.
fn id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || ".:_-".contains(c))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut f = text.split('\n');
    let mut next = || f.next().unwrap_or("").to_string();
    let mut contact = Contact {
        site_id: next(),
        provider_id: next(),
        campaign_id: next(),
        phone: next(),
        email: next(),
        language: next(),
        time_zone: next(),
        send_after: None,
        channel: 0,
    };
    let send_after = next();
    let mut parts = send_after.split(' ');
    if let (Some(Ok(seconds)), Some(Ok(nanos))) =
        (parts.next().map(str::parse::<i64>), parts.next().map(str::parse::<i32>))
    {
        contact.send_after = Some(prost_types::Timestamp { seconds, nanos });
    }
    contact.channel = next().trim().parse().unwrap_or(0);

    assert_eq!(validate::phone(&contact.phone).is_ok(), e164(&contact.phone), "phone rule");
    assert_eq!(validate::id("x", &contact.site_id).is_ok(), id(&contact.site_id), "id rule");
    if validate::email(&contact.email).is_ok() {
        let email = &contact.email;
        assert!(email.len() <= validate::MAX_EMAIL_LEN);
        assert!(!email.chars().any(|c| c.is_whitespace() || c.is_control()));
        let (_, domain) = email.rsplit_once('@').expect("an address has an @");
        assert!(domain.contains('.'), "a dotted domain");
    }

    let latest = Timestamp::from_second(LATEST).expect("in range");
    let given = contact.clone();
    match validate::contact(&mut contact, latest) {
        Ok(()) => {
            for (field, value) in [
                ("contact.site_id", &contact.site_id),
                ("contact.provider_id", &contact.provider_id),
                ("contact.campaign_id", &contact.campaign_id),
            ] {
                assert!(id(value), "{field}");
            }
            assert!(!contact.phone.is_empty() || !contact.email.is_empty());
            assert!(contact.phone.is_empty() || e164(&contact.phone));
            assert!(contact.email.is_empty() || validate::email(&contact.email).is_ok());
            assert!(contact.language == "en" || contact.language == "fr");
            assert!(validate::time_zone(&contact.time_zone).is_ok());
            if let Some(at) = &contact.send_after {
                let at = validate::timestamp("t", at).expect("a valid send_after");
                assert!(at < latest);
            }
            let channel = contact.channel();
            assert_ne!(channel, Channel::Unspecified, "the default is filled in");
            assert!(channel != Channel::Sms || !contact.phone.is_empty());
            assert!(channel != Channel::Email || !contact.email.is_empty());
            // Only the channel may change, and only from unspecified.
            let mut expected = given.clone();
            if given.channel == 0 {
                expected.channel = Channel::Any as i32;
            }
            assert_eq!(contact, expected);
            let mut again = contact.clone();
            assert_eq!(validate::contact(&mut again, latest), Ok(()), "accepted again");
            assert_eq!(again, contact, "unchanged the second time");
        }
        Err(err) => {
            assert_eq!(contact, given, "a refused contact is left as it was");
            let wrong = match err.field {
                "contact.site_id" => !id(&given.site_id),
                "contact.provider_id" => !id(&given.provider_id),
                "contact.campaign_id" => !id(&given.campaign_id),
                "contact.phone" => !e164(&given.phone),
                "contact.email" => validate::email(&given.email).is_err(),
                "contact" => given.phone.is_empty() && given.email.is_empty(),
                "contact.language" => given.language != "en" && given.language != "fr",
                "contact.time_zone" => validate::time_zone(&given.time_zone).is_err(),
                "contact.send_after" => given.send_after.is_some(),
                "contact.channel" => given.channel != 0,
                other => panic!("unknown field {other}"),
            };
            assert!(wrong, "{err} names a field that is fine");
        }
    }
});
