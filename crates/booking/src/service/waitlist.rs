//! The waiting list as the service offers it: joining a sold-out seat type's list, reading
//! one's entries, and leaving. What happens to a freed seat is the writer's (see
//! [`crate::waitlist`]).

use boxoffice_shared::token::AuthUser;
use uuid::Uuid;

use super::BookingService;
use crate::command::Command;
use crate::domain::{SaleState, sale_state};
use crate::error::BookingError;
use crate::waitlist::{JoinRequest, WaitlistEntry};

impl BookingService {
    /// Puts the caller on the waiting list of a seat type with no seat left. Refused from the
    /// view when it can tell (an unknown concert or seat type, a closed sale); the rest — seats
    /// available, a booking or hold of the caller's, a place on the list already — by the store.
    pub async fn join_waitlist(
        &self,
        caller: AuthUser,
        concert_id: Uuid,
        seat_type_id: Uuid,
    ) -> Result<WaitlistEntry, BookingError> {
        self.precheck_known(concert_id, seat_type_id)?;
        let request = JoinRequest {
            user_id: caller.user_id,
            concert_id,
            seat_type_id,
        };
        let entry = self
            .send(|reply| Command::JoinWaitlist(request, reply))
            .await?;
        metrics::counter!("waitlist_joins_total").increment(1);
        Ok(entry)
    }

    /// One entry, if the caller may see it (its fan, or an admin).
    pub async fn waitlist_entry(
        &self,
        caller: AuthUser,
        entry_id: Uuid,
    ) -> Result<WaitlistEntry, BookingError> {
        self.inner
            .store
            .waitlist_entry(entry_id)
            .await?
            .filter(|entry| caller.is_admin() || entry.user_id == caller.user_id)
            .ok_or(BookingError::WaitlistEntryNotFound)
    }

    /// The caller's entries, newest first.
    pub async fn list_waitlist(
        &self,
        caller: AuthUser,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<WaitlistEntry>, BookingError> {
        self.inner
            .store
            .list_waitlist(caller.user_id, before, limit)
            .await
    }

    /// Takes the caller's entry off the list; a seat it was offered goes to the next fan.
    pub async fn leave_waitlist(
        &self,
        caller: AuthUser,
        entry_id: Uuid,
    ) -> Result<(), BookingError> {
        self.send(|reply| Command::LeaveWaitlist(entry_id, caller.user_id, reply))
            .await
    }

    /// The checks of a join the view answers exactly: the concert and seat type exist, and the
    /// sale is not closed. Seats left or not is the store's to say, under its lock.
    fn precheck_known(&self, concert_id: Uuid, seat_type_id: Uuid) -> Result<(), BookingError> {
        self.check_in_view(
            concert_id,
            seat_type_id,
            |_, concert, _, now| match sale_state(now, concert.starts_at, concert.cancelled) {
                SaleState::Open => Ok(()),
                SaleState::Started | SaleState::Cancelled => Err(BookingError::BookingClosed),
            },
        )
    }
}
