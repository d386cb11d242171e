//! A set of connections that receive the same messages: a broadcast
//! channel's subscribers, or one room's members; and who they are: the
//! distinct users among them (presence), kept under the same lock so that
//! counts and members never disagree.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use crate::{
    stats::{Counters, Reason},
    ws::{
        cork::Cork,
        encoder::{Delivery, Encoding, Outgoing},
        outbox::{Outbox, Rejected},
    },
};

/// Connection id, unique for the life of the process.
pub(crate) type ConnectionId = u64;

/// A user's id, as the connection's identity names it.
pub(crate) type UserId = Arc<str>;

/// One connection in a set.
#[derive(Clone)]
pub(crate) struct Member {
    pub(crate) outbox: Outbox,
    pub(crate) encoding: Encoding,
    /// Who the connection belongs to, if it is authenticated.
    pub(crate) user: Option<UserId>,
}

/// What a change of membership did to the set's users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// The user was already there, or the connection has no user.
    Unchanged,
    /// The user's first connection arrived.
    Arrived,
    /// The user's last connection left.
    Departed,
}

/// A page of a set's users, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserPage {
    /// Connections in the set.
    pub(crate) connections: usize,
    /// Distinct users among them.
    pub(crate) users: usize,
    /// Up to the asked number of user ids after the cursor.
    pub(crate) list: Vec<UserId>,
    /// The cursor for the next page, if there is more.
    pub(crate) next: Option<UserId>,
}

#[derive(Default)]
struct Inner {
    /// In id order, which is the order they joined in: a fan-out writes to
    /// them in that order.
    entries: BTreeMap<ConnectionId, Member>,
    /// Connections per user; ordered, so that pages are stable.
    users: BTreeMap<UserId, usize>,
}

/// Connections keyed by id. Delivery holds the read lock only while it
/// queues (never across an `.await`: queueing does not wait).
#[derive(Default)]
pub(crate) struct Members {
    inner: RwLock<Inner>,
}

impl Members {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        crate::sync::read(&self.inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        crate::sync::write(&self.inner)
    }

    /// Inserts a member unless there are `max` already; check and insert
    /// under one lock, so concurrent inserts cannot overshoot. Returns how
    /// many members there are now and what it did to the set's users;
    /// `None` when the set is full.
    pub(crate) fn insert_below(
        &self,
        id: ConnectionId,
        member: Member,
        max: usize,
    ) -> Option<(usize, Presence)> {
        let mut inner = self.write();
        if inner.entries.len() >= max {
            return None;
        }
        let presence = match &member.user {
            Some(user) => {
                let count = inner.users.entry(user.clone()).or_default();
                *count += 1;
                if *count == 1 {
                    Presence::Arrived
                } else {
                    Presence::Unchanged
                }
            }
            None => Presence::Unchanged,
        };
        inner.entries.insert(id, member);
        Some((inner.entries.len(), presence))
    }

    /// Removes a member; returns how many are left and what it did to the
    /// set's users.
    pub(crate) fn remove(&self, id: ConnectionId) -> (usize, Presence) {
        let mut inner = self.write();
        let user = inner.entries.remove(&id).and_then(|member| member.user);
        let presence = match user {
            Some(user) => match inner.users.get_mut(&user) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    Presence::Unchanged
                }
                Some(_) => {
                    inner.users.remove(&user);
                    Presence::Departed
                }
                None => Presence::Unchanged,
            },
            None => Presence::Unchanged,
        };
        (inner.entries.len(), presence)
    }

    pub(crate) fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Connections and distinct users now, and up to `limit` user ids after
    /// `after`. The counts cost O(1); a page O(log n + limit).
    pub(crate) fn users(&self, after: Option<&str>, limit: usize) -> UserPage {
        let inner = self.read();
        let mut ids = match after {
            Some(cursor) => inner.users.range::<str, _>((
                std::ops::Bound::Excluded(cursor),
                std::ops::Bound::Unbounded,
            )),
            None => inner.users.range::<str, _>(..),
        }
        .map(|(user, _)| user.clone());
        let list: Vec<UserId> = ids.by_ref().take(limit).collect();
        let next = ids.next().and(list.last().cloned());
        UserPage {
            connections: inner.entries.len(),
            users: inner.users.len(),
            list,
            next,
        }
    }

    /// Queues `delivery` for every member except `except`, and returns how
    /// many accepted it. Shared bytes are cloned by reference, never copied.
    pub(crate) fn deliver(
        &self,
        delivery: &Delivery,
        except: Option<ConnectionId>,
        counters: &Counters,
    ) -> usize {
        // Released after the lock: no socket is written while it is held.
        let _cork = Cork::hold();
        let inner = self.read();
        let mut delivered = 0;
        for (id, member) in inner.entries.iter() {
            if Some(*id) != except
                && queue(&member.outbox, delivery.item_for(member.encoding), counters)
            {
                delivered += 1;
            }
        }
        delivered
    }

    /// Queues `delivery` for every member that is not `user`'s (a presence
    /// notice is news to the others only).
    pub(crate) fn deliver_to_others(&self, delivery: &Delivery, user: &str, counters: &Counters) {
        let _cork = Cork::hold();
        let inner = self.read();
        for member in inner.entries.values() {
            if member.user.as_deref() != Some(user) {
                queue(&member.outbox, delivery.item_for(member.encoding), counters);
            }
        }
    }

    /// Connections and every distinct user: this node's presence share of
    /// the set.
    pub(crate) fn share(&self) -> (u64, Vec<UserId>) {
        let inner = self.read();
        (
            inner.entries.len() as u64,
            inner.users.keys().cloned().collect(),
        )
    }

    /// Every member's outbox.
    pub(crate) fn outboxes(&self) -> Vec<Outbox> {
        self.read()
            .entries
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::SlowConsumer, ws::outbox};

    fn member(user: Option<&str>) -> Member {
        Member {
            outbox: outbox::channel(1024, SlowConsumer::Close).0,
            encoding: Encoding::Plain,
            user: user.map(Arc::from),
        }
    }

    #[test]
    fn a_users_first_connection_arrives_and_its_last_departs() {
        let members = Members::default();
        let steps = [
            (1, Some("u1"), Presence::Arrived),
            (2, Some("u1"), Presence::Unchanged),
            (3, None, Presence::Unchanged),
            (4, Some("u2"), Presence::Arrived),
        ];
        for (count, (id, user, expected)) in steps.into_iter().enumerate() {
            assert_eq!(
                members.insert_below(id, member(user), 10),
                Some((count + 1, expected))
            );
        }
        assert_eq!(members.insert_below(5, member(None), 4), None, "full");
        let page = members.users(None, 10);
        assert_eq!((page.connections, page.users), (4, 2));
        assert_eq!(members.share(), (4, vec![Arc::from("u1"), Arc::from("u2")]));
        assert_eq!(members.remove(1), (3, Presence::Unchanged));
        assert_eq!(members.remove(2), (2, Presence::Departed));
        assert_eq!(members.remove(3), (1, Presence::Unchanged));
        assert_eq!(members.remove(99), (1, Presence::Unchanged), "unknown id");
        assert_eq!(members.remove(4), (0, Presence::Departed));
    }

    #[test]
    fn user_pages_follow_the_cursor() {
        let members = Members::default();
        for (id, user) in ["c", "a", "e", "b", "d"].into_iter().enumerate() {
            members.insert_below(id as u64, member(Some(user)), 100);
        }
        let ids = |page: &UserPage| page.list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let first = members.users(None, 2);
        assert_eq!(
            (ids(&first), first.next.as_deref()),
            (vec!["a".into(), "b".into()], Some("b"))
        );
        let second = members.users(first.next.as_deref(), 2);
        assert_eq!(ids(&second), ["c", "d"]);
        let last = members.users(second.next.as_deref(), 2);
        assert_eq!((ids(&last), last.next), (vec!["e".to_owned()], None));
        assert_eq!(
            members.users(None, 5).next,
            None,
            "an exact fit has no next page"
        );
    }
}
