//! The other nodes, as the channels see them: the cluster link, when one
//! runs. Every fan-out with recipients beyond the sender delivers locally
//! first, then hands the message to [`Remote::publish`] (at most once,
//! never waiting); membership changes keep the link's interest and this
//! node's presence share in step with the local members.
//!
//! Without a link every method returns at once: a single node pays one
//! atomic load per fan-out.
//!
//! # Interest follows members
//!
//! A target (a broadcast channel, a room, a user) is subscribed while it
//! has a local member. The membership code calls [`Remote::reconcile`] on
//! each first arrival and last departure it sees, after its own lock is
//! released; `reconcile` then reads whether the target has members *now*,
//! under one mutex, and tells the link. Whatever the interleaving of
//! concurrent joins and leaves, the last reconcile of a target reads the
//! state after the last change, so the link ends up wanting exactly the
//! targets with members. (Telling the link what each change said, in the
//! order the calls happen to run, could leave a room with members
//! unsubscribed.)

use std::sync::{
    Arc, Mutex, Weak,
    atomic::{AtomicBool, Ordering},
};

use arc_swap::ArcSwapOption;

use super::Channel;
use crate::{
    cluster::{Link, LinkState, LinkStats, PresenceSource, Target},
    message::Message,
    sync::lock,
};

/// The cluster link of one server, if it runs.
#[derive(Default)]
pub(crate) struct Remote {
    link: ArcSwapOption<Link>,
    /// Serialises [`Remote::reconcile`].
    interest: Mutex<()>,
    /// Whether the server is serving, so that a link may run: set by
    /// `Server::serve` for its duration.
    active: AtomicBool,
}

impl Remote {
    /// The running link.
    pub(crate) fn link(&self) -> Option<Arc<Link>> {
        self.link.load_full()
    }

    /// Puts `link` in place (or none) and returns the one it replaces.
    pub(crate) fn install(&self, link: Option<Arc<Link>>) -> Option<Arc<Link>> {
        self.link.swap(link)
    }

    /// Whether links may run (the server is serving).
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub(crate) fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
    }

    /// The link's health, if a link runs.
    pub(crate) fn state(&self) -> Option<LinkState> {
        self.link.load().as_ref().map(|link| link.state())
    }

    /// The link's counters, if a link runs.
    pub(crate) fn stats(&self) -> Option<LinkStats> {
        self.link.load().as_ref().map(|link| link.stats())
    }

    /// Hands `message` to the other nodes' members of `target` (built only
    /// when a link runs).
    pub(crate) fn publish(&self, target: impl FnOnce() -> Target, message: &Message) {
        if let Some(link) = &*self.link.load() {
            // The sender is on this node: other nodes have nobody to spare.
            link.publish(&target(), message, None);
        }
    }

    /// Asks the other nodes to close `user`'s connections but `except`.
    pub(crate) fn publish_disconnect(
        &self,
        user: &str,
        except: Option<u64>,
        code: u16,
        reason: &str,
    ) {
        if let Some(link) = &*self.link.load() {
            link.publish_disconnect(user, except, code, reason);
        }
    }

    /// Tells the link whether `target` has local members, as `present`
    /// reads it now (see the module docs). Call it after a target's first
    /// member arrived or its last left, outside the lock that changed it.
    pub(crate) fn reconcile(
        &self,
        target: impl FnOnce() -> Target,
        present: impl FnOnce() -> bool,
    ) {
        let Some(link) = self.link() else { return };
        let _serialised = lock(&self.interest);
        let target = target();
        if present() {
            link.subscribe(&target);
        } else {
            link.unsubscribe(&target);
        }
    }

    /// Tells the link that this node's share of `room` of `channel` (or of
    /// the whole broadcast channel) changed; it reads the share when it
    /// writes it.
    pub(crate) fn presence_changed(
        &self,
        channel: &Arc<Channel>,
        target: impl FnOnce() -> Target,
        room: Option<&str>,
    ) {
        if let Some(link) = &*self.link.load() {
            let source = Share {
                channel: Arc::downgrade(channel),
                room: room.map(str::to_owned),
            };
            link.presence_changed(&target(), Arc::new(source));
        }
    }
}

/// Reads one target's local share when the link writes it: the channel's
/// members, or a room's (none once the channel or the room is gone).
struct Share {
    channel: Weak<Channel>,
    room: Option<String>,
}

impl PresenceSource for Share {
    fn share(&self) -> (u64, Vec<Arc<str>>) {
        let Some(channel) = self.channel.upgrade() else {
            return (0, Vec::new());
        };
        match &self.room {
            None => channel.members.share(),
            Some(name) => channel
                .rooms
                .get(name)
                .map_or((0, Vec::new()), |room| room.members.share()),
        }
    }
}
