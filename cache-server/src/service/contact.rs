//! GetContact, DeleteContact and OptOut: one contact by GUID.

use proto::v1::Contact;
use tonic::Status;

use crate::{error::invalid, guid::Guid, store::Store, validate::FieldError};

/// Parses the `guid` field of a request.
pub(super) fn parse_guid(text: &str) -> Result<Guid, Status> {
    if text.is_empty() {
        return Err(invalid(&FieldError { field: "guid", message: "is required" }));
    }
    text.parse().map_err(|_| invalid(&FieldError { field: "guid", message: "is not a UUID in text form" }))
}

pub(super) fn get(store: &Store, guid: &str) -> Result<Contact, Status> {
    Ok(store.get(&parse_guid(guid)?)?)
}

pub(super) fn delete(store: &Store, guid: &str) -> Result<(), Status> {
    Ok(store.delete(&parse_guid(guid)?)?)
}

pub(super) fn opt_out(store: &Store, guid: &str) -> Result<(), Status> {
    Ok(store.opt_out(&parse_guid(guid)?)?)
}
