//! The tier's gRPC contracts, compiled with tonic and prost.
//!
//! [`v1`] is `contactcache.v1`: the messages, the `ContactCache` server and client, and
//! [`v1::FILE_DESCRIPTOR_SET`] for the cache's server reflection. [`ledger`] is
//! `surveybridge.v1`, the invitation ledger, with [`ledger::FILE_DESCRIPTOR_SET`] for the
//! bridge's. [`v1::Contact`] is the one message that carries contact data: its `Debug`
//! redacts phone and email, and its phone and email are zeroized when it is dropped;
//! [`encoded::EncodedContact`] sends one that is already encoded. Every generated server
//! and client uses [`codec::Codec1K`].

/// The `contactcache.v1` package.
pub mod v1 {
    #![allow(missing_docs, clippy::all, missing_debug_implementations)]
    tonic::include_proto!("contactcache.v1");

    /// The encoded descriptors of `contactcache.v1` (and the files it imports), for the
    /// cache's gRPC server reflection: nothing of the ledger, which the cache does not serve.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("contactcache_descriptor");
}

/// The `surveybridge.v1` package: the invitation ledger.
pub mod ledger {
    #![allow(missing_docs, clippy::all, missing_debug_implementations)]
    tonic::include_proto!("surveybridge.v1");

    /// The encoded descriptors of `surveybridge.v1` (and the files it imports), for the
    /// bridge's gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ledger_descriptor");
}

pub mod codec;
pub mod encoded;
mod redact;
