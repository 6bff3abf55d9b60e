//! Brute-force throttles for login and registration.
//!
//! Login is throttled on *failures*, per account and per client address, and a success clears
//! the account's count: a user who mistypes twice is not locked out for the window, while an
//! attacker guessing passwords is stopped after a few tries. That "count failures, forgive on
//! success" rule is not a token bucket, which is why this is a small fixed-window counter rather
//! than a GCRA limiter. Counts live in process memory; a deployment with several Auth instances
//! multiplies the limit by the instance count (see the scale-out notes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts events per key in fixed windows and refuses keys that reached the limit.
#[derive(Debug)]
pub struct AttemptLimiter {
    limit: u32,
    window: Duration,
    entries: Mutex<HashMap<String, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

/// Above this many tracked keys, expired windows are swept on the next write.
const SWEEP_AT: usize = 10_000;

impl AttemptLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` while `key` has reached the limit in its current window.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match entries.get(key) {
            Some(window) if now.duration_since(window.started) < self.window => {
                if window.count >= self.limit {
                    let left = self.window - now.duration_since(window.started);
                    Err(left.as_secs().max(1))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts one event for `key`.
    pub fn record(&self, key: &str, now: Instant) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= SWEEP_AT {
            let window = self.window;
            entries.retain(|_, entry| now.duration_since(entry.started) < window);
        }
        let entry = entries.entry(key.to_owned()).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(entry.started) >= self.window {
            *entry = Window {
                started: now,
                count: 0,
            };
        }
        entry.count = entry.count.saturating_add(1);
    }

    /// Forgets `key` (a successful login clears its account's failures).
    pub fn clear(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_limit_until_the_window_ends() {
        let limiter = AttemptLimiter::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("k", start).is_ok());
            limiter.record("k", start);
        }
        let retry = limiter
            .check("k", start + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(retry, 40);
        assert!(limiter.check("other", start).is_ok());
        assert!(limiter.check("k", start + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn clearing_forgives_past_failures() {
        let limiter = AttemptLimiter::new(1, Duration::from_secs(60));
        let now = Instant::now();
        limiter.record("k", now);
        assert!(limiter.check("k", now).is_err());
        limiter.clear("k");
        assert!(limiter.check("k", now).is_ok());
    }
}
