//! Counters added to on every read, write and message, without a locked
//! instruction: each thread adds to a stripe of its own with a plain load
//! and store, and a reader sums the stripes.
//!
//! A relaxed `fetch_add` is still a locked read-modify-write on x86, a few
//! nanoseconds each; a one-in-flight echo bumps six such counters per
//! message, a few percent of its user-space time. Stripes are a cache line
//! apart, so threads do not share lines either. The first [`OWNED`] threads
//! that count get a stripe each for the life of the process; any later one
//! (a runtime's threads in a test process, a blocking pool's come and go)
//! shares one last stripe with the others, with locked adds there.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

/// Threads that get a stripe of their own.
const OWNED: usize = 63;

/// Stripes per counter set: the owned ones and the shared one.
const STRIPES: usize = OWNED + 1;

/// The next stripe to hand out: counts threads, never reused, so that a
/// stripe never has two owners.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

/// The value of [`STRIPE`] before its thread first counted.
const UNASSIGNED: usize = usize::MAX;

thread_local! {
    /// This thread's stripe, handed out at its first count.
    static STRIPE: Cell<usize> = const { Cell::new(UNASSIGNED) };
}

/// This thread's stripe: its own, or the shared one past [`OWNED`].
fn stripe() -> usize {
    STRIPE.with(|stripe| {
        let mut index = stripe.get();
        if index == UNASSIGNED {
            index = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed).min(OWNED);
            stripe.set(index);
        }
        index
    })
}

/// `N` counters, striped.
#[derive(Debug)]
pub(crate) struct Striped<const N: usize> {
    stripes: Box<[Stripe<N>]>,
}

/// One thread's share of the counters, alone on its cache lines.
#[derive(Debug)]
#[repr(align(64))]
struct Stripe<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Striped<N> {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES)
                .map(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }
}

impl<const N: usize> Striped<N> {
    /// Adds `amount` to counter `counter`.
    pub(crate) fn add(&self, counter: usize, amount: u64) {
        let index = stripe();
        let cell = &self.stripes[index].0[counter];
        if index < OWNED {
            // Only this thread writes this stripe.
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(amount),
                Ordering::Relaxed,
            );
        } else {
            cell.fetch_add(amount, Ordering::Relaxed);
        }
    }

    /// The total of counter `counter` over every thread.
    pub(crate) fn get(&self, counter: usize) -> u64 {
        self.stripes.iter().fold(0, |total, stripe| {
            total.wrapping_add(stripe.0[counter].load(Ordering::Relaxed))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn every_threads_adds_are_counted_past_the_owned_stripes() {
        let counters = Arc::new(Striped::<2>::default());
        // More threads than stripes, several at once: the owned stripes and
        // the shared one are all written.
        let threads: Vec<_> = (0..STRIPES + 20)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counters.add(0, 1);
                        counters.add(1, 3);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let threads = (STRIPES + 20) as u64;
        assert_eq!(counters.get(0), threads * 1000);
        assert_eq!(counters.get(1), threads * 3000);
    }
}
