//! The request bodies of the concert routes, and how each becomes a validated domain value: every
//! field is checked and every refusal named, so one 422 lists all that is wrong.

use boxoffice_shared::FieldErrors;
use boxoffice_shared::clients::WaitingRoom;
use boxoffice_shared::extract::{present, present_rfc3339};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::domain::{
    Capacity, Category, ConcertChange, Currency, Description, FutureStart, NewConcert, NewSeatType,
    PriceCents, SeatTypeName, TimeZoneName, Title,
};
use crate::error::CatalogError;

/// One seat type of a new concert, or one added later.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatTypeRequest {
    /// 1 to 100 characters after trimming, no control characters, unique within the concert
    /// (ignoring case).
    #[schema(
        example = "VIP",
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,98}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub name: String,
    /// Price in minor units, 0 to 100,000,000.
    #[schema(example = 25000, minimum = 0, maximum = 100_000_000)]
    pub price_cents: i64,
    /// ISO 4217 code, three upper-case letters (default `USD`).
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// 1 to 1,000,000 seats.
    #[schema(example = 50, minimum = 1, maximum = 1_000_000)]
    pub capacity: i64,
}

impl SeatTypeRequest {
    /// Parses into a seat type, reporting invalid fields under `prefix` (e.g. `seat_types[1].`).
    pub(super) fn parse(self, prefix: &str, errors: &mut FieldErrors) -> Option<NewSeatType> {
        let field = |name: &str| format!("{prefix}{name}");
        let name = errors.check(field("name"), SeatTypeName::parse(&self.name));
        let price_cents = errors.check(field("price_cents"), PriceCents::parse(self.price_cents));
        let currency = errors.check(
            field("currency"),
            self.currency
                .as_deref()
                .map_or_else(|| Ok(Currency::default_currency()), Currency::parse),
        );
        let capacity = errors.check(field("capacity"), Capacity::parse(self.capacity));
        Some(NewSeatType {
            name: name?,
            price_cents: price_cents?,
            currency: currency?,
            capacity: capacity?,
        })
    }
}

/// A concert's waiting room (API contract, "Waiting room for on-sales"): while it has one,
/// bookings and holds need an admission from its queue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitingRoomRequest {
    /// People admitted from the queue per minute, 1 to 1,000,000.
    #[schema(example = 1000, minimum = 1, maximum = 1_000_000)]
    pub admit_per_minute: i64,
    /// How long an admission lasts, 60 to 86,400 seconds.
    #[schema(example = 600, minimum = 60, maximum = 86_400)]
    pub admission_ttl_seconds: i64,
}

impl WaitingRoomRequest {
    /// Parses into a waiting room, reporting invalid fields as `waiting_room.<field>`.
    fn parse(self, errors: &mut FieldErrors) -> Option<WaitingRoom> {
        let admit_per_minute = errors.check(
            "waiting_room.admit_per_minute",
            WaitingRoom::parse_admit_per_minute(self.admit_per_minute),
        );
        let admission_ttl_seconds = errors.check(
            "waiting_room.admission_ttl_seconds",
            WaitingRoom::parse_admission_ttl_seconds(self.admission_ttl_seconds),
        );
        Some(WaitingRoom {
            admit_per_minute: admit_per_minute?,
            admission_ttl_seconds: admission_ttl_seconds?,
        })
    }
}

/// A new concert.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConcertRequest {
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(
        example = "Aurora World Tour",
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub name: String,
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(
        example = "Aurora",
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub artist: String,
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(
        example = "Royal Albert Hall",
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub venue: String,
    /// At most 5000 characters after trimming (default empty).
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    /// 1 to 50 characters after trimming, no control characters (default `concert`).
    #[schema(
        example = "concert",
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,48}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub category: Option<String>,
    /// In the future.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2027-05-01T19:30:00Z")]
    pub starts_at: OffsetDateTime,
    /// The venue's IANA time zone (default `UTC`).
    #[schema(example = "Europe/London", min_length = 1, max_length = 64)]
    pub time_zone: Option<String>,
    /// When sales open, before `starts_at`; absent or `null`: at once.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2027-03-01T10:00:00Z")]
    pub sales_open_at: Option<OffsetDateTime>,
    /// A waiting room in front of its sales; absent or `null`: none.
    pub waiting_room: Option<WaitingRoomRequest>,
    /// 1 to 20 seat types, names unique ignoring case.
    #[schema(min_items = 1, max_items = 20)]
    pub seat_types: Vec<SeatTypeRequest>,
}

impl CreateConcertRequest {
    pub(super) fn parse(self, now: OffsetDateTime) -> Result<NewConcert, CatalogError> {
        let mut errors = FieldErrors::default();
        let name = errors.check("name", Title::parse(&self.name));
        let artist = errors.check("artist", Title::parse(&self.artist));
        let venue = errors.check("venue", Title::parse(&self.venue));
        let description = errors.check(
            "description",
            self.description
                .as_deref()
                .map_or_else(|| Ok(Description::default()), Description::parse),
        );
        let category = errors.check(
            "category",
            self.category
                .as_deref()
                .map_or_else(|| Ok(Category::default_category()), Category::parse),
        );
        let starts_at = errors.check("starts_at", FutureStart::parse(self.starts_at, now));
        let time_zone = errors.check(
            "time_zone",
            self.time_zone
                .as_deref()
                .map_or_else(|| Ok(TimeZoneName::default_zone()), TimeZoneName::parse),
        );
        let sales_open_at = self
            .sales_open_at
            .map(|at| at.to_offset(time::UtcOffset::UTC));
        if sales_open_at.is_some_and(|at| at >= self.starts_at) {
            errors.push("sales_open_at", "must be before starts_at");
        }
        let waiting_room = match self.waiting_room {
            None => Some(None),
            Some(room) => room.parse(&mut errors).map(Some),
        };

        let count = self.seat_types.len();
        if !(1..=NewConcert::MAX_SEAT_TYPES).contains(&count) {
            errors.push(
                "seat_types",
                format!(
                    "must list 1 to {} seat types (got {count})",
                    NewConcert::MAX_SEAT_TYPES
                ),
            );
        }
        let mut seat_types = Vec::with_capacity(count);
        let mut seen: Vec<String> = Vec::with_capacity(count);
        for (index, seat) in self.seat_types.into_iter().enumerate() {
            let prefix = format!("seat_types[{index}].");
            let folded = seat.name.trim().to_lowercase();
            if let Some(first) = seen.iter().position(|name| *name == folded) {
                errors.push(
                    format!("{prefix}name"),
                    format!("duplicates the name of seat_types[{first}] (names ignore case)"),
                );
            }
            seen.push(folded);
            if let Some(seat) = seat.parse(&prefix, &mut errors) {
                seat_types.push(seat);
            }
        }
        errors
            .finish(|| {
                Some(NewConcert {
                    name: name?,
                    artist: artist?,
                    venue: venue?,
                    description: description?,
                    category: category?,
                    starts_at: starts_at?,
                    time_zone: time_zone?,
                    sales_open_at,
                    waiting_room: waiting_room?,
                    seat_types,
                })
            })
            .map_err(CatalogError::Validation)
    }
}

/// A change to a concert's details; absent fields keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConcertRequest {
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub name: Option<String>,
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub artist: Option<String>,
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub venue: Option<String>,
    /// At most 5000 characters after trimming; an empty string clears it.
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    /// 1 to 50 characters after trimming, no control characters.
    #[schema(
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,48}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub category: Option<String>,
    /// Still in the future.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<OffsetDateTime>,
    /// The venue's IANA time zone.
    #[schema(example = "Europe/London", min_length = 1, max_length = 64)]
    pub time_zone: Option<String>,
    /// When sales open, before the start; `null` opens them at once.
    #[serde(default, deserialize_with = "present_rfc3339")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2027-03-01T10:00:00Z")]
    pub sales_open_at: Option<Option<OffsetDateTime>>,
    /// A waiting room in front of its sales, replacing any it had; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<WaitingRoomRequest>)]
    pub waiting_room: Option<Option<WaitingRoomRequest>>,
}

impl UpdateConcertRequest {
    pub(super) fn parse(self, now: OffsetDateTime) -> Result<ConcertChange, CatalogError> {
        let mut errors = FieldErrors::default();
        let mut title = |raw: Option<String>, field: &str| {
            errors
                .check(field, raw.map(|raw| Title::parse(&raw)).transpose())
                .flatten()
        };
        let name = title(self.name, "name");
        let artist = title(self.artist, "artist");
        let venue = title(self.venue, "venue");
        let description = errors.check(
            "description",
            self.description
                .map(|raw| Description::parse(&raw))
                .transpose(),
        );
        let category = errors.check(
            "category",
            self.category.map(|raw| Category::parse(&raw)).transpose(),
        );
        let starts_at = errors.check(
            "starts_at",
            self.starts_at
                .map(|at| FutureStart::parse(at, now))
                .transpose(),
        );
        let time_zone = errors.check(
            "time_zone",
            self.time_zone
                .map(|raw| TimeZoneName::parse(&raw))
                .transpose(),
        );
        let waiting_room = match self.waiting_room {
            None => Some(None),
            Some(None) => Some(Some(None)),
            Some(Some(room)) => room.parse(&mut errors).map(|room| Some(Some(room))),
        };
        errors
            .finish(|| {
                Some(ConcertChange {
                    name,
                    artist,
                    venue,
                    description: description?,
                    category: category?,
                    starts_at: starts_at?,
                    time_zone: time_zone?,
                    sales_open_at: self
                        .sales_open_at
                        .map(|at| at.map(|at| at.to_offset(time::UtcOffset::UTC))),
                    waiting_room: waiting_room?,
                })
            })
            .map_err(CatalogError::Validation)
    }
}

/// A seat type's new capacity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSeatTypeRequest {
    /// 1 to 1,000,000, and not below the seats already sold.
    #[schema(example = 80, minimum = 1, maximum = 1_000_000)]
    pub capacity: i64,
}
