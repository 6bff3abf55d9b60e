//! Booking rules that need no I/O.

use boxoffice_shared::clients::{BookingEmail, EmailKind, EmailPayment, WaitingRoom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::BookingError;

/// Where a booking is in its life. It only ever moves from `confirmed` to `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Confirmed,
    Cancelled,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "confirmed" => Some(BookingStatus::Confirmed),
            "cancelled" => Some(BookingStatus::Cancelled),
            _ => None,
        }
    }
}

/// Who takes the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Stripe's test payment-method names decide the outcome; nothing leaves the process.
    Simulated,
    Stripe,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Simulated => "simulated",
            Provider::Stripe => "stripe",
        }
    }

    /// Whether a priced seat may be booked and charged in one request, without the client
    /// confirming the payment with the provider.
    pub fn charges_in_one_step(self) -> bool {
        self == Provider::Simulated
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "simulated" => Some(Provider::Simulated),
            "stripe" => Some(Provider::Stripe),
            _ => None,
        }
    }
}

/// Where a booking's payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingPaymentStatus {
    Succeeded,
    /// Given back: the booking was cancelled.
    Refunded,
}

impl BookingPaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingPaymentStatus::Succeeded => "succeeded",
            BookingPaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "succeeded" => Some(BookingPaymentStatus::Succeeded),
            "refunded" => Some(BookingPaymentStatus::Refunded),
            _ => None,
        }
    }
}

/// What was paid for a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BookingPayment {
    pub provider: Provider,
    pub amount_cents: i64,
    pub status: BookingPaymentStatus,
}

impl BookingPayment {
    /// A payment from its stored columns (`payment_provider, amount_cents, payment_status`): all
    /// NULL for a booking without one. (The provider's name for the charge, `payment_ref`, is
    /// kept to refund it and never shown.)
    pub fn from_columns(
        provider: Option<String>,
        amount_cents: Option<i64>,
        status: Option<String>,
    ) -> Result<Option<Self>, BookingError> {
        match (provider, amount_cents, status) {
            (None, None, None) => Ok(None),
            (Some(provider), Some(amount_cents), Some(status)) => Ok(Some(Self {
                provider: Provider::parse(&provider)
                    .ok_or_else(|| BookingError::Corrupt(format!("payment provider {provider}")))?,
                amount_cents,
                status: BookingPaymentStatus::parse(&status)
                    .ok_or_else(|| BookingError::Corrupt(format!("payment status {status}")))?,
            })),
            _ => Err(BookingError::Corrupt(
                "a booking's payment is half stored".into(),
            )),
        }
    }
}

/// A booking as the API shows it (API contract, "Bookings").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Booking {
    pub id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub status: BookingStatus,
    pub price_cents: i64,
    #[schema(example = "USD")]
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cancelled_at: Option<OffsetDateTime>,
    /// What was paid, for a seat with a price; `null` for a free one.
    #[serde(default)]
    pub payment: Option<BookingPayment>,
}

/// Why sales of a concert are not open, if they are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleState {
    Open,
    /// The concert has started: sales closed at `starts_at` exactly.
    Started,
    Cancelled,
}

/// Sales are open strictly before `starts_at` and while the concert is not cancelled.
pub fn sale_state(now: OffsetDateTime, starts_at: OffsetDateTime, cancelled: bool) -> SaleState {
    if cancelled {
        SaleState::Cancelled
    } else if now >= starts_at {
        SaleState::Started
    } else {
        SaleState::Open
    }
}

/// Whether a concert's sales have opened at `now`: at `opens_at` exactly, or from the start when
/// it has none.
pub fn sales_opened(now: OffsetDateTime, opens_at: Option<OffsetDateTime>) -> bool {
    opens_at.is_none_or(|at| now >= at)
}

/// Whether a hold expiring at `expires_at` has expired at `now`: at the instant exactly.
pub fn is_due(expires_at: OffsetDateTime, now: OffsetDateTime) -> bool {
    now >= expires_at
}

/// A seat type holds 1 to 1 000 000 seats.
pub fn check_capacity(capacity: i64) -> Result<(), BookingError> {
    if (1..=1_000_000).contains(&capacity) {
        Ok(())
    } else {
        Err(BookingError::invalid(
            "capacity",
            "must be between 1 and 1000000",
        ))
    }
}

/// A concert is put on sale only with a start still to come.
pub fn check_start(starts_at: OffsetDateTime, now: OffsetDateTime) -> Result<(), BookingError> {
    if starts_at <= now {
        Err(BookingError::invalid("starts_at", "must be in the future"))
    } else {
        Ok(())
    }
}

/// A waiting room is provisioned only with settings in range (API contract, "Waiting room for
/// on-sales"); Catalog checks them too, and the store's CHECKs a third time.
pub fn check_waiting_room(room: Option<WaitingRoom>) -> Result<(), BookingError> {
    let Some(room) = room else {
        return Ok(());
    };
    match room.out_of_range() {
        Some((field, why)) => Err(BookingError::invalid(field, &why)),
        None => Ok(()),
    }
}

/// A concert's waiting room from its stored columns (`waiting_room_admit_per_minute,
/// waiting_room_admission_ttl_seconds`): both NULL for a concert without one.
pub fn waiting_room_from_columns(
    admit_per_minute: Option<i64>,
    admission_ttl_seconds: Option<i64>,
) -> Result<Option<WaitingRoom>, BookingError> {
    let setting = |value: i64| {
        u32::try_from(value)
            .map_err(|_| BookingError::Corrupt(format!("waiting room setting {value}")))
    };
    match (admit_per_minute, admission_ttl_seconds) {
        (None, None) => Ok(None),
        (Some(admit), Some(ttl)) => Ok(Some(WaitingRoom {
            admit_per_minute: setting(admit)?,
            admission_ttl_seconds: setting(ttl)?,
        })),
        _ => Err(BookingError::Corrupt(
            "a concert's waiting room is half stored".into(),
        )),
    }
}

/// The stored columns of a waiting room, as [`waiting_room_from_columns`] reads them.
pub fn waiting_room_columns(room: Option<WaitingRoom>) -> (Option<i64>, Option<i64>) {
    (
        room.map(|room| i64::from(room.admit_per_minute)),
        room.map(|room| i64::from(room.admission_ttl_seconds)),
    )
}

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() || raw.len() > 255 {
            Err("must be 1 to 255 characters")
        } else if !raw.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            Err("must be visible ASCII characters")
        } else {
            Ok(Self(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The fingerprint of a booking request, to tell a replay from a different request that reuses
/// the same key.
pub fn request_fingerprint(concert_id: Uuid, seat_type_id: Uuid) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"POST /api/v1/bookings\n");
    hasher.update(concert_id.as_bytes());
    hasher.update(seat_type_id.as_bytes());
    hasher.finalize().into()
}

/// The kind of a claimed outbox row, from its stored name.
pub fn outbox_kind(name: &str) -> Result<EmailKind, BookingError> {
    EmailKind::parse(name).ok_or_else(|| BookingError::Corrupt(format!("outbox kind {name}")))
}

/// The email a claimed outbox row carries. A row queued by this release names its booking, and
/// `read` reads the email from the store; a row queued by an earlier release carries the email
/// it was queued with, as JSON.
pub fn queued_email(
    message_id: Uuid,
    booking_id: Option<Uuid>,
    payload: Option<&str>,
    read: impl FnOnce(Uuid) -> Result<BookingEmail, BookingError>,
) -> Result<BookingEmail, BookingError> {
    match (booking_id, payload) {
        (Some(booking_id), _) => read(booking_id),
        (None, Some(payload)) => serde_json::from_str(payload)
            .map_err(|error| BookingError::Corrupt(format!("outbox payload: {error}"))),
        (None, None) => Err(BookingError::Corrupt(format!(
            "outbox message {message_id} names no booking"
        ))),
    }
}

/// When an email about a booking is dated: a confirmation when the booking was made, a
/// cancellation when it was cancelled.
pub fn email_date(
    booking_id: Uuid,
    kind: EmailKind,
    created_at: OffsetDateTime,
    cancelled_at: Option<OffsetDateTime>,
) -> Result<OffsetDateTime, BookingError> {
    match kind {
        EmailKind::BookingConfirmed => Ok(created_at),
        EmailKind::BookingCancelled => cancelled_at.ok_or_else(|| {
            BookingError::Corrupt(format!(
                "cancellation email for booking {booking_id}, which is not cancelled"
            ))
        }),
        // Queued with its text: never read from a booking.
        EmailKind::WaitlistOffered => Err(BookingError::Corrupt(format!(
            "offer email queued by booking {booking_id}"
        ))),
    }
}

/// A booking's payment as its emails tell it, from its stored columns (NULL for a free seat).
pub fn email_payment(provider: Option<String>, amount_cents: Option<i64>) -> Option<EmailPayment> {
    Some(EmailPayment {
        provider: provider?,
        amount_cents: amount_cents?,
    })
}

/// An outbox row names a booking the store does not hold (its foreign key forbids it).
pub fn missing_booking(booking_id: Uuid) -> BookingError {
    BookingError::Corrupt(format!(
        "outbox names booking {booking_id}, which is not in the store"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn waiting_rooms_are_checked_and_stored_as_two_columns() {
        let room = WaitingRoom {
            admit_per_minute: 1_000,
            admission_ttl_seconds: 600,
        };
        assert!(check_waiting_room(None).is_ok());
        assert!(check_waiting_room(Some(room)).is_ok());
        for bad in [
            WaitingRoom {
                admit_per_minute: 0,
                ..room
            },
            WaitingRoom {
                admit_per_minute: WaitingRoom::MAX_ADMIT_PER_MINUTE + 1,
                ..room
            },
            WaitingRoom {
                admission_ttl_seconds: WaitingRoom::MIN_ADMISSION_TTL_SECONDS - 1,
                ..room
            },
            WaitingRoom {
                admission_ttl_seconds: WaitingRoom::MAX_ADMISSION_TTL_SECONDS + 1,
                ..room
            },
        ] {
            assert!(matches!(
                check_waiting_room(Some(bad)),
                Err(BookingError::Validation(_))
            ));
        }
        let (admit, ttl) = waiting_room_columns(Some(room));
        assert_eq!(waiting_room_from_columns(admit, ttl).ok(), Some(Some(room)));
        assert_eq!(waiting_room_columns(None), (None, None));
        assert_eq!(waiting_room_from_columns(None, None).ok(), Some(None));
        assert!(waiting_room_from_columns(Some(5), None).is_err());
        assert!(waiting_room_from_columns(Some(-1), Some(60)).is_err());
    }

    #[test]
    fn sales_close_at_the_start_instant_exactly() {
        let starts = datetime!(2027-05-01 19:30 UTC);
        let just_before = starts - time::Duration::milliseconds(1);
        assert_eq!(sale_state(just_before, starts, false), SaleState::Open);
        assert_eq!(sale_state(starts, starts, false), SaleState::Started);
        assert_eq!(sale_state(just_before, starts, true), SaleState::Cancelled);
    }

    #[test]
    fn idempotency_keys_are_bounded_visible_ascii() {
        assert!(IdempotencyKey::parse("order-42").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("tab\there").is_err());
    }

    #[test]
    fn fingerprints_differ_by_seat_type() {
        let concert = Uuid::now_v7();
        assert_ne!(
            request_fingerprint(concert, Uuid::now_v7()),
            request_fingerprint(concert, Uuid::now_v7())
        );
    }

    proptest::proptest! {
        /// An Idempotency-Key is any header text a client sends: parsed or refused, never a panic,
        /// and what is accepted is 1..=255 bytes.
        #[test]
        fn idempotency_keys_never_panic(raw in proptest::prelude::any::<String>()) {
            if let Ok(key) = IdempotencyKey::parse(&raw) {
                proptest::prop_assert!((1..=255).contains(&key.as_str().len()));
            }
        }
    }
}

/// Whose bookings a list is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingsOf {
    /// A user's (`GET /bookings`).
    User(Uuid),
    /// A concert's (`GET /concerts/{id}/bookings`, admins).
    Concert(Uuid),
}
