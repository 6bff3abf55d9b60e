//! Webhooks (API contract, "Webhooks (v1.1)"): what an organiser's endpoint subscribes to, the
//! events, and the rules of their delivery — for both engines.
//!
//! An event is queued *by reference* in the transaction that causes it: one row naming its type
//! and subject (a booking, a hold, a seat type) in the store's `webhook_events` table (the
//! outbox pattern of the emails), whatever the number of endpoints. The delivery worker fans
//! events out later, in order, with one `INSERT … SELECT` joined to the endpoints that subscribe
//! (active, and created by the event's time): one `webhook_deliveries` row per endpoint and
//! event, written in the same transaction that moves the store's fan-out cursor past them. A
//! booking's transaction thus writes one row per event, and the rows per endpoint are written
//! when the writer has time for them.
//!
//! Nothing is written when no endpoint subscribes to an event's type: every process keeps the
//! set of subscribed types in memory ([`Subscribed`]) and skips the statement. On SQLite the set
//! is exact (the one writer changes endpoints and reads the set); on PostgreSQL this instance's
//! own changes update it at once and a poll every [`SUBSCRIPTIONS_POLL`] brings those made
//! through other instances, so an endpoint created elsewhere receives events at most that long
//! after its `201`.
//!
//! - [`guard`]: the server-side request forgery guard: which URLs may be registered and which
//!   addresses may be called.
//! - [`deliver`]: one delivery: the body, the Standard Webhooks signature, the `POST`.
//!
//! The worker that claims due deliveries and records their outcome is `service/webhooks.rs`;
//! the stores' SQL is `sqlite/webhooks.rs` and `postgres/webhooks.rs`.

pub mod deliver;
pub mod guard;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// How often a PostgreSQL instance reads which event types some endpoint subscribes to, to learn
/// of endpoints created, deleted or disabled through other instances.
pub const SUBSCRIPTIONS_POLL: Duration = Duration::from_secs(1);

/// The retry schedule of the contract: the pause before each retry after a failed attempt
/// (Standard Webhooks' and Svix's). Eight attempts over about 27.6 hours; the first retry comes
/// 5 seconds after the first failure.
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// What happened, as a webhook's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum WebhookEvent {
    /// A booking was confirmed: booked in one step, or a paid hold completed.
    #[serde(rename = "booking.confirmed")]
    BookingConfirmed,
    /// A booking was cancelled, by its holder, an admin, or the concert's cancellation.
    #[serde(rename = "booking.cancelled")]
    BookingCancelled,
    /// A hold reached its `expires_at` unpaid and its seat returned.
    #[serde(rename = "hold.expired")]
    HoldExpired,
    /// A ticket was checked in at the door (its one successful scan).
    #[serde(rename = "checkin.created")]
    CheckinCreated,
    /// A seat type's `remaining` reached 0 (see the architecture notes: per seat type; the data
    /// says whether the whole concert is sold out).
    #[serde(rename = "concert.sold_out")]
    ConcertSoldOut,
    /// A waiting-list entry was offered a freed seat, as a hold.
    #[serde(rename = "waitlist.offered")]
    WaitlistOffered,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 6] = [
        WebhookEvent::BookingConfirmed,
        WebhookEvent::BookingCancelled,
        WebhookEvent::HoldExpired,
        WebhookEvent::CheckinCreated,
        WebhookEvent::ConcertSoldOut,
        WebhookEvent::WaitlistOffered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::BookingConfirmed => "booking.confirmed",
            WebhookEvent::BookingCancelled => "booking.cancelled",
            WebhookEvent::HoldExpired => "hold.expired",
            WebhookEvent::CheckinCreated => "checkin.created",
            WebhookEvent::ConcertSoldOut => "concert.sold_out",
            WebhookEvent::WaitlistOffered => "waitlist.offered",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == value)
    }

    /// The event's bit in an endpoint's stored `events` (the schema's CHECKs name the same bits).
    pub fn bit(self) -> u32 {
        match self {
            WebhookEvent::BookingConfirmed => 1,
            WebhookEvent::BookingCancelled => 2,
            WebhookEvent::HoldExpired => 4,
            WebhookEvent::CheckinCreated => 8,
            WebhookEvent::ConcertSoldOut => 16,
            WebhookEvent::WaitlistOffered => 32,
        }
    }
}

/// A set of event types, kept as the bits of [`WebhookEvent::bit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventSet(u32);

impl EventSet {
    pub fn from_bits(bits: u32) -> Self {
        Self(bits & 63)
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn contains(self, event: WebhookEvent) -> bool {
        self.0 & event.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn events(self) -> Vec<WebhookEvent> {
        WebhookEvent::ALL
            .into_iter()
            .filter(|event| self.contains(*event))
            .collect()
    }
}

impl FromIterator<WebhookEvent> for EventSet {
    fn from_iter<I: IntoIterator<Item = WebhookEvent>>(events: I) -> Self {
        Self(events.into_iter().fold(0, |bits, event| bits | event.bit()))
    }
}

/// The event types some active endpoint subscribes to, shared by the writer and the routes of
/// one process. Cheap to clone; clones share the set.
#[derive(Debug, Clone, Default)]
pub struct Subscribed(Arc<AtomicU32>);

impl Subscribed {
    pub fn get(&self) -> EventSet {
        EventSet(self.0.load(Ordering::Acquire))
    }

    pub fn set(&self, events: EventSet) {
        self.0.store(events.0, Ordering::Release);
    }

    /// Whether an event of this type is to be queued at all.
    pub fn contains(&self, event: WebhookEvent) -> bool {
        self.get().contains(event)
    }
}

/// An event of a transaction: its type and its subject (the id the data is read by).
pub type Queued = (WebhookEvent, Uuid);

/// [`WebhookEvent::bit`] in SQL, of a column `event` holding [`WebhookEvent::as_str`]: how the
/// fan-out joins a stored event to the endpoints that subscribe to it (both engines).
pub const EVENT_BIT_SQL: &str = "CASE event WHEN 'booking.confirmed' THEN 1 \
    WHEN 'booking.cancelled' THEN 2 WHEN 'hold.expired' THEN 4 WHEN 'checkin.created' THEN 8 \
    WHEN 'concert.sold_out' THEN 16 WHEN 'waitlist.offered' THEN 32 END";

/// How deliveries are made; the defaults are the contract's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether endpoints on private, loopback and link-local addresses may be registered and
    /// called (`--webhooks-allow-private`): for tests and closed networks only.
    pub allow_private: bool,
    /// The pause before each retry ([`RETRY_SCHEDULE`]); after the last one a delivery is given up.
    pub retry_schedule: Vec<Duration>,
    /// How long one `POST` may take, connection included.
    pub timeout: Duration,
    /// How many deliveries this process makes at once.
    pub concurrency: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_schedule: RETRY_SCHEDULE.to_vec(),
            timeout: Duration::from_secs(10),
            concurrency: 16,
        }
    }
}

impl Settings {
    /// When a delivery that failed its `attempts`-th attempt at `now` is tried again; `None` once
    /// the schedule is spent (the delivery is given up).
    pub fn retry_at(&self, attempts: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
        let pause = self.retry_schedule.get(index)?;
        Some(now + time::Duration::try_from(*pause).ok()?)
    }

    /// How long a claimed delivery is leased: past its request's timeout, so that only a worker
    /// that died leaves it to be claimed again.
    pub fn lease(&self) -> Duration {
        self.timeout * 3 + Duration::from_secs(5)
    }
}

/// A new endpoint's signing secret: `whsec_` and the base64 of 32 random bytes (Standard
/// Webhooks' format; the key is the decoded bytes).
pub fn new_secret() -> Result<String, crate::BookingError> {
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key)
        .map_err(|_| crate::BookingError::Corrupt("the system's random generator failed".into()))?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

/// An endpoint as the API shows it (without its secret, which only its creation answers).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Endpoint {
    pub id: Uuid,
    #[schema(example = "https://example.com/hooks/boxoffice")]
    pub url: String,
    pub events: Vec<WebhookEvent>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When the endpoint was disabled because it answered `410 Gone`; `null` while active.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<OffsetDateTime>,
}

/// The data of a `concert.sold_out` event: the seat type that sold out, as it is when the event
/// is delivered, and whether its whole concert is sold out then.
#[derive(Debug, Clone, Serialize)]
pub struct SoldOut {
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub seat_type_name: String,
    pub capacity: i64,
    pub remaining: i64,
    pub concert_sold_out: bool,
}

/// A new endpoint, as stored.
#[derive(Clone)]
pub struct NewEndpoint {
    pub id: Uuid,
    pub url: String,
    pub events: EventSet,
    pub secret: String,
    pub created_at: OffsetDateTime,
}

/// One delivery of one event to one endpoint, as the API's delivery log shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    /// The event's id: the `webhook-id` header of every attempt.
    pub id: Uuid,
    pub event: WebhookEvent,
    pub attempts: u32,
    /// The HTTP status of the last attempt; `null` before the first, or when it got no answer.
    pub last_status: Option<u16>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<OffsetDateTime>,
    /// When it is tried next; `null` once delivered, given up, or its endpoint disabled or
    /// deleted.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// A delivery claimed by a worker, with what it needs to make it.
#[derive(Clone)]
pub struct Claimed {
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event: WebhookEvent,
    pub subject_id: Uuid,
    /// When the event happened: the body's `timestamp`.
    pub created_at: OffsetDateTime,
    /// Attempts including this one.
    pub attempts: u32,
    pub url: String,
    pub secret: String,
}

// Secrets are never logged: the Debug forms leave them out.
impl std::fmt::Debug for NewEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("endpoint_id", &self.endpoint_id)
            .field("event_id", &self.event_id)
            .field("event", &self.event)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to, for the store to record.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered(u16),
    /// `410 Gone`: the endpoint is disabled, its pending deliveries stop.
    Gone,
    /// Anything else: tried again at `retry_at`, or given up when `None`.
    Failed {
        status: Option<u16>,
        error: String,
        retry_at: Option<OffsetDateTime>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_retries_within_ten_seconds_and_for_a_day() {
        let settings = Settings::default();
        let now = OffsetDateTime::UNIX_EPOCH;
        let first = settings.retry_at(1, now).map(|at| at - now);
        assert!(first.is_some_and(|pause| pause <= time::Duration::seconds(10)));
        let total: Duration = settings.retry_schedule.iter().sum();
        assert!(total >= Duration::from_secs(24 * 3600));
        let last = u32::try_from(settings.retry_schedule.len()).unwrap_or(0);
        assert!(settings.retry_at(last + 1, now).is_none());
        assert!(settings.retry_at(0, now).is_none());
    }

    #[test]
    fn event_names_and_bits_round_trip() {
        for event in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(event.as_str()), Some(event));
            let set: EventSet = [event].into_iter().collect();
            assert_eq!(set.events(), vec![event]);
        }
        assert_eq!(WebhookEvent::parse("booking.created"), None);
    }

    #[test]
    fn the_sql_bits_are_the_bits() {
        for event in WebhookEvent::ALL {
            let when = format!("WHEN '{}' THEN {} ", event.as_str(), event.bit());
            assert!(EVENT_BIT_SQL.contains(when.trim_end()), "{when}");
        }
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let secret = new_secret().unwrap_or_default();
        assert!(secret.starts_with("whsec_"));
        let key = base64::engine::general_purpose::STANDARD
            .decode(&secret["whsec_".len()..])
            .unwrap_or_default();
        assert_eq!(key.len(), 32);
        assert_ne!(new_secret().unwrap_or_default(), secret);
    }
}
