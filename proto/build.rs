//! Compiles the `.proto` files with tonic and keeps the descriptor set for reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("descriptor.bin"))
        // Contact carries phone and email: its Debug is written by hand and redacts them.
        // prost's codec with 1 KiB buffers instead of 8 KiB ones per call (see src/codec.rs).
        .codec_path("crate::codec::Codec1K")
        .skip_debug(["contactcache.v1.Contact"])
        .compile_protos(&["contactcache/v1/contactcache.proto", "surveybridge/v1/ledger.proto"], &["."])?;
    Ok(())
}
