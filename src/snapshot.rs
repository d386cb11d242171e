//! The immutable view of everything a configuration decides at run time:
//! channels with their routes and policy, and the TLS acceptor. The server
//! holds exactly one behind an `ArcSwap`; a request loads it once and keeps
//! that view for its whole admission, so a reload can never half-apply.

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
    pub(crate) handshakes: HandshakeLimiter,
}

impl Snapshot {
    /// Builds the runtime view of `config`; generates the development
    /// certificate if the configuration asks for one.
    pub(crate) fn build(config: Config, counters: &Arc<Counters>) -> Result<Self, TlsError> {
        let identity = match &config.server.tls {
            Some(TlsSettings::Files { identity, .. }) => Some(identity.clone()),
            Some(TlsSettings::SelfSigned { names }) => {
                let identity = Identity::self_signed(names)?;
                tracing::info!(fingerprint = %identity.fingerprint(), names = ?names, "generated a self-signed development certificate (SHA-256)");
                Some(identity)
            }
            None => None,
        };
        let acceptor = identity.as_ref().map(Identity::acceptor).transpose()?;
        let channels = config
            .channels
            .iter()
            .map(|c| Arc::new(Channel::new(c.clone(), counters.clone())))
            .collect();
        let handshakes = HandshakeLimiter::new(&config.admission.handshake_rate);
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
                .config
                .path
                .matches(path)
                .map(|room| (channel, room))
        })
    }

    /// The channel called `name`.
    pub(crate) fn channel(&self, name: &str) -> Option<&Arc<Channel>> {
        self.channels
            .iter()
            .find(|channel| channel.config.name == name)
    }
}
