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
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

pub use self::error::{ConfigError, ConfigIssue};
use self::{error::Issues, validate::Report};
pub use crate::http::{
    origin::{OriginPattern, OriginPolicy},
    route::PathPattern,
};
pub use crate::limits::cidr::Cidr;
use crate::tls::Identity;

/// How long a client has for the TLS handshake and its HTTP request: long
/// enough for a slow mobile link, short enough that idle sockets do not pile up.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a client may send: ample for chat and JSON events.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;
/// Bytes queued for one connection before it counts as a slow consumer.
pub const DEFAULT_SEND_BUFFER: usize = 1024 * 1024;
/// Over how long shutdown spreads its 1001 closes, so that clients do not
/// all reconnect (elsewhere) in the same instant.
pub const DEFAULT_DRAIN_WINDOW: Duration = Duration::from_secs(10);
/// When shutdown hard-closes whatever is left; systemd's TimeoutStopSec must
/// be longer.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the admin listener binds when `[admin]` gives no address: loopback,
/// so metrics and the publish API are never public by accident.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Connections the whole server holds at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Connections one client (IPv4 address or IPv6 prefix) holds at once: a
/// household behind NAT with several tabs open, not a botnet node.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;
/// IPv6 prefix length that counts as one client: ISPs hand a /64 to one
/// subscriber, who can pick any address inside it.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Handshakes per second per client, and the burst: enough for a page that
/// opens a few sockets and reconnects, too few for a reconnect storm.
pub const DEFAULT_HANDSHAKE_RATE: (u32, u32) = (20, 40);
/// Messages per second per connection, and the burst.
pub const DEFAULT_MESSAGE_RATE: (u32, u32) = (100, 200);
/// How often the server pings: under the 30-60 s idle timeouts of common
/// proxies and NAT boxes, so they keep the connection open.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Silence (no frame, no pong) after which a connection is dropped: two
/// missed pings.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the close handshake may take before the socket is dropped.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages smaller than this go out uncompressed: below a few hundred
/// bytes deflate saves little and costs a compressor pass.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 256;
/// zlib's default level: most of level 9's ratio at a fraction of its cost.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;
/// Rooms one room channel may hold at once.
pub const DEFAULT_MAX_ROOMS: usize = 10_000;
/// Members one room may hold at once.
pub const DEFAULT_MAX_MEMBERS: usize = 10_000;

/// A validated configuration, with every default filled in.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners and TLS.
    pub server: ServerSettings,
    /// Server-wide admission limits, applied before a request is routed.
    pub admission: Admission,
    /// The global per-connection limits; each channel carries its effective copy.
    pub limits: Limits,
    /// The channels, in file order.
    pub channels: Vec<ChannelConfig>,
    /// The admin listener, if `[admin]` is present.
    pub admin: Option<AdminSettings>,
    warnings: Vec<ConfigIssue>,
}

/// The `[admin]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where health, metrics and the publish API are served (plain HTTP).
    pub listen: SocketAddr,
    /// The file the bearer token was read from; without one the publish and
    /// channels endpoints refuse every request.
    pub token_file: Option<PathBuf>,
    /// The bearer token.
    pub token: Option<AdminToken>,
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
pub struct ServerSettings {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExceed {
    /// Stop reading until the rate allows: nothing is lost, TCP pushes back.
    Throttle,
    /// Close with 1008 "rate limit".
    Close,
}

/// What happens to a connection that cannot keep up with its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionMode {
    /// Once per message for all subscribers (default for broadcast and room).
    Shared,
    /// Once per message per connection (default for echo).
    Dedicated,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: CompressionMode::Dedicated,
            threshold: DEFAULT_COMPRESSION_THRESHOLD,
            level: DEFAULT_COMPRESSION_LEVEL,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
        }
    }
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
    /// Largest number of members in one room (room channels).
    pub max_members: usize,
    /// Largest number of rooms at once (room channels).
    pub max_rooms: usize,
    /// Effective limits: the global ones with this channel's overrides.
    pub limits: Limits,
    /// Effective permessage-deflate settings.
    pub compression: Compression,
}

impl Config {
    /// Reads and validates a configuration file. Relative certificate paths
    /// are resolved against the file's directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base_dir)
    }

    /// Validates a configuration given as TOML text. Relative certificate
    /// paths are resolved against the current directory.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, "<string>", Path::new(""))
    }

    fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut report = Report {
            errors: Issues::new(file, text),
            warnings: Issues::new(file, text),
        };
        let raw: raw::RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(error) => {
                report.errors.push(
                    error.span().unwrap_or(0..0),
                    "toml",
                    error.message().trim().to_owned(),
                );
                return Err(ConfigError::Invalid {
                    issues: report.errors.into_vec(),
                });
            }
        };
        let mut config = validate::validate(raw, base_dir, &mut report);
        if !report.errors.is_empty() {
            return Err(ConfigError::Invalid {
                issues: report.errors.into_vec(),
            });
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
