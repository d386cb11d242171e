//! The Redis link between nodes: carries messages that have recipients on
//! other nodes, subscribes to what local members are interested in, shares
//! presence, and watches its own health.
//!
//! # What the node calls
//!
//! - [`Link::start`] once, with the [`ClusterSettings`] and an [`Inbound`]
//!   hook that receives every envelope another node published to a topic
//!   this node subscribed to.
//! - [`Link::subscribe`] when the first local member of a channel, room or
//!   user arrives, [`Link::unsubscribe`] when the last one leaves. Both are
//!   cheap and idempotent; changes reach Redis coalesced over
//!   [`SUBSCRIBE_COALESCE`].
//! - [`Link::publish`] on each fan-out that may have recipients elsewhere,
//!   after delivering to local recipients directly: the link never hands a
//!   node its own envelopes back.
//! - [`Link::presence_changed`] (or [`Link::set_presence`]) when this
//!   node's share of a target changes; [`Link::presence`] for the
//!   cluster-wide totals and a page of their users.
//! - [`Link::publish_disconnect`] to close a user's connections on the
//!   other nodes.
//! - [`Link::state`] for readiness, [`Link::stats`] for metrics.
//!
//! # Guarantees
//!
//! At most once across nodes: a publish is dropped, and counted as lost,
//! when the shard carrying its topic is down or its queue is full, and a
//! publish written to a connection that then fails is counted as lost too
//! (Redis may or may not have relayed it). A subscription takes effect when
//! Redis confirms it; what other nodes publish before that is not received.
//! Local delivery never waits on Redis.
//!
//! # Its own thread
//!
//! The link's tasks run on a thread of their own (a single-threaded
//! runtime), not among the node's sessions. A message published on this
//! node reaches Redis while the node is still writing it to its local
//! members, so the other nodes start their own fan-out at once instead
//! of after this node's; and what other nodes publish is delivered here
//! without taking turns with the sessions' reads.
//!
//! # Failure
//!
//! Each shard (the standalone Redis, or each cluster master) has a
//! publisher and a subscriber connection. A probe published on a
//! node-private topic every `probe_interval` must come back on the
//! subscriber connection within `probe_timeout`; so must every reply. A
//! closed socket, an overdue reply or a missed probe takes the shard down:
//! a stopped, restarted, paused (SIGSTOP) or unreachable Redis, and a
//! half-open connection, are all noticed within `probe_interval +
//! probe_timeout` (3 s by default). The shard then reconnects with
//! exponential backoff and jitter between `reconnect_min` and
//! `reconnect_max`, restores every subscription, and is up again once a
//! probe comes back. In cluster mode a lost connection, a MOVED reply or a
//! subscription Redis ended (its slot moved) re-reads the topology.

mod backoff;
mod conn;
mod envelope;
mod error;
mod interest;
mod presence;
mod resp;
mod routing;
mod settings;
mod shard;
mod slot;
mod topology;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use bytes::{BufMut, BytesMut};
use tokio::sync::{Notify, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub(crate) use self::backoff::random_u64;
use self::{
    conn::Connector, interest::Interest, presence::Presence, resp::Value, routing::Topic,
    shard::Routing, shard::ShardHandle,
};
pub use self::{
    envelope::{Body, Envelope, EnvelopeError, Target},
    error::LinkError,
    interest::SUBSCRIBE_COALESCE,
    presence::{PRESENCE_FLUSH, PresenceSource, PresenceTotals},
    settings::{
        Address, ClusterSettings, DEFAULT_PORT, DEFAULT_PREFIX, DEFAULT_PRESENCE_TTL,
        DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_TIMEOUT, DEFAULT_RECONNECT_MAX,
        DEFAULT_RECONNECT_MIN, Engine, MIN_PRESENCE_TTL, Mode, Password, RedisUrl, SettingError,
        SettingsError, TlsRoots, default_node_name,
    },
    topology::{TOPOLOGY_MIN_INTERVAL, TOPOLOGY_REFRESH},
};
use crate::message::Message;

/// Receives the envelopes other nodes published to topics this node
/// subscribed to. Called on the link's own thread, one envelope at a time in
/// the order Redis delivered them per shard: it must not block (hand the
/// message to outboxes, or to a channel). A slow hook delays that shard's
/// probes, and shows as a link going down.
pub trait Inbound: Send + Sync + 'static {
    /// One envelope from another node.
    fn deliver(&self, envelope: Envelope);

    /// Runs `deliveries`, which calls [`Inbound::deliver`] for every
    /// envelope one read from Redis brought in. A hook that can hand a
    /// batch on more cheaply than its envelopes one by one (a server
    /// writing each recipient's share of the batch at once) wraps the call;
    /// the default just makes it.
    fn batch(&self, deliveries: &mut dyn FnMut()) {
        deliveries()
    }
}

impl<F: Fn(Envelope) + Send + Sync + 'static> Inbound for F {
    fn deliver(&self, envelope: Envelope) {
        self(envelope)
    }
}

/// The health of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum LinkState {
    /// No shard is connected: nothing crosses nodes.
    Down = 0,
    /// Part of the way: connected but no probe has come back yet, or in
    /// cluster mode some shards (or slots) are not served.
    Degraded = 1,
    /// Every slot's shard is connected and its latest probe came back in time.
    Up = 2,
}

impl LinkState {
    fn from_u8(value: u8) -> Self {
        match value {
            2 => Self::Up,
            1 => Self::Degraded,
            _ => Self::Down,
        }
    }

    /// The state as a metric label or log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Down => "down",
            Self::Degraded => "degraded",
            Self::Up => "up",
        }
    }
}

/// The link's counters, read at once. Counters only grow; gauges (the
/// state, subscriptions, shards, the last probe latency) are current values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStats {
    /// The link's health.
    pub state: LinkState,
    /// Shards in the topology (1 in standalone mode).
    pub shards: usize,
    /// Shards whose latest probe came back in time.
    pub shards_up: usize,
    /// Publishes Redis acknowledged.
    pub published: u64,
    /// Publishes dropped: the shard was down, its queue full, or the
    /// connection failed before Redis acknowledged them.
    pub publish_lost: u64,
    /// Publishes Redis answered with an error (in cluster mode: a slot
    /// that moved, or a cluster that is down).
    pub publish_errors: u64,
    /// Messages the subscriber connections received, probes excluded:
    /// what other nodes' interest costs this node.
    pub received: u64,
    /// Received envelopes handed to the [`Inbound`] hook.
    pub delivered: u64,
    /// Received envelopes this node published itself, not delivered again.
    pub ignored_own: u64,
    /// Received messages that were not readable envelopes.
    pub malformed: u64,
    /// Topics of local interest.
    pub wanted: u64,
    /// Subscriptions Redis confirmed (probe topics excluded).
    pub subscriptions: u64,
    /// SUBSCRIBE and UNSUBSCRIBE commands sent (of either sharded kind).
    pub subscribe_commands: u64,
    /// Sessions established after an earlier one was lost.
    pub reconnects: u64,
    /// Probes that came back in time.
    pub probes_ok: u64,
    /// Probes that did not (each took its shard down).
    pub probes_missed: u64,
    /// The latest probe's round trip: publisher connection, Redis,
    /// subscriber connection, the path of every cross-node message.
    pub probe_rtt_last: Duration,
    /// The longest probe round trip seen.
    pub probe_rtt_max: Duration,
    /// All probe round trips added up (with `probes_ok`, the mean).
    pub probe_rtt_sum: Duration,
    /// Cluster topology reads (0 in standalone mode).
    pub topology_refreshes: u64,
}

/// The atomics behind [`LinkStats`].
#[derive(Default)]
pub(crate) struct Counters {
    published: AtomicU64,
    publish_lost: AtomicU64,
    publish_errors: AtomicU64,
    received: AtomicU64,
    delivered: AtomicU64,
    ignored_own: AtomicU64,
    malformed: AtomicU64,
    subscribe_commands: AtomicU64,
    reconnects: AtomicU64,
    probes_ok: AtomicU64,
    probes_missed: AtomicU64,
    probe_rtt_last_us: AtomicU64,
    probe_rtt_max_us: AtomicU64,
    probe_rtt_sum_us: AtomicU64,
    topology_refreshes: AtomicU64,
}

/// What the link's tasks share.
pub(crate) struct Shared {
    settings: ClusterSettings,
    /// This process's id in envelopes and probes: random, so that two
    /// nodes never take each other's messages for their own.
    node_id: u64,
    next_seq: AtomicU64,
    connector: Connector,
    counters: Counters,
    routing: ArcSwap<Routing>,
    interest: Interest,
    presence: Presence,
    inbound: Box<dyn Inbound>,
    /// Asks the topology task for a fresh read (cluster mode).
    refresh: Notify,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// The link's own runtime (see the module docs), which every task of
    /// the link is spawned on.
    runtime: tokio::runtime::Handle,
}

/// The name of the link's thread (in `top -H`, `perf` and panics).
const THREAD_NAME: &str = "wsedge-cluster";

impl Shared {
    /// Spawns one of the link's tasks, on its own runtime.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn_on(task, &self.runtime);
    }

    /// Queues `commands` on the shard owning `key`'s slot.
    fn start_call(
        &self,
        key: &str,
        commands: &[Vec<&[u8]>],
    ) -> Result<oneshot::Receiver<Result<Vec<Value>, LinkError>>, LinkError> {
        let routing = self.routing.load();
        let shard = routing
            .shard_for(slot::slot(key.as_bytes()))
            .ok_or(LinkError::Down)?;
        let mut frame = BytesMut::new();
        for command in commands {
            resp::encode_command(&mut frame, command);
        }
        shard.command(frame.freeze(), commands.len())
    }

    /// Runs `commands` on the shard owning `key`'s slot; an error reply to
    /// any of them is an error.
    async fn call(&self, key: &str, commands: &[Vec<&[u8]>]) -> Result<Vec<Value>, LinkError> {
        finish_call(self.start_call(key, commands)?).await
    }
}

async fn finish_call(
    receiver: oneshot::Receiver<Result<Vec<Value>, LinkError>>,
) -> Result<Vec<Value>, LinkError> {
    let replies = receiver.await.map_err(|_| LinkError::Down)??;
    if let Some(Value::Error(message)) = replies
        .iter()
        .find(|value| matches!(value, Value::Error(_)))
    {
        return Err(LinkError::Redis(
            String::from_utf8_lossy(message).into_owned(),
        ));
    }
    Ok(replies)
}

/// The link to Redis. Dropping it stops its tasks at once (as a crash
/// would: this node's presence share then ages out); [`Link::shutdown`]
/// removes the share first.
pub struct Link {
    shared: Arc<Shared>,
}

impl Link {
    /// Starts the link on a thread of its own: connects in the background
    /// and keeps connecting, so a node starts (and serves its local
    /// clients) while Redis is down. Fails only on invalid settings, TLS
    /// setup or a thread the system refused.
    pub fn start(settings: ClusterSettings, inbound: impl Inbound) -> Result<Self, LinkError> {
        settings.validate()?;
        let connector = Connector::new(&settings)?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let runtime = run_thread(cancel.clone(), tracker.clone())?;
        let mode = settings.mode;
        let seed = settings.url.address.clone();
        let tls_name = match &seed {
            Address::Tcp { host, .. } => host.clone(),
            Address::Unix(_) => String::new(),
        };
        let shared = Arc::new(Shared {
            settings,
            node_id: backoff::random_u64(),
            next_seq: AtomicU64::new(0),
            connector,
            counters: Counters::default(),
            routing: ArcSwap::from_pointee(Routing::empty()),
            interest: Interest::new(),
            presence: Presence::new(),
            inbound: Box::new(inbound),
            refresh: Notify::new(),
            cancel,
            tracker,
            runtime,
        });
        match mode {
            Mode::Standalone => {
                let shard = ShardHandle::spawn(&shared, seed, tls_name);
                shared.routing.store(Arc::new(Routing::standalone(shard)));
            }
            Mode::Cluster => shared.spawn(topology::run(Arc::clone(&shared))),
        }
        shared.spawn(interest::run_flusher(Arc::clone(&shared)));
        shared.spawn(presence::run(Arc::clone(&shared)));
        Ok(Self { shared })
    }

    /// Checks what [`Link::start`] would refuse (invalid settings, no
    /// usable TLS trust), starting nothing.
    pub fn check(settings: &ClusterSettings) -> Result<(), LinkError> {
        settings.validate()?;
        Connector::new(settings)?;
        Ok(())
    }

    /// This node's id, as it appears in the envelopes it publishes.
    pub fn node_id(&self) -> u64 {
        self.shared.node_id
    }

    /// This node's name (presence and probe topics are named after it).
    pub fn node_name(&self) -> &str {
        &self.shared.settings.node_name
    }

    /// The settings the link runs with.
    pub fn settings(&self) -> &ClusterSettings {
        &self.shared.settings
    }

    /// The Redis channel `target`'s messages travel on.
    pub fn topic(&self, target: &Target) -> String {
        target.topic(&self.shared.settings.prefix)
    }

    fn topic_of(&self, target: &Target) -> Topic {
        Topic::new(target.subscription().topic(&self.shared.settings.prefix))
    }

    /// Local interest in `target` begins: its first local member arrived.
    /// Subscribing a user target covers every channel of that user.
    pub fn subscribe(&self, target: &Target) {
        self.shared.interest.add(self.topic_of(target));
    }

    /// Local interest in `target` ends: its last local member left.
    pub fn unsubscribe(&self, target: &Target) {
        self.shared.interest.remove(self.topic_of(target));
    }

    /// Publishes `message` to `target`'s subscribers on other nodes, with
    /// this node's next sequence number; `except` is a local connection id
    /// that other nodes may ignore (the sender's). Returns false when the
    /// message was dropped (counted in [`LinkStats::publish_lost`]). Never
    /// waits.
    pub fn publish(&self, target: &Target, message: &Message, except: Option<u64>) -> bool {
        self.publish_body(target, &Body::Message(message.clone()), except)
    }

    /// Asks every other node to close `user`'s connections, but the one
    /// whose id is `except`, with `code` and `reason`. Like
    /// [`Link::publish`]: at most once, never waits.
    pub fn publish_disconnect(
        &self,
        user: &str,
        except: Option<u64>,
        code: u16,
        reason: &str,
    ) -> bool {
        let target = Target::User {
            user: user.to_owned(),
            channel: None,
        };
        let body = Body::Disconnect {
            code,
            reason: reason.to_owned(),
        };
        self.publish_body(&target, &body, except)
    }

    fn publish_body(&self, target: &Target, body: &Body, except: Option<u64>) -> bool {
        let shared = &self.shared;
        let topic = target.topic(&shared.settings.prefix);
        let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let envelope_len = envelope::encoded_len(target, body, except);
        let command: &[u8] = match shared.settings.mode {
            Mode::Standalone => b"PUBLISH",
            Mode::Cluster => b"SPUBLISH",
        };
        let mut frame = BytesMut::with_capacity(envelope_len + topic.len() + 48);
        frame.put_slice(b"*3\r\n");
        for arg in [command, topic.as_bytes()] {
            frame.put_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.put_slice(arg);
            frame.put_slice(b"\r\n");
        }
        frame.put_slice(format!("${envelope_len}\r\n").as_bytes());
        envelope::encode_into(&mut frame, shared.node_id, seq, target, body, except);
        frame.put_slice(b"\r\n");
        let routing = shared.routing.load();
        let sent = routing
            .shard_for(slot::slot(topic.as_bytes()))
            .is_some_and(|shard| shard.publish(frame.freeze()));
        if !sent {
            shared.counters.publish_lost.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Records this node's share of `target`'s presence: its local
    /// connections and their distinct users (zero connections removes the
    /// share). Written to Redis within [`PRESENCE_FLUSH`].
    pub fn set_presence(&self, target: &Target, connections: u64, users: &[String]) {
        self.shared
            .presence
            .set(self.topic(target), connections, users);
    }

    /// Records that this node's share of `target` changed, to be read from
    /// `source` when it is written (within [`PRESENCE_FLUSH`]): however many
    /// changes a window sees, the source is read once.
    pub fn presence_changed(&self, target: &Target, source: Arc<dyn PresenceSource>) {
        self.shared.presence.changed(self.topic(target), source);
    }

    /// The cluster-wide presence of `target`: the shares of every live
    /// node, this one included, as last written to Redis, with up to
    /// `limit` user ids after `after` (in id order). Costs the same
    /// whatever the number of users, but for the page.
    pub async fn presence(
        &self,
        target: &Target,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PresenceTotals, LinkError> {
        presence::totals(&self.shared, target, after, limit).await
    }

    /// The link's health: up only when every slot's shard has a verified
    /// delivery path.
    pub fn state(&self) -> LinkState {
        let routing = self.shared.routing.load();
        let shards = routing.shards();
        let count = |state| shards.iter().filter(|shard| shard.state() == state).count();
        if shards.is_empty() || count(LinkState::Down) == shards.len() {
            LinkState::Down
        } else if count(LinkState::Up) == shards.len() && routing.covers_every_slot() {
            LinkState::Up
        } else {
            LinkState::Degraded
        }
    }

    /// Every counter and gauge.
    pub fn stats(&self) -> LinkStats {
        let counters = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let micros = |counter: &AtomicU64| Duration::from_micros(get(counter));
        let routing = self.shared.routing.load();
        LinkStats {
            state: self.state(),
            shards: routing.shards().len(),
            shards_up: routing
                .shards()
                .iter()
                .filter(|shard| shard.state() == LinkState::Up)
                .count(),
            published: get(&counters.published),
            publish_lost: get(&counters.publish_lost),
            publish_errors: get(&counters.publish_errors),
            received: get(&counters.received),
            delivered: get(&counters.delivered),
            ignored_own: get(&counters.ignored_own),
            malformed: get(&counters.malformed),
            wanted: self.shared.interest.lock().len() as u64,
            subscriptions: routing
                .shards()
                .iter()
                .map(|shard| shard.subscriptions())
                .sum(),
            subscribe_commands: get(&counters.subscribe_commands),
            reconnects: get(&counters.reconnects),
            probes_ok: get(&counters.probes_ok),
            probes_missed: get(&counters.probes_missed),
            probe_rtt_last: micros(&counters.probe_rtt_last_us),
            probe_rtt_max: micros(&counters.probe_rtt_max_us),
            probe_rtt_sum: micros(&counters.probe_rtt_sum_us),
            topology_refreshes: get(&counters.topology_refreshes),
        }
    }

    /// Removes this node's presence share (when Redis is reachable within
    /// `probe_timeout`), then stops every task.
    pub async fn shutdown(&self) {
        let timeout = self.shared.settings.probe_timeout;
        let _ = tokio::time::timeout(timeout, presence::remove(&self.shared)).await;
        self.stop().await;
    }

    /// Stops every task and waits for them, leaving this node's presence
    /// share in Redis: for a link replaced by one of the same node name,
    /// whose first write replaces the share.
    pub async fn stop(&self) {
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}

/// Starts the link's thread and returns its runtime, which runs until
/// `cancel` and then until every task in `tracker` has ended.
fn run_thread(
    cancel: CancellationToken,
    tracker: TaskTracker,
) -> Result<tokio::runtime::Handle, LinkError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LinkError::Thread)?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                cancel.cancelled().await;
                tracker.close();
                tracker.wait().await;
            });
        })
        .map_err(LinkError::Thread)?;
    Ok(handle)
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}
