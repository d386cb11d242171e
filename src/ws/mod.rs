//! The WebSocket side of a connection after the 101: frame encoding, the
//! outbound queue and its writer, the frame reader and the assembly of
//! frames into messages.

pub(crate) mod cork;
pub(crate) mod deflate;
pub(crate) mod encoder;
pub(crate) mod frame;
pub(crate) mod outbox;
pub(crate) mod quiet;
pub(crate) mod reader;
pub(crate) mod receive;
pub(crate) mod socket;
pub(crate) mod writer;
