//! The contracts between services.
//!
//! Services never import each other's internals or read each other's tables. Where one needs
//! another, it holds one of these traits: the one-process deployment plugs in the other service
//! directly (an in-process implementation), and a split deployment plugs in an HTTP client. The
//! data that crosses is described here, in plain types, and nothing else crosses.
//!
//! - [`Inventory`]: Catalog → Booking. Booking owns seats: capacities, remaining counts and the
//!   sale window. Catalog provisions them when a concert is created or changed, and reads exact
//!   availability to show it.
//! - [`OutboxSource`]: Notifications → Booking. Booking queues emails in its outbox in the same
//!   transaction as the booking; the notifications worker claims them with a lease, sends them,
//!   and acknowledges them.
//! - [`UserDirectory`]: Notifications → Auth. Where to send a user's email.
//! - [`RevocationSource`]: every verifying service → Auth. The sessions ended before their access
//!   tokens expired, read once at start-up and after a lost connection; new revocations arrive as
//!   they happen (see [`crate::revocation`]).

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::problem::{ErrorCode, Problem};

/// Why a call to another service failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The other service refused the request; the code is the contract's problem code.
    #[error("{code:?}: {detail}")]
    Rejected { code: ErrorCode, detail: String },
    /// The other service could not be reached or failed; safe to retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl ClientError {
    pub fn rejected(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::Rejected {
            code,
            detail: detail.into(),
        }
    }
}

impl From<ClientError> for Problem {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Rejected { code, detail } => Problem::new(code, detail),
            ClientError::Unavailable(_) => Problem::unavailable(&error),
        }
    }
}

/// A concert as Booking needs to know it: when sales close, and what to put in emails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcertInventory {
    pub concert_id: Uuid,
    pub name: String,
    /// Empty from a Catalog of an earlier release, which did not send it.
    #[serde(default)]
    pub artist: String,
    pub venue: String,
    /// The venue's IANA time zone, in which emails give the start.
    #[serde(default = "crate::zone::default_name")]
    pub time_zone: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// When sales open; `None`: open as soon as provisioned (and from a Catalog of an earlier
    /// release, which did not send it).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub sales_open_at: Option<OffsetDateTime>,
    /// The concert's waiting room; `None`: none (and from a Catalog of an earlier release, which
    /// did not send it).
    #[serde(default)]
    pub waiting_room: Option<WaitingRoom>,
    pub seat_types: Vec<SeatInventory>,
}

/// A concert's waiting room (API v1.1, "Waiting room for on-sales"): while set, bookings and
/// holds for the concert need an admission, and people are admitted from its queue at
/// `admit_per_minute`; an admission is good for `admission_ttl_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingRoom {
    pub admit_per_minute: u32,
    pub admission_ttl_seconds: u32,
}

impl WaitingRoom {
    /// The most people a waiting room admits per minute.
    pub const MAX_ADMIT_PER_MINUTE: u32 = 1_000_000;
    /// The longest an admission lasts: a day.
    pub const MAX_ADMISSION_TTL_SECONDS: u32 = 86_400;
    /// The shortest an admission lasts: a minute.
    pub const MIN_ADMISSION_TTL_SECONDS: u32 = 60;

    /// `raw` as people admitted per minute (1 to [`Self::MAX_ADMIT_PER_MINUTE`]), or why not.
    pub fn parse_admit_per_minute(raw: i64) -> Result<u32, String> {
        in_range(raw, 1, Self::MAX_ADMIT_PER_MINUTE)
    }

    /// `raw` as how long an admission lasts ([`Self::MIN_ADMISSION_TTL_SECONDS`] to
    /// [`Self::MAX_ADMISSION_TTL_SECONDS`]), or why not.
    pub fn parse_admission_ttl_seconds(raw: i64) -> Result<u32, String> {
        in_range(
            raw,
            Self::MIN_ADMISSION_TTL_SECONDS,
            Self::MAX_ADMISSION_TTL_SECONDS,
        )
    }

    /// The first setting out of its range, as its field (`waiting_room.…`) and why.
    pub fn out_of_range(&self) -> Option<(&'static str, String)> {
        let admit = Self::parse_admit_per_minute(i64::from(self.admit_per_minute));
        let ttl = Self::parse_admission_ttl_seconds(i64::from(self.admission_ttl_seconds));
        match (admit, ttl) {
            (Err(why), _) => Some(("waiting_room.admit_per_minute", why)),
            (_, Err(why)) => Some(("waiting_room.admission_ttl_seconds", why)),
            _ => None,
        }
    }
}

fn in_range(raw: i64, min: u32, max: u32) -> Result<u32, String> {
    u32::try_from(raw)
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| format!("must be between {min} and {max}"))
}

/// The request header by which a client makes a `POST /bookings` or `POST /holds` safe to retry
/// (API contract, "Idempotency"): Booking saves the answer under it, and the gateway never
/// answers such a request itself.
pub const IDEMPOTENCY_KEY_HEADER: http::HeaderName =
    http::HeaderName::from_static("idempotency-key");

/// The request header that carries a waiting room's admission token to `POST /bookings` and
/// `POST /holds`.
pub const ADMISSION_HEADER: http::HeaderName = http::HeaderName::from_static("boxoffice-admission");

/// The response header by which a Booking instance tells the gateway which instance owns the
/// concert of a `POST /bookings` or `POST /holds` (its root URL, as `--advertise-url` gives it),
/// so the gateway sends that concert's next writes there. The gateway removes it.
pub const OWNER_HEADER: http::HeaderName = http::HeaderName::from_static("boxoffice-owner");

/// The response header by which a Booking instance tells the gateway, on a `sold_out` answer to
/// a `POST /bookings` or `POST /holds` that carried neither an `Idempotency-Key` nor an
/// admission, for how many milliseconds its view is sure to refuse such a request for that seat
/// type the same way, for every caller (until a hold falls due or the concert starts, and at most
/// a moment). The gateway may repeat the answer itself meanwhile, and removes the header.
pub const SOLD_OUT_LASTS_HEADER: http::HeaderName =
    http::HeaderName::from_static("boxoffice-sold-out-lasts");

/// One seat type's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatInventory {
    pub seat_type_id: Uuid,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub capacity: i64,
}

/// Exact availability of one concert, as Booking's store has it at the moment of the read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub concert_id: Uuid,
    /// Sales are open: on sale already, not cancelled, not started, and at least one seat left.
    pub booking_open: bool,
    /// The concert was called off.
    pub cancelled: bool,
    pub seat_types: Vec<SeatAvailability>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatAvailability {
    pub seat_type_id: Uuid,
    pub capacity: i64,
    pub remaining: i64,
}

/// Catalog → Booking: provisioning and reading seat inventory.
#[async_trait]
pub trait Inventory: Send + Sync {
    /// Creates the concert's sale window and any seat types not yet known, and updates the
    /// concert's name, artist, venue, time zone, start, on-sale time and waiting room. Idempotent:
    /// provisioning the same concert twice is the same as once. Refused with `booking_closed` once the concert has started or was cancelled.
    async fn provision(&self, concert: &ConcertInventory) -> Result<(), ClientError>;

    /// Changes a seat type's capacity: it may grow, and shrink only down to what is sold
    /// (`validation_failed` otherwise).
    async fn set_capacity(&self, seat_type_id: Uuid, capacity: i64) -> Result<(), ClientError>;

    /// Calls the concert off: sales close at once and every confirmed booking is cancelled, each
    /// holder getting a cancellation email. Idempotent.
    async fn cancel_concert(&self, concert_id: Uuid) -> Result<(), ClientError>;

    /// Availability of each of these concerts that Booking knows.
    async fn availability(
        &self,
        concert_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Availability>, ClientError>;
}

/// What an email is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    BookingConfirmed,
    BookingCancelled,
    /// A waiting-list offer: a seat held for the fan until the offer's end.
    WaitlistOffered,
}

impl EmailKind {
    /// The snake_case name, as the outbox, the `X-Boxoffice-Kind` header and the metrics spell it
    /// (and serde does).
    pub fn as_str(self) -> &'static str {
        match self {
            EmailKind::BookingConfirmed => "booking_confirmed",
            EmailKind::BookingCancelled => "booking_cancelled",
            EmailKind::WaitlistOffered => "waitlist_offered",
        }
    }

    /// The kind named by [`Self::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "booking_confirmed" => Some(EmailKind::BookingConfirmed),
            "booking_cancelled" => Some(EmailKind::BookingCancelled),
            "waitlist_offered" => Some(EmailKind::WaitlistOffered),
            _ => None,
        }
    }
}

/// Everything an email about a booking shows: read from the Booking store when the email is
/// claimed (or, for emails queued by earlier releases, as captured when the booking changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingEmail {
    pub booking_id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub concert_name: String,
    /// Empty for concerts provisioned before Booking kept the artist.
    #[serde(default)]
    pub artist: String,
    pub venue: String,
    /// The venue's IANA time zone: emails give times as the venue's clocks read them.
    #[serde(default = "crate::zone::default_name")]
    pub time_zone: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    pub seat_type_name: String,
    pub price_cents: i64,
    pub currency: String,
    /// When the booking was made (confirmations) or cancelled (cancellations).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What was paid and through whom; `None` for a free seat (and for emails queued before
    /// bookings were paid).
    #[serde(default)]
    pub payment: Option<EmailPayment>,
    /// The ticket's signed code, on a confirmation: the email shows it and its QR code. Filled
    /// in by Booking when the email is claimed (never stored with it).
    #[serde(default)]
    pub ticket_code: Option<String>,
}

/// A booking's payment as its emails tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPayment {
    /// The payment provider (`simulated`, `stripe`).
    pub provider: String,
    pub amount_cents: i64,
}

/// One queued email, leased to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Stable across retries: the email's Message-ID is derived from it, so a message sent twice
    /// (at-least-once delivery) is recognisably the same message.
    pub message_id: Uuid,
    pub kind: EmailKind,
    /// How many deliveries were tried before this one.
    pub attempts: u32,
    pub booking: BookingEmail,
}

/// Notifications → Booking: the outbox hand-off. A claimed message is leased; if the worker dies
/// before acknowledging it, the lease runs out and the message is claimed again, so nothing
/// acknowledged by Booking is ever lost.
#[async_trait]
pub trait OutboxSource: Send + Sync {
    /// Leases up to `limit` messages that are due, for `lease`.
    async fn claim(
        &self,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxMessage>, ClientError>;
    /// The messages were handed to the mail transport (or can never be sent): never deliver them
    /// again. One call for a whole batch, so that a worker settles what it sent in one write.
    /// Ids that are unknown or already acknowledged are skipped.
    async fn acknowledge(&self, message_ids: &[Uuid]) -> Result<(), ClientError>;
    /// Delivery failed: try again at `retry_at` (the worker computes the backoff).
    async fn retry_later(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), ClientError>;
    /// Messages not yet acknowledged, for the `outbox_depth` metric.
    async fn depth(&self) -> Result<u64, ClientError>;
}

/// Where to reach a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub email: String,
    pub full_name: String,
}

/// Notifications → Auth: a user's contact details.
#[async_trait]
pub trait UserDirectory: Send + Sync {
    /// `None` when the user does not exist (any more).
    async fn contact(&self, user_id: Uuid) -> Result<Option<Contact>, ClientError>;
}

/// A session ended before its access tokens expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedSession {
    pub session_id: Uuid,
    /// When the last access token of the session expires (seconds since the epoch): after that
    /// the entry can be forgotten.
    pub forget_after: i64,
}

/// Any service → Auth: the sessions that are revoked now.
#[async_trait]
pub trait RevocationSource: Send + Sync {
    async fn revoked_sessions(&self) -> Result<Vec<RevokedSession>, ClientError>;
}

/// Booking → the deployment's throttles: the limits on writes (API contract, "Limits on
/// writes"). Booking asks before each write a signed-in user makes; the deployment decides with
/// counts per user and per client address, shared between instances where the login throttles
/// are shared.
#[async_trait]
pub trait WriteLimiter: Send + Sync {
    /// Counts one write by `user` from `client`. `Err(seconds)` when a limit is met: the write
    /// is refused and may be tried again after that many seconds.
    async fn take(&self, user: Uuid, client: std::net::IpAddr) -> Result<(), u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_room_settings_ranges() {
        assert_eq!(WaitingRoom::parse_admit_per_minute(1), Ok(1));
        assert_eq!(
            WaitingRoom::parse_admit_per_minute(1_000_000),
            Ok(1_000_000)
        );
        assert!(WaitingRoom::parse_admit_per_minute(0).is_err());
        assert!(WaitingRoom::parse_admit_per_minute(-1).is_err());
        assert!(WaitingRoom::parse_admit_per_minute(1_000_001).is_err());
        assert!(WaitingRoom::parse_admit_per_minute(i64::MAX).is_err());
        assert_eq!(WaitingRoom::parse_admission_ttl_seconds(60), Ok(60));
        assert_eq!(WaitingRoom::parse_admission_ttl_seconds(86_400), Ok(86_400));
        assert!(WaitingRoom::parse_admission_ttl_seconds(59).is_err());
        assert!(WaitingRoom::parse_admission_ttl_seconds(86_401).is_err());
    }
}
