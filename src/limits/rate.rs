//! Handshakes per client with governor: a keyed limiter, pruned of
//! clients whose bucket has refilled. A refused handshake is answered
//! (429 with Retry-After), never waited for.

use std::time::Duration;

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::DashMapStateStore,
};

use super::caps::ClientKey;
use crate::config::Rate;

fn quota(rate: &Rate) -> Quota {
    Quota::per_second(rate.per_second).allow_burst(rate.burst)
}

/// Handshakes per client key.
pub(crate) struct HandshakeLimiter<C: Clock + Clone = DefaultClock> {
    limiter: RateLimiter<ClientKey, DashMapStateStore<ClientKey>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl HandshakeLimiter {
    pub(crate) fn new(rate: &Rate) -> Self {
        Self::with_clock(rate, DefaultClock::default())
    }
}

impl<C: Clock + Clone> HandshakeLimiter<C> {
    fn with_clock(rate: &Rate, clock: C) -> Self {
        Self {
            limiter: RateLimiter::dashmap_with_clock(quota(rate), clock.clone()),
            clock,
        }
    }

    /// `Ok` if `key` may handshake now, else how long until it may.
    pub(crate) fn check(&self, key: ClientKey) -> Result<(), Duration> {
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets clients whose bucket has refilled: their state is the same as
    /// a fresh one, so keeping it would only grow the map.
    pub(crate) fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Clients currently remembered.
    pub(crate) fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::config::OnExceed;

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
            on_exceed: OnExceed::Close,
        }
    }

    #[test]
    fn handshakes_are_limited_per_client_and_pruned() {
        let clock = FakeRelativeClock::default();
        let limiter = HandshakeLimiter::with_clock(&rate(2, 2), clock.clone());
        let key = |i: u8| ClientKey::new(std::net::IpAddr::from([10, 0, 0, i]), 64);
        assert_eq!(limiter.check(key(1)), Ok(()));
        assert_eq!(limiter.check(key(1)), Ok(()));
        assert_eq!(limiter.check(key(1)), Err(Duration::from_millis(500)));
        assert_eq!(
            limiter.check(key(2)),
            Ok(()),
            "another client has its own budget"
        );
        for i in 3..200 {
            let _ = limiter.check(key(i));
        }
        assert_eq!(limiter.len(), 199);
        clock.advance(Duration::from_secs(2));
        limiter.prune();
        assert_eq!(limiter.len(), 0, "refilled buckets are forgotten");
        assert_eq!(limiter.check(key(1)), Ok(()));
    }
}
