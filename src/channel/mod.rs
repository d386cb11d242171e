//! Channels: who receives a message. An echo channel returns it to its
//! sender, a broadcast channel sends it to every subscriber, a room channel
//! to every member of the sender's room.
//!
//! A [`Channel`] outlives configuration snapshots (a later reload carries it
//! over by name); a [`Membership`] is one connection's place in it and
//! leaves on drop, on every path.

mod members;
mod rooms;

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use bytes::Bytes;

use self::{
    members::{ConnectionId, Member, Members, queue},
    rooms::{Room, Rooms},
};
use crate::{
    config::{ChannelConfig, ChannelKind, Publish},
    http::route::ROOM_NAME_RULE,
    message::{Message, MessageKind},
    stats::{ChannelStats, Counters},
    ws::{
        encoder::{Delivery, Encoding, SharedCompressors},
        outbox::{Outbox, Outgoing},
    },
};

/// Source of connection ids.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Why a connection could not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JoinError {
    /// The room has `max_members` members.
    #[error("room is full")]
    RoomFull,
    /// The channel has `max_rooms` rooms and this would be a new one.
    #[error("too many rooms")]
    TooManyRooms,
    /// The channel has `max_connections` connections.
    #[error("channel is full")]
    ChannelFull,
    /// The channel is closing (shutdown or removal).
    #[error("channel is closing")]
    Closing,
}

/// Why a message could not be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No channel has this name.
    #[error("no channel named {0:?}")]
    UnknownChannel(String),
    /// Echo channels have nobody to publish to.
    #[error("channel {0:?} is an echo channel; publish to a broadcast or room channel")]
    NotPublishable(String),
    /// A room channel needs a room name, other channels take none.
    #[error("channel {channel:?} {}", if *needs_room { "is a room channel: name the room" } else { "has no rooms: publish without a room" })]
    RoomMismatch {
        /// The channel.
        channel: String,
        /// Whether a room was required (and missing) or given (and not allowed).
        needs_room: bool,
    },
    /// The message exceeds the channel's `max_payload`.
    #[error("message of {size} bytes exceeds the channel's max_payload of {limit} bytes")]
    TooLarge {
        /// The message size.
        size: usize,
        /// The channel's limit.
        limit: usize,
    },
    /// The room name is not one a client could join.
    #[error("{}", ROOM_NAME_RULE)]
    BadRoomName,
    /// A client tried to publish on a channel where only the API may.
    #[error("clients may not publish on this channel")]
    ClientsMayNotPublish,
}

/// The live state of one configured channel: its connections, rooms and
/// compressors. Its policy is not here: it lives in the configuration
/// snapshot, and every operation takes the `ChannelConfig` its caller read
/// from the one snapshot it loaded, so a reload is seen whole or not at all.
/// A later reload carries the channel over by name.
pub(crate) struct Channel {
    counters: Arc<Counters>,
    /// Every connection on the channel, whatever its room.
    members: Members,
    rooms: Rooms,
    closing: AtomicBool,
    /// Shared-mode compressors, reused across fan-outs.
    compressors: SharedCompressors,
}

impl Channel {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        Self {
            counters,
            members: Members::default(),
            rooms: Rooms::default(),
            closing: AtomicBool::new(false),
            compressors: SharedCompressors::default(),
        }
    }

    /// Follows a reload that changed the channel's policy: pooled
    /// compressors of a level no longer used are dropped.
    pub(crate) fn reconfigured(&self, config: &ChannelConfig) {
        self.compressors.keep_level(config.compression.level);
    }

    /// Adds a connection (to `room`, for room channels). The channel's
    /// `max_connections` is checked and the member inserted under one lock,
    /// so concurrent joins cannot overshoot it. The returned membership
    /// leaves when dropped.
    pub(crate) fn join(
        self: &Arc<Self>,
        config: &ChannelConfig,
        room: Option<&str>,
        outbox: Outbox,
        encoding: Encoding,
    ) -> Result<Membership, JoinError> {
        let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
        let member = Member {
            outbox: outbox.clone(),
            encoding,
        };
        if !self
            .members
            .insert_below(id, member.clone(), config.limits.max_connections)
        {
            return Err(JoinError::ChannelFull);
        }
        // From here on the membership's drop undoes the inserts.
        let mut membership = Membership {
            channel: self.clone(),
            room: None,
            id,
            outbox,
            encoding,
        };
        if let Some(name) = room {
            membership.room =
                Some(
                    self.rooms
                        .join(name, id, member, config.max_rooms, config.max_members)?,
                );
        }
        // Checked after the inserts so that a concurrent `close_all` either
        // sees this member or makes this check fail.
        if self.closing.load(Ordering::Acquire) {
            return Err(JoinError::Closing);
        }
        Ok(membership)
    }

    /// Starts the close handshake with every connection and refuses new ones.
    pub(crate) fn close_all(&self, code: u16, reason: &str) {
        for outbox in self.start_closing() {
            outbox.close(code, reason);
        }
    }

    /// Refuses new connections and returns the current ones' outboxes, for a
    /// caller that closes them at its own pace.
    pub(crate) fn start_closing(&self) -> Vec<Outbox> {
        self.closing.store(true, Ordering::Release);
        self.members.outboxes()
    }

    /// Publishes from the API: to every subscriber, or every member of `room`.
    pub(crate) fn publish(
        &self,
        config: &ChannelConfig,
        room: Option<&str>,
        message: &Message,
    ) -> Result<usize, PublishError> {
        let channel = || config.name.clone();
        if message.payload().len() > config.limits.max_payload {
            return Err(PublishError::TooLarge {
                size: message.payload().len(),
                limit: config.limits.max_payload,
            });
        }
        match (config.kind, room) {
            (ChannelKind::Echo, _) => Err(PublishError::NotPublishable(channel())),
            (ChannelKind::Broadcast, None) => Ok(self.fan_out(
                config,
                &self.members,
                message.kind(),
                message.payload().clone(),
                None,
            )),
            (ChannelKind::Room, Some(name)) => Ok(self.rooms.get(name).map_or(0, |room| {
                self.fan_out(
                    config,
                    &room.members,
                    message.kind(),
                    message.payload().clone(),
                    None,
                )
            })),
            (ChannelKind::Broadcast, Some(_)) | (ChannelKind::Room, None) => {
                Err(PublishError::RoomMismatch {
                    channel: channel(),
                    needs_room: config.kind == ChannelKind::Room,
                })
            }
        }
    }

    /// Queues one message for `members` (but `except`): each member gets it
    /// in the encoding it negotiated, each encoding made at most once.
    fn fan_out(
        &self,
        config: &ChannelConfig,
        members: &Members,
        kind: MessageKind,
        payload: Bytes,
        except: Option<ConnectionId>,
    ) -> usize {
        let size = payload.len();
        let delivery = Delivery::new(
            kind,
            payload,
            config.compression,
            &self.compressors,
            &self.counters,
        );
        let recipients = members.deliver(&delivery, except, &self.counters);
        self.counters
            .traffic
            .record_sent(config.kind, recipients, size);
        recipients
    }

    /// Connections and rooms now, under the name and kind `config` gives;
    /// each room's size only with `room_sizes`.
    pub(crate) fn stats(&self, config: &ChannelConfig, room_sizes: bool) -> ChannelStats {
        ChannelStats {
            name: config.name.clone(),
            kind: config.kind,
            connections: self.members.len(),
            room_count: self.rooms.len(),
            rooms: if room_sizes {
                self.rooms.sizes()
            } else {
                Default::default()
            },
        }
    }
}

/// One connection's place in a channel (and room). Dropping it leaves; the
/// last member to leave a room removes the room.
pub(crate) struct Membership {
    channel: Arc<Channel>,
    room: Option<Arc<Room>>,
    id: ConnectionId,
    outbox: Outbox,
    encoding: Encoding,
}

impl Membership {
    /// The live channel it belongs to.
    pub(crate) fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// How this connection takes its messages.
    pub(crate) fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The server's counters.
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.channel.counters
    }

    /// Handles a message from this connection's client under the channel's
    /// current `config`: encodes it once and queues the same bytes for every
    /// recipient.
    pub(crate) fn dispatch(
        &self,
        config: &ChannelConfig,
        kind: MessageKind,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        let channel = &self.channel;
        let size = payload.len();
        channel.counters.traffic.record_received(config.kind, size);
        if config.kind != ChannelKind::Echo && config.publish == Publish::Api {
            return Err(PublishError::ClientsMayNotPublish);
        }
        if config.kind == ChannelKind::Echo {
            // The writer frames it, compressing with this connection's own
            // compressor if there is one.
            if queue(
                &self.outbox,
                Outgoing::Message(kind, payload),
                &channel.counters,
            ) {
                channel.counters.traffic.record_sent(config.kind, 1, size);
            }
            return Ok(());
        }
        let except = (!config.echo_to_sender).then_some(self.id);
        let members = self
            .room
            .as_ref()
            .map_or(&channel.members, |room| &room.members);
        channel.fan_out(config, members, kind, payload, except);
        Ok(())
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(room) = &self.room {
            self.channel.rooms.leave(room, self.id);
        }
        self.channel.members.remove(self.id);
    }
}
