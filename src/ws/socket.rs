//! The upgraded connection's two halves: the session reads from one, the
//! outbox writes to the other.
//!
//! A plain TCP connection is taken back from hyper and split into owned
//! halves (each metered, as the stream was), which share the socket
//! without a lock and reach it without the layers an upgrade wraps it in
//! (hyper's boxed I/O, its rewind buffer, the adapters between tokio's and
//! hyper's traits): each read and write of a lone message costs that much
//! less, and the connection two allocations less. Any other transport
//! (TLS) keeps the upgraded stream, split by tokio.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, ReadBuf},
    net::tcp::OwnedReadHalf,
};

use super::writer::WriteIo;
use crate::stats::{Metered, PlainStream};

/// The read half.
pub(crate) enum ReadHalf {
    /// A plain TCP connection's own read half, after what hyper had read
    /// past the handshake (a client may send its first frame right behind
    /// it): handed out first.
    Tcp(Bytes, Metered<OwnedReadHalf>),
    /// The upgraded stream's read half.
    Upgraded(tokio::io::ReadHalf<TokioIo<Upgraded>>),
}

/// Splits the connection fastwebsockets hands over after the upgrade.
pub(crate) fn split(io: TokioIo<Upgraded>) -> (ReadHalf, WriteIo) {
    let upgraded = io.into_inner();
    match upgraded.downcast::<TokioIo<PlainStream>>() {
        Ok(parts) => {
            let (stream, counters) = parts.io.into_inner().into_parts();
            let (read, write) = stream.into_split();
            let read = Metered::new(read, counters.clone());
            // A copy: even empty, hyper's bytes hold on to its whole read
            // buffer (8 KiB) for as long as they live.
            let ahead = Bytes::copy_from_slice(&parts.read_buf);
            (
                ReadHalf::Tcp(ahead, read),
                Box::new(Metered::new(write, counters)),
            )
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            (ReadHalf::Upgraded(read), Box::new(write))
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(ahead, read) if ahead.is_empty() => Pin::new(read).poll_read(cx, buf),
            Self::Tcp(ahead, _) => {
                let len = ahead.len().min(buf.remaining());
                buf.put_slice(&ahead.split_to(len));
                Poll::Ready(Ok(()))
            }
            Self::Upgraded(read) => Pin::new(read).poll_read(cx, buf),
        }
    }
}
