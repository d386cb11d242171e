//! The hyper service: admission of one HTTP request, in the order DESIGN.md
//! section 1 gives, ending in a 101 and a spawned session or in a short
//! plain-text refusal.

pub(crate) mod handshake;
pub mod origin;
pub mod route;

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
};

use self::handshake::Rejection;
use crate::{channel::JoinError, server::Shared, ws::outbox, ws::session::Session};

/// Answers one request. Never fails: every refusal is a response.
pub(crate) async fn serve_request(mut request: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(admit(&mut request, &shared).unwrap_or_else(|rejection| {
        // The path only: query strings may carry tokens.
        tracing::debug!(path = request.uri().path(), status = rejection.status.as_u16(), reason = rejection.reason, "request refused");
        rejection.into_response()
    }))
}

fn admit(request: &mut Request<Incoming>, shared: &Arc<Shared>) -> Result<Response<Full<Bytes>>, Rejection> {
    let snapshot = shared.snapshot.load_full();
    let (channel, room) = snapshot
        .route(request.uri().path())
        .ok_or(Rejection::new(StatusCode::NOT_FOUND, "no channel at this path"))?;
    if room.is_some_and(|name| !route::is_valid_room_name(name)) {
        return Err(Rejection::new(StatusCode::BAD_REQUEST, "room names are 1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-'"));
    }
    handshake::check_upgrade(request.method(), request.version(), request.headers())?;
    let config = &channel.config;
    if !config.origins.allows(request.headers().get(header::ORIGIN).map(HeaderValue::as_bytes)) {
        return Err(Rejection::new(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let subprotocol = handshake::select_subprotocol(request.headers(), &config.subprotocols);

    let (outbox, receiver) = outbox::channel(config.limits.send_buffer);
    let membership = channel.join(room, outbox.clone()).map_err(|error| {
        let reason = match error {
            JoinError::RoomFull => "room is full",
            JoinError::TooManyRooms => "too many rooms",
            JoinError::Closing => "channel is closing",
        };
        Rejection::new(StatusCode::SERVICE_UNAVAILABLE, reason)
    })?;
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut *request)
        .map_err(|_| Rejection::new(StatusCode::BAD_REQUEST, "malformed WebSocket upgrade"))?;
    let session = Session { membership, outbox, receiver };
    shared.tasks.spawn(async move {
        match upgrade.await {
            Ok(websocket) => session.run(websocket.into_inner()).await,
            Err(error) => tracing::debug!(%error, "upgrade did not complete"),
        }
    });

    let (mut parts, _) = response.into_parts();
    if let Some(name) = subprotocol {
        let value = HeaderValue::from_str(name).expect("subprotocols are validated as header tokens");
        parts.headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    Ok(Response::from_parts(parts, Full::default()))
}
