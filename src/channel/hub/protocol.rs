//! The hub channel's JSON protocol: what a client may send, and the exact
//! text of every answer and delivery. Pure functions with table tests; the
//! hub applies them.
//!
//! Client to server (text frames, one JSON object each; unknown fields are
//! ignored so that clients can grow):
//!
//! | `type` | fields | answer |
//! |---|---|---|
//! | `join` | `room` | `{"type":"joined","room":...}` |
//! | `leave` | `room` | `{"type":"left","room":...}` |
//! | `message` | `room`, `payload` (any JSON) | delivered to the room's members as `{"type":"message","room":...,"from":...,"payload":...}`; with an `id`, answered `{"type":"ack","delivered":n}` |
//! | `dm` | `to` (a user id), `payload` | delivered to every connection of that user on the channel as `{"type":"dm","from":...,"payload":...}`; with an `id`, answered `{"type":"ack","delivered":n}` |
//!
//! Every message may carry an `id` (a string or a number, at most
//! [`MAX_ID_LEN`] bytes of JSON), echoed as `replyTo` in its answer, errors
//! included. `from` is always the sender's identity as the server knows it,
//! never anything the client wrote. Errors are answers, not closes:
//! `{"type":"error","code":...,"message":...,"replyTo":...}` with the codes
//! of [`ErrorCode`].

use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest `id` a client may attach, as JSON text: enough for a UUID or a
/// counter, short enough that echoing it costs nothing.
pub(crate) const MAX_ID_LEN: usize = 128;

/// A request from a client, validated.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    /// Join a room.
    Join { room: &'a str },
    /// Leave a room.
    Leave { room: &'a str },
    /// Send `payload` (JSON text) to a joined room.
    Message { room: &'a str, payload: &'a str },
    /// Send `payload` to every connection of user `to`.
    Direct { to: &'a str, payload: &'a str },
}

/// Why a request was refused: the `code` of the error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    /// Not a JSON object (or not text at all).
    BadJson,
    /// A `type` the protocol does not have.
    UnknownType,
    /// A field missing or of the wrong type.
    BadRequest,
    /// The room name breaks the room-name rules.
    BadRoom,
    /// The connection's identity may not join this room, publish to it, or
    /// send direct messages on this channel.
    Forbidden,
    /// The connection is in `max_rooms_per_connection` rooms already.
    TooManyRooms,
    /// The room has `max_members` members.
    RoomFull,
    /// The channel has `max_rooms` rooms and this would be a new one.
    ChannelFull,
    /// A message to a room the connection has not joined.
    NotJoined,
    /// A `dm` on a channel where connections have no identity.
    NoIdentity,
}

impl ErrorCode {
    /// The `code` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::UnknownType => "unknown_type",
            Self::BadRequest => "bad_request",
            Self::BadRoom => "bad_room",
            Self::Forbidden => "forbidden",
            Self::TooManyRooms => "too_many_rooms",
            Self::RoomFull => "room_full",
            Self::ChannelFull => "channel_full",
            Self::NotJoined => "not_joined",
            Self::NoIdentity => "no_identity",
        }
    }

    /// The human-readable `message` field.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::BadJson => "send one JSON object per text message",
            Self::UnknownType => "type is one of join, leave, message, dm",
            Self::BadRequest => "a required field is missing or has the wrong type",
            Self::BadRoom => crate::http::route::ROOM_NAME_RULE,
            Self::Forbidden => "not permitted",
            Self::TooManyRooms => "this connection is in as many rooms as it may be",
            Self::RoomFull => "room is full",
            Self::ChannelFull => "too many rooms",
            Self::NotJoined => "join the room first",
            Self::NoIdentity => "direct messages need an authenticated connection",
        }
    }
}

/// The fields any request may have; which are required depends on `type`.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    #[serde(borrow)]
    room: Option<&'a str>,
    #[serde(borrow)]
    to: Option<&'a str>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

/// A parsed request and its `id` (raw JSON, to echo as `replyTo`); or the
/// error and whatever `id` could be read.
pub(crate) type Parsed<'a> = Result<(Request<'a>, Option<&'a str>), (ErrorCode, Option<&'a str>)>;

/// Parses one text message. Anything that is not a JSON object of the
/// protocol's shape is `bad_json`, including room names or user ids written
/// with escapes (`"lob\u0062y"`): they are read without a copy, and no
/// valid one needs an escape.
pub(crate) fn parse(text: &str) -> Parsed<'_> {
    let fields: Fields<'_> = serde_json::from_str(text).map_err(|_| (ErrorCode::BadJson, None))?;
    let id = fields.id.map(RawValue::get).filter(|id| {
        id.len() <= MAX_ID_LEN
            && (id.starts_with('"') || id.starts_with(|c: char| c == '-' || c.is_ascii_digit()))
    });
    let fail = |code| Err((code, id));
    let Some(kind) = fields.kind else {
        return fail(ErrorCode::BadRequest);
    };
    let payload = fields.payload.map(RawValue::get);
    let request = match (kind, fields.room, fields.to, payload) {
        ("join", Some(room), _, _) => Request::Join { room },
        ("leave", Some(room), _, _) => Request::Leave { room },
        ("message", Some(room), _, Some(payload)) => Request::Message { room, payload },
        ("dm", _, Some(to), Some(payload)) => Request::Direct { to, payload },
        ("join" | "leave" | "message" | "dm", ..) => return fail(ErrorCode::BadRequest),
        _ => return fail(ErrorCode::UnknownType),
    };
    Ok((request, id))
}

/// A JSON string literal of `text`.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// `,"replyTo":id` when there is an id.
fn reply_to(id: Option<&str>) -> String {
    id.map_or(String::new(), |id| format!(",\"replyTo\":{id}"))
}

/// The answer to a join.
pub(crate) fn joined(room: &str, id: Option<&str>) -> String {
    format!(
        "{{\"type\":\"joined\",\"room\":{}{}}}",
        quoted(room),
        reply_to(id)
    )
}

/// The answer to a leave.
pub(crate) fn left(room: &str, id: Option<&str>) -> String {
    format!(
        "{{\"type\":\"left\",\"room\":{}{}}}",
        quoted(room),
        reply_to(id)
    )
}

/// The answer to a message or dm that carried an id.
pub(crate) fn ack(delivered: usize, id: &str) -> String {
    format!("{{\"type\":\"ack\",\"delivered\":{delivered},\"replyTo\":{id}}}")
}

/// An error answer.
pub(crate) fn error(code: ErrorCode, id: Option<&str>) -> String {
    format!(
        "{{\"type\":\"error\",\"code\":\"{}\",\"message\":{}{}}}",
        code.as_str(),
        quoted(code.message()),
        reply_to(id)
    )
}

/// A room message as its members receive it, stamped with the sender
/// (`null` for a connection without identity).
pub(crate) fn room_message(room: &str, from: Option<&str>, payload: &str) -> String {
    format!(
        "{{\"type\":\"message\",\"room\":{},\"from\":{},\"payload\":{payload}}}",
        quoted(room),
        from.map_or_else(|| "null".to_owned(), quoted)
    )
}

/// A direct message as its recipient receives it, stamped with the sender.
pub(crate) fn direct_message(from: &str, payload: &str) -> String {
    format!(
        "{{\"type\":\"dm\",\"from\":{},\"payload\":{payload}}}",
        quoted(from)
    )
}

/// A presence notice: `user`'s first connection joined `room`, or its last left.
pub(crate) fn presence(event: PresenceEvent, room: &str, user: &str) -> String {
    format!(
        "{{\"type\":\"presence\",\"event\":\"{}\",\"room\":{},\"user\":{}}}",
        event.as_str(),
        quoted(room),
        quoted(user)
    )
}

/// The notice that stands for many changes of one room at once.
pub(crate) fn presence_summary(room: &str, joined: usize, left: usize) -> String {
    format!(
        "{{\"type\":\"presence\",\"event\":\"changed\",\"room\":{},\"joined\":{joined},\"left\":{left}}}",
        quoted(room)
    )
}

/// What a presence notice says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PresenceEvent {
    /// A user's first connection arrived.
    Join,
    /// A user's last connection left.
    Leave,
}

impl PresenceEvent {
    fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_or_name_their_error() {
        use ErrorCode::*;
        let cases: [(&str, Parsed<'_>); 14] = [
            (
                r#"{"type":"join","room":"lobby"}"#,
                Ok((Request::Join { room: "lobby" }, None)),
            ),
            (
                r#"{"type":"leave","room":"lobby","id":7}"#,
                Ok((Request::Leave { room: "lobby" }, Some("7"))),
            ),
            (
                r#"{"type":"message","room":"lobby","payload":{"text":"hi"},"id":"a1"}"#,
                Ok((
                    Request::Message {
                        room: "lobby",
                        payload: r#"{"text":"hi"}"#,
                    },
                    Some(r#""a1""#),
                )),
            ),
            (
                r#"{"type":"dm","to":"u2","payload":[1, 2],"extra":true}"#,
                Ok((
                    Request::Direct {
                        to: "u2",
                        payload: "[1, 2]",
                    },
                    None,
                )),
            ),
            ("not json", Err((BadJson, None))),
            ("[1,2]", Err((BadJson, None))),
            (r#"{"room":"lobby"}"#, Err((BadRequest, None))),
            (r#"{"type":"join","id":1}"#, Err((BadRequest, Some("1")))),
            (
                r#"{"type":"message","room":"lobby","id":2}"#,
                Err((BadRequest, Some("2"))),
            ),
            (r#"{"type":"dm","payload":1}"#, Err((BadRequest, None))),
            (
                r#"{"type":"shout","id":"x"}"#,
                Err((UnknownType, Some(r#""x""#))),
            ),
            (r#"{"type":"join","room":7}"#, Err((BadJson, None))),
            // An id that is an object, or too long, is not echoed.
            (r#"{"type":"bogus","id":{"a":1}}"#, Err((UnknownType, None))),
            (
                &format!(r#"{{"type":"bogus","id":"{}"}}"#, "x".repeat(MAX_ID_LEN)),
                Err((UnknownType, None)),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), expected, "{text}");
        }
    }

    #[test]
    fn answers_are_exact_json() {
        assert_eq!(joined("lobby", None), r#"{"type":"joined","room":"lobby"}"#);
        assert_eq!(
            left("a\"b", Some("3")),
            r#"{"type":"left","room":"a\"b","replyTo":3}"#
        );
        assert_eq!(
            ack(2, r#""m1""#),
            r#"{"type":"ack","delivered":2,"replyTo":"m1"}"#
        );
        assert_eq!(
            error(ErrorCode::NotJoined, Some("9")),
            r#"{"type":"error","code":"not_joined","message":"join the room first","replyTo":9}"#
        );
        assert_eq!(
            room_message("lobby", Some("u1"), r#"{"t":1}"#),
            r#"{"type":"message","room":"lobby","from":"u1","payload":{"t":1}}"#
        );
        assert_eq!(
            direct_message("u1", "\"hi\""),
            r#"{"type":"dm","from":"u1","payload":"hi"}"#
        );
        assert_eq!(
            room_message("lobby", None, "1"),
            r#"{"type":"message","room":"lobby","from":null,"payload":1}"#
        );
        assert_eq!(
            presence_summary("lobby", 40, 2),
            r#"{"type":"presence","event":"changed","room":"lobby","joined":40,"left":2}"#
        );
        assert_eq!(
            presence(PresenceEvent::Leave, "lobby", "u1"),
            r#"{"type":"presence","event":"leave","room":"lobby","user":"u1"}"#
        );
        for text in [joined("x", Some("1")), error(ErrorCode::BadJson, None)] {
            serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
        }
    }
}
