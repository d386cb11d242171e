//! [`Handle`]: how an embedding program, and the admin listener, control a
//! running server: publish, statistics, reload, shutdown.

use std::{path::Path, sync::Arc};

use super::{Error, ReloadError, state::ServerState};
use crate::{
    channel::{Channel, PublishError},
    config::{AdminSettings, ChannelConfig, ChannelKind, Config},
    http::route::is_valid_room_name,
    message::Message,
    reload::ReloadReport,
    stats::Stats,
    tls::Identity,
};

/// Controls a [`Server`](super::Server) from outside: cheap to clone, usable
/// from any task.
#[derive(Clone)]
pub struct Handle {
    pub(super) state: Arc<ServerState>,
}

impl Handle {
    /// Publishes `message` to a broadcast channel (`room` = `None`) or to one
    /// room of a room channel. Returns how many connections it was queued for.
    pub fn publish(
        &self,
        channel: &str,
        room: Option<&str>,
        message: Message,
    ) -> Result<usize, PublishError> {
        self.publisher(channel, room)?.publish(&message)
    }

    /// Resolves a publish target once, under the current configuration, so
    /// that a caller can check a message against the channel's limit before
    /// it has the whole message (the admin API streams bodies).
    pub(crate) fn publisher(
        &self,
        channel: &str,
        room: Option<&str>,
    ) -> Result<Publisher, PublishError> {
        let snapshot = self.state.snapshot.load();
        let entry = snapshot
            .channel(channel)
            .ok_or_else(|| PublishError::UnknownChannel(channel.to_owned()))?;
        if entry.config.kind == ChannelKind::Room && room.is_some_and(|r| !is_valid_room_name(r)) {
            return Err(PublishError::BadRoomName);
        }
        Ok(Publisher {
            config: entry.config.clone(),
            channel: entry.live.clone(),
            room: room.map(str::to_owned),
        })
    }

    /// Connections per channel, rooms and their sizes, message counters.
    pub fn stats(&self) -> Stats {
        self.state.stats(true)
    }

    /// The same without each room's size: what a metrics scrape reads on
    /// every call, without copying every room name.
    pub(crate) fn totals(&self) -> Stats {
        self.state.stats(false)
    }

    /// The certificate served on TLS listeners (for fingerprints and for
    /// clients that pin the development certificate).
    pub fn tls_identity(&self) -> Option<Identity> {
        self.state.snapshot.load().identity.clone()
    }

    /// Starts the same graceful shutdown as the future given to `serve`.
    pub fn shutdown(&self) {
        self.state.shutdown.cancel();
    }

    /// Whether shutdown has started (readiness turns false).
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.state.shutdown.is_cancelled()
    }

    /// The `[admin]` settings now running (the token follows reloads).
    pub(crate) fn admin_settings(&self) -> Option<AdminSettings> {
        self.state.snapshot.load().config.admin.clone()
    }

    /// Applies a new configuration without dropping connections: new and
    /// changed channels and limits apply to new connections and messages,
    /// removed channels close theirs with 1001, listeners open and close by
    /// difference, a new certificate serves new handshakes. On error nothing
    /// changes.
    pub async fn reload(&self, config: Config) -> Result<ReloadReport, Error> {
        self.state.reload(config).await
    }

    /// Reads, validates and applies a configuration file (see [`Handle::reload`]).
    /// A file that does not validate changes nothing and is counted as a
    /// failed reload.
    pub async fn reload_from_file(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<ReloadReport, ReloadError> {
        match Config::from_file(path) {
            Ok(config) => Ok(self.reload(config).await?),
            Err(error) => {
                self.state.counters.record_reload(false);
                Err(error.into())
            }
        }
    }

    /// The configuration generation now running: 1 at start, one more per
    /// successful reload.
    pub fn generation(&self) -> u64 {
        self.state.counters.generation()
    }
}

/// A resolved publish target: a channel (and room) under the policy that
/// was current when it was resolved.
pub(crate) struct Publisher {
    config: Arc<ChannelConfig>,
    channel: Arc<Channel>,
    room: Option<String>,
}

impl Publisher {
    /// The largest message the channel takes.
    pub(crate) fn max_payload(&self) -> usize {
        self.config.limits.max_payload
    }

    /// Queues `message` for the target's connections; returns how many.
    pub(crate) fn publish(&self, message: &Message) -> Result<usize, PublishError> {
        self.channel
            .publish(&self.config, self.room.as_deref(), message)
    }
}
