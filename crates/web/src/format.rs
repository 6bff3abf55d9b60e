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
    /// The waiting room in front of its sales, if it has one.
    #[serde(default)]
    pub waiting_room: Option<WaitingRoom>,
}

/// A concert's waiting room as the API answers it.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct WaitingRoom {
    pub admit_per_minute: i64,
    pub admission_ttl_seconds: i64,
}

impl WaitingRoom {
    /// `1 fan a minute`, `1000 fans a minute`.
    pub fn rate_text(&self) -> String {
        let fans = if self.admit_per_minute == 1 {
            "fan"
        } else {
            "fans"
        };
        format!("{} {fans} a minute", self.admit_per_minute)
    }

    /// How long a fan has to choose once let through: `10 minutes`.
    pub fn turn_text(&self) -> String {
        span(self.admission_ttl_seconds)
    }

    /// The turn in minutes, as the organiser's form shows it: `10`, `1.5`.
    pub fn turn_minutes(&self) -> String {
        let seconds = self.admission_ttl_seconds;
        if seconds % 60 == 0 {
            return (seconds / 60).to_string();
        }
        let minutes = format!("{:.2}", seconds as f64 / 60.0);
        minutes.trim_end_matches('0').to_owned()
    }
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

    /// Whether fans may join its waiting room now: it has one, and still sells or will.
    pub fn queue_open(&self) -> bool {
        self.waiting_room.is_some() && matches!(self.status.as_str(), "on_sale" | "scheduled")
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

/// A fan's place in a concert's waiting room, as the API answers it (`QueueTicket`).
#[derive(Debug, Clone, Deserialize)]
pub struct QueueTicket {
    pub concert_id: Uuid,
    /// `waiting` or `admitted`.
    pub state: String,
    /// 1 is next; `None` before the pre-queue is shuffled at the opening, and once admitted.
    pub position: Option<i64>,
    pub estimated_wait_seconds: Option<i64>,
    /// While the turn lasts: what a hold sends as `Boxoffice-Admission`.
    pub admission: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub admitted_until: Option<OffsetDateTime>,
}

impl QueueTicket {
    pub fn is_admitted(&self) -> bool {
        self.state == "admitted"
    }

    /// `19:30:05 UTC`: until when the turn lasts (or lasted).
    pub fn until_text(&self) -> String {
        self.admitted_until.map(clock).unwrap_or_default()
    }

    /// Where the fan stands, in a sentence: the same on the page and in its live updates.
    /// `opens` is when the concert's sales open.
    pub fn place_text(&self, opens: Option<OffsetDateTime>) -> String {
        if self.is_admitted() {
            return "It's your turn: choose your ticket.".into();
        }
        match (self.position, opens) {
            (Some(1), _) => format!(
                "You are next in the queue. Estimated wait: {}.",
                wait(self.estimated_wait_seconds)
            ),
            (Some(position), _) => format!(
                "You are number {position} in the queue. Estimated wait: {}.",
                wait(self.estimated_wait_seconds)
            ),
            (None, Some(opens)) if opens > OffsetDateTime::now_utc() => format!(
                "You are in the waiting room. When sales open ({}), everyone here gets a random \
                 place in the queue.",
                when(opens)
            ),
            (None, _) => "Sales are open: your place in the queue is being drawn.".into(),
        }
    }
}

/// An estimated wait: `any moment now`, `less than a minute`, `about 3 minutes`.
fn wait(seconds: Option<i64>) -> String {
    match seconds.unwrap_or(0) {
        ..=0 => "any moment now".into(),
        1..60 => "less than a minute".into(),
        seconds => format!("about {}", span((seconds + 59) / 60 * 60)),
    }
}

/// A length of time in words: `1 hour 5 minutes`, `90 seconds` reads `1 minute 30 seconds`.
fn span(seconds: i64) -> String {
    let parts = [
        (seconds / 3600, "hour"),
        (seconds % 3600 / 60, "minute"),
        (seconds % 60, "second"),
    ];
    let words: Vec<String> = parts
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, unit)| {
            let plural = if *count == 1 { "" } else { "s" };
            format!("{count} {unit}{plural}")
        })
        .collect();
    if words.is_empty() {
        return "0 seconds".into();
    }
    words.join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_and_turns_read_as_words() {
        assert_eq!(wait(None), "any moment now");
        assert_eq!(wait(Some(30)), "less than a minute");
        assert_eq!(wait(Some(60)), "about 1 minute");
        assert_eq!(wait(Some(61)), "about 2 minutes");
        assert_eq!(wait(Some(3900)), "about 1 hour 5 minutes");
        assert_eq!(span(90), "1 minute 30 seconds");
        let room = |seconds| WaitingRoom {
            admit_per_minute: 1,
            admission_ttl_seconds: seconds,
        };
        assert_eq!(room(600).turn_minutes(), "10");
        assert_eq!(room(90).turn_minutes(), "1.5");
        assert_eq!(room(3600).turn_text(), "1 hour");
        assert_eq!(room(600).rate_text(), "1 fan a minute");
    }

    #[test]
    fn a_place_reads_as_a_sentence() {
        let ticket = |state: &str, position| QueueTicket {
            concert_id: Uuid::nil(),
            state: state.into(),
            position,
            estimated_wait_seconds: position.map(|position| position * 60),
            admission: None,
            admitted_until: None,
        };
        let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
        assert!(
            ticket("waiting", None)
                .place_text(Some(later))
                .contains("random place")
        );
        assert!(
            ticket("waiting", None)
                .place_text(None)
                .contains("being drawn")
        );
        assert_eq!(
            ticket("waiting", Some(3)).place_text(None),
            "You are number 3 in the queue. Estimated wait: about 3 minutes."
        );
        assert!(
            ticket("waiting", Some(1))
                .place_text(None)
                .starts_with("You are next")
        );
        assert!(
            ticket("admitted", None)
                .place_text(None)
                .starts_with("It's your turn")
        );
    }
}
