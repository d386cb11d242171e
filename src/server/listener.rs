//! Listening sockets, accept loops, and the life of one TCP connection up to
//! the upgrade: PROXY header, connection caps, TLS handshake and HTTP
//! request, all within `handshake_timeout`.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tracing::Instrument;

use tokio_util::sync::CancellationToken;

use super::{Error, Shared, proxy};
use crate::{
    config::Config,
    http::{ClientConnection, serve_request},
    limits::{ClientKey, caps::Slots},
    reload::ListenerSpec,
    stats::{Handshake, Metered, Reason},
};

/// Pause after an accept error that is not about one connection (EMFILE,
/// ENOBUFS): long enough for descriptors to be released, short enough not to
/// notice.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
            listeners.push(Self::bind(spec).await?);
        }
        if let Some(admin) = &config.admin {
            let socket = TcpListener::bind(admin.listen)
                .await
                .map_err(|source| Error::Bind {
                    addr: admin.listen,
                    source,
                })?;
            listeners.push(Self::admin(socket));
        }
        Ok(listeners)
    }

    /// Binds one configured listener.
    pub(super) async fn bind(spec: ListenerSpec) -> Result<Self, Error> {
        let socket = TcpListener::bind(spec.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: spec.addr,
                source,
            })?;
        Ok(Self::configured(socket, spec))
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

    pub(super) fn is_tls(&self) -> bool {
        self.tls
    }

    /// Accepts until `stop` (shutdown, or a reload that removes it or
    /// changes its role), then gives the socket back. Never returns on an
    /// accept error: per-connection errors are skipped, resource exhaustion
    /// backs off.
    pub(super) async fn accept_loop(
        self,
        stop: CancellationToken,
        shared: Arc<Shared>,
    ) -> TcpListener {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return self.socket,
                accepted = self.socket.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    shared.counters.traffic.record_accepted();
                    let span = tracing::debug_span!("connection", %peer);
                    let connection = serve_connection(
                        stream,
                        peer,
                        self.tls,
                        self.proxy_protocol,
                        shared.clone(),
                    );
                    shared.tasks.spawn(connection.instrument(span));
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

/// Identifies the client, takes its connection slots, then runs TLS and
/// HTTP. Returning drops the socket: a refused client is closed at once.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
    proxy_protocol: bool,
    shared: Arc<Shared>,
) {
    // Frames are written in batches already; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let mut stream = Metered::new(stream, shared.counters.clone());
    let snapshot = shared.snapshot.load_full();
    let config = &snapshot.config;
    let deadline = Instant::now() + config.server.handshake_timeout;
    let trusted = config
        .server
        .trusted_proxies
        .iter()
        .any(|cidr| cidr.contains(peer.ip()));
    let counters = &shared.counters;

    let (client, forwarded) = if proxy_protocol {
        if !trusted {
            tracing::debug!("PROXY listener: peer is not in trusted_proxies");
            return counters.refuse(Reason::Protocol);
        }
        match tokio::time::timeout_at(deadline, proxy::read_header(&mut stream)).await {
            Ok(Ok(source)) => (source.unwrap_or(peer.ip()), false),
            Ok(Err(error)) => {
                tracing::debug!(%error, "bad PROXY header");
                return counters.refuse(Reason::Protocol);
            }
            Err(_) => return counters.refuse(Reason::Timeout),
        }
    } else {
        // A trusted proxy without PROXY header may name the client in
        // X-Forwarded-For: its slot is taken once the request is read.
        (peer.ip(), trusted)
    };

    let admission = &config.admission;
    let Some(global) = shared.caps.acquire_global(admission.max_connections) else {
        return counters.refuse(Reason::GlobalCap);
    };
    let client_slot = if forwarded {
        None
    } else {
        let key = ClientKey::new(client, admission.ipv6_prefix);
        match shared
            .caps
            .acquire_client(key, admission.max_connections_per_ip)
        {
            Some(slot) => Some(slot),
            None => return counters.refuse(Reason::IpCap),
        }
    };
    let connection = Arc::new(ClientConnection {
        addr: client,
        forwarded,
        slots: Mutex::new(Some(Slots::new(global, client_slot))),
    });

    if !tls {
        drop(snapshot);
        return serve_http(stream, deadline, connection, shared).await;
    }
    let Some(acceptor) = snapshot.acceptor.clone() else {
        return;
    };
    drop(snapshot);
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve_http(tls, deadline, connection, shared).await,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            shared.counters.traffic.record_handshake(Handshake::Tls);
        }
        Err(_) => shared.counters.refuse(Reason::Timeout),
    }
}

/// Serves HTTP on one connection until it upgrades or is refused (refusals
/// carry `Connection: close`, so a connection sees one request either way).
async fn serve_http<I>(
    io: I,
    deadline: Instant,
    connection: Arc<ClientConnection>,
    shared: Arc<Shared>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = shared.clone();
    let service = service_fn(move |request| {
        serve_request(request, connection.clone(), service_shared.clone())
    });
    let http = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(deadline.saturating_duration_since(Instant::now()))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(http);
    let result = tokio::select! {
        result = http.as_mut() => result,
        () = shared.shutdown.cancelled() => {
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    match result {
        Err(error) if error.is_timeout() => shared.counters.refuse(Reason::Timeout),
        Err(error) => tracing::debug!(%error, "HTTP connection ended with an error"),
        Ok(()) => {}
    }
}
