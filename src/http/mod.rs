//! The hyper service: admission of one HTTP request, in the order DESIGN.md
//! section 1 gives, ending in a 101 and a spawned session or in a short
//! plain-text refusal.

mod forwarded;
pub(crate) mod handshake;
pub mod origin;
pub mod route;

use crate::sync::lock;
use std::{
    convert::Infallible,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
};

use self::handshake::Rejection;
use crate::{
    channel::JoinError,
    limits::{ClientKey, caps::Slots},
    server::Shared,
    stats::{Handshake, Reason},
    ws::{deflate::negotiate::negotiate, encoder::Encoding, outbox, session::Session},
};

/// What the accept path learned about a connection, handed to its requests.
pub(crate) struct ClientConnection {
    /// The client's address: the TCP peer, or the PROXY header's source.
    pub(crate) addr: IpAddr,
    /// The peer is a trusted proxy that sent no PROXY header:
    /// `X-Forwarded-For` names the client, and its slot is still to take.
    pub(crate) forwarded: bool,
    /// The connection's cap slots, moved into the session on upgrade.
    pub(crate) slots: Mutex<Option<Slots>>,
}

/// Answers one request. Never fails: every refusal is a response.
pub(crate) async fn serve_request(
    mut request: Request<Incoming>,
    connection: Arc<ClientConnection>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = admit(&mut request, &connection, &shared).unwrap_or_else(|rejection| {
        // The path only: query strings may carry tokens.
        tracing::debug!(
            path = request.uri().path(),
            status = rejection.status.as_u16(),
            reason = rejection.reason,
            "request refused"
        );
        rejection.into_response()
    });
    let outcome = Handshake::answered(response.status());
    shared.counters.traffic.record_handshake(outcome);
    Ok(response)
}

fn admit(
    request: &mut Request<Incoming>,
    connection: &ClientConnection,
    shared: &Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let snapshot = shared.snapshot.load_full();
    let config = &snapshot.config;
    let client = match connection.forwarded {
        true => forwarded::forwarded_client(request.headers(), &config.server.trusted_proxies)
            .unwrap_or(connection.addr),
        false => connection.addr,
    };
    let key = ClientKey::new(client, config.admission.ipv6_prefix);
    if let Err(wait) = snapshot.handshakes.check(key) {
        shared.counters.record(Reason::RateLimit);
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many handshakes; retry later",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(seconds.max(1))));
    }
    let (channel, room) = snapshot.route(request.uri().path()).ok_or(Rejection::new(
        StatusCode::NOT_FOUND,
        "no channel at this path",
    ))?;
    if room.is_some_and(|name| !route::is_valid_room_name(name)) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "room names are 1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-'",
        ));
    }
    handshake::check_upgrade(request.method(), request.version(), request.headers())?;
    let config = channel.config();
    if !config.origins.allows(
        request
            .headers()
            .get(header::ORIGIN)
            .map(HeaderValue::as_bytes),
    ) {
        return Err(Rejection::new(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let subprotocol = handshake::select_subprotocol(request.headers(), &config.subprotocols);
    let deflate = negotiate(request.headers(), &config.compression);

    let unavailable = |reason| Rejection::new(StatusCode::SERVICE_UNAVAILABLE, reason);
    let mut slots = lock(&connection.slots)
        .take()
        .ok_or(unavailable("one WebSocket per connection"))?;
    if !slots.has_client() {
        let slot = shared
            .caps
            .acquire_client(key, snapshot.config.admission.max_connections_per_ip)
            .ok_or_else(|| {
                shared.counters.record(Reason::IpCap);
                unavailable("too many connections from this address")
            })?;
        slots.set_client(slot);
    }
    let (outbox, receiver) =
        outbox::channel(config.limits.send_buffer, config.limits.on_slow_consumer);
    let membership = channel
        .join(
            room,
            outbox.clone(),
            Encoding::negotiated(deflate.as_ref(), config.compression.mode),
        )
        .map_err(|error| {
            unavailable(match error {
                JoinError::RoomFull => "room is full",
                JoinError::TooManyRooms => "too many rooms",
                JoinError::ChannelFull => {
                    shared.counters.record(Reason::GlobalCap);
                    "channel is full"
                }
                JoinError::Closing => "channel is closing",
            })
        })?;
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut *request)
        .map_err(|_| Rejection::new(StatusCode::BAD_REQUEST, "malformed WebSocket upgrade"))?;
    let session = Session {
        membership,
        outbox,
        receiver,
        slots,
        deflate,
        hard_stop: shared.hard_stop.clone(),
    };
    shared.tasks.spawn(async move {
        match upgrade.await {
            Ok(websocket) => session.run(websocket.into_inner()).await,
            Err(error) => tracing::debug!(%error, "upgrade did not complete"),
        }
    });

    let (mut parts, _) = response.into_parts();
    if let Some(name) = subprotocol {
        let value =
            HeaderValue::from_str(name).expect("subprotocols are validated as header tokens");
        parts.headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    if let Some(agreement) = deflate {
        let value = HeaderValue::from_str(&agreement.response()).expect("the agreement is ASCII");
        parts
            .headers
            .insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
    }
    Ok(Response::from_parts(parts, Full::default()))
}
