//! The counters behind the brute-force throttles for login and registration; which counts a
//! request is checked against is [`crate::throttles`].
//!
//! Login is throttled on *failures*, and a success forgives some of them: a user who mistypes
//! twice is not held to it, while a client guessing passwords is stopped after a few tries. That
//! "count failures, forgive on success" rule is not a token bucket, which is why this is a small
//! fixed-window counter rather than a GCRA limiter. [`Throttle::take`] (count unless full, in
//! one step) serves as a ration: at most `limit` events per window.
//!
//! Counts live in process memory ([`AttemptLimiter`]). A deployment with several Auth instances
//! would multiply every limit by the instance count, so it can share the counts through Redis
//! ([`SharedCounters`], `--redis-url`): one key per throttle and subject, `INCR` plus a `PEXPIRE
//! … NX` that starts the window with the first event, in one `MULTI`. Redis earns its place only
//! there; bookings never touch it. The local count is always kept as well, and whenever Redis does
//! not answer (not yet connected, down, slow) a [`Throttle`] decides on the local count alone: the
//! limit then holds per process, as without Redis, and logins keep working.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Counts events per key in fixed windows and refuses keys that reached the limit.
#[derive(Debug)]
pub struct AttemptLimiter {
    limit: u32,
    window: Duration,
    entries: Mutex<Entries>,
}

/// The windows per key, and the size at which expired ones are swept next.
#[derive(Debug)]
struct Entries {
    windows: HashMap<String, Window>,
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

/// Above this many tracked keys, expired windows are swept on the next write. After a sweep the
/// next one waits until the map has doubled, so an on-sale with tens of thousands of distinct
/// users in one window (none expired yet) costs one sweep per doubling, not one per request.
const SWEEP_AT: usize = 10_000;

impl AttemptLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            entries: Mutex::new(Entries {
                windows: HashMap::new(),
                sweep_at: SWEEP_AT,
            }),
        }
    }

    /// `Err(seconds)` while `key` has reached the limit in its current window.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match entries.windows.get(key) {
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
        let entry = self.current(&mut entries, key, now);
        entry.count = entry.count.saturating_add(1);
    }

    /// Counts one event for `key` unless that would go over the limit, in one step: `Err(seconds)`
    /// (and nothing counted) when the window is already full. Unlike `check` then `record`, two
    /// callers cannot both take the last place.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (window, limit) = (self.window, self.limit);
        let entry = self.current(&mut entries, key, now);
        if entry.count >= limit {
            return Err(whole_seconds(window - now.duration_since(entry.started)));
        }
        entry.count = entry.count.saturating_add(1);
        Ok(())
    }

    /// `key`'s window as of `now`: a new one when it had none or its window has passed. Sweeps
    /// expired windows first once many keys are tracked.
    fn current<'a>(&self, entries: &'a mut Entries, key: &str, now: Instant) -> &'a mut Window {
        let window = self.window;
        if entries.windows.len() >= entries.sweep_at {
            entries
                .windows
                .retain(|_, entry| now.duration_since(entry.started) < window);
            entries.sweep_at = SWEEP_AT.max(entries.windows.len().saturating_mul(2));
        }
        let entry = entries.windows.entry(key.to_owned()).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(entry.started) >= window {
            *entry = Window {
                started: now,
                count: 0,
            };
        }
        entry
    }

    /// Forgets `key` (a successful login clears its account's failures).
    pub fn clear(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .windows
            .remove(key);
    }
}

/// `left` in whole seconds, rounded up: a client that waits a `Retry-After` of this finds the
/// window over, not a fraction of a second short of it.
fn whole_seconds(left: Duration) -> u64 {
    u64::try_from(left.as_millis().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// How long a throttle waits for Redis before deciding on the local count.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// A connection to the Redis server that holds every Auth instance's counts. Cheap to clone.
#[derive(Clone)]
pub struct SharedCounters {
    connection: Arc<OnceLock<ConnectionManager>>,
    prefix: Arc<str>,
}

impl std::fmt::Debug for SharedCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCounters")
            .field("prefix", &self.prefix)
            .field("connected", &self.connection.get().is_some())
            .finish()
    }
}

impl SharedCounters {
    /// Starts connecting to `url` in the background (retrying every few seconds until Redis
    /// answers); until then the throttles count locally. Fails only for a URL that cannot be
    /// one. Needs a Tokio runtime.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let shared = Self {
            connection: Arc::new(OnceLock::new()),
            prefix: prefix.into(),
        };
        let cell = shared.connection.clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        tokio::spawn(async move {
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(manager) => {
                        tracing::info!("throttle counters shared through Redis");
                        let _ = cell.set(manager);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot reach Redis for the throttles; counting per process meanwhile");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        });
        Ok(shared)
    }

    /// Whether the connection has been made (it reconnects by itself afterwards).
    pub fn is_connected(&self) -> bool {
        self.connection.get().is_some()
    }

    fn key(&self, throttle: &str, subject: &str) -> String {
        format!("{}:{throttle}:{subject}", self.prefix)
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.connection.get().cloned()
    }

    /// `Some(Err(seconds))` while the shared count has reached `limit`; `None` when Redis did not
    /// answer.
    async fn check(&self, throttle: &str, subject: &str, limit: u32) -> Option<Result<(), u64>> {
        let mut connection = self.connection()?;
        let key = self.key(throttle, subject);
        let answer: Result<(Option<u32>, i64), _> = redis::pipe()
            .get(&key)
            .pttl(&key)
            .query_async(&mut connection)
            .await;
        match answer {
            Ok((Some(count), left_ms)) if count >= limit && left_ms > 0 => {
                Some(Err(u64::try_from(left_ms)
                    .unwrap_or(0)
                    .div_ceil(1000)
                    .max(1)))
            }
            Ok(_) => Some(Ok(())),
            Err(error) => {
                redis_failed(&error);
                None
            }
        }
    }

    /// Counts one event unless the shared count already reached `limit`, atomically across
    /// instances: `INCR` first, so that of two instances racing for the last place one wins.
    /// `None` when Redis did not answer.
    async fn take(
        &self,
        throttle: &str,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> Option<Result<(), u64>> {
        let mut connection = self.connection()?;
        let key = self.key(throttle, subject);
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let answer: Result<(u64, i64), _> = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(window_ms)
            .arg("NX")
            .ignore()
            .pttl(&key)
            .query_async(&mut connection)
            .await;
        match answer {
            // Going over counts too, which only keeps the key as full as it already was.
            Ok((count, left_ms)) if count > u64::from(limit) && left_ms > 0 => {
                Some(Err(u64::try_from(left_ms)
                    .unwrap_or(0)
                    .div_ceil(1000)
                    .max(1)))
            }
            Ok(_) => Some(Ok(())),
            Err(error) => {
                redis_failed(&error);
                None
            }
        }
    }

    async fn record(&self, throttle: &str, subject: &str, window: Duration) {
        let Some(mut connection) = self.connection() else {
            return;
        };
        let key = self.key(throttle, subject);
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let done: Result<(), _> = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(window_ms)
            .arg("NX")
            .ignore()
            .query_async(&mut connection)
            .await;
        if let Err(error) = done {
            redis_failed(&error);
        }
    }

    async fn clear(&self, throttle: &str, subject: &str) {
        let Some(mut connection) = self.connection() else {
            return;
        };
        let done: Result<(), _> = redis::cmd("DEL")
            .arg(self.key(throttle, subject))
            .query_async(&mut connection)
            .await;
        if let Err(error) = done {
            redis_failed(&error);
        }
    }
}

fn redis_failed(error: &redis::RedisError) {
    metrics::counter!("auth_throttle_redis_errors_total").increment(1);
    tracing::debug!(%error, "Redis did not answer a throttle; deciding on the local count");
}

/// One throttle (e.g. "failed logins per account"): the local count, and the shared one when
/// there is Redis.
#[derive(Debug)]
pub struct Throttle {
    name: &'static str,
    local: AttemptLimiter,
    shared: Option<SharedCounters>,
}

impl Throttle {
    pub fn new(
        name: &'static str,
        limit: u32,
        window: Duration,
        shared: Option<SharedCounters>,
    ) -> Self {
        Self {
            name,
            local: AttemptLimiter::new(limit, window),
            shared,
        }
    }

    /// `Err(seconds)` while `subject` has reached the limit: across every instance when the
    /// counts are shared and Redis answers, in this process otherwise.
    pub async fn check(&self, subject: &str) -> Result<(), u64> {
        if let Some(shared) = &self.shared
            && let Some(answer) = shared.check(self.name, subject, self.local.limit).await
        {
            return answer;
        }
        self.local.check(subject, Instant::now())
    }

    /// Counts one event for `subject`.
    pub async fn record(&self, subject: &str) {
        self.local.record(subject, Instant::now());
        if let Some(shared) = &self.shared {
            shared.record(self.name, subject, self.local.window).await;
        }
    }

    /// Counts one event for `subject` unless it already reached the limit (`Err(seconds)`): a
    /// ration of `limit` events per window, shared across instances when Redis answers.
    pub async fn take(&self, subject: &str) -> Result<(), u64> {
        let local = self.local.take(subject, Instant::now());
        if let Some(shared) = &self.shared
            && let Some(answer) = shared
                .take(self.name, subject, self.local.limit, self.local.window)
                .await
        {
            return answer;
        }
        local
    }

    /// Forgets `subject`'s events.
    pub async fn clear(&self, subject: &str) {
        self.local.clear(subject);
        if let Some(shared) = &self.shared {
            shared.clear(self.name, subject).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many keys are tracked, and the size of the next sweep.
    fn tracked(limiter: &AttemptLimiter) -> (usize, usize) {
        let entries = limiter.entries.lock().unwrap();
        (entries.windows.len(), entries.sweep_at)
    }

    #[test]
    fn expired_windows_are_swept_once_per_doubling_not_on_every_write() {
        let limiter = AttemptLimiter::new(5, Duration::from_secs(10));
        let start = Instant::now();
        // An on-sale: more distinct users within one window than the sweep threshold. None has
        // expired, so a sweep frees nothing; the next one waits until the map has doubled.
        for user in 0..SWEEP_AT + 10 {
            assert!(limiter.take(&format!("user-{user}"), start).is_ok());
        }
        assert_eq!(tracked(&limiter), (SWEEP_AT + 10, 2 * SWEEP_AT));
        // Once the window has passed, the next sweep forgets every expired window.
        let later = start + Duration::from_secs(11);
        for user in 0..SWEEP_AT {
            assert!(limiter.take(&format!("late-{user}"), later).is_ok());
        }
        let (count, sweep_at) = tracked(&limiter);
        assert!(count <= SWEEP_AT, "expired windows were swept: {count}");
        // The 9 990 live windows left by that sweep set the next one at twice their number.
        assert_eq!(sweep_at, 2 * (SWEEP_AT - 10));
        // A refused key stays refused through the sweeps.
        for _ in 0..5 {
            assert!(limiter.take("busy", later).is_ok());
        }
        assert!(limiter.take("busy", later).is_err());
    }

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
    fn take_admits_up_to_the_limit_per_window_and_counts_no_refusal() {
        let limiter = AttemptLimiter::new(2, Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limiter.take("k", start), Ok(()));
        assert_eq!(limiter.take("k", start), Ok(()));
        assert_eq!(
            limiter.take("k", start + Duration::from_millis(500)),
            Err(10)
        );
        assert_eq!(limiter.take("k", start + Duration::from_secs(9)), Err(1));
        assert_eq!(limiter.take("other", start), Ok(()));
        // A new window admits again, from a count of zero.
        let later = start + Duration::from_secs(10);
        assert_eq!(limiter.take("k", later), Ok(()));
        assert_eq!(limiter.take("k", later), Ok(()));
        assert!(limiter.take("k", later).is_err());
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
