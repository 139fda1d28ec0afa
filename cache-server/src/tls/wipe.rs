//! rustls's read buffer, wiped before every read.
//!
//! rustls decrypts each record in place in its read buffer and, once the record has been
//! read, only moves what follows to the front: the plaintext stays behind, past the bytes
//! in use, for as long as the connection is open. It hands exactly that space to the next
//! read of the socket: [`Wiped`] zeroes it first. A connection reads again as soon as its
//! frames are parsed (the read that waits for the next call), so a call's decrypted bytes
//! do not outlast it. h2's own buffers are wiped by its patched copy (vendor/README.md).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zeroize::Zeroize;

/// A socket whose reader's free buffer space is zeroed before each read.
#[derive(Debug)]
pub struct Wiped<T>(pub T);

impl<T: AsyncRead + Unpin> AsyncRead for Wiped<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        buf.initialize_unfilled().zeroize();
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Wiped<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn the_space_handed_to_a_read_is_zeroed_before_the_bytes_land() {
        let mut stream = Wiped(&b"new"[..]);
        let mut buf = *b"stale plaintext";
        let n = stream.read(&mut buf).await.unwrap();
        assert_eq!(n, 3);
        assert_eq!(&buf, b"new\0\0\0\0\0\0\0\0\0\0\0\0");
    }
}
