//! The immutable view of everything a configuration decides at run time:
//! channels with their routes and policy, the TLS acceptor and the handshake
//! limiter. The server holds exactly one behind an `ArcSwap`; a request loads
//! it once and keeps that view for its whole admission, so a reload never
//! half-applies.
//!
//! Building a snapshot has no side effects, so a reload that fails while
//! building leaves the running one untouched. What must survive a reload is
//! carried over from the previous snapshot by key, following the plan
//! `reload::diff` made: every channel the plan does not add keeps its live
//! state (members, rooms, compressors), the handshake limiter its buckets
//! when its rate is unchanged, and the development certificate stays when
//! its names are unchanged.
//!
//! Channel policy lives here only ([`ChannelEntry::config`]); channels hold
//! live state. Sessions read the policy of their channel from the current
//! snapshot for each message ([`Snapshot::policy_of`]).

use std::sync::Arc;

use crate::{
    auth::{Authenticator, SetupError},
    channel::{Channel, Remote, Users},
    config::{ChannelConfig, Config, TlsSettings},
    limits::rate::HandshakeLimiter,
    reload::ConfigDiff,
    stats::{ChannelStats, Counters},
    tls::{Acceptor, Identity, TlsError},
};

/// One configuration, ready to serve.
pub(crate) struct Snapshot {
    pub(crate) config: Config,
    /// The channels, in configuration order.
    pub(crate) channels: Vec<ChannelEntry>,
    /// The certificate served on TLS listeners, if any.
    pub(crate) identity: Option<Identity>,
    pub(crate) acceptor: Option<Acceptor>,
    /// Handshakes per client.
    pub(crate) handshakes: Arc<HandshakeLimiter>,
    /// Token verification and the webhook, when `[auth]` is configured.
    pub(crate) authenticator: Option<Authenticator>,
}

/// Why a configuration could not be made ready to serve.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// The certificate could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The `[auth]` keys or endpoints could not be used.
    #[error(transparent)]
    Auth(#[from] SetupError),
}

/// One channel: its policy in this snapshot, and its live state.
pub(crate) struct ChannelEntry {
    pub(crate) config: Arc<ChannelConfig>,
    pub(crate) live: Arc<Channel>,
}

impl Snapshot {
    /// Builds the runtime view of `config`. On reload, `previous` is the
    /// running snapshot and the plan `reload::diff` made from it: what the
    /// plan keeps is carried over.
    pub(crate) fn build(
        config: Config,
        counters: &Arc<Counters>,
        users: &Arc<Users>,
        remote: &Arc<Remote>,
        previous: Option<(&Snapshot, &ConfigDiff)>,
    ) -> Result<Self, BuildError> {
        let plan = previous.map(|(_, plan)| plan);
        let previous = previous.map(|(snapshot, _)| snapshot);
        let identity = match (&config.server.tls, previous) {
            (Some(TlsSettings::Files { identity, .. }), _) => Some(identity.clone()),
            (Some(TlsSettings::SelfSigned { names }), Some(previous)) if matches!(&previous.config.server.tls, Some(TlsSettings::SelfSigned { names: old }) if old == names) => {
                previous.identity.clone()
            }
            (Some(TlsSettings::SelfSigned { names }), _) => {
                let identity = Identity::self_signed(names)?;
                tracing::info!(fingerprint = %identity.fingerprint(), names = ?names, "generated a self-signed development certificate (SHA-256)");
                Some(identity)
            }
            (None, _) => None,
        };
        let acceptor = match (previous, &identity) {
            (Some(previous), Some(identity))
                if previous
                    .identity
                    .as_ref()
                    .is_some_and(|old| old.leaf() == identity.leaf()) =>
            {
                previous.acceptor.clone()
            }
            _ => identity.as_ref().map(Identity::acceptor).transpose()?,
        };
        let channels = config
            .channels
            .iter()
            .map(|wanted| {
                let kept = plan.is_some_and(|plan| !plan.added.contains(&wanted.name));
                let live = previous
                    .filter(|_| kept)
                    .and_then(|previous| previous.channel(&wanted.name))
                    .map(|entry| entry.live.clone())
                    .unwrap_or_else(|| {
                        Arc::new(Channel::new(
                            &wanted.name,
                            counters.clone(),
                            users.clone(),
                            remote.clone(),
                        ))
                    });
                ChannelEntry {
                    config: Arc::new(wanted.clone()),
                    live,
                }
            })
            .collect();
        let handshakes = previous
            .filter(|previous| {
                previous.config.admission.handshake_rate == config.admission.handshake_rate
            })
            .map(|previous| previous.handshakes.clone())
            .unwrap_or_else(|| Arc::new(HandshakeLimiter::new(&config.admission.handshake_rate)));
        // Carried over when its settings are unchanged: JWKS caches and
        // their refresh tasks survive the reload.
        let authenticator = match &config.auth {
            None => None,
            Some(settings) => Some(
                match previous
                    .filter(|previous| previous.config.auth.as_ref() == Some(settings))
                    .and_then(|previous| previous.authenticator.clone())
                {
                    Some(kept) => kept,
                    None => Authenticator::new(settings)?,
                },
            ),
        };
        Ok(Self {
            authenticator,
            config,
            channels,
            identity,
            acceptor,
            handshakes,
        })
    }

    /// The channel whose path matches, and the raw room segment for templates.
    pub(crate) fn route<'p>(&self, path: &'p str) -> Option<(&ChannelEntry, Option<&'p str>)> {
        self.channels
            .iter()
            .find_map(|entry| entry.config.path.matches(path).map(|room| (entry, room)))
    }

    /// The channel called `name`.
    pub(crate) fn channel(&self, name: &str) -> Option<&ChannelEntry> {
        self.channels.iter().find(|entry| entry.config.name == name)
    }

    /// The policy of a live channel in this snapshot; `None` once a reload
    /// removed it. A scan by identity: a server has a handful of channels,
    /// and this runs once per client message.
    pub(crate) fn policy_of(&self, channel: &Arc<Channel>) -> Option<&ChannelConfig> {
        self.channels
            .iter()
            .find(|entry| Arc::ptr_eq(&entry.live, channel))
            .map(|entry| &*entry.config)
    }

    /// Every channel's statistics, in configuration order; each room's
    /// size only with `room_sizes`.
    pub(crate) fn channel_stats(&self, room_sizes: bool) -> Vec<ChannelStats> {
        self.channels
            .iter()
            .map(|entry| entry.live.stats(&entry.config, room_sizes))
            .collect()
    }
}
