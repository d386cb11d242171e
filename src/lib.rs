//! wsedge: a WebSocket edge server. It terminates TLS, admits connections by
//! the policy of one TOML file, and runs each accepted connection in an echo,
//! broadcast or room channel.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = wsedge::Config::from_file("wsedge.toml")?;
//! let server = wsedge::Server::new(config)?;
//! let handle = server.handle(); // publish, stats, shutdown
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`config`]: the TOML mirror, validation with file:line:column errors,
//!   and the validated types.
//! - `snapshot`: the one immutable view of a configuration the server reads
//!   (channel policy included); `reload`: what changed between two.
//! - `http`: admission of one request as a pure decision over a snapshot
//!   (route, upgrade checks, origin, subprotocol, deflate agreement) and
//!   the typed rejection every refusal is reported with.
//! - `server`: listeners and accept loops, the owner of each connection,
//!   the shared state, reloads and the drain; [`Server`] and [`Handle`].
//! - `auth`: who a connection belongs to: JWT verification (keys from
//!   files and JWKS URLs), the connect webhook, token sources, the in-band
//!   auth messages, and the grants of channels and rooms.
//! - `channel`: echo, broadcast, room and hub membership and fan-out, the
//!   user index, and the channels' side of the cluster (`channel::Remote`).
//! - `ws`: the upgraded connection: the session (frame reader, message
//!   assembly, heartbeat), the encoder (framing and permessage-deflate
//!   in both modes), the bounded outbox and its writer, the signal that
//!   wakes a session's rarely firing waits, and the socket's two halves (a
//!   plain connection's taken back from hyper).
//! - `tls`: certificates and keys, and the server side of TLS (rustls's
//!   state machine over buffers held only while bytes are in them).
//! - `limits`: client identity, connection caps (RAII slots), the keyed
//!   handshake limiter (governor) and a connection's message and byte
//!   budgets; `stats`: counters and the statistics snapshot.
//! - [`cluster`]: the Redis link between nodes: publishes, interest-driven
//!   (sharded) subscriptions, the presence share, probes and link health.
//! - `protocol`: WebSocket constants (close codes, frame bits, windows).
//! - `admin`: the admin listener over [`Handle`]: health, readiness,
//!   metrics, the publish API, channel statistics, and the dashboard page
//!   with its live feed.
//!
//! # The path of one connection
//!
//! Data flows one way; each step may use the ones after it, never one
//! before it.
//!
//! 1. **accept** (`server::listener`): the accept loop hands the socket to
//!    its owner.
//! 2. **connection** (`server::connection`): PROXY header, the global and
//!    per-client slots, TLS, the HTTP request head, all within
//!    `handshake_timeout`.
//! 3. **admission** (`http::admit`): one snapshot, one decision:
//!    `Admitted` (channel, room, client, limits, subprotocol, deflate
//!    agreement) or a `Rejection` (status, body, metric label, counter).
//! 4. **connection** again: takes the admitted client's slot, joins the
//!    channel, answers 101 and spawns the session. Capacity refusals (full
//!    room or channel) happen here, atomically with the join.
//! 5. **session** (`session`): reads frames with the frame reader,
//!    inflates and validates, applies the message rate, and hands each
//!    message to its membership under the channel's current policy.
//! 6. **channel** (`channel`): picks the recipients on this node; with
//!    `[cluster]`, then hands the message once to the link (`cluster`),
//!    which publishes it without waiting, from a thread of its own.
//!    Another node's link hands it to
//!    that node's `server::cluster` hook, which enters this path here, for
//!    its own recipients only.
//! 7. **encoder** (`ws::encoder`): frames once per encoding (shared-mode
//!    compression once per window) and queues the same bytes for every
//!    recipient's outbox.
//! 8. **writer** (`ws::writer`): drains one connection's outbox with
//!    vectored writes, compressing in dedicated mode.

// Denied rather than forbidden for one setsockopt (`server::defer`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod auth;
mod channel;
pub mod cluster;
pub mod config;
#[cfg(test)]
mod fuzz;
mod http;
mod limits;
mod message;
mod protocol;
mod reload;
mod server;
mod session;
mod snapshot;
mod stats;
mod sync;
mod tls;
mod variants;
mod ws;

pub use channel::{ConnectionInfo, PublishError};
pub use config::{Config, ConfigError};
pub use message::{Message, MessageKind};
pub use reload::ReloadReport;
pub use server::{
    DisconnectError, Error, Handle, Listener, MAX_PRESENCE_PAGE, PresencePage, ReloadError, Server,
};
pub use stats::{AuthBackends, ChannelStats, Stats, Traffic};
pub use tls::{Identity, TlsError};
