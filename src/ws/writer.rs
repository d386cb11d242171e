//! A connection's socket side: frames what its outbox hands over with the
//! connection's encoder and writes it with as few vectored writes as the
//! kernel allows and one flush.
//!
//! Whoever queues into an outbox writes to the socket itself when it can
//! (`ws::outbox`): a lone delivery costs one `writev` in the task that made
//! it, with no second task to wake. The writer task (`OutboxReceiver::run`) only carries
//! on where a write could not finish: it is woken by the socket when it
//! turns writable again, by the outbox when work is queued that the sender
//! does not write itself (dedicated-mode compression), and finishes the
//! connection's output with the close frame.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes};
use smallvec::SmallVec;
use tokio::io::AsyncWrite;

use super::{
    encoder::{Framed, Outgoing, WriterEncoder},
    frame,
};

/// Slices handed to one `write_vectored` call. Linux accepts 1024; 64 already
/// covers a large batch of small frames.
const MAX_IO_SLICES: usize = 64;

/// Pending chunks up to this many bytes in all are copied together and
/// written with one plain write (see `Wire::poll_write_chunks`).
const GATHERED_BYTES: usize = 512;

/// The write half of a connection, whatever its transport (TCP, TLS, a test
/// buffer): boxed, so that outboxes have one type.
pub(crate) type WriteIo = Box<dyn AsyncWrite + Send + Unpin>;

/// The socket side of one connection: its write half, its encoder, and the
/// frames taken from the outbox and not yet written.
pub(crate) struct Wire {
    io: WriteIo,
    encoder: WriterEncoder,
    /// Encoded, not yet (wholly) written.
    chunks: VecDeque<Chunk>,
    /// What the items in `chunks` were charged against `send_buffer`.
    charged: usize,
    /// Written but not yet flushed (TLS may hold a record back).
    unflushed: bool,
    /// The first write error: nothing more is written after it.
    broken: Option<io::ErrorKind>,
}

impl Wire {
    pub(crate) fn new(io: WriteIo, encoder: WriterEncoder) -> Self {
        Self {
            io,
            encoder,
            chunks: VecDeque::new(),
            charged: 0,
            unflushed: false,
            broken: None,
        }
    }

    /// Whether a sender may write for this connection from its own task:
    /// not when the connection compresses its own messages, so that a
    /// fan-out to many dedicated-mode connections still spreads their
    /// compression over the writers' tasks.
    pub(crate) fn writes_inline(&self) -> bool {
        !self.encoder.compresses()
    }

    /// Frames one queued item (charged `cost`) behind what is pending.
    pub(crate) fn push(&mut self, item: Outgoing, cost: usize) {
        self.charged += cost;
        match item {
            Outgoing::Wire(bytes) => self.push_chunk(Chunk::Shared(bytes)),
            Outgoing::Message(kind, payload) => match self.encoder.encode(kind, payload) {
                Framed::Whole(bytes) => self.push_chunk(Chunk::Shared(bytes)),
                Framed::Split(header, payload) => {
                    self.push_chunk(Chunk::Header(header));
                    self.push_chunk(Chunk::Shared(payload));
                }
            },
        }
    }

    /// Only non-empty chunks: a write of nothing returns 0, which reads as a
    /// dead peer.
    fn push_chunk(&mut self, chunk: Chunk) {
        if !chunk.remaining().is_empty() {
            self.chunks.push_back(chunk);
        }
    }

    /// Writes and flushes everything pushed; returns what it was charged,
    /// to give back to `send_buffer`. On `Pending` the socket wakes the
    /// task whose waker `cx` holds once it can take more.
    pub(crate) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if let Some(kind) = self.broken {
            return Poll::Ready(Err(kind.into()));
        }
        let written = self.poll_write_inner(cx);
        if let Poll::Ready(Err(error)) = &written {
            self.broken = Some(error.kind());
            self.chunks.clear();
        }
        written
    }

    fn poll_write_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while !self.chunks.is_empty() {
            let written = ready!(self.poll_write_chunks(cx))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unflushed = true;
            self.advance(written);
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(std::mem::take(&mut self.charged)))
    }

    /// One write of what is pending (or of its first `MAX_IO_SLICES`
    /// chunks): a plain write where that is one slice or a few bytes copied
    /// together, a vectored write otherwise. A `writev` costs the kernel a
    /// few hundred nanoseconds more than a `send` (it imports the vector
    /// first): a lone small message (a header and its payload) is cheaper
    /// copied than described.
    fn poll_write_chunks(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let io = Pin::new(&mut self.io);
        if let [only] = self.chunks.as_slices().0
            && self.chunks.len() == 1
        {
            return io.poll_write(cx, only.remaining());
        }
        // Measured before anything is copied: a batch too large to gather
        // (a pipelining client's) costs no copy it then throws away.
        let mut pending = 0;
        let fits = self.chunks.iter().all(|chunk| {
            pending += chunk.remaining().len();
            pending <= GATHERED_BYTES
        });
        if fits {
            // On the stack, and not zeroed first: the memset of a zeroed
            // array cost a lone echo more than its copy.
            let mut gathered = SmallVec::<[u8; GATHERED_BYTES]>::new();
            for chunk in &self.chunks {
                gathered.extend_from_slice(chunk.remaining());
            }
            return io.poll_write(cx, &gathered);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
        let count = self.chunks.len().min(MAX_IO_SLICES);
        for (slice, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
            *slice = IoSlice::new(chunk.remaining());
        }
        io.poll_write_vectored(cx, &slices[..count])
    }

    /// Drops the `written` bytes at the front, coping with partial writes.
    fn advance(&mut self, written: usize) {
        let mut left = written;
        while left > 0 {
            let front = self
                .chunks
                .front_mut()
                .expect("the kernel wrote no more than it was given");
            let len = front.remaining().len();
            if len <= left {
                left -= len;
                self.chunks.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }

    /// When the connection's compressor is due for release, if one is held.
    pub(crate) fn release_at(&self) -> Option<tokio::time::Instant> {
        self.encoder.release_at()
    }

    /// Releases the connection's compressor if it has been idle long enough.
    pub(crate) fn release_if_idle(&mut self) {
        self.encoder.release_if_idle();
    }

    pub(crate) fn into_io(self) -> WriteIo {
        self.io
    }
}

/// One piece of a vectored write: an inline header, or shared bytes.
enum Chunk {
    Header(frame::Header),
    Shared(Bytes),
}

impl Chunk {
    fn remaining(&self) -> &[u8] {
        match self {
            Self::Header(header) => header.remaining(),
            Self::Shared(bytes) => bytes,
        }
    }

    fn advance(&mut self, count: usize) {
        match self {
            Self::Header(header) => header.advance(count),
            Self::Shared(bytes) => bytes.advance(count),
        }
    }
}
