//! Why the link could not do something.

use std::{io, time::Duration};

use super::settings::SettingsError;

/// An error of the Redis link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The settings are not valid.
    #[error("invalid cluster settings: {0}")]
    Settings(#[from] SettingsError),
    /// The TLS client could not be built (no usable trust store).
    #[error("cannot set up TLS to redis: {0}")]
    Tls(String),
    /// The connection to the Redis owning the key or topic is not up; the
    /// request was not sent.
    #[error("the link to redis is down")]
    Down,
    /// The link was shut down.
    #[error("the redis link is shut down")]
    Closed,
    /// Connecting, reading or writing failed.
    #[error("redis at {address}: {source}")]
    Io {
        /// The Redis address.
        address: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// Redis did not answer in time.
    #[error("redis at {address} did not answer within {timeout:?}")]
    Timeout {
        /// The Redis address.
        address: String,
        /// The bound (`probe_timeout`).
        timeout: Duration,
    },
    /// Redis answered with an error.
    #[error("redis answered: {0}")]
    Redis(String),
    /// Redis sent something that is not RESP, or not the expected reply.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// The link's thread or its runtime could not be started.
    #[error("cannot start the redis link's thread: {0}")]
    Thread(io::Error),
}
