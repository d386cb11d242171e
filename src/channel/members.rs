//! A set of connections that receive the same messages: a broadcast
//! channel's subscribers, or one room's members.

use std::{
    cell::OnceCell,
    collections::HashMap,
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use bytes::Bytes;

use crate::{
    config::CompressionMode,
    message::MessageKind,
    protocol::window_bits,
    stats::{Counters, Reason},
    ws::{
        deflate::negotiate::Agreement,
        frame,
        outbox::{Outbox, Outgoing, Rejected},
    },
};

/// Connection id, unique for the life of the process.
pub(crate) type ConnectionId = u64;

/// How a connection takes its messages, fixed when it joined: what it
/// negotiated never changes, whatever a reload does to the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// No permessage-deflate: plain frames.
    Plain,
    /// Shared-mode deflate: frames compressed once per message for every
    /// connection with the same window, without context takeover.
    Shared { window_bits: u8 },
    /// Dedicated-mode deflate: the connection's own writer compresses, with
    /// the context it negotiated.
    Dedicated,
}

impl Encoding {
    /// The encoding for a connection that agreed `deflate` (or nothing) on
    /// a channel compressing in `mode`.
    pub(crate) fn negotiated(deflate: Option<&Agreement>, mode: CompressionMode) -> Self {
        match (deflate, mode) {
            (None, _) => Self::Plain,
            (Some(agreement), CompressionMode::Shared) => Self::Shared {
                window_bits: agreement.server_max_window_bits,
            },
            (Some(_), CompressionMode::Dedicated) => Self::Dedicated,
        }
    }
}

/// One connection in a set.
#[derive(Clone)]
pub(crate) struct Member {
    pub(crate) outbox: Outbox,
    pub(crate) encoding: Encoding,
}

/// Compresses a payload for shared-mode members with a given window, or
/// says it should go out plain (below the threshold, compression off).
pub(crate) type SharedCompressor<'c> = dyn Fn(&[u8], u8) -> Option<Bytes> + 'c;

/// One message on its way to many connections. Each encoding is produced
/// at most once, when the first member that needs it is reached, and its
/// bytes are shared by every member that takes it.
pub(crate) struct Delivery<'c> {
    kind: MessageKind,
    payload: Bytes,
    plain: OnceCell<Bytes>,
    /// Compressed frames by window bits 9-15 (`None`: send plain).
    compressed: [OnceCell<Option<Bytes>>; window_bits::COUNT],
    compress: &'c SharedCompressor<'c>,
}

impl<'c> Delivery<'c> {
    pub(crate) fn new(
        kind: MessageKind,
        payload: Bytes,
        compress: &'c SharedCompressor<'c>,
    ) -> Self {
        Self {
            kind,
            payload,
            plain: OnceCell::new(),
            compressed: Default::default(),
            compress,
        }
    }

    fn item_for(&self, encoding: Encoding) -> Outgoing {
        let plain = || {
            self.plain
                .get_or_init(|| frame::encode_message(self.kind, &self.payload, false))
                .clone()
        };
        match encoding {
            Encoding::Dedicated => Outgoing::Message(self.kind, self.payload.clone()),
            Encoding::Plain => Outgoing::Wire(plain()),
            Encoding::Shared { window_bits } => {
                let slot = &self.compressed[usize::from(
                    window_bits.clamp(window_bits::MIN, window_bits::MAX) - window_bits::MIN,
                )];
                match slot.get_or_init(|| (self.compress)(&self.payload, window_bits)) {
                    Some(compressed) => Outgoing::Wire(compressed.clone()),
                    None => Outgoing::Wire(plain()),
                }
            }
        }
    }
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
