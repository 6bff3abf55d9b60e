//! Judging a waiting room's admissions (contract, "Waiting room for on-sales": "admission order is
//! the shuffled order, then arrival order; the admission rate holds over any minute") from what
//! the fans were shown: the positions they read while waiting, and their admission times
//! (`admitted_until − admission_ttl_seconds`, the server's own instants). No I/O: the unit tests
//! below feed it made-up rooms.

use std::time::Instant;

use time::OffsetDateTime;

use crate::report::Check;

/// A position a user was shown, and when the tool asked and when it heard the answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sighting {
    pub(super) sent: Instant,
    pub(super) heard: Instant,
    pub(super) position: u64,
}

/// One admitted fan as the order check sees them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Admitted {
    /// The server's admission time.
    pub(super) at: OffsetDateTime,
    /// The first position they were shown, if they waited at one.
    pub(super) first_position: Option<Sighting>,
}

/// What contradicts "admission order is the shuffled order, then arrival order", from the
/// positions the fans were shown and their admission times; also how many fans could be
/// compared with someone shown a position before them.
///
/// A position is relative: `rank − admitted`, against the room's admitted rank when it was
/// read, which moves on every tick. Two positions read at different ticks cannot be compared
/// as they stand; what can be is:
/// - a fan shown position `p` has rank `p` or more, so at least `p` fans (them included) must
///   be admitted at or before their admission time;
/// - when X's read was answered before Y's was sent, Y's read saw an admitted rank at least
///   X's, so `p_Y > p_X` means `rank_Y > rank_X`: Y is not admitted before X. Every such pair
///   is checked (a prefix maximum over positions, O(n log n)).
fn order_problems(admitted: &[Admitted]) -> (usize, Vec<String>) {
    let mut times: Vec<OffsetDateTime> = admitted.iter().map(|fan| fan.at).collect();
    times.sort();
    let mut problems = Vec::new();
    let mut seen: Vec<(Sighting, OffsetDateTime)> = admitted
        .iter()
        .filter_map(|fan| Some((fan.first_position?, fan.at)))
        .collect();
    // Position 1 is next: a 0 is wrong, and would have no place in the tree below.
    seen.retain(|(sighting, _)| {
        let valid = sighting.position > 0;
        if !valid {
            problems.push("shown position 0".to_owned());
        }
        valid
    });
    for (sighting, at) in &seen {
        let up_to = times.partition_point(|time| time <= at);
        if (up_to as u64) < sighting.position {
            problems.push(format!(
                "shown position {} but admitted among the first {up_to} at {at}",
                sighting.position
            ));
        }
    }
    let size = seen
        .iter()
        .map(|(s, _)| s.position as usize)
        .max()
        .unwrap_or(0);
    // tree[i]: the latest admission of a fan at a position in i's Fenwick range.
    let mut tree: Vec<Option<OffsetDateTime>> = vec![None; size + 1];
    let mut by_heard: Vec<&(Sighting, OffsetDateTime)> = seen.iter().collect();
    by_heard.sort_by_key(|(s, _)| s.heard);
    let mut by_sent: Vec<&(Sighting, OffsetDateTime)> = seen.iter().collect();
    by_sent.sort_by_key(|(s, _)| s.sent);
    let (mut heard, mut compared) = (by_heard.into_iter().peekable(), 0);
    for (later, at) in by_sent {
        while let Some((earlier, earlier_at)) = heard.next_if(|(s, _)| s.heard <= later.sent) {
            let mut i = earlier.position as usize;
            while i <= size {
                tree[i] = tree[i].max(Some(*earlier_at));
                i += i & i.wrapping_neg();
            }
        }
        let (mut i, mut latest) = (later.position as usize - 1, None);
        while i > 0 {
            latest = latest.max(tree[i]);
            i -= i & i.wrapping_neg();
        }
        compared += usize::from(latest.is_some());
        if let Some(latest) = latest.filter(|latest| latest > at) {
            problems.push(format!(
                "shown position {} after someone closer to the front was, but admitted at {at}, \
                 before them (at {latest})",
                later.position
            ));
        }
    }
    (compared, problems)
}

/// The admission rate as measured: admissions per minute over the run, the number of
/// minute-long windows judged, and the windows off by more than 1 % (and one admission).
#[derive(Debug, Default)]
pub(super) struct RateFinding {
    /// Admissions per minute between the first and the last full tick; `None` without two.
    pub(super) per_minute: Option<f64>,
    pub(super) span_seconds: f64,
    windows: usize,
    problems: Vec<String>,
}

/// Judges the admission rate from the admission times and the opening (`sales_open_at`, the
/// server's own instant as the tool set it).
///
/// The room admits on ticks: every admission time is a tick's instant, and the admitted count
/// at a tick is the whole part of what the rate earned since the opening. So between two ticks
/// T_i < T_j the admissions (those at instants in (T_i, T_j]) must be `(T_j − T_i) ×
/// per_minute / 60` within one (the two whole parts) — windows that start and end at ticks
/// measure the rate exactly, while clock-aligned ones would be off by up to a tick's worth; a
/// ticker that stalls and loses admissions shows as a slow window. The
/// last tick is left out: it admits only who is left, less than the rate earned. Every window
/// from a tick to the first tick at least a minute later is judged (any minute); a run whose
/// ticks span less than a minute is judged over all of them. A window passes within 1 % of its
/// expected count plus one admission. Besides, no tick (the last one included) may have admitted
/// more than the rate earned since the opening: a room that lets everyone in at once has too few
/// ticks for a window, but not for that.
pub(super) fn judge_rate(
    mut times: Vec<OffsetDateTime>,
    per_minute: u32,
    opens_at: OffsetDateTime,
) -> RateFinding {
    let within = |admitted: f64, expected: f64| admitted <= expected * 1.01 + 1.0;
    let earned = |seconds: f64| seconds.max(0.0) * f64::from(per_minute) / 60.0;
    times.sort();
    // (instant, admitted at or before it).
    let mut ticks: Vec<(OffsetDateTime, u64)> = Vec::new();
    for (count, at) in times.iter().enumerate() {
        match ticks.last_mut() {
            Some((last, up_to)) if last == at => *up_to = count as u64 + 1,
            _ => ticks.push((*at, count as u64 + 1)),
        }
    }
    let mut finding = RateFinding::default();
    for (at, up_to) in &ticks {
        let allowed = earned((*at - opens_at).as_seconds_f64());
        if !within(*up_to as f64, allowed) {
            finding.problems.push(format!(
                "{up_to} admitted by {at}, {allowed:.1} earned since the opening at {opens_at}"
            ));
        }
    }
    // The drained last tick is left out of the windows.
    ticks.pop();
    let (Some(first), Some(last)) = (ticks.first(), ticks.last()) else {
        return finding;
    };
    let span = (last.0 - first.0).as_seconds_f64();
    if span <= 0.0 {
        return finding;
    }
    finding.per_minute = Some((last.1 - first.1) as f64 * 60.0 / span);
    finding.span_seconds = span;
    let mut judge = |from: (OffsetDateTime, u64), to: (OffsetDateTime, u64)| {
        let seconds = (to.0 - from.0).as_seconds_f64();
        let expected = earned(seconds);
        let admitted = (to.1 - from.1) as f64;
        finding.windows += 1;
        if !within(admitted, expected) || !within(expected, admitted) {
            finding.problems.push(format!(
                "{admitted} admitted in the {seconds:.3} s from {}, {expected:.1} expected",
                from.0
            ));
        }
    };
    if span < 60.0 {
        judge(*first, *last);
        return finding;
    }
    let mut end = 0;
    for start in 0..ticks.len() {
        while end < ticks.len() && (ticks[end].0 - ticks[start].0).as_seconds_f64() < 60.0 {
            end += 1;
        }
        let Some(to) = ticks.get(end) else { break };
        judge(ticks[start], *to);
    }
    finding
}

/// The order check over the admitted fans: see [`order_problems`].
pub(super) fn order_check(admitted: &[Admitted]) -> Check {
    let shown = admitted
        .iter()
        .filter(|fan| fan.first_position.is_some())
        .count();
    let (compared, problems) = order_problems(admitted);
    Check::of_problems(
        "admission order",
        &problems,
        format!(
            "{shown} of {} admitted fans were shown a position; {compared} of them compared with \
             everyone shown a position nearer the front before them: none admitted earlier, and \
             none before as many fans as their position",
            admitted.len()
        ),
    )
}

/// The rate check: see [`judge_rate`].
pub(super) fn rate_check(finding: &RateFinding, per_minute: u32) -> Check {
    let measured = match finding.per_minute {
        Some(rate) if finding.span_seconds >= 60.0 => format!(
            "{rate:.1}/min over {:.1} s; {} windows from a tick to the first tick a minute later",
            finding.span_seconds, finding.windows
        ),
        Some(rate) => format!(
            "{rate:.1}/min over the {:.1} s between the first and the last full tick (less than a \
             minute: judged as one window)",
            finding.span_seconds
        ),
        None => "too few ticks to measure a window".to_owned(),
    };
    Check::of_problems(
        "admission rate",
        &finding.problems,
        format!(
            "{measured}; {per_minute}/min expected within 1 % and one admission, never ahead of \
             the rate since the opening"
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;

    const OPEN: OffsetDateTime = datetime!(2027-01-01 10:00 UTC);

    /// Admission times of a room admitting `per_tick` every second from the opening, for
    /// `ticks` ticks, the last one only `last`.
    fn ticking(per_tick: usize, ticks: i64, last: usize) -> Vec<OffsetDateTime> {
        let mut times = Vec::new();
        for tick in 1..=ticks {
            let count = if tick == ticks { last } else { per_tick };
            let at = OPEN + time::Duration::milliseconds(tick * 1000 + 3);
            times.extend(std::iter::repeat_n(at, count));
        }
        times
    }

    #[test]
    fn the_rate_is_judged_between_ticks() {
        // 600/min is 10 a second: 90 ticks, the drained last one with 4.
        let exact = judge_rate(ticking(10, 90, 4), 600, OPEN);
        assert!(exact.problems.is_empty(), "{:?}", exact.problems);
        assert!(exact.windows > 20, "{exact:?}");
        assert!((exact.per_minute.unwrap() - 600.0).abs() < 1.0);
        // A short run is judged as one window.
        let short = judge_rate(ticking(10, 4, 2), 600, OPEN);
        assert_eq!((short.windows, short.problems.len()), (1, 0), "{short:?}");
        // 12 a second is 20 % over.
        let fast = judge_rate(ticking(12, 90, 4), 600, OPEN);
        assert!(!fast.problems.is_empty());
        // Everyone at the first tick: no window, but far ahead of the rate.
        let burst = judge_rate(ticking(100, 1, 100), 600, OPEN);
        assert_eq!(burst.windows, 0);
        assert_eq!(burst.problems.len(), 1, "{burst:?}");
    }

    #[test]
    fn admissions_must_follow_the_positions_shown() {
        let start = Instant::now();
        let at_ms = |ms: u64| start + Duration::from_millis(ms);
        let fan = |sent: u64, position: u64, admitted_s: i64| Admitted {
            at: OPEN + time::Duration::seconds(admitted_s),
            first_position: Some(Sighting {
                sent: at_ms(sent),
                heard: at_ms(sent + 5),
                position,
            }),
        };
        let unseen = |admitted_s: i64| Admitted {
            at: OPEN + time::Duration::seconds(admitted_s),
            first_position: None,
        };
        // Positions 1 and 2 read together, then position 2 again once the first was admitted:
        // the third fan's rank is 3.
        let fine = [fan(0, 1, 1), fan(0, 2, 2), fan(1000, 2, 3)];
        assert_eq!(order_problems(&fine), (1, Vec::new()));
        // Shown position 2 after someone was shown 1, yet admitted first.
        let swapped = [fan(0, 1, 2), fan(1000, 2, 1), unseen(1)];
        assert_eq!(order_problems(&swapped).1.len(), 1);
        // Shown position 3, admitted first of all.
        let early = [fan(0, 3, 1), fan(0, 1, 2), fan(0, 2, 2)];
        assert_eq!(
            order_problems(&early).1.len(),
            1,
            "{:?}",
            order_problems(&early)
        );
    }
}
