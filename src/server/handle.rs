//! [`Handle`]: how an embedding program, and the admin listener, control a
//! running server: publish, statistics, reload, shutdown.

use std::{path::Path, sync::Arc};

use super::{Error, ReloadError, state::ServerState};
use crate::{
    channel::{Channel, ConnectionInfo, PublishError, deliver_to_user},
    cluster::{LinkState, PresenceTotals, Target},
    config::{AdminSettings, ChannelConfig, ChannelKind, Config},
    http::route::is_valid_room_name,
    message::Message,
    protocol::close,
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
    /// room of a room channel, on this node and (with `[cluster]`) on the
    /// others. Returns how many connections of this node it was queued for.
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

    /// Publishes `message` to every connection of `user`, on every channel
    /// or only on `channel`, on this node and (with `[cluster]`) on the
    /// others. Returns how many connections of this node it was queued for
    /// (on every channel, frames go out uncompressed: a user's connections
    /// negotiated different things; on one, in that channel's compression).
    pub fn publish_to_user(
        &self,
        user: &str,
        channel: Option<&str>,
        message: Message,
    ) -> Result<usize, PublishError> {
        let state = &self.state;
        let snapshot = state.snapshot.load();
        let on = match channel {
            Some(name) => {
                let entry = snapshot
                    .channel(name)
                    .ok_or_else(|| PublishError::UnknownChannel(name.to_owned()))?;
                Some((&entry.live, &*entry.config))
            }
            None => None,
        };
        let delivered = deliver_to_user(&state.users, &state.counters, user, on, &message);
        state.remote.publish(
            || Target::User {
                user: user.to_owned(),
                channel: channel.map(str::to_owned),
            },
            &message,
        );
        Ok(delivered)
    }

    /// Closes every connection of `user` but `except` ("log out my other
    /// devices") with `code` and `reason`, on this node and (with
    /// `[cluster]`) on the others: connection ids differ between nodes, so
    /// `except` may name a connection anywhere. The code is one an
    /// application may send: 1000, 1001, 1008 or 3000-4999; the reason at
    /// most 123 bytes. Returns how many connections of this node it started
    /// closing.
    pub fn disconnect_user(
        &self,
        user: &str,
        except: Option<u64>,
        code: u16,
        reason: &str,
    ) -> Result<usize, DisconnectError> {
        if !is_application_close_code(code) {
            return Err(DisconnectError::Code(code));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(DisconnectError::ReasonTooLong(reason.len()));
        }
        let closed = self.state.users.disconnect(user, except, code, reason);
        self.state
            .remote
            .publish_disconnect(user, except, code, reason);
        Ok(closed)
    }

    /// `user`'s connections on this node (channel, room, id, since when),
    /// oldest first.
    pub fn user_connections(&self, user: &str) -> Vec<ConnectionInfo> {
        self.state.users.connections(user)
    }

    /// Who is on a broadcast channel (`room` = `None`) or in one room of a
    /// room or hub channel: connections and distinct users, and up to
    /// `limit` user ids after `after`, in id order. A room that does not
    /// exist is empty. With `[cluster]`, the counts and the list cover every
    /// live node, as their shares were last written to Redis (within about
    /// 100 ms of each change); when Redis does not answer, or without
    /// `[cluster]`, they cover this node, now ([`PresencePage::cluster`]
    /// says which).
    pub async fn presence(
        &self,
        channel: &str,
        room: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PresencePage, PublishError> {
        let limit = limit.min(MAX_PRESENCE_PAGE);
        let local = {
            let snapshot = self.state.snapshot.load();
            let entry = snapshot
                .channel(channel)
                .ok_or_else(|| PublishError::UnknownChannel(channel.to_owned()))?;
            if entry.config.kind.has_rooms() != room.is_some() {
                return Err(PublishError::RoomMismatch {
                    channel: channel.to_owned(),
                    needs_room: entry.config.kind.has_rooms(),
                });
            }
            entry.live.users(room, after, limit)
        };
        if let Some(link) = self.state.remote.link() {
            let target = match room {
                None => Target::Channel(channel.to_owned()),
                Some(room) => Target::Room {
                    channel: channel.to_owned(),
                    room: room.to_owned(),
                },
            };
            match link.presence(&target, after, limit).await {
                Ok(totals) => return Ok(PresencePage::of_cluster(totals)),
                Err(error) => {
                    tracing::debug!(
                        "cluster presence unavailable, answering this node's: {error:#}"
                    )
                }
            }
        }
        Ok(
            local.map_or_else(PresencePage::default, |page| PresencePage {
                connections: page.connections,
                users: page.users,
                list: page.list.iter().map(|user| user.to_string()).collect(),
                next: page.next.map(|user| user.to_string()),
                cluster: false,
            }),
        )
    }

    /// The cluster link's health, while one runs (`[cluster]`, serving).
    pub fn cluster_state(&self) -> Option<LinkState> {
        self.state.remote.state()
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

    /// The server-wide `max_payload`: the bound of a message published to a
    /// user, whose connections may be on channels with other limits.
    pub(crate) fn default_max_payload(&self) -> usize {
        self.state.snapshot.load().config.limits.max_payload
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

/// Largest page of user ids [`Handle::presence`] returns.
pub const MAX_PRESENCE_PAGE: usize = 1000;

/// Longest close reason: a close frame's payload is at most 125 bytes, two
/// of which are the code (RFC 6455 section 5.5).
pub(super) const MAX_CLOSE_REASON: usize = 123;

/// Whether an application may close with `code`: normal, going away, policy,
/// or the registered (3000-3999) and private (4000-4999) ranges.
pub(super) fn is_application_close_code(code: u16) -> bool {
    matches!(
        code,
        close::NORMAL | close::GOING_AWAY | close::POLICY_VIOLATION | 3000..=4999
    )
}

/// Why [`Handle::disconnect_user`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectError {
    /// Not a code an application may close with.
    #[error("close code {0} is not one to disconnect with; use 1000, 1001, 1008 or 3000-4999")]
    Code(u16),
    /// The reason does not fit in a close frame.
    #[error("the close reason is {0} bytes; at most 123 fit in a close frame")]
    ReasonTooLong(usize),
}

/// Who is on a channel or in a room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresencePage {
    /// Connections now.
    pub connections: usize,
    /// Distinct users among them (connections without identity are not users).
    pub users: usize,
    /// A page of user ids, in id order.
    pub list: Vec<String>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<String>,
    /// Whether the counts and the list cover every node of the cluster
    /// (false: this node only).
    pub cluster: bool,
}

impl PresencePage {
    /// The cluster's totals and page.
    fn of_cluster(totals: PresenceTotals) -> Self {
        Self {
            connections: usize::try_from(totals.connections).unwrap_or(usize::MAX),
            users: usize::try_from(totals.users).unwrap_or(usize::MAX),
            list: totals.list,
            next: totals.next,
            cluster: true,
        }
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
