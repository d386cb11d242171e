//! The rooms of a room channel: created on first join, removed when the last
//! member leaves.
//!
//! Joins and leaves take the map's write lock, so "room is empty, remove it"
//! and "join this room" cannot interleave; delivery only reads.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use super::{
    JoinError,
    members::{ConnectionId, Member, Members, Presence},
};

/// One room.
pub(crate) struct Room {
    name: String,
    pub(crate) members: Members,
}

impl Room {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// A channel's rooms by name.
#[derive(Default)]
pub(crate) struct Rooms {
    rooms: RwLock<HashMap<String, Arc<Room>>>,
}

impl Rooms {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<Room>>> {
        crate::sync::read(&self.rooms)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<Room>>> {
        crate::sync::write(&self.rooms)
    }

    /// Adds a member to the room `name`, creating it if there are fewer than
    /// `max_rooms`; returns the room, what the join did to its users, and
    /// whether it created the room (the member is its first).
    pub(crate) fn join(
        &self,
        name: &str,
        id: ConnectionId,
        member: Member,
        max_rooms: usize,
        max_members: usize,
    ) -> Result<(Arc<Room>, Presence, bool), JoinError> {
        let mut rooms = self.write();
        let room = match rooms.get(name) {
            Some(room) => room.clone(),
            None if rooms.len() >= max_rooms => return Err(JoinError::TooManyRooms),
            None => {
                let room = Arc::new(Room {
                    name: name.to_owned(),
                    members: Members::default(),
                });
                rooms.insert(name.to_owned(), room.clone());
                room
            }
        };
        // A new room has no members: only an existing one can be full.
        let (count, presence) = room
            .members
            .insert_below(id, member, max_members)
            .ok_or(JoinError::RoomFull)?;
        Ok((room, presence, count == 1))
    }

    /// Removes a member; the last one removes the room. Returns what the
    /// leave did to the room's users, and whether it removed the room.
    pub(crate) fn leave(&self, room: &Room, id: ConnectionId) -> (Presence, bool) {
        let mut rooms = self.write();
        let (left, presence) = room.members.remove(id);
        if left == 0 {
            rooms.remove(&room.name);
        }
        (presence, left == 0)
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Room>> {
        self.read().get(name).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    /// The name of every room.
    pub(crate) fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    pub(crate) fn sizes(&self) -> BTreeMap<String, usize> {
        self.read()
            .iter()
            .map(|(name, room)| (name.clone(), room.members.len()))
            .collect()
    }
}
