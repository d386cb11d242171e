//! A socket wrapper that counts the bytes read and written, for the wire
//! byte totals. It sits directly on the TCP stream, under TLS and HTTP, so
//! it counts what really crosses the network. One relaxed atomic add per
//! read or write call, never per byte or per frame.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use super::Counters;
use crate::tls::Socket;

/// What every connection's stream is from its accept: the TCP socket,
/// metered. TLS runs over it; a plain connection is taken back as this type
/// after its upgrade.
pub(crate) type PlainStream = Metered<TcpStream>;

/// A stream whose traffic is added to the server's wire byte counters.
pub(crate) struct Metered<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }

    /// The stream and the counters it adds to, to meter its parts.
    pub(crate) fn into_parts(self) -> (S, Arc<Counters>) {
        (self.inner, self.counters)
    }
}

impl Socket for PlainStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let read = self.inner.try_read_buf(buf)?;
        self.counters.traffic.record_wire_received(read);
        Ok(read)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.try_write(buf)?;
        self.counters.traffic.record_wire_sent(written);
        Ok(written)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.counters
            .traffic
            .record_wire_received(buf.filled().len() - before);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.counters.traffic.record_wire_sent(written);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.counters.traffic.record_wire_sent(written);
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn counts_both_directions() {
        let counters = Arc::new(Counters::default());
        let (near, mut far) = tokio::io::duplex(64);
        let mut metered = Metered::new(near, counters.clone());
        metered.write_all(b"hello").await.unwrap();
        far.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 8];
        let n = metered.read(&mut buf).await.unwrap();
        assert_eq!(n, 3);
        let traffic = counters.traffic.snapshot();
        assert_eq!(traffic.wire_bytes_sent, 5);
        assert_eq!(traffic.wire_bytes_received, 3);
    }
}
