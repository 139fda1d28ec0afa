//! The results webhook (`survey_bridge::results`): the signature check never accepts a
//! signature that is not the HMAC of the timestamp and the body, always accepts the right
//! one inside the time window, and refuses it outside; a body is read into a GUID and
//! answers, or refused with a short message; the GUID parse round-trips; the answers are
//! checked as the webhook checks them.
//!
//! Input: a flags byte, then the timestamp header's value, a newline, the signature
//! header's value, a newline, and the body. Flags: 1 replaces the signature with the right
//! one, 2 then changes one bit of it, 4 drops the timestamp header, 8 drops the signature
//! header, 32 takes the timestamp as 8 bytes (little-endian) before the signature instead of
//! a line; the high nibble picks the bit that 2 changes.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::sync::LazyLock;

use cache_server::guid::Guid;
use libfuzzer_sys::fuzz_target;
use survey_bridge::{
    questionnaire::Questionnaire,
    results::{self, BodyError},
};

const SECRET: &[u8] = b"fuzzing-secret-of-at-least-32-bytes!";
/// The bridge's clock: 2026-11-20.
const NOW: i64 = 1_795_600_000;
const SKEW: i64 = 300;

static QUESTIONNAIRE: LazyLock<Questionnaire> = LazyLock::new(Questionnaire::builtin);

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    // Flag 32: the timestamp is 8 bytes (little-endian), so that every i64 is in reach.
    let mut binary = None;
    if flags & 32 != 0 {
        let Some((raw, after)) = rest.split_first_chunk::<8>() else { return };
        binary = Some(i64::from_le_bytes(*raw).to_string());
        rest = after;
    }
    let mut parts = rest.splitn(3 - usize::from(binary.is_some()), |&b| b == b'\n');
    let timestamp = match binary {
        Some(timestamp) => timestamp,
        None => String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned(),
    };
    let mut signature = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let parsed = timestamp.trim().parse::<i64>().ok();

    let mut forged = false;
    if flags & 1 != 0 {
        if let Some(t) = parsed {
            signature = results::sign(SECRET, t, body);
            if flags & 2 != 0 {
                let mut raw = hex::decode(&signature[7..]).expect("hex");
                let bit = usize::from(flags >> 4) % (raw.len() * 8);
                raw[bit / 8] ^= 1 << (bit % 8);
                signature = format!("sha256={}", hex::encode(raw));
                forged = true;
            }
        }
    }
    let timestamp_header = (flags & 4 == 0).then_some(timestamp.as_str());
    let signature_header = (flags & 8 == 0).then_some(signature.as_str());
    let verdict = results::verify(SECRET, timestamp_header, signature_header, body, NOW, SKEW);

    let in_window = parsed.is_some_and(|t| (i128::from(NOW) - i128::from(t)).abs() <= i128::from(SKEW));
    let right = match (timestamp_header, signature_header, parsed) {
        (Some(_), Some(given), Some(t)) => given
            .trim()
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
            .is_some_and(|given| given == hex::decode(&results::sign(SECRET, t, body)[7..]).expect("hex")),
        _ => false,
    };
    match verdict {
        Ok(()) => {
            assert!(right, "accepted a signature that is not the HMAC");
            assert!(in_window, "accepted a stale timestamp");
        }
        Err(refusal) => {
            assert!(!(right && in_window), "refused a good request: {}", refusal.reason);
            if right {
                assert_eq!(refusal.reason, "stale");
            }
        }
    }
    if forged {
        assert!(verdict.is_err() && !right, "one changed bit is refused");
    }

    match results::parse_submission(body) {
        Ok((guid, answers)) => {
            if let Ok(parsed) = guid.trim().parse::<Guid>() {
                assert!(parsed.to_string().eq_ignore_ascii_case(guid.trim()), "a GUID reads back as given");
            }
            common::check_answers(&QUESTIONNAIRE, &answers);
        }
        Err(BodyError::Malformed(message)) => assert!(message.chars().count() <= 120),
        Err(BodyError::Answer(question)) => assert!(question.chars().count() <= 120),
    }
});
