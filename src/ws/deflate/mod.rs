//! permessage-deflate (RFC 7692) on top of fastwebsockets, which has none:
//! negotiation, and the per-message codec. The frame-level half (RSV1,
//! compressed-size bounds) lives in `ws::reader`.

pub(crate) mod codec;
pub(crate) mod dedicated;
pub(crate) mod negotiate;
