//! The token-protected operations: `POST /publish/{channel}[/{room}]` and
//! `GET /channels`, and the bearer token check in front of them.
//!
//! The parsing (token, path, content type) is pure and table-tested; the
//! handlers go through [`Handle`]: the same publish path as
//! [`Handle::publish`] and the same statistics as [`Handle::stats`].

use std::time::Duration;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::{
    HeaderMap, Request, StatusCode,
    body::{Body, Incoming},
    header::{self, HeaderValue},
};
use serde_json::{Value, json};

use super::{Reply, reply, text};
use crate::{
    channel::PublishError, config::AdminToken, message::Message, server::handle::Handle,
    stats::Stats,
};

/// How long a publisher has to send its body once the headers are in: a
/// backend on the same network sends a message in milliseconds.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks `Authorization: Bearer <token>` against the configured token in
/// constant time; the error is the 401's explanation. Without a configured
/// token every request is refused.
pub(super) fn authorize(
    headers: &HeaderMap,
    token: Option<&AdminToken>,
) -> Result<(), &'static str> {
    let Some(token) = token else {
        return Err("no admin token is configured; set [admin] token_file to use this endpoint");
    };
    match headers.get(header::AUTHORIZATION).and_then(bearer) {
        Some(presented) if token.matches(presented) => Ok(()),
        _ => Err("a valid bearer token is required"),
    }
}

/// The 401 answer, with the challenge RFC 6750 asks for.
pub(super) fn unauthorized(why: &str) -> Reply {
    let mut answer = text(StatusCode::UNAUTHORIZED, why);
    answer.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"wsedge\""),
    );
    answer
}

/// The credentials of a `Bearer` authorization (RFC 6750 section 2.1; the
/// scheme is case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let value = value.as_bytes();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let credentials = rest.trim_ascii();
    (!credentials.is_empty()).then_some(credentials)
}

/// The channel and room of a publish path: `/publish/{channel}` or
/// `/publish/{channel}/{room}`, no empty segment.
pub(super) fn publish_target(path: &str) -> Option<(&str, Option<&str>)> {
    let rest = path.strip_prefix("/publish/")?;
    let mut segments = rest.split('/');
    let channel = segments.next().filter(|s| !s.is_empty())?;
    let room = match segments.next() {
        None => None,
        Some(room) if !room.is_empty() => Some(room),
        Some(_) => return None,
    };
    segments.next().is_none().then_some((channel, room))
}

/// Whether the body is text: a `text/*` media type, parameters aside.
fn is_text(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .and_then(|media| media.trim().split_once('/'))
        .is_some_and(|(kind, _)| kind.eq_ignore_ascii_case("text"))
}

/// Publishes the request body to the channel (and room) the path names,
/// through [`Handle`]'s publish path. Everything that can be refused
/// without the body is refused before it is read; a body over the
/// channel's `max_payload` is never buffered whole.
pub(super) async fn publish(handle: &Handle, request: Request<Incoming>) -> Reply {
    let (request, body) = request.into_parts();
    // hyper drains an unread body that is already buffered and otherwise
    // closes the connection: early refusals cost no upload.
    let admin = handle.admin_settings();
    if let Err(why) = authorize(
        &request.headers,
        admin.as_ref().and_then(|a| a.token.as_ref()),
    ) {
        return unauthorized(why);
    }
    let Some((name, room)) = publish_target(request.uri.path()) else {
        return text(
            StatusCode::NOT_FOUND,
            "publish to /publish/{channel} or /publish/{channel}/{room}",
        );
    };
    let target = match handle.publisher(name, room) {
        Ok(target) => target,
        Err(error) => return refused(&error),
    };
    let message = match read_message(&request.headers, body, target.max_payload()).await {
        Ok(message) => message,
        Err(answer) => return answer,
    };
    match target.publish(&message) {
        Ok(delivered) => reply(StatusCode::OK, json!({ "delivered": delivered })),
        Err(error) => refused(&error),
    }
}

/// Reads a publish body of at most `limit` bytes as a message: text for a
/// `text/*` content type (which must then be UTF-8), binary otherwise. A
/// body announced larger than the limit is refused before it is read, and
/// one that grows past it is never buffered whole.
pub(super) async fn read_message(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Message, Reply> {
    let too_large = || {
        let why = format!("the body exceeds the channel's max_payload of {limit} bytes");
        text(StatusCode::PAYLOAD_TOO_LARGE, &why)
    };
    if body
        .size_hint()
        .exact()
        .is_some_and(|size| size > limit as u64)
    {
        return Err(too_large());
    }
    let text_body = is_text(headers.get(header::CONTENT_TYPE));
    let body = Limited::new(body, limit);
    let body = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<LengthLimitError>() => return Err(too_large()),
        Ok(Err(_)) => return Err(text(StatusCode::BAD_REQUEST, "could not read the body")),
        Err(_) => {
            return Err(text(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            ));
        }
    };
    if !text_body {
        return Ok(Message::binary(body));
    }
    String::from_utf8(Vec::from(body))
        .map(Message::text)
        .map_err(|_| {
            text(
                StatusCode::BAD_REQUEST,
                "a text/* body must be UTF-8; send other content types as binary",
            )
        })
}

/// The answer to a publish the channel refused: the status its reason
/// calls for, and the error's own text.
pub(super) fn refused(error: &PublishError) -> Reply {
    let status = match error {
        PublishError::UnknownChannel(_) => StatusCode::NOT_FOUND,
        PublishError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        PublishError::NotPublishable(_)
        | PublishError::RoomMismatch { .. }
        | PublishError::BadRoomName
        | PublishError::NotJson => StatusCode::BAD_REQUEST,
        PublishError::ClientsMayNotPublish | PublishError::Forbidden => StatusCode::FORBIDDEN,
    };
    text(status, &error.to_string())
}

/// The `/channels` document: every channel with its rooms, and the global
/// counters.
pub(super) fn channels(stats: &Stats) -> Value {
    let traffic = &stats.traffic;
    json!({
        "channels": stats.channels.iter().map(|channel| json!({
            "name": channel.name,
            "kind": channel.kind.as_str(),
            "connections": channel.connections,
            "rooms": channel.rooms,
        })).collect::<Vec<_>>(),
        "connections": stats.connections,
        "clients": stats.clients,
        "handshake_clients": stats.handshake_clients,
        "users": stats.users,
        "messages_received": stats.messages_received,
        "messages_delivered": stats.messages_delivered,
        "messages_dropped": stats.messages_dropped,
        "compressions": stats.compressions,
        "compressed_from": stats.compressed_from,
        "compressed_to": stats.compressed_to,
        "enforced": stats.enforced,
        "generation": stats.generation,
        "last_reload_successful": stats.last_reload_successful,
        "last_reload_success_unix": stats.last_reload_success_unix,
        "reload_failures": stats.reload_failures,
        "connections_accepted": traffic.connections_accepted,
        "handshakes": traffic.handshakes.iter().map(|(&(result, reason), &count)| {
            json!({ "result": result, "reason": reason, "count": count })
        }).collect::<Vec<_>>(),
        "disconnects": traffic.disconnects.iter().map(|(&(code, initiator), &count)| {
            json!({ "code": code, "initiator": initiator, "count": count })
        }).collect::<Vec<_>>(),
        "messages_received_by_kind": traffic.messages_received,
        "messages_sent_by_kind": traffic.messages_sent,
        "payload_bytes_received": traffic.payload_bytes_received,
        "payload_bytes_sent": traffic.payload_bytes_sent,
        "wire_bytes_received": traffic.wire_bytes_received,
        "wire_bytes_sent": traffic.wire_bytes_sent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials() {
        let cases: [(&str, Option<&[u8]>); 8] = [
            ("Bearer abc", Some(b"abc")),
            ("bearer abc", Some(b"abc")),
            ("BEARER   abc  ", Some(b"abc")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearerabc", None),
            ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                bearer(&HeaderValue::from_str(value).unwrap()),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn token_check() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let config = crate::Config::from_toml_str(&format!(
            "[server]\nplain = [\"127.0.0.1:0\"]\n[admin]\ntoken_file = {:?}\n\n[[channel]]\nname = \"e\"\npath = \"/e\"\nkind = \"echo\"\n",
            file.display().to_string()
        ))
        .unwrap();
        let token = config.admin.unwrap().token.unwrap();
        let headers = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            }
            headers
        };
        assert!(authorize(&headers(Some("Bearer s3cret")), Some(&token)).is_ok());
        for refused in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
        ] {
            let why = authorize(&headers(refused), Some(&token)).unwrap_err();
            assert!(why.contains("bearer token"), "{refused:?}: {why}");
        }
        let why = authorize(&headers(Some("Bearer s3cret")), None).unwrap_err();
        assert!(why.contains("no admin token"), "{why}");
        let answer = unauthorized(why);
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        assert!(
            answer.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }

    #[test]
    fn publish_paths() {
        let cases = [
            ("/publish/news", Some(("news", None))),
            ("/publish/chat/lobby", Some(("chat", Some("lobby")))),
            ("/publish/", None),
            ("/publish", None),
            ("/publish//lobby", None),
            ("/publish/chat/", None),
            ("/publish/chat/lobby/x", None),
            ("/other/news", None),
        ];
        for (path, expected) in cases {
            assert_eq!(publish_target(path), expected, "{path}");
        }
    }

    #[test]
    fn text_content_types() {
        let cases = [
            (Some("text/plain"), true),
            (Some("text/plain; charset=utf-8"), true),
            (Some("TEXT/Markdown"), true),
            (Some("application/json"), false),
            (Some("application/octet-stream"), false),
            (Some("text"), false),
            (None, false),
        ];
        for (value, expected) in cases {
            let value = value.map(|v| HeaderValue::from_str(v).unwrap());
            assert_eq!(is_text(value.as_ref()), expected, "{value:?}");
        }
    }
}
