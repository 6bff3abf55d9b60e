//! Holds: a seat kept for one user for a short time while they pay (API contract, "Checkout:
//! holds and payment"). The types the API shows and the rules that need no I/O; the stores keep
//! holds and the writer changes them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::IdempotencyKey;
pub use crate::domain::{Provider, is_due};
use crate::view::Seat;

/// Where a hold is in its life: `active` until it is paid (`completed`), let go (`released`) or
/// reaches its `expires_at` (`expired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Active,
    Completed,
    Expired,
    Released,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Completed => "completed",
            HoldStatus::Expired => "expired",
            HoldStatus::Released => "released",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(HoldStatus::Active),
            "completed" => Some(HoldStatus::Completed),
            "expired" => Some(HoldStatus::Expired),
            "released" => Some(HoldStatus::Released),
            _ => None,
        }
    }
}

/// Where a hold's payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    RequiresPayment,
    Succeeded,
    Failed,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::RequiresPayment => "requires_payment",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "requires_payment" => Some(PaymentStatus::RequiresPayment),
            "succeeded" => Some(PaymentStatus::Succeeded),
            "failed" => Some(PaymentStatus::Failed),
            "refunded" => Some(PaymentStatus::Refunded),
            _ => None,
        }
    }
}

/// A hold's payment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HoldPayment {
    pub provider: Provider,
    pub status: PaymentStatus,
    /// What a client confirms the payment with, for providers that confirm in the client.
    pub client_secret: Option<String>,
    /// The provider's name for the payment (a Stripe PaymentIntent id), once there is one;
    /// internal, never shown.
    #[serde(skip)]
    pub reference: Option<String>,
}

/// A hold as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hold {
    pub id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub status: HoldStatus,
    pub price_cents: i64,
    #[schema(example = "USD")]
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// The booking a completed hold became.
    pub booking_id: Option<Uuid>,
    pub payment: HoldPayment,
}

impl Hold {
    /// The hold as it stands at `now`: an active hold at or past its `expires_at` is expired,
    /// whether or not the store has marked it yet (its seat is free from that instant).
    pub fn as_of(mut self, now: OffsetDateTime) -> Self {
        if self.status == HoldStatus::Active && is_due(self.expires_at, now) {
            self.status = HoldStatus::Expired;
        }
        self
    }
}

/// A request for a hold that passed the view's checks.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    /// The hold's id, chosen before the writer sees the request: a provider that prepares the
    /// payment first (Stripe) keys it by the hold.
    pub id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub key: Option<IdempotencyKey>,
    /// How long the hold lasts.
    pub ttl: time::Duration,
    pub provider: Provider,
    /// What the provider prepared for the client to pay with, if it prepares anything.
    pub intent: Option<Intent>,
}

/// The hold a request makes, at the seat type's price, from `now` for the request's hold time.
pub fn new_hold(request: &HoldRequest, seat: &Seat, now: OffsetDateTime) -> Hold {
    Hold {
        id: request.id,
        user_id: request.user_id,
        concert_id: request.concert_id,
        seat_type_id: request.seat_type_id,
        status: HoldStatus::Active,
        price_cents: seat.price_cents,
        currency: seat.currency.clone(),
        created_at: now,
        expires_at: now + request.ttl,
        booking_id: None,
        payment: HoldPayment {
            provider: request.provider,
            status: PaymentStatus::RequiresPayment,
            client_secret: request
                .intent
                .as_ref()
                .and_then(|intent| intent.client_secret.clone()),
            reference: request
                .intent
                .as_ref()
                .map(|intent| intent.reference.clone()),
        },
    }
}

/// The fingerprint of a hold request, to tell a replay from another request reusing its key
/// (a booking request with the same key included).
pub fn hold_fingerprint(concert_id: Uuid, seat_type_id: Uuid) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"POST /api/v1/holds\n");
    hasher.update(concert_id.as_bytes());
    hasher.update(seat_type_id.as_bytes());
    hasher.finalize().into()
}

/// What a provider prepares when a hold is made, for the client to pay with (Stripe: a
/// PaymentIntent and its client secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The provider's name for the payment.
    pub reference: String,
    pub client_secret: Option<String>,
}

/// A payment the provider took for a hold, to be recorded by the writer.
#[derive(Debug, Clone)]
pub struct Paid {
    pub hold_id: Uuid,
    /// The payer, when the payment came through the API: only their own hold is theirs to pay.
    /// `None` for a provider's event, which names the hold itself.
    pub user_id: Option<Uuid>,
    /// The provider's name for the charge; `None` for a seat of price 0.
    pub reference: Option<String>,
    /// The provider's event that reported the payment, applied at most once.
    pub event: Option<String>,
}

/// A payment attempt the provider refused: the hold stays active, its payment `failed`, until
/// it is paid after all or ends.
#[derive(Debug, Clone)]
pub struct Failed {
    pub hold_id: Uuid,
    /// As for [`Paid::user_id`].
    pub user_id: Option<Uuid>,
    /// The provider's event that reported it, applied at most once.
    pub event: Option<String>,
}

impl Hold {
    /// Whether `user_id` (when given) may pay this hold: only its holder.
    pub fn payable_by(&self, user_id: Option<Uuid>) -> bool {
        user_id.is_none_or(|user_id| user_id == self.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_hold_expires_at_its_instant_exactly() {
        let expires = datetime!(2027-01-01 10:00 UTC);
        assert!(!is_due(expires, expires - time::Duration::milliseconds(1)));
        assert!(is_due(expires, expires));
    }

    #[test]
    fn statuses_read_back_as_written() {
        for status in [
            HoldStatus::Active,
            HoldStatus::Completed,
            HoldStatus::Expired,
            HoldStatus::Released,
        ] {
            assert_eq!(HoldStatus::parse(status.as_str()), Some(status));
        }
        for status in [
            PaymentStatus::RequiresPayment,
            PaymentStatus::Succeeded,
            PaymentStatus::Failed,
            PaymentStatus::Refunded,
        ] {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(Provider::parse("stripe"), Some(Provider::Stripe));
    }
}
