//! The node's user index: every authenticated connection by user id, on
//! every channel, for what addresses a user rather than a channel: publish
//! to a user, direct messages, disconnect a user ("log out my other
//! devices"), and listing a user's connections.
//!
//! A connection is registered when it joins its channel and removed when
//! its membership drops, on every path. One lock, held only to copy out the
//! outboxes a delivery needs or to queue (which never waits).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::SystemTime,
};

use super::members::{ConnectionId, Member, UserId, queue};
use crate::{
    stats::Counters,
    sync::{read, write},
    ws::{cork::Cork, encoder::Delivery},
};

/// Identifies a live channel (not its name: a reload may replace a channel
/// with another of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ChannelKey(usize);

impl ChannelKey {
    pub(crate) fn of<T>(channel: &Arc<T>) -> Self {
        Self(Arc::as_ptr(channel) as *const () as usize)
    }
}

/// One of a user's connections.
#[derive(Clone)]
pub(crate) struct UserConnection {
    pub(crate) channel: ChannelKey,
    /// The channel's name when the connection joined.
    pub(crate) channel_name: Arc<str>,
    /// The room of a room channel's connection.
    pub(crate) room: Option<Arc<str>>,
    pub(crate) since: SystemTime,
    pub(crate) member: Member,
}

/// What a listing says about one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The connection id (unique for the life of the process).
    pub id: u64,
    /// The channel's name.
    pub channel: String,
    /// The room, for room channels.
    pub room: Option<String>,
    /// When it was admitted.
    pub since: SystemTime,
}

/// Every authenticated connection of this node, by user.
#[derive(Default)]
pub(crate) struct Users {
    by_user: RwLock<HashMap<UserId, HashMap<ConnectionId, UserConnection>>>,
}

impl Users {
    /// Registers one of `user`'s connections; returns whether it is the
    /// user's first on this node.
    pub(crate) fn add(&self, user: &UserId, id: ConnectionId, connection: UserConnection) -> bool {
        let mut by_user = write(&self.by_user);
        let connections = by_user.entry(user.clone()).or_default();
        connections.insert(id, connection);
        connections.len() == 1
    }

    /// Removes one of `user`'s connections; returns whether it was the
    /// user's last on this node.
    pub(crate) fn remove(&self, user: &UserId, id: ConnectionId) -> bool {
        let mut by_user = write(&self.by_user);
        let Some(connections) = by_user.get_mut(user) else {
            return false;
        };
        connections.remove(&id);
        let last = connections.is_empty();
        if last {
            by_user.remove(user);
        }
        last
    }

    /// Whether `user` has a connection on this node.
    pub(crate) fn contains(&self, user: &str) -> bool {
        read(&self.by_user).contains_key(user)
    }

    /// Every user with a connection on this node.
    pub(crate) fn ids(&self) -> Vec<UserId> {
        read(&self.by_user).keys().cloned().collect()
    }

    /// Queues `delivery` for each of `user`'s connections (on `channel`
    /// only, if given); returns how many accepted it.
    pub(crate) fn deliver(
        &self,
        user: &str,
        channel: Option<ChannelKey>,
        delivery: &Delivery,
        counters: &Counters,
    ) -> usize {
        // Released after the lock: no socket is written while it is held.
        let _cork = Cork::hold();
        let by_user = read(&self.by_user);
        let Some(connections) = by_user.get(user) else {
            return 0;
        };
        connections
            .values()
            .filter(|connection| channel.is_none_or(|key| key == connection.channel))
            .filter(|connection| {
                let member = &connection.member;
                queue(&member.outbox, delivery.item_for(member.encoding), counters)
            })
            .count()
    }

    /// Starts the close handshake with each of `user`'s connections but
    /// `except`; returns how many it started.
    pub(crate) fn disconnect(
        &self,
        user: &str,
        except: Option<ConnectionId>,
        code: u16,
        reason: &str,
    ) -> usize {
        let outboxes: Vec<_> = read(&self.by_user)
            .get(user)
            .map_or_else(Vec::new, |connections| {
                connections
                    .iter()
                    .filter(|(id, _)| Some(**id) != except)
                    .map(|(_, connection)| connection.member.outbox.clone())
                    .collect()
            });
        outboxes
            .iter()
            .filter(|outbox| outbox.close(code, reason))
            .count()
    }

    /// `user`'s connections, oldest first.
    pub(crate) fn connections(&self, user: &str) -> Vec<ConnectionInfo> {
        let mut list: Vec<_> = read(&self.by_user)
            .get(user)
            .map_or_else(Vec::new, |connections| {
                connections
                    .iter()
                    .map(|(id, connection)| ConnectionInfo {
                        id: *id,
                        channel: connection.channel_name.to_string(),
                        room: connection.room.as_deref().map(str::to_owned),
                        since: connection.since,
                    })
                    .collect()
            });
        list.sort_by_key(|info| (info.since, info.id));
        list
    }

    /// Users with at least one connection on this node.
    pub(crate) fn len(&self) -> usize {
        read(&self.by_user).len()
    }
}
