//! This instance's in-memory view of the inventory on PostgreSQL, kept in step with commits made
//! by any instance without ever going back to an older state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::PgPool;
use uuid::Uuid;

use super::reads::{Snapshot, Versions, load_inventory};
use super::statements::SeatCount;
use crate::error::BookingError;
use crate::view::{Seat, SharedInventory};

/// This instance's in-memory view on PostgreSQL, and the version of every row it shows.
///
/// Three things write the view, and they race: this instance's writer, right after each commit,
/// with the counts it read under lock and moved; reloads from the store (the listener, and the
/// writer after an administrative change); and the counts another instance's booking batch sent
/// with its notice. A reload that read a newer state can land before the writer publishes an
/// older one, or a slow reload can land after a quicker, newer one; left alone, the view would
/// keep the older state until the next change to that row (a seat type shown sold out while
/// seats are free, for as long as nobody books or cancels it).
///
/// So every `sales` and `seat_types` row carries a `version`, which a trigger bumps on each update
/// under the row's lock: versions order a row's committed states. The view remembers, per row,
/// where in that order the state it shows stands, and drops a write that would take it back. A
/// state read at version `v` stands at `2v`; the state a writer's batch left after locking the row
/// at version `v` stands at `2v + 1` — no older than `v`, and no newer than whatever a reload reads
/// at a version above `v` (the batch's own updates included).
///
/// A seat type's `remaining` has a mark of its own: another instance's counts (read at the
/// version the batch left, so at `2v`) move only it. The rest of the row (capacity, price…) only
/// ever comes with a whole row, so counts never make the view skip a reload that brings an
/// organiser's change.
#[derive(Debug, Clone, Default)]
pub struct PgView {
    inventory: SharedInventory,
    /// Where each row's shown state stands; locked only while `inventory` is write-locked.
    shown: Arc<Mutex<Shown>>,
}

/// Where the view's states stand ([`PgView`]).
#[derive(Debug, Default)]
struct Shown {
    rows: Versions,
    /// Per seat type, where its shown `remaining` stands: at least its row's mark.
    remaining: HashMap<Uuid, i64>,
}

impl Shown {
    /// Puts `seat`, a whole row standing at `at`, into `seats`: the row if it is not older than
    /// the one shown, its `remaining` if that is not older than the one shown.
    fn put(&mut self, seats: &mut HashMap<Uuid, Seat>, id: Uuid, mut seat: Seat, at: i64) {
        let row_newer = self.rows.seats.get(&id).is_none_or(|shown| *shown <= at);
        let remaining_newer = self.remaining.get(&id).is_none_or(|shown| *shown <= at);
        match (row_newer, seats.get_mut(&id)) {
            (true, current) => {
                if !remaining_newer && let Some(current) = current {
                    seat.remaining = current.remaining;
                }
                self.rows.seats.insert(id, at);
                seats.insert(id, seat);
            }
            (false, Some(current)) if remaining_newer => current.remaining = seat.remaining,
            (false, _) => return,
        }
        if remaining_newer {
            self.remaining.insert(id, at);
        }
    }
}

impl PgView {
    /// The whole view, read from the store.
    pub async fn load(pool: &PgPool) -> Result<Self, BookingError> {
        let view = Self::default();
        view.apply(load_inventory(pool, None).await?);
        Ok(view)
    }

    /// The view the service answers from.
    pub fn inventory(&self) -> &SharedInventory {
        &self.inventory
    }

    fn shown(&self) -> std::sync::MutexGuard<'_, Shown> {
        self.shown.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies what a reload read, row by row, except where the view already shows a later
    /// state. Returns the concerts read, and whether a sale window moved (for the closing timer).
    pub fn apply(&self, snapshot: Snapshot) -> (Vec<Uuid>, bool) {
        let Snapshot {
            inventory: fresh,
            versions,
        } = snapshot;
        let mut current = self.inventory.write();
        let mut shown = self.shown();
        // When the next hold expires, as last read: a reload that raced an older one may show a
        // later instant than the store has; the timer and the writers expire by the store.
        current.next_hold_expiry = fresh.next_hold_expiry;
        let mut read = Vec::with_capacity(fresh.concerts.len());
        let mut moved = false;
        for (id, concert) in fresh.concerts {
            read.push(id);
            let at = 2 * versions.concerts.get(&id).copied().unwrap_or(0);
            if shown
                .rows
                .concerts
                .get(&id)
                .is_some_and(|shown| *shown > at)
            {
                continue;
            }
            shown.rows.concerts.insert(id, at);
            moved |= current.concerts.get(&id).is_none_or(|old| {
                old.starts_at != concert.starts_at
                    || old.opens_at != concert.opens_at
                    || old.cancelled != concert.cancelled
            });
            current.concerts.insert(id, concert);
        }
        for (id, seat) in fresh.seats {
            let at = 2 * versions.seats.get(&id).copied().unwrap_or(0);
            shown.put(&mut current.seats, id, seat, at);
        }
        (read, moved)
    }

    /// Applies the seat types a batch of this instance's writer left, each as `(seat, version
    /// the batch locked it at)`, except where the view already shows a later state.
    pub fn publish(&self, seats: &HashMap<Uuid, (Seat, i64)>) {
        let mut current = self.inventory.write();
        let mut shown = self.shown();
        for (id, (seat, locked_at)) in seats {
            shown.put(&mut current.seats, *id, seat.clone(), 2 * locked_at + 1);
        }
    }

    /// Applies the counts another instance's booking batch left ([`SeatCount`]: read at the
    /// version the batch left), except where the view already shows a later one. `false`, and
    /// nothing applied, when the view does not know one of the seat types: reload instead.
    pub fn apply_counts(&self, counts: &[SeatCount]) -> bool {
        let mut current = self.inventory.write();
        if counts
            .iter()
            .any(|(id, ..)| !current.seats.contains_key(id))
        {
            return false;
        }
        let mut shown = self.shown();
        for (id, remaining, version) in counts {
            let at = 2 * version;
            if shown.remaining.get(id).is_some_and(|shown| *shown > at) {
                continue;
            }
            shown.remaining.insert(*id, at);
            if let Some(seat) = current.seats.get_mut(id) {
                seat.remaining = *remaining;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Inventory;

    fn seat(capacity: i64, remaining: i64) -> Seat {
        Seat {
            concert_id: Uuid::nil(),
            name: "GA".into(),
            price_cents: 100,
            currency: "EUR".into(),
            capacity,
            remaining,
        }
    }

    /// A reload that read `seat` at row version `version`.
    fn reload(id: Uuid, seat: Seat, version: i64) -> Snapshot {
        let mut inventory = Inventory::default();
        inventory.seats.insert(id, seat);
        let mut versions = Versions::default();
        versions.seats.insert(id, version);
        Snapshot {
            inventory,
            versions,
        }
    }

    fn shown(view: &PgView, id: Uuid) -> (i64, i64) {
        let seat = view.inventory().read().seats[&id].clone();
        (seat.capacity, seat.remaining)
    }

    #[test]
    fn counts_move_remaining_forward_only_and_need_a_known_seat_type() {
        let (view, id) = (PgView::default(), Uuid::now_v7());
        assert!(!view.apply_counts(&[(id, 5, 1)]), "unknown: reload instead");
        view.apply(reload(id, seat(10, 10), 3));
        assert!(view.apply_counts(&[(id, 8, 5)]));
        assert_eq!(shown(&view, id), (10, 8));
        assert!(
            view.apply_counts(&[(id, 9, 4)]),
            "an older count is dropped"
        );
        assert_eq!(shown(&view, id), (10, 8));
        view.apply(reload(id, seat(10, 9), 4));
        assert_eq!(
            shown(&view, id),
            (10, 8),
            "an older reload's count is dropped too"
        );
        let mut locked = HashMap::new();
        locked.insert(id, (seat(10, 7), 5));
        view.publish(&locked);
        assert_eq!(
            shown(&view, id),
            (10, 7),
            "this writer's batch locked the counted state"
        );
    }

    #[test]
    fn counts_never_make_the_view_skip_an_organisers_change() {
        // The capacity is raised (version 4); another instance's batch then books (version 5)
        // and its counts arrive before the reload that read version 4.
        let (view, id) = (PgView::default(), Uuid::now_v7());
        view.apply(reload(id, seat(10, 2), 3));
        assert!(view.apply_counts(&[(id, 11, 5)]));
        view.apply(reload(id, seat(20, 12), 4));
        assert_eq!(
            shown(&view, id),
            (20, 11),
            "the new capacity, the newer count"
        );
        view.apply(reload(id, seat(20, 11), 5));
        view.apply(reload(id, seat(10, 2), 3));
        assert_eq!(shown(&view, id), (20, 11), "never back to an older row");
    }
}
