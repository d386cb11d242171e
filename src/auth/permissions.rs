//! Who a connection belongs to and where it may join and publish.
//!
//! A grant is a list of patterns, `CHANNEL` or `CHANNEL:ROOM`, where `*`
//! matches any run of characters (channel and room names have no `:` or
//! `*`): `chat` is every room of channel `chat` (and the channel itself when
//! it has no rooms), `chat:team-*` the rooms of `chat` whose name starts with
//! `team-`, `*` everything. In a token (or a webhook answer) a grant is a JSON
//! array of patterns or one string of space-separated patterns, like OAuth's
//! `scope`. A grant left out is [`AbsentGrants`]: nothing by default.
//!
//! A channel whose rooms belong to users ([`Rooms::PerUser`], an inbox at
//! `/inbox/{room}`) lets a user join exactly the room named after their id,
//! whatever the grants say, and nobody else's; publishing there also needs a
//! publish grant.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{error::Invalid, settings::AbsentGrants};

/// Most patterns one grant may list: enough for any real role, and a bound
/// on the work of every permission check.
pub(crate) const MAX_PATTERNS: usize = 256;

/// Longest pattern: a channel name, a colon and a room name with room to spare.
pub(crate) const MAX_PATTERN_LEN: usize = 200;

/// Longest user id: ids are names, emails, UUIDs or URIs.
pub(crate) const MAX_USER_LEN: usize = 256;

/// Who the rooms of a channel belong to: a per-channel setting, written
/// `rooms = "shared"` or `"per_user"` (the serde names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Rooms {
    /// Anyone the grants allow.
    Shared,
    /// Each room to the user whose id is the room's name.
    PerUser,
}

/// An authenticated connection's identity: from admission on, part of the
/// connection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Identity {
    /// The user id (the configured claim, `sub` by default).
    pub(crate) user: String,
    /// When the credentials stop being valid (the token's `exp` plus the
    /// leeway, or the webhook's `exp`): the connection is closed then unless
    /// refreshed. `None`: never.
    pub(crate) expires_at: Option<SystemTime>,
    /// Where it may join and publish.
    pub(crate) permissions: Permissions,
}

impl Identity {
    /// Whether the identity may join `channel` (and `room`, on a room channel).
    pub(crate) fn may_join(&self, channel: &str, room: Option<&str>, rooms: Rooms) -> bool {
        match rooms {
            Rooms::PerUser => room == Some(self.user.as_str()),
            Rooms::Shared => self.permissions.join.allows(channel, room),
        }
    }

    /// Whether the identity may publish to `channel` (and `room`).
    pub(crate) fn may_publish(&self, channel: &str, room: Option<&str>, rooms: Rooms) -> bool {
        let own_room = match rooms {
            Rooms::PerUser => room == Some(self.user.as_str()),
            Rooms::Shared => true,
        };
        own_room && self.permissions.publish.allows(channel, room)
    }
}

/// Where an identity may join, and separately publish.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Permissions {
    /// Where it may join.
    pub(crate) join: Grant,
    /// Where it may publish.
    pub(crate) publish: Grant,
}

impl Permissions {
    /// The grants named `join` and `publish` in `object` (token claims or a
    /// webhook answer's `permissions`).
    pub(crate) fn from_object(
        object: &Map<String, Value>,
        join: &str,
        publish: &str,
        absent: AbsentGrants,
    ) -> Result<Permissions, Invalid> {
        Ok(Permissions {
            join: Grant::from_value(object.get(join), absent)?,
            publish: Grant::from_value(object.get(publish), absent)?,
        })
    }
}

/// One grant: everything, or the places its patterns match.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Grant {
    /// Every channel and room.
    All,
    /// Where one of these matches; none: nowhere.
    Only(Vec<Pattern>),
}

impl Grant {
    /// The grant a claim's value states; `None` is an absent claim.
    pub(crate) fn from_value(
        value: Option<&Value>,
        absent: AbsentGrants,
    ) -> Result<Grant, Invalid> {
        let texts: Vec<&str> = match value {
            None => {
                return Ok(match absent {
                    AbsentGrants::Deny => Grant::Only(Vec::new()),
                    AbsentGrants::AllowAll => Grant::All,
                });
            }
            Some(Value::String(text)) => text.split_ascii_whitespace().collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().ok_or(Invalid::BadClaim))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Invalid::BadClaim),
        };
        if texts.len() > MAX_PATTERNS {
            return Err(Invalid::BadClaim);
        }
        let patterns = texts
            .into_iter()
            .map(|text| Pattern::parse(text).ok_or(Invalid::BadClaim))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Grant::Only(patterns))
    }

    /// Whether the grant covers `channel` and `room`.
    pub(crate) fn allows(&self, channel: &str, room: Option<&str>) -> bool {
        match self {
            Grant::All => true,
            Grant::Only(patterns) => patterns
                .iter()
                .any(|pattern| pattern.matches(channel, room)),
        }
    }
}

/// `CHANNEL` or `CHANNEL:ROOM`, each a glob where `*` matches any run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    channel: String,
    /// `None`: any room, or none.
    room: Option<String>,
}

impl Pattern {
    /// Parses a pattern; `None` if it is empty, too long, or has a character
    /// no channel or room name has.
    pub(crate) fn parse(text: &str) -> Option<Pattern> {
        if text.len() > MAX_PATTERN_LEN {
            return None;
        }
        let part = |part: &str| {
            (!part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-*".contains(&b)))
            .then(|| part.to_owned())
        };
        match text.split_once(':') {
            None => Some(Pattern {
                channel: part(text)?,
                room: None,
            }),
            Some((channel, room)) => Some(Pattern {
                channel: part(channel)?,
                room: Some(part(room)?),
            }),
        }
    }

    /// Whether the pattern covers `channel` and `room`. A pattern with a room
    /// part never covers a channel without rooms.
    pub(crate) fn matches(&self, channel: &str, room: Option<&str>) -> bool {
        glob(&self.channel, channel)
            && match (&self.room, room) {
                (None, _) => true,
                (Some(pattern), Some(room)) => glob(pattern, room),
                (Some(_), None) => false,
            }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of bytes.
/// On a mismatch only the last `*` is retried: no exponential backtracking,
/// at worst pattern length times name length, both bounded and short.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    let mut retry: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            retry = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, from)) = retry {
            p = star + 1;
            t = from + 1;
            retry = Some((star, from + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The user id a claim states: a non-empty string of at most
/// [`MAX_USER_LEN`] bytes without control characters (it goes into logs).
pub(crate) fn user_id(value: Option<&Value>) -> Result<String, Invalid> {
    match value {
        None => Err(Invalid::MissingUser),
        Some(Value::String(user))
            if !user.is_empty()
                && user.len() <= MAX_USER_LEN
                && !user.chars().any(char::is_control) =>
        {
            Ok(user.clone())
        }
        Some(_) => Err(Invalid::BadClaim),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(user: &str, join: Value, publish: Value) -> Identity {
        let claims = json!({"join": join, "publish": publish});
        Identity {
            user: user.into(),
            expires_at: None,
            permissions: Permissions::from_object(
                claims.as_object().unwrap(),
                "join",
                "publish",
                AbsentGrants::Deny,
            )
            .unwrap(),
        }
    }

    #[test]
    fn globs() {
        let cases = [
            ("chat", "chat", true),
            ("chat", "chats", false),
            ("chat", "cha", false),
            ("*", "", true),
            ("*", "anything", true),
            ("team-*", "team-", true),
            ("team-*", "team-a", true),
            ("team-*", "teams", false),
            ("*-ops", "core-ops", true),
            ("*-ops", "core-opsx", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "abcbc", true),
            ("a*b*c", "acb", false),
            ("a**", "a", true),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(glob(pattern, text), expected, "{pattern:?} ~ {text:?}");
        }
    }

    #[test]
    fn patterns_parse_and_match() {
        let cases: [(&str, &str, Option<&str>, Option<bool>); 13] = [
            ("chat", "chat", None, Some(true)),
            ("chat", "chat", Some("team-1"), Some(true)),
            ("chat", "news", None, Some(false)),
            ("chat:team-*", "chat", Some("team-1"), Some(true)),
            ("chat:team-*", "chat", Some("ops"), Some(false)),
            ("chat:team-*", "chat", None, Some(false)),
            ("*", "news", None, Some(true)),
            ("*:*", "news", None, Some(false)),
            ("*:lobby", "chat", Some("lobby"), Some(true)),
            ("chat:", "chat", None, None),
            (":room", "chat", None, None),
            ("chat:a:b", "chat", Some("a:b"), None),
            ("chat/x", "chat/x", None, None),
        ];
        for (text, channel, room, expected) in cases {
            let matched = Pattern::parse(text).map(|pattern| pattern.matches(channel, room));
            assert_eq!(matched, expected, "{text:?} on {channel} {room:?}");
        }
        assert!(Pattern::parse(&"a".repeat(MAX_PATTERN_LEN + 1)).is_none());
    }

    #[test]
    fn grants_from_claim_values() {
        let chat = Grant::Only(vec![Pattern::parse("chat").unwrap()]);
        let cases: Vec<(Option<Value>, AbsentGrants, Result<Grant, Invalid>)> = vec![
            (None, AbsentGrants::Deny, Ok(Grant::Only(vec![]))),
            (None, AbsentGrants::AllowAll, Ok(Grant::All)),
            (
                Some(json!(["chat"])),
                AbsentGrants::AllowAll,
                Ok(chat.clone()),
            ),
            (Some(json!("chat")), AbsentGrants::Deny, Ok(chat)),
            (
                Some(json!(" chat  news:* ")),
                AbsentGrants::Deny,
                Ok(Grant::Only(vec![
                    Pattern::parse("chat").unwrap(),
                    Pattern::parse("news:*").unwrap(),
                ])),
            ),
            (
                Some(json!([])),
                AbsentGrants::AllowAll,
                Ok(Grant::Only(vec![])),
            ),
            (
                Some(json!(true)),
                AbsentGrants::Deny,
                Err(Invalid::BadClaim),
            ),
            (
                Some(json!(["chat", 7])),
                AbsentGrants::Deny,
                Err(Invalid::BadClaim),
            ),
            (
                Some(json!(["chat:"])),
                AbsentGrants::Deny,
                Err(Invalid::BadClaim),
            ),
            (
                Some(json!(vec!["a"; MAX_PATTERNS + 1])),
                AbsentGrants::Deny,
                Err(Invalid::BadClaim),
            ),
        ];
        for (value, absent, expected) in cases {
            assert_eq!(
                Grant::from_value(value.as_ref(), absent),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn join_and_publish_are_separate() {
        let alice = identity(
            "alice",
            json!(["chat:team-*", "news"]),
            json!("chat:team-a"),
        );
        let cases = [
            ("chat", Some("team-a"), Rooms::Shared, true, true),
            ("chat", Some("team-b"), Rooms::Shared, true, false),
            ("chat", Some("ops"), Rooms::Shared, false, false),
            ("news", None, Rooms::Shared, true, false),
            ("sports", None, Rooms::Shared, false, false),
        ];
        for (channel, room, rooms, join, publish) in cases {
            assert_eq!(
                alice.may_join(channel, room, rooms),
                join,
                "join {channel} {room:?}"
            );
            assert_eq!(
                alice.may_publish(channel, room, rooms),
                publish,
                "publish {channel} {room:?}"
            );
        }
    }

    #[test]
    fn per_user_rooms_belong_to_their_user() {
        let alice = identity("alice", json!([]), json!(["inbox"]));
        let root = identity("root", json!("*"), json!("*"));
        let cases = [
            (&alice, Some("alice"), true, true),
            (&alice, Some("bob"), false, false),
            (&alice, None, false, false),
            (&root, Some("alice"), false, false),
            (&root, Some("root"), true, true),
        ];
        for (who, room, join, publish) in cases {
            assert_eq!(
                who.may_join("inbox", room, Rooms::PerUser),
                join,
                "{} joins {room:?}",
                who.user
            );
            assert_eq!(
                who.may_publish("inbox", room, Rooms::PerUser),
                publish,
                "{} publishes {room:?}",
                who.user
            );
        }
        let silent = identity("alice", json!([]), json!([]));
        assert!(!silent.may_publish("inbox", Some("alice"), Rooms::PerUser));
    }

    #[test]
    fn user_ids() {
        let cases = [
            (None, Err(Invalid::MissingUser)),
            (Some(json!("alice")), Ok("alice".to_owned())),
            (Some(json!("")), Err(Invalid::BadClaim)),
            (Some(json!("a\nb")), Err(Invalid::BadClaim)),
            (
                Some(json!("x".repeat(MAX_USER_LEN + 1))),
                Err(Invalid::BadClaim),
            ),
            (Some(json!(42)), Err(Invalid::BadClaim)),
        ];
        for (value, expected) in cases {
            assert_eq!(user_id(value.as_ref()), expected, "{value:?}");
        }
    }
}
