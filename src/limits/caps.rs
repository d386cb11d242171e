//! Connection caps: the global `max_connections` and the per-client
//! `max_connections_per_ip`, as RAII slots.
//!
//! A slot is taken right after accept (before any TLS work) and moved along
//! with the connection, into its WebSocket session after the upgrade; its
//! `Drop` gives it back on every path, panics included. Per-client entries
//! are removed when their count returns to zero, so the map holds only
//! clients that are connected now.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::cidr::mask;

/// Who a client is for caps and rates: its IP address, with IPv6 addresses
/// reduced to their `ipv6_prefix` network (one subscriber usually holds a
/// whole /64) and IPv4-mapped IPv6 addresses counted as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey(IpAddr);

impl ClientKey {
    pub(crate) fn new(addr: IpAddr, ipv6_prefix: u8) -> Self {
        match addr.to_canonical() {
            v4 @ IpAddr::V4(_) => Self(v4),
            v6 @ IpAddr::V6(_) => Self(mask(v6, ipv6_prefix)),
        }
    }
}

/// Connection counts shared by every listener. Lives as long as the server,
/// across reloads; the caps themselves are read from the current snapshot.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCaps {
    total: AtomicUsize,
    per_client: Mutex<HashMap<ClientKey, usize>>,
}

/// The slots one connection holds, moved along with it from accept to the
/// end of its WebSocket session.
#[derive(Debug)]
pub(crate) struct Slots {
    _global: GlobalSlot,
    client: Option<ClientSlot>,
}

impl Slots {
    pub(crate) fn new(global: GlobalSlot, client: Option<ClientSlot>) -> Self {
        Self {
            _global: global,
            client,
        }
    }

    /// Whose client slot is held, if one is yet (it is taken after the
    /// request when a trusted proxy names the client in `X-Forwarded-For`).
    pub(crate) fn client_key(&self) -> Option<ClientKey> {
        self.client.as_ref().map(|slot| slot.key)
    }

    /// Holds `slot` as the client's, giving back any other one held.
    pub(crate) fn set_client(&mut self, slot: ClientSlot) {
        self.client = Some(slot);
    }
}

/// One of the global `max_connections` slots.
#[derive(Debug)]
pub(crate) struct GlobalSlot(Arc<ConnectionCaps>);

/// One of a client's `max_connections_per_ip` slots.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    caps: Arc<ConnectionCaps>,
    key: ClientKey,
}

impl ConnectionCaps {
    /// Takes a global slot if fewer than `max` are taken.
    pub(crate) fn acquire_global(self: &Arc<Self>, max: usize) -> Option<GlobalSlot> {
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < max).then_some(taken + 1)
            })
            .ok()
            .map(|_| GlobalSlot(self.clone()))
    }

    /// Takes one of `key`'s slots if it holds fewer than `max`.
    pub(crate) fn acquire_client(
        self: &Arc<Self>,
        key: ClientKey,
        max: usize,
    ) -> Option<ClientSlot> {
        let mut per_client = crate::sync::lock(&self.per_client);
        let taken = per_client.entry(key).or_insert(0);
        if *taken >= max {
            if *taken == 0 {
                per_client.remove(&key);
            }
            return None;
        }
        *taken += 1;
        Some(ClientSlot {
            caps: self.clone(),
            key,
        })
    }

    /// Global slots taken.
    pub(crate) fn active(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Clients holding at least one slot.
    pub(crate) fn clients(&self) -> usize {
        crate::sync::lock(&self.per_client).len()
    }
}

impl Drop for GlobalSlot {
    fn drop(&mut self) {
        self.0.total.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut per_client = crate::sync::lock(&self.caps.per_client);
        if let Some(taken) = per_client.get_mut(&self.key) {
            *taken -= 1;
            if *taken == 0 {
                per_client.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_returned_on_drop() {
        let caps = Arc::new(ConnectionCaps::default());
        let key = ClientKey::new("10.0.0.1".parse().unwrap(), 64);
        let held: Vec<_> = (0..3)
            .map(|_| caps.acquire_client(key, 3).unwrap())
            .collect();
        assert!(caps.acquire_client(key, 3).is_none());
        let globals: Vec<_> = (0..2).map(|_| caps.acquire_global(2).unwrap()).collect();
        assert!(caps.acquire_global(2).is_none());
        assert_eq!((caps.active(), caps.clients()), (2, 1));
        drop(held);
        drop(globals);
        assert_eq!((caps.active(), caps.clients()), (0, 0));
        assert!(caps.acquire_client(key, 0).is_none());
        assert_eq!(caps.clients(), 0, "a refused client leaves no entry behind");
    }

    #[test]
    fn ipv6_clients_count_by_prefix() {
        let a = ClientKey::new("2001:db8:1:2::1".parse().unwrap(), 64);
        let b = ClientKey::new("2001:db8:1:2:ffff::9".parse().unwrap(), 64);
        let c = ClientKey::new("2001:db8:1:3::1".parse().unwrap(), 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = ClientKey::new("::ffff:10.0.0.1".parse().unwrap(), 64);
        assert_eq!(mapped, ClientKey::new("10.0.0.1".parse().unwrap(), 64));
    }
}
