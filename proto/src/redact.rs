//! What `Contact` shows of itself and what it leaves behind.

use std::fmt;

use zeroize::Zeroize;

use crate::v1::Contact;

impl fmt::Debug for Contact {
    /// Ids, language, zone and timing are shown; phone and email only as present or absent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contact")
            .field("site_id", &self.site_id)
            .field("provider_id", &self.provider_id)
            .field("campaign_id", &self.campaign_id)
            .field("phone", &Redacted(!self.phone.is_empty()))
            .field("email", &Redacted(!self.email.is_empty()))
            .field("language", &self.language)
            .field("time_zone", &self.time_zone)
            .field("send_after", &self.send_after)
            .field("channel", &self.channel)
            .finish()
    }
}

impl Drop for Contact {
    fn drop(&mut self) {
        self.phone.zeroize();
        self.email.zeroize();
    }
}

struct Redacted(bool);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "<redacted>" } else { "<none>" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_phone_and_email() {
        // Contact implements Drop, so no struct update syntax.
        let mut contact = Contact::default();
        contact.site_id = "site-1".into();
        contact.phone = "+16139990100".into();
        contact.email = "someone@example.org".into();
        let shown = format!("{contact:?} {contact:#?}");
        assert!(shown.contains("site-1"));
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains("6139990100"), "{shown}");
        assert!(!shown.contains("someone@"), "{shown}");
    }
}
