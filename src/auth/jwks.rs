//! A JWKS URL's key set, cached: fetched at start and every refresh
//! interval by a background task, and early when a token names a `kid` the
//! set lacks (the provider rotated keys). Early fetches are de-duplicated
//! (concurrent verifications wait for the one fetch in flight) and
//! rate-limited (at most one per `min_refetch`), so a flood of tokens with
//! random `kid`s costs the provider at most one request per interval. A
//! failed fetch keeps the last good set, is counted and logged.

use std::sync::{
    Arc, Weak,
    atomic::{AtomicU64, Ordering},
};

use arc_swap::ArcSwap;
use hyper::StatusCode;
use tokio::{sync::watch, time::Instant};

use super::{
    client::{CallError, Endpoint, EndpointError},
    keys::{self, KeyError, KeySet},
    settings::JwksUrlSettings,
};

/// Largest JWKS document read: [`keys::MAX_JWKS_KEYS`] RSA-8192 keys fit.
const MAX_JWKS_BODY: usize = 256 * 1024;

/// What an early fetch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refetch {
    /// A fetch succeeded (this caller's or the one it waited for): look again.
    Fetched,
    /// The fetch failed: the set is the last good one.
    Failed,
    /// Too soon after the last early fetch: nothing was fetched.
    RateLimited {
        /// No fetch has ever succeeded: there is no key set at all.
        never_loaded: bool,
    },
}

/// Counters of one JWKS URL, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JwksStats {
    /// Fetches that succeeded.
    pub(crate) fetches: u64,
    /// Fetches that failed (the last good set was kept).
    pub(crate) failures: u64,
    /// Early fetches refused by the rate limit.
    pub(crate) rate_limited: u64,
    /// Keys in the current set.
    pub(crate) keys: u64,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// Serialised by [`JwksCache::fetching`]: one fetch at a time.
#[derive(Debug, Default)]
struct FetchState {
    /// When the last early (unknown-`kid`) fetch started.
    last_early: Option<Instant>,
    /// Whether the last fetch, of any kind, succeeded.
    last_ok: bool,
    /// Whether any fetch ever succeeded.
    loaded: bool,
}

/// One JWKS URL's cached key set.
#[derive(Debug)]
pub(crate) struct JwksCache {
    endpoint: Endpoint,
    settings: JwksUrlSettings,
    /// The set verifications read; replaced whole on each good fetch.
    keys: ArcSwap<KeySet>,
    /// Held for the duration of a fetch: waiters queue here instead of
    /// fetching again.
    fetching: tokio::sync::Mutex<FetchState>,
    /// Fetches finished, read before waiting on `fetching` to tell whether
    /// another caller's fetch completed meanwhile.
    attempts: AtomicU64,
    /// Ticks at each finished fetch: lets the owner (and tests) await one.
    finished: watch::Sender<u64>,
    fetches: AtomicU64,
    failures: AtomicU64,
    rate_limited: AtomicU64,
}

impl JwksCache {
    /// A cache of `settings.url`, empty until the first fetch; call
    /// [`JwksCache::spawn_refresher`] to start fetching.
    pub(crate) fn new(settings: &JwksUrlSettings) -> Result<JwksCache, EndpointError> {
        Ok(JwksCache {
            endpoint: Endpoint::new(&settings.url, settings.ca_file.as_deref())?,
            settings: settings.clone(),
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetching: tokio::sync::Mutex::new(FetchState::default()),
            attempts: AtomicU64::new(0),
            finished: watch::Sender::new(0),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        })
    }

    /// Fetches now and then every refresh interval, in a task that holds
    /// the cache weakly and ends once the cache is dropped (a reload that
    /// builds a new authenticator retires the old task with it).
    pub(crate) fn spawn_refresher(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let cache: Weak<JwksCache> = Arc::downgrade(self);
        let interval = self.settings.refresh;
        runtime.spawn(async move {
            loop {
                let Some(strong) = cache.upgrade() else {
                    return;
                };
                strong.fetch(false).await;
                drop(strong);
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// The current key set (empty until the first good fetch).
    pub(crate) fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Fetches early, because a token names a `kid` the set lacks.
    pub(crate) async fn refetch(&self) -> Refetch {
        self.fetch(true).await
    }

    #[cfg(test)]
    /// A receiver that changes each time a fetch finishes.
    pub(crate) fn finished(&self) -> watch::Receiver<u64> {
        self.finished.subscribe()
    }

    /// The counters.
    pub(crate) fn stats(&self) -> JwksStats {
        JwksStats {
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            keys: self.keys.load().len() as u64,
        }
    }

    /// One fetch, unless another finished while this caller waited for its
    /// turn (then its outcome is this caller's), or, for an early fetch,
    /// unless the last early one started less than `min_refetch` ago.
    async fn fetch(&self, early: bool) -> Refetch {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut state = self.fetching.lock().await;
        if self.attempts.load(Ordering::Acquire) != seen {
            return if state.last_ok {
                Refetch::Fetched
            } else {
                Refetch::Failed
            };
        }
        if early {
            let now = Instant::now();
            if state
                .last_early
                .is_some_and(|last| now.duration_since(last) < self.settings.min_refetch)
            {
                self.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Refetch::RateLimited {
                    never_loaded: !state.loaded,
                };
            }
            state.last_early = Some(now);
        }
        let outcome = self.fetch_once().await;
        state.last_ok = outcome.is_ok();
        match outcome {
            Ok((set, skipped)) => {
                state.loaded = true;
                self.fetches.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    url = self.endpoint.display(),
                    keys = set.len(),
                    skipped,
                    "JWKS fetched"
                );
                self.keys.store(Arc::new(set));
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    url = self.endpoint.display(),
                    error = %error,
                    kept_keys = self.keys.load().len(),
                    "JWKS fetch failed; keeping the last good key set"
                );
            }
        }
        let attempts = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        self.finished.send_replace(attempts);
        if state.last_ok {
            Refetch::Fetched
        } else {
            Refetch::Failed
        }
    }

    async fn fetch_once(&self) -> Result<(KeySet, usize), FetchError> {
        let response = self
            .endpoint
            .get(self.settings.timeout, MAX_JWKS_BODY)
            .await?;
        if response.status != StatusCode::OK {
            return Err(FetchError::Status(response.status));
        }
        let (keys, skipped) = keys::parse_jwks(&response.body)?;
        Ok((
            KeySet::new(keys.into_iter().map(Arc::new).collect()),
            skipped,
        ))
    }
}

/// Waits until `receiver` has seen at least `count` finished fetches.
#[cfg(test)]
pub(crate) async fn wait_for_fetches(receiver: &mut watch::Receiver<u64>, count: u64) {
    receiver
        .wait_for(|&finished| finished >= count)
        .await
        .expect("the cache is alive");
}
