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
//! - `server`: listeners, accept loops, TLS and HTTP up to the upgrade;
//!   [`Server`] and [`Handle`].
//! - `http`: admission of one request (route, upgrade checks, origin,
//!   subprotocol, room capacity) and the 101.
//! - `ws`: the upgraded connection: frame encoding, the bounded outbound
//!   queue and its vectored writer, the reader on fastwebsockets.
//! - `limits`: client identity, connection caps (RAII slots) and governor
//!   rate limiters.
//! - `channel`: echo, broadcast and room membership and fan-out.
//! - `snapshot`: the one immutable view of a configuration the server reads.
//! - `reload`: what changed between two configurations.
//! - `admin`: the admin listener: health, readiness, metrics, the publish
//!   API and channel statistics.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod channel;
pub mod config;
mod http;
mod limits;
mod message;
mod protocol;
mod reload;
mod server;
mod snapshot;
mod stats;
mod sync;
mod tls;
mod ws;

pub use channel::PublishError;
pub use config::{Config, ConfigError};
pub use message::{Message, MessageKind};
pub use reload::ReloadReport;
pub use server::{Error, Handle, Listener, ReloadError, Server};
pub use stats::{ChannelStats, Stats, Traffic};
pub use tls::{Identity, TlsError};
