//! A connection's outbound queue, bounded in bytes; its writer
//! (`ws::writer`) drains it.
//!
//! Any task may push (fan-out, the connection's own reader, shutdown); only
//! the connection's writer pops. Items are either wire bytes encoded once and
//! shared by every recipient (control frames, shared-mode fan-out) or whole
//! messages that the writer frames itself: with the connection's own
//! compressor when permessage-deflate runs in dedicated mode, or as a small
//! header followed by the shared payload, never copied.
//!
//! Pushing never waits: a connection whose backlog would exceed its
//! `send_buffer` is a slow consumer. Under the default policy its backlog is
//! dropped and a close frame (1013) takes its place; under
//! `on_slow_consumer = "drop"` the items that do not fit are dropped. Either
//! way one stalled reader costs the server at most `send_buffer` bytes and
//! delays nobody else.
//!
//! Invariant: once a close frame is queued nothing more is, so the close
//! frame is always the last thing the writer writes.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::frame;
use crate::{config::SlowConsumer, message::MessageKind, protocol::close, stats::Initiator};

/// One queued item.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// Bytes ready for the wire (one or more whole frames).
    Wire(Bytes),
    /// A whole message the writer frames (and maybe compresses) itself.
    Message(MessageKind, Bytes),
}

/// What one queued item costs the server beyond its wire bytes, so that
/// `send_buffer` bounds memory whatever the message sizes, empty ones
/// included. Measured by queueing a million items into one outbox and
/// reading VmRSS: 40 bytes per item for its slot in the queue
/// (`size_of::<Outgoing>()`), 104 for a 3-byte frame with its own buffer
/// (the slot, the frame's smallest allocation and the shared header `Bytes`
/// adds). Rounded up for what the measurement leaves out: the queue's growth
/// slack and, while a batch is being written, its chunk slots in the writer.
const ITEM_OVERHEAD: usize = 128;

impl Outgoing {
    /// The bytes this item puts on the wire (before compression).
    fn wire_len(&self) -> usize {
        match self {
            Self::Wire(bytes) => bytes.len(),
            Self::Message(_, payload) => frame::header_len(payload.len()) + payload.len(),
        }
    }

    /// What the item is charged against `send_buffer` while queued.
    fn cost(&self) -> usize {
        self.wire_len() + ITEM_OVERHEAD
    }
}

/// Creates a queue that holds at most `limit` unwritten bytes.
pub(crate) fn channel(limit: usize, on_overflow: SlowConsumer) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: 0,
            limit,
            on_overflow,
            phase: Phase::Open,
            closed_by: None,
        }),
        wake_writer: Notify::new(),
        closing: CancellationToken::new(),
        closing_flag: AtomicBool::new(false),
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
    /// The same fact as `closing`, for the per-message check: a plain
    /// atomic, where the token would take a lock.
    closing_flag: AtomicBool,
}

struct State {
    items: VecDeque<Outgoing>,
    /// What the items queued or being written cost (`Outgoing::cost`),
    /// until they are written.
    bytes: usize,
    limit: usize,
    on_overflow: SlowConsumer,
    phase: Phase,
    /// Who queued the close frame, and its code, for the disconnect metrics.
    closed_by: Option<(Initiator, Option<u16>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepting items.
    Open,
    /// A close frame is queued; nothing more is accepted.
    Closing,
    /// The reader is gone without a close; the writer flushes and stops.
    Finished,
}

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// The connection is closing; the item is dropped.
    Closing,
    /// This item pushed the backlog past `send_buffer`: the connection is
    /// now closing with 1013. Reported once per connection.
    SlowConsumer,
    /// The item did not fit in `send_buffer` and was dropped (policy "drop").
    Dropped,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    crate::sync::lock(&shared.state)
}

impl Outbox {
    /// Queues an item.
    pub(crate) fn send(&self, item: Outgoing) -> Result<(), Rejected> {
        let mut state = lock(&self.0);
        if state.phase != Phase::Open {
            return Err(Rejected::Closing);
        }
        // One item always fits an empty queue, so a message of max_payload
        // bytes plus its header can be sent even when send_buffer equals it.
        if state.bytes > 0 && state.bytes + item.cost() > state.limit {
            if state.on_overflow == SlowConsumer::Drop {
                return Err(Rejected::Dropped);
            }
            // Items a writer has taken stay counted until written.
            let dropped: usize = state.items.drain(..).map(|item| item.cost()).sum();
            state.bytes -= dropped;
            let close_frame = frame::close(close::TRY_AGAIN_LATER, "slow consumer");
            state.push_close(close_frame, Initiator::Server);
            drop(state);
            self.close_queued();
            return Err(Rejected::SlowConsumer);
        }
        state.bytes += item.cost();
        state.items.push_back(item);
        drop(state);
        self.0.wake_writer.notify_one();
        Ok(())
    }

    /// Queues a close frame unless one is queued already. Returns whether
    /// this call started the close.
    pub(crate) fn close(&self, code: u16, reason: &str) -> bool {
        self.start_close(frame::close(code, reason), Initiator::Server)
    }

    /// Queues an already encoded close frame (the reply to a client's close).
    pub(crate) fn close_with(&self, close_frame: Bytes) -> bool {
        self.start_close(close_frame, Initiator::Client)
    }

    fn start_close(&self, close_frame: Bytes, initiator: Initiator) -> bool {
        let mut state = lock(&self.0);
        if state.phase != Phase::Open {
            return false;
        }
        state.push_close(close_frame, initiator);
        drop(state);
        self.close_queued();
        true
    }

    fn close_queued(&self) {
        self.0.closing_flag.store(true, Ordering::Release);
        self.0.closing.cancel();
        self.0.wake_writer.notify_one();
    }

    /// Completes once a close frame has been queued.
    pub(crate) fn closing(&self) -> WaitForCancellationFuture<'_> {
        self.0.closing.cancelled()
    }

    /// Whether a close frame has been queued (by anyone).
    pub(crate) fn is_closing(&self) -> bool {
        self.0.closing_flag.load(Ordering::Acquire)
    }

    /// Who started the close handshake (a frame queued by `close_with`, the
    /// reply to the client's close, counts as the client's) and the code of
    /// the close frame; `None` while none is queued.
    pub(crate) fn closed_by(&self) -> Option<(Initiator, Option<u16>)> {
        lock(&self.0).closed_by
    }

    /// Tells the writer that nothing more will come: it writes what is
    /// queued and stops.
    pub(crate) fn finish(&self) {
        let mut state = lock(&self.0);
        if state.phase == Phase::Open {
            state.phase = Phase::Finished;
        }
        drop(state);
        self.0.wake_writer.notify_one();
    }
}

impl State {
    fn push_close(&mut self, close_frame: Bytes, initiator: Initiator) {
        self.closed_by = Some((initiator, frame::close_code(&close_frame)));
        let item = Outgoing::Wire(close_frame);
        self.bytes += item.cost();
        self.items.push_back(item);
        self.phase = Phase::Closing;
    }
}

impl OutboxReceiver {
    /// Moves every queued item into `batch`, waiting until there is one.
    /// Returns what the batch is charged against `send_buffer` (to give back
    /// with [`written`](Self::written) once it is on the wire) and whether
    /// it is the last (it ends with the close frame, or the queue was
    /// finished).
    pub(crate) async fn next_batch(&self, batch: &mut VecDeque<Outgoing>) -> (usize, bool) {
        loop {
            {
                let mut state = lock(&self.0);
                if !state.items.is_empty() || state.phase != Phase::Open {
                    std::mem::swap(&mut state.items, batch);
                    let charged = batch.iter().map(Outgoing::cost).sum();
                    return (charged, state.phase != Phase::Open);
                }
            }
            self.0.wake_writer.notified().await;
        }
    }

    /// Gives back what a written batch was charged.
    pub(crate) fn written(&self, charged: usize) {
        lock(&self.0).bytes -= charged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(len: usize) -> Outgoing {
        Outgoing::Wire(Bytes::from(vec![0; len]))
    }

    /// A wire item that costs exactly `cost` against `send_buffer`.
    fn costing(cost: usize) -> Outgoing {
        wire(cost - ITEM_OVERHEAD)
    }

    #[test]
    fn slow_consumer_is_closed_once_and_its_backlog_dropped() {
        let (outbox, receiver) = channel(1000, SlowConsumer::Close);
        assert_eq!(outbox.send(costing(600)), Ok(()));
        assert_eq!(outbox.send(costing(600)), Err(Rejected::SlowConsumer));
        assert_eq!(outbox.send(wire(1)), Err(Rejected::Closing));
        let state = lock(&receiver.0);
        assert_eq!(state.items.len(), 1, "only the close frame is left");
        let Outgoing::Wire(close) = &state.items[0] else {
            panic!("a close frame")
        };
        assert_eq!(&close[..4], &[0x88, 15, 0x03, 0xF5]);
    }

    #[test]
    fn drop_policy_keeps_the_connection_and_drops_what_does_not_fit() {
        let (outbox, _receiver) = channel(1000, SlowConsumer::Drop);
        assert_eq!(outbox.send(costing(600)), Ok(()));
        assert_eq!(outbox.send(costing(600)), Err(Rejected::Dropped));
        assert_eq!(outbox.send(costing(400)), Ok(()));
        assert!(!outbox.is_closing());
    }

    #[test]
    fn one_item_always_fits_an_empty_queue() {
        let (outbox, _receiver) = channel(10, SlowConsumer::Close);
        assert_eq!(outbox.send(wire(50)), Ok(()));
    }

    #[test]
    fn empty_messages_are_charged_what_they_cost() {
        let limit = 100 * ITEM_OVERHEAD;
        let (outbox, _receiver) = channel(limit, SlowConsumer::Close);
        let empty = || Outgoing::Message(MessageKind::Binary, Bytes::new());
        let mut queued = 0;
        while outbox.send(empty()).is_ok() {
            queued += 1;
            assert!(queued <= 100, "empty messages must not be free");
        }
        // Each costs its 2-byte header on top of the overhead.
        assert_eq!(queued, limit / (ITEM_OVERHEAD + 2));
        assert!(outbox.is_closing());
    }
}
