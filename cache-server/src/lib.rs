//! The contact cache daemon.
pub mod clock;
pub mod crypto;
pub mod guid;
pub mod store;
pub mod validate;
