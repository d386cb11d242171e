//! One connection's message and byte budgets: the generic cell rate
//! algorithm over a theoretical arrival time, one per budget, with one
//! reading of the clock per message for both.
//!
//! A budget of `per_second` cells with a burst of `burst` admits `n` cells
//! at time `t` when the arrival time, pushed `n` intervals past
//! `max(tat, t)`, stays within `burst` intervals of `t`. The budgets answer
//! "now" or "not before T"; waiting is done on tokio time here, so a
//! throttled connection simply stops reading and TCP pushes back on the
//! client. The state is the session's alone: relaxed atomics (for `Sync`,
//! since the reading loop holds the limiter across awaits), never contended.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

use crate::config::{OnExceed, Rate};

/// Nanoseconds in a second: a cell's interval is this over the rate.
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateExceeded;

/// One connection's message and byte budgets.
pub(crate) struct MessageLimiter {
    /// Where the budgets' nanoseconds count from.
    origin: Instant,
    /// The latest time a budget was spent or waited for: a message that
    /// arrived before a wait is charged no earlier than its end.
    latest: AtomicU64,
    messages: Budget,
    bytes: Option<Budget>,
}

struct Budget {
    /// What one cell adds to the arrival time, in nanoseconds.
    interval: u64,
    /// How many cells fit in the burst.
    burst: u64,
    /// The theoretical arrival time, in nanoseconds since `origin`.
    tat: AtomicU64,
    on_exceed: OnExceed,
}

/// What a budget answers for a number of cells at a time.
enum Answer {
    Taken,
    /// Not before this time (nanoseconds since the origin).
    NotBefore(u64),
    /// More cells than the burst holds: never.
    Never,
}

impl MessageLimiter {
    pub(crate) fn new(message_rate: &Rate, byte_rate: Option<&Rate>) -> Self {
        Self {
            origin: Instant::now(),
            latest: AtomicU64::new(0),
            messages: Budget::new(message_rate),
            bytes: byte_rate.map(Budget::new),
        }
    }

    /// Admits one message of `len` bytes that `arrived` (with the read that
    /// brought it in: the clock is read once per read, not again here): at
    /// once, after waiting (throttle), or not at all (close). Waiting here
    /// means the connection reads nothing more meanwhile.
    pub(crate) async fn admit(&self, len: usize, arrived: Instant) -> Result<(), RateExceeded> {
        let now = self
            .since_origin(arrived)
            .max(self.latest.load(Ordering::Relaxed));
        let now = self.take(&self.messages, 1, now).await?;
        let now = match &self.bytes {
            Some(bytes) if len > 0 => self.take(bytes, len as u64, now).await?,
            _ => now,
        };
        self.latest.store(now, Ordering::Relaxed);
        Ok(())
    }

    /// Takes `cells` from `budget`, waiting for them in throttle mode;
    /// returns the time they were taken at.
    async fn take(&self, budget: &Budget, cells: u64, mut now: u64) -> Result<u64, RateExceeded> {
        loop {
            match budget.take(cells, now) {
                Answer::Taken => return Ok(now),
                Answer::NotBefore(at) if budget.on_exceed == OnExceed::Throttle => {
                    tokio::time::sleep_until(self.origin + Duration::from_nanos(at)).await;
                    now = self.since_origin(Instant::now());
                }
                // Over the rate in close mode, or larger than the burst
                // (which validation rules out: burst >= max_payload).
                Answer::NotBefore(_) | Answer::Never => return Err(RateExceeded),
            }
        }
    }

    /// Whether both budgets are full at `now`: a limiter made afresh
    /// would answer every message as this one does.
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        let now = self.since_origin(now);
        let full = |budget: &Budget| budget.tat.load(Ordering::Relaxed) <= now;
        self.latest.load(Ordering::Relaxed) <= now
            && full(&self.messages)
            && self.bytes.as_ref().is_none_or(full)
    }

    fn since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Budget {
    fn new(rate: &Rate) -> Self {
        Self {
            interval: NANOS_PER_SECOND / u64::from(rate.per_second.get()),
            burst: u64::from(rate.burst.get()),
            tat: AtomicU64::new(0),
            on_exceed: rate.on_exceed,
        }
    }

    fn take(&self, cells: u64, now: u64) -> Answer {
        if cells > self.burst {
            return Answer::Never;
        }
        let tat = self.tat.load(Ordering::Relaxed).max(now);
        let next = tat.saturating_add(cells * self.interval);
        let limit = now.saturating_add(self.burst * self.interval);
        if next <= limit {
            self.tat.store(next, Ordering::Relaxed);
            Answer::Taken
        } else {
            Answer::NotBefore(next - self.burst * self.interval)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn rate(per_second: u32, burst: u32, on_exceed: OnExceed) -> Rate {
        Rate {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
            on_exceed,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn close_mode_refuses_past_the_burst_until_it_refills() {
        let limiter = MessageLimiter::new(&rate(1, 3, OnExceed::Close), None);
        for _ in 0..3 {
            assert_eq!(limiter.admit(10, Instant::now()).await, Ok(()));
        }
        assert_eq!(limiter.admit(10, Instant::now()).await, Err(RateExceeded));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limiter.admit(10, Instant::now()).await, Ok(()));
        assert_eq!(limiter.admit(10, Instant::now()).await, Err(RateExceeded));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_are_budgeted_beside_messages() {
        let bytes = Some(rate(100, 100, OnExceed::Close));
        let limiter = MessageLimiter::new(&rate(1000, 1000, OnExceed::Close), bytes.as_ref());
        assert_eq!(limiter.admit(100, Instant::now()).await, Ok(()));
        assert_eq!(limiter.admit(1, Instant::now()).await, Err(RateExceeded));
        assert_eq!(
            limiter.admit(0, Instant::now()).await,
            Ok(()),
            "an empty message costs no bytes"
        );
        assert_eq!(
            limiter.admit(101, Instant::now()).await,
            Err(RateExceeded),
            "more than the burst"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_read_before_a_wait_is_charged_after_it() {
        // Messages close at 1/s with a burst of 2; bytes throttle at 10/s.
        let bytes = Some(rate(10, 10, OnExceed::Throttle));
        let limiter = MessageLimiter::new(&rate(1, 2, OnExceed::Close), bytes.as_ref());
        let read = Instant::now();
        assert_eq!(limiter.admit(10, read).await, Ok(()));
        // The bytes wait a second; the message budget refills meanwhile.
        assert_eq!(limiter.admit(10, read).await, Ok(()));
        assert_eq!(read.elapsed(), Duration::from_secs(1));
        // From the same read: at the read's time it would be over the
        // message burst, a second later it is not.
        assert_eq!(limiter.admit(0, read).await, Ok(()));
        assert_eq!(limiter.admit(0, read).await, Err(RateExceeded));
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_mode_waits_for_the_rate() {
        let limiter = MessageLimiter::new(&rate(10, 2, OnExceed::Throttle), None);
        let started = Instant::now();
        for _ in 0..12 {
            assert_eq!(limiter.admit(1, Instant::now()).await, Ok(()));
        }
        // Two at once, then one every 100 ms.
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}
