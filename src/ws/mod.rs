//! The WebSocket side of a connection after the 101: frame encoding, the
//! outbound queue and its writer, and the session that reads frames with
//! fastwebsockets and hands messages to the channel.

pub(crate) mod cork;
pub(crate) mod deflate;
pub(crate) mod encoder;
pub(crate) mod frame;
pub(crate) mod guard;
pub(crate) mod outbox;
pub(crate) mod quiet;
pub(crate) mod receive;
pub(crate) mod socket;
pub(crate) mod writer;
