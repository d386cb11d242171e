//! Rate limits with governor: handshakes per client (keyed, pruned) and
//! messages and bytes per connection (direct).
//!
//! Limiters only answer "now" or "not before T"; waiting is done on tokio
//! time by the caller, so a throttled connection simply stops reading and TCP
//! pushes back on the client.

use std::{num::NonZeroU32, time::Duration};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed, keyed::DashMapStateStore},
};

use super::caps::ClientKey;
use crate::config::{OnExceed, Rate};

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

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateExceeded;

/// One connection's message and byte budgets.
pub(crate) struct MessageLimiter {
    messages: Budget,
    bytes: Option<Budget>,
}

struct Budget {
    limiter: RateLimiter<
        NotKeyed,
        InMemoryState,
        DefaultClock,
        NoOpMiddleware<<DefaultClock as Clock>::Instant>,
    >,
    on_exceed: OnExceed,
}

impl MessageLimiter {
    pub(crate) fn new(message_rate: &Rate, byte_rate: Option<&Rate>) -> Self {
        let budget = |rate: &Rate| Budget {
            limiter: RateLimiter::direct(quota(rate)),
            on_exceed: rate.on_exceed,
        };
        Self {
            messages: budget(message_rate),
            bytes: byte_rate.map(budget),
        }
    }

    /// Admits one message of `len` bytes: at once, after waiting (throttle),
    /// or not at all (close). Waiting here means the connection reads nothing
    /// more meanwhile.
    pub(crate) async fn admit(&self, len: usize) -> Result<(), RateExceeded> {
        self.messages.take(NonZeroU32::MIN).await?;
        match (
            &self.bytes,
            u32::try_from(len).ok().and_then(NonZeroU32::new),
        ) {
            (Some(bytes), Some(len)) => bytes.take(len).await,
            _ => Ok(()),
        }
    }
}

impl Budget {
    async fn take(&self, cells: NonZeroU32) -> Result<(), RateExceeded> {
        let clock = DefaultClock::default();
        loop {
            match self.limiter.check_n(cells) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(not_until)) if self.on_exceed == OnExceed::Throttle => {
                    tokio::time::sleep(not_until.wait_time_from(clock.now())).await;
                }
                // Over the rate in close mode, or larger than the burst (which
                // validation rules out: burst >= max_payload).
                Ok(Err(_)) | Err(_) => return Err(RateExceeded),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

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

    #[tokio::test]
    async fn close_mode_refuses_past_the_burst() {
        let limiter = MessageLimiter::new(&rate(1, 3), Some(&rate(1000, 1000)));
        for _ in 0..3 {
            assert_eq!(limiter.admit(10).await, Ok(()));
        }
        assert_eq!(limiter.admit(10).await, Err(RateExceeded));
        let bytes = MessageLimiter::new(&rate(1000, 1000), Some(&rate(100, 100)));
        assert_eq!(bytes.admit(100).await, Ok(()));
        assert_eq!(bytes.admit(1).await, Err(RateExceeded));
    }
}
