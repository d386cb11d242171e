//! Admission limits: who a client is ([`ClientKey`]), how many connections
//! it and everyone together may hold ([`caps`]), and how fast it may
//! handshake and send ([`rate`]).

pub(crate) mod caps;
pub mod cidr;
pub(crate) mod rate;

pub(crate) use self::caps::ClientKey;
