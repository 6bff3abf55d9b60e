//! Tickets and check-in on [`BookingService`]: a confirmed booking's signed code, its QR code,
//! and the door's scan — signature first, so a forged code never reaches the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_shared::clients::UserDirectory;
use boxoffice_shared::token::AuthUser;
use uuid::Uuid;

use super::BookingService;
use crate::checkin::{CheckedIn, MAX_NONCE_LEN, Scan, SeatCheckins, TicketRow};
use crate::domain::BookingStatus;
use crate::error::BookingError;
use crate::ticket::TicketKeys;

/// How big the QR code of `GET /bookings/{id}/ticket.svg` is drawn, in pixels at least.
const QR_PIXELS: u32 = 256;

/// How long a holder's name is taken from [`Tickets::names`] before Auth is asked again.
const NAME_TTL: Duration = Duration::from_secs(300);
/// How many holders' names are remembered.
const NAMES_KEPT: usize = 200_000;

/// What tickets need: the deployment's ticket key, and where holders' names are looked up.
#[derive(Clone)]
pub struct Tickets {
    keys: Arc<TicketKeys>,
    /// Auth's directory: in this process, or its instances over HTTP.
    holders: Arc<dyn UserDirectory>,
    /// Names Auth gave lately, with when: a door names the holder on every admission, and a
    /// scanner's retry or the holder's next scan should not cost a call to Auth. A rename shows
    /// within [`NAME_TTL`].
    names: Arc<quick_cache::sync::Cache<Uuid, (String, Instant)>>,
}

impl Tickets {
    pub fn new(keys: TicketKeys, holders: Arc<dyn UserDirectory>) -> Self {
        Self {
            keys: Arc::new(keys),
            holders,
            names: Arc::new(quick_cache::sync::Cache::new(NAMES_KEPT)),
        }
    }

    /// A secret derived from the ticket key for `label` ([`TicketKeys::derived_secret`]).
    pub(crate) fn derived_secret(&self, label: &[u8]) -> Vec<u8> {
        self.keys.derived_secret(label)
    }

    /// Tickets signed with a key of their own whose holders have no names: for engine tests and
    /// benchmarks, which run Booking without Auth.
    pub fn unnamed() -> Self {
        Self::new(TicketKeys::ephemeral(), Arc::new(NoNames))
    }
}

/// A directory that knows nobody.
struct NoNames;

#[async_trait::async_trait]
impl UserDirectory for NoNames {
    async fn contact(
        &self,
        _user_id: Uuid,
    ) -> Result<Option<boxoffice_shared::clients::Contact>, boxoffice_shared::clients::ClientError>
    {
        Ok(None)
    }
}

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Valid,
    Cancelled,
    CheckedIn,
}

/// A confirmed (or once confirmed) booking as a ticket.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub booking_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub holder_name: String,
    pub code: String,
    pub status: TicketStatus,
}

/// A successful scan, with the holder's name for the door to read out.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub checked_in: CheckedIn,
    pub holder_name: String,
}

/// Check-in counts of one seat type, in the order the concert's seat types were added.
#[derive(Debug, Clone)]
pub struct SeatTypeCheckins {
    pub id: Uuid,
    pub name: String,
    pub counts: SeatCheckins,
}

impl BookingService {
    /// The public half of the ticket key, as SPKI PEM.
    pub fn ticket_public_key(&self) -> &str {
        self.inner.tickets.keys.public_key_pem()
    }

    /// A booking's ticket as stored, for its holder or an admin (anyone else: not found).
    async fn visible_ticket(
        &self,
        caller: AuthUser,
        booking_id: Uuid,
    ) -> Result<TicketRow, BookingError> {
        self.inner
            .store
            .ticket_row(booking_id)
            .await?
            .filter(|row| caller.is_admin() || row.user_id == caller.user_id)
            .ok_or(BookingError::BookingNotFound)
    }

    /// The ticket of a booking, for its holder or an admin (anyone else: not found).
    pub async fn ticket(&self, caller: AuthUser, booking_id: Uuid) -> Result<Ticket, BookingError> {
        let row = self.visible_ticket(caller, booking_id).await?;
        let status = match (row.status, row.checked_in_at) {
            (BookingStatus::Cancelled, _) => TicketStatus::Cancelled,
            (BookingStatus::Confirmed, Some(_)) => TicketStatus::CheckedIn,
            (BookingStatus::Confirmed, None) => TicketStatus::Valid,
        };
        Ok(Ticket {
            booking_id,
            concert_id: row.concert_id,
            seat_type_id: row.seat_type_id,
            holder_name: self.holder_name(row.user_id).await?,
            code: self.ticket_code(booking_id, row.concert_id),
            status,
        })
    }

    /// The ticket's code as a QR code (SVG).
    pub async fn ticket_svg(
        &self,
        caller: AuthUser,
        booking_id: Uuid,
    ) -> Result<String, BookingError> {
        let row = self.visible_ticket(caller, booking_id).await?;
        boxoffice_shared::qr::svg(&self.ticket_code(booking_id, row.concert_id), QR_PIXELS)
            .ok_or_else(|| BookingError::Corrupt("a ticket code too long for a QR code".into()))
    }

    /// The code of booking `booking_id` of concert `concert_id`, for its confirmation email.
    pub fn ticket_code(&self, booking_id: Uuid, concert_id: Uuid) -> String {
        self.inner.tickets.keys.code(booking_id, concert_id)
    }

    /// A door's scan of `code` at concert `concert_id`, by door staff or an admin: exactly one
    /// scan of a ticket is admitted, however many doors scan it at once; the same scan sent
    /// again (same `nonce`) is admitted again with the same answer. The signature is checked
    /// before anything is read, so a forged code costs no store read and no writer's time.
    pub async fn check_in(
        &self,
        caller: AuthUser,
        concert_id: Uuid,
        code: &str,
        nonce: Option<String>,
    ) -> Result<Admitted, BookingError> {
        require_door_staff(caller)?;
        if nonce
            .as_ref()
            .is_some_and(|nonce| nonce.is_empty() || nonce.len() > MAX_NONCE_LEN)
        {
            return Err(BookingError::invalid(
                "nonce",
                "must be 1 to 128 characters when given",
            ));
        }
        self.known_concert(concert_id)?;
        let claim = self
            .inner
            .tickets
            .keys
            .verify(code)
            .map_err(|error| BookingError::InvalidTicket(error.reason()))?;
        if claim.concert_id != concert_id {
            return Err(BookingError::InvalidTicket("a ticket for another concert"));
        }
        let scan = Scan {
            booking_id: claim.booking_id,
            nonce,
            scanned_by: caller.user_id,
        };
        let checked_in = self.inner.store.check_in(scan).await?;
        metrics::counter!("checkins_total").increment(1);
        Ok(Admitted {
            holder_name: self.holder_name(checked_in.user_id).await?,
            checked_in,
        })
    }

    /// Confirmed and checked-in tickets of a concert per seat type, for door staff and admins.
    pub async fn checkins(
        &self,
        caller: AuthUser,
        concert_id: Uuid,
    ) -> Result<Vec<SeatTypeCheckins>, BookingError> {
        require_door_staff(caller)?;
        self.known_concert(concert_id)?;
        let mut counts: HashMap<Uuid, SeatCheckins> =
            self.inner.store.checkin_counts(concert_id).await?;
        let view = self.inner.view.read();
        let seat_types = view
            .concerts
            .get(&concert_id)
            .map(|concert| concert.seat_types.as_slice())
            .unwrap_or_default();
        Ok(seat_types
            .iter()
            .filter_map(|id| {
                view.seats.get(id).map(|seat| SeatTypeCheckins {
                    id: *id,
                    name: seat.name.clone(),
                    counts: counts.remove(id).unwrap_or_default(),
                })
            })
            .collect())
    }

    /// `concert_not_found` unless the view knows the concert.
    fn known_concert(&self, concert_id: Uuid) -> Result<(), BookingError> {
        if self.inner.view.read().concerts.contains_key(&concert_id) {
            Ok(())
        } else {
            Err(BookingError::ConcertNotFound)
        }
    }

    /// The holder's full name as Auth has it (lately); empty for an account that no longer
    /// exists.
    async fn holder_name(&self, user_id: Uuid) -> Result<String, BookingError> {
        let tickets = &self.inner.tickets;
        if let Some((name, at)) = tickets.names.get(&user_id)
            && at.elapsed() < NAME_TTL
        {
            return Ok(name);
        }
        let contact = tickets
            .holders
            .contact(user_id)
            .await
            .map_err(|error| BookingError::PeerUnavailable(error.to_string()))?;
        let name = contact.map(|contact| contact.full_name).unwrap_or_default();
        tickets
            .names
            .insert(user_id, (name.clone(), Instant::now()));
        Ok(name)
    }
}

/// `forbidden` unless the caller is door staff or an admin.
fn require_door_staff(caller: AuthUser) -> Result<(), BookingError> {
    if caller.is_door_staff() {
        Ok(())
    } else {
        Err(BookingError::Forbidden("staff or admin"))
    }
}
