//! Traffic counters behind the admin metrics: accepted connections,
//! handshake outcomes, disconnects, messages and bytes.
//!
//! Every label is a `&'static str` from a closed set (enums, and close codes
//! folded into at most [`CLOSE_CODE_LABELS`] values), so no client can grow
//! the number of series, and nothing is labelled per address, user or room.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use super::striped::Striped;
use crate::{config::ChannelKind, protocol::close};

/// How one WebSocket handshake ended: the `result` and `reason` labels of
/// `wsedge_handshakes_total`. Admission's typed rejection names the one that
/// applies; nothing is inferred back from an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// Answered 101 Switching Protocols.
    Accepted,
    /// `max_connections_per_ip` reached (closed at accept, or 503 for a
    /// client named by `X-Forwarded-For`).
    IpCap,
    /// Closed at accept: `max_connections`.
    GlobalCap,
    /// The PROXY header, TLS handshake or HTTP request took too long.
    Timeout,
    /// A PROXY header from an untrusted peer, or a malformed one.
    ProxyProtocol,
    /// The TLS handshake failed.
    Tls,
    /// Answered 400 (malformed upgrade, bad room name...).
    BadRequest,
    /// Answered 403: origin not allowed.
    Forbidden,
    /// Answered 404: no channel at this path.
    NotFound,
    /// Answered 405: not a GET.
    MethodNotAllowed,
    /// Answered 426: a plain request on a WebSocket path.
    UpgradeRequired,
    /// Answered 429: handshake rate.
    RateLimit,
    /// Answered 503: the room has `max_members` members.
    RoomFull,
    /// Answered 503: the channel has `max_rooms` rooms.
    TooManyRooms,
    /// Answered 503: the channel has `max_connections` connections.
    ChannelFull,
    /// Answered 503: the server is shutting down or the channel closing.
    Closing,
    /// Answered 401: no valid credentials.
    Unauthorized,
    /// Answered 403: credentials without the permission for this channel.
    AuthForbidden,
    /// Answered 503: the webhook or the JWKS endpoint could not answer.
    AuthUnavailable,
}

impl Handshake {
    pub(crate) const ALL: [Self; 19] = [
        Self::Accepted,
        Self::IpCap,
        Self::GlobalCap,
        Self::Timeout,
        Self::ProxyProtocol,
        Self::Tls,
        Self::BadRequest,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::UpgradeRequired,
        Self::RateLimit,
        Self::RoomFull,
        Self::TooManyRooms,
        Self::ChannelFull,
        Self::Closing,
        Self::Unauthorized,
        Self::AuthForbidden,
        Self::AuthUnavailable,
    ];

    /// The `result` and `reason` labels.
    pub(crate) fn labels(self) -> (&'static str, &'static str) {
        let rejected = |reason| ("rejected", reason);
        match self {
            Self::Accepted => ("accepted", "none"),
            Self::IpCap => rejected("ip_cap"),
            Self::GlobalCap => rejected("global_cap"),
            Self::Timeout => rejected("timeout"),
            Self::ProxyProtocol => rejected("proxy_protocol"),
            Self::Tls => rejected("tls"),
            Self::BadRequest => rejected("bad_request"),
            Self::Forbidden => rejected("forbidden_origin"),
            Self::NotFound => rejected("not_found"),
            Self::MethodNotAllowed => rejected("method_not_allowed"),
            Self::UpgradeRequired => rejected("upgrade_required"),
            Self::RateLimit => rejected("rate_limit"),
            Self::RoomFull => rejected("room_full"),
            Self::TooManyRooms => rejected("too_many_rooms"),
            Self::ChannelFull => rejected("channel_full"),
            Self::Closing => rejected("closing"),
            Self::Unauthorized => rejected("unauthorized"),
            Self::AuthForbidden => rejected("forbidden"),
            Self::AuthUnavailable => rejected("auth_unavailable"),
        }
    }
}

/// Who started the close handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Initiator {
    /// A limit, a protocol error, a slow consumer, shutdown...
    Server,
    /// The client's close frame, or the client vanishing (1006).
    Client,
}

impl Initiator {
    const ALL: [Self; 2] = [Self::Server, Self::Client];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// The `code` label values: the codes RFC 6455 and its registry define,
/// then one value per application range and one for anything else.
pub(crate) const CLOSE_CODE_LABELS: [&str; 19] = [
    "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1011",
    "1012", "1013", "1014", "1015", "3xxx", "4xxx", "other",
];

/// The index in [`CLOSE_CODE_LABELS`] of a close frame's code; `None` (a
/// close frame without a code) is 1005, "no status received".
fn close_code_index(code: Option<u16>) -> usize {
    match code.unwrap_or(close::NO_STATUS) {
        code @ 1000..=1015 => usize::from(code - 1000),
        3000..=3999 => 16,
        4000..=4999 => 17,
        _ => 18,
    }
}

const KINDS: [ChannelKind; 4] = [
    ChannelKind::Echo,
    ChannelKind::Broadcast,
    ChannelKind::Room,
    ChannelKind::Hub,
];

fn kind_index(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Echo => 0,
        ChannelKind::Broadcast => 1,
        ChannelKind::Room => 2,
        ChannelKind::Hub => 3,
    }
}

/// Where each counter of [`TrafficCounters::hot`] is.
const WIRE_RECEIVED: usize = 0;
const WIRE_SENT: usize = 1;
const PAYLOAD_RECEIVED: usize = 2;
const PAYLOAD_SENT: usize = 3;
/// Messages received, by channel kind ([`kind_index`]).
const RECEIVED: usize = 4;
/// Messages sent, by channel kind.
const SENT: usize = RECEIVED + KINDS.len();
const HOT: usize = SENT + KINDS.len();

/// The counters. Relaxed atomics, like the rest of `Counters`; those
/// bumped for every read, write or message striped by thread.
#[derive(Debug, Default)]
pub(crate) struct TrafficCounters {
    accepted: AtomicU64,
    handshakes: [AtomicU64; Handshake::ALL.len()],
    /// By initiator, then by close code label.
    disconnects: [[AtomicU64; CLOSE_CODE_LABELS.len()]; Initiator::ALL.len()],
    /// Messages and bytes, received and sent.
    hot: Striped<HOT>,
}

impl TrafficCounters {
    /// A TCP connection accepted on a WebSocket listener.
    pub(crate) fn record_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_handshake(&self, outcome: Handshake) {
        self.handshakes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// An upgraded connection ended. `closed_by` is who queued the first
    /// close frame and its code; `None` means no close frame was exchanged
    /// (the peer vanished): 1006, counted as the client's.
    pub(crate) fn record_disconnect(&self, closed_by: Option<(Initiator, Option<u16>)>) {
        let (initiator, code) = closed_by.unwrap_or((Initiator::Client, Some(close::ABNORMAL)));
        self.disconnects[initiator as usize][close_code_index(code)]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A data message received from a client, `payload` bytes after inflating.
    pub(crate) fn record_received(&self, kind: ChannelKind, payload: usize) {
        self.hot.add(RECEIVED + kind_index(kind), 1);
        self.hot.add(PAYLOAD_RECEIVED, payload as u64);
    }

    /// A message of `payload` bytes queued for `recipients` connections.
    pub(crate) fn record_sent(&self, kind: ChannelKind, recipients: usize, payload: usize) {
        if recipients == 0 {
            return;
        }
        self.hot.add(SENT + kind_index(kind), recipients as u64);
        self.hot.add(PAYLOAD_SENT, (recipients * payload) as u64);
    }

    /// Bytes read from a client socket (TLS records and HTTP included).
    pub(crate) fn record_wire_received(&self, bytes: usize) {
        self.hot.add(WIRE_RECEIVED, bytes as u64);
    }

    /// Bytes written to a client socket.
    pub(crate) fn record_wire_sent(&self, bytes: usize) {
        self.hot.add(WIRE_SENT, bytes as u64);
    }

    pub(crate) fn snapshot(&self) -> Traffic {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let by_kind = |first: usize| {
            KINDS
                .iter()
                .map(|kind| (kind.as_str(), self.hot.get(first + kind_index(*kind))))
                .collect()
        };
        let mut disconnects = BTreeMap::new();
        for initiator in Initiator::ALL {
            for (index, code) in CLOSE_CODE_LABELS.iter().enumerate() {
                let count = load(&self.disconnects[initiator as usize][index]);
                if count > 0 {
                    disconnects.insert((*code, initiator.as_str()), count);
                }
            }
        }
        Traffic {
            connections_accepted: load(&self.accepted),
            handshakes: Handshake::ALL
                .iter()
                .map(|outcome| (outcome.labels(), load(&self.handshakes[*outcome as usize])))
                .collect(),
            disconnects,
            messages_received: by_kind(RECEIVED),
            messages_sent: by_kind(SENT),
            payload_bytes_received: self.hot.get(PAYLOAD_RECEIVED),
            payload_bytes_sent: self.hot.get(PAYLOAD_SENT),
            wire_bytes_received: self.hot.get(WIRE_RECEIVED),
            wire_bytes_sent: self.hot.get(WIRE_SENT),
        }
    }
}

/// Traffic since the server started, as [`Stats::traffic`](super::Stats::traffic) reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    /// TCP connections accepted on the WebSocket listeners (before any cap).
    pub connections_accepted: u64,
    /// Handshakes by `(result, reason)`: `("accepted", "none")`, or
    /// `("rejected", reason)` with reason one of `ip_cap`, `global_cap`,
    /// `timeout`, `proxy_protocol`, `tls` (closed without an answer) or
    /// `bad_request`, `forbidden_origin`, `not_found`, `method_not_allowed`,
    /// `upgrade_required`, `rate_limit`, `unavailable`, `other` (answered).
    /// Every pair is present, zero until it happens.
    pub handshakes: BTreeMap<(&'static str, &'static str), u64>,
    /// Ended WebSocket connections by `(code, initiator)`: the code of the
    /// first close frame ("1000" to "1015", "3xxx", "4xxx", "other"; "1006"
    /// when the connection ended without one), and who sent it ("server" or
    /// "client"). Only pairs that happened are present.
    pub disconnects: BTreeMap<(&'static str, &'static str), u64>,
    /// Data messages received from clients, by channel kind (every kind present).
    pub messages_received: BTreeMap<&'static str, u64>,
    /// Messages queued for clients (one per recipient), by channel kind.
    pub messages_sent: BTreeMap<&'static str, u64>,
    /// Payload bytes of the messages received (after inflating).
    pub payload_bytes_received: u64,
    /// Payload bytes of the messages sent, one copy per recipient (before compressing).
    pub payload_bytes_sent: u64,
    /// Bytes read from client sockets of the WebSocket listeners: TLS,
    /// HTTP, frame headers, control frames and compressed payloads included.
    pub wire_bytes_received: u64,
    /// Bytes written to those sockets.
    pub wire_bytes_sent: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_fold_into_a_bounded_set() {
        let cases = [
            (Some(1000), "1000"),
            (Some(1015), "1015"),
            (None, "1005"),
            (Some(1016), "other"),
            (Some(2999), "other"),
            (Some(3000), "3xxx"),
            (Some(3999), "3xxx"),
            (Some(4000), "4xxx"),
            (Some(4999), "4xxx"),
            (Some(5000), "other"),
            (Some(0), "other"),
            (Some(u16::MAX), "other"),
        ];
        for (code, label) in cases {
            assert_eq!(CLOSE_CODE_LABELS[close_code_index(code)], label, "{code:?}");
        }
    }

    #[test]
    fn every_handshake_outcome_has_distinct_labels() {
        let labels: std::collections::BTreeSet<_> =
            Handshake::ALL.iter().map(|h| h.labels()).collect();
        assert_eq!(labels.len(), Handshake::ALL.len());
        for (index, outcome) in Handshake::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, index, "ALL is in declaration order");
        }
    }

    #[test]
    fn snapshot_reports_what_was_recorded() {
        let counters = TrafficCounters::default();
        counters.record_accepted();
        counters.record_handshake(Handshake::Accepted);
        counters.record_disconnect(Some((Initiator::Client, Some(1000))));
        counters.record_disconnect(None);
        counters.record_received(ChannelKind::Room, 5);
        counters.record_sent(ChannelKind::Room, 3, 5);
        let traffic = counters.snapshot();
        assert_eq!(traffic.connections_accepted, 1);
        assert_eq!(traffic.handshakes[&("accepted", "none")], 1);
        assert_eq!(traffic.handshakes[&("rejected", "tls")], 0);
        assert_eq!(traffic.disconnects.len(), 2);
        assert_eq!(traffic.disconnects[&("1006", "client")], 1);
        assert_eq!(traffic.messages_received["room"], 1);
        assert_eq!(traffic.messages_received["echo"], 0);
        assert_eq!(traffic.messages_sent["room"], 3);
        assert_eq!(traffic.payload_bytes_sent, 15);
    }
}
