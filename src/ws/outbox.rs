//! A connection's outbound queue, bounded in bytes, and the way to its
//! socket.
//!
//! Any task may push (fan-out, the connection's own reader, shutdown).
//! Items are either wire bytes encoded once and shared by every recipient
//! (control frames, shared-mode fan-out) or whole messages framed on the
//! way out: with the connection's own compressor when permessage-deflate
//! runs in dedicated mode, or as a small header followed by the shared
//! payload, never copied.
//!
//! The socket side ([`Wire`]) lives here, under the queue's lock, once the
//! connection's writer has started: whoever pushes writes the item to the
//! socket at once when the writer is idle and the connection frames its
//! messages without compressing, so a lone delivery costs one `writev` in
//! the sender's task and no wake-up of another. Under a cork
//! (`ws::cork`) the write waits for the cork's release and takes everything
//! gathered meanwhile. A write the socket cannot take whole registers the
//! writer task's waker with the socket, and the writer carries on from
//! there; items pushed meanwhile queue behind it.
//!
//! Pushing never waits: a connection whose backlog would exceed its
//! `send_buffer` is a slow consumer. Under the default policy its backlog is
//! dropped and a close frame (1013) takes its place; under
//! `on_slow_consumer = "drop"` the items that do not fit are dropped. Either
//! way one stalled reader costs the server at most `send_buffer` bytes and
//! delays nobody else.
//!
//! Invariant: once a close frame is queued nothing more is, so the close
//! frame is always the last thing written.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker, ready},
};

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use super::{
    cork::{self, Deferred},
    encoder::{Outgoing, WriterEncoder},
    frame,
    quiet::{self, Quiet, Signal, Signalled},
    writer::{Wire, WriteIo},
};
use crate::{config::SlowConsumer, protocol::close, stats::Initiator};

/// What one queued item costs the server beyond its wire bytes, so that
/// `send_buffer` bounds memory whatever the message sizes, empty ones
/// included. Measured by queueing a million items into one outbox and
/// reading VmRSS: 40 bytes per item for its slot in the queue
/// (`size_of::<Outgoing>()`), 104 for a 3-byte frame with its own buffer
/// (the slot, the frame's smallest allocation and the shared header `Bytes`
/// adds). Rounded up for what the measurement leaves out: the queue's growth
/// slack and, while a batch is being written, its chunk slots in the writer.
const ITEM_OVERHEAD: usize = 128;

/// A corked connection's backlog past which it is written at once anyway:
/// a reader that keeps finding input could otherwise gather a fan-out
/// recipient's `send_buffer` in one poll and make it look like a slow
/// consumer. Large enough for any pipelined batch of small messages to go
/// out as one write.
const CORK_LIMIT: usize = 64 * 1024;

/// What an item is charged against `send_buffer` while queued.
fn cost(item: &Outgoing) -> usize {
    item.wire_len() + ITEM_OVERHEAD
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
            wire: None,
            idle_writer: None,
            corked: false,
        }),
        signal: Signal::new(),
        closing_flag: AtomicBool::new(false),
    });
    (Outbox(shared.clone()), OutboxReceiver(shared))
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox(Arc<Shared>);

/// The writer's side.
pub(crate) struct OutboxReceiver(Arc<Shared>);

/// What an outbox and its receiver share (crate-visible only as the owner
/// of [`Outbox::quiet`]'s signal).
pub(crate) struct Shared {
    state: Mutex<State>,
    /// The session's signal for what it waits on rarely ([`Outbox::quiet`]),
    /// woken here when the close frame is queued (the close handshake's
    /// clock starts): in the allocation the connection has anyway.
    signal: Signal,
    /// Whether the close frame is queued (set before `closing` wakes).
    closing_flag: AtomicBool,
}

struct State {
    /// Queued, not yet handed to the wire.
    items: VecDeque<Outgoing>,
    /// What the items queued or being written cost ([`cost`]),
    /// until they are written.
    bytes: usize,
    limit: usize,
    on_overflow: SlowConsumer,
    phase: Phase,
    /// Who queued the close frame, and its code, for the disconnect metrics.
    closed_by: Option<(Initiator, Option<u16>)>,
    /// The socket side, from the writer's start until it stops.
    wire: Option<Wire>,
    /// The writer task's waker while it waits for work (not for the
    /// socket): whoever takes it writes, or wakes the writer.
    idle_writer: Option<Waker>,
    /// Deferred to the cork held on the pushing thread.
    corked: bool,
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
    /// Queues an item, and writes it unless a cork or the socket defers it.
    pub(crate) fn send(&self, item: Outgoing) -> Result<(), Rejected> {
        let mut state = lock(&self.0);
        if state.phase != Phase::Open {
            return Err(Rejected::Closing);
        }
        // One item always fits an empty queue, so a message of max_payload
        // bytes plus its header can be sent even when send_buffer equals it.
        if state.bytes > 0 && state.bytes + cost(&item) > state.limit {
            if state.on_overflow == SlowConsumer::Drop {
                return Err(Rejected::Dropped);
            }
            // Items the wire has taken stay counted until written.
            let dropped: usize = state.items.drain(..).map(|item| cost(&item)).sum();
            state.bytes -= dropped;
            let close_frame = frame::close(close::TRY_AGAIN_LATER, "slow consumer");
            state.push_close(close_frame, Initiator::Server);
            self.close_queued(state);
            return Err(Rejected::SlowConsumer);
        }
        state.bytes += cost(&item);
        state.items.push_back(item);
        if !state.corked && cork::defer(&self.0) {
            state.corked = true;
        }
        if !state.corked || state.bytes >= CORK_LIMIT {
            state.write_now();
        }
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
        self.close_queued(state);
        true
    }

    /// The close frame is the last item: write it (the writer then stops)
    /// and start the close handshake's clock.
    fn close_queued(&self, mut state: MutexGuard<'_, State>) {
        state.write_now();
        drop(state);
        self.0.closing_flag.store(true, Ordering::Release);
        self.0.signal.wake();
    }

    /// `future`, polled only on its first poll and once the outbox's signal
    /// woke: when something `future` waits on fired, or a close frame was
    /// queued (which `future` then sees in [`is_closing`](Self::is_closing)).
    pub(crate) fn quiet<F: Future>(&self, future: F) -> Quiet<'_, Shared, F> {
        quiet::quiet(&self.0, future)
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
        state.write_now();
    }
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.signal.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.signal.wake();
    }
}

impl Signalled for Shared {
    fn signal(&self) -> &Signal {
        &self.signal
    }
}

impl Deferred for Shared {
    /// Writes what a released cork deferred.
    fn release(&self) {
        let mut state = lock(self);
        state.corked = false;
        state.write_now();
    }
}

impl State {
    fn push_close(&mut self, close_frame: Bytes, initiator: Initiator) {
        self.closed_by = Some((initiator, frame::close_code(&close_frame)));
        let item = Outgoing::Wire(close_frame);
        self.bytes += cost(&item);
        self.items.push_back(item);
        self.phase = Phase::Closing;
    }

    /// Acts on what was just queued while the writer is idle: writes it
    /// from this task when the wire allows, else wakes the writer. A busy
    /// writer (or one not started yet) takes it on its own.
    fn write_now(&mut self) {
        let Some(waker) = self.idle_writer.take() else {
            return;
        };
        if !self.wire.as_ref().is_some_and(Wire::writes_inline) {
            return waker.wake();
        }
        // The writer's waker, so that a socket that cannot take everything
        // wakes the writer, which carries on. Unconstrained: the write
        // spends none of the sending task's cooperative budget, which a
        // fan-out to thousands of members would exhaust after 128 writes,
        // making every later one report Pending to a socket that could
        // take it.
        let drained = {
            let mut cx = Context::from_waker(&waker);
            let draining =
                std::pin::pin!(tokio::task::unconstrained(std::future::poll_fn(
                    |cx| self.drain(cx)
                )));
            draining.poll(&mut cx)
        };
        match drained {
            Poll::Pending => {}
            Poll::Ready(Ok(())) if self.phase == Phase::Open => self.idle_writer = Some(waker),
            // The close frame is out, or the socket broke: the writer stops.
            Poll::Ready(_) => waker.wake(),
        }
    }

    /// Moves every queued item to the wire and writes until the socket
    /// blocks or nothing is left.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(wire) = &mut self.wire else {
            return Poll::Ready(Ok(()));
        };
        loop {
            let written = match wire.poll_write(cx) {
                Poll::Ready(Ok(charged)) => charged,
                Poll::Ready(Err(error)) => {
                    // Nothing more will be written: what is queued is
                    // dropped, and so is its charge.
                    self.items.clear();
                    self.bytes = 0;
                    return Poll::Ready(Err(error));
                }
                Poll::Pending => return Poll::Pending,
            };
            self.bytes -= written;
            if self.items.is_empty() {
                return Poll::Ready(Ok(()));
            }
            for item in self.items.drain(..) {
                let charge = cost(&item);
                wire.push(item, charge);
            }
        }
    }
}

/// Where one poll of the writer left it.
enum Progress {
    /// It stopped: see [`OutboxReceiver::run`].
    Done(io::Result<()>),
    /// It waits (for work or for the socket), and for its compressor's
    /// release at this time, if one is held.
    Parked(Option<Instant>),
}

impl OutboxReceiver {
    /// The connection's writer: hands `io` to the outbox at once, so that
    /// from now on items are written, and returns the future that carries
    /// on wherever a sender's write could not finish, until the close frame
    /// is written or the queue is finished; it hands `io` back with whether
    /// every write succeeded. The socket is left open: the session closes
    /// it once the close handshake is over (RFC 6455 section 7.1.1).
    ///
    /// Not an `async fn`: that would keep a second copy of `io` and the
    /// encoder in every session's task for its whole life.
    pub(crate) fn run(
        self,
        io: WriteIo,
        encoder: WriterEncoder,
    ) -> impl Future<Output = (WriteIo, io::Result<()>)> + Send {
        lock(&self.0).wire = Some(Wire::new(io, encoder));
        async move {
            // The compressor's release timer, made on first need (most
            // connections never hold a compressor): only this task
            // compresses, so its deadline can only have moved after a poll
            // of the write.
            let mut release: Option<Pin<Box<Sleep>>> = None;
            let written = std::future::poll_fn(|cx| {
                loop {
                    let at = match self.poll_write(cx) {
                        Progress::Done(written) => return Poll::Ready(written),
                        Progress::Parked(None) => return Poll::Pending,
                        Progress::Parked(Some(at)) => at,
                    };
                    let timer =
                        release.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    if timer.deadline() != at {
                        timer.as_mut().reset(at);
                    }
                    ready!(timer.as_mut().poll(cx));
                    release = None;
                    self.release_if_idle();
                }
            })
            .await;
            let wire = lock(&self.0).wire.take();
            (wire.expect("attached above").into_io(), written)
        }
    }

    /// Writes what is queued; done once the close frame is written or the
    /// queue finished (`Ok`), or a write failed. While it has nothing to do
    /// it parks, leaving senders its waker (the one it left last time, if
    /// that still wakes this task: no clone per poll), and says when its
    /// compressor is due for release. One lock for all of it: the session
    /// polls its writer on every wake-up.
    fn poll_write(&self, cx: &mut Context<'_>) -> Progress {
        let mut state = lock(&self.0);
        let parked = state.idle_writer.take();
        match state.drain(cx) {
            Poll::Ready(Ok(())) if state.phase == Phase::Open => {
                let waker = match parked {
                    Some(waker) if waker.will_wake(cx.waker()) => waker,
                    _ => cx.waker().clone(),
                };
                state.idle_writer = Some(waker);
                Progress::Parked(state.wire.as_ref().and_then(Wire::release_at))
            }
            Poll::Ready(done) => Progress::Done(done),
            Poll::Pending => Progress::Parked(state.wire.as_ref().and_then(Wire::release_at)),
        }
    }

    /// Releases the connection's compressor if it has been idle long enough.
    fn release_if_idle(&self) {
        if let Some(wire) = &mut lock(&self.0).wire {
            wire.release_if_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::{message::MessageKind, stats::Counters};

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

    fn plain(counters: &Arc<Counters>) -> WriterEncoder {
        WriterEncoder::with(None, 0, counters.clone())
    }

    /// Everything the writer wrote into a pipe, once it stopped.
    async fn run_to_end(receiver: OutboxReceiver, encoder: WriterEncoder) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (io, written) = receiver.run(Box::new(server), encoder).await;
        written.unwrap();
        drop(io);
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        all
    }

    #[tokio::test]
    async fn writer_frames_messages_and_stops_after_the_close_frame() {
        let counters = Arc::new(Counters::default());
        let (outbox, receiver) = channel(1 << 20, SlowConsumer::Close);
        outbox
            .send(Outgoing::Message(
                MessageKind::Text,
                Bytes::from_static(b"hi"),
            ))
            .unwrap();
        assert!(outbox.close(1000, "bye"));
        assert!(!outbox.close(1001, "again"));
        let written = run_to_end(receiver, plain(&counters)).await;
        assert_eq!(&written[..4], b"\x81\x02hi");
        assert_eq!(&written[4..], &frame::close(1000, "bye")[..]);
    }

    #[tokio::test]
    async fn partial_writes_keep_every_byte_in_order() {
        let counters = Arc::new(Counters::default());
        let (outbox, receiver) = channel(1 << 20, SlowConsumer::Close);
        let mut expected = Vec::new();
        // Vectored while more than a few hundred bytes are pending, copied
        // together below that, a lone chunk at the end: all cut short by a
        // pipe that takes 7 bytes at a time.
        for (kind, payload) in [
            (MessageKind::Text, b"hi".to_vec()),
            (MessageKind::Binary, vec![7; 300]),
            (MessageKind::Binary, vec![9; 2000]),
            (MessageKind::Text, b"end".to_vec()),
        ] {
            expected.extend_from_slice(&frame::encode_message(kind, &payload, false));
            let item = Outgoing::Message(kind, Bytes::from(payload));
            outbox.send(item).unwrap();
        }
        expected.extend_from_slice(&frame::EMPTY_PING);
        outbox.send(Outgoing::Wire(frame::EMPTY_PING)).unwrap();
        outbox.finish();
        let (mut client, server) = tokio::io::duplex(7);
        let writing = async {
            let (io, written) = receiver.run(Box::new(server), plain(&counters)).await;
            written.unwrap();
            drop(io);
        };
        let mut all = Vec::new();
        let ((), read) = tokio::join!(writing, client.read_to_end(&mut all));
        read.unwrap();
        assert_eq!(all, expected);
    }

    #[tokio::test]
    async fn dedicated_compression_sets_rsv1_above_the_threshold_only() {
        let counters = Arc::new(Counters::default());
        let (outbox, receiver) = channel(1 << 20, SlowConsumer::Close);
        let big = Bytes::from(vec![b'a'; 1000]);
        outbox
            .send(Outgoing::Message(
                MessageKind::Binary,
                Bytes::from_static(b"tiny"),
            ))
            .unwrap();
        outbox
            .send(Outgoing::Message(MessageKind::Binary, big.clone()))
            .unwrap();
        outbox.finish();
        let compressor = crate::ws::deflate::dedicated::DedicatedCompressor::new(6, 15, false);
        let encoder = WriterEncoder::with(Some(compressor), 100, counters.clone());
        let written = run_to_end(receiver, encoder).await;
        assert_eq!(&written[..6], b"\x82\x04tiny");
        assert_eq!(written[6], 0x80 | 0x40 | 0x2, "FIN, RSV1, binary");
        let compressed = &written[8..];
        assert_eq!(written[7] as usize, compressed.len());
        let inflated = crate::ws::deflate::codec::Inflater::new(true)
            .inflate(compressed, 10_000)
            .unwrap();
        assert_eq!(inflated, big);
    }
}
