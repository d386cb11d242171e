//! Counters updated on the hot path and the statistics snapshot that
//! `Handle::stats()` returns.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::config::ChannelKind;

/// Process-wide counters. Relaxed atomics: each is an independent tally read
/// for reporting, never used to synchronise.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    messages_received: AtomicU64,
    messages_delivered: AtomicU64,
    slow_consumers: AtomicU64,
}

impl Counters {
    pub(crate) fn record_received(&self) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_delivered(&self, recipients: usize) {
        self.messages_delivered.fetch_add(recipients as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, channels: Vec<ChannelStats>) -> Stats {
        Stats {
            channels,
            messages_received: self.messages_received.load(Ordering::Relaxed),
            messages_delivered: self.messages_delivered.load(Ordering::Relaxed),
            slow_consumers_closed: self.slow_consumers.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time view of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// One entry per configured channel, in configuration order.
    pub channels: Vec<ChannelStats>,
    /// Data messages received from clients.
    pub messages_received: u64,
    /// Messages queued for clients (one per recipient).
    pub messages_delivered: u64,
    /// Connections closed with 1013 because their send buffer overflowed.
    pub slow_consumers_closed: u64,
}

impl Stats {
    /// The statistics of the channel called `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelStats> {
        self.channels.iter().find(|channel| channel.name == name)
    }
}

/// A point-in-time view of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStats {
    /// The channel's name.
    pub name: String,
    /// Echo, broadcast or room.
    pub kind: ChannelKind,
    /// Open connections on the channel.
    pub connections: usize,
    /// For room channels, each open room and its member count.
    pub rooms: BTreeMap<String, usize>,
}
