//! The state every task of one server shares: the configuration snapshot,
//! the task tracker and cancellation tree, counters, caps and the running
//! accept loops.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    channel::{Remote, Users},
    limits::caps::ConnectionCaps,
    reload::ListenerSpec,
    snapshot::Snapshot,
    stats::{AuthBackends, Counters, Gauges, Stats},
};

/// Shared by the accept loops, the connections, the sessions (through the
/// snapshot), the reloader and every [`Handle`](super::Handle).
pub(crate) struct ServerState {
    /// The current configuration view; swapped whole on reload. Sessions
    /// hold it too, to read their channel's policy per message.
    pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
    /// Accept loops, connections and upgraded sessions, awaited on shutdown.
    pub(crate) tasks: TaskTracker,
    /// Cancelled once, when shutdown starts.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled at `shutdown_timeout`: sessions still open are dropped.
    pub(crate) hard_stop: CancellationToken,
    pub(crate) counters: Arc<Counters>,
    /// Every authenticated connection by user; outlives snapshots.
    pub(crate) users: Arc<Users>,
    /// The cluster link, while `serve` runs with `[cluster]`; outlives
    /// snapshots (a reload that changes `[cluster]` replaces the link).
    pub(crate) remote: Arc<Remote>,
    /// Connection counts for the caps; outlives snapshots.
    pub(crate) caps: Arc<ConnectionCaps>,
    /// The accept loops of the listeners bound from the configuration, so
    /// that a reload can close the ones it removes and hand a socket whose
    /// role changes to its new loop.
    pub(super) listeners: Mutex<HashMap<ListenerSpec, AcceptLoop>>,
    /// One reload at a time; signals that arrive meanwhile are coalesced by
    /// whoever triggers reloads.
    pub(super) reloading: tokio::sync::Mutex<()>,
}

/// A running accept loop: cancelling `stop` ends it and `task` yields its socket.
pub(super) struct AcceptLoop {
    pub(super) stop: CancellationToken,
    pub(super) task: tokio::task::JoinHandle<tokio::net::TcpListener>,
}

impl ServerState {
    pub(super) fn new(
        snapshot: Snapshot,
        counters: Arc<Counters>,
        users: Arc<Users>,
        remote: Arc<Remote>,
    ) -> Self {
        Self {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            counters,
            users,
            remote,
            caps: Arc::default(),
            listeners: Mutex::default(),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Connections per channel, rooms (with each room's size only with
    /// `room_sizes`), counters: what `Handle::stats` and the admin API report.
    pub(crate) fn stats(&self, room_sizes: bool) -> Stats {
        let snapshot = self.snapshot.load();
        let gauges = Gauges {
            connections: self.caps.active(),
            clients: self.caps.clients(),
            handshake_clients: snapshot.handshakes.len(),
            users: self.users.len(),
            auth_backends: snapshot
                .authenticator
                .as_ref()
                .map(|authenticator| {
                    let stats = authenticator.stats();
                    AuthBackends {
                        jwks_fetches: stats.jwks.fetches,
                        jwks_failures: stats.jwks.failures,
                        jwks_rate_limited: stats.jwks.rate_limited,
                        jwks_keys: stats.jwks.keys,
                        webhook_allowed: stats.webhook.allowed,
                        webhook_denied: stats.webhook.denied,
                        webhook_failed: stats.webhook.failed,
                    }
                })
                .unwrap_or_default(),
        };
        let mut stats = self
            .counters
            .snapshot(snapshot.channel_stats(room_sizes), gauges);
        stats.cluster = self.remote.stats();
        stats
    }
}
