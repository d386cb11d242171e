//! The token-protected user and presence operations, over [`Handle`]:
//!
//! | path | method | body | answer |
//! |---|---|---|---|
//! | `/users/{user}/publish[/{channel}]` | POST | the message (like `/publish`) | `{"delivered": n}` |
//! | `/users/{user}/disconnect` | POST | JSON, all optional: `{"code": 4000, "reason": "...", "except": id}` | `{"closed": n}` |
//! | `/users/{user}/connections` | GET | | `{"user": u, "connections": [{"id", "channel", "room", "since_unix_ms"}]}` |
//! | `/presence/{channel}[/{room}]?after=&limit=` | GET | | `{"connections", "users", "list", "next", "scope"}`: `scope` is `"cluster"` when the counts cover every node, `"node"` when they cover this one (no `[cluster]`, or Redis did not answer) |
//!
//! Path segments are percent-decoded (user ids may hold any character).

use std::time::UNIX_EPOCH;

use http_body_util::{BodyExt, Limited};
use hyper::{Method, Request, StatusCode, body::Incoming};
use serde::Deserialize;
use serde_json::json;

use super::{
    Reply,
    api::{read_message, refused},
    method_not_allowed, reply, text,
};
use crate::server::handle::Handle;

/// The close code `disconnect` uses when the body names none: the first
/// of the private range, "closed by the application".
const DEFAULT_DISCONNECT_CODE: u16 = 4000;

/// Largest `disconnect` body: three small fields.
const MAX_DISCONNECT_BODY: usize = 1024;

/// User ids listed per presence page when the query names no `limit`.
const DEFAULT_PAGE: usize = 100;

/// Routes a `/users/...` or `/presence/...` request; `None` for other paths.
pub(super) async fn route(handle: &Handle, request: Request<Incoming>) -> Option<Reply> {
    let path = request.uri().path().to_owned();
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect::<Option<_>>()?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method().clone();
    let get = matches!(method, Method::GET | Method::HEAD);
    Some(match segments.as_slice() {
        ["users", user, "publish", rest @ ..] if rest.len() <= 1 && !user.is_empty() => {
            match method {
                Method::POST => publish(handle, request, user, rest.first().copied()).await,
                _ => method_not_allowed("POST"),
            }
        }
        ["users", user, "disconnect"] if !user.is_empty() => match method {
            Method::POST => disconnect(handle, request, user).await,
            _ => method_not_allowed("POST"),
        },
        ["users", user, "connections"] if !user.is_empty() => match get {
            true => connections(handle, user),
            false => method_not_allowed("GET, HEAD"),
        },
        ["presence", channel, rest @ ..] if rest.len() <= 1 && !channel.is_empty() => match get {
            true => {
                presence(
                    handle,
                    request.uri().query(),
                    channel,
                    rest.first().copied(),
                )
                .await
            }
            false => method_not_allowed("GET, HEAD"),
        },
        _ => return None,
    })
}

async fn publish(
    handle: &Handle,
    request: Request<Incoming>,
    user: &str,
    channel: Option<&str>,
) -> Reply {
    let (parts, body) = request.into_parts();
    let message = match read_message(&parts.headers, body, handle.default_max_payload()).await {
        Ok(message) => message,
        Err(answer) => return answer,
    };
    match handle.publish_to_user(user, channel, message) {
        Ok(delivered) => reply(StatusCode::OK, json!({ "delivered": delivered })),
        Err(error) => refused(&error),
    }
}

/// The `disconnect` body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Disconnect {
    code: Option<u16>,
    reason: Option<String>,
    except: Option<u64>,
}

async fn disconnect(handle: &Handle, request: Request<Incoming>, user: &str) -> Reply {
    let body = Limited::new(request.into_body(), MAX_DISCONNECT_BODY);
    let Ok(body) = body.collect().await.map(|collected| collected.to_bytes()) else {
        return text(StatusCode::BAD_REQUEST, "the body is at most 1 KiB of JSON");
    };
    let wanted: Disconnect = if body.is_empty() {
        Disconnect::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(wanted) => wanted,
            Err(error) => return text(StatusCode::BAD_REQUEST, &format!("bad JSON body: {error}")),
        }
    };
    let code = wanted.code.unwrap_or(DEFAULT_DISCONNECT_CODE);
    let reason = wanted.reason.unwrap_or_default();
    match handle.disconnect_user(user, wanted.except, code, &reason) {
        Ok(closed) => reply(StatusCode::OK, json!({ "closed": closed })),
        Err(error) => text(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}

fn connections(handle: &Handle, user: &str) -> Reply {
    let list: Vec<_> = handle
        .user_connections(user)
        .into_iter()
        .map(|info| {
            json!({
                "id": info.id,
                "channel": info.channel,
                "room": info.room,
                "since_unix_ms": info.since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()),
            })
        })
        .collect();
    reply(StatusCode::OK, json!({ "user": user, "connections": list }))
}

async fn presence(
    handle: &Handle,
    query: Option<&str>,
    channel: &str,
    room: Option<&str>,
) -> Reply {
    let mut after = None;
    let mut limit = DEFAULT_PAGE;
    for (key, value) in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('='))
    {
        match key {
            "after" => after = percent_decode(value),
            "limit" => match value.parse() {
                Ok(n) => limit = n,
                Err(_) => return text(StatusCode::BAD_REQUEST, "limit is a number of users"),
            },
            _ => {}
        }
    }
    match handle
        .presence(channel, room, after.as_deref(), limit)
        .await
    {
        Ok(page) => reply(
            StatusCode::OK,
            json!({
                "connections": page.connections,
                "users": page.users,
                "list": page.list,
                "next": page.next,
                "scope": if page.cluster { "cluster" } else { "node" },
            }),
        ),
        Err(error) => refused(&error),
    }
}

/// Decodes `%XX` escapes (and nothing else); `None` when they are malformed
/// or do not spell UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        let cases = [
            ("alice", Some("alice")),
            ("a%40b.c", Some("a@b.c")),
            ("%E2%9C%93", Some("✓")),
            ("100%", None),
            ("%zz", None),
            ("%FF", None),
        ];
        for (text, expected) in cases {
            assert_eq!(percent_decode(text).as_deref(), expected, "{text}");
        }
    }
}
