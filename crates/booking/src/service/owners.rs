//! Each concert's sales on one owner ([`crate::owner`]) as the service uses it: where a new
//! booking or hold is made, and what a write sent here by another instance needs.

use std::sync::Arc;

use boxoffice_shared::component::Url;
use boxoffice_shared::token::AuthUser;
use uuid::Uuid;

use super::BookingService;
use crate::domain::IdempotencyKey;
use crate::error::BookingError;
use crate::owner::forward::Forwarder;
use crate::owner::{Owners, Route};

/// What forwarding a write to its concert's owner takes.
pub struct Ownership {
    pub owners: Arc<Owners>,
    /// Batches writes to their owners.
    pub forwarder: Forwarder,
}

impl BookingService {
    /// From now on, new bookings and holds for a concert another instance owns are sent there.
    pub fn share_concerts(&self, ownership: Ownership) {
        let _ = self.inner.ownership.set(ownership);
    }

    /// How writes reach their owner, when concerts have owners (a split deployment on
    /// PostgreSQL with an advertised URL).
    pub fn ownership(&self) -> Option<&Ownership> {
        self.inner.ownership.get()
    }

    /// The owner a new booking or hold of `seat_type_id` for `concert_id` should be sent to, or
    /// `None` to make it here. What this instance answers exactly is refused here first, in the
    /// order the owner would: an admission that is missing or not the caller's, then an unknown,
    /// closed, not yet open or sold-out sale from the view. A request with an `Idempotency-Key`
    /// goes to the owner as it is: it may be the retry of one made there, whose saved answer
    /// comes first.
    pub async fn owner_elsewhere(
        &self,
        caller: &AuthUser,
        concert_id: Uuid,
        seat_type_id: Uuid,
        key: Option<&IdempotencyKey>,
        admission: Option<&str>,
    ) -> Result<Option<Url>, BookingError> {
        let Some(ownership) = self.ownership() else {
            return Ok(None);
        };
        if key.is_none() {
            self.check_admission(caller, concert_id, admission)?;
            self.precheck(concert_id, seat_type_id)?;
        }
        match ownership.owners.route(concert_id, false).await {
            Route::Here => Ok(None),
            Route::There(owner) => Ok(Some(owner)),
        }
    }

    /// How long this instance's view is sure to refuse a new booking or hold of `seat_type_id`
    /// without an admission `sold_out`, at most `at_most` ([`crate::view::Inventory::sold_out_lasts`]).
    pub fn sold_out_lasts(
        &self,
        concert_id: Uuid,
        seat_type_id: Uuid,
        at_most: time::Duration,
    ) -> Option<time::Duration> {
        let now = self.inner.clock.now();
        (self.inner.view.read()).sold_out_lasts(concert_id, seat_type_id, now, at_most)
    }

    /// The instance that owns `concert_id` as this instance knows it (itself included), when
    /// concerts have owners.
    pub fn owner_of(&self, concert_id: Uuid) -> Option<Url> {
        self.ownership()?.owners.owner_of(concert_id)
    }

    /// A write another instance sent here as `concert_id`'s owner: the lease is kept (or taken)
    /// as for a write made here.
    pub async fn owned_here(&self, concert_id: Uuid) {
        if let Some(ownership) = self.ownership() {
            ownership.owners.route(concert_id, true).await;
        }
    }
}
