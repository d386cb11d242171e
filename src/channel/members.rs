//! A set of connections that receive the same messages: a broadcast
//! channel's subscribers, or one room's members.

use std::{
    collections::HashMap,
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use bytes::Bytes;

use crate::{
    stats::{Counters, Reason},
    ws::outbox::{Outbox, Rejected},
};

/// Connection id, unique for the life of the process.
pub(crate) type ConnectionId = u64;

/// Connections keyed by id. Delivery holds the read lock only while it
/// queues (never across an `.await`: queueing does not wait).
#[derive(Default)]
pub(crate) struct Members {
    entries: RwLock<HashMap<ConnectionId, Outbox>>,
}

impl Members {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<ConnectionId, Outbox>> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<ConnectionId, Outbox>> {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn insert(&self, id: ConnectionId, outbox: Outbox) {
        self.write().insert(id, outbox);
    }

    /// Removes a member; returns how many are left.
    pub(crate) fn remove(&self, id: ConnectionId) -> usize {
        let mut entries = self.write();
        entries.remove(&id);
        entries.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    /// Queues the same encoded frame for every member except `except`, and
    /// returns how many accepted it.
    pub(crate) fn deliver(
        &self,
        frame: &Bytes,
        except: Option<ConnectionId>,
        counters: &Counters,
    ) -> usize {
        let entries = self.read();
        let mut delivered = 0;
        for (id, outbox) in entries.iter() {
            if Some(*id) != except && queue(outbox, frame.clone(), counters) {
                delivered += 1;
            }
        }
        counters.record_delivered(delivered);
        delivered
    }

    /// Starts the close handshake with every member.
    pub(crate) fn close_all(&self, code: u16, reason: &str) {
        for outbox in self.read().values() {
            outbox.close(code, reason);
        }
    }
}

/// Queues one frame for one connection, counting a slow consumer it reveals.
pub(crate) fn queue(outbox: &Outbox, frame: Bytes, counters: &Counters) -> bool {
    match outbox.send(frame) {
        Ok(()) => true,
        Err(Rejected::SlowConsumer) => {
            counters.record(Reason::SlowConsumer);
            false
        }
        Err(Rejected::Dropped) => {
            counters.record_dropped();
            false
        }
        Err(Rejected::Closing) => false,
    }
}
