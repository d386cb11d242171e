//! Local interest: the topics this node has members for, and the changes
//! not yet handed to the shards. Changes are coalesced for
//! [`SUBSCRIBE_COALESCE`] before they reach a subscriber connection, so a
//! reconnect storm of thousands of joins becomes a few SUBSCRIBE commands,
//! and a topic joined and left within the window costs nothing.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::Notify;

use super::{Shared, routing::Topic};
use crate::sync::lock;

/// How long interest changes gather before they are sent. Short enough
/// that a new room member starts receiving other nodes' messages in tens of
/// milliseconds; long enough to gather a burst of joins (thousands of
/// clients reconnecting within one window) into one command per shard.
pub const SUBSCRIBE_COALESCE: Duration = Duration::from_millis(20);

/// The interest set and its pending changes.
pub(crate) struct Interest {
    state: Mutex<State>,
    /// Wakes the flusher on the first change of a window.
    armed: Notify,
}

pub(crate) struct State {
    wanted: HashMap<Arc<str>, u16>,
    touched: Vec<Topic>,
    armed: bool,
}

impl State {
    /// Whether the node has local interest in `topic`.
    pub(crate) fn wants(&self, topic: &str) -> bool {
        self.wanted.contains_key(topic)
    }

    /// Every wanted topic (name and slot) whose slot passes `owned`.
    pub(crate) fn owned(&self, owned: impl Fn(u16) -> bool) -> HashMap<Arc<str>, u16> {
        self.wanted
            .iter()
            .filter(|(_, slot)| owned(**slot))
            .map(|(name, slot)| (Arc::clone(name), *slot))
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.wanted.len()
    }
}

impl Interest {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                wanted: HashMap::new(),
                touched: Vec::new(),
                armed: false,
            }),
            armed: Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Records interest in `topic` (idempotent).
    pub(crate) fn add(&self, topic: Topic) {
        let mut state = self.lock();
        if state
            .wanted
            .insert(Arc::clone(&topic.name), topic.slot)
            .is_none()
        {
            self.touch(&mut state, topic);
        }
    }

    /// Drops interest in `topic` (idempotent).
    pub(crate) fn remove(&self, topic: Topic) {
        let mut state = self.lock();
        if state.wanted.remove(&topic.name).is_some() {
            self.touch(&mut state, topic);
        }
    }

    fn touch(&self, state: &mut State, topic: Topic) {
        state.touched.push(topic);
        if !state.armed {
            state.armed = true;
            self.armed.notify_one();
        }
    }

    /// The changes of the window that just ended; the next change arms a
    /// new window.
    fn take(&self) -> Vec<Topic> {
        let mut state = self.lock();
        state.armed = false;
        std::mem::take(&mut state.touched)
    }
}

/// Hands coalesced interest changes to the shards owning their topics,
/// until the link stops. Topics whose slot no shard serves wait for the
/// shard's next resync, which covers every wanted topic.
pub(crate) async fn run_flusher(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = shared.interest.armed.notified() => {}
        }
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = tokio::time::sleep(SUBSCRIBE_COALESCE) => {}
        }
        let touched = shared.interest.take();
        let routing = shared.routing.load();
        let mut per_shard: Vec<Vec<Topic>> = vec![Vec::new(); routing.shards().len()];
        let mut seen = HashSet::new();
        for topic in touched {
            if !seen.insert(Arc::clone(&topic.name)) {
                continue;
            }
            if let Some(index) = routing
                .shards()
                .iter()
                .position(|shard| routing.owns(shard, topic.slot))
            {
                per_shard[index].push(topic);
            }
        }
        for (shard, topics) in routing.shards().iter().zip(per_shard) {
            if !topics.is_empty() {
                shard.touch(topics);
            }
        }
    }
}
