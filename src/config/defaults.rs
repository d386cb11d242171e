//! Every default of the configuration file, named once.
//!
//! Validation fills a key that the file leaves out from here, `print-config`
//! writes the result out, and the `Default` impls of the validated types are
//! built from the same constants, so a default cannot differ between them.
//! The README's configuration reference and `config.example.toml` state the
//! same values (a test loads the example and compares it with these).

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    num::NonZeroU32,
    time::Duration,
};

use super::{
    Admission, ChannelKind, Compression, CompressionMode, Limits, OnExceed, Publish, Rate,
    ServerSettings, SlowConsumer, Stage,
};
use crate::protocol::window_bits;

/// How long a client has for the TLS handshake and its HTTP request: long
/// enough for a slow mobile link, short enough that idle sockets do not pile up.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Over how long shutdown spreads its 1001 closes, so that clients do not
/// all reconnect (elsewhere) in the same instant.
pub const DEFAULT_DRAIN_WINDOW: Duration = Duration::from_secs(10);
/// When shutdown hard-closes whatever is left; systemd's TimeoutStopSec must
/// be longer.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin listener binds when `[admin]` gives no address: loopback,
/// so metrics and the publish API are never public by accident.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9090));

/// Connections the whole server holds at once: what bounds memory and file
/// descriptors as a whole, whoever the clients are.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Connections one client (an IPv4 address or an IPv6 prefix) holds at once.
///
/// One IPv4 address is often many users: a mobile carrier's NAT puts
/// thousands of subscribers behind one address, a corporate proxy a whole
/// office. A cap in the tens refuses them, so the default only keeps one
/// address from taking more than a tenth of the default global cap, which is
/// what protects the server. (A NAT address cannot hold much more towards one
/// server port anyway: it has about 64,000 source ports.) An endpoint whose
/// clients do not share addresses should lower it.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 10_000;
/// IPv6 prefix length that counts as one client: ISPs hand a /64 to one
/// subscriber, who can pick any address inside it.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Handshakes per second per client, and the burst.
///
/// Sized for the users behind one busy NAT address reconnecting after a
/// restart: the burst lets two thousand of them back at once, and the rate
/// refills a full per-address cap ([`DEFAULT_MAX_CONNECTIONS_PER_IP`]) in
/// about ten seconds, the spread that reconnect back-off with jitter gives.
/// It also lets a conformance suite (hundreds of connections in a row from
/// one machine) run unrefused. The thousand TLS handshakes a second one
/// address may complete at this rate cost about a tenth of a core with an
/// ECDSA certificate and under half a core with RSA-2048.
pub const DEFAULT_HANDSHAKE_RATE: Rate = Rate::constant(1_000, 2_000, DEFAULT_ON_EXCEED);
/// Messages per second per connection, and the burst: far above what a chat
/// or a dashboard sends, far below what a flood loop sends.
pub const DEFAULT_MESSAGE_RATE: Rate = Rate::constant(100, 200, DEFAULT_ON_EXCEED);
/// What a connection over its message or byte rate gets: throttling loses
/// nothing and lets TCP push back, where closing would punish a burst.
pub const DEFAULT_ON_EXCEED: OnExceed = OnExceed::Throttle;
/// Largest message a client may send: ample for chat and JSON events.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;
/// Bytes queued for one connection before it counts as a slow consumer:
/// sixteen messages of the default `max_payload`.
pub const DEFAULT_SEND_BUFFER: usize = 1024 * 1024;
/// What happens to a slow consumer: closing it (1013, try again later) keeps
/// its memory bounded and tells the client, where dropping would lose
/// messages silently.
pub const DEFAULT_ON_SLOW_CONSUMER: SlowConsumer = SlowConsumer::Close;
/// How often the server pings: under the 30-60 s idle timeouts of common
/// proxies and NAT boxes, so they keep the connection open.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Silence (no frame, no pong) after which a connection is dropped: two
/// missed pings.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the close handshake may take before the socket is dropped.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// permessage-deflate is negotiated with every client that offers it: all
/// browsers do, and text traffic shrinks several times.
pub const DEFAULT_COMPRESSION_ENABLED: bool = true;
/// Messages smaller than this go out uncompressed: below a few hundred
/// bytes deflate saves little and costs a compressor pass.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 256;
/// zlib's default level: most of level 9's ratio at a fraction of its cost.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;
/// The largest window, on both sides: the best ratio, and what every client
/// supports.
pub const DEFAULT_WINDOW_BITS: u8 = window_bits::MAX;
/// Context takeover is kept unless asked otherwise: resetting the
/// compressor after each message costs ratio (shared mode resets anyway).
pub const DEFAULT_NO_CONTEXT_TAKEOVER: bool = false;

/// Rooms one room channel may hold at once: bounds memory against clients
/// inventing room names.
pub const DEFAULT_MAX_ROOMS: usize = 10_000;
/// Members one room may hold at once: bounds the fan-out cost of one room.
pub const DEFAULT_MAX_MEMBERS: usize = 10_000;
/// Rooms one hub connection may be in at once: a chat client's open
/// conversations, with room to spare; bounds what one connection costs.
pub const DEFAULT_MAX_ROOMS_PER_CONNECTION: usize = 100;

/// Who publishes on a channel that does not say: room members talk to each
/// other; a broadcast channel is fed by the backend. (Echo channels have no
/// publishers; an unknown kind has been reported already.)
pub(crate) fn publish(kind: Option<ChannelKind>) -> Publish {
    match kind {
        Some(ChannelKind::Room | ChannelKind::Hub) => Publish::Clients,
        _ => Publish::Api,
    }
}

/// How a channel compresses when no table says: fan-out channels compress a
/// message once for every subscriber; an echo connection is its only
/// recipient, so it keeps a compressor of its own.
pub(crate) fn compression_mode(kind: Option<ChannelKind>) -> CompressionMode {
    match kind {
        Some(ChannelKind::Echo) => CompressionMode::Dedicated,
        _ => CompressionMode::Shared,
    }
}

impl Rate {
    /// A rate from constants; a zero fails the build.
    pub(crate) const fn constant(per_second: u32, burst: u32, on_exceed: OnExceed) -> Self {
        match (NonZeroU32::new(per_second), NonZeroU32::new(burst)) {
            (Some(per_second), Some(burst)) => Self {
                per_second,
                burst,
                on_exceed,
            },
            _ => panic!("a default rate is positive"),
        }
    }
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            handshake_rate: DEFAULT_HANDSHAKE_RATE,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_payload: DEFAULT_MAX_PAYLOAD,
            send_buffer: DEFAULT_SEND_BUFFER,
            on_slow_consumer: DEFAULT_ON_SLOW_CONSUMER,
            message_rate: DEFAULT_MESSAGE_RATE,
            byte_rate: None,
            ping_interval: DEFAULT_PING_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

impl Compression {
    /// The defaults for a channel of `kind`.
    pub(crate) fn for_kind(kind: Option<ChannelKind>) -> Self {
        Self {
            mode: compression_mode(kind),
            ..Self::default()
        }
    }
}

/// The defaults of an echo channel (dedicated mode).
impl Default for Compression {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_COMPRESSION_ENABLED,
            mode: compression_mode(Some(ChannelKind::Echo)),
            threshold: DEFAULT_COMPRESSION_THRESHOLD,
            level: DEFAULT_COMPRESSION_LEVEL,
            server_max_window_bits: DEFAULT_WINDOW_BITS,
            client_max_window_bits: DEFAULT_WINDOW_BITS,
            server_no_context_takeover: DEFAULT_NO_CONTEXT_TAKEOVER,
            client_no_context_takeover: DEFAULT_NO_CONTEXT_TAKEOVER,
        }
    }
}

/// No listener and no TLS, every timeout at its default.
impl<S: Stage> Default for ServerSettings<S> {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            plain: Vec::new(),
            proxy_protocol: Vec::new(),
            trusted_proxies: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            drain_window: DEFAULT_DRAIN_WINDOW,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            tls: None,
        }
    }
}
