//! Where store errors become gRPC statuses: one code per kind, and the field by name.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::error;

use crate::{store::StoreError, validate::FieldError};

/// INVALID_ARGUMENT naming the field, in the message and as a `BadRequest` detail.
pub fn invalid(e: &FieldError) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        e.to_string(),
        ErrorDetails::with_bad_request_violation(e.field, e.message),
    )
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        match e {
            StoreError::Invalid(e) => invalid(&e),
            StoreError::NotFound => Status::not_found(StoreError::NotFound.to_string()),
            e @ StoreError::Full { .. } => Status::resource_exhausted(e.to_string()),
            e @ (StoreError::NotLeased | StoreError::LeasedForSuppression | StoreError::Superseded) => {
                Status::failed_precondition(e.to_string())
            }
            e @ (StoreError::Crypto(_) | StoreError::Corrupt) => {
                // The cause is for the operator; the caller learns only that it failed.
                error!(cause = %e, "store failure");
                Status::internal("internal error")
            }
        }
    }
}
