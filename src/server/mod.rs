//! The server: binding listeners, accepting connections and carrying out
//! admissions, reloads and the drain; the [`Handle`] through which an
//! embedding program publishes, reads statistics and stops.
//!
//! - `state`: what every task shares ([`ServerState`](state::ServerState)).
//! - `listener`: sockets and accept loops; `defer`: their deferred accept.
//! - `connection`: the owner of one connection up to its session.
//! - `handle`: [`Handle`].
//! - `reconfigure`, `drain`: applying a reload; graceful shutdown.
//! - `cluster`: the cluster link's life, and delivering what other nodes
//!   publish.

mod cluster;
mod connection;
mod defer;
mod drain;
mod error;
pub(crate) mod handle;
pub(crate) mod listener;
mod proxy;
mod reconfigure;
mod state;

use std::{future::Future, sync::Arc, time::Duration};

use self::state::ServerState;
pub use self::{
    error::{Error, ReloadError},
    handle::{DisconnectError, Handle, MAX_PRESENCE_PAGE, PresencePage},
    listener::Listener,
};
use crate::{
    channel::{Remote, Users},
    config::Config,
    snapshot::Snapshot,
    stats::Counters,
};

/// How often the handshake limiter forgets clients whose bucket is full
/// again: often enough to bound memory under a scan from many addresses,
/// rarely enough to cost nothing.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// A configured server, not yet serving.
pub struct Server {
    state: Arc<ServerState>,
}

impl Server {
    /// Prepares a server for `config`: builds channels and the TLS acceptor
    /// (generating the development certificate if asked to). Binds nothing.
    pub fn new(config: Config) -> Result<Self, Error> {
        let counters = Arc::new(Counters::default());
        let users = Arc::new(Users::default());
        let remote = Arc::new(Remote::default());
        let snapshot = Snapshot::build(config, &counters, &users, &remote, None)?;
        counters.record_reload(true);
        Ok(Self {
            state: Arc::new(ServerState::new(snapshot, counters, users, remote)),
        })
    }

    /// A handle for publishing, statistics and shutdown; valid before, during
    /// and after serving.
    pub fn handle(&self) -> Handle {
        Handle {
            state: self.state.clone(),
        }
    }

    /// Binds the configured listeners and serves until `shutdown` completes
    /// (or [`Handle::shutdown`] is called).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let listeners = Listener::bind_all(&self.state.snapshot.load().config).await?;
        self.serve(listeners, shutdown).await
    }

    /// Serves on listeners the caller bound (or [`Listener::bind_all`] bound)
    /// until `shutdown` completes or [`Handle::shutdown`] is called. Then it
    /// stops accepting, closes every connection with 1001 spread over
    /// `drain_window`, and returns once they are closed, or at
    /// `shutdown_timeout` after dropping what remains. The admin API is
    /// served on the [`Listener::admin`] among `listeners`, if any. With
    /// `[cluster]`, the link to the other nodes runs from the start (it
    /// connects in the background: local clients are served while Redis is
    /// down) until the drain is over, and then removes this node's
    /// presence share.
    pub async fn serve(
        self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let state = self.state;
        if listeners.iter().any(Listener::is_tls) && state.snapshot.load().acceptor.is_none() {
            return Err(Error::NoTls);
        }
        // The admin API (on a `Listener::admin`, else on `[admin] listen`)
        // answers until this function returns, through the drain, so that
        // /readyz reports it; it is not on the tracker the drain waits for.
        let (admin, listeners): (Vec<_>, Vec<_>) =
            listeners.into_iter().partition(Listener::is_admin);
        let handle = Handle {
            state: state.clone(),
        };
        state.start_cluster()?;
        let _admin = crate::admin::start(admin, handle);
        for listener in listeners {
            listener.start(&state);
        }
        state.tasks.spawn(prune_periodically(state.clone()));
        tokio::select! {
            () = shutdown => {}
            () = state.shutdown.cancelled() => {}
        }
        state.shutdown.cancel();
        drain::drain(&state).await;
        state.stop_cluster().await;
        Ok(())
    }
}

/// Prunes the handshake limiter every [`PRUNE_INTERVAL`] until shutdown.
async fn prune_periodically(state: Arc<ServerState>) {
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(PRUNE_INTERVAL) => state.snapshot.load().handshakes.prune(),
        }
    }
}
