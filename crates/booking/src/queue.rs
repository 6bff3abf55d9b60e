//! The waiting room of an on-sale (API v1.1, "Waiting room for on-sales"): a queue in front of
//! a concert's sales, from which people are admitted at the organiser's rate.
//!
//! The rules, written once here and kept by both engines' stores:
//! - **One place per user and concert** (the places' primary key). Joining again is the same
//!   place.
//! - **Fair before the opening, first come after it.** Everyone who joins before `sales_open_at`
//!   draws a random key, kept secret; when sales open, the room is *shuffled*: those places are
//!   ranked 1, 2, … in the order of their keys, in one statement. Every later arrival is ranked
//!   next, in arrival order. A rank never changes once given (a trigger refuses it), and no two
//!   places of a room share one (a unique index).
//! - **Admission at `admit_per_minute`.** A room admits everyone up to its `admitted` rank. Its
//!   ticker ([`advance`]) moves that rank on by the credit earned since the last tick —
//!   `admit_per_minute / 60` per second, fractions kept — and never banks credit while nobody is
//!   waiting (a join into a room where nobody waited restarts the ticker's clock), so no minute
//!   admits more than the rate (plus the one fraction carried). Each move
//!   is logged with its instant: a place's admission time is the first move that reached it.
//! - **Admissions are tokens** ([`admission`]): signed, bound to user and concert, valid for the
//!   room's `admission_ttl_seconds` from the admission time. Bookings and holds check them; one is
//!   used up by the booking or hold it let through.
//!
//! Joins never go to the booking writer: the room has its own store (`queue.db`, or the schema
//! `queue`) whose joins are group-committed by a task of their own
//! ([`crate::service::WaitingRooms`]). Several Booking instances share a PostgreSQL room: the
//! room's row is the lock that orders ranks and ticks.

pub mod admission;
mod postgres;
mod reads;
mod sqlite;
pub mod store;

use boxoffice_shared::clients::WaitingRoom;
use time::OffsetDateTime;
use uuid::Uuid;

/// A user's place in a room, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The place in the admission order; `None` until the room is shuffled.
    pub rank: Option<i64>,
    pub joined_at: OffsetDateTime,
}

/// A room's progress, as stored: what every instance's stream compares places to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    /// Sales opened and the places of the pre-queue were ranked.
    pub shuffled: bool,
    /// How many places are ranked (the highest rank given).
    pub ranked: i64,
    /// Everyone up to this rank is admitted.
    pub admitted: i64,
}

/// A room's ticker state, as stored beside its [`Head`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Credit {
    /// Admissions earned and not yet given (below one, or while the rank was behind).
    pub credit: f64,
    /// The last tick; `None` before the first one after the shuffle.
    pub ticked_at: Option<OffsetDateTime>,
}

/// What one tick decided: the new admitted rank and the credit left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Advance {
    pub admitted: i64,
    pub credit: f64,
}

/// The tick at `now` of a shuffled room: credit earned since the last tick (at most since
/// `opened`), spent on the next ranks; none banked once nobody is left waiting.
pub fn advance(
    head: Head,
    credit: Credit,
    opened: OffsetDateTime,
    now: OffsetDateTime,
    per_minute: u32,
) -> Advance {
    let since = credit.ticked_at.unwrap_or(opened).max(opened);
    let elapsed = (now - since).as_seconds_f64().max(0.0);
    let earned = credit.credit + elapsed * f64::from(per_minute) / 60.0;
    let waiting = (head.ranked - head.admitted).max(0);
    // Whole admissions only; at most everyone waiting.
    let given = (earned.floor() as i64).min(waiting);
    let admitted = head.admitted + given;
    let left = if admitted == head.ranked {
        0.0
    } else {
        earned - given as f64
    };
    Advance {
        admitted,
        credit: left,
    }
}

/// Whether the room's sales are open at `now`: the shuffle's moment.
pub fn opened(opens_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    opens_at.is_none_or(|at| at <= now)
}

/// The caller's place as the API shows it (`QueueTicket`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTicket {
    pub concert_id: Uuid,
    pub state: QueueState,
    /// How many are ahead, plus one: 1 is next. `None` before the shuffle and once admitted.
    pub position: Option<i64>,
    pub estimated_wait_seconds: Option<i64>,
    /// The admission token while it is good.
    pub admission: Option<String>,
    /// Until when the admission is good (also once it is not any more).
    pub admitted_until: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    Waiting,
    Admitted,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Waiting => "waiting",
            QueueState::Admitted => "admitted",
        }
    }
}

/// A waiting place's ticket: its position behind the admitted rank and the wait that means at
/// the room's rate. `None` when the place is admitted (its rank is at most `head.admitted`).
pub fn waiting_ticket(
    concert_id: Uuid,
    place: Place,
    head: Head,
    room: WaitingRoom,
) -> Option<QueueTicket> {
    let position = match place.rank {
        Some(rank) if rank <= head.admitted => return None,
        Some(rank) => Some(rank - head.admitted),
        None => None,
    };
    let estimated_wait_seconds = position.map(|ahead| {
        let per_minute = i64::from(room.admit_per_minute.max(1));
        (ahead * 60 + per_minute - 1) / per_minute
    });
    Some(QueueTicket {
        concert_id,
        state: QueueState::Waiting,
        position,
        estimated_wait_seconds,
        admission: None,
        admitted_until: None,
    })
}

/// Draws a pre-queue place's secret key: the order of the shuffle. From the operating system's
/// random source, so nobody can predict or choose it.
pub fn draw_key() -> i64 {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source works");
    i64::from_le_bytes(bytes)
}

/// The joins of one room in one batch, in arrival order.
#[derive(Debug, Clone)]
pub struct RoomJoins {
    pub concert_id: Uuid,
    /// The room's opening: joins before it draw a key, joins after it are ranked at once (and
    /// the first one after it shuffles the room, if no tick did yet).
    pub opens_at: Option<OffsetDateTime>,
    pub users: Vec<Uuid>,
}

/// What the joins of one room came to: each user's place and whether it is new, and the room's
/// head after them.
#[derive(Debug, Clone)]
pub struct Joined {
    pub head: Head,
    pub places: Vec<(Place, bool)>,
}

/// The longest stretch one tick pays admissions for: a room nobody waited in for a while does
/// not admit that while's worth at once when people come.
pub const MAX_TICK_SECONDS: f64 = 2.0;

/// A room's row: its head and its ticker's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomRow {
    pub head: Head,
    pub credit: Credit,
}

/// What a tick writes after reading `row`: `None` when nothing changes.
pub(crate) fn plan_tick(
    row: RoomRow,
    opens_at: Option<OffsetDateTime>,
    per_minute: u32,
    now: OffsetDateTime,
) -> Option<Advance> {
    if row.head.ranked == row.head.admitted {
        return None;
    }
    let opened = opens_at.unwrap_or(now).min(now);
    // Credit for at most MAX_TICK_SECONDS: an idle room's last tick may be long ago.
    let floor = now - time::Duration::seconds_f64(MAX_TICK_SECONDS);
    let credit = Credit {
        credit: row.credit.credit,
        ticked_at: Some(row.credit.ticked_at.unwrap_or(opened).max(floor)),
    };
    Some(advance(row.head, credit, opened, now, per_minute))
}

/// The joins of one room in the order they came, each user once (a second join of the same
/// user in the same batch is the first one's place).
pub(crate) fn distinct(users: &[Uuid]) -> Vec<Uuid> {
    let mut seen = std::collections::HashSet::with_capacity(users.len());
    users
        .iter()
        .copied()
        .filter(|user| seen.insert(*user))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const OPEN: OffsetDateTime = datetime!(2027-01-01 10:00 UTC);

    fn head(ranked: i64, admitted: i64) -> Head {
        Head {
            shuffled: true,
            ranked,
            admitted,
        }
    }

    #[test]
    fn a_tick_admits_what_the_rate_earned_since_the_last_one() {
        let credit = Credit {
            credit: 0.0,
            ticked_at: Some(OPEN),
        };
        let next = advance(
            head(1000, 0),
            credit,
            OPEN,
            OPEN + time::Duration::seconds(1),
            90,
        );
        assert_eq!(next.admitted, 1);
        assert!((next.credit - 0.5).abs() < 1e-9);
        let later = advance(
            head(1000, 1),
            Credit {
                credit: next.credit,
                ticked_at: Some(OPEN + time::Duration::seconds(1)),
            },
            OPEN,
            OPEN + time::Duration::seconds(2),
            90,
        );
        assert_eq!(
            later.admitted, 3,
            "the carried half and one and a half more"
        );
    }

    #[test]
    fn no_credit_is_banked_while_nobody_waits() {
        let credit = Credit {
            credit: 0.0,
            ticked_at: Some(OPEN),
        };
        let idle = advance(
            head(5, 5),
            credit,
            OPEN,
            OPEN + time::Duration::minutes(10),
            60,
        );
        assert_eq!(idle.admitted, 5);
        assert_eq!(idle.credit, 0.0);
        let drained = advance(
            head(7, 5),
            credit,
            OPEN,
            OPEN + time::Duration::minutes(10),
            60,
        );
        assert_eq!((drained.admitted, drained.credit), (7, 0.0));
    }

    #[test]
    fn the_first_tick_counts_from_the_opening_not_from_before() {
        let credit = Credit {
            credit: 0.0,
            ticked_at: None,
        };
        let first = advance(
            head(100, 0),
            credit,
            OPEN,
            OPEN + time::Duration::seconds(3),
            60,
        );
        assert_eq!(first.admitted, 3);
        let stale = Credit {
            credit: 0.0,
            ticked_at: Some(OPEN - time::Duration::hours(1)),
        };
        let late = advance(
            head(100, 0),
            stale,
            OPEN,
            OPEN + time::Duration::seconds(3),
            60,
        );
        assert_eq!(late.admitted, 3, "no credit from before the opening");
        let backwards = advance(
            head(100, 0),
            stale,
            OPEN,
            OPEN - time::Duration::seconds(3),
            60,
        );
        assert_eq!(backwards.admitted, 0);
    }

    #[test]
    fn a_waiting_ticket_counts_places_ahead_and_rounds_the_wait_up() {
        let room = WaitingRoom {
            admit_per_minute: 100,
            admission_ttl_seconds: 600,
        };
        let place = Place {
            rank: Some(150),
            joined_at: OPEN,
        };
        let ticket = waiting_ticket(Uuid::nil(), place, head(200, 99), room).expect("waiting");
        assert_eq!(ticket.position, Some(51));
        assert_eq!(ticket.estimated_wait_seconds, Some(31));
        assert!(waiting_ticket(Uuid::nil(), place, head(200, 150), room).is_none());
        let unranked = Place {
            rank: None,
            joined_at: OPEN,
        };
        let before = waiting_ticket(Uuid::nil(), unranked, Head::default(), room).expect("waiting");
        assert_eq!(
            (before.position, before.estimated_wait_seconds),
            (None, None)
        );
    }
}
