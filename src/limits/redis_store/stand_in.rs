//! The local stand-in of a shared limit: the limit at `1/N` of its size, `N`
//! being how many gateways share the store as [the
//! store](super::store::RedisStore::share) last saw them (`instances:`
//! before the first heartbeat).
//!
//! # Built again when `N` changes, off the request path
//! The local algorithms take their size when built, so a new `N` needs a new
//! stand-in. Building one allocates its key map or its sketches (megabytes
//! for a sliding window sized for many keys), which on a worker thread would
//! hold every request queued behind it, and the decisions of those requests
//! past their deadlines. So the first decision that sees the new `N` only
//! asks for it: a thread of its own builds the stand-in and swaps it in, and
//! decisions use the one there is meanwhile. `N` changes when gateways come
//! and go, which is rare, and it cannot change while Redis is down (no
//! heartbeat answers), so a rebuild falls between episodes. The new
//! stand-in's counts start afresh. A slot taken from a stand-in that was
//! replaced is released into the old one, which its guard keeps alive.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Guard};

use crate::limits::local::Local;
use crate::limits::spec::LimitSpec;

pub struct StandIn {
    inner: Arc<Inner>,
}

struct Inner {
    /// The limit as configured.
    spec: LimitSpec,
    local: ArcSwap<Local>,
    /// The `N` of the stand-in there is, or of the one being built.
    wanted: AtomicU32,
    /// Held to check `wanted` and swap: a build for an `N` already replaced
    /// by another is dropped.
    swap: Mutex<()>,
}

impl StandIn {
    /// `local` is `spec`'s limit at `1/share` of its size.
    pub fn new(local: Local, spec: &LimitSpec, share: u32) -> StandIn {
        StandIn {
            inner: Arc::new(Inner {
                spec: spec.clone(),
                local: ArcSwap::from_pointee(local),
                wanted: AtomicU32::new(share.max(1)),
                swap: Mutex::new(()),
            }),
        }
    }

    /// The stand-in there is now.
    pub fn now(&self) -> Guard<Arc<Local>> {
        self.inner.local.load()
    }

    pub fn load_full(&self) -> Arc<Local> {
        self.inner.local.load_full()
    }

    /// The stand-in there is now, and one for `n` gateways asked for if it
    /// is not for them.
    pub fn for_share(&self, n: u32) -> Guard<Arc<Local>> {
        let n = n.max(1);
        if self.inner.wanted.load(Ordering::Acquire) != n
            && self.inner.wanted.swap(n, Ordering::AcqRel) != n
        {
            let inner = self.inner.clone();
            let built = std::thread::Builder::new()
                .name("sluice-stand-in".into())
                .spawn(move || inner.build(n));
            if let Err(e) = built {
                log::warn!("cannot start a thread to resize a local fallback: {e}");
            }
        }
        self.now()
    }
}

impl Inner {
    fn build(&self, n: u32) {
        let Some(local) = Local::new(&self.spec.algorithm.scaled_down(n), &self.spec) else {
            return;
        };
        let _one = self.swap.lock().unwrap_or_else(PoisonError::into_inner);
        if self.wanted.load(Ordering::Acquire) == n {
            self.local.store(Arc::new(local));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySpec;
    use crate::limits::limit::{Key, Limit, Priority};
    use crate::limits::spec::{Algorithm, OnMissing, StoreSpec};
    use std::time::{Duration, Instant};

    fn spec() -> LimitSpec {
        LimitSpec {
            name: "l".into(),
            algorithm: Algorithm::SlidingWindow {
                limit: 6,
                window: Duration::from_secs(3600),
            },
            key: KeySpec::Global,
            shadow: false,
            on_missing: OnMissing::Shared,
            status: 429,
            store: StoreSpec::Local,
            max_keys: 16,
        }
    }

    fn admitted(local: &Local) -> usize {
        let key = Key {
            hash: 7,
            value: None,
            class: Priority::default(),
        };
        (0..10)
            .filter(|_| local.commit(key, 0).status.admitted)
            .count()
    }

    #[test]
    fn a_new_share_is_built_in_the_background_and_swapped_in() {
        let s = spec();
        let at = |n| Local::new(&s.algorithm.scaled_down(n), &s).unwrap();
        let stand_in = StandIn::new(at(3), &s, 3);
        assert_eq!(admitted(&stand_in.for_share(3)), 2, "6 / 3");
        // Asking for 2 answers with the stand-in there is, at once...
        let _ = stand_in.for_share(2);
        // ...and the one for 2 comes soon after.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let l = stand_in.for_share(2);
            if admitted(&l) == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "never resized");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
