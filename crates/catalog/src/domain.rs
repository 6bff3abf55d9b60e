//! Catalog types and rules, with no I/O.
//!
//! Input is parsed once at the edge into types that cannot hold an invalid value ("parse, don't
//! validate"); each `parse` returns a message fit for a `validation_failed` problem. The concert
//! status of the API contract is derived here by a pure function, [`derive_status`], from what
//! the catalog knows (start, cancellation) and what Booking reports (remaining seats).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_shared::clients::WaitingRoom;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// A concert's id (UUID v7, so ids sort roughly by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConcertId(Uuid);

impl ConcertId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// `None` for anything that is not a UUID: the contract answers 404, not 422, for those.
    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw.trim()).ok().map(Self)
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for ConcertId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ConcertId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A seat type's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeatTypeId(Uuid);

impl SeatTypeId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw.trim()).ok().map(Self)
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for SeatTypeId {
    fn default() -> Self {
        Self::new()
    }
}

/// Trims `raw` and checks its length in characters (not bytes), as SQLite's `length()` counts.
fn bounded(raw: &str, min: usize, max: usize) -> Result<String, String> {
    let value = raw.trim();
    let chars = value.chars().count();
    if chars < min {
        Err(if min == 1 {
            "must not be empty".to_owned()
        } else {
            format!("must be at least {min} characters")
        })
    } else if chars > max {
        Err(format!("must be at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(value.to_owned())
    }
}

/// A concert's name, artist or venue: 1 to 200 characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, String> {
        bounded(raw, 1, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The venue's time zone: an IANA name the time-zone database knows (`Europe/Berlin`), kept in
/// the database's spelling; `UTC` unless told otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        boxoffice_shared::zone::canonical(raw.trim())
            .map(Self)
            .ok_or_else(|| {
                "must be an IANA time zone name such as Europe/Berlin or America/New_York"
                    .to_owned()
            })
    }

    pub fn default_zone() -> Self {
        Self(boxoffice_shared::zone::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text about a concert: at most 5000 characters, trimmed; may be empty. Line breaks and
/// tabs are allowed here, unlike in the one-line fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 5000;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        if value.chars().count() > Self::MAX_CHARS {
            Err(format!("must be at most {} characters", Self::MAX_CHARS))
        } else {
            Ok(Self(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What kind of event it is (`concert` unless told otherwise): 1 to 50 characters. Filtering on
/// it is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category(String);

impl Category {
    pub const MAX_CHARS: usize = 50;
    pub const DEFAULT: &'static str = "concert";

    pub fn parse(raw: &str) -> Result<Self, String> {
        bounded(raw, 1, Self::MAX_CHARS).map(Self)
    }

    pub fn default_category() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A seat type's name, e.g. `VIP`: 1 to 100 characters, unique within its concert regardless
/// of case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatTypeName(String);

impl SeatTypeName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, String> {
        bounded(raw, 1, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form two names are compared in for uniqueness.
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency(String);

impl Currency {
    pub const DEFAULT: &'static str = "USD";

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be an ISO 4217 code of three upper-case letters, e.g. USD".to_owned())
        }
    }

    pub fn default_currency() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A price in minor units (cents); never negative, zero for free seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceCents(i64);

impl PriceCents {
    /// One million in major units (100 000 000 minor units): above any real ticket, and low
    /// enough that a sales report's sums cannot overflow (at most 20 seat types × 1 000 000 seats
    /// × this price is 2 × 10^15, far below 2^63).
    pub const MAX: i64 = 100_000_000;

    pub fn parse(raw: i64) -> Result<Self, String> {
        if (0..=Self::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(format!("must be between 0 and {}", Self::MAX))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// How many seats a seat type has: 1 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity(i64);

impl Capacity {
    pub const MAX: i64 = 1_000_000;

    pub fn parse(raw: i64) -> Result<Self, String> {
        if (1..=Self::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(format!("must be between 1 and {}", Self::MAX))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A start time that was in the future when it was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FutureStart(OffsetDateTime);

impl FutureStart {
    pub fn parse(at: OffsetDateTime, now: OffsetDateTime) -> Result<Self, String> {
        if at > now {
            Ok(Self(at.to_offset(time::UtcOffset::UTC)))
        } else {
            Err("must be in the future".to_owned())
        }
    }

    pub fn get(self) -> OffsetDateTime {
        self.0
    }
}

/// A validated seat type to add to a concert.
#[derive(Debug, Clone)]
pub struct NewSeatType {
    pub name: SeatTypeName,
    pub price_cents: PriceCents,
    pub currency: Currency,
    pub capacity: Capacity,
}

/// A validated concert to create.
#[derive(Debug, Clone)]
pub struct NewConcert {
    pub name: Title,
    pub artist: Title,
    pub venue: Title,
    pub description: Description,
    pub category: Category,
    pub starts_at: FutureStart,
    pub time_zone: TimeZoneName,
    /// When sales open (before `starts_at`); `None`: at once.
    pub sales_open_at: Option<OffsetDateTime>,
    /// Its waiting room, settings in range; `None`: none.
    pub waiting_room: Option<WaitingRoom>,
    /// 1 to [`NewConcert::MAX_SEAT_TYPES`], names unique regardless of case.
    pub seat_types: Vec<NewSeatType>,
}

impl NewConcert {
    pub const MAX_SEAT_TYPES: usize = 20;
}

/// A validated change to a concert's metadata; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ConcertChange {
    pub name: Option<Title>,
    pub artist: Option<Title>,
    pub venue: Option<Title>,
    pub description: Option<Description>,
    pub category: Option<Category>,
    pub starts_at: Option<FutureStart>,
    pub time_zone: Option<TimeZoneName>,
    /// `Some(None)` clears the on-sale time (sales open at once).
    pub sales_open_at: Option<Option<OffsetDateTime>>,
    /// `Some(None)` removes the waiting room.
    pub waiting_room: Option<Option<WaitingRoom>>,
}

impl ConcertChange {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.artist.is_none()
            && self.venue.is_none()
            && self.description.is_none()
            && self.category.is_none()
            && self.starts_at.is_none()
            && self.time_zone.is_none()
            && self.sales_open_at.is_none()
            && self.waiting_room.is_none()
    }
}

/// A concert's status as the API contract derives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConcertStatus {
    /// Sales open later, at `sales_open_at`.
    Scheduled,
    OnSale,
    SoldOut,
    Closed,
    Cancelled,
}

/// Derives a concert's status (API contract, "Concerts" and "On-sale time"): `cancelled` if it
/// was called off, else `closed` once it has started, else `scheduled` before its
/// `sales_open_at`, else `sold_out` when no seat type has a seat left, else `on_sale`.
/// `booking_open` is exactly `status == on_sale`.
pub fn derive_status(
    cancelled: bool,
    sales_open_at: Option<OffsetDateTime>,
    starts_at: OffsetDateTime,
    now: OffsetDateTime,
    remaining: impl IntoIterator<Item = i64>,
) -> ConcertStatus {
    if cancelled {
        ConcertStatus::Cancelled
    } else if starts_at <= now {
        ConcertStatus::Closed
    } else if sales_open_at.is_some_and(|at| now < at) {
        ConcertStatus::Scheduled
    } else if remaining.into_iter().all(|left| left <= 0) {
        ConcertStatus::SoldOut
    } else {
        ConcertStatus::OnSale
    }
}

/// Which concerts a listing shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListStatus {
    /// Not started and not cancelled; sold-out concerts included.
    #[default]
    Available,
    /// Only concerts whose status is `on_sale`.
    OnSale,
    /// Everything, past and cancelled included.
    All,
}

/// A position in the listing order (`starts_at`, then id): the last concert of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub starts_at_millis: i64,
    pub id: Uuid,
}

impl Cursor {
    /// The opaque form clients see: base64url (no padding) of `starts_at_millis:uuid`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.starts_at_millis, self.id))
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (millis, id) = text.split_once(':')?;
        Some(Self {
            starts_at_millis: millis.parse().ok()?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// Page sizes of list endpoints (API contract, "Conventions").
pub struct PageLimit;

impl PageLimit {
    pub const DEFAULT: u32 = 20;
    pub const MAX: u32 = 100;

    pub fn parse(raw: Option<i64>) -> Result<u32, String> {
        match raw {
            None => Ok(Self::DEFAULT),
            Some(n) if (1..=i64::from(Self::MAX)).contains(&n) => {
                u32::try_from(n).map_err(|_| "must be between 1 and 100".to_owned())
            }
            Some(_) => Err(format!("must be between 1 and {}", Self::MAX)),
        }
    }
}

/// A text search over name, artist and venue: trimmed, at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText(String);

impl SearchText {
    pub const MAX_CHARS: usize = 200;
    /// The trigram index only answers substrings of at least this many characters.
    pub const INDEXED_MIN_CHARS: usize = 3;

    /// `Ok(None)` for an empty search (no filter).
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let value = raw.trim();
        if value.is_empty() {
            Ok(None)
        } else if value.chars().count() > Self::MAX_CHARS {
            Err(format!("must be at most {} characters", Self::MAX_CHARS))
        } else {
            Ok(Some(Self(value.to_owned())))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn uses_index(&self) -> bool {
        self.0.chars().count() >= Self::INDEXED_MIN_CHARS
    }

    /// An FTS5 query matching the text as one phrase: with the trigram tokenizer that is a
    /// case-insensitive substring match. Double quotes are doubled, as FTS5 strings require.
    pub fn fts_phrase(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }

    /// A `LIKE` pattern for the text as a substring, escaping `%`, `_` and the escape `\`.
    pub fn like_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.0.len() + 2);
        pattern.push('%');
        for c in self.0.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2027-01-01 12:00 UTC);

    #[test]
    fn status_derivation_follows_the_contract_order() {
        let future = NOW + time::Duration::days(1);
        let past = NOW - time::Duration::minutes(1);
        assert_eq!(
            derive_status(false, None, future, NOW, [0, 3]),
            ConcertStatus::OnSale
        );
        assert_eq!(
            derive_status(false, None, future, NOW, [0, 0]),
            ConcertStatus::SoldOut
        );
        assert_eq!(
            derive_status(false, None, past, NOW, [5]),
            ConcertStatus::Closed
        );
        // Starting exactly now is started.
        assert_eq!(
            derive_status(false, None, NOW, NOW, [5]),
            ConcertStatus::Closed
        );
        // Cancelled wins over everything, closed wins over sold out.
        assert_eq!(
            derive_status(true, None, past, NOW, [0]),
            ConcertStatus::Cancelled
        );
        assert_eq!(
            derive_status(false, None, past, NOW, [0]),
            ConcertStatus::Closed
        );
        // No seat type at all: nothing can be booked.
        assert_eq!(
            derive_status(false, None, future, NOW, []),
            ConcertStatus::SoldOut
        );
        // Before the on-sale: scheduled, even with every seat left; at the instant, on sale.
        let opens = Some(NOW + time::Duration::hours(1));
        assert_eq!(
            derive_status(false, opens, future, NOW, [5]),
            ConcertStatus::Scheduled
        );
        assert_eq!(
            derive_status(false, opens, future, NOW + time::Duration::hours(1), [5]),
            ConcertStatus::OnSale
        );
        // Cancelled and closed win over scheduled.
        assert_eq!(
            derive_status(true, opens, future, NOW, [5]),
            ConcertStatus::Cancelled
        );
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            starts_at_millis: 1_800_000_000_123,
            id: Uuid::now_v7(),
        };
        let encoded = cursor.encode();
        assert!(
            encoded
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(Cursor::decode(&encoded), Some(cursor));
        let negative = Cursor {
            starts_at_millis: -5,
            ..cursor
        };
        assert_eq!(Cursor::decode(&negative.encode()), Some(negative));
        assert_eq!(Cursor::decode("not a cursor!"), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("12:nope")), None);
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode(format!("x:{}", cursor.id))),
            None
        );
        assert_eq!(Cursor::decode(""), None);
    }

    #[test]
    fn text_fields_are_trimmed_and_bounded_in_characters() {
        assert_eq!(Title::parse("  Aurora  ").unwrap().as_str(), "Aurora");
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse(&"é".repeat(200)).is_ok());
        assert!(Title::parse(&"é".repeat(201)).is_err());
        assert!(Title::parse("a\u{0}b").is_err());
        assert!(Description::parse("").is_ok());
        assert!(Description::parse("line one\nline two").is_ok());
        assert!(Description::parse(&"x".repeat(5001)).is_err());
        assert!(Category::parse(&"c".repeat(50)).is_ok());
        assert!(Category::parse(&"c".repeat(51)).is_err());
        assert_eq!(
            SeatTypeName::parse("VIP").unwrap().folded(),
            SeatTypeName::parse("vip").unwrap().folded()
        );
    }

    #[test]
    fn money_and_capacity_ranges() {
        assert!(Currency::parse("USD").is_ok());
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("US").is_err());
        assert!(Currency::parse("ÉUR").is_err());
        assert!(PriceCents::parse(0).is_ok());
        assert!(PriceCents::parse(-1).is_err());
        assert!(PriceCents::parse(PriceCents::MAX).is_ok());
        assert!(PriceCents::parse(PriceCents::MAX + 1).is_err());
        assert!(PriceCents::parse(i64::MAX).is_err());
        assert!(Capacity::parse(0).is_err());
        assert!(Capacity::parse(1).is_ok());
        assert!(Capacity::parse(1_000_000).is_ok());
        assert!(Capacity::parse(1_000_001).is_err());
    }

    #[test]
    fn start_must_be_in_the_future_and_is_kept_in_utc() {
        assert!(FutureStart::parse(NOW, NOW).is_err());
        let later = datetime!(2027-05-01 21:30 +02:00);
        let start = FutureStart::parse(later, NOW).unwrap();
        assert_eq!(start.get(), datetime!(2027-05-01 19:30 UTC));
        assert_eq!(start.get().offset(), time::UtcOffset::UTC);
    }

    #[test]
    fn page_limits() {
        assert_eq!(PageLimit::parse(None), Ok(20));
        assert_eq!(PageLimit::parse(Some(1)), Ok(1));
        assert_eq!(PageLimit::parse(Some(100)), Ok(100));
        assert!(PageLimit::parse(Some(0)).is_err());
        assert!(PageLimit::parse(Some(101)).is_err());
        assert!(PageLimit::parse(Some(-3)).is_err());
    }

    #[test]
    fn search_text_escapes_for_fts_and_like() {
        assert_eq!(SearchText::parse("  "), Ok(None));
        let text = SearchText::parse(r#"a"b"#).unwrap().unwrap();
        assert_eq!(text.fts_phrase(), r#""a""b""#);
        assert!(text.uses_index());
        let short = SearchText::parse("5%").unwrap().unwrap();
        assert!(!short.uses_index());
        assert_eq!(short.like_pattern(), r"%5\%%");
        assert_eq!(
            SearchText::parse("a_\\").unwrap().unwrap().like_pattern(),
            r"%a\_\\%"
        );
        assert!(SearchText::parse(&"q".repeat(201)).is_err());
    }

    #[test]
    fn ids_parse_or_are_absent() {
        let id = ConcertId::new();
        assert_eq!(ConcertId::parse(&id.to_string()), Some(id));
        assert_eq!(ConcertId::parse("42"), None);
        assert!(SeatTypeId::parse("not-a-uuid").is_none());
    }

    proptest::proptest! {
        /// A cursor comes back from clients: any text decodes or is refused, never panics.
        #[test]
        fn cursor_decoding_never_panics(raw in proptest::prelude::any::<String>(), b64 in "[A-Za-z0-9_-]{0,120}") {
            let _ = Cursor::decode(&raw);
            let _ = Cursor::decode(&b64);
        }
    }
}
