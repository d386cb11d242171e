//! Listening sockets and their accept loops. Each accepted connection is
//! handed to its owner (`connection`).

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    connection, defer,
    error::Error,
    state::{AcceptLoop, ServerState},
};
use crate::{config::Config, reload::ListenerSpec, sync::lock};

/// Pause after an accept error that is not about one connection (EMFILE,
/// ENOBUFS): long enough for descriptors to be released, short enough not to
/// notice.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The listen backlog asked for: more than any burst of simultaneous
/// connects a server meets (a reconnect storm after a restart), so that no
/// SYN is dropped and no client waits a second for its retransmission. The
/// kernel caps it at `net.core.somaxconn` (4096 by default since Linux 5.4),
/// so the system's maximum is what we get; std's bind asks for only 128.
const LISTEN_BACKLOG: u32 = 65_535;

/// Binds `addr` for listening with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`,
/// as std's bind sets it, so a restart does not wait for TIME_WAIT).
fn listen(addr: SocketAddr) -> Result<TcpListener, Error> {
    let bound = || {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    bound().map_err(|source| Error::Bind { addr, source })
}

/// A bound socket and how to serve it.
#[derive(Debug)]
pub struct Listener {
    socket: TcpListener,
    tls: bool,
    proxy_protocol: bool,
    /// The configuration entry it was bound for: reloads close it when the
    /// entry goes. Caller-bound listeners have none and stay until shutdown.
    pub(super) spec: Option<ListenerSpec>,
    /// Serves the admin API instead of WebSockets (see [`Listener::admin`]).
    admin: bool,
}

impl Listener {
    /// A listener served with TLS (wss://).
    pub fn tls(socket: TcpListener) -> Self {
        Self {
            socket,
            tls: true,
            proxy_protocol: false,
            spec: None,
            admin: false,
        }
    }

    /// A listener served without TLS (ws://).
    pub fn plain(socket: TcpListener) -> Self {
        Self {
            socket,
            tls: false,
            proxy_protocol: false,
            spec: None,
            admin: false,
        }
    }

    /// A listener serving the admin API (health, readiness, metrics,
    /// publish, channel statistics) over plain HTTP. When
    /// [`Server::serve`](super::Server::serve) is given one, it serves the
    /// admin API there instead of binding `[admin] listen` itself; it answers
    /// until `serve` returns, through the drain.
    pub fn admin(socket: TcpListener) -> Self {
        Self {
            admin: true,
            ..Self::plain(socket)
        }
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.admin
    }

    pub(crate) fn into_socket(self) -> TcpListener {
        self.socket
    }

    /// Expects a PROXY protocol header first on every connection, and
    /// accepts it only from `trusted_proxies`.
    pub fn with_proxy_protocol(self) -> Self {
        Self {
            proxy_protocol: true,
            ..self
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Binds every listener the configuration declares: `[server] listen`
    /// and `plain`, and `[admin] listen` if there is an `[admin]` table.
    pub async fn bind_all(config: &Config) -> Result<Vec<Self>, Error> {
        let mut listeners = Vec::new();
        for spec in ListenerSpec::all(&config.server) {
            listeners.push(Self::bind(spec)?);
        }
        if let Some(admin) = &config.admin {
            listeners.push(Self::admin(listen(admin.listen)?));
        }
        Ok(listeners)
    }

    /// Binds one configured listener.
    pub(super) fn bind(spec: ListenerSpec) -> Result<Self, Error> {
        Ok(Self::configured(listen(spec.addr)?, spec))
    }

    /// A bound socket in the role a configuration entry gives it (a reload
    /// that changes only the role hands the running socket over).
    pub(super) fn configured(socket: TcpListener, spec: ListenerSpec) -> Self {
        Self {
            socket,
            tls: spec.tls,
            proxy_protocol: spec.proxy_protocol,
            spec: Some(spec),
            admin: false,
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    /// Spawns the accept loop on the server's tracker; a configured listener
    /// is registered so that a reload can stop it. Accepts are deferred
    /// until the client's first bytes (`defer`), on caller-bound sockets
    /// too; where the kernel refuses, they are not, and that is all.
    pub(super) fn start(self, state: &Arc<ServerState>) {
        if let Ok(addr) = self.local_addr() {
            tracing::info!(%addr, scheme = if self.tls { "wss" } else { "ws" }, "listening");
        }
        if let Err(error) = defer::defer_accept(&self.socket) {
            tracing::warn!(%error, "cannot defer accepts until the first bytes");
        }
        let stop = state.shutdown.child_token();
        let spec = self.spec;
        let task = state
            .tasks
            .spawn(self.accept_loop(stop.clone(), state.clone()));
        if let Some(spec) = spec {
            lock(&state.listeners).insert(spec, AcceptLoop { stop, task });
        }
    }

    /// Accepts until `stop` (shutdown, or a reload that removes it or
    /// changes its role), then gives the socket back. Never returns on an
    /// accept error: per-connection errors are skipped, resource exhaustion
    /// backs off.
    async fn accept_loop(self, stop: CancellationToken, state: Arc<ServerState>) -> TcpListener {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return self.socket,
                accepted = self.socket.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    state.counters.traffic.record_accepted();
                    let span = tracing::debug_span!("connection", %peer);
                    let role = connection::Role {
                        tls: self.tls,
                        proxy_protocol: self.proxy_protocol,
                    };
                    let owner = connection::serve(stream, peer, role, state.clone());
                    state.tasks.spawn(owner.instrument(span));
                }
                Err(error) => recover_from_accept_error(error).await,
            }
        }
    }
}

/// After a failed accept: nothing for errors that concern only the
/// connection being accepted; a pause for resource exhaustion (EMFILE,
/// ENOBUFS), so that an accept loop neither spins nor dies.
pub(crate) async fn recover_from_accept_error(error: io::Error) {
    let per_connection = matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    );
    if !per_connection {
        tracing::warn!(%error, "accept failed; backing off");
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }
}
