//! The server: binding listeners, accepting connections, and the [`Handle`]
//! through which an embedding program publishes, reads statistics and stops.

mod listener;
mod proxy;

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use self::listener::Listener;
use crate::{
    channel::PublishError,
    config::Config,
    limits::caps::ConnectionCaps,
    message::Message,
    snapshot::Snapshot,
    stats::{Counters, Stats},
    tls::{Identity, TlsError},
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
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
        let snapshot = Snapshot::build(config, &counters)?;
        Ok(Self {
            shared: Arc::new(Shared {
                snapshot: ArcSwap::from_pointee(snapshot),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                counters,
                caps: Arc::default(),
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
        let listeners = Listener::bind_all(&self.shared.snapshot.load().config.server).await?;
        self.serve(listeners, shutdown).await
    }

    /// Serves on listeners the caller bound until `shutdown` completes (or
    /// [`Handle::shutdown`] is called). Then stops accepting, sends close
    /// 1001 to every connection and returns once they have closed (each is
    /// given a few seconds to answer).
    pub async fn serve(
        self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let shared = self.shared;
        if listeners.iter().any(Listener::is_tls) && shared.snapshot.load().acceptor.is_none() {
            return Err(Error::NoTls);
        }
        for listener in listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, scheme = if listener.is_tls() { "wss" } else { "ws" }, "listening");
            }
            shared.tasks.spawn(listener.accept_loop(shared.clone()));
        }
        shared.tasks.spawn(prune_periodically(shared.clone()));
        tokio::select! {
            () = shutdown => {}
            () = shared.shutdown.cancelled() => {}
        }
        tracing::info!("shutting down: closing every connection with 1001");
        shared.shutdown.cancel();
        for channel in &shared.snapshot.load().channels {
            channel.close_all(1001, "server shutting down");
        }
        shared.tasks.close();
        shared.tasks.wait().await;
        Ok(())
    }
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
        let snapshot = self.shared.snapshot.load();
        let channels = snapshot
            .channels
            .iter()
            .map(|channel| channel.stats())
            .collect();
        let caps = &self.shared.caps;
        self.shared.counters.snapshot(
            channels,
            caps.active(),
            caps.clients(),
            snapshot.handshakes.len(),
        )
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
