//! A [`Contact`](crate::v1::Contact) that is already encoded, sent as it is.
//!
//! The cache seals a contact's protobuf encoding and, for GetContact, opens it again: the
//! opened bytes are the answer's wire form. [`EncodedContact`] sends them without decoding
//! them into a `Contact` (a `String` per field) and encoding that again, and wipes them
//! when it is dropped.

use std::fmt;

use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut},
    encoding::{DecodeContext, WireType, skip_field},
};
use zeroize::Zeroizing;

/// The protobuf encoding of one `Contact`, written to the wire as it is.
///
/// Only for sending: decoding into it skips every field (decode a `Contact` instead).
#[derive(Default, Clone, PartialEq, Eq)]
pub struct EncodedContact(Zeroizing<Vec<u8>>);

impl EncodedContact {
    /// Wraps `bytes`, which must be the encoding of a `Contact` (as `Contact::encode_to_vec`
    /// makes it): they are sent without a check.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        EncodedContact(bytes)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for EncodedContact {
    /// Only the length: the bytes hold phone and email.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncodedContact({} bytes)", self.0.len())
    }
}

impl Message for EncodedContact {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Channel, Contact};

    fn contact() -> Contact {
        let mut contact = Contact::default();
        contact.site_id = "site-1".into();
        contact.provider_id = "prov-7".into();
        contact.campaign_id = "pes-2026".into();
        contact.phone = "+16139990100".into();
        contact.email = "someone@example.org".into();
        contact.language = "fr".into();
        contact.time_zone = "America/Toronto".into();
        contact.send_after = Some(prost_types::Timestamp { seconds: 1_790_000_000, nanos: 5 });
        contact.channel = Channel::Email.into();
        contact
    }

    #[test]
    fn sends_the_bytes_of_the_contact_it_wraps() {
        let contact = contact();
        let encoded = EncodedContact::new(Zeroizing::new(contact.encode_to_vec()));
        assert_eq!(encoded.encoded_len(), contact.encoded_len());
        assert_eq!(encoded.encode_to_vec(), contact.encode_to_vec());
        // Length-delimited, as a stream or an embedded message carries it.
        assert_eq!(
            Contact::decode_length_delimited(&encoded.encode_length_delimited_to_vec()[..]).unwrap(),
            contact
        );
    }

    #[test]
    fn debug_shows_only_the_length() {
        let encoded = EncodedContact::new(Zeroizing::new(contact().encode_to_vec()));
        let shown = format!("{encoded:?} {encoded:#?}");
        assert!(shown.starts_with("EncodedContact("), "{shown}");
        assert!(!shown.contains("6139990100") && !shown.contains("someone@"), "{shown}");
    }

    #[test]
    fn decoding_into_it_skips_the_fields() {
        let decoded = EncodedContact::decode(&contact().encode_to_vec()[..]).unwrap();
        assert!(decoded.as_bytes().is_empty());
    }
}
