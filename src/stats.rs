//! Counters updated on the hot path and the statistics snapshot that
//! `Handle::stats()` returns.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{cluster::LinkStats, config::ChannelKind};

mod metered;
mod striped;
mod traffic;

pub use self::traffic::Traffic;
pub(crate) use self::{
    metered::{Metered, PlainStream},
    traffic::{Handshake, Initiator, TrafficCounters},
};

/// Why the server refused a connection or closed one: the label of every
/// enforcement counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// `max_connections_per_ip` reached.
    IpCap,
    /// `max_connections` reached (server-wide or on the channel).
    GlobalCap,
    /// A handshake or message rate exceeded (429, or close 1008).
    RateLimit,
    /// The PROXY header, TLS handshake or HTTP request took too long.
    Timeout,
    /// Nothing received for `idle_timeout`.
    Idle,
    /// A message over `max_payload` (close 1009).
    TooBig,
    /// A send buffer overflowed (close 1013).
    SlowConsumer,
    /// The client broke the protocol (close 1002 or 1007, or a bad PROXY header).
    Protocol,
}

impl Reason {
    const ALL: [Reason; 8] = [
        Reason::IpCap,
        Reason::GlobalCap,
        Reason::RateLimit,
        Reason::Timeout,
        Reason::Idle,
        Reason::TooBig,
        Reason::SlowConsumer,
        Reason::Protocol,
    ];

    /// The label used in statistics and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::IpCap => "ip_cap",
            Reason::GlobalCap => "global_cap",
            Reason::RateLimit => "rate_limit",
            Reason::Timeout => "timeout",
            Reason::Idle => "idle",
            Reason::TooBig => "too_big",
            Reason::SlowConsumer => "slow_consumer",
            Reason::Protocol => "protocol",
        }
    }
}

/// Process-wide counters. Relaxed atomics: each is an independent tally read
/// for reporting, never used to synchronise.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    messages_dropped: AtomicU64,
    compressions: AtomicU64,
    compressed_from: AtomicU64,
    compressed_to: AtomicU64,
    enforced: [AtomicU64; Reason::ALL.len()],
    /// Configurations applied: the start-up one, then each successful reload.
    generation: AtomicU64,
    last_reload_failed: AtomicBool,
    reload_failures: AtomicU64,
    last_reload_success_unix: AtomicU64,
    /// Connections, handshakes, disconnects, messages and bytes, for the
    /// admin metrics.
    pub(crate) traffic: TrafficCounters,
    /// Authentication outcomes by result and reason (closed label sets:
    /// token sources and failure reasons, never a user). A lock, not
    /// atomics: one update per handshake or refresh, never per message.
    auth: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Counters {
    /// Counts one authentication outcome: `accepted` with the source,
    /// `rejected` with the reason, `anonymous`, `refreshed`, `expired`.
    pub(crate) fn record_auth(&self, result: &'static str, reason: &'static str) {
        *crate::sync::lock(&self.auth)
            .entry((result, reason))
            .or_default() += 1;
    }

    pub(crate) fn record_dropped(&self) {
        self.messages_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a configuration load or reload (the start-up load is the
    /// first success).
    pub(crate) fn record_reload(&self, success: bool) {
        self.last_reload_failed.store(!success, Ordering::Relaxed);
        if success {
            self.generation.fetch_add(1, Ordering::Relaxed);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.last_reload_success_unix.store(now, Ordering::Relaxed);
        } else {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Counts one outbound compression of `from` payload bytes into `to`.
    pub(crate) fn record_compression(&self, from: usize, to: usize) {
        self.compressions.fetch_add(1, Ordering::Relaxed);
        self.compressed_from
            .fetch_add(from as u64, Ordering::Relaxed);
        self.compressed_to.fetch_add(to as u64, Ordering::Relaxed);
    }

    /// Counts one refusal or enforced close, and logs it (no secrets: the
    /// reason only; the span carries the peer address).
    pub(crate) fn record(&self, reason: Reason) {
        tracing::debug!(reason = reason.as_str(), "limit enforced");
        self.enforced[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The statistics: these counters, with the live `gauges` and `channels`.
    pub(crate) fn snapshot(&self, channels: Vec<ChannelStats>, gauges: Gauges) -> Stats {
        let traffic = self.traffic.snapshot();
        let Gauges {
            connections,
            clients,
            handshake_clients,
            users,
            auth_backends,
        } = gauges;
        Stats {
            channels,
            connections,
            clients,
            handshake_clients,
            users,
            auth: crate::sync::lock(&self.auth).clone(),
            auth_backends,
            // The totals of the per-kind counts, counted once on the hot path.
            messages_received: traffic.messages_received.values().sum(),
            messages_delivered: traffic.messages_sent.values().sum(),
            messages_dropped: self.messages_dropped.load(Ordering::Relaxed),
            compressions: self.compressions.load(Ordering::Relaxed),
            compressed_from: self.compressed_from.load(Ordering::Relaxed),
            compressed_to: self.compressed_to.load(Ordering::Relaxed),
            generation: self.generation(),
            last_reload_successful: !self.last_reload_failed.load(Ordering::Relaxed),
            reload_failures: self.reload_failures.load(Ordering::Relaxed),
            last_reload_success_unix: self.last_reload_success_unix.load(Ordering::Relaxed),
            enforced: Reason::ALL
                .iter()
                .map(|r| {
                    (
                        r.as_str(),
                        self.enforced[*r as usize].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            traffic,
            cluster: None,
        }
    }
}

/// What is open now, read from the live state rather than counted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gauges {
    pub(crate) connections: usize,
    pub(crate) clients: usize,
    pub(crate) handshake_clients: usize,
    pub(crate) users: usize,
    pub(crate) auth_backends: AuthBackends,
}

/// What the identity backends did (zero without `[auth]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthBackends {
    /// JWKS fetches that succeeded, over every JWKS URL.
    pub jwks_fetches: u64,
    /// JWKS fetches that failed (the last good key set was kept).
    pub jwks_failures: u64,
    /// Early JWKS fetches (for an unknown `kid`) refused by the rate limit.
    pub jwks_rate_limited: u64,
    /// Keys in the current JWKS key sets.
    pub jwks_keys: u64,
    /// Connect-webhook calls answered allow.
    pub webhook_allowed: u64,
    /// Connect-webhook calls answered deny.
    pub webhook_denied: u64,
    /// Connect-webhook calls that failed (timeout, connection, bad answer).
    pub webhook_failed: u64,
}

/// A point-in-time view of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// One entry per configured channel, in configuration order.
    pub channels: Vec<ChannelStats>,
    /// Open TCP connections holding a `max_connections` slot (handshaking or upgraded).
    pub connections: usize,
    /// Distinct clients (IPv4 addresses or IPv6 prefixes) holding connections.
    pub clients: usize,
    /// Clients the handshake rate limiter currently remembers (pruned periodically).
    pub handshake_clients: usize,
    /// Distinct authenticated users with a connection on this node.
    pub users: usize,
    /// Authentication outcomes by `(result, reason)`: `("accepted",
    /// source)`, `("rejected", reason)`, `("anonymous", "none")`,
    /// `("refreshed", source)`, `("expired", "token")`. Present once seen.
    pub auth: BTreeMap<(&'static str, &'static str), u64>,
    /// The identity backends: JWKS fetches and webhook calls.
    pub auth_backends: AuthBackends,
    /// Data messages received from clients.
    pub messages_received: u64,
    /// Messages queued for clients (one per recipient).
    pub messages_delivered: u64,
    /// Messages dropped for slow consumers on channels with `on_slow_consumer = "drop"`.
    pub messages_dropped: u64,
    /// Outbound permessage-deflate compressions: one per message in shared
    /// mode whatever the number of recipients, one per recipient in dedicated mode.
    pub compressions: u64,
    /// Payload bytes those compressions took in.
    pub compressed_from: u64,
    /// Bytes they produced (the ratio is `compressed_to / compressed_from`).
    pub compressed_to: u64,
    /// The configuration generation running (1 at start, +1 per successful reload).
    pub generation: u64,
    /// Whether the last reload attempt succeeded (true before any).
    pub last_reload_successful: bool,
    /// Reload attempts refused (invalid file, listener or certificate errors).
    pub reload_failures: u64,
    /// When the running configuration was applied, in seconds since the Unix epoch.
    pub last_reload_success_unix: u64,
    /// Refusals and enforced closes by reason: `ip_cap`, `global_cap`,
    /// `rate_limit`, `timeout`, `idle`, `too_big`, `slow_consumer`, `protocol`.
    /// Every reason is present, zero until it happens.
    pub enforced: BTreeMap<&'static str, u64>,
    /// Connections, handshakes, disconnects, messages by channel kind, and bytes.
    pub traffic: Traffic,
    /// The cluster link's health and counters, while one runs.
    pub cluster: Option<LinkStats>,
}

impl Stats {
    /// The statistics of the channel called `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelStats> {
        self.channels.iter().find(|channel| channel.name == name)
    }
}

/// A point-in-time view of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStats {
    /// The channel's name.
    pub name: String,
    /// Echo, broadcast or room.
    pub kind: ChannelKind,
    /// Open connections on the channel.
    pub connections: usize,
    /// Open rooms (room channels).
    pub room_count: usize,
    /// For room channels, each open room and its member count; empty where
    /// only the totals were asked for (the metrics scrape, which must not
    /// copy every room name).
    pub rooms: BTreeMap<String, usize>,
}
