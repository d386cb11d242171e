//! The cluster link as the server runs it: started by `Server::serve`,
//! replaced by a reload that changes `[cluster]`, stopped once the drain is
//! over; and the inbound hook, which delivers what other nodes publish to
//! this node's connections only (never publishing it again), through the
//! same channel code as local fan-outs, under the current snapshot's
//! policy.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;

use super::{
    error::Error,
    handle::{MAX_CLOSE_REASON, is_application_close_code},
    state::ServerState,
};
use crate::{
    channel::{Users, deliver_to_user},
    cluster::{Body, ClusterSettings, Envelope, Inbound, Link, Target},
    snapshot::Snapshot,
    stats::Counters,
    ws::cork::Cork,
};

impl ServerState {
    /// Starts the link of the running configuration, if it has
    /// `[cluster]`; from now on reloads may start and replace links.
    pub(super) fn start_cluster(self: &Arc<Self>) -> Result<(), Error> {
        // Active first: a reload from now on replaces what starts here.
        self.remote.set_active(true);
        let settings = self
            .snapshot
            .load()
            .config
            .cluster
            .as_ref()
            .map(|cluster| cluster.settings.clone());
        if let Some(settings) = settings
            && let Err(error) = self.run_link(settings)
        {
            self.remote.set_active(false);
            return Err(error);
        }
        Ok(())
    }

    /// Follows a reload whose `[cluster]` differs from the running one's
    /// (`settings`, or none). The old link stops first: when the node name
    /// stays, the new link's first write replaces the presence share; when
    /// it changes (or the table is gone) the old share is removed. Cross-node
    /// messages of the moment in between are lost, as at-most-once allows.
    /// The settings were checked before the reload was applied; a link that
    /// cannot start all the same is logged, and the node runs alone.
    pub(super) async fn replace_cluster(self: &Arc<Self>, settings: Option<ClusterSettings>) {
        if !self.remote.is_active() {
            return;
        }
        if let Some(old) = self.remote.install(None) {
            let renamed = settings
                .as_ref()
                .is_none_or(|new| new.node_name != old.node_name());
            if renamed {
                old.shutdown().await;
            } else {
                old.stop().await;
            }
        }
        if let Some(settings) = settings
            && let Err(error) = self.run_link(settings)
        {
            tracing::error!("the new [cluster] link cannot start; this node runs alone: {error:#}");
        }
    }

    /// Stops the link at the end of the drain, removing this node's
    /// presence share.
    pub(super) async fn stop_cluster(&self) {
        self.remote.set_active(false);
        if let Some(link) = self.remote.install(None) {
            link.shutdown().await;
        }
    }

    /// Starts a link, puts it in place and tells it about every target
    /// that has members already.
    fn run_link(self: &Arc<Self>, settings: ClusterSettings) -> Result<(), Error> {
        let inbound = Arrivals {
            snapshot: Arc::downgrade(&self.snapshot),
            users: Arc::downgrade(&self.users),
            counters: self.counters.clone(),
        };
        let link = Link::start(settings, inbound)?;
        tracing::info!(
            node = link.node_name(),
            redis = %link.settings().url.address,
            "cluster link started"
        );
        self.remote.install(Some(Arc::new(link)));
        let snapshot = self.snapshot.load();
        for entry in &snapshot.channels {
            entry.live.resync(&entry.config);
        }
        for user in self.users.ids() {
            self.remote.reconcile(
                || Target::User {
                    user: user.to_string(),
                    channel: None,
                },
                || self.users.contains(&user),
            );
        }
        Ok(())
    }
}

/// What the inbound hook reaches: weakly, as the link it runs on is held by
/// the server state these belong to.
struct Arrivals {
    snapshot: Weak<ArcSwap<Snapshot>>,
    users: Weak<Users>,
    counters: Arc<Counters>,
}

impl Inbound for Arrivals {
    /// Delivers one envelope from another node to this node's recipients.
    /// A target this node does not have (a channel another node's
    /// configuration has, a room with no member here) receives nothing.
    fn deliver(&self, envelope: Envelope) {
        let (Some(snapshot), Some(users)) = (self.snapshot.upgrade(), self.users.upgrade()) else {
            return;
        };
        let snapshot = snapshot.load();
        match (envelope.target, envelope.body) {
            (Target::Channel(name), Body::Message(message)) => {
                if let Some(entry) = snapshot.channel(&name) {
                    entry.live.deliver_local(&entry.config, None, &message);
                }
            }
            (Target::Room { channel, room }, Body::Message(message)) => {
                if let Some(entry) = snapshot.channel(&channel) {
                    entry
                        .live
                        .deliver_local(&entry.config, Some(&room), &message);
                }
            }
            (Target::User { user, channel }, Body::Message(message)) => {
                let on = match &channel {
                    None => None,
                    Some(name) => match snapshot.channel(name) {
                        Some(entry) => Some((&entry.live, &*entry.config)),
                        None => return,
                    },
                };
                deliver_to_user(&users, &self.counters, &user, on, &message);
            }
            (Target::User { user, .. }, Body::Disconnect { code, reason }) => {
                // Checked by the node that sent it; a close frame this node
                // could not send is not sent.
                if is_application_close_code(code) && reason.len() <= MAX_CLOSE_REASON {
                    users.disconnect(&user, envelope.except, code, &reason);
                }
            }
            // Refused by the decoder: a disconnect names a user.
            (Target::Channel(_) | Target::Room { .. }, Body::Disconnect { .. }) => {}
        }
    }

    /// Corked: the messages one read from Redis brought in leave as one
    /// write per recipient, as a local publisher's burst does. A node
    /// behind on its share catches up in few large writes instead of one
    /// per message and recipient.
    fn batch(&self, deliveries: &mut dyn FnMut()) {
        let _cork = Cork::hold();
        deliveries();
    }
}
