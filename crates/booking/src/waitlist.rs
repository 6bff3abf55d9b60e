//! The waiting list of a sold-out seat type, as the API shows it, and the terms of an offer.
//!
//! A fan joins the list of a seat type that has no seat left. When a seat of that type comes
//! free — a cancellation, a hold that expires or is released, a larger capacity — the store
//! offers it, in the transaction that freed it, to the first fan still waiting: a hold in their
//! name that lasts the offer time, so the seat never shows in public `remaining` while anyone
//! waits for it. The entry follows its hold (the schema's triggers): `completed` when it is paid,
//! `expired` when it runs out, `left` when it is released; the seat then goes to the next fan.
//! First come, first served per seat type. The stores keep the rules: `sqlite/waitlist.rs`,
//! `postgres/waitlist.rs`, and the migrations `0010_waitlist.sql` (SQLite) and
//! `0009_waitlist.sql` (PostgreSQL).

use boxoffice_shared::clients::BookingEmail;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Provider;
use crate::hold::{Hold, HoldPayment, HoldStatus, PaymentStatus};

/// Where an entry of the waiting list stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitlistStatus {
    /// In line for the next free seat of its type.
    Waiting,
    /// A seat is held for the fan (`hold_id`) until the hold's `expires_at`.
    Offered,
    /// The offered hold was paid: the fan has a booking.
    Completed,
    /// The offer ran out unpaid, or the concert was cancelled.
    Expired,
    /// The fan left the list, or let the offered hold go.
    Left,
}

impl WaitlistStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Offered => "offered",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Left => "left",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "waiting" => Self::Waiting,
            "offered" => Self::Offered,
            "completed" => Self::Completed,
            "expired" => Self::Expired,
            "left" => Self::Left,
            _ => return None,
        })
    }
}

/// One fan's place on a seat type's waiting list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WaitlistEntry {
    pub id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub status: WaitlistStatus,
    /// 1-based among those still waiting for the seat type; `null` unless `waiting`.
    pub position: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// The hold the fan was offered, once they were.
    pub hold_id: Option<Uuid>,
}

/// A fan asking to wait for a seat type.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
}

/// The terms of every offer a store makes: how long it lasts, and who takes the money.
#[derive(Debug, Clone, Copy)]
pub struct OfferTerms {
    pub ttl: time::Duration,
    pub provider: Provider,
}

impl Default for OfferTerms {
    fn default() -> Self {
        Self {
            ttl: time::Duration::minutes(30),
            provider: Provider::Simulated,
        }
    }
}

/// The first fan in a seat type's line, as the store read it, and the seat's price.
#[derive(Debug, Clone)]
pub struct NextInLine {
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub price_cents: i64,
    pub currency: String,
}

/// The hold an offer is: the fan's, at the seat type's price, from `now` for the offer time. A
/// provider that prepares payments (Stripe) prepares this one when the fan pays
/// (`POST /holds/{id}/pay`): nothing outside the store is asked inside its transaction.
pub fn offered_hold(next: &NextInLine, terms: OfferTerms, now: OffsetDateTime) -> Hold {
    Hold {
        id: Uuid::now_v7(),
        user_id: next.user_id,
        concert_id: next.concert_id,
        seat_type_id: next.seat_type_id,
        status: HoldStatus::Active,
        price_cents: next.price_cents,
        currency: next.currency.clone(),
        created_at: now,
        expires_at: now + terms.ttl,
        booking_id: None,
        payment: HoldPayment {
            provider: terms.provider,
            status: PaymentStatus::RequiresPayment,
            client_secret: None,
            reference: None,
        },
    }
}

/// What an offer's email says about the concert and seat type, read in the offer's transaction.
#[derive(Debug, Clone)]
pub struct OfferedSeat {
    pub concert_name: String,
    pub artist: String,
    pub venue: String,
    pub time_zone: String,
    pub starts_at: OffsetDateTime,
    pub seat_type_name: String,
}

/// The offer's email: the hold stands where a booking would (its reference is the hold's id),
/// and `at` is when the offer ends.
pub fn offer_email(hold: &Hold, seat: OfferedSeat) -> BookingEmail {
    BookingEmail {
        booking_id: hold.id,
        user_id: hold.user_id,
        concert_id: hold.concert_id,
        concert_name: seat.concert_name,
        artist: seat.artist,
        venue: seat.venue,
        time_zone: seat.time_zone,
        starts_at: seat.starts_at,
        seat_type_name: seat.seat_type_name,
        price_cents: hold.price_cents,
        currency: hold.currency.clone(),
        at: hold.expires_at,
        payment: None,
        ticket_code: None,
    }
}
