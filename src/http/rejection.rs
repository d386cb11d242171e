//! Why a connection was not admitted, as one typed reason from which
//! everything else derives: the HTTP status (or none, for a socket closed
//! before its request), the plain-text body, the extra header the client
//! needs, the `wsedge_handshakes_total` label and the enforcement counter.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Response, StatusCode,
    header::{self, HeaderValue},
};

use super::route::ROOM_NAME_RULE;
use crate::{
    auth::AuthError,
    stats::{Counters, Handshake, Reason},
};

/// Why a request is not a well-formed WebSocket upgrade (RFC 6455 section 4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadUpgrade {
    /// Not a GET (405, with `Allow: GET`).
    Method,
    /// No `Upgrade: websocket` (426, with `Upgrade: websocket`).
    NotWebSocket,
    /// Not HTTP/1.1.
    Version,
    /// `Connection` does not include `Upgrade`.
    Connection,
    /// `Sec-WebSocket-Version` is not 13 (answered with the one we speak).
    WebSocketVersion,
    /// `Sec-WebSocket-Key` missing or not 16 base64-encoded bytes.
    Key,
    /// The request carries a body: whether its bytes are dropped or read as
    /// frames would depend on packet timing.
    Body,
    /// hyper could not take the connection over.
    Malformed,
}

/// One refused connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// `max_connections` reached at accept: closed without an answer.
    GlobalCap,
    /// `max_connections_per_ip` reached: closed at accept, or answered 503
    /// when a trusted proxy named the client.
    IpCap {
        /// The request was read (the client came through a trusted proxy).
        answered: bool,
    },
    /// The PROXY header, TLS handshake or request head took too long.
    Timeout,
    /// A PROXY header from an untrusted peer, or a malformed one.
    ProxyHeader,
    /// The TLS handshake failed.
    Tls,
    /// The client's `handshake_rate` was exceeded: on a TLS listener the
    /// socket is closed before the TLS handshake; elsewhere answered 429.
    RateLimited {
        /// When the client may try again.
        retry_after: Duration,
        /// Whether it is answered (no TLS stands between it and the client).
        answered: bool,
    },
    /// No channel at this path (404).
    NoChannel,
    /// The room segment is not a valid room name (400).
    BadRoomName,
    /// Not a well-formed upgrade.
    Upgrade(BadUpgrade),
    /// `Origin` not in the channel's allow-list (403).
    Origin,
    /// The room has `max_members` members (503).
    RoomFull,
    /// The channel has `max_rooms` rooms and this would be a new one (503).
    TooManyRooms,
    /// The channel has `max_connections` connections (503).
    ChannelFull,
    /// The channel is closing (removed by a reload, or shutdown) (503).
    Closing,
    /// Authentication failed: 401 (missing or refused credentials), 403
    /// (not permitted here) or 503 (a backend could not answer).
    Auth(AuthError),
}

impl Rejection {
    /// The answer's status; `None` when the socket is closed unanswered.
    pub(crate) fn status(self) -> Option<StatusCode> {
        Some(match self {
            Self::GlobalCap
            | Self::IpCap { answered: false }
            | Self::Timeout
            | Self::ProxyHeader
            | Self::Tls
            | Self::RateLimited {
                answered: false, ..
            } => return None,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NoChannel => StatusCode::NOT_FOUND,
            Self::BadRoomName => StatusCode::BAD_REQUEST,
            Self::Upgrade(BadUpgrade::Method) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Upgrade(BadUpgrade::NotWebSocket) => StatusCode::UPGRADE_REQUIRED,
            Self::Upgrade(_) => StatusCode::BAD_REQUEST,
            Self::Origin => StatusCode::FORBIDDEN,
            Self::IpCap { answered: true }
            | Self::RoomFull
            | Self::TooManyRooms
            | Self::ChannelFull
            | Self::Closing => StatusCode::SERVICE_UNAVAILABLE,
            Self::Auth(error) => error.status(),
        })
    }

    /// The plain-text explanation (never anything the client sent).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::GlobalCap => "too many connections",
            Self::IpCap { .. } => "too many connections from this address",
            Self::Timeout => "handshake timed out",
            Self::ProxyHeader => "bad or untrusted PROXY header",
            Self::Tls => "TLS handshake failed",
            Self::RateLimited { .. } => "too many handshakes; retry later",
            Self::NoChannel => "no channel at this path",
            Self::BadRoomName => ROOM_NAME_RULE,
            Self::Upgrade(bad) => match bad {
                BadUpgrade::Method => "only GET can open a WebSocket",
                BadUpgrade::NotWebSocket => "this path serves WebSocket connections only",
                BadUpgrade::Version => "a WebSocket upgrade needs HTTP/1.1",
                BadUpgrade::Connection => "the Connection header must include Upgrade",
                BadUpgrade::WebSocketVersion => {
                    "unsupported Sec-WebSocket-Version; this server speaks version 13"
                }
                BadUpgrade::Key => "missing or malformed Sec-WebSocket-Key",
                BadUpgrade::Body => "a WebSocket upgrade request must not have a body",
                BadUpgrade::Malformed => "malformed WebSocket upgrade",
            },
            Self::Origin => "origin not allowed",
            Self::RoomFull => "room is full",
            Self::TooManyRooms => "too many rooms",
            Self::ChannelFull => "channel is full",
            Self::Closing => "channel is closing",
            // The reason label, never the token or the user.
            Self::Auth(error) => match error.status() {
                StatusCode::FORBIDDEN => "not permitted on this channel",
                StatusCode::SERVICE_UNAVAILABLE => "authentication is unavailable; retry later",
                _ => "a valid token is required",
            },
        }
    }

    /// The `wsedge_handshakes_total` outcome.
    pub(crate) fn outcome(self) -> Handshake {
        match self {
            Self::GlobalCap => Handshake::GlobalCap,
            Self::IpCap { .. } => Handshake::IpCap,
            Self::Timeout => Handshake::Timeout,
            Self::ProxyHeader => Handshake::ProxyProtocol,
            Self::Tls => Handshake::Tls,
            Self::RateLimited { .. } => Handshake::RateLimit,
            Self::NoChannel => Handshake::NotFound,
            Self::BadRoomName => Handshake::BadRequest,
            Self::Upgrade(BadUpgrade::Method) => Handshake::MethodNotAllowed,
            Self::Upgrade(BadUpgrade::NotWebSocket) => Handshake::UpgradeRequired,
            Self::Upgrade(_) => Handshake::BadRequest,
            Self::Origin => Handshake::Forbidden,
            Self::RoomFull => Handshake::RoomFull,
            Self::TooManyRooms => Handshake::TooManyRooms,
            Self::ChannelFull => Handshake::ChannelFull,
            Self::Closing => Handshake::Closing,
            Self::Auth(error) => match error.status() {
                StatusCode::FORBIDDEN => Handshake::AuthForbidden,
                StatusCode::SERVICE_UNAVAILABLE => Handshake::AuthUnavailable,
                _ => Handshake::Unauthorized,
            },
        }
    }

    /// The enforcement counter it bumps, for refusals that enforce a limit
    /// (a bad PROXY header counts as a protocol violation, like a bad frame).
    pub(crate) fn enforced(self) -> Option<Reason> {
        match self {
            Self::GlobalCap | Self::ChannelFull => Some(Reason::GlobalCap),
            Self::IpCap { .. } => Some(Reason::IpCap),
            Self::Timeout => Some(Reason::Timeout),
            Self::ProxyHeader => Some(Reason::Protocol),
            Self::RateLimited { .. } => Some(Reason::RateLimit),
            _ => None,
        }
    }

    /// Counts it (handshake outcome and enforcement) and logs it without
    /// secrets: the span carries the peer, the caller the path.
    pub(crate) fn record(self, counters: &Counters) {
        if let Some(reason) = self.enforced() {
            counters.record(reason);
        }
        counters.traffic.record_handshake(self.outcome());
        tracing::debug!(
            status = self.status().map(|status| status.as_u16()),
            reason = self.reason(),
            "connection refused"
        );
    }

    /// The HTTP answer. Every refusal closes the connection: a refused
    /// client reconnects afresh.
    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(format!("{}\n", self.reason()))));
        *response.status_mut() = self.status().unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        match self {
            Self::RateLimited { retry_after, .. } => {
                // Whole seconds, rounded up, at least one.
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            Self::Upgrade(BadUpgrade::Method) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            Self::Upgrade(BadUpgrade::NotWebSocket) => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            Self::Upgrade(BadUpgrade::WebSocketVersion) => {
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answered_rejection_has_its_own_label_and_status() {
        let cases = [
            (Rejection::NoChannel, 404, "not_found"),
            (Rejection::BadRoomName, 400, "bad_request"),
            (
                Rejection::Upgrade(BadUpgrade::Method),
                405,
                "method_not_allowed",
            ),
            (
                Rejection::Upgrade(BadUpgrade::NotWebSocket),
                426,
                "upgrade_required",
            ),
            (Rejection::Upgrade(BadUpgrade::Body), 400, "bad_request"),
            (Rejection::Origin, 403, "forbidden_origin"),
            (
                Rejection::RateLimited {
                    retry_after: Duration::from_millis(1500),
                    answered: true,
                },
                429,
                "rate_limit",
            ),
            (Rejection::IpCap { answered: true }, 503, "ip_cap"),
            (Rejection::RoomFull, 503, "room_full"),
            (Rejection::TooManyRooms, 503, "too_many_rooms"),
            (Rejection::ChannelFull, 503, "channel_full"),
            (Rejection::Closing, 503, "closing"),
            (Rejection::Auth(AuthError::Missing), 401, "unauthorized"),
            (Rejection::Auth(AuthError::Forbidden), 403, "forbidden"),
        ];
        for (rejection, status, label) in cases {
            assert_eq!(
                rejection.status().map(|s| s.as_u16()),
                Some(status),
                "{rejection:?}"
            );
            assert_eq!(
                rejection.outcome().labels(),
                ("rejected", label),
                "{rejection:?}"
            );
            let response = rejection.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[header::CONNECTION], "close");
        }
    }

    #[test]
    fn refusals_before_the_request_have_no_answer() {
        for rejection in [
            Rejection::GlobalCap,
            Rejection::IpCap { answered: false },
            Rejection::Timeout,
            Rejection::ProxyHeader,
            Rejection::Tls,
            Rejection::RateLimited {
                retry_after: Duration::from_secs(1),
                answered: false,
            },
        ] {
            assert_eq!(rejection.status(), None, "{rejection:?}");
        }
        assert_eq!(Rejection::ProxyHeader.enforced(), Some(Reason::Protocol));
        assert_eq!(Rejection::ProxyHeader.outcome(), Handshake::ProxyProtocol);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        for (wait, expected) in [(0, "1"), (200, "1"), (1000, "1"), (1001, "2"), (2500, "3")] {
            let rejection = Rejection::RateLimited {
                retry_after: Duration::from_millis(wait),
                answered: true,
            };
            let response = rejection.into_response();
            assert_eq!(
                response.headers()[header::RETRY_AFTER],
                expected,
                "{wait} ms"
            );
        }
    }
}
