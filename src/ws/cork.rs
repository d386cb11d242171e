//! Corking: while a cork is held on a thread, outboxes that receive items
//! defer their socket writes until it is released, then write what they
//! gathered in one vectored write each.
//!
//! A session holds one around each poll of its reader, so that the replies
//! and fan-out deliveries of every message a single read brought in (a
//! pipelining client, a publisher's burst) leave as one write per
//! recipient, while a lone message is written as soon as the reader has
//! nothing more to read, in the reader's own task. A fan-out holds one
//! while it walks a member list under its lock, so that no socket is
//! written with the lock held. Corks nest: only the outermost one writes.

use std::{
    cell::RefCell,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

/// What a cork defers: an outbox's writes.
pub(crate) trait Deferred: Send + Sync {
    /// Makes the writes deferred until the cork's release.
    fn release(&self);
}

thread_local! {
    /// The outboxes deferred under the cork held on this thread, if any.
    static DEFERRED: RefCell<Option<Vec<Arc<dyn Deferred>>>> = const { RefCell::new(None) };
    /// An empty list whose capacity the next cork reuses: a fan-out to ten
    /// thousand members allocates its list once per thread, not per message.
    static SPARE: RefCell<Vec<Arc<dyn Deferred>>> = const { RefCell::new(Vec::new()) };
}

/// A held cork; releasing it (dropping) writes what it deferred.
///
/// Not `Send`: it belongs to the thread's current poll and must never be
/// held across an `.await`, which the compiler then refuses in any spawned
/// future.
pub(crate) struct Cork {
    outermost: bool,
    _thread_bound: PhantomData<*const ()>,
}

impl Cork {
    /// Holds a cork on this thread until the value is dropped.
    pub(crate) fn hold() -> Self {
        let outermost = DEFERRED.with_borrow_mut(|deferred| {
            if deferred.is_some() {
                return false;
            }
            *deferred = Some(SPARE.take());
            true
        });
        Self {
            outermost,
            _thread_bound: PhantomData,
        }
    }
}

impl Drop for Cork {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        let Some(mut deferred) = DEFERRED.with_borrow_mut(Option::take) else {
            return;
        };
        for deferred_writes in deferred.drain(..) {
            deferred_writes.release();
        }
        SPARE.set(deferred);
    }
}

/// Defers `writes` to the cork held on this thread; returns false (and
/// does nothing) when none is held.
pub(super) fn defer<D: Deferred + 'static>(writes: &Arc<D>) -> bool {
    DEFERRED.with_borrow_mut(|deferred| match deferred {
        Some(list) => {
            list.push(writes.clone());
            true
        }
        None => false,
    })
}

/// Holds a cork around every poll of `future`, which the caller pins (a
/// wrapper that pinned it itself would hold a second copy of its state).
pub(crate) fn corked<F: Future + Unpin>(future: F) -> Corked<F> {
    Corked(future)
}

/// See [`corked`].
pub(crate) struct Corked<F>(F);

impl<F: Future + Unpin> Future for Corked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _cork = Cork::hold();
        Pin::new(&mut self.0).poll(cx)
    }
}
