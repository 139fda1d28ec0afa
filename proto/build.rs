//! Compiles the `.proto` files with tonic and keeps a descriptor set per package for
//! reflection: each daemon's reflection then knows only the services it serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("contactcache_descriptor.bin"))
        // prost's codec with 1 KiB buffers instead of 8 KiB ones per call (see src/codec.rs).
        .codec_path("crate::codec::Codec1K")
        // Contact carries phone and email: its Debug is written by hand and redacts them.
        .skip_debug(["contactcache.v1.Contact"])
        .compile_protos(&["contactcache/v1/contactcache.proto"], &["."])?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("ledger_descriptor.bin"))
        .codec_path("crate::codec::Codec1K")
        .compile_protos(&["surveybridge/v1/ledger.proto"], &["."])?;
    Ok(())
}
