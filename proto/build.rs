//! Compiles the `.proto` files with tonic and keeps a descriptor set per package for
//! reflection: each daemon's reflection then knows only the services it serves.
//!
//! The files are parsed by protox, in Rust, so building needs no `protoc`. The descriptor
//! sets hold what `protoc --include_imports --include_source_info` would write: the imported
//! well-known types, and the comments that become the generated code's docs.

use std::{env, path::PathBuf};

use tonic_prost_build::{Builder, Config};

/// Parses `proto` (a path under this crate, as imports name it), writes its descriptor set to
/// `descriptor` and generates its code with `builder`.
fn compile(builder: Builder, proto: &str, descriptor: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file(proto)?;
    std::fs::write(descriptor, compiler.encode_file_descriptor_set())?;
    // What tonic's protoc route adds to every generated type.
    let mut config = Config::new();
    config.type_attribute(".", "#[allow(clippy::all)]");
    builder.compile_fds_with_config(compiler.file_descriptor_set(), config)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    compile(
        tonic_prost_build::configure()
            // prost's codec with 1 KiB buffers instead of 8 KiB ones per call (see src/codec.rs).
            .codec_path("crate::codec::Codec1K")
            // Contact carries phone and email: its Debug is written by hand and redacts them.
            .skip_debug(["contactcache.v1.Contact"]),
        "contactcache/v1/contactcache.proto",
        out.join("contactcache_descriptor.bin"),
    )?;
    compile(
        tonic_prost_build::configure().codec_path("crate::codec::Codec1K"),
        "surveybridge/v1/ledger.proto",
        out.join("ledger_descriptor.bin"),
    )?;
    Ok(())
}
