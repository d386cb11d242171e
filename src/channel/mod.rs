//! Channels: who receives a message. An echo channel returns it to its
//! sender, a broadcast channel sends it to every subscriber, a room channel
//! to every member of the sender's room, a hub channel to the members of
//! the rooms its connections join in band (`hub`). The node's user index
//! (`users`) reaches a user's connections on every channel.
//!
//! A [`Channel`] outlives configuration snapshots (a later reload carries it
//! over by name); a [`Membership`] is one connection's place in it (and its
//! rooms, and the user index) and leaves on drop, on every path.
//!
//! With a cluster link (`remote`), every fan-out with recipients beyond
//! the sender is delivered to this node's recipients first and then handed
//! to the link for the other nodes, which deliver it through
//! [`Channel::deliver_local`] and [`deliver_to_user`] under their own
//! snapshot's policy; joins and leaves keep the link's interest and this
//! node's presence share in step.

mod hub;
mod members;
mod notices;
mod remote;
mod rooms;
mod users;

use std::{
    sync::{
        Arc, LazyLock,
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
    remote::Remote,
    users::{ChannelKey, Users},
};
use crate::{
    auth::Identity,
    cluster::Target,
    config::{ChannelConfig, ChannelKind, Compression, Publish},
    http::route::ROOM_NAME_RULE,
    message::{Message, MessageKind},
    stats::{ChannelStats, Counters},
    ws::{
        encoder::{Delivery, Encoding, Outgoing, SharedCompressors},
        outbox::Outbox,
    },
};

/// Random bits at the top of this process's connection ids.
const CONNECTION_ID_RANDOM_BITS: u32 = 21;

/// Bits of the per-process counter below them: four billion connections
/// in one process's life.
const CONNECTION_ID_COUNTER_BITS: u32 = 32;

/// Source of connection ids: a counter under a random prefix, so that the
/// ids of different nodes differ (a disconnect sent to every node spares
/// the one connection it names, wherever it is: two nodes share a prefix
/// with a chance of one in two million), and the ids stay below 2^53,
/// exact in every JSON reader.
static NEXT_CONNECTION_ID: LazyLock<AtomicU64> = LazyLock::new(|| {
    let prefix = crate::cluster::random_u64() >> (64 - CONNECTION_ID_RANDOM_BITS);
    AtomicU64::new((prefix << CONNECTION_ID_COUNTER_BITS) | 1)
});

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
    /// Its name, which a channel keeps for life (a reload that renames a
    /// channel replaces it); shared by its memberships.
    name: Arc<str>,
    counters: Arc<Counters>,
    /// The node's user index, shared by every channel.
    users: Arc<Users>,
    /// The other nodes, shared by every channel.
    remote: Arc<Remote>,
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
    pub(crate) fn new(
        name: &str,
        counters: Arc<Counters>,
        users: Arc<Users>,
        remote: Arc<Remote>,
    ) -> Self {
        Self {
            name: Arc::from(name),
            counters,
            users,
            remote,
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
        let (count, _) = self
            .members
            .insert_below(id, member.clone(), config.limits.max_connections)
            .ok_or(JoinError::ChannelFull)?;
        // From here on the membership's drop undoes what was done.
        let mut membership = Membership {
            channel: self.clone(),
            broadcast: config.kind == ChannelKind::Broadcast,
            id,
            outbox,
            encoding,
            user,
            identity: identity.map(Box::new),
            rooms: Vec::new(),
            presence_events: config.presence_events,
            indexed: false,
        };
        if membership.broadcast {
            self.channel_changed(&self.name, count == 1);
        }
        if let Some(name) = room {
            membership.enter(config, name)?;
        }
        if let Some(user) = &membership.user {
            let first = self.users.add(
                user,
                id,
                UserConnection {
                    channel: ChannelKey::of(self),
                    channel_name: self.name.clone(),
                    room: room.map(Arc::from),
                    since: SystemTime::now(),
                    member,
                },
            );
            membership.indexed = true;
            if first {
                self.user_interest(user);
            }
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
    /// `room`, on this node and then on the others. On a hub channel the
    /// message is delivered in the hub's shape
    /// (`{"type":"message","room":...,"from":null,"payload":...}`), so its
    /// text must be JSON. Returns how many connections of this node it was
    /// queued for.
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
        let message = match (config.kind, room) {
            (ChannelKind::Echo, _) => return Err(PublishError::NotPublishable(channel())),
            (ChannelKind::Broadcast, None) | (ChannelKind::Room, Some(_)) => message.clone(),
            (ChannelKind::Hub, Some(name)) => {
                let payload = hub::api_payload(message).ok_or(PublishError::NotJson)?;
                Message::text(hub::protocol::room_message(name, None, payload))
            }
            (ChannelKind::Broadcast, Some(_)) | (ChannelKind::Room | ChannelKind::Hub, None) => {
                return Err(PublishError::RoomMismatch {
                    channel: channel(),
                    needs_room: config.kind.has_rooms(),
                });
            }
        };
        let delivered = self.deliver_local(config, room, &message);
        self.remote.publish(|| target(&config.name, room), &message);
        Ok(delivered)
    }

    /// Delivers `message` to this node's connections of the channel (a
    /// broadcast channel, `room` = `None`) or of `room`, as it is: what
    /// the API publishes here, and what another node's members and API
    /// published there. Returns how many it was queued for (none when the
    /// target does not fit the channel's kind: the nodes disagree on it).
    pub(crate) fn deliver_local(
        &self,
        config: &ChannelConfig,
        room: Option<&str>,
        message: &Message,
    ) -> usize {
        let (kind, payload) = (message.kind(), message.payload().clone());
        match (config.kind, room) {
            (ChannelKind::Broadcast, None) => {
                self.fan_out(config, &self.members, kind, payload, None)
            }
            (ChannelKind::Room | ChannelKind::Hub, Some(name)) => {
                self.rooms.get(name).map_or(0, |room| {
                    self.fan_out(config, &room.members, kind, payload, None)
                })
            }
            _ => 0,
        }
    }

    /// Brings the link's interest and this node's presence share of every
    /// target of the channel up to date: after a link started, when
    /// members may already be here.
    pub(crate) fn resync(self: &Arc<Self>, config: &ChannelConfig) {
        match config.kind {
            ChannelKind::Echo => {}
            ChannelKind::Broadcast => self.channel_changed(&config.name, true),
            ChannelKind::Room | ChannelKind::Hub => {
                for room in self.rooms.names() {
                    self.room_changed(&config.name, &room, true);
                }
            }
        }
    }

    /// The channel-wide set of a broadcast channel changed: its presence
    /// share, and its interest when `edge` (a first arrival or a last
    /// departure).
    fn channel_changed(self: &Arc<Self>, name: &str, edge: bool) {
        let target = || Target::Channel(name.to_owned());
        if edge {
            self.remote.reconcile(target, || self.members.len() > 0);
        }
        self.remote.presence_changed(self, target, None);
    }

    /// Room `room` changed: as [`Channel::channel_changed`].
    fn room_changed(self: &Arc<Self>, name: &str, room: &str, edge: bool) {
        let target = || target(name, Some(room));
        if edge {
            self.remote
                .reconcile(target, || self.rooms.get(room).is_some());
        }
        self.remote.presence_changed(self, target, Some(room));
    }

    /// `user`'s first connection arrived or its last left.
    fn user_interest(&self, user: &str) {
        self.remote.reconcile(
            || Target::User {
                user: user.to_owned(),
                channel: None,
            },
            || self.users.contains(user),
        );
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
    /// Whether it is a broadcast channel, as when the connection joined (a
    /// reload that changes it replaces the channel).
    broadcast: bool,
    id: ConnectionId,
    outbox: Outbox,
    encoding: Encoding,
    user: Option<UserId>,
    /// Its identity's grants (refreshed in band), for what it may publish
    /// and, on a hub, join. Boxed: most connections have none, and the
    /// membership lives as long as the connection.
    identity: Option<Box<Identity>>,
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
        self.identity = Some(Box::new(identity));
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
        let (room, presence, created) = channel.rooms.join(
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
        channel.room_changed(&self.channel.name, name, created);
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
        let (presence, removed) = channel.rooms.leave(room, self.id);
        if let (Presence::Departed, Some(user), true) = (presence, &self.user, self.presence_events)
        {
            channel
                .notices
                .record(channel, room, user, PresenceEvent::Leave);
        }
        channel.room_changed(&self.channel.name, room.name(), removed);
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
                let message = Message::from_parts(kind, payload.clone());
                channel.fan_out(config, members, kind, payload, except);
                channel
                    .remote
                    .publish(|| target(&config.name, room), &message);
            }
        }
        Ok(())
    }
}

/// The cluster target of a channel (`room` = `None`) or of one room.
fn target(channel: &str, room: Option<&str>) -> Target {
    match room {
        None => Target::Channel(channel.to_owned()),
        Some(room) => Target::Room {
            channel: channel.to_owned(),
            room: room.to_owned(),
        },
    }
}

/// Delivers `message` to `user`'s connections on this node: those on
/// `channel` only, framed by that channel's compression, or those on every
/// channel, uncompressed (they negotiated different things). What a direct
/// message, a publish to a user and another node's of either deliver.
/// Returns how many connections it was queued for.
pub(crate) fn deliver_to_user(
    users: &Users,
    counters: &Counters,
    user: &str,
    channel: Option<(&Arc<Channel>, &ChannelConfig)>,
    message: &Message,
) -> usize {
    let (kind, payload) = (message.kind(), message.payload().clone());
    match channel {
        Some((channel, config)) => {
            let size = payload.len();
            let delivery = channel.delivery(config, kind, payload);
            let delivered = users.deliver(user, Some(ChannelKey::of(channel)), &delivery, counters);
            counters.traffic.record_sent(config.kind, delivered, size);
            delivered
        }
        None => {
            let compressors = SharedCompressors::default();
            let plain = Compression {
                enabled: false,
                ..Compression::default()
            };
            let delivery = Delivery::new(kind, payload, plain, &compressors, counters);
            users.deliver(user, None, &delivery, counters)
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        for room in std::mem::take(&mut self.rooms) {
            self.leave(&room);
        }
        let channel = &self.channel;
        if let (Some(user), true) = (&self.user, self.indexed)
            && channel.users.remove(user, self.id)
        {
            channel.user_interest(user);
        }
        let (left, _) = channel.members.remove(self.id);
        if self.broadcast {
            channel.channel_changed(&self.channel.name, left == 0);
        }
    }
}
