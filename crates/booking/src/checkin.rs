//! Check-in at the door: what a scan asks, what the store knows of the ticket, and the one rule
//! that decides the answer ([`decide`]) — written once, for both engines, which read the ticket,
//! apply the rule and insert the check-in ([`crate::store::BookingStore::check_in`]). The schema
//! refuses a second check-in of a ticket and the check-in of a cancelled booking, so a race
//! between doors — on one instance or several — is settled by the insert that wins.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::BookingStatus;
use crate::error::BookingError;

/// The longest scanner nonce kept (the schema's limit too).
pub const MAX_NONCE_LEN: usize = 128;

/// One scan of a genuine code at a door.
#[derive(Debug, Clone)]
pub struct Scan {
    pub booking_id: Uuid,
    /// The scanner's name for this request; the same scan sent again carries the same nonce.
    pub nonce: Option<String>,
    /// The door staff (or admin) who scanned it.
    pub scanned_by: Uuid,
}

/// A ticket as the store has it: its booking and its check-in, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRow {
    pub booking_id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub status: BookingStatus,
    pub checked_in_at: Option<OffsetDateTime>,
    /// The nonce of the scan that checked it in.
    pub nonce: Option<String>,
}

/// A ticket's successful check-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedIn {
    pub booking_id: Uuid,
    pub user_id: Uuid,
    pub seat_type_id: Uuid,
    pub checked_in_at: OffsetDateTime,
}

/// What to do about a scan, given the ticket as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Check it in now.
    CheckIn,
    /// The scan was answered before: the same success again (a scanner's retry).
    Replay(CheckedIn),
}

/// The rule of the door. A retry of the scan that checked the ticket in gets that success again;
/// a cancelled booking is refused; a ticket checked in by another scan is refused with the time
/// of that scan; otherwise the ticket is checked in. `ticket` is `None` for a booking the store
/// does not have (a code signed for a booking that never committed): not a ticket.
pub fn decide(ticket: Option<&TicketRow>, scan: &Scan) -> Result<Decision, BookingError> {
    let ticket = ticket.ok_or(BookingError::InvalidTicket("no such booking"))?;
    if let Some(at) = ticket.checked_in_at {
        if scan.nonce.is_some() && scan.nonce == ticket.nonce {
            return Ok(Decision::Replay(CheckedIn {
                booking_id: ticket.booking_id,
                user_id: ticket.user_id,
                seat_type_id: ticket.seat_type_id,
                checked_in_at: at,
            }));
        }
        if ticket.status == BookingStatus::Confirmed {
            return Err(BookingError::AlreadyCheckedIn(at));
        }
    }
    match ticket.status {
        BookingStatus::Cancelled => Err(BookingError::TicketCancelled),
        BookingStatus::Confirmed => Ok(Decision::CheckIn),
    }
}

/// How many admissions [`Admissions`] remembers; one forgotten is asked of the store again.
const ADMISSIONS_KEPT: usize = 500_000;

/// The tickets this process's single writer checked in, so that the door's second and third
/// scans of a ticket — half the scans at a busy door — are answered without the writer: the
/// same answer [`decide`] gives from the store, since a check-in is never undone. Only a store
/// whose one writer sees every check-in and every cancel may keep it (SQLite): the writer adds
/// an admission once its batch has committed and forgets a cancelled booking before it answers
/// the cancel, so a scan that finds a ticket here was checked in and not yet cancelled.
pub struct Admissions(quick_cache::sync::Cache<Uuid, (CheckedIn, Option<String>)>);

impl Default for Admissions {
    fn default() -> Self {
        Self(quick_cache::sync::Cache::new(ADMISSIONS_KEPT))
    }
}

impl Admissions {
    /// The answer to `scan` if its ticket was checked in here: [`decide`] on a confirmed ticket
    /// with that check-in. `None`: ask the store.
    pub fn answer(&self, scan: &Scan) -> Option<Result<CheckedIn, BookingError>> {
        let (checked_in, nonce) = self.0.get(&scan.booking_id)?;
        let ticket = TicketRow {
            booking_id: checked_in.booking_id,
            user_id: checked_in.user_id,
            concert_id: Uuid::nil(),
            seat_type_id: checked_in.seat_type_id,
            status: BookingStatus::Confirmed,
            checked_in_at: Some(checked_in.checked_in_at),
            nonce,
        };
        match decide(Some(&ticket), scan) {
            Ok(Decision::Replay(checked_in)) => Some(Ok(checked_in)),
            Err(refusal) => Some(Err(refusal)),
            // Not the rule today (a checked-in ticket is refused or replayed), but were it ever
            // to admit again, the store decides.
            Ok(Decision::CheckIn) => None,
        }
    }

    /// Remembers a committed check-in, with the nonce of the scan that made it.
    pub fn admit(&self, checked_in: CheckedIn, nonce: Option<String>) {
        self.0.insert(checked_in.booking_id, (checked_in, nonce));
    }

    /// Forgets a booking that is being cancelled.
    pub fn forget(&self, booking_id: Uuid) {
        self.0.remove(&booking_id);
    }
}

/// Confirmed and checked-in tickets of one seat type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeatCheckins {
    pub confirmed: i64,
    pub checked_in: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(status: BookingStatus, checked: Option<(i64, &str)>) -> TicketRow {
        TicketRow {
            booking_id: Uuid::from_u128(1),
            user_id: Uuid::from_u128(2),
            concert_id: Uuid::from_u128(3),
            seat_type_id: Uuid::from_u128(4),
            status,
            checked_in_at: checked.map(|(at, _)| OffsetDateTime::from_unix_timestamp(at).unwrap()),
            nonce: checked.map(|(_, nonce)| nonce.to_owned()),
        }
    }

    fn scan(nonce: Option<&str>) -> Scan {
        Scan {
            booking_id: Uuid::from_u128(1),
            nonce: nonce.map(str::to_owned),
            scanned_by: Uuid::from_u128(9),
        }
    }

    #[test]
    fn the_door_rule() {
        use BookingStatus::{Cancelled, Confirmed};
        let fresh = ticket(Confirmed, None);
        assert_eq!(
            decide(Some(&fresh), &scan(None)).unwrap(),
            Decision::CheckIn
        );
        assert_eq!(
            decide(Some(&fresh), &scan(Some("a"))).unwrap(),
            Decision::CheckIn
        );

        let scanned = ticket(Confirmed, Some((100, "a")));
        let at = scanned.checked_in_at.unwrap();
        assert!(matches!(
            decide(Some(&scanned), &scan(Some("a"))).unwrap(),
            Decision::Replay(CheckedIn { checked_in_at, .. }) if checked_in_at == at
        ));
        for other in [scan(Some("b")), scan(None)] {
            assert!(matches!(
                decide(Some(&scanned), &other),
                Err(BookingError::AlreadyCheckedIn(when)) if when == at
            ));
        }

        assert!(matches!(
            decide(Some(&ticket(Cancelled, None)), &scan(None)),
            Err(BookingError::TicketCancelled)
        ));
        // Cancelled after it was checked in: refused, unless it is the same scan again.
        let cancelled_later = ticket(Cancelled, Some((100, "a")));
        assert!(matches!(
            decide(Some(&cancelled_later), &scan(Some("b"))),
            Err(BookingError::TicketCancelled)
        ));
        assert!(matches!(
            decide(Some(&cancelled_later), &scan(Some("a"))),
            Ok(Decision::Replay(_))
        ));
        assert!(matches!(
            decide(None, &scan(None)),
            Err(BookingError::InvalidTicket(_))
        ));
    }

    #[test]
    fn admissions_answer_as_the_rule_does() {
        let admissions = Admissions::default();
        assert!(admissions.answer(&scan(Some("a"))).is_none());
        let at = OffsetDateTime::from_unix_timestamp(100).unwrap();
        let checked_in = CheckedIn {
            booking_id: Uuid::from_u128(1),
            user_id: Uuid::from_u128(2),
            seat_type_id: Uuid::from_u128(4),
            checked_in_at: at,
        };
        admissions.admit(checked_in.clone(), Some("a".into()));
        assert_eq!(
            admissions.answer(&scan(Some("a"))).unwrap().unwrap(),
            checked_in
        );
        for other in [scan(Some("b")), scan(None)] {
            assert!(matches!(
                admissions.answer(&other),
                Some(Err(BookingError::AlreadyCheckedIn(when))) if when == at
            ));
        }
        // Another ticket is not known; a forgotten one is asked of the store again.
        let mut elsewhere = scan(None);
        elsewhere.booking_id = Uuid::from_u128(7);
        assert!(admissions.answer(&elsewhere).is_none());
        admissions.forget(Uuid::from_u128(1));
        assert!(admissions.answer(&scan(Some("b"))).is_none());
    }
}
