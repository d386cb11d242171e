//! Why the server could not start, or could not apply a reload.

use std::{io, net::SocketAddr};

use crate::{cluster::LinkError, config::ConfigError, snapshot::BuildError, tls::TlsError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error (address in use, permission denied...).
        source: io::Error,
    },
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The `[auth]` keys or endpoints could not be used.
    #[error("[auth] cannot be used: {message}")]
    Auth {
        /// What is wrong, naming the file or URL.
        message: String,
    },
    /// The `[cluster]` link could not be started (no usable TLS trust).
    #[error("[cluster] cannot be used: {0}")]
    Cluster(#[from] LinkError),
    /// TLS listeners were given but the configuration has no `[server.tls]`.
    #[error("TLS listeners need a [server.tls] table in the configuration")]
    NoTls,
}

impl From<BuildError> for Error {
    fn from(error: BuildError) -> Self {
        match error {
            BuildError::Tls(error) => Error::Tls(error),
            BuildError::Auth(error) => Error::Auth {
                message: error.to_string(),
            },
        }
    }
}

/// Why a reload was refused; the running configuration is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is not a valid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new configuration could not be applied (a listener could not be
    /// bound, the certificate could not be used).
    #[error(transparent)]
    Apply(#[from] Error),
}
