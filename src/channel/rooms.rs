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
    members::{ConnectionId, Member, Members},
};

/// One room.
pub(crate) struct Room {
    name: String,
    pub(crate) members: Members,
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

    pub(crate) fn join(
        &self,
        name: &str,
        id: ConnectionId,
        member: Member,
        max_rooms: usize,
        max_members: usize,
    ) -> Result<Arc<Room>, JoinError> {
        let mut rooms = self.write();
        let room = match rooms.get(name) {
            Some(room) if room.members.len() >= max_members => return Err(JoinError::RoomFull),
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
        room.members.insert(id, member);
        Ok(room)
    }

    pub(crate) fn leave(&self, room: &Room, id: ConnectionId) {
        let mut rooms = self.write();
        if room.members.remove(id) == 0 {
            rooms.remove(&room.name);
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Room>> {
        self.read().get(name).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    pub(crate) fn sizes(&self) -> BTreeMap<String, usize> {
        self.read()
            .iter()
            .map(|(name, room)| (name.clone(), room.members.len()))
            .collect()
    }
}
