//! gRPC server reflection in both versions tools speak: `grpc.reflection.v1`, and the
//! older `grpc.reflection.v1alpha` that Python's grpcio reflection client and older grpcurl
//! still use.
//!
//! Both answer from the same descriptors and list the same services: exactly those of the
//! descriptor sets a port registers (its own service and health), and the two reflection
//! services themselves, as grpc-go's reflection does and grpcurl expects. Each daemon
//! registers only the package it serves (`proto` keeps a descriptor set per package), so
//! the cache's reflection knows nothing of the bridge's ledger, not even its symbols.

use tonic::service::Routes;
use tonic_reflection::{pb, server::Builder};

pub use tonic_reflection::server::Error;

/// The names of the reflection services, as [`add`] serves and lists them.
pub const SERVICES: [&str; 2] =
    ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// `routes` with reflection v1 and v1alpha added, both answering from `descriptor_sets`
/// (encoded `FileDescriptorSet`s) and the reflection services' own descriptors.
pub fn add(routes: Routes, descriptor_sets: &[&'static [u8]]) -> Result<Routes, Error> {
    // tonic-reflection's default adds only the descriptor of the version being built, so
    // each version would list itself but not the other; both are served, so both are listed.
    let builder = || {
        descriptor_sets
            .iter()
            .fold(Builder::configure(), |builder, set| builder.register_encoded_file_descriptor_set(set))
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(pb::v1alpha::FILE_DESCRIPTOR_SET)
    };
    Ok(routes.add_service(builder().build_v1()?).add_service(builder().build_v1alpha()?))
}
