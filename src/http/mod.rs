//! Admission: the decision about one WebSocket upgrade request, made from
//! one configuration snapshot and nothing else. It joins nothing, spawns
//! nothing and takes no slot: [`admit`] returns everything the connection
//! will run with ([`Admitted`]) or a typed [`Rejection`], and the server's
//! connection owner acts on it.
//!
//! Order: who the client is (the PROXY source, else `X-Forwarded-For` from
//! a trusted proxy, else the peer) → handshake rate (429, unless the accept
//! path already counted this client: it does for every client the socket
//! identifies, before any TLS work) → route (404) →
//! room name (400) → upgrade checks (405, 426, 400) → `Origin` (403) →
//! subprotocol and permessage-deflate agreement. Capacity (full room,
//! channel or client) is decided where the slot is taken, atomically with
//! it, and reported with the same [`Rejection`] type.

mod forwarded;
pub(crate) mod handshake;
mod identify;
pub mod origin;
pub(crate) mod rejection;
pub mod route;

use std::{net::IpAddr, sync::Arc};

use hyper::{
    HeaderMap, Request,
    header::{self, HeaderValue},
};

pub(crate) use self::{
    identify::{Caller, identify},
    rejection::{BadUpgrade, Rejection},
};
use crate::{
    channel::Channel,
    config::ChannelConfig,
    limits::ClientKey,
    snapshot::Snapshot,
    ws::{
        deflate::negotiate::{Agreement, negotiate},
        encoder::Encoding,
    },
};

/// What the accept path learned about a connection before its request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// The client's address as the socket tells it: the PROXY header's
    /// source, or the TCP peer.
    pub(crate) addr: IpAddr,
    /// The address came from a PROXY header: `X-Forwarded-For` is never
    /// consulted then.
    pub(crate) from_proxy_header: bool,
    /// The client whose handshake the accept path already counted against
    /// `handshake_rate`, so that admission does not count it twice.
    pub(crate) counted: Option<ClientKey>,
}

/// An admitted request: everything its connection runs with, read from
/// one snapshot.
pub(crate) struct Admitted {
    /// The channel's live state, to join.
    pub(crate) channel: Arc<Channel>,
    /// The channel's policy as this snapshot has it: the connection's
    /// limits stay these for its whole life.
    pub(crate) config: Arc<ChannelConfig>,
    /// The room, for room channels.
    pub(crate) room: Option<String>,
    /// The client's address (after PROXY and `X-Forwarded-For`).
    pub(crate) client_ip: IpAddr,
    /// Who the client is, for its `max_connections_per_ip` slot.
    pub(crate) client: ClientKey,
    /// That cap, from the same snapshot.
    pub(crate) max_connections_per_ip: usize,
    /// The selected subprotocol, if any.
    pub(crate) subprotocol: Option<HeaderValue>,
    /// The permessage-deflate parameters, if agreed.
    pub(crate) deflate: Option<Agreement>,
    /// How the connection takes fan-out messages.
    pub(crate) encoding: Encoding,
    /// Who it is: filled in by [`identify`], which follows `admit`.
    pub(crate) caller: Caller,
}

impl Admitted {
    /// Adds what the 101 must say about the agreement to its headers.
    pub(crate) fn answer(&self, headers: &mut HeaderMap) {
        if let Some(name) = &self.subprotocol {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, name.clone());
        }
        if let Some(agreement) = &self.deflate {
            let value =
                HeaderValue::from_str(&agreement.response()).expect("the agreement is ASCII");
            headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
    }
}

/// Decides about one request, in the order the module documentation gives.
pub(crate) fn admit<B>(
    snapshot: &Snapshot,
    request: &Request<B>,
    peer: Peer,
) -> Result<Admitted, Rejection> {
    let config = &snapshot.config;
    // Whether to believe X-Forwarded-For is decided here, under the
    // snapshot that admits the request, not when the socket was accepted.
    let believe_forwarded = !peer.from_proxy_header
        && config
            .server
            .trusted_proxies
            .iter()
            .any(|cidr| cidr.contains(peer.addr));
    let client = match believe_forwarded {
        true => forwarded::forwarded_client(request.headers(), &config.server.trusted_proxies)
            .unwrap_or(peer.addr),
        false => peer.addr,
    };
    let client_ip = client;
    let client = ClientKey::new(client, config.admission.ipv6_prefix);
    if peer.counted != Some(client) {
        snapshot
            .handshakes
            .check(client)
            .map_err(|retry_after| Rejection::RateLimited {
                retry_after,
                answered: true,
            })?;
    }
    let (entry, room) = snapshot
        .route(request.uri().path())
        .ok_or(Rejection::NoChannel)?;
    if room.is_some_and(|name| !route::is_valid_room_name(name)) {
        return Err(Rejection::BadRoomName);
    }
    handshake::check_upgrade(request.method(), request.version(), request.headers())
        .map_err(Rejection::Upgrade)?;
    let channel = &entry.config;
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .map(HeaderValue::as_bytes);
    if !channel.origins.allows(origin) {
        return Err(Rejection::Origin);
    }
    let subprotocol =
        handshake::select_subprotocol(request.headers(), &channel.subprotocols).map(|name| {
            HeaderValue::from_str(name).expect("subprotocols are validated as header tokens")
        });
    let deflate = negotiate(request.headers(), &channel.compression);
    Ok(Admitted {
        channel: entry.live.clone(),
        config: entry.config.clone(),
        room: room.map(str::to_owned),
        client_ip,
        client,
        max_connections_per_ip: config.admission.max_connections_per_ip,
        subprotocol,
        encoding: Encoding::negotiated(deflate.as_ref(), channel.compression.mode),
        deflate,
        caller: Caller::Anonymous,
    })
}
