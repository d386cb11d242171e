//! Graceful shutdown: stop accepting (done by the caller cancelling the
//! shutdown token), close every connection with 1001 spread over
//! `drain_window` with jitter, so that clients do not all reconnect in the
//! same instant, and drop whatever is left at `shutdown_timeout`.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    sync::Arc,
    time::Duration,
};

use tokio::time::Instant;

use super::state::ServerState;
use crate::protocol::close;

/// Runs the drain to completion; returns when every task has ended.
pub(super) async fn drain(state: &Arc<ServerState>) {
    let snapshot = state.snapshot.load_full();
    let (window, deadline) = (
        snapshot.config.server.drain_window,
        snapshot.config.server.shutdown_timeout,
    );
    let started = Instant::now();
    let outboxes: Vec<_> = snapshot
        .channels
        .iter()
        .flat_map(|entry| entry.live.start_closing())
        .collect();
    tracing::info!(connections = outboxes.len(), window = ?window, "shutting down: closing every connection with 1001, paced");
    let pacing = async {
        let mut jitter = Jitter::new();
        let slot = window / u32::try_from(outboxes.len().max(1)).unwrap_or(u32::MAX);
        for (index, outbox) in outboxes.iter().enumerate() {
            // Each close lands at a random point of its own slot.
            let at =
                started + slot * u32::try_from(index).unwrap_or(u32::MAX) + jitter.within(slot);
            tokio::time::sleep_until(at).await;
            outbox.close(close::GOING_AWAY, "server shutting down");
        }
    };
    state.tasks.close();
    let finished = async {
        pacing.await;
        state.tasks.wait().await;
    };
    if tokio::time::timeout_at(started + deadline, finished)
        .await
        .is_err()
    {
        tracing::warn!("shutdown_timeout reached: dropping the connections that are left");
        state.hard_stop.cancel();
        state.tasks.wait().await;
    }
}

/// A small xorshift generator seeded from the process's random hasher keys:
/// enough to spread closes, no dependency for it.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        Self(RandomState::new().build_hasher().finish() | 1)
    }

    /// A random duration in `[0, slot)`.
    fn within(&mut self, slot: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        slot.mul_f64((self.0 >> 11) as f64 / (1u64 << 53) as f64)
    }
}
