//! What an admin client that stops reading can make the server hold: a
//! dashboard feed left open in a frozen tab, a scraper hung halfway through
//! an answer.
//!
//! - [`limit_unsent`] caps the bytes the kernel queues unsent for the
//!   client at [`UNSENT_LOWAT`], instead of a send buffer that autotunes to
//!   megabytes: the socket stops taking writes soon after the client stops
//!   reading.
//! - [`WriteDeadline`] wraps the socket under hyper: once a write has
//!   waited [`WRITE_STALL_TIMEOUT`] without the socket taking a byte, the
//!   write fails and hyper drops the connection. Any progress rearms it, so
//!   a slow client is never cut off, only one that stopped.
//! - [`WriteState`] tells the dashboard feed whether the socket is blocked
//!   right now, so that it skips frames instead of queueing them in hyper's
//!   write buffer behind a client that is behind.

use std::{
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Sleep,
};

/// How long a write may wait for the socket to take a byte. Over a live
/// link, even a lossy one, the kernel drains a few KiB within a couple of
/// retransmission timeouts; ten seconds without any is a client that
/// stopped reading. The dashboard reconnects by itself.
pub(super) const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Unsent bytes the kernel queues for an admin client before writes wait
/// (`TCP_NOTSENT_LOWAT`): several dashboard frames, and large answers
/// (`/metrics`, `/channels`) still go out in full-sized segments.
pub(super) const UNSENT_LOWAT: u32 = 16 * 1024;

/// Caps the bytes the kernel holds unsent for `stream` at [`UNSENT_LOWAT`].
/// Best effort: without it the write deadline still applies, only later.
pub(super) fn limit_unsent(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(UNSENT_LOWAT) {
        tracing::debug!(%error, "TCP_NOTSENT_LOWAT not set on an admin connection");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

/// Whether a connection's socket is refusing writes now: shared between the
/// connection's [`WriteDeadline`] and what it serves.
#[derive(Debug, Clone, Default)]
pub(super) struct WriteState {
    blocked: Arc<AtomicBool>,
}

impl WriteState {
    /// True from a write the socket could not take until one it took.
    /// Relaxed: a hint read once per frame, never a synchronisation point.
    pub(super) fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Relaxed)
    }

    fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::Relaxed);
    }
}

/// A stream whose writes fail once they have waited `timeout` without
/// progress.
pub(super) struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Armed by the first write that had to wait; disarmed by progress.
    stall: Option<Pin<Box<Sleep>>>,
    state: WriteState,
}

impl<S> WriteDeadline<S> {
    pub(super) fn new(inner: S, timeout: Duration, state: WriteState) -> Self {
        Self {
            inner,
            timeout,
            stall: None,
            state,
        }
    }

    /// Passes a finished write through and disarms the deadline; on a
    /// pending one, arms it (once) and fails when it has passed.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(result) = poll {
            self.stall = None;
            self.state.set_blocked(false);
            return Poll::Ready(result);
        }
        self.state.set_blocked(true);
        let timeout = self.timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no bytes for {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Bytes the in-memory pipe holds: the "kernel buffer" of these tests.
    const PIPE: usize = 64;

    #[tokio::test(start_paused = true)]
    async fn a_stopped_reader_fails_the_write_after_the_timeout() {
        let (near, _far) = tokio::io::duplex(PIPE);
        let state = WriteState::default();
        let mut stream = WriteDeadline::new(near, WRITE_STALL_TIMEOUT, state.clone());
        stream.write_all(&[0; PIPE]).await.unwrap();
        assert!(!state.is_blocked());
        let started = tokio::time::Instant::now();
        let error = stream.write_all(b"more").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), WRITE_STALL_TIMEOUT);
        assert!(state.is_blocked());
    }

    #[tokio::test(start_paused = true)]
    async fn progress_rearms_the_deadline() {
        let (near, mut far) = tokio::io::duplex(PIPE);
        let state = WriteState::default();
        let mut stream = WriteDeadline::new(near, WRITE_STALL_TIMEOUT, state.clone());
        // A reader that takes a few bytes at just under the timeout, three
        // times: each write waits almost the whole timeout and succeeds.
        let reader = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            for _ in 0..3 {
                tokio::time::sleep(WRITE_STALL_TIMEOUT - Duration::from_millis(1)).await;
                far.read_exact(&mut byte).await.unwrap();
            }
            far
        });
        stream.write_all(&[0; PIPE]).await.unwrap();
        for _ in 0..3 {
            stream.write_all(b"x").await.unwrap();
        }
        assert!(!state.is_blocked());
        drop(reader.await.unwrap());
    }
}
