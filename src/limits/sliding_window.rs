//! The sliding window: `limit` requests per `window`, estimated from two counts.
//!
//! # Why two fixed windows and a sketch
//! Counting exactly per key over a true sliding window needs a timestamp per
//! request. Cloudflare's "Counting things, a lot of different things" keeps two
//! counts instead, the previous and the current fixed window, and estimates the
//! sliding count as `prev·(1 - elapsed/window) + curr`, assuming the previous
//! window's requests were spread evenly. [`pingora_limits::rate::Rate`] does
//! exactly that over two count-min sketches, so the state is a fixed block of
//! counters whatever the number of keys: nothing to evict, nothing to sweep.
//!
//! Only admitted requests are counted (a client hammering a closed window does
//! not extend its own ban), so a request is first *read* with
//! [`Rate::rate_with`], decided by the pure functions below, and only then
//! counted with [`Rate::observe`], then *read again*: if the estimate with
//! its own count is over the limit, the count is taken back and the request
//! refused. The second read is what makes racing requests safe. The count
//! `observe` returns is not: it is the minimum of four separate `fetch_add`s,
//! and two threads interleaving on the rows can both be told 1000 when the
//! total is 1001 (a test caught exactly that). A read made after one's own
//! increments sees every increment of every admitted request whose read came
//! earlier, so the admitted request that read last saw them all: admissions
//! never exceed the limit; at worst two racers both back off.
//!
//! # The sketch's error, and how it is sized
//! A count-min sketch never under-counts: a key's estimate is its true count
//! plus whatever other keys share its cell in the least-loaded of `d` rows. With
//! `w` cells per row and `N` requests counted in the window, the over-count is
//! at most `e·N/w` with probability `1 - e^-d` (Cormode & Muthukrishnan). What
//! matters to a client is a *wrong rejection*: an idle key is refused only if in
//! every row its cell already holds `limit` requests of other keys. By Markov,
//! one cell holds that much with probability `<= N/(w·limit)`, so all `d` do with
//! probability `<= (N/(w·limit))^d`. We use `d = 4` and `w = 4·max_keys`: with
//! `max_keys` keys *all* at their limit (`N = max_keys·limit`) an idle key is
//! wrongly refused with probability `<= 4^-4 ≈ 0.4%` (the Poisson estimate is
//! 0.24%; see the tests), and with typical traffic far below the limit it is
//! negligible. Cost: two sketches of `4·4·max_keys` eight-byte counters, 256
//! bytes per `max_keys` (25.6 MB at the default 100 000). Lower `max_keys` for
//! a limit that sees few keys.
//!
//! # What the headers say
//! `q` is `limit`, `w` the window in whole seconds (rounded up), `r` the whole
//! requests left under the estimate, and `t` the seconds until one more is
//! available if nothing else is counted. A request decays out of the estimate
//! only during the window after its own, so `t` can be up to `2·w`.
//!
//! # Known limits of `Rate`
//! `Rate` reads `Instant::now()` itself, so the `now` given to
//! [`admit`](super::engine::admit) does not move this limit; tests use short windows and
//! bounded polling, and the decision arithmetic is a pure function tested with
//! injected counts. Windows are rounded down to whole milliseconds (at least 1).
//! At each window change the request that notices it zeroes a whole sketch
//! (a few milliseconds at 100 000 keys). `Rate`'s reset races under contention
//! in rare cases (a thread that read the time just before another reset can
//! compute a negative elapsed time: a panic in debug builds, a spurious extra
//! reset in release); windows of at least a second make it very unlikely.

use std::time::Duration;

use pingora_limits::rate::{Rate, RateComponents};

use super::limit::KeyStatus;

const HASHES: usize = 4;
/// Cells per row for each key the limit is sized for.
const SLOTS_PER_KEY: usize = 4;
const MIN_SLOTS: usize = 1024;
const MAX_WINDOW_MS: u64 = 1_000_000_000_000;

/// The two counts behind one estimate, as `Rate` reports them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowCounts {
    /// Requests counted in the previous window.
    pub prev: u64,
    /// Requests counted so far in the current window.
    pub curr: u64,
    /// How much of the current window has passed, in `[0, 1)`.
    pub fraction: f64,
}

impl WindowCounts {
    /// The proportional estimate of requests in the last `window`.
    pub fn estimate(&self) -> f64 {
        self.prev as f64 * (1.0 - self.fraction) + self.curr as f64
    }

    /// Whether one more request fits under `limit`. Computed with the request
    /// already counted, so it is the same expression as the re-check after
    /// `observe`, and the two agree to the last bit when nothing raced.
    pub fn admits_one_more(&self, limit: u64) -> bool {
        let with_one = WindowCounts {
            curr: self.curr.saturating_add(1),
            ..*self
        };
        with_one.estimate() <= limit as f64
    }

    /// Whole requests still available under `limit`.
    pub fn remaining(&self, limit: u64) -> u64 {
        (limit as f64 - self.estimate()).floor().max(0.0) as u64
    }

    /// Nanoseconds until the estimate falls to `target` if nothing else is
    /// counted, or `None` if it never does (a negative target: a zero limit).
    /// The current count starts decaying only once its window is over.
    pub fn wait_until_at_most(&self, target: f64, window_ns: u64) -> Option<u64> {
        if target < 0.0 {
            return None;
        }
        if self.estimate() <= target {
            return Some(0);
        }
        let window = window_ns as f64;
        let (prev, curr, f) = (self.prev as f64, self.curr as f64, self.fraction);
        let wait = if curr <= target {
            // prev·(1 - f') + curr <= target, within this window; prev > 0 here.
            let f_needed = 1.0 - (target - curr) / prev;
            (f_needed - f) * window
        } else {
            // Next window: curr becomes prev and decays as curr·(1 - g).
            (1.0 - f) * window + (1.0 - target / curr) * window
        };
        Some(wait.max(0.0).ceil() as u64)
    }

    /// `r`, and nanoseconds until `r` grows by one.
    pub fn status(&self, limit: u64, window_ns: u64) -> (u64, Option<u64>) {
        let remaining = self.remaining(limit);
        let target = limit as f64 - remaining as f64 - 1.0;
        (remaining, self.wait_until_at_most(target, window_ns))
    }
}

impl From<RateComponents> for WindowCounts {
    fn from(c: RateComponents) -> Self {
        WindowCounts {
            // A count taken back across a window change can leave a cell at -1.
            prev: u64::try_from(c.prev_samples).unwrap_or(0),
            curr: u64::try_from(c.curr_samples).unwrap_or(0),
            fraction: c.current_interval_fraction.clamp(0.0, 1.0),
        }
    }
}

/// A keyed sliding-window limit over `pingora_limits::rate::Rate`.
pub struct SlidingWindow {
    rate: Rate,
    limit: u64,
    window_ns: u64,
    slots: usize,
}

impl SlidingWindow {
    pub fn new(limit: u64, window: Duration, max_keys: usize) -> SlidingWindow {
        // `Rate` doubles the window in milliseconds and takes it modulo: keep it
        // in 1 ms ..= ~31 years so neither can overflow or divide by zero.
        let window_ms = u64::try_from(window.as_millis())
            .unwrap_or(MAX_WINDOW_MS)
            .clamp(1, MAX_WINDOW_MS);
        let slots = sketch_slots(max_keys);
        SlidingWindow {
            rate: Rate::new_with_estimator_config(Duration::from_millis(window_ms), HASHES, slots),
            limit,
            window_ns: window_ms.saturating_mul(1_000_000),
            slots,
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn window_ns(&self) -> u64 {
        self.window_ns
    }

    /// Counter memory of both sketches.
    pub fn sketch_bytes(&self) -> usize {
        2 * HASHES * self.slots * std::mem::size_of::<isize>()
    }

    /// The key's counts now. Reading counts nothing.
    pub fn counts(&self, key: u64) -> WindowCounts {
        self.rate.rate_with(&key, WindowCounts::from)
    }

    /// What [`try_acquire`](Self::try_acquire) would answer now, counting nothing.
    pub fn peek(&self, key: u64) -> KeyStatus {
        self.evaluate(self.counts(key))
    }

    /// Counts the request if it fits.
    pub fn try_acquire(&self, key: u64) -> KeyStatus {
        let before = self.counts(key);
        if !before.admits_one_more(self.limit) {
            return self.evaluate(before);
        }
        self.rate.observe(&key, 1);
        let after = self.counts(key);
        if after.estimate() > self.limit as f64 {
            // Another request took the last unit between our read and our count.
            self.release(key);
            return self.evaluate(WindowCounts {
                curr: after.curr.saturating_sub(1),
                ..after
            });
        }
        let (remaining, wait_ns) = after.status(self.limit, self.window_ns);
        KeyStatus {
            admitted: true,
            remaining,
            wait_ns,
        }
    }

    /// Counts a request admitted elsewhere (by the shared store, for a
    /// stand-in kept in step with it), past the limit if need be: the count
    /// leaves the estimate within two windows like any other.
    pub fn spend(&self, key: u64) {
        self.rate.observe(&key, 1);
    }

    /// Takes back a count made by [`try_acquire`](Self::try_acquire).
    pub fn release(&self, key: u64) {
        self.rate.observe(&key, -1);
    }

    fn evaluate(&self, counts: WindowCounts) -> KeyStatus {
        let (remaining, wait_ns) = counts.status(self.limit, self.window_ns);
        KeyStatus {
            admitted: counts.admits_one_more(self.limit),
            remaining,
            wait_ns,
        }
    }
}

/// Cells per sketch row for a limit sized for `max_keys` keys.
pub fn sketch_slots(max_keys: usize) -> usize {
    max_keys.saturating_mul(SLOTS_PER_KEY).max(MIN_SLOTS)
}

#[cfg(test)]
#[path = "sliding_window_tests.rs"]
mod tests;
