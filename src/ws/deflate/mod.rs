//! permessage-deflate (RFC 7692), which fastwebsockets does not have:
//! negotiation, and the per-message codec. The frame-level half (RSV1,
//! compressed-size bounds) lives in `ws::reader`.

pub(crate) mod codec;
pub(crate) mod dedicated;
pub(crate) mod negotiate;
