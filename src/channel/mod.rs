//! Channels: who receives a message. An echo channel returns it to its
//! sender, a broadcast channel sends it to every subscriber, a room channel
//! to every member of the sender's room, a hub channel to the members of
//! the rooms its connections join in band (`hub`). The node's user index
//! (`users`) reaches a user's connections on every channel.
//!
//! A [`Channel`] outlives configuration snapshots (a later reload carries it
//! over by name); a [`Membership`] is one connection's place in it (and its
//! rooms, and the user index) and leaves on drop, on every path.

mod hub;
mod members;
mod notices;
mod rooms;
mod users;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::SystemTime,
};

use bytes::Bytes;

pub use self::users::ConnectionInfo;
use self::{
    hub::protocol::PresenceEvent,
    members::{Member, Members, Presence, queue},
    notices::Notices,
    rooms::{Room, Rooms},
    users::UserConnection,
};
pub(crate) use self::{
    members::{ConnectionId, UserId, UserPage},
    users::{ChannelKey, Users},
};
use crate::{
    auth::Identity,
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
    /// A hub channel delivers JSON: the message is not.
    #[error("a hub channel delivers JSON: send a JSON text body")]
    NotJson,
    /// A client's identity has no grant to publish here.
    #[error("not permitted to publish here")]
    Forbidden,
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
    /// The node's user index, shared by every channel.
    users: Arc<Users>,
    /// Every connection on the channel, whatever its rooms.
    members: Members,
    rooms: Rooms,
    closing: AtomicBool,
    /// Shared-mode compressors, reused across fan-outs.
    compressors: SharedCompressors,
    /// Presence notices waiting to be coalesced and sent.
    notices: Notices,
}

/// Who is joining, and how it takes its messages.
pub(crate) struct Joiner {
    pub(crate) outbox: Outbox,
    pub(crate) encoding: Encoding,
    /// Its identity, if it has one: its user and its grants.
    pub(crate) identity: Option<Identity>,
}

impl Channel {
    pub(crate) fn new(counters: Arc<Counters>, users: Arc<Users>) -> Self {
        Self {
            counters,
            users,
            members: Members::default(),
            rooms: Rooms::default(),
            closing: AtomicBool::new(false),
            compressors: SharedCompressors::default(),
            notices: Notices::default(),
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
        joiner: Joiner,
    ) -> Result<Membership, JoinError> {
        let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
        let Joiner {
            outbox,
            encoding,
            identity,
        } = joiner;
        let user: Option<UserId> = identity
            .as_ref()
            .map(|identity| Arc::from(identity.user.as_str()));
        let member = Member {
            outbox: outbox.clone(),
            encoding,
            user: user.clone(),
        };
        self.members
            .insert_below(id, member.clone(), config.limits.max_connections)
            .ok_or(JoinError::ChannelFull)?;
        // From here on the membership's drop undoes what was done.
        let mut membership = Membership {
            channel: self.clone(),
            id,
            outbox,
            encoding,
            user,
            identity,
            rooms: Vec::new(),
            presence_events: config.presence_events,
            indexed: false,
        };
        if let Some(name) = room {
            membership.enter(config, name)?;
        }
        if let Some(user) = &membership.user {
            self.users.add(
                user,
                id,
                UserConnection {
                    channel: ChannelKey::of(self),
                    channel_name: Arc::from(config.name.as_str()),
                    room: room.map(Arc::from),
                    since: SystemTime::now(),
                    member,
                },
            );
            membership.indexed = true;
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

    /// Publishes from the API: to every subscriber, or every member of
    /// `room`. On a hub channel the message is delivered in the hub's shape
    /// (`{"type":"message","room":...,"from":null,"payload":...}`), so its
    /// text must be JSON.
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
        let in_room = |name: &str, kind, payload| {
            self.rooms.get(name).map_or(0, |room| {
                self.fan_out(config, &room.members, kind, payload, None)
            })
        };
        match (config.kind, room) {
            (ChannelKind::Echo, _) => Err(PublishError::NotPublishable(channel())),
            (ChannelKind::Broadcast, None) => Ok(self.fan_out(
                config,
                &self.members,
                message.kind(),
                message.payload().clone(),
                None,
            )),
            (ChannelKind::Room, Some(name)) => {
                Ok(in_room(name, message.kind(), message.payload().clone()))
            }
            (ChannelKind::Hub, Some(name)) => {
                let payload = hub::api_payload(message).ok_or(PublishError::NotJson)?;
                let text = hub::protocol::room_message(name, None, payload);
                Ok(in_room(name, MessageKind::Text, Bytes::from(text)))
            }
            (ChannelKind::Broadcast, Some(_)) | (ChannelKind::Room | ChannelKind::Hub, None) => {
                Err(PublishError::RoomMismatch {
                    channel: channel(),
                    needs_room: config.kind.has_rooms(),
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
        let delivery = self.delivery(config, kind, payload);
        let recipients = members.deliver(&delivery, except, &self.counters);
        self.counters
            .traffic
            .record_sent(config.kind, recipients, size);
        recipients
    }

    /// One message on its way to this channel's connections.
    fn delivery(&self, config: &ChannelConfig, kind: MessageKind, payload: Bytes) -> Delivery<'_> {
        Delivery::new(
            kind,
            payload,
            config.compression,
            &self.compressors,
            &self.counters,
        )
    }

    /// Connections, distinct users and a page of user ids, on the whole
    /// channel or in one room (`None` for a room that does not exist).
    pub(crate) fn users(
        &self,
        room: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Option<UserPage> {
        match room {
            None => Some(self.members.users(after, limit)),
            Some(name) => self
                .rooms
                .get(name)
                .map(|room| room.members.users(after, limit)),
        }
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

/// One connection's place in a channel, its rooms and the user index.
/// Dropping it leaves all of them; the last member to leave a room removes
/// the room.
pub(crate) struct Membership {
    channel: Arc<Channel>,
    id: ConnectionId,
    outbox: Outbox,
    encoding: Encoding,
    user: Option<UserId>,
    /// Its identity's grants (refreshed in band), for what it may publish
    /// and, on a hub, join.
    identity: Option<Identity>,
    /// A room channel's room, or the rooms a hub connection joined.
    rooms: Vec<Arc<Room>>,
    /// Whether joins and leaves are told to the room (as the channel said
    /// when this connection joined).
    presence_events: bool,
    /// Registered in the user index.
    indexed: bool,
}

impl Membership {
    /// The live channel it belongs to.
    pub(crate) fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// Takes the grants of a refreshed identity (of the same user).
    pub(crate) fn refreshed(&mut self, identity: Identity) {
        self.identity = Some(identity);
    }

    /// Whether its identity may publish to `room` of this channel (a
    /// connection without identity has no grants to check).
    fn may_publish(&self, config: &ChannelConfig, room: Option<&str>) -> bool {
        self.identity
            .as_ref()
            .is_none_or(|identity| identity.may_publish(&config.name, room, config.auth.rooms))
    }

    /// Whether its identity may join `room` of this hub channel.
    fn may_join(&self, config: &ChannelConfig, room: &str) -> bool {
        self.identity
            .as_ref()
            .is_none_or(|identity| identity.may_join(&config.name, Some(room), config.auth.rooms))
    }

    fn member(&self) -> Member {
        Member {
            outbox: self.outbox.clone(),
            encoding: self.encoding,
            user: self.user.clone(),
        }
    }

    /// Joins room `name` (creating it within `max_rooms`); tells the room
    /// when this is its user's first connection there.
    fn enter(&mut self, config: &ChannelConfig, name: &str) -> Result<(), JoinError> {
        let channel = &self.channel;
        let (room, presence) = channel.rooms.join(
            name,
            self.id,
            self.member(),
            config.max_rooms,
            config.max_members,
        )?;
        if let (Presence::Arrived, Some(user), true) = (presence, &self.user, self.presence_events)
        {
            channel
                .notices
                .record(channel, &room, user, PresenceEvent::Join);
        }
        self.rooms.push(room);
        Ok(())
    }

    /// Leaves room `name` if it is in it; returns whether it was.
    fn exit(&mut self, name: &str) -> bool {
        let Some(index) = self.rooms.iter().position(|room| room.name() == name) else {
            return false;
        };
        let room = self.rooms.swap_remove(index);
        self.leave(&room);
        true
    }

    fn leave(&self, room: &Arc<Room>) {
        let channel = &self.channel;
        let presence = channel.rooms.leave(room, self.id);
        if let (Presence::Departed, Some(user), true) = (presence, &self.user, self.presence_events)
        {
            channel
                .notices
                .record(channel, room, user, PresenceEvent::Leave);
        }
    }

    /// Handles a message from this connection's client under the channel's
    /// current `config`: encodes it once and queues the same bytes for every
    /// recipient.
    pub(crate) fn dispatch(
        &mut self,
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
        match config.kind {
            ChannelKind::Echo => {
                // The writer frames it, compressing with this connection's
                // own compressor if there is one.
                if queue(
                    &self.outbox,
                    Outgoing::Message(kind, payload),
                    &channel.counters,
                ) {
                    channel.counters.traffic.record_sent(config.kind, 1, size);
                }
            }
            ChannelKind::Hub => hub::dispatch(self, config, kind, &payload),
            ChannelKind::Broadcast | ChannelKind::Room => {
                let room = self.rooms.first().map(|room| room.name());
                if !self.may_publish(config, room) {
                    return Err(PublishError::Forbidden);
                }
                let except = (!config.echo_to_sender).then_some(self.id);
                let members = self
                    .rooms
                    .first()
                    .map_or(&channel.members, |room| &room.members);
                channel.fan_out(config, members, kind, payload, except);
            }
        }
        Ok(())
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        for room in std::mem::take(&mut self.rooms) {
            self.leave(&room);
        }
        if let (Some(user), true) = (&self.user, self.indexed) {
            self.channel.users.remove(user, self.id);
        }
        self.channel.members.remove(self.id);
    }
}
