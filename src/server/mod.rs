//! The server: binding listeners, accepting connections, and the [`Handle`]
//! through which an embedding program publishes, reads statistics and stops.

mod drain;
mod listener;
mod proxy;
mod reconfigure;

use crate::sync::lock;
use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use self::listener::Listener;
pub(crate) use self::listener::recover_from_accept_error;
use crate::{
    channel::PublishError,
    config::{Config, ConfigError},
    limits::caps::ConnectionCaps,
    message::Message,
    reload::{ListenerSpec, ReloadReport},
    snapshot::Snapshot,
    stats::{Counters, Stats},
    tls::{Identity, TlsError},
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error (address in use, permission denied...).
        source: io::Error,
    },
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// TLS listeners were given but the configuration has no `[server.tls]`.
    #[error("TLS listeners need a [server.tls] table in the configuration")]
    NoTls,
}

/// Why a reload was refused; the running configuration is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is not a valid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new configuration could not be applied (a listener could not be
    /// bound, the certificate could not be used).
    #[error(transparent)]
    Apply(#[from] Error),
}

/// State shared by every task of one server.
pub(crate) struct Shared {
    /// The current configuration view; swapped whole on reload.
    pub(crate) snapshot: ArcSwap<Snapshot>,
    /// Accept loops, connections and upgraded sessions, awaited on shutdown.
    pub(crate) tasks: TaskTracker,
    /// Cancelled once, when shutdown starts.
    pub(crate) shutdown: CancellationToken,
    pub(crate) counters: Arc<Counters>,
    /// Connection counts for the caps; outlives snapshots.
    pub(crate) caps: Arc<ConnectionCaps>,
    /// The accept loops of the listeners bound from the configuration, so
    /// that a reload can close the ones it removes and hand a socket whose
    /// role changes to its new loop.
    listeners: Mutex<HashMap<ListenerSpec, AcceptLoop>>,
    /// One reload at a time; signals that arrive meanwhile are coalesced by
    /// whoever triggers reloads.
    reloading: tokio::sync::Mutex<()>,
    /// Cancelled at `shutdown_timeout`: sessions still open are dropped.
    pub(crate) hard_stop: CancellationToken,
}

/// How often the handshake limiter forgets clients whose bucket is full
/// again: often enough to bound memory under a scan from many addresses,
/// rarely enough to cost nothing.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// A configured server, not yet serving.
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// Prepares a server for `config`: builds channels and the TLS acceptor
    /// (generating the development certificate if asked to). Binds nothing.
    pub fn new(config: Config) -> Result<Self, Error> {
        let counters = Arc::new(Counters::default());
        let snapshot = Snapshot::build(config, &counters, None)?;
        counters.record_reload(true);
        Ok(Self {
            shared: Arc::new(Shared {
                snapshot: ArcSwap::from_pointee(snapshot),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                counters,
                caps: Arc::default(),
                listeners: Mutex::default(),
                reloading: tokio::sync::Mutex::new(()),
                hard_stop: CancellationToken::new(),
            }),
        })
    }

    /// A handle for publishing, statistics and shutdown; valid before, during
    /// and after serving.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Binds the configured listeners and serves until `shutdown` completes
    /// (or [`Handle::shutdown`] is called).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let listeners = Listener::bind_all(&self.shared.snapshot.load().config).await?;
        self.serve(listeners, shutdown).await
    }

    /// Serves on listeners the caller bound (or [`Listener::bind_all`] bound)
    /// until `shutdown` completes or [`Handle::shutdown`] is called. Then it
    /// stops accepting, closes every connection with 1001 spread over
    /// `drain_window`, and returns once they are closed, or at
    /// `shutdown_timeout` after dropping what remains. The admin API is
    /// served on the [`Listener::admin`] among `listeners`, if any.
    pub async fn serve(
        self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let shared = self.shared;
        if listeners.iter().any(Listener::is_tls) && shared.snapshot.load().acceptor.is_none() {
            return Err(Error::NoTls);
        }
        // The admin API (on a `Listener::admin`, else on `[admin] listen`)
        // answers until this function returns, through the drain, so that
        // /readyz reports it; it is not on the tracker the drain waits for.
        let (admin, listeners): (Vec<_>, Vec<_>) =
            listeners.into_iter().partition(Listener::is_admin);
        let _admin = crate::admin::start(admin, &shared);
        for listener in listeners {
            shared.start_listener(listener);
        }
        shared.tasks.spawn(prune_periodically(shared.clone()));
        tokio::select! {
            () = shutdown => {}
            () = shared.shutdown.cancelled() => {}
        }
        shared.shutdown.cancel();
        drain::drain(&shared).await;
        Ok(())
    }
}

impl Shared {
    /// Connections per channel, rooms and their sizes, counters: what
    /// `Handle::stats` and the admin API report.
    pub(crate) fn stats(&self) -> Stats {
        let snapshot = self.snapshot.load();
        let channels = snapshot
            .channels
            .iter()
            .map(|channel| channel.stats())
            .collect();
        self.counters.snapshot(
            channels,
            self.caps.active(),
            self.caps.clients(),
            snapshot.handshakes.len(),
        )
    }

    /// Spawns a listener's accept loop; a configured one is registered so
    /// that a reload can stop it.
    fn start_listener(self: &Arc<Self>, listener: Listener) {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, scheme = if listener.is_tls() { "wss" } else { "ws" }, "listening");
        }
        let stop = self.shutdown.child_token();
        let spec = listener.spec;
        let task = self
            .tasks
            .spawn(listener.accept_loop(stop.clone(), self.clone()));
        if let Some(spec) = spec {
            lock(&self.listeners).insert(spec, AcceptLoop { stop, task });
        }
    }
}

/// A running accept loop: cancelling `stop` ends it and `task` yields its socket.
struct AcceptLoop {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<tokio::net::TcpListener>,
}

/// Controls a [`Server`] from outside: cheap to clone, usable from any task.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Publishes `message` to a broadcast channel (`room` = `None`) or to one
    /// room of a room channel. Returns how many connections it was queued for.
    pub fn publish(
        &self,
        channel: &str,
        room: Option<&str>,
        message: Message,
    ) -> Result<usize, PublishError> {
        let snapshot = self.shared.snapshot.load();
        let target = snapshot
            .channel(channel)
            .ok_or_else(|| PublishError::UnknownChannel(channel.to_owned()))?;
        target.publish(room, &message)
    }

    /// Connections per channel, rooms and their sizes, message counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The certificate served on TLS listeners (for fingerprints and for
    /// clients that pin the development certificate).
    pub fn tls_identity(&self) -> Option<Identity> {
        self.shared.snapshot.load().identity.clone()
    }

    /// Starts the same graceful shutdown as the future given to `serve`.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Applies a new configuration without dropping connections: new and
    /// changed channels and limits apply to new connections and messages,
    /// removed channels close theirs with 1001, listeners open and close by
    /// difference, a new certificate serves new handshakes. On error nothing
    /// changes.
    pub async fn reload(&self, config: Config) -> Result<ReloadReport, Error> {
        self.shared.reload(config).await
    }

    /// Reads, validates and applies a configuration file (see [`Handle::reload`]).
    /// A file that does not validate changes nothing and is counted as a
    /// failed reload.
    pub async fn reload_from_file(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<ReloadReport, ReloadError> {
        match Config::from_file(path) {
            Ok(config) => Ok(self.reload(config).await?),
            Err(error) => {
                self.shared.counters.record_reload(false);
                Err(error.into())
            }
        }
    }

    /// The configuration generation now running: 1 at start, one more per
    /// successful reload.
    pub fn generation(&self) -> u64 {
        self.shared.counters.generation()
    }
}

/// Prunes the handshake limiter every [`PRUNE_INTERVAL`] until shutdown.
async fn prune_periodically(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(PRUNE_INTERVAL) => shared.snapshot.load().handshakes.prune(),
        }
    }
}
