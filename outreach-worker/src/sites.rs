//! Who a site's messages are sent on behalf of (`[sites."<id>"]` of the configuration): the
//! clinic's name and contact line. A module of its own so that the templates, which write
//! them into every message, need nothing of the configuration's loading.

use cache_server::config::{ConfigError, check_line};
use serde::{Deserialize, Serialize};

/// The longest clinic name, in characters: room for it in a 2-segment SMS.
pub const MAX_SITE_NAME: usize = 80;

/// The longest clinic contact line, in characters.
pub const MAX_SITE_CONTACT: usize = 200;

/// Who a site's messages are sent on behalf of, as CASL wants each message to say: the
/// clinic's name and how to reach it. Not patient data: it is logged and checked freely.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct SiteIdentity {
    /// The clinic's name as patients know it, e.g. `Clinique Soleil`: in every SMS and email.
    pub name: String,
    /// One line with the clinic's mailing address and a phone number, email address or web
    /// address, valid for at least 60 days after sending: in every email.
    pub contact: String,
}

impl SiteIdentity {
    /// Checks the entry of site `id`: both values present, one line, not overlong.
    pub(crate) fn check(&self, id: &str) -> Result<(), ConfigError> {
        if id.trim().is_empty() {
            return Err(ConfigError::new("sites: a site id must not be empty"));
        }
        let fields = [("name", &self.name, MAX_SITE_NAME), ("contact", &self.contact, MAX_SITE_CONTACT)];
        for (field, value, max) in fields {
            check_line(&format!("sites.{id}.{field}"), value, max)?;
        }
        Ok(())
    }
}
