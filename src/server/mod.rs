//! The server: binding listeners, accepting connections, and the [`Handle`]
//! through which an embedding program publishes, reads statistics and stops.

mod listener;

use std::{future::Future, io, net::SocketAddr, sync::Arc};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    channel::PublishError,
    config::{Config, ServerSettings},
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
}

/// A configured server, not yet serving.
pub struct Server {
    shared: Arc<Shared>,
}

/// Listening sockets handed to [`Server::serve`]: bound by [`Listeners::bind`]
/// from the configuration, or by the caller (tests bind port 0).
#[derive(Debug, Default)]
pub struct Listeners {
    /// Served with TLS (wss://).
    pub tls: Vec<TcpListener>,
    /// Served without TLS (ws://).
    pub plain: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every address of `[server] listen` and `plain`.
    pub async fn bind(settings: &ServerSettings) -> Result<Self, Error> {
        Ok(Self { tls: bind_all(&settings.listen).await?, plain: bind_all(&settings.plain).await? })
    }
}

async fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, Error> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        listeners.push(TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?);
    }
    Ok(listeners)
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
            }),
        })
    }

    /// A handle for publishing, statistics and shutdown; valid before, during
    /// and after serving.
    pub fn handle(&self) -> Handle {
        Handle { shared: self.shared.clone() }
    }

    /// Binds the configured listeners and serves until `shutdown` completes
    /// (or [`Handle::shutdown`] is called).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let listeners = Listeners::bind(&self.shared.snapshot.load().config.server).await?;
        self.serve(listeners, shutdown).await
    }

    /// Serves on listeners the caller bound until `shutdown` completes (or
    /// [`Handle::shutdown`] is called). Then stops accepting, sends close
    /// 1001 to every connection and returns once they have closed (each is
    /// given a few seconds to answer).
    pub async fn serve(self, listeners: Listeners, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let shared = self.shared;
        if !listeners.tls.is_empty() && shared.snapshot.load().acceptor.is_none() {
            return Err(Error::NoTls);
        }
        for (listener, secure) in listeners.tls.into_iter().map(|l| (l, true)).chain(listeners.plain.into_iter().map(|l| (l, false))) {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, scheme = if secure { "wss" } else { "ws" }, "listening");
            }
            shared.tasks.spawn(listener::accept_loop(listener, secure, shared.clone()));
        }
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
    pub fn publish(&self, channel: &str, room: Option<&str>, message: Message) -> Result<usize, PublishError> {
        let snapshot = self.shared.snapshot.load();
        let target = snapshot.channel(channel).ok_or_else(|| PublishError::UnknownChannel(channel.to_owned()))?;
        target.publish(room, &message)
    }

    /// Connections per channel, rooms and their sizes, message counters.
    pub fn stats(&self) -> Stats {
        let snapshot = self.shared.snapshot.load();
        self.shared.counters.snapshot(snapshot.channels.iter().map(|channel| channel.stats()).collect())
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
