//! One shard's worker: the publisher and subscriber connections to one
//! Redis (the standalone server, or one cluster master), reconnected with
//! backoff, carrying that shard's publishes, commands and subscriptions,
//! and probing its own delivery path.
//!
//! A *session* is one pair of connections. It starts by subscribing the
//! node-private probe topic and every topic of local interest this shard
//! owns; it is up once a probe published on the publisher connection came
//! back on the subscriber connection. Any failure ends the whole session:
//! a closed or reset socket, a reply or probe overdue by `probe_timeout`
//! (Redis paused, a half-open connection), an error on the subscriber
//! connection. Then the shard is down, publishes to it are dropped and
//! counted as lost, and a new session is tried after a backoff.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::{
    sync::{Notify, mpsc, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    LinkState, Shared,
    backoff::Backoff,
    conn::Connection,
    envelope::Envelope,
    error::LinkError,
    resp::{self, Value},
    routing::Topic,
    settings::{Address, Mode},
    slot::SLOTS,
};
use crate::sync::lock;

/// How many publishes and commands may wait for a shard's connection. A
/// burst beyond it is dropped and counted as lost rather than queued
/// without bound behind a slow Redis.
const REQUEST_QUEUE: usize = 64 * 1024;

/// How many requests one write gathers: large enough that a burst costs a
/// few syscalls, small enough that replies start flowing early.
const WRITE_BATCH: usize = 512;

/// The most channels named in one (S)SUBSCRIBE or (S)UNSUBSCRIBE: keeps
/// each command well below Redis's query buffer limits while a reconnect
/// with tens of thousands of topics still needs only dozens of commands.
const MAX_CHANNELS_PER_COMMAND: usize = 1000;

/// A probe message: the origin node id and the probe's sequence number.
const PROBE_LEN: usize = 16;

/// Something for a shard's publisher connection.
pub(crate) enum Request {
    /// A whole encoded PUBLISH or SPUBLISH; its reply is counted.
    Publish(Bytes),
    /// Encoded commands expecting `replies` replies, returned in order.
    Command {
        frame: Bytes,
        replies: usize,
        reply: oneshot::Sender<Result<Vec<Value>, LinkError>>,
    },
}

/// Who owns which slot, among these shard workers.
pub(crate) type Routing = super::routing::Routing<ShardHandle>;

/// The shared face of one shard's worker.
pub(crate) struct ShardHandle {
    address: Address,
    /// The name the shard's TLS certificate must carry.
    tls_name: String,
    state: AtomicU8,
    requests: mpsc::Sender<Request>,
    /// Topics whose local interest changed since the worker last looked.
    touched: Mutex<Vec<Topic>>,
    /// Wakes the worker: interest changed, or a resync is due.
    wake: Notify,
    /// Set when the topology changed: recompute everything this shard owns.
    resync: AtomicBool,
    /// Subscriptions Redis confirmed on the current session (probe excluded).
    subscriptions: AtomicU64,
    cancel: CancellationToken,
}

impl ShardHandle {
    /// Starts the worker for the Redis at `address`.
    pub(crate) fn spawn(shared: &Arc<Shared>, address: Address, tls_name: String) -> Arc<Self> {
        let (requests, receiver) = mpsc::channel(REQUEST_QUEUE);
        let handle = Arc::new(Self {
            address,
            tls_name,
            state: AtomicU8::new(LinkState::Down as u8),
            requests,
            touched: Mutex::new(Vec::new()),
            wake: Notify::new(),
            resync: AtomicBool::new(false),
            subscriptions: AtomicU64::new(0),
            cancel: shared.cancel.child_token(),
        });
        shared.spawn(run(Arc::clone(&handle), Arc::clone(shared), receiver));
        handle
    }

    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub(crate) fn subscriptions(&self) -> u64 {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Queues an encoded publish; false when the shard is down or its
    /// queue is full (the caller counts the loss).
    pub(crate) fn publish(&self, frame: Bytes) -> bool {
        self.state() != LinkState::Down && self.requests.try_send(Request::Publish(frame)).is_ok()
    }

    /// Queues encoded commands; the receiver yields their replies.
    pub(crate) fn command(
        &self,
        frame: Bytes,
        replies: usize,
    ) -> Result<oneshot::Receiver<Result<Vec<Value>, LinkError>>, LinkError> {
        if self.state() == LinkState::Down {
            return Err(LinkError::Down);
        }
        let (reply, receiver) = oneshot::channel();
        self.requests
            .try_send(Request::Command {
                frame,
                replies,
                reply,
            })
            .map_err(|_| LinkError::Down)?;
        Ok(receiver)
    }

    /// Hands the worker topics whose interest changed.
    pub(crate) fn touch(&self, topics: Vec<Topic>) {
        lock(&self.touched).extend(topics);
        self.wake.notify_one();
    }

    /// Asks the worker to recompute which topics it carries.
    pub(crate) fn request_resync(&self) {
        self.resync.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Stops the worker (the shard left the topology, or the link stops).
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// The worker: sessions one after the other until cancelled.
async fn run(handle: Arc<ShardHandle>, shared: Arc<Shared>, mut requests: mpsc::Receiver<Request>) {
    let settings = &shared.settings;
    let mut backoff = Backoff::new(settings.reconnect_min, settings.reconnect_max);
    let mut sessions = 0u64;
    let mut was_up = true;
    loop {
        drain(&shared, &mut requests);
        if handle.cancel.is_cancelled() {
            break;
        }
        let outcome = match connect(&shared, &handle).await {
            Ok((publisher, subscriber)) => {
                if sessions > 0 {
                    shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                sessions += 1;
                handle.set_state(LinkState::Degraded);
                let mut session = Session::new(&shared, &handle, publisher, subscriber);
                let outcome = session.run(&mut requests).await;
                if session.verified {
                    backoff.reset();
                    was_up = true;
                }
                session.close();
                outcome
            }
            Err(error) => Err(error),
        };
        handle.set_state(LinkState::Down);
        handle.subscriptions.store(0, Ordering::Relaxed);
        drain(&shared, &mut requests);
        match outcome {
            Ok(()) => break,
            Err(error) => {
                if was_up {
                    tracing::warn!(redis = %handle.address, "cluster link down: {error:#}");
                    was_up = false;
                } else {
                    tracing::debug!(redis = %handle.address, "cluster link still down: {error:#}");
                }
                if settings.mode == Mode::Cluster {
                    shared.refresh.notify_one();
                }
            }
        }
        tokio::select! {
            () = handle.cancel.cancelled() => break,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
    drain(&shared, &mut requests);
}

/// Fails every queued request: publishes count as lost, callers hear that
/// the link is down.
fn drain(shared: &Shared, requests: &mut mpsc::Receiver<Request>) {
    while let Ok(request) = requests.try_recv() {
        match request {
            Request::Publish(_) => {
                shared.counters.publish_lost.fetch_add(1, Ordering::Relaxed);
            }
            Request::Command { reply, .. } => {
                let _ = reply.send(Err(LinkError::Down));
            }
        }
    }
}

async fn connect(
    shared: &Shared,
    handle: &ShardHandle,
) -> Result<(Connection, Connection), LinkError> {
    let connector = &shared.connector;
    let publisher = connector
        .connect(&handle.address, &handle.tls_name, "pub")
        .await?;
    let subscriber = connector
        .connect(&handle.address, &handle.tls_name, "sub")
        .await?;
    Ok((publisher, subscriber))
}

/// Where the current probe is.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// The probe topic's subscription is not confirmed yet: no probe can
    /// come back before it is.
    Unconfirmed { since: Instant },
    /// A probe is on its way.
    Waiting { seq: u64, sent: Instant },
    /// The last probe came back; the next is due an interval after it was sent.
    Idle { last_sent: Instant },
}

/// What a publisher reply settles.
enum Pending {
    /// A caller's publish: counted.
    Publish,
    /// A probe's publish: nothing to report.
    Probe,
    /// A caller's commands, gathering replies.
    Command {
        remaining: usize,
        values: Vec<Value>,
        reply: oneshot::Sender<Result<Vec<Value>, LinkError>>,
    },
}

enum Event {
    Cancelled,
    Replies(Result<(), LinkError>),
    Pushes(Result<(), LinkError>),
    Request(Option<Request>),
    Interest,
    Timer,
}

/// One pair of connections and what they carry.
struct Session<'a> {
    shared: &'a Shared,
    handle: &'a ShardHandle,
    publisher: Connection,
    subscriber: Connection,
    /// Sharded pub/sub (Redis Cluster) or plain.
    sharded: bool,
    /// Requests written to the publisher, oldest first, with when.
    pending: VecDeque<(Instant, Pending)>,
    /// Topics (with their slots) subscribed and not unsubscribed since.
    subscribed: HashMap<Arc<str>, u16>,
    /// Unsubscribes sent and not confirmed yet, per topic: an unsubscribe
    /// confirmation beyond these is Redis's own (the slot moved).
    unsubscribing: HashMap<Arc<str>, u32>,
    /// Subscriptions Redis confirmed.
    confirmed: HashSet<Arc<str>>,
    probe_topic: Option<Topic>,
    probe: Probe,
    probe_seq: u64,
    /// A probe has come back on this session.
    verified: bool,
    out: BytesMut,
}

impl<'a> Session<'a> {
    fn new(
        shared: &'a Shared,
        handle: &'a ShardHandle,
        publisher: Connection,
        subscriber: Connection,
    ) -> Self {
        Self {
            shared,
            handle,
            publisher,
            subscriber,
            sharded: shared.settings.mode == Mode::Cluster,
            pending: VecDeque::new(),
            subscribed: HashMap::new(),
            unsubscribing: HashMap::new(),
            confirmed: HashSet::new(),
            probe_topic: None,
            probe: Probe::Unconfirmed {
                since: Instant::now(),
            },
            probe_seq: 0,
            verified: false,
            out: BytesMut::new(),
        }
    }

    async fn run(&mut self, requests: &mut mpsc::Receiver<Request>) -> Result<(), LinkError> {
        // Whatever was touched before this session is covered by the resync.
        lock(&self.handle.touched).clear();
        self.handle.resync.store(false, Ordering::Release);
        self.resync().await?;
        loop {
            let deadline = self.deadline();
            let event = tokio::select! {
                () = self.handle.cancel.cancelled() => Event::Cancelled,
                result = self.publisher.fill() => Event::Replies(result),
                result = self.subscriber.fill() => Event::Pushes(result),
                request = requests.recv() => Event::Request(request),
                () = self.handle.wake.notified() => Event::Interest,
                () = tokio::time::sleep_until(deadline) => Event::Timer,
            };
            match event {
                Event::Cancelled | Event::Request(None) => return Ok(()),
                Event::Replies(result) => {
                    result?;
                    self.on_replies()?;
                }
                Event::Pushes(result) => {
                    result?;
                    self.on_pushes()?;
                }
                Event::Request(Some(request)) => self.send(request, requests).await?,
                Event::Interest => self.sync_interest().await?,
                Event::Timer => self.on_timer().await?,
            }
        }
    }

    /// Fails what is still pending when the session ends.
    fn close(self) {
        for (_, pending) in self.pending {
            match pending {
                Pending::Publish => {
                    self.shared
                        .counters
                        .publish_lost
                        .fetch_add(1, Ordering::Relaxed);
                }
                Pending::Probe => {}
                Pending::Command { reply, .. } => {
                    let _ = reply.send(Err(LinkError::Down));
                }
            }
        }
    }

    /// The next moment something is due: a probe, or a reply overdue.
    fn deadline(&self) -> Instant {
        let settings = &self.shared.settings;
        let probe = match self.probe {
            Probe::Unconfirmed { since } => since + settings.probe_timeout,
            Probe::Waiting { sent, .. } => sent + settings.probe_timeout,
            Probe::Idle { last_sent } => last_sent + settings.probe_interval,
        };
        match self.pending.front() {
            Some((sent, _)) => probe.min(*sent + settings.probe_timeout),
            None => probe,
        }
    }

    async fn on_timer(&mut self) -> Result<(), LinkError> {
        let settings = &self.shared.settings;
        let now = Instant::now();
        // The probe first: when Redis stops, the probe's own publish is
        // the oldest reply overdue too, and a missed probe says more.
        let probe = match self.probe {
            Probe::Unconfirmed { since } if now >= since + settings.probe_timeout => {
                Err(self.subscriber.timed_out())
            }
            Probe::Waiting { sent, .. } if now >= sent + settings.probe_timeout => {
                self.shared
                    .counters
                    .probes_missed
                    .fetch_add(1, Ordering::Relaxed);
                Err(LinkError::Timeout {
                    address: format!("{} (probe)", self.subscriber.address()),
                    timeout: settings.probe_timeout,
                })
            }
            _ => Ok(()),
        };
        probe?;
        if let Some((sent, _)) = self.pending.front()
            && now >= *sent + settings.probe_timeout
        {
            return Err(self.publisher.timed_out());
        }
        match self.probe {
            Probe::Idle { last_sent } if now >= last_sent + settings.probe_interval => {
                self.send_probe().await
            }
            _ => Ok(()),
        }
    }

    async fn send_probe(&mut self) -> Result<(), LinkError> {
        let Some(topic) = &self.probe_topic else {
            return Ok(());
        };
        self.probe_seq += 1;
        let mut payload = [0u8; PROBE_LEN];
        payload[..8].copy_from_slice(&self.shared.node_id.to_be_bytes());
        payload[8..].copy_from_slice(&self.probe_seq.to_be_bytes());
        let frame = resp::command(&[self.publish_command(), topic.name.as_bytes(), &payload]);
        let now = Instant::now();
        self.pending.push_back((now, Pending::Probe));
        self.probe = Probe::Waiting {
            seq: self.probe_seq,
            sent: now,
        };
        self.publisher.write(&frame).await
    }

    fn publish_command(&self) -> &'static [u8] {
        if self.sharded {
            b"SPUBLISH"
        } else {
            b"PUBLISH"
        }
    }

    /// Writes `first` and whatever else is queued, up to a batch.
    async fn send(
        &mut self,
        first: Request,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Result<(), LinkError> {
        self.out.clear();
        let now = Instant::now();
        let mut next = Some(first);
        let mut count = 0;
        while let Some(request) = next {
            match request {
                Request::Publish(frame) => {
                    self.out.put_slice(&frame);
                    self.pending.push_back((now, Pending::Publish));
                }
                Request::Command {
                    frame,
                    replies,
                    reply,
                } => {
                    self.out.put_slice(&frame);
                    self.pending.push_back((
                        now,
                        Pending::Command {
                            remaining: replies,
                            values: Vec::with_capacity(replies),
                            reply,
                        },
                    ));
                }
            }
            count += 1;
            next = if count < WRITE_BATCH {
                requests.try_recv().ok()
            } else {
                None
            };
        }
        let out = std::mem::take(&mut self.out);
        let written = self.publisher.write(&out).await;
        self.out = out;
        written
    }

    fn on_replies(&mut self) -> Result<(), LinkError> {
        let counters = &self.shared.counters;
        while let Some(value) = self.publisher.next_value()? {
            let Some((_, pending)) = self.pending.front_mut() else {
                return Err(LinkError::Protocol(
                    "a reply nothing was waiting for".into(),
                ));
            };
            match pending {
                Pending::Publish | Pending::Probe => {
                    let publish = matches!(pending, Pending::Publish);
                    self.pending.pop_front();
                    match value {
                        Value::Error(message) => {
                            if publish {
                                counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            self.redis_error(&message);
                        }
                        _ if publish => {
                            counters.published.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                Pending::Command {
                    remaining, values, ..
                } => {
                    if let Value::Error(message) = &value {
                        redis_error(self.shared, self.handle, message);
                    }
                    values.push(value);
                    *remaining = remaining.saturating_sub(1);
                    if *remaining == 0
                        && let Some((_, Pending::Command { values, reply, .. })) =
                            self.pending.pop_front()
                    {
                        let _ = reply.send(Ok(values));
                    }
                }
            }
        }
        Ok(())
    }

    fn redis_error(&self, message: &[u8]) {
        redis_error(self.shared, self.handle, message);
    }

    /// Handles every push the last read brought in, as one batch for the
    /// inbound hook.
    fn on_pushes(&mut self) -> Result<(), LinkError> {
        let shared = self.shared;
        let mut handled = Ok(());
        shared.inbound.batch(&mut || handled = self.handle_pushes());
        handled
    }

    fn handle_pushes(&mut self) -> Result<(), LinkError> {
        while let Some(value) = self.subscriber.next_value()? {
            let items = match value {
                Value::Array(Some(items)) => items,
                Value::Error(message) => {
                    self.redis_error(&message);
                    return Err(LinkError::Redis(
                        String::from_utf8_lossy(&message).into_owned(),
                    ));
                }
                _ => {
                    return Err(LinkError::Protocol(
                        "the subscriber connection got something other than a push".into(),
                    ));
                }
            };
            let mut items = items.into_iter();
            let (Some(kind), Some(channel), Some(data)) =
                (items.next(), items.next(), items.next())
            else {
                return Err(LinkError::Protocol(
                    "a push of fewer than three parts".into(),
                ));
            };
            let (Some(kind), Some(channel)) = (kind.as_bytes(), channel.as_bytes()) else {
                return Err(LinkError::Protocol(
                    "a push without a kind or channel".into(),
                ));
            };
            let channel = String::from_utf8_lossy(channel);
            match &kind[..] {
                b"message" | b"smessage" => self.on_message(&channel, data),
                b"subscribe" | b"ssubscribe" => self.on_subscribed(&channel),
                b"unsubscribe" | b"sunsubscribe" => self.on_unsubscribed(&channel),
                _ => {}
            }
        }
        Ok(())
    }

    fn on_message(&mut self, channel: &str, data: Value) {
        let counters = &self.shared.counters;
        let Value::Bulk(Some(payload)) = data else {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if self
            .probe_topic
            .as_ref()
            .is_some_and(|probe| &*probe.name == channel)
        {
            self.on_probe(&payload);
            return;
        }
        counters.received.fetch_add(1, Ordering::Relaxed);
        match Envelope::decode(payload) {
            Ok(envelope) if envelope.origin == self.shared.node_id => {
                counters.ignored_own.fetch_add(1, Ordering::Relaxed);
            }
            Ok(envelope) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                self.shared.inbound.deliver(envelope);
            }
            Err(error) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(redis = %self.handle.address, channel, "ignored a message: {error}");
            }
        }
    }

    fn on_probe(&mut self, payload: &[u8]) {
        let Probe::Waiting { seq, sent } = self.probe else {
            return;
        };
        if payload.len() != PROBE_LEN
            || payload[..8] != self.shared.node_id.to_be_bytes()
            || payload[8..] != seq.to_be_bytes()
        {
            return;
        }
        let counters = &self.shared.counters;
        let rtt = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        counters.probes_ok.fetch_add(1, Ordering::Relaxed);
        counters.probe_rtt_last_us.store(rtt, Ordering::Relaxed);
        counters.probe_rtt_sum_us.fetch_add(rtt, Ordering::Relaxed);
        counters.probe_rtt_max_us.fetch_max(rtt, Ordering::Relaxed);
        self.probe = Probe::Idle { last_sent: sent };
        if !self.verified {
            self.verified = true;
            self.handle.set_state(LinkState::Up);
            tracing::info!(redis = %self.handle.address, "cluster link up");
        }
    }

    fn on_subscribed(&mut self, channel: &str) {
        if !self.subscribed.contains_key(channel) {
            // Unsubscribed again before Redis confirmed: the unsubscribe's
            // confirmation follows.
            return;
        }
        self.confirmed.insert(Arc::from(channel));
        if self.is_probe(channel) && matches!(self.probe, Probe::Unconfirmed { .. }) {
            // Due at once: the subscription is in place.
            self.probe = Probe::Idle {
                last_sent: Instant::now() - self.shared.settings.probe_interval,
            };
        }
        self.update_gauge();
    }

    fn on_unsubscribed(&mut self, channel: &str) {
        self.confirmed.remove(channel);
        match self.unsubscribing.get_mut(channel) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                self.unsubscribing.remove(channel);
            }
            None => {
                // Redis dropped it: the slot moved to another shard.
                self.subscribed.remove(channel);
                if self.is_probe(channel) {
                    self.probe = Probe::Unconfirmed {
                        since: Instant::now(),
                    };
                }
                tracing::debug!(redis = %self.handle.address, channel, "redis ended a subscription");
                self.shared.refresh.notify_one();
            }
        }
        self.update_gauge();
    }

    fn is_probe(&self, channel: &str) -> bool {
        self.probe_topic
            .as_ref()
            .is_some_and(|probe| &*probe.name == channel)
    }

    fn update_gauge(&self) {
        let probe = self
            .probe_topic
            .as_ref()
            .is_some_and(|probe| self.confirmed.contains(&probe.name));
        let count = self.confirmed.len() - usize::from(probe);
        self.handle
            .subscriptions
            .store(count as u64, Ordering::Relaxed);
    }

    /// Applies the interest changes handed to this shard.
    async fn sync_interest(&mut self) -> Result<(), LinkError> {
        if self.handle.resync.swap(false, Ordering::AcqRel) {
            return self.resync().await;
        }
        let touched = std::mem::take(&mut *lock(&self.handle.touched));
        if touched.is_empty() {
            return Ok(());
        }
        let routing = self.shared.routing.load();
        let mut add = Vec::new();
        let mut remove = Vec::new();
        {
            let interest = self.shared.interest.lock();
            let mut seen = HashSet::new();
            for topic in touched {
                if !seen.insert(Arc::clone(&topic.name)) {
                    continue;
                }
                let want = interest.wants(&topic.name) && routing.owns(self.handle, topic.slot);
                let have = self.subscribed.contains_key(&topic.name);
                if want && !have {
                    add.push(topic);
                } else if !want && have {
                    remove.push(topic);
                }
            }
        }
        self.change(add, remove).await
    }

    /// Makes the subscriptions exactly the probe topic plus every topic of
    /// local interest this shard owns.
    async fn resync(&mut self) -> Result<(), LinkError> {
        let routing = self.shared.routing.load();
        let probe = probe_topic(self.shared, &routing, self.handle);
        let mut desired: HashMap<Arc<str>, u16> = self
            .shared
            .interest
            .lock()
            .owned(|slot| routing.owns(self.handle, slot));
        if let Some(probe) = &probe {
            desired.insert(Arc::clone(&probe.name), probe.slot);
        }
        if probe != self.probe_topic {
            self.probe_topic = probe;
            self.probe = Probe::Unconfirmed {
                since: Instant::now(),
            };
        }
        let add = desired
            .iter()
            .filter(|(name, _)| !self.subscribed.contains_key(*name))
            .map(|(name, &slot)| Topic {
                name: Arc::clone(name),
                slot,
            })
            .collect();
        let remove = self
            .subscribed
            .iter()
            .filter(|(name, _)| !desired.contains_key(*name))
            .map(|(name, &slot)| Topic {
                name: Arc::clone(name),
                slot,
            })
            .collect();
        self.change(add, remove).await
    }

    /// Sends the subscribe and unsubscribe commands for a change, batched.
    async fn change(&mut self, add: Vec<Topic>, remove: Vec<Topic>) -> Result<(), LinkError> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let (subscribe, unsubscribe): (&[u8], &[u8]) = if self.sharded {
            (b"SSUBSCRIBE", b"SUNSUBSCRIBE")
        } else {
            (b"SUBSCRIBE", b"UNSUBSCRIBE")
        };
        let mut out = BytesMut::new();
        let mut commands = 0;
        for topic in &add {
            self.subscribed.insert(Arc::clone(&topic.name), topic.slot);
        }
        for topic in &remove {
            self.subscribed.remove(&topic.name);
            *self
                .unsubscribing
                .entry(Arc::clone(&topic.name))
                .or_default() += 1;
        }
        commands += encode_batches(&mut out, subscribe, add, self.sharded);
        commands += encode_batches(&mut out, unsubscribe, remove, self.sharded);
        self.shared
            .counters
            .subscribe_commands
            .fetch_add(commands, Ordering::Relaxed);
        self.subscriber.write(&out).await
    }
}

/// An error reply: a redirect or a cluster in trouble means the topology
/// is not what the link thinks.
fn redis_error(shared: &Shared, handle: &ShardHandle, message: &[u8]) {
    let text = String::from_utf8_lossy(message);
    tracing::debug!(redis = %handle.address, "redis answered an error: {text}");
    let topology = ["MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN"]
        .iter()
        .any(|code| text.starts_with(code));
    if shared.settings.mode == Mode::Cluster && topology {
        shared.refresh.notify_one();
    }
}

/// Encodes `command` for `topics`, at most [`MAX_CHANNELS_PER_COMMAND`] a
/// command and, when sharded, one slot a command (Redis refuses a sharded
/// command spanning slots). Returns the number of commands.
fn encode_batches(
    out: &mut BytesMut,
    command: &[u8],
    mut topics: Vec<Topic>,
    sharded: bool,
) -> u64 {
    if sharded {
        topics.sort_by_key(|topic| topic.slot);
    }
    let mut commands = 0;
    let mut rest = &topics[..];
    while let Some(first) = rest.first() {
        let same = if sharded {
            rest.iter()
                .take_while(|topic| topic.slot == first.slot)
                .count()
        } else {
            rest.len()
        };
        let take = same.min(MAX_CHANNELS_PER_COMMAND);
        let mut args: Vec<&[u8]> = Vec::with_capacity(take + 1);
        args.push(command);
        args.extend(rest[..take].iter().map(|topic| topic.name.as_bytes()));
        resp::encode_command(out, &args);
        commands += 1;
        rest = &rest[take..];
    }
    commands
}

/// The node-private topic probing this shard: in cluster mode one whose
/// hash tag puts it in a slot the shard owns, so the probe travels the
/// same connections as the shard's messages.
fn probe_topic(shared: &Shared, routing: &Routing, handle: &ShardHandle) -> Option<Topic> {
    let base = format!(
        "{}probe:{}",
        shared.settings.prefix, shared.settings.node_name
    );
    if shared.settings.mode == Mode::Standalone {
        return Some(Topic::new(base));
    }
    // Hash tags {0}, {1}, ... cover every slot within a few multiples of
    // 16384 candidates; a shard owning any slot finds one.
    (0..u32::from(SLOTS) * 8)
        .map(|n| Topic::new(format!("{base}:{{{n}}}")))
        .find(|topic| routing.owns(handle, topic.slot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resp::parse;

    fn topics(names: &[&str]) -> Vec<Topic> {
        names
            .iter()
            .map(|name| Topic::new((*name).to_owned()))
            .collect()
    }

    fn commands(out: &mut BytesMut) -> Vec<Vec<String>> {
        let mut all = Vec::new();
        while let Some(value) = parse(out).unwrap() {
            all.push(
                value
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|arg| String::from_utf8(arg.as_bytes().unwrap().to_vec()).unwrap())
                    .collect(),
            );
        }
        all
    }

    #[test]
    fn plain_subscriptions_go_in_one_command_per_thousand_channels() {
        let names: Vec<String> = (0..2500).map(|i| format!("t{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut out = BytesMut::new();
        assert_eq!(
            encode_batches(&mut out, b"SUBSCRIBE", topics(&names), false),
            3
        );
        let sent = commands(&mut out);
        assert_eq!(
            sent.iter().map(Vec::len).collect::<Vec<_>>(),
            [1001, 1001, 501]
        );
        assert!(sent.iter().all(|command| command[0] == "SUBSCRIBE"));
    }

    #[test]
    fn sharded_subscriptions_never_span_slots() {
        // {a} and {b} tags pin the slots: three topics in one slot, two in another.
        let mut out = BytesMut::new();
        let batch = topics(&["x{a}", "y{b}", "z{a}", "w{b}", "v{a}"]);
        assert_eq!(encode_batches(&mut out, b"SSUBSCRIBE", batch, true), 2);
        for command in commands(&mut out) {
            let slots: HashSet<u16> = command[1..]
                .iter()
                .map(|name| crate::cluster::slot::slot(name.as_bytes()))
                .collect();
            assert_eq!(slots.len(), 1, "{command:?}");
        }
    }
}
