//! What the API's JSON looks like to the pages, and how its values read on a page (prices,
//! times, statuses).

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// A concert as the API answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Concert {
    pub id: Uuid,
    pub name: String,
    pub artist: String,
    pub venue: String,
    #[serde(default)]
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub sales_open_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub category: String,
    pub status: String,
    pub booking_open: bool,
    pub seat_types: Vec<SeatType>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeatType {
    pub id: Uuid,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub capacity: i64,
    pub remaining: i64,
}

impl SeatType {
    pub fn price(&self) -> String {
        money(self.price_cents, &self.currency)
    }
}

impl Concert {
    pub fn when(&self) -> String {
        when(self.starts_at)
    }

    pub fn starts_at_iso(&self) -> String {
        iso(self.starts_at)
    }

    pub fn status_text(&self) -> &'static str {
        match self.status.as_str() {
            "on_sale" => "On sale",
            "sold_out" => "Sold out",
            "closed" => "Sales closed",
            "cancelled" => "Cancelled",
            "scheduled" => "Not on sale yet",
            _ => "Not on sale",
        }
    }

    pub fn sales_open_text(&self) -> Option<String> {
        self.sales_open_at
            .filter(|at| *at > OffsetDateTime::now_utc())
            .map(when)
    }

    pub fn seat_type(&self, id: Uuid) -> Option<&SeatType> {
        self.seat_types.iter().find(|seat| seat.id == id)
    }

    /// The name of its ticket type `id` (empty for none).
    pub fn seat_name(&self, id: Uuid) -> String {
        self.seat_type(id)
            .map(|seat| seat.name.clone())
            .unwrap_or_default()
    }

    /// The cheapest price, for the list.
    pub fn lowest_price(&self) -> String {
        self.seat_types
            .iter()
            .min_by_key(|seat| seat.price_cents)
            .map(SeatType::price)
            .unwrap_or_default()
    }
}

/// A page of a list.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A hold as the API answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Hold {
    pub id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub status: String,
    pub price_cents: i64,
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub booking_id: Option<Uuid>,
}

impl Hold {
    pub fn price(&self) -> String {
        money(self.price_cents, &self.currency)
    }

    pub fn expires_at_iso(&self) -> String {
        iso(self.expires_at)
    }

    pub fn expires_at_text(&self) -> String {
        clock(self.expires_at)
    }

    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    pub fn is_free(&self) -> bool {
        self.price_cents == 0
    }
}

/// A booking as the API answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Booking {
    pub id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub status: String,
    pub price_cents: i64,
    pub currency: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default)]
    pub payment: Option<Payment>,
}

/// A user as the admins' API answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub role: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Payment {
    pub status: String,
}

impl Booking {
    pub fn price(&self) -> String {
        money(self.price_cents, &self.currency)
    }

    pub fn bought(&self) -> String {
        when(self.created_at)
    }

    pub fn refunded(&self) -> bool {
        self.payment
            .as_ref()
            .is_some_and(|payment| payment.status == "refunded")
    }
}

/// A ticket as the API answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Ticket {
    pub holder_name: String,
    pub code: String,
    pub status: String,
}

impl Ticket {
    pub fn status_text(&self) -> &'static str {
        match self.status.as_str() {
            "valid" => "Valid",
            "checked_in" => "Checked in",
            "cancelled" => "Cancelled",
            _ => "Unknown",
        }
    }
}

/// A waiting-list entry as the API answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct WaitlistEntry {
    pub id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub status: String,
    pub position: Option<i64>,
    pub hold_id: Option<Uuid>,
}

impl WaitlistEntry {
    pub fn status_text(&self) -> &'static str {
        match self.status.as_str() {
            "waiting" => "Waiting",
            "offered" => "A ticket is reserved for you",
            "completed" => "Bought",
            "expired" => "The offer ran out",
            "left" => "Left the list",
            _ => "Unknown",
        }
    }
}

/// A price: `12.50 USD`, or `Free`.
pub fn money(cents: i64, currency: &str) -> String {
    if cents == 0 {
        return "Free".into();
    }
    amount(cents, currency)
}

/// A sum of money: `12.50 USD`, `0.00 USD`.
pub fn amount(cents: i64, currency: &str) -> String {
    format!("{}.{:02} {currency}", cents / 100, (cents % 100).abs())
}

/// `Sat 1 May 2027, 19:30 UTC`.
pub fn when(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short] [day padding:none] [month repr:short] [year], [hour]:[minute] UTC"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// `19:30:05 UTC`.
pub fn clock(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[hour]:[minute]:[second] UTC");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// An RFC 3339 time as the API writes them.
pub fn parse_iso(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// RFC 3339, for `<time datetime>` and scripts.
pub fn iso(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}
