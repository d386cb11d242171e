//! A set of connections that receive the same messages: a broadcast
//! channel's subscribers, or one room's members.

use std::{
    collections::HashMap,
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use crate::{
    stats::{Counters, Reason},
    ws::{
        encoder::{Delivery, Encoding},
        outbox::{Outbox, Outgoing, Rejected},
    },
};

/// Connection id, unique for the life of the process.
pub(crate) type ConnectionId = u64;

/// One connection in a set.
#[derive(Clone)]
pub(crate) struct Member {
    pub(crate) outbox: Outbox,
    pub(crate) encoding: Encoding,
}

/// Connections keyed by id. Delivery holds the read lock only while it
/// queues (never across an `.await`: queueing does not wait).
#[derive(Default)]
pub(crate) struct Members {
    entries: RwLock<HashMap<ConnectionId, Member>>,
}

impl Members {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<ConnectionId, Member>> {
        crate::sync::read(&self.entries)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<ConnectionId, Member>> {
        crate::sync::write(&self.entries)
    }

    pub(crate) fn insert(&self, id: ConnectionId, member: Member) {
        self.write().insert(id, member);
    }

    /// Inserts a member unless there are `max` already; check and insert
    /// under one lock. Returns whether it was inserted.
    pub(crate) fn insert_below(&self, id: ConnectionId, member: Member, max: usize) -> bool {
        let mut entries = self.write();
        if entries.len() >= max {
            return false;
        }
        entries.insert(id, member);
        true
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

    /// Queues `delivery` for every member except `except`, and returns how
    /// many accepted it. Shared bytes are cloned by reference, never copied.
    pub(crate) fn deliver(
        &self,
        delivery: &Delivery,
        except: Option<ConnectionId>,
        counters: &Counters,
    ) -> usize {
        let entries = self.read();
        let mut delivered = 0;
        for (id, member) in entries.iter() {
            if Some(*id) != except
                && queue(&member.outbox, delivery.item_for(member.encoding), counters)
            {
                delivered += 1;
            }
        }
        delivered
    }

    /// Every member's outbox.
    pub(crate) fn outboxes(&self) -> Vec<Outbox> {
        self.read()
            .values()
            .map(|member| member.outbox.clone())
            .collect()
    }
}

/// Queues one item for one connection, counting a slow consumer it reveals.
pub(crate) fn queue(outbox: &Outbox, item: Outgoing, counters: &Counters) -> bool {
    match outbox.send(item) {
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
