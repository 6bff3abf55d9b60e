//! The source of "now". Production uses the system clock; tests inject a [`ManualClock`] so that
//! rules about time (token expiry, sales closing at a concert's start) are tested exactly.

use std::sync::Arc;
use std::sync::Mutex;
use time::OffsetDateTime;

/// Something that tells the current time in UTC.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// A shareable clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: time::Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Milliseconds since the Unix epoch: how the SQLite stores keep instants, so that comparisons
/// in SQL are plain integer comparisons.
pub fn to_millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The inverse of [`to_millis`].
pub fn from_millis(millis: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_drops_sub_millisecond_precision_only() {
        let at = time::macros::datetime!(2027-05-01 19:30:00.123_456 UTC);
        let back = from_millis(to_millis(at));
        assert_eq!(back, time::macros::datetime!(2027-05-01 19:30:00.123 UTC));
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let start = time::macros::datetime!(2027-01-01 00:00 UTC);
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(time::Duration::minutes(15));
        assert_eq!(clock.now(), start + time::Duration::minutes(15));
    }
}
