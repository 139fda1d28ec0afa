//! `X-Twilio-Signature`, as Twilio documents it ("Validating requests are coming from
//! Twilio"): the webhook's full URL as configured at Twilio (query string included), then
//! each POST parameter sorted by name (repeats by value), name and value appended with no
//! delimiters; HMAC-SHA1 under the account's auth token; base64 with padding.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac =
        <HmacSha1 as KeyInit>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature of a POST of `params` to `url`, as Twilio computes it.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` (the header's value) is Twilio's for a POST of `params` to `url`.
/// The comparison takes the same time wherever the two differ.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else { return false };
    mac(auth_token, url, params).verify_slice(&given).is_ok()
}
