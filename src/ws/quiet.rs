//! Futures polled only once something they wait for has happened.
//!
//! A session's task wakes for every message, and `select!` polls every
//! branch on every wake-up: the heartbeat's timer, the credentials'
//! deadline, the close handshake's clock and the hard stop, which fire
//! rarely or once in a connection's life, cost a lock or a timer
//! registration each time, and the writer, which has work only where a
//! sender's write could not finish, a lock. Wrapped in [`Quiet`], they are
//! polled with a waker of their own, and only after it was woken.
//!
//! A wrapper registers the task's waker only when nothing is registered
//! that would wake it: while nothing woke and the waker registered last is
//! the one polling now (a task polls its wrappers with one waker), a
//! wake-up for a message costs each wrapper three loads instead of two
//! compare-and-swaps.
//!
//! The [`Signal`] lives inside an allocation the connection has anyway
//! (its outbox, which also wakes it when a close frame is queued): a
//! session pays no allocation for it.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

use atomic_waker::AtomicWaker;

/// The count a wrapper starts from: one the signal skips, so that the
/// first poll always reaches the future.
const UNPOLLED: u32 = u32::MAX;

/// Counts the wake-ups of a task's quiet futures and wakes the task.
pub(crate) struct Signal {
    /// Wake-ups so far (wrapping, skipping [`UNPOLLED`]): a wrapper polls
    /// its future when this has moved since it last did.
    woken: AtomicU32,
    /// The task's waker, registered by a wrapper's poll unless it is there
    /// already.
    task: AtomicWaker,
    /// Who registered last: the data and vtable pointers of that waker.
    /// Written and read by the polling task only.
    registered: [AtomicUsize; 2],
}

impl Signal {
    pub(crate) const fn new() -> Self {
        Self {
            woken: AtomicU32::new(0),
            task: AtomicWaker::new(),
            registered: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// Leaves `waker` to be woken, unless it already is: returns the wake-up
    /// count as of the registration.
    ///
    /// Skipping is sound: the count unchanged since `seen` means no
    /// [`wake`](Self::wake) has taken the waker registered since then, and
    /// one that starts after the load takes it and wakes the task.
    fn register(&self, waker: &Waker, seen: u32) -> u32 {
        let identity = identity(waker);
        let woken = self.woken.load(Ordering::Acquire);
        if woken == seen
            && self.registered[0].load(Ordering::Relaxed) == identity[0]
            && self.registered[1].load(Ordering::Relaxed) == identity[1]
        {
            return woken;
        }
        // Registered before the count is read again: a wake-up after the
        // read wakes the task, whose next poll sees the count moved.
        self.task.register(waker);
        self.registered[0].store(identity[0], Ordering::Relaxed);
        self.registered[1].store(identity[1], Ordering::Relaxed);
        self.woken.load(Ordering::Acquire)
    }

    /// Lets every wrapper poll its future once more, and wakes the task.
    pub(crate) fn wake(&self) {
        let before = self.woken.fetch_add(1, Ordering::AcqRel);
        if before.wrapping_add(1) == UNPOLLED {
            self.woken.fetch_add(1, Ordering::AcqRel);
        }
        self.task.wake();
    }
}

/// What tells one waker from another, as `Waker::will_wake` does.
fn identity(waker: &Waker) -> [usize; 2] {
    [
        waker.data() as usize,
        std::ptr::from_ref(waker.vtable()) as usize,
    ]
}

/// What holds a [`Signal`] and wakes it when woken itself.
pub(crate) trait Signalled: Wake + Send + Sync + 'static {
    fn signal(&self) -> &Signal;
}

/// `future`, polled only on its first poll and after `owner`'s signal
/// woke.
pub(crate) fn quiet<S: Signalled, F: Future>(owner: &Arc<S>, future: F) -> Quiet<'_, S, F> {
    Quiet {
        future,
        owner,
        seen: UNPOLLED,
    }
}

/// See [`quiet`]. Small, since it sits in every session's task: the waker
/// it hands its future is made when it polls it.
pub(crate) struct Quiet<'s, S, F> {
    future: F,
    owner: &'s Arc<S>,
    /// The wake-up count at the last poll of `future`.
    seen: u32,
}

impl<S: Signalled, F: Future + Unpin> Future for Quiet<'_, S, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let woken = this.owner.signal().register(cx.waker(), this.seen);
        if this.seen == woken {
            return Poll::Pending;
        }
        this.seen = woken;
        let waker = Waker::from(this.owner.clone());
        Pin::new(&mut this.future).poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::atomic::AtomicUsize, task::ready};

    use tokio::sync::Notify;

    use super::*;

    struct Owner(Signal);

    impl Wake for Owner {
        fn wake(self: Arc<Self>) {
            self.0.wake();
        }
    }

    impl Signalled for Owner {
        fn signal(&self) -> &Signal {
            &self.0
        }
    }

    #[tokio::test]
    async fn a_quiet_future_is_polled_only_after_it_woke() {
        let polls = AtomicUsize::new(0);
        let notify = Notify::new();
        let mut notified = Box::pin(notify.notified());
        let counted = std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            ready!(notified.as_mut().poll(cx));
            Poll::Ready(())
        });
        let owner = Arc::new(Owner(Signal::new()));
        let mut quiet = quiet(&owner, Box::pin(counted));
        let mut noise = 0;
        let ended = std::future::poll_fn(|cx| {
            if Pin::new(&mut quiet).poll(cx).is_ready() {
                return Poll::Ready(());
            }
            // Other wake-ups of the task: the quiet future is not polled.
            noise += 1;
            if noise < 5 {
                cx.waker().wake_by_ref();
            } else if noise == 5 {
                notify.notify_one();
            }
            Poll::Pending
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), ended)
            .await
            .expect("the notification reaches the quiet future");
        assert_eq!(
            polls.load(Ordering::Relaxed),
            2,
            "first poll and the wake-up"
        );
    }

    /// Counts its wake-ups.
    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn the_waker_polling_now_is_the_one_woken() {
        let owner = Arc::new(Owner(Signal::new()));
        let mut quiet = quiet(&owner, std::future::pending::<()>());
        let (first, second) = (
            Arc::new(Counting(AtomicUsize::new(0))),
            Arc::new(Counting(AtomicUsize::new(0))),
        );
        let mut poll_with = |counting: &Arc<Counting>| {
            let waker = Waker::from(counting.clone());
            assert!(
                Pin::new(&mut quiet)
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        };
        // Polled again by the same waker, nothing woken: nothing to do.
        poll_with(&first);
        poll_with(&first);
        // Polled by another waker before anything woke (the wrapper moved
        // to another task): that one is registered.
        poll_with(&second);
        owner.0.wake();
        assert_eq!(first.0.load(Ordering::Relaxed), 0);
        assert_eq!(second.0.load(Ordering::Relaxed), 1);
        // After a wake-up the waker is registered again, the same one too.
        poll_with(&second);
        owner.0.wake();
        assert_eq!(second.0.load(Ordering::Relaxed), 2);
    }
}
