//! This instance's in-memory view of the inventory on PostgreSQL, kept in step with commits made
//! by any instance without ever going back to an older state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::PgPool;
use uuid::Uuid;

use super::reads::{Snapshot, Versions, load_inventory};
use crate::error::BookingError;
use crate::view::{Seat, SharedInventory};

/// This instance's in-memory view on PostgreSQL, and the version of every row it shows.
///
/// Two things write the view, and they race: this instance's writer, right after each commit,
/// with the counts it read under lock and moved; and reloads from the store (the listener, and
/// the writer after an administrative change). A reload that read a newer state can land before
/// the writer publishes an older one, or a slow reload can land after a quicker, newer one; left
/// alone, the view would keep the older state until the next change to that row (a seat type
/// shown sold out while seats are free, for as long as nobody books or cancels it).
///
/// So every `sales` and `seat_types` row carries a `version`, which a trigger bumps on each update
/// under the row's lock: versions order a row's committed states. The view remembers, per row,
/// where in that order the state it shows stands, and drops a write that would take it back. A
/// state read at version `v` stands at `2v`; the state a writer's batch left after locking the row
/// at version `v` stands at `2v + 1` — no older than `v`, and no newer than whatever a reload reads
/// at a version above `v` (the batch's own updates included).
#[derive(Debug, Clone, Default)]
pub struct PgView {
    inventory: SharedInventory,
    /// Where each row's shown state stands; locked only while `inventory` is write-locked.
    shown: Arc<Mutex<Versions>>,
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

    /// Applies what a reload read, row by row, except where the view already shows a later
    /// state. Returns the concerts read, and whether a sale window moved (for the closing timer).
    pub fn apply(&self, snapshot: Snapshot) -> (Vec<Uuid>, bool) {
        let Snapshot {
            inventory: fresh,
            versions,
        } = snapshot;
        let mut current = self.inventory.write();
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        // When the next hold expires, as last read: a reload that raced an older one may show a
        // later instant than the store has; the timer and the writers expire by the store.
        current.next_hold_expiry = fresh.next_hold_expiry;
        let mut read = Vec::with_capacity(fresh.concerts.len());
        let mut moved = false;
        for (id, concert) in fresh.concerts {
            read.push(id);
            let at = 2 * versions.concerts.get(&id).copied().unwrap_or(0);
            if shown.concerts.get(&id).is_some_and(|shown| *shown > at) {
                continue;
            }
            shown.concerts.insert(id, at);
            moved |= current.concerts.get(&id).is_none_or(|old| {
                old.starts_at != concert.starts_at
                    || old.opens_at != concert.opens_at
                    || old.cancelled != concert.cancelled
            });
            current.concerts.insert(id, concert);
        }
        for (id, seat) in fresh.seats {
            let at = 2 * versions.seats.get(&id).copied().unwrap_or(0);
            if shown.seats.get(&id).is_some_and(|shown| *shown > at) {
                continue;
            }
            shown.seats.insert(id, at);
            current.seats.insert(id, seat);
        }
        (read, moved)
    }

    /// Applies the seat types a batch of this instance's writer left, each as `(seat, version
    /// the batch locked it at)`, except where the view already shows a later state.
    pub fn publish(&self, seats: &HashMap<Uuid, (Seat, i64)>) {
        let mut current = self.inventory.write();
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, (seat, locked_at)) in seats {
            let at = 2 * locked_at + 1;
            if shown.seats.get(id).is_some_and(|shown| *shown > at) {
                continue;
            }
            shown.seats.insert(*id, at);
            current.seats.insert(*id, seat.clone());
        }
    }
}
