//! The envelope: one message between nodes, in a small versioned binary
//! format, and the target it is addressed to.
//!
//! ```text
//! byte 0      version (1)
//! byte 1      kind: 1 text, 2 binary, 3 disconnect
//! byte 2      flags: bit 0 "except" present, bit 1 user target names a channel
//! byte 3      target: 1 channel, 2 room, 3 user
//! bytes 4..   origin node id (u64 BE), sequence number (u64 BE),
//!             except connection id (u64 BE, only with flag bit 0),
//!             target fields, each a u16 BE length and its bytes:
//!               channel: name · room: channel, room · user: user[, channel]
//!             payload (the rest): the message; for a disconnect, the
//!             close code (u16 BE) and the UTF-8 reason
//! ```
//!
//! A disconnect is addressed to a user (on every channel) only.
//!
//! A decoder rejects a version it does not know, so a later format can
//! change anything after byte 0; a node of this version ignores (and counts)
//! envelopes it cannot read instead of misreading them.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::message::{Message, MessageKind};

/// The format version this build writes and reads.
const VERSION: u8 = 1;

const KIND_TEXT: u8 = 1;
const KIND_BINARY: u8 = 2;
const KIND_DISCONNECT: u8 = 3;

const FLAG_EXCEPT: u8 = 1 << 0;
const FLAG_USER_CHANNEL: u8 = 1 << 1;

const TARGET_CHANNEL: u8 = 1;
const TARGET_ROOM: u8 = 2;
const TARGET_USER: u8 = 3;

/// Version, kind, flags, target tag, origin and sequence number.
const FIXED_HEADER: usize = 4 + 8 + 8;

/// Whom a cross-node message is for. The link derives the Redis channel
/// (the topic) from it, so subscribing to a target and publishing to it
/// always agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every connection of a broadcast channel.
    Channel(String),
    /// Every member of one room of a room channel.
    Room {
        /// The channel's configured name.
        channel: String,
        /// The room.
        room: String,
    },
    /// Every connection of one user, on every channel or on one.
    User {
        /// The user id.
        user: String,
        /// Only this channel's connections of the user, when set.
        channel: Option<String>,
    },
}

impl Target {
    /// The Redis channel this target's messages travel on, under `prefix`.
    /// Channel names cannot contain ':', so the names are unambiguous; a
    /// user's channel filter travels in the envelope, not in the topic, so
    /// that one subscription per user serves every channel.
    pub(crate) fn topic(&self, prefix: &str) -> String {
        match self {
            Self::Channel(channel) => format!("{prefix}channel:{channel}"),
            Self::Room { channel, room } => format!("{prefix}room:{channel}:{room}"),
            Self::User { user, .. } => format!("{prefix}user:{user}"),
        }
    }

    /// The target as the subscription is keyed: a user's channel filter
    /// does not change what is subscribed.
    pub(crate) fn subscription(&self) -> Target {
        match self {
            Self::User { user, .. } => Self::User {
                user: user.clone(),
                channel: None,
            },
            other => other.clone(),
        }
    }
}

/// What an envelope asks the receiving nodes to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Deliver this message, as it is (text stays text).
    Message(Message),
    /// Close the target user's connections with this code and reason.
    Disconnect {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

/// One message between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The id of the node that published it.
    pub origin: u64,
    /// The publishing node's sequence number, increasing by one per
    /// envelope it publishes.
    pub seq: u64,
    /// Whom it is for.
    pub target: Target,
    /// What to do.
    pub body: Body,
    /// A connection that must not receive it: the sender of a message,
    /// which is on the origin node (other nodes may ignore it), or the
    /// connection a disconnect spares, which may be on any node.
    pub except: Option<u64>,
}

impl Envelope {
    /// The message it carries, if it is a message.
    pub fn message(&self) -> Option<&Message> {
        match &self.body {
            Body::Message(message) => Some(message),
            Body::Disconnect { .. } => None,
        }
    }
}

/// An envelope this build cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Written by a format version this build does not know.
    #[error("envelope version {0} is not supported (this build reads version {VERSION})")]
    Version(u8),
    /// Truncated, or a field out of range.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
}

impl Envelope {
    /// The wire form.
    pub fn encode(&self) -> Bytes {
        let (target, body, except) = (&self.target, &self.body, self.except);
        let mut out = BytesMut::with_capacity(encoded_len(target, body, except));
        encode_into(&mut out, self.origin, self.seq, target, body, except);
        out.freeze()
    }

    /// Reads the wire form. The payload shares `wire`'s memory.
    pub fn decode(mut wire: Bytes) -> Result<Self, EnvelopeError> {
        if wire.is_empty() {
            return Err(EnvelopeError::Malformed("empty"));
        }
        if wire[0] != VERSION {
            return Err(EnvelopeError::Version(wire[0]));
        }
        if wire.len() < FIXED_HEADER {
            return Err(EnvelopeError::Malformed("shorter than its header"));
        }
        wire.advance(1);
        let kind = wire.get_u8();
        let flags = wire.get_u8();
        let tag = wire.get_u8();
        let origin = wire.get_u64();
        let seq = wire.get_u64();
        if flags & !(FLAG_EXCEPT | FLAG_USER_CHANNEL) != 0 {
            return Err(EnvelopeError::Malformed("unknown flag"));
        }
        let except = if flags & FLAG_EXCEPT != 0 {
            if wire.len() < 8 {
                return Err(EnvelopeError::Malformed("truncated except id"));
            }
            Some(wire.get_u64())
        } else {
            None
        };
        let target = match tag {
            TARGET_CHANNEL => Target::Channel(field(&mut wire)?),
            TARGET_ROOM => Target::Room {
                channel: field(&mut wire)?,
                room: field(&mut wire)?,
            },
            TARGET_USER => Target::User {
                user: field(&mut wire)?,
                channel: if flags & FLAG_USER_CHANNEL != 0 {
                    Some(field(&mut wire)?)
                } else {
                    None
                },
            },
            _ => return Err(EnvelopeError::Malformed("unknown target")),
        };
        if flags & FLAG_USER_CHANNEL != 0 && tag != TARGET_USER {
            return Err(EnvelopeError::Malformed(
                "channel flag on a non-user target",
            ));
        }
        let body = match kind {
            KIND_TEXT => Body::Message(
                Message::text_from_utf8(wire)
                    .map_err(|_| EnvelopeError::Malformed("text payload is not UTF-8"))?,
            ),
            KIND_BINARY => Body::Message(Message::binary(wire)),
            KIND_DISCONNECT => {
                if !matches!(target, Target::User { channel: None, .. }) {
                    return Err(EnvelopeError::Malformed(
                        "a disconnect is addressed to a user on every channel",
                    ));
                }
                if wire.len() < 2 {
                    return Err(EnvelopeError::Malformed("truncated close code"));
                }
                let code = wire.get_u16();
                let reason = String::from_utf8(wire.to_vec())
                    .map_err(|_| EnvelopeError::Malformed("close reason is not UTF-8"))?;
                Body::Disconnect { code, reason }
            }
            _ => return Err(EnvelopeError::Malformed("unknown message kind")),
        };
        Ok(Self {
            origin,
            seq,
            target,
            body,
            except,
        })
    }
}

/// The target's name fields, and the flag bits and tag they imply.
fn target_fields(target: &Target) -> (u8, u8, [Option<&str>; 2]) {
    match target {
        Target::Channel(channel) => (0, TARGET_CHANNEL, [Some(channel), None]),
        Target::Room { channel, room } => (0, TARGET_ROOM, [Some(channel), Some(room)]),
        Target::User { user, channel } => {
            let flag = if channel.is_some() {
                FLAG_USER_CHANNEL
            } else {
                0
            };
            (flag, TARGET_USER, [Some(user), channel.as_deref()])
        }
    }
}

/// A name field as written: cut at 64 KiB (names are validated far
/// shorter; a longer one is cut rather than corrupting the frame).
fn field_bytes(field: &str) -> &[u8] {
    &field.as_bytes()[..field.len().min(usize::from(u16::MAX))]
}

/// The bytes after the target fields.
fn payload_len(body: &Body) -> usize {
    match body {
        Body::Message(message) => message.payload().len(),
        Body::Disconnect { reason, .. } => 2 + reason.len(),
    }
}

/// The length of an envelope's wire form.
pub(crate) fn encoded_len(target: &Target, body: &Body, except: Option<u64>) -> usize {
    let (_, _, fields) = target_fields(target);
    FIXED_HEADER
        + if except.is_some() { 8 } else { 0 }
        + fields
            .iter()
            .flatten()
            .map(|field| 2 + field_bytes(field).len())
            .sum::<usize>()
        + payload_len(body)
}

/// Appends an envelope's wire form to `out` (straight into a publish
/// command, so the payload is copied once).
pub(crate) fn encode_into(
    out: &mut BytesMut,
    origin: u64,
    seq: u64,
    target: &Target,
    body: &Body,
    except: Option<u64>,
) {
    let (mut flags, tag, fields) = target_fields(target);
    if except.is_some() {
        flags |= FLAG_EXCEPT;
    }
    out.put_u8(VERSION);
    out.put_u8(match body {
        Body::Message(message) => match message.kind() {
            MessageKind::Text => KIND_TEXT,
            MessageKind::Binary => KIND_BINARY,
        },
        Body::Disconnect { .. } => KIND_DISCONNECT,
    });
    out.put_u8(flags);
    out.put_u8(tag);
    out.put_u64(origin);
    out.put_u64(seq);
    if let Some(except) = except {
        out.put_u64(except);
    }
    for field in fields.iter().flatten() {
        let bytes = field_bytes(field);
        out.put_u16(bytes.len() as u16);
        out.put_slice(bytes);
    }
    match body {
        Body::Message(message) => out.put_slice(message.payload()),
        Body::Disconnect { code, reason } => {
            out.put_u16(*code);
            out.put_slice(reason.as_bytes());
        }
    }
}

fn field(wire: &mut Bytes) -> Result<String, EnvelopeError> {
    if wire.len() < 2 {
        return Err(EnvelopeError::Malformed("truncated field length"));
    }
    let len = usize::from(wire.get_u16());
    if wire.len() < len {
        return Err(EnvelopeError::Malformed("truncated field"));
    }
    String::from_utf8(wire.split_to(len).to_vec())
        .map_err(|_| EnvelopeError::Malformed("field is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Envelope> {
        let targets = [
            Target::Channel("news".into()),
            Target::Room {
                channel: "chat".into(),
                room: "lobby".into(),
            },
            Target::User {
                user: "ü1".into(),
                channel: None,
            },
            Target::User {
                user: "u2".into(),
                channel: Some("chat".into()),
            },
        ];
        let mut out = Vec::new();
        for (i, target) in targets.into_iter().enumerate() {
            for message in [
                Message::text("héllo"),
                Message::binary(vec![0u8, 255, 1]),
                Message::text(""),
            ] {
                for except in [None, Some(u64::MAX - i as u64)] {
                    out.push(Envelope {
                        origin: 0x0102_0304_0506_0708,
                        seq: i as u64 * 1000 + 7,
                        target: target.clone(),
                        body: Body::Message(message.clone()),
                        except,
                    });
                }
            }
        }
        for (reason, except) in [("", None), ("log out ✓", Some(9))] {
            out.push(Envelope {
                origin: 3,
                seq: 4,
                target: Target::User {
                    user: "u3".into(),
                    channel: None,
                },
                body: Body::Disconnect {
                    code: 4000,
                    reason: reason.into(),
                },
                except,
            });
        }
        out
    }

    #[test]
    fn every_shape_round_trips() {
        for envelope in samples() {
            let wire = envelope.encode();
            assert_eq!(
                Envelope::decode(wire.clone()).unwrap(),
                envelope,
                "{wire:?}"
            );
        }
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let envelope = Envelope {
            origin: 1,
            seq: 2,
            target: Target::Room {
                channel: "c".into(),
                room: "r".into(),
            },
            body: Body::Message(Message::text("hi")),
            except: Some(3),
        };
        let mut expected = vec![1, 1, FLAG_EXCEPT, TARGET_ROOM];
        expected.extend(1u64.to_be_bytes());
        expected.extend(2u64.to_be_bytes());
        expected.extend(3u64.to_be_bytes());
        expected.extend([0, 1, b'c', 0, 1, b'r', b'h', b'i']);
        assert_eq!(&envelope.encode()[..], &expected[..]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for envelope in samples() {
            let wire = envelope.encode();
            // A disconnect's code is required; its reason may be cut.
            let payload = match &envelope.body {
                Body::Message(message) => message.payload().len(),
                Body::Disconnect { reason, .. } => reason.len(),
            };
            for cut in 0..wire.len() - payload {
                assert!(
                    Envelope::decode(wire.slice(..cut)).is_err(),
                    "{envelope:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn rejects_what_this_version_cannot_read() {
        let good = samples()[0].encode();
        let with = |index: usize, byte: u8| {
            let mut bytes = good.to_vec();
            bytes[index] = byte;
            Envelope::decode(Bytes::from(bytes))
        };
        assert_eq!(with(0, 2), Err(EnvelopeError::Version(2)));
        assert!(matches!(with(1, 9), Err(EnvelopeError::Malformed(_))));
        assert!(matches!(with(2, 0x80), Err(EnvelopeError::Malformed(_))));
        assert!(matches!(
            with(2, FLAG_USER_CHANNEL),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(with(3, 9), Err(EnvelopeError::Malformed(_))));
        let text = Envelope {
            body: Body::Message(Message::text("ok")),
            ..samples()[0].clone()
        }
        .encode();
        let mut invalid = text.to_vec();
        *invalid.last_mut().unwrap() = 0xFF;
        assert!(matches!(
            Envelope::decode(Bytes::from(invalid)),
            Err(EnvelopeError::Malformed(_))
        ));
        // A disconnect goes to a user on every channel, nowhere else.
        for target in [
            Target::Channel("news".into()),
            Target::User {
                user: "u".into(),
                channel: Some("chat".into()),
            },
        ] {
            let wire = Envelope {
                target,
                body: Body::Disconnect {
                    code: 4000,
                    reason: String::new(),
                },
                ..samples()[0].clone()
            }
            .encode();
            assert!(matches!(
                Envelope::decode(wire),
                Err(EnvelopeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn topics_are_distinct_per_target_and_ignore_the_user_channel_filter() {
        let prefix = "p:";
        assert_eq!(
            Target::Channel("news".into()).topic(prefix),
            "p:channel:news"
        );
        assert_eq!(
            Target::Room {
                channel: "chat".into(),
                room: "a:b".into()
            }
            .topic(prefix),
            "p:room:chat:a:b"
        );
        let filtered = Target::User {
            user: "u".into(),
            channel: Some("chat".into()),
        };
        assert_eq!(filtered.topic(prefix), "p:user:u");
        assert_eq!(
            filtered.subscription(),
            Target::User {
                user: "u".into(),
                channel: None
            }
        );
    }
}
