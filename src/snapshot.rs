//! The immutable view of everything a configuration decides at run time:
//! channels with their routes and policy, the TLS acceptor and the handshake
//! limiter. The server holds exactly one behind an `ArcSwap`; a request loads
//! it once and keeps that view for its whole admission, so a reload never
//! half-applies.
//!
//! Building a snapshot has no side effects, so a reload that fails while
//! building leaves the running one untouched. What must survive a reload is
//! carried over from the previous snapshot by key: a channel of the same name
//! and kind (its members, rooms and compressors), the handshake limiter when
//! its rate is unchanged (its buckets), and the development certificate when
//! its names are unchanged.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::{
    channel::Channel,
    config::{Config, TlsSettings},
    limits::rate::HandshakeLimiter,
    stats::Counters,
    tls::{Identity, TlsError},
};

/// One configuration, ready to serve.
pub(crate) struct Snapshot {
    pub(crate) config: Config,
    /// The channels, in configuration order.
    pub(crate) channels: Vec<Arc<Channel>>,
    /// The certificate served on TLS listeners, if any.
    pub(crate) identity: Option<Identity>,
    pub(crate) acceptor: Option<TlsAcceptor>,
    /// Handshakes per client.
    pub(crate) handshakes: Arc<HandshakeLimiter>,
}

impl Snapshot {
    /// Builds the runtime view of `config`, reusing what `previous` has that
    /// the new configuration leaves unchanged.
    pub(crate) fn build(
        config: Config,
        counters: &Arc<Counters>,
        previous: Option<&Snapshot>,
    ) -> Result<Self, TlsError> {
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
                previous
                    .and_then(|previous| previous.channel(&wanted.name))
                    .filter(|existing| existing.config().kind == wanted.kind)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Channel::new(wanted.clone(), counters.clone())))
            })
            .collect();
        let handshakes = previous
            .filter(|previous| {
                previous.config.admission.handshake_rate == config.admission.handshake_rate
            })
            .map(|previous| previous.handshakes.clone())
            .unwrap_or_else(|| Arc::new(HandshakeLimiter::new(&config.admission.handshake_rate)));
        Ok(Self {
            config,
            channels,
            identity,
            acceptor,
            handshakes,
        })
    }

    /// The channel whose path matches, and the raw room segment for templates.
    pub(crate) fn route<'p>(&self, path: &'p str) -> Option<(&Arc<Channel>, Option<&'p str>)> {
        self.channels.iter().find_map(|channel| {
            channel
                .config()
                .path
                .matches(path)
                .map(|room| (channel, room))
        })
    }

    /// The channel called `name`.
    pub(crate) fn channel(&self, name: &str) -> Option<&Arc<Channel>> {
        self.channels
            .iter()
            .find(|channel| channel.config().name == name)
    }
}
