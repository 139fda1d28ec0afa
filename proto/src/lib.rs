//! The `contactcache.v1` gRPC contract, compiled with tonic and prost.
//!
//! [`v1`] holds the messages, the `ContactCache` server and client, and
//! [`FILE_DESCRIPTOR_SET`] for server reflection. [`v1::Contact`] is the one message that
//! carries contact data: its `Debug` redacts phone and email, and its phone and email are
//! zeroized when it is dropped.

/// The `contactcache.v1` package.
pub mod v1 {
    #![allow(missing_docs, clippy::all, missing_debug_implementations)]
    tonic::include_proto!("contactcache.v1");

    /// The encoded descriptors of this package, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("contactcache_v1_descriptor");
}

mod redact;
