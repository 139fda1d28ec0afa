//! Sample contacts: realistic sizes, or padded to a given encoded size. Every value is made up
//! (`+1613999....` phones, `example.invalid` addresses).

use prost::Message;
use proto::v1::{Channel, Contact};

/// A contact of about the size real ones have: a short provider and campaign, a phone and a
/// 30-character email (about 110 bytes encoded).
pub fn realistic(site: &str, n: u64) -> Contact {
    Contact {
        site_id: site.to_string(),
        provider_id: format!("prov-{:06}", n % 1_000_000),
        campaign_id: "flu-2026-fall".into(),
        phone: format!("+1613999{:04}", n % 10_000),
        email: format!("pat.{:08}@mail.example.invalid", n % 100_000_000),
        language: if n.is_multiple_of(3) { "fr".into() } else { "en".into() },
        time_zone: "America/Toronto".into(),
        send_after: None,
        channel: Channel::Any as i32,
    }
}

/// A contact whose protobuf encoding is `size` bytes (at least the realistic size, at most
/// about 400): the provider and campaign ids and then the email's local part are padded.
pub fn sized(site: &str, n: u64, size: usize) -> Contact {
    let mut contact = realistic(site, n);
    let mut missing = size.saturating_sub(contact.encoded_len());
    for id in [&mut contact.provider_id, &mut contact.campaign_id] {
        let room = 64usize.saturating_sub(id.len()).min(missing);
        id.extend(std::iter::repeat_n('x', room));
        missing -= room;
    }
    if missing > 0 {
        // The local part may grow to 64 characters; the rest goes to a longer domain label.
        let (local, domain) = contact.email.split_once('@').unwrap_or(("pat", "mail.example.invalid"));
        let local_room = 64usize.saturating_sub(local.len()).min(missing);
        let mut local = local.to_string();
        local.extend(std::iter::repeat_n('x', local_room));
        missing -= local_room;
        // Then labels of up to 60 characters before the domain (each with its dot).
        let mut labels = String::new();
        while missing >= 2 {
            let n = (missing - 1).min(60);
            labels.extend(std::iter::repeat_n('m', n));
            labels.push('.');
            missing -= n + 1;
        }
        contact.email = format!("{local}@{labels}{domain}");
        // A field longer than 127 bytes takes a second length byte: give it back.
        while contact.encoded_len() > size
            && let Some(at) = contact.email.find("x@").or_else(|| contact.email.find("m."))
        {
            contact.email.remove(at);
        }
    }
    contact
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let small = realistic("site-1001", 7);
        assert!((90..130).contains(&small.encoded_len()), "{}", small.encoded_len());
        assert_eq!(sized("site-1001", 7, 300).encoded_len(), 300);
        // Where the email's length needs a second byte, one byte less may be the closest.
        for size in 150..400 {
            let len = sized("site-1001", 7, size).encoded_len();
            assert!(len == size || len + 1 == size, "{size}: {len}");
        }
    }
}
