//! The owner of one TCP connection, from accept to the spawned session:
//! PROXY header, handshake rate and connection caps for a client the socket
//! identifies (before any TLS work), TLS handshake and HTTP request, all
//! within `handshake_timeout`; then, for a request admission admitted, the
//! acts: the client's slot, the channel join, the 101, the session.
//!
//! Admission (`http::admit`) decides from one snapshot; this module only
//! carries the decision out, and reports every refusal through the same
//! typed [`Rejection`].

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    time::Instant,
};

use super::{proxy, state::ServerState};
use crate::{
    channel::{JoinError, Joiner},
    config::AuthMode,
    http::{Admitted, BadUpgrade, Caller, Peer, Rejection, admit, identify},
    limits::{ClientKey, caps::Slots},
    session::{Place, Session, Waiting},
    snapshot::Snapshot,
    stats::{Handshake, Metered, PlainStream},
    sync::lock,
    ws::outbox,
};

/// How a listener serves its connections.
#[derive(Debug, Clone, Copy)]
pub(super) struct Role {
    pub(super) tls: bool,
    pub(super) proxy_protocol: bool,
}

/// One connection before its upgrade: who it is, and the cap slots it
/// holds, which move into the session on upgrade.
struct Connection {
    peer: Peer,
    /// Decided before the request was read (the handshake rate of a plain
    /// listener's client): every request is answered with it.
    refused: Option<Rejection>,
    slots: Mutex<Option<Slots>>,
}

/// Identifies the client, takes its connection slots, then runs TLS and
/// HTTP. Returning drops the socket: a refused client is closed at once.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    role: Role,
    state: Arc<ServerState>,
) {
    // Frames are written in batches already; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    // Of the type the session takes back from hyper after the upgrade.
    let mut stream: PlainStream = Metered::new(stream, state.counters.clone());
    let snapshot = state.snapshot.load_full();
    let config = &snapshot.config;
    let deadline = Instant::now() + config.server.handshake_timeout;
    let trusted = config
        .server
        .trusted_proxies
        .iter()
        .any(|cidr| cidr.contains(peer.ip()));
    let refuse = |rejection: Rejection| rejection.record(&state.counters);

    let (addr, from_proxy_header) = if role.proxy_protocol {
        if !trusted {
            tracing::debug!("PROXY listener: peer is not in trusted_proxies");
            return refuse(Rejection::ProxyHeader);
        }
        match tokio::time::timeout_at(deadline, proxy::read_header(&mut stream)).await {
            Ok(Ok(source)) => (source.unwrap_or(peer.ip()), true),
            Ok(Err(error)) => {
                tracing::debug!(%error, "bad PROXY header");
                return refuse(Rejection::ProxyHeader);
            }
            Err(_) => return refuse(Rejection::Timeout),
        }
    } else {
        (peer.ip(), false)
    };
    // A trusted proxy without PROXY header may name the client in
    // X-Forwarded-For: only the request identifies it. Everyone else is
    // known now, and pays the handshake rate before any TLS or HTTP work.
    let identified = !trusted || from_proxy_header;
    let admission = &config.admission;
    let key = ClientKey::new(addr, admission.ipv6_prefix);
    let mut refused = None;
    if identified && let Err(retry_after) = snapshot.handshakes.check(key) {
        let rejection = Rejection::RateLimited {
            retry_after,
            answered: !role.tls,
        };
        if role.tls {
            return refuse(rejection);
        }
        refused = Some(rejection);
    }
    let peer = Peer {
        addr,
        from_proxy_header,
        counted: identified.then_some(key),
    };

    let Some(global) = state.caps.acquire_global(admission.max_connections) else {
        return refuse(Rejection::GlobalCap);
    };
    // A client named by X-Forwarded-For takes its slot once the request is read.
    let client_slot = if !identified {
        None
    } else {
        match state
            .caps
            .acquire_client(key, admission.max_connections_per_ip)
        {
            Some(slot) => Some(slot),
            None => return refuse(Rejection::IpCap { answered: false }),
        }
    };
    let connection = Arc::new(Connection {
        peer,
        refused,
        slots: Mutex::new(Some(Slots::new(global, client_slot))),
    });

    if !role.tls {
        drop(snapshot);
        return serve_http(stream, deadline, connection, state).await;
    }
    let Some(acceptor) = snapshot.acceptor.clone() else {
        return;
    };
    drop(snapshot);
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve_http(tls, deadline, connection, state).await,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            refuse(Rejection::Tls);
        }
        Err(_) => refuse(Rejection::Timeout),
    }
}

/// Serves HTTP on one connection until it upgrades or is refused (refusals
/// carry `Connection: close`, so a connection sees one request either way).
async fn serve_http<I>(
    io: I,
    deadline: Instant,
    connection: Arc<Connection>,
    state: Arc<ServerState>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_state = state.clone();
    let service = service_fn(move |request| {
        let (connection, state) = (connection.clone(), service_state.clone());
        async move { Ok::<_, Infallible>(connection.respond(request, &state).await) }
    });
    let http = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(deadline.saturating_duration_since(Instant::now()))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(http);
    let result = tokio::select! {
        result = http.as_mut() => result,
        () = state.shutdown.cancelled() => {
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    match result {
        Err(error) if error.is_timeout() => Rejection::Timeout.record(&state.counters),
        Err(error) => tracing::debug!(%error, "HTTP connection ended with an error"),
        Ok(()) => {}
    }
}

impl Connection {
    /// Answers one request: admission's decision, then its identity step,
    /// both from one snapshot, then the acts. Never fails: every refusal is
    /// a response.
    async fn respond(
        &self,
        mut request: Request<Incoming>,
        state: &Arc<ServerState>,
    ) -> Response<Full<Bytes>> {
        let snapshot = state.snapshot.load_full();
        let admitted = match self.refused {
            Some(rejection) => Err(rejection),
            None => admit(&snapshot, &request, self.peer),
        };
        let answer = match admitted {
            Ok(mut admitted) => {
                let authenticator = snapshot.authenticator.as_ref();
                match identify(authenticator, &request, &mut admitted, &state.counters).await {
                    Ok(()) => self.upgrade(&mut request, admitted, &snapshot, state),
                    Err(rejection) => Err(rejection),
                }
            }
            Err(rejection) => Err(rejection),
        };
        match answer {
            Ok(response) => {
                state.counters.traffic.record_handshake(Handshake::Accepted);
                response
            }
            Err(rejection) => {
                // The path only: query strings may carry tokens.
                tracing::debug!(path = request.uri().path(), "request refused");
                rejection.record(&state.counters);
                rejection.into_response()
            }
        }
    }

    /// Carries out an admission: the client's slot, the channel join, the
    /// 101, and the session spawned to run once hyper hands the socket over.
    fn upgrade(
        &self,
        request: &mut Request<Incoming>,
        admitted: Admitted,
        snapshot: &Snapshot,
        state: &Arc<ServerState>,
    ) -> Result<Response<Full<Bytes>>, Rejection> {
        // Refusals close the connection, so a second request can only come
        // after a first one that did not upgrade: it finds the slots gone.
        let mut slots = lock(&self.slots).take().ok_or(Rejection::Closing)?;
        // Hold exactly the admitted client's slot: the one taken at accept,
        // unless admission named another client (X-Forwarded-For, or trust
        // changed by a reload since the accept).
        if slots.client_key() != Some(admitted.client) {
            let slot = state
                .caps
                .acquire_client(admitted.client, admitted.max_connections_per_ip)
                .ok_or(Rejection::IpCap { answered: true })?;
            slots.set_client(slot);
        }
        let limits = &admitted.config.limits;
        let (outbox, receiver) = outbox::channel(limits.send_buffer, limits.on_slow_consumer);
        // A connection that authenticates in band joins once it has.
        let place = match &admitted.caller {
            Caller::FirstMessage(_) => Place::Waiting(Waiting {
                channel: admitted.channel.clone(),
                config: admitted.config.clone(),
                room: admitted.room.clone(),
                encoding: admitted.encoding,
            }),
            caller => {
                let identity = match caller {
                    Caller::Known(identity) => Some(identity.clone()),
                    _ => None,
                };
                let joiner = Joiner {
                    outbox: outbox.clone(),
                    encoding: admitted.encoding,
                    identity,
                };
                let membership = admitted
                    .channel
                    .join(&admitted.config, admitted.room.as_deref(), joiner)
                    .map_err(|error| match error {
                        JoinError::RoomFull => Rejection::RoomFull,
                        JoinError::TooManyRooms => Rejection::TooManyRooms,
                        JoinError::ChannelFull => Rejection::ChannelFull,
                        JoinError::Closing => Rejection::Closing,
                    })?;
                Place::Joined(membership)
            }
        };
        // Control messages are the server's on channels that check identities.
        let in_band = snapshot
            .authenticator
            .clone()
            .filter(|_| admitted.config.auth.mode != AuthMode::None);
        let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut *request)
            .map_err(|_| Rejection::Upgrade(BadUpgrade::Malformed))?;
        let (mut parts, _) = response.into_parts();
        admitted.answer(&mut parts.headers);
        let session = Session {
            place,
            caller: admitted.caller,
            in_band,
            encoding: admitted.encoding,
            counters: state.counters.clone(),
            outbox,
            receiver,
            slots,
            config: admitted.config.clone(),
            deflate: admitted.deflate,
            policy: state.snapshot.clone(),
            hard_stop: state.hard_stop.clone(),
        };
        state.tasks.spawn(session.run(upgrade));
        Ok(Response::from_parts(parts, Full::default()))
    }
}
