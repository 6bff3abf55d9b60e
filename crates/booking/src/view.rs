//! The in-memory view of inventory.
//!
//! In an on-sale almost every request loses: the seat type is sold out, or sales have closed.
//! Those answers come from this view, under a read lock, without queueing behind the writer or
//! touching the database. The view is exact within this process because only the writer changes
//! the inventory, and it applies each committed change here right after the commit (and reloads
//! the whole view from the store if a commit fails). A request that the view lets through is
//! checked again by the writer, inside the transaction, so a stale read can only ever turn into
//! a correct refusal, never into an oversell.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use boxoffice_shared::clients::{Availability, SeatAvailability, WaitingRoom};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{SaleState, is_due, sale_state, sales_opened};
use crate::error::BookingError;

/// A concert's sale window and what its emails say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcertSale {
    pub name: String,
    pub venue: String,
    pub starts_at: OffsetDateTime,
    /// When sales open; `None`: open since the concert was put on sale.
    pub opens_at: Option<OffsetDateTime>,
    /// The waiting room in front of its sales, as last provisioned; `None`: none.
    pub waiting_room: Option<WaitingRoom>,
    pub cancelled: bool,
    /// Its seat types, in the order they were added.
    pub seat_types: Vec<Uuid>,
}

/// One seat type's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub concert_id: Uuid,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub capacity: i64,
    pub remaining: i64,
}

/// Every concert and seat type this Booking service sells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub concerts: HashMap<Uuid, ConcertSale>,
    pub seats: HashMap<Uuid, Seat>,
    /// When the next active hold expires, as last read. Its seat counts in `remaining` until the
    /// writer expires it, which it does before deciding anything once that instant has passed.
    pub next_hold_expiry: Option<OffsetDateTime>,
}

/// Whether one more seat may be sold (or held) at `now`: sales open, and a seat left. The fast
/// path and the writer ask the same question, each with its own idea of whether a seat is left.
pub fn bookable(
    now: OffsetDateTime,
    sale: &ConcertSale,
    seat_left: bool,
) -> Result<(), BookingError> {
    if sale_state(now, sale.starts_at, sale.cancelled) != SaleState::Open {
        Err(BookingError::BookingClosed)
    } else if !sales_opened(now, sale.opens_at) {
        Err(BookingError::SalesNotOpen)
    } else if !seat_left {
        Err(BookingError::SoldOut)
    } else {
        Ok(())
    }
}

impl Inventory {
    /// The seat type `seat_type_id` of concert `concert_id`; a seat type of another concert is
    /// `seat_type_not_found`, as the API contract says.
    pub fn seat_of(&self, concert_id: Uuid, seat_type_id: Uuid) -> Result<&Seat, BookingError> {
        self.seats
            .get(&seat_type_id)
            .filter(|seat| seat.concert_id == concert_id)
            .ok_or(BookingError::SeatTypeNotFound)
    }

    /// Whether a seat of `seat` may be free at `now`: one is left, or a hold has fallen due that
    /// the writer has not expired yet (it will, before deciding).
    pub fn may_have_seat(&self, seat: &Seat, now: OffsetDateTime) -> bool {
        seat.remaining > 0 || self.next_hold_expiry.is_some_and(|at| is_due(at, now))
    }

    /// How long, from `now`, a new booking or hold of `seat_type_id` without an admission is
    /// sure to be refused `sold_out` unless a seat comes back some other way (a cancel, a
    /// capacity raised): until the next hold falls due or the concert starts, and at most
    /// `at_most`. `None` when it is not refused `sold_out` now, or the concert has a waiting
    /// room (whose admission is checked first).
    pub fn sold_out_lasts(
        &self,
        concert_id: Uuid,
        seat_type_id: Uuid,
        now: OffsetDateTime,
        at_most: time::Duration,
    ) -> Option<time::Duration> {
        let concert = self.concerts.get(&concert_id)?;
        let seat = self.seat_of(concert_id, seat_type_id).ok()?;
        let refusal = bookable(now, concert, self.may_have_seat(seat, now)).err()?;
        if !matches!(refusal, BookingError::SoldOut) || concert.waiting_room.is_some() {
            return None;
        }
        let until = [self.next_hold_expiry, Some(concert.starts_at)]
            .into_iter()
            .flatten()
            .fold(now + at_most, OffsetDateTime::min);
        Some(until - now).filter(|lasts| lasts.is_positive())
    }

    /// Exact availability of one concert at `now`.
    pub fn availability(&self, concert_id: Uuid, now: OffsetDateTime) -> Option<Availability> {
        let concert = self.concerts.get(&concert_id)?;
        let seat_types: Vec<SeatAvailability> = concert
            .seat_types
            .iter()
            .filter_map(|id| {
                self.seats.get(id).map(|seat| SeatAvailability {
                    seat_type_id: *id,
                    capacity: seat.capacity,
                    remaining: seat.remaining,
                })
            })
            .collect();
        let any_left = seat_types.iter().any(|seat| seat.remaining > 0);
        let open = sale_state(now, concert.starts_at, concert.cancelled) == SaleState::Open
            && sales_opened(now, concert.opens_at);
        Some(Availability {
            concert_id,
            booking_open: open && any_left,
            cancelled: concert.cancelled,
            seat_types,
        })
    }

    /// The earliest on-sale or start after `now` among concerts not cancelled, or the next hold
    /// expiry: when the sales timer fires next.
    pub fn next_change_after(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.concerts
            .values()
            .filter(|concert| !concert.cancelled)
            .flat_map(|concert| [concert.opens_at, Some(concert.starts_at)])
            .flatten()
            .chain(self.next_hold_expiry)
            .filter(|at| *at > now)
            .min()
    }
}

/// The shared, lock-protected view.
#[derive(Debug, Clone, Default)]
pub struct SharedInventory(Arc<RwLock<Inventory>>);

impl SharedInventory {
    pub fn new(inventory: Inventory) -> Self {
        Self(Arc::new(RwLock::new(inventory)))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Inventory> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Inventory> {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn inventory(remaining: [i64; 2]) -> (Inventory, Uuid) {
        let concert = Uuid::now_v7();
        let mut inventory = Inventory::default();
        let mut ids = Vec::new();
        for left in remaining {
            let id = Uuid::now_v7();
            ids.push(id);
            inventory.seats.insert(
                id,
                Seat {
                    concert_id: concert,
                    name: "GA".into(),
                    price_cents: 100,
                    currency: "USD".into(),
                    capacity: 10,
                    remaining: left,
                },
            );
        }
        inventory.concerts.insert(
            concert,
            ConcertSale {
                name: "Show".into(),
                venue: "Hall".into(),
                starts_at: datetime!(2027-01-01 20:00 UTC),
                opens_at: None,
                waiting_room: None,
                cancelled: false,
                seat_types: ids,
            },
        );
        (inventory, concert)
    }

    #[test]
    fn booking_is_open_while_any_seat_is_left_before_the_start() {
        let before = datetime!(2027-01-01 19:00 UTC);
        let (open, concert) = inventory([0, 3]);
        assert!(open.availability(concert, before).unwrap().booking_open);
        let (sold_out, concert) = inventory([0, 0]);
        assert!(!sold_out.availability(concert, before).unwrap().booking_open);
        let (started, concert) = inventory([5, 5]);
        assert!(
            !started
                .availability(concert, datetime!(2027-01-01 20:00 UTC))
                .unwrap()
                .booking_open
        );
    }

    #[test]
    fn a_sold_out_answer_lasts_until_a_hold_falls_due_or_the_concert_starts() {
        let now = datetime!(2027-01-01 19:00 UTC);
        let second = time::Duration::seconds(1);
        let (mut inventory, concert) = inventory([0, 3]);
        let ids = inventory.concerts[&concert].seat_types.clone();
        let (sold_out, open) = (ids[0], ids[1]);
        assert_eq!(
            inventory.sold_out_lasts(concert, sold_out, now, second),
            Some(second)
        );
        assert_eq!(inventory.sold_out_lasts(concert, open, now, second), None);
        assert_eq!(
            inventory.sold_out_lasts(Uuid::now_v7(), sold_out, now, second),
            None
        );
        let soon = time::Duration::milliseconds(30);
        inventory.next_hold_expiry = Some(now + soon);
        assert_eq!(
            inventory.sold_out_lasts(concert, sold_out, now, second),
            Some(soon)
        );
        // A hold already due may have given its seat back: nothing is promised.
        inventory.next_hold_expiry = Some(now);
        assert_eq!(
            inventory.sold_out_lasts(concert, sold_out, now, second),
            None
        );
        inventory.next_hold_expiry = None;
        let starts = datetime!(2027-01-01 20:00 UTC);
        let minute_before = starts - time::Duration::minutes(1);
        let hour = time::Duration::hours(1);
        assert_eq!(
            inventory.sold_out_lasts(concert, sold_out, minute_before, hour),
            Some(time::Duration::minutes(1))
        );
        assert_eq!(
            inventory.sold_out_lasts(concert, sold_out, starts, hour),
            None
        );
        let sale = inventory.concerts.get_mut(&concert).unwrap();
        sale.waiting_room = Some(WaitingRoom {
            admit_per_minute: 60,
            admission_ttl_seconds: 600,
        });
        assert_eq!(
            inventory.sold_out_lasts(concert, sold_out, now, second),
            None
        );
    }

    #[test]
    fn booking_opens_at_the_on_sale_instant_exactly() {
        let (mut inventory, concert) = inventory([3, 3]);
        let opens = datetime!(2026-12-01 10:00 UTC);
        inventory.concerts.get_mut(&concert).unwrap().opens_at = Some(opens);
        let just_before = opens - time::Duration::milliseconds(1);
        let sale = &inventory.concerts[&concert];
        assert!(matches!(
            bookable(just_before, sale, true),
            Err(BookingError::SalesNotOpen)
        ));
        assert!(bookable(opens, sale, true).is_ok());
        assert!(
            !inventory
                .availability(concert, just_before)
                .unwrap()
                .booking_open
        );
        assert!(inventory.availability(concert, opens).unwrap().booking_open);
        assert_eq!(inventory.next_change_after(just_before), Some(opens));
        assert_eq!(
            inventory.next_change_after(opens),
            Some(datetime!(2027-01-01 20:00 UTC))
        );
    }
}
