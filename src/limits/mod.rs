//! Admission limits: who a client is ([`ClientKey`]), how many connections
//! it and everyone together may hold ([`caps`]), how fast it may
//! handshake ([`rate`]) and send ([`budget`]).

pub(crate) mod budget;
pub(crate) mod caps;
pub mod cidr;
pub(crate) mod rate;

pub(crate) use self::caps::ClientKey;
