//! Which shard carries which topic: the current set of shard workers and,
//! in cluster mode, the slot table mapping each of the 16384 slots to one.
//! Swapped whole when the topology changes, read lock-free on every
//! publish.

use std::sync::Arc;

use super::slot::{SLOTS, slot};

/// A Redis channel name with its slot, computed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Topic {
    pub(crate) name: Arc<str>,
    pub(crate) slot: u16,
}

impl Topic {
    pub(crate) fn new(name: String) -> Self {
        let slot = slot(name.as_bytes());
        Self {
            name: name.into(),
            slot,
        }
    }
}

/// Inclusive slot ranges, as `CLUSTER SHARDS` reports them.
pub(crate) type SlotRanges = Vec<(u16, u16)>;

/// Marks a slot no shard serves (its master failed, or no topology yet).
const UNASSIGNED: u16 = u16::MAX;

/// The shards (`S`: the shard workers' handles) and who owns which slot.
pub(crate) struct Routing<S> {
    shards: Vec<Arc<S>>,
    /// Per slot an index into `shards`; empty in standalone mode, where the
    /// one shard owns every slot.
    slots: Vec<u16>,
}

impl<S> Routing<S> {
    /// No shard: nothing can be published or subscribed (cluster mode
    /// before its first topology).
    pub(crate) fn empty() -> Self {
        Self {
            shards: Vec::new(),
            slots: vec![UNASSIGNED; usize::from(SLOTS)],
        }
    }

    /// One shard owning every slot.
    pub(crate) fn standalone(shard: Arc<S>) -> Self {
        Self {
            shards: vec![shard],
            slots: Vec::new(),
        }
    }

    /// Shards with the slot ranges each owns (inclusive bounds).
    pub(crate) fn cluster(shards: Vec<(Arc<S>, SlotRanges)>) -> Self {
        let mut slots = vec![UNASSIGNED; usize::from(SLOTS)];
        let mut handles = Vec::with_capacity(shards.len());
        for (index, (handle, ranges)) in shards.into_iter().enumerate() {
            for (start, end) in ranges {
                let end = end.min(SLOTS - 1);
                for slot in start..=end {
                    slots[usize::from(slot)] = index as u16;
                }
            }
            handles.push(handle);
        }
        Self {
            shards: handles,
            slots,
        }
    }

    pub(crate) fn shards(&self) -> &[Arc<S>] {
        &self.shards
    }

    /// The shard serving `slot`, if any.
    pub(crate) fn shard_for(&self, slot: u16) -> Option<&Arc<S>> {
        if self.slots.is_empty() {
            return self.shards.first();
        }
        match self.slots[usize::from(slot)] {
            UNASSIGNED => None,
            index => self.shards.get(usize::from(index)),
        }
    }

    /// Whether `shard` serves `slot`.
    pub(crate) fn owns(&self, shard: &S, slot: u16) -> bool {
        self.shard_for(slot)
            .is_some_and(|owner| std::ptr::eq(Arc::as_ptr(owner), shard))
    }

    /// Whether every slot has a shard.
    pub(crate) fn covers_every_slot(&self) -> bool {
        !self.shards.is_empty() && self.slots.iter().all(|&index| index != UNASSIGNED)
    }

    /// The slot ranges each shard owns, in shard order (for comparing two
    /// routings).
    pub(crate) fn slot_owners(&self) -> &[u16] {
        &self.slots
    }
}
