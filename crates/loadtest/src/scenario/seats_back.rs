//! Watching the seats of expiring holds come back, for `expiry`: the availability read polled
//! on a connection of its own ([`watch`]), what those samples say about each seat's return
//! ([`Returns::of`]), and the sold-out answers of the other users cut into the windows before,
//! during and after the expiry ([`windows`]). Everything but [`watch`] is pure and unit-tested.
//!
//! Times are wall-clock (`OffsetDateTime`): a hold falls due by the server's clock at its
//! `expires_at`, and the tool runs on the same machine, so both read the same clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::StatusCode;
use time::OffsetDateTime;

use crate::client::{Answer, Call, Conn, Target};
use crate::report::{PhaseStats, Recorder};
use crate::verify::SeatCounts;

/// How often the availability read is polled.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// One reading of the watched seat type's `remaining`: sent at `sent`, answered at `received`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sample {
    pub(super) sent: OffsetDateTime,
    pub(super) received: OffsetDateTime,
    pub(super) remaining: i64,
}

/// What the watcher saw.
#[derive(Debug, Default)]
pub(super) struct Watched {
    pub(super) samples: Vec<Sample>,
    /// Reads that did not answer 200 with the seat type in it.
    pub(super) failures: usize,
    /// When the first read that showed every seat back was answered.
    pub(super) all_back_at: Option<OffsetDateTime>,
}

/// What the watcher needs to know.
pub(super) struct Watch {
    pub(super) target: Arc<Target>,
    pub(super) concert_id: String,
    pub(super) seat_type_id: String,
    pub(super) capacity: i64,
    /// Give up waiting for every seat at this instant.
    pub(super) deadline: OffsetDateTime,
    /// Keep watching (and the others booking) this long after every seat is back.
    pub(super) after: Duration,
}

impl Watch {
    /// Polls `GET /concerts/{id}/availability` every [`POLL_EVERY`] until every seat of the
    /// seat type is back and `after` has passed, or until the deadline; then raises `stop`.
    pub(super) async fn run(self, stop: Arc<AtomicBool>) -> Watched {
        let mut conn = Conn::new(self.target.clone());
        let mut watched = Watched::default();
        let call = Call::get(&format!(
            "/api/v1/concerts/{}/availability",
            self.concert_id
        ));
        let Ok(call) = call else {
            stop.store(true, Ordering::Relaxed);
            return watched;
        };
        loop {
            let sent = OffsetDateTime::now_utc();
            let read = conn.json::<SeatCounts>(&call, StatusCode::OK).await;
            let received = OffsetDateTime::now_utc();
            let remaining = read.ok().and_then(|counts| {
                counts
                    .seat_types
                    .iter()
                    .find(|seat| seat.id == self.seat_type_id)
                    .map(|seat| seat.remaining as i64)
            });
            match remaining {
                Some(remaining) => {
                    watched.samples.push(Sample {
                        sent,
                        received,
                        remaining,
                    });
                    if remaining >= self.capacity && watched.all_back_at.is_none() {
                        watched.all_back_at = Some(received);
                    }
                }
                None => watched.failures += 1,
            }
            let done = watched
                .all_back_at
                .is_some_and(|back| received >= back + self.after);
            if done || received >= self.deadline {
                break;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        stop.store(true, Ordering::Relaxed);
        watched
    }
}

/// How the seats came back, in milliseconds. Each is an upper bound: a sample's `received`
/// is after the moment the server read the count.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Returns {
    /// From the first `expires_at` until the first seat was seen back.
    pub(super) first_back_ms: Option<f64>,
    /// From the last `expires_at` until every seat was seen back.
    pub(super) all_back_ms: Option<f64>,
    /// The longest wait of a seat: over k, from the k-th `expires_at` until k seats were seen
    /// back (and which k).
    pub(super) worst_lag: Option<(f64, usize)>,
    /// Samples that showed more seats than had fallen due: a seat back before its time.
    pub(super) early: Vec<String>,
}

fn ms(from: OffsetDateTime, to: OffsetDateTime) -> f64 {
    ((to - from).as_seconds_f64() * 1000.0).max(0.0)
}

impl Returns {
    /// Reads `samples` (in the order they were sent) against the holds' `expiries` (sorted);
    /// `base` is what the seat type had available without those holds.
    pub(super) fn of(expiries: &[OffsetDateTime], base: i64, samples: &[Sample]) -> Self {
        let early = samples
            .iter()
            .filter_map(|sample| {
                let due = expiries.partition_point(|at| *at <= sample.received) as i64;
                (sample.remaining > base + due).then(|| {
                    format!(
                        "{} seats available at {} with {due} holds due",
                        sample.remaining, sample.received
                    )
                })
            })
            .collect();
        // When k seats were first seen back: the first sample whose running maximum reaches
        // base + k (the running maximum makes the search monotone in k).
        let mut seen = Vec::with_capacity(samples.len());
        let mut most = i64::MIN;
        for sample in samples {
            most = most.max(sample.remaining);
            seen.push((most, sample.received));
        }
        let back_at = |k: usize| {
            let at = seen.partition_point(|(most, _)| *most < base + k as i64);
            seen.get(at).map(|(_, received)| *received)
        };
        let mut worst_lag: Option<(f64, usize)> = None;
        for (index, expires_at) in expiries.iter().enumerate() {
            let Some(back) = back_at(index + 1) else {
                worst_lag = None;
                break;
            };
            let lag = ms(*expires_at, back);
            if worst_lag.is_none_or(|(worst, _)| lag > worst) {
                worst_lag = Some((lag, index + 1));
            }
        }
        let n = expiries.len();
        Self {
            first_back_ms: expiries
                .first()
                .zip(back_at(1))
                .map(|(first, back)| ms(*first, back)),
            all_back_ms: expiries
                .last()
                .zip(back_at(n))
                .map(|(last, back)| ms(*last, back)),
            worst_lag,
            early,
        }
    }
}

/// One booking of the other users: sent at `at`, answered after `took`.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub(super) at: OffsetDateTime,
    pub(super) took: Duration,
    pub(super) answer: Answer,
}

/// The others' bookings cut by when they were sent: before the first `expires_at`, from it
/// until every seat was back (`back`; the end of the phase if they never all came back), and
/// after; each window's length is from `start`, to `end`.
pub(super) fn windows(
    sent: &[Vec<Sent>],
    start: OffsetDateTime,
    first_due: OffsetDateTime,
    back: Option<OffsetDateTime>,
    end: OffsetDateTime,
) -> [PhaseStats; 3] {
    let back = back.unwrap_or(end).max(first_due);
    let mut recorders = [Recorder::new(), Recorder::new(), Recorder::new()];
    for one in sent.iter().flatten() {
        let window = if one.at < first_due {
            0
        } else if one.at < back {
            1
        } else {
            2
        };
        recorders[window].record(&one.answer, one.took);
    }
    let length = |from: OffsetDateTime, to: OffsetDateTime| {
        Duration::try_from(to - from).unwrap_or(Duration::ZERO)
    };
    let [before, during, after] = recorders;
    [
        before.finish("sold-out before the expiry", length(start, first_due)),
        during.finish(
            "sold-out during the expiry",
            length(first_due.max(start), back),
        ),
        after.finish("sold-out after every seat was back", length(back, end)),
    ]
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T: OffsetDateTime = datetime!(2027-01-01 10:00:00 UTC);

    fn at(ms: i64) -> OffsetDateTime {
        T + time::Duration::milliseconds(ms)
    }

    fn sample(sent_ms: i64, remaining: i64) -> Sample {
        Sample {
            sent: at(sent_ms),
            received: at(sent_ms + 2),
            remaining,
        }
    }

    #[test]
    fn returns_measure_each_seat_against_its_expiry() {
        // Three holds due at 0, 0 and 100 ms, on a seat type with 1 seat never held.
        let expiries = [at(0), at(0), at(100)];
        let samples = [
            sample(-10, 1),
            sample(0, 1),
            sample(10, 2),
            sample(20, 3),
            sample(110, 3),
            sample(130, 4),
        ];
        let returns = Returns::of(&expiries, 1, &samples);
        assert!(returns.early.is_empty(), "{returns:?}");
        // The first seat was seen back at 12 ms (the answer to the read sent at 10 ms).
        assert_eq!(returns.first_back_ms, Some(12.0));
        // The last one at 132 ms, 32 ms after it fell due.
        assert_eq!(returns.all_back_ms, Some(32.0));
        // The second seat, due at 0, was back by 22 ms; the third waited longest, 32 ms.
        assert_eq!(returns.worst_lag, Some((32.0, 3)));
        let slow_second = [sample(10, 2), sample(60, 3), sample(101, 4)];
        assert_eq!(
            Returns::of(&expiries, 1, &slow_second).worst_lag,
            Some((62.0, 2))
        );
    }

    #[test]
    fn a_seat_back_early_or_never_is_reported() {
        let expiries = [at(100)];
        let early = Returns::of(&expiries, 0, &[sample(50, 1)]);
        assert_eq!(early.early.len(), 1);
        let never = Returns::of(&expiries, 0, &[sample(50, 0), sample(200, 0)]);
        assert_eq!(never.all_back_ms, None);
        assert_eq!(never.worst_lag, None);
        assert_eq!(never.first_back_ms, None);
        assert!(never.early.is_empty());
    }

    #[test]
    fn windows_cut_the_answers_by_when_they_were_sent() {
        let sold_out = Answer::Http {
            status: StatusCode::CONFLICT,
            code: Some(Arc::from("sold_out")),
            id: None,
        };
        let sent = |ms: i64, took: u64| Sent {
            at: at(ms),
            took: Duration::from_millis(took),
            answer: sold_out.clone(),
        };
        let sent = vec![
            vec![sent(-500, 1), sent(-1, 1), sent(0, 9)],
            vec![sent(400, 9), sent(600, 2)],
        ];
        let [before, during, after] = windows(&sent, at(-1000), at(0), Some(at(500)), at(1500));
        assert_eq!(
            (before.requests, during.requests, after.requests),
            (2, 2, 1)
        );
        assert_eq!(
            (before.seconds, during.seconds, after.seconds),
            (1.0, 0.5, 1.0)
        );
        let p99 = |phase: &PhaseStats| phase.latency.as_ref().unwrap().p99_ms;
        assert!(p99(&during) > p99(&before));
        assert_eq!(during.count(409, Some("sold_out")), 2);
        // Never all back: "during" lasts until the end.
        let [_, during, after] = windows(&sent, at(-1000), at(0), None, at(1500));
        assert_eq!((during.requests, after.requests), (3, 0));
    }
}
