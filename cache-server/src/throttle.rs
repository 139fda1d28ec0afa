//! Lock-outs: a caller or peer that fails too often in a window is refused for a while.
//!
//! Used for callers that ask for too many unknown GUIDs (someone guessing) and for peers
//! whose TLS handshakes keep failing. Counting is per fixed window; the block lasts one
//! window from the failure that triggered it. State is in memory only.

use std::hash::Hash;

use dashmap::DashMap;
use jiff::{SignedDuration, Timestamp};

use crate::clock::Clock;

/// Entries kept before stale windows are pruned.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Timestamp,
    failures: u32,
    blocked_until: Option<Timestamp>,
}

/// Counts failures per key and blocks keys that pass the limit.
#[derive(Debug)]
pub struct Throttle<K: Eq + Hash> {
    max_failures: u32,
    window: SignedDuration,
    clock: Clock,
    state: DashMap<K, Window>,
}

impl<K: Eq + Hash + Clone> Throttle<K> {
    /// Blocks a key for `window` once it fails more than `max_failures` times in `window`.
    pub fn new(max_failures: u32, window: SignedDuration, clock: Clock) -> Self {
        Throttle { max_failures, window, clock, state: DashMap::new() }
    }

    /// Whether `key` is blocked now.
    pub fn is_blocked(&self, key: &K) -> bool {
        let now = self.clock.now();
        self.state.get(key).and_then(|w| w.blocked_until).is_some_and(|until| now < until)
    }

    /// Counts one failure of `key`; true when this failure started a block.
    pub fn record_failure(&self, key: &K) -> bool {
        let now = self.clock.now();
        if self.state.len() > PRUNE_ABOVE {
            self.prune(now);
        }
        let mut window =
            self.state.entry(key.clone()).or_insert(Window { start: now, failures: 0, blocked_until: None });
        if window.blocked_until.is_some_and(|until| now < until) {
            return false;
        }
        if window.blocked_until.is_some() || now >= window.start + self.window {
            *window = Window { start: now, failures: 0, blocked_until: None };
        }
        window.failures += 1;
        if window.failures > self.max_failures {
            window.blocked_until = Some(now + self.window);
            return true;
        }
        false
    }

    fn prune(&self, now: Timestamp) {
        let window = self.window;
        self.state.retain(|_, w| now < w.start + window || w.blocked_until.is_some_and(|until| now < until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_past_the_limit_and_clears_after_the_window() {
        let clock = Clock::manual("2026-11-24T15:00:00Z".parse().unwrap());
        let throttle = Throttle::new(3, SignedDuration::from_mins(1), clock.clone());
        for _ in 0..3 {
            assert!(!throttle.record_failure(&"a"));
        }
        assert!(!throttle.is_blocked(&"a"));
        assert!(throttle.record_failure(&"a"));
        assert!(throttle.is_blocked(&"a"));
        assert!(!throttle.is_blocked(&"b"));
        assert!(!throttle.record_failure(&"a"), "only the first failure past the limit starts a block");
        clock.advance(SignedDuration::from_secs(61));
        assert!(!throttle.is_blocked(&"a"));
        assert!(!throttle.record_failure(&"a"), "counting starts over");
    }

    #[test]
    fn failures_spread_over_windows_do_not_block() {
        let clock = Clock::manual("2026-11-24T15:00:00Z".parse().unwrap());
        let throttle = Throttle::new(2, SignedDuration::from_mins(1), clock.clone());
        for _ in 0..10 {
            throttle.record_failure(&1);
            throttle.record_failure(&1);
            clock.advance(SignedDuration::from_secs(61));
        }
        assert!(!throttle.is_blocked(&1));
    }
}
