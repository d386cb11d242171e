//! Configuration: the TOML file, its validation, and the validated types the
//! rest of the server reads.
//!
//! A file goes through three steps, as in sozu and rathole:
//!
//! 1. `raw` mirrors the file with serde: unknown keys are errors, every value
//!    keeps its span, keywords are enums (`keyword`).
//! 2. `validate` turns it into a [`Config`] with real types and every default
//!    (from `defaults`) filled in, one module per table, collecting all
//!    problems with file:line:column through a scoped `report`. It is pure:
//!    the files the configuration names are not read yet.
//! 3. `load` reads those files (certificates, the admin token, the auth keys)
//!    and reports a file it cannot use at the key that named it.
//!
//! `print-config` serializes the validated config back through the raw mirror.

mod defaults;
mod error;
pub(crate) mod keyword;
mod load;
mod print;
mod raw;
mod report;
mod units;
mod validate;

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

pub use self::defaults::*;
pub use self::error::{ConfigError, ConfigIssue};
pub use self::load::{Loaded, Stage};
use self::report::Report;
pub(crate) use self::validate::cluster::{ClusterConfig, ClusterFileSpans};
use crate::auth::{AuthSettings, permissions::Rooms};
pub use crate::http::{
    origin::{OriginPattern, OriginPolicy},
    route::PathPattern,
};
pub use crate::limits::cidr::Cidr;

/// A validated configuration, with every default filled in and, at the
/// [`Loaded`] stage (the default), the files it names read.
#[derive(Debug, Clone)]
pub struct Config<S: Stage = Loaded> {
    /// Listeners and TLS.
    pub server: ServerSettings<S>,
    /// Server-wide admission limits, applied before a request is routed.
    pub admission: Admission,
    /// The global per-connection limits; each channel carries its effective copy.
    pub limits: Limits,
    /// The channels, in file order.
    pub channels: Vec<ChannelConfig>,
    /// The admin listener, if `[admin]` is present.
    pub admin: Option<AdminSettings<S>>,
    /// Token verification and the connect webhook, if `[auth]` is present.
    pub(crate) auth: Option<AuthSettings>,
    /// The Redis link to other nodes, if `[cluster]` is present.
    pub(crate) cluster: Option<ClusterConfig<S>>,
    warnings: Vec<ConfigIssue>,
}

/// The `[admin]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings<S: Stage = Loaded> {
    /// Where health, metrics and the publish API are served (plain HTTP).
    pub listen: SocketAddr,
    /// The file the bearer token was read from; without one the publish and
    /// channels endpoints refuse every request.
    pub token_file: Option<PathBuf>,
    /// The bearer token read from `token_file`.
    pub token: Option<S::Token>,
}

/// The admin bearer token. Never shown by `Debug`; compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Whether `presented` is the token. Both sides are hashed first, so the
    /// comparison takes the same time whatever the length or the content.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest = |bytes: &[u8]| ring::digest::digest(&ring::digest::SHA256, bytes);
        let (expected, given) = (digest(self.0.as_bytes()), digest(presented));
        expected
            .as_ref()
            .iter()
            .zip(given.as_ref())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// The `[server]` table.
#[derive(Debug, Clone)]
pub struct ServerSettings<S: Stage = Loaded> {
    /// Addresses served with TLS (wss://).
    pub listen: Vec<SocketAddr>,
    /// Addresses served without TLS (ws://).
    pub plain: Vec<SocketAddr>,
    /// Listeners (among `listen` and `plain`) that expect a PROXY protocol
    /// v1 or v2 header, accepted only from `trusted_proxies`.
    pub proxy_protocol: Vec<SocketAddr>,
    /// Peers whose PROXY header or `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Time allowed for the TLS handshake plus the HTTP request headers.
    pub handshake_timeout: Duration,
    /// Shutdown sends 1001 to the connections spread over this window.
    pub drain_window: Duration,
    /// Shutdown hard-closes whatever remains after this long.
    pub shutdown_timeout: Duration,
    /// Where the certificate comes from; required when `listen` is not empty.
    pub tls: Option<TlsSettings<S>>,
}

/// The `[server.tls]` table.
#[derive(Debug, Clone)]
pub enum TlsSettings<S: Stage = Loaded> {
    /// PEM files, loaded and checked as a pair after validation.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
        /// The loaded chain and key.
        identity: S::Identity,
    },
    /// Development mode: a certificate generated in memory at start-up.
    SelfSigned {
        /// DNS names and IP addresses the certificate is valid for.
        names: Vec<String>,
    },
}

/// Server-wide admission limits from `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Connections the server holds at once; more are closed right after accept.
    pub max_connections: usize,
    /// Connections one client holds at once; more are closed right after accept.
    pub max_connections_per_ip: usize,
    /// IPv6 prefix length that counts as one client.
    pub ipv6_prefix: u8,
    /// Handshakes per client; beyond it the answer is 429 with `Retry-After`.
    pub handshake_rate: Rate,
}

/// Per-connection limits, global in `[limits]` and overridable per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections on one channel at once (the global cap unless overridden);
    /// beyond it the answer is 503.
    pub max_connections: usize,
    /// Largest message accepted from a client, in bytes, all fragments
    /// together; a bigger one closes the connection with 1009.
    pub max_payload: usize,
    /// Bytes that may wait in a connection's outbound queue.
    pub send_buffer: usize,
    /// What happens to a connection whose queue would exceed `send_buffer`.
    pub on_slow_consumer: SlowConsumer,
    /// Messages per second a client may send.
    pub message_rate: Rate,
    /// Bytes per second a client may send, if limited.
    pub byte_rate: Option<Rate>,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// Silence after which the connection is dropped.
    pub idle_timeout: Duration,
    /// How long the close handshake may take.
    pub close_timeout: Duration,
}

/// A GCRA rate: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained rate.
    pub per_second: NonZeroU32,
    /// Largest burst.
    pub burst: NonZeroU32,
    /// What happens beyond it (not used for handshakes, which get 429).
    pub on_exceed: OnExceed,
}

/// What a per-connection rate does with a client that exceeds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExceed {
    /// Stop reading until the rate allows: nothing is lost, TCP pushes back.
    Throttle,
    /// Close with 1008 "rate limit".
    Close,
}

/// What happens to a connection that cannot keep up with its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumer {
    /// Close it with 1013.
    Close,
    /// Drop the messages that do not fit, and count them.
    Drop,
}

/// permessage-deflate settings of one channel (`[compression]` with the
/// channel's `[channel.compression]` over it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// Whether the extension is negotiated at all.
    pub enabled: bool,
    /// Shared: each fan-out message is compressed once for every subscriber
    /// (the server negotiates `server_no_context_takeover`). Dedicated: one
    /// compressor per connection, keeping context for a better ratio.
    pub mode: CompressionMode,
    /// Messages smaller than this many bytes are sent uncompressed.
    pub threshold: usize,
    /// zlib level, 0-9.
    pub level: u32,
    /// Largest window the server compresses with, 9-15.
    pub server_max_window_bits: u8,
    /// Largest window the server asks clients to compress with, 9-15.
    pub client_max_window_bits: u8,
    /// Reset the server's compressor after every message.
    pub server_no_context_takeover: bool,
    /// Ask clients to reset their compressor after every message.
    pub client_no_context_takeover: bool,
}

/// How a channel compresses what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionMode {
    /// Once per message for all subscribers (default for broadcast and room).
    Shared,
    /// Once per message per connection (default for echo).
    Dedicated,
}

/// What a channel does with the messages it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Each message goes back to its sender.
    Echo,
    /// Each message goes to every connection on the channel.
    Broadcast,
    /// Each message goes to every member of the sender's room.
    Room,
    /// One connection joins many rooms, and messages users directly, over
    /// a JSON protocol.
    Hub,
}

impl ChannelKind {
    /// Whether the channel has rooms (from the path, or joined in band).
    pub fn has_rooms(self) -> bool {
        matches!(self, Self::Room | Self::Hub)
    }
}

impl ChannelKind {
    /// The name used in the configuration file (serde's name for the
    /// variant: the variants are listed in declaration order, without
    /// explicit discriminants).
    pub fn as_str(self) -> &'static str {
        keyword::words::<Self>()[self as usize]
    }
}

/// Who may publish on a broadcast or room channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    /// Connected clients and the publish API.
    Clients,
    /// Only the publish API; a client that sends a message is closed with 1008.
    Api,
}

/// One `[[channel]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Largest number of members in one room (room and hub channels).
    pub max_members: usize,
    /// Largest number of rooms at once (room and hub channels).
    pub max_rooms: usize,
    /// Rooms one connection may be in at once (hub channels).
    pub max_rooms_per_connection: usize,
    /// Tell a room's members when a user's first connection joins and its
    /// last leaves (room and hub channels).
    pub presence_events: bool,
    /// Effective limits: the global ones with this channel's overrides.
    pub limits: Limits,
    /// Effective permessage-deflate settings.
    pub compression: Compression,
    /// Whether a connection needs an identity, and whose rooms are whose.
    pub(crate) auth: ChannelAuth,
}

/// How a channel treats identities (`auth` and `rooms` of a `[[channel]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelAuth {
    /// Whether connections must authenticate: `Required` by default when
    /// `[auth]` exists, so that adding it cannot leave a channel open.
    pub(crate) mode: AuthMode,
    /// Whose rooms are whose: per user only on room and hub channels.
    pub(crate) rooms: Rooms,
}

/// Whether a channel's connections must authenticate (`auth` of a
/// `[[channel]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuthMode {
    /// Without a valid identity the handshake is answered 401 (or the
    /// connection waits for its first message, where that is a source).
    Required,
    /// Credentials are verified when present (a bad one is refused);
    /// without any, the connection is anonymous.
    Optional,
    /// Credentials are not looked at.
    None,
}

impl Config {
    /// Reads, validates and loads a configuration file. Relative paths in it
    /// are resolved against the file's directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new(""));
        Self::parse(&text, &path.display().to_string(), base_dir)
    }

    /// Validates and loads a configuration given as TOML text. Relative
    /// paths in it are resolved against the current directory.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, "<string>", Path::new(""))
    }

    /// Parses, validates (collecting every problem) and loads the files the
    /// text names (reporting those it cannot use, too).
    fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut report = Report::new(file, text);
        let config = match toml::from_str::<raw::RawConfig>(text) {
            Ok(raw) => {
                // The one look at the environment: validation itself is pure.
                let base_dir = absolute_dir(base_dir);
                let (validated, auth_files) =
                    validate::validate(raw, &base_dir, &mut report.root());
                Some(load::load(validated, &auth_files, &mut report.root()))
            }
            Err(error) => {
                report.root().error(
                    error.span().unwrap_or(0..0),
                    "toml",
                    error.message().trim().to_owned(),
                );
                None
            }
        };
        let has_errors = report.has_errors();
        let (errors, warnings) = report.into_issues();
        match config {
            Some(config) if !has_errors => Ok(Self { warnings, ..config }),
            _ => Err(ConfigError::Invalid { issues: errors }),
        }
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

/// `dir` as an absolute path (the current directory for an empty one), so
/// that the paths printed by print-config load from anywhere.
fn absolute_dir(dir: &Path) -> PathBuf {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}
