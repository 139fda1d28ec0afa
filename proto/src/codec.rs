//! The protobuf codec of every generated server and client: prost's, with smaller buffers.
//!
//! tonic allocates a fresh encode buffer and a fresh decode buffer for every call, each of
//! `buffer_size` bytes (8 KiB by default), and grows them by that much when a message does
//! not fit. The tier's messages are a few hundred bytes: 8 KiB buffers cost a slow-path
//! `malloc` each and, in the daemons whose allocator wipes every freed block, 16 KiB of
//! zeroing per call. [`BUFFER_SIZE`] fits one contact with room to spare and stays within
//! glibc's per-thread cache of small blocks; larger messages still fit (the buffers grow).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Bytes allocated for each call's encode and decode buffer, and their growth step.
pub const BUFFER_SIZE: usize = 1024;

/// How many bytes of ready messages a stream gathers into one send (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_SIZE`] buffers; the generated code names it as its codec.
#[derive(Debug, Clone, Copy)]
pub struct Codec1K<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec1K<T, U> {
    fn default() -> Self {
        Codec1K(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

impl<T, U> Codec for Codec1K<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}

#[cfg(test)]
mod tests {
    use tonic::codec::{Decoder, Encoder};

    use super::*;

    #[test]
    fn encoders_and_decoders_use_the_small_buffers() {
        // BufferSettings has no getters; its Debug output names the size.
        let expected = format!("buffer_size: {BUFFER_SIZE},");
        let mut codec = Codec1K::<prost_types::Duration, prost_types::Duration>::default();
        assert!(format!("{:?}", codec.encoder().buffer_settings()).contains(&expected));
        assert!(format!("{:?}", codec.decoder().buffer_settings()).contains(&expected));
    }
}
