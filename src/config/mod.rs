//! Configuration: the TOML file, its validation, and the validated types the
//! rest of the server reads.
//!
//! Two layers, as in sozu and rathole: `raw` mirrors the file (unknown keys
//! are errors, every value keeps its span), `validate` turns it into
//! [`Config`] with real types and every default filled in, collecting all
//! problems with file:line:column. `print-config` serializes the validated
//! config back through the raw mirror.

mod error;
mod print;
mod raw;
mod units;
mod validate;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub use self::error::{ConfigError, ConfigIssue};
use self::{error::Issues, validate::Report};
pub use crate::http::{
    origin::{OriginPattern, OriginPolicy},
    route::PathPattern,
};
use crate::tls::Identity;

/// How long a client has for the TLS handshake and its HTTP request: long
/// enough for a slow mobile link, short enough that idle sockets do not pile up.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a client may send: ample for chat and JSON events.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;
/// Bytes queued for one connection before it counts as a slow consumer.
pub const DEFAULT_SEND_BUFFER: usize = 1024 * 1024;
/// Rooms one room channel may hold at once.
pub const DEFAULT_MAX_ROOMS: usize = 10_000;
/// Members one room may hold at once.
pub const DEFAULT_MAX_MEMBERS: usize = 10_000;

/// A validated configuration, with every default filled in.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners and TLS.
    pub server: ServerSettings,
    /// The global limits; each channel carries its effective copy.
    pub limits: Limits,
    /// The channels, in file order.
    pub channels: Vec<ChannelConfig>,
    warnings: Vec<ConfigIssue>,
}

/// The `[server]` table.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Addresses served with TLS (wss://).
    pub listen: Vec<SocketAddr>,
    /// Addresses served without TLS (ws://).
    pub plain: Vec<SocketAddr>,
    /// Time allowed for the TLS handshake plus the HTTP request headers.
    pub handshake_timeout: Duration,
    /// Where the certificate comes from; required when `listen` is not empty.
    pub tls: Option<TlsSettings>,
}

/// The `[server.tls]` table.
#[derive(Debug, Clone)]
pub enum TlsSettings {
    /// PEM files, loaded and checked as a pair during validation.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
        /// The loaded chain and key.
        identity: Identity,
    },
    /// Development mode: a certificate generated in memory at start-up.
    SelfSigned {
        /// DNS names and IP addresses the certificate is valid for.
        names: Vec<String>,
    },
}

/// Per-connection limits, global in `[limits]` and overridable per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted from a client, in bytes.
    pub max_payload: usize,
    /// Bytes that may wait in a connection's outbound queue; beyond it the
    /// connection is closed with 1013.
    pub send_buffer: usize,
}

/// What a channel does with the messages it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Each message goes back to its sender.
    Echo,
    /// Each message goes to every connection on the channel.
    Broadcast,
    /// Each message goes to every member of the sender's room.
    Room,
}

impl ChannelKind {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Broadcast => "broadcast",
            Self::Room => "room",
        }
    }
}

/// Who may publish on a broadcast or room channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Connected clients and the publish API.
    Clients,
    /// Only the publish API; a client that sends a message is closed with 1008.
    Api,
}

/// One `[[channel]]` table.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Unique name, used by the publish API and in statistics.
    pub name: String,
    /// The route: a literal path, or a template with `{room}` for rooms.
    pub path: PathPattern,
    /// Echo, broadcast or room.
    pub kind: ChannelKind,
    /// Which `Origin` headers may connect.
    pub origins: OriginPolicy,
    /// Who may publish (broadcast and room only).
    pub publish: Publish,
    /// Whether a publishing client receives its own message.
    pub echo_to_sender: bool,
    /// Subprotocols the server accepts, in no particular order: the first one
    /// the client offers that is listed here is selected.
    pub subprotocols: Vec<String>,
    /// Largest number of members in one room (room channels).
    pub max_members: usize,
    /// Largest number of rooms at once (room channels).
    pub max_rooms: usize,
    /// Effective limits: the global ones with this channel's overrides.
    pub limits: Limits,
}

impl Config {
    /// Reads and validates a configuration file. Relative certificate paths
    /// are resolved against the file's directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base_dir)
    }

    /// Validates a configuration given as TOML text. Relative certificate
    /// paths are resolved against the current directory.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, "<string>", Path::new(""))
    }

    fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut report = Report { errors: Issues::new(file, text), warnings: Issues::new(file, text) };
        let raw: raw::RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(error) => {
                report.errors.push(error.span().unwrap_or(0..0), "toml", error.message().trim().to_owned());
                return Err(ConfigError::Invalid { issues: report.errors.into_vec() });
            }
        };
        let mut config = validate::validate(raw, base_dir, &mut report);
        if !report.errors.is_empty() {
            return Err(ConfigError::Invalid { issues: report.errors.into_vec() });
        }
        config.warnings = report.warnings.into_vec();
        Ok(config)
    }

    /// Things that are allowed but probably not intended, such as a plain
    /// listener on a public address.
    pub fn warnings(&self) -> &[ConfigIssue] {
        &self.warnings
    }

    /// The effective configuration as TOML, with every default written out.
    pub fn to_toml_string(&self) -> String {
        print::to_toml_string(self)
    }
}
