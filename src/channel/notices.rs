//! Presence notices (`presence_events = true`): a user's first connection
//! joining a room and its last leaving are told to the room's other members,
//! coalesced so that churn does not become a storm of its own.
//!
//! Changes wait at most [`FLUSH_INTERVAL`]; within it a leave and a join of
//! the same user in the same room cancel out (a reconnect or a page reload
//! says nothing), and a room with more than [`MAX_NOTICES_PER_ROOM`] net
//! changes in one interval gets one summary instead:
//! `{"type":"presence","event":"changed","room":...,"joined":n,"left":m}`.
//! A flush task runs only while changes are pending.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use bytes::Bytes;

use super::{
    Channel,
    hub::protocol::{self, PresenceEvent},
    members::UserId,
    rooms::Room,
};
use crate::{config::Compression, message::MessageKind, sync::lock, ws::encoder::Delivery};

/// How long a change may wait to be coalesced with others: short enough to
/// feel live, long enough to absorb a reconnect.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Net changes of one room told one by one in one interval; beyond, a
/// summary. Bounds what a reconnect storm sends every member.
pub(crate) const MAX_NOTICES_PER_ROOM: usize = 32;

/// Pending changes, keyed by room (its address: a room that empties and is
/// recreated is another room) and user.
#[derive(Default)]
pub(crate) struct Notices {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    changes: HashMap<(usize, UserId), (Arc<Room>, PresenceEvent)>,
    /// A flush task is running (it clears this when it finds nothing left).
    flushing: bool,
}

impl Notices {
    /// Records that `user` joined or left `room`, and starts the flush
    /// task if none runs.
    pub(crate) fn record(
        &self,
        channel: &Arc<Channel>,
        room: &Arc<Room>,
        user: &UserId,
        event: PresenceEvent,
    ) {
        let key = (Arc::as_ptr(room) as usize, user.clone());
        let mut pending = lock(&self.pending);
        match pending.changes.get(&key) {
            // The opposite change is pending: together they say nothing.
            Some((_, earlier)) if *earlier != event => {
                pending.changes.remove(&key);
            }
            _ => {
                pending.changes.insert(key, (room.clone(), event));
            }
        }
        if !pending.flushing && !pending.changes.is_empty() {
            pending.flushing = true;
            tokio::spawn(flush(Arc::downgrade(channel)));
        }
    }

    /// Takes what is pending; clears the flushing flag when nothing is.
    fn take(&self) -> Vec<(Arc<Room>, UserId, PresenceEvent)> {
        let mut pending = lock(&self.pending);
        if pending.changes.is_empty() {
            pending.flushing = false;
        }
        pending
            .changes
            .drain()
            .map(|((_, user), (room, event))| (room, user, event))
            .collect()
    }
}

/// One room's net changes of one interval.
type RoomChanges = (Arc<Room>, Vec<(UserId, PresenceEvent)>);

/// Sends pending notices every [`FLUSH_INTERVAL`] until none are left or
/// the channel is gone.
async fn flush(channel: Weak<Channel>) {
    loop {
        tokio::time::sleep(FLUSH_INTERVAL).await;
        let Some(channel) = channel.upgrade() else {
            return;
        };
        let changes = channel.notices.take();
        if changes.is_empty() {
            return;
        }
        let mut by_room: HashMap<usize, RoomChanges> = HashMap::new();
        for (room, user, event) in changes {
            by_room
                .entry(Arc::as_ptr(&room) as usize)
                .or_insert_with(|| (room, Vec::new()))
                .1
                .push((user, event));
        }
        for (room, mut events) in by_room.into_values() {
            events.sort();
            // Notices are small: plain frames for everyone.
            let plain = Compression {
                enabled: false,
                ..Compression::default()
            };
            let delivery = |text: String| {
                Delivery::new(
                    MessageKind::Text,
                    Bytes::from(text),
                    plain,
                    &channel.compressors,
                    &channel.counters,
                )
            };
            if events.len() > MAX_NOTICES_PER_ROOM {
                let joined = events
                    .iter()
                    .filter(|(_, event)| *event == PresenceEvent::Join)
                    .count();
                let summary =
                    protocol::presence_summary(room.name(), joined, events.len() - joined);
                room.members
                    .deliver(&delivery(summary), None, &channel.counters);
            } else {
                for (user, event) in &events {
                    let notice = delivery(protocol::presence(*event, room.name(), user));
                    room.members
                        .deliver_to_others(&notice, user, &channel.counters);
                }
            }
        }
    }
}
