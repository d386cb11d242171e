//! A connection's outbound queue: whole encoded frames, bounded in bytes, and
//! the writer that drains it with vectored writes.
//!
//! Any task may push (fan-out, the connection's own reader, shutdown); only
//! the connection's writer pops. Pushing never waits: a connection whose
//! backlog would exceed its `send_buffer` is a slow consumer. Under the
//! default policy its backlog is dropped and a close frame (1013) takes its
//! place; under `on_slow_consumer = "drop"` the frames that do not fit are
//! dropped. Either way one stalled reader costs the server at most
//! `send_buffer` bytes and delays nobody else.
//!
//! Invariant: once a close frame is queued nothing more is, so the close
//! frame is always the last thing the writer writes.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::{Buf, Bytes};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::Notify,
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::frame;
use crate::config::SlowConsumer;

/// Close code for a connection that cannot keep up ("try again later").
pub(crate) const SLOW_CONSUMER_CODE: u16 = 1013;

/// Slices handed to one `write_vectored` call. Linux accepts 1024; 64 already
/// covers a large batch of small frames.
const MAX_IO_SLICES: usize = 64;

/// Creates a queue that holds at most `limit` unwritten bytes.
pub(crate) fn channel(limit: usize, on_overflow: SlowConsumer) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            frames: VecDeque::new(),
            bytes: 0,
            limit,
            on_overflow,
            phase: Phase::Open,
        }),
        wake_writer: Notify::new(),
        closing: CancellationToken::new(),
    });
    (Outbox(shared.clone()), OutboxReceiver(shared))
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox(Arc<Shared>);

/// The writer's side.
pub(crate) struct OutboxReceiver(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    wake_writer: Notify,
    /// Cancelled when the close frame is queued: the close handshake's clock starts.
    closing: CancellationToken,
}

struct State {
    frames: VecDeque<Bytes>,
    /// Bytes queued or being written, not yet confirmed written.
    bytes: usize,
    limit: usize,
    on_overflow: SlowConsumer,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepting frames.
    Open,
    /// A close frame is queued; nothing more is accepted.
    Closing,
    /// The reader is gone without a close; the writer flushes and stops.
    Finished,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// The connection is closing; the frame is dropped.
    Closing,
    /// This frame pushed the backlog past `send_buffer`: the connection is
    /// now closing with 1013. Reported once per connection.
    SlowConsumer,
    /// The frame did not fit in `send_buffer` and was dropped (policy "drop").
    Dropped,
}

impl Outbox {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a data or control frame.
    pub(crate) fn send(&self, frame: Bytes) -> Result<(), Rejected> {
        let mut state = self.state();
        if state.phase != Phase::Open {
            return Err(Rejected::Closing);
        }
        // One frame always fits an empty queue, so a message of max_payload
        // bytes plus its header can be sent even when send_buffer equals it.
        if state.bytes > 0 && state.bytes + frame.len() > state.limit {
            if state.on_overflow == SlowConsumer::Drop {
                return Err(Rejected::Dropped);
            }
            // Frames a writer has taken stay counted until written.
            let dropped: usize = state.frames.drain(..).map(|f| f.len()).sum();
            state.bytes -= dropped;
            state.push_close(frame::close(SLOW_CONSUMER_CODE, "slow consumer"));
            drop(state);
            self.closed_queued();
            return Err(Rejected::SlowConsumer);
        }
        state.bytes += frame.len();
        state.frames.push_back(frame);
        drop(state);
        self.0.wake_writer.notify_one();
        Ok(())
    }

    /// Queues a close frame unless one is queued already. Returns whether
    /// this call started the close.
    pub(crate) fn close(&self, code: u16, reason: &str) -> bool {
        self.close_with(frame::close(code, reason))
    }

    /// Queues an already encoded close frame (the reply to a client's close).
    pub(crate) fn close_with(&self, close_frame: Bytes) -> bool {
        let mut state = self.state();
        if state.phase != Phase::Open {
            return false;
        }
        state.push_close(close_frame);
        drop(state);
        self.closed_queued();
        true
    }

    fn closed_queued(&self) {
        self.0.closing.cancel();
        self.0.wake_writer.notify_one();
    }

    /// Completes once a close frame has been queued.
    pub(crate) fn closing(&self) -> WaitForCancellationFuture<'_> {
        self.0.closing.cancelled()
    }

    /// Whether a close frame has been queued (by anyone).
    pub(crate) fn is_closing(&self) -> bool {
        self.0.closing.is_cancelled()
    }

    /// Tells the writer that nothing more will come: it writes what is
    /// queued and stops.
    pub(crate) fn finish(&self) {
        let mut state = self.state();
        if state.phase == Phase::Open {
            state.phase = Phase::Finished;
        }
        drop(state);
        self.0.wake_writer.notify_one();
    }
}

impl State {
    fn push_close(&mut self, close_frame: Bytes) {
        self.bytes += close_frame.len();
        self.frames.push_back(close_frame);
        self.phase = Phase::Closing;
    }
}

impl OutboxReceiver {
    /// Moves every queued frame into `batch`, waiting until there is one.
    /// Returns `true` when this batch is the last (it ends with the close
    /// frame, or the queue was finished).
    async fn next_batch(&self, batch: &mut VecDeque<Bytes>) -> bool {
        loop {
            {
                let mut state = self
                    .0
                    .state
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if !state.frames.is_empty() || state.phase != Phase::Open {
                    std::mem::swap(&mut state.frames, batch);
                    return state.phase != Phase::Open;
                }
            }
            self.0.wake_writer.notified().await;
        }
    }

    fn written(&self, bytes: usize) {
        let mut state = self
            .0
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.bytes -= bytes;
    }

    /// Drains the queue into `io` until the close frame is written or the
    /// queue is finished. The socket is left open: the session closes it once
    /// the close handshake is over (RFC 6455 section 7.1.1). Each wake-up writes
    /// everything queued with as few vectored writes as the kernel allows and
    /// one flush.
    pub(crate) async fn run_writer<W: AsyncWrite + Unpin>(self, mut io: W) -> io::Result<()> {
        let mut batch = VecDeque::new();
        loop {
            let last = self.next_batch(&mut batch).await;
            let bytes: usize = batch.iter().map(Bytes::len).sum();
            write_all_vectored(&mut io, &mut batch).await?;
            io.flush().await?;
            self.written(bytes);
            if last {
                return Ok(());
            }
        }
    }
}

/// Writes every frame in `frames`, emptying it, coping with partial writes.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &mut VecDeque<Bytes>,
) -> io::Result<()> {
    while !frames.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
            let count = frames.len().min(MAX_IO_SLICES);
            for (slice, frame) in slices.iter_mut().zip(frames.iter()) {
                *slice = IoSlice::new(frame);
            }
            io.write_vectored(&slices[..count]).await?
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut remaining = written;
        while remaining > 0 {
            let front = frames
                .front_mut()
                .expect("the kernel wrote no more than it was given");
            if front.len() <= remaining {
                remaining -= front.len();
                frames.pop_front();
            } else {
                front.advance(remaining);
                remaining = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_consumer_is_closed_once_and_its_backlog_dropped() {
        let (outbox, receiver) = channel(100, SlowConsumer::Close);
        assert_eq!(outbox.send(Bytes::from(vec![0; 60])), Ok(()));
        assert_eq!(
            outbox.send(Bytes::from(vec![0; 60])),
            Err(Rejected::SlowConsumer)
        );
        assert_eq!(outbox.send(Bytes::from(vec![0; 1])), Err(Rejected::Closing));
        let state = receiver.0.state.lock().unwrap();
        assert_eq!(state.frames.len(), 1, "only the close frame is left");
        assert_eq!(&state.frames[0][..4], &[0x88, 15, 0x03, 0xF5]);
    }

    #[test]
    fn drop_policy_keeps_the_connection_and_drops_what_does_not_fit() {
        let (outbox, _receiver) = channel(100, SlowConsumer::Drop);
        assert_eq!(outbox.send(Bytes::from(vec![0; 60])), Ok(()));
        assert_eq!(
            outbox.send(Bytes::from(vec![0; 60])),
            Err(Rejected::Dropped)
        );
        assert_eq!(outbox.send(Bytes::from(vec![0; 40])), Ok(()));
        assert!(!outbox.is_closing());
    }

    #[test]
    fn one_frame_always_fits_an_empty_queue() {
        let (outbox, _receiver) = channel(10, SlowConsumer::Close);
        assert_eq!(outbox.send(Bytes::from(vec![0; 50])), Ok(()));
    }

    #[tokio::test]
    async fn writer_stops_after_the_close_frame() {
        let (outbox, receiver) = channel(1 << 20, SlowConsumer::Close);
        outbox
            .send(frame::encode(fastwebsockets::OpCode::Text, b"hi"))
            .unwrap();
        assert!(outbox.close(1000, "bye"));
        assert!(!outbox.close(1001, "again"));
        let mut written = Vec::new();
        receiver.run_writer(&mut written).await.unwrap();
        assert_eq!(&written[..4], b"\x81\x02hi");
        assert_eq!(&written[4..], &frame::close(1000, "bye")[..]);
    }
}
