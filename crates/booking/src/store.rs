//! The Booking store's SQL.
//!
//! Functions that change data take one `&mut SqliteConnection`, so the writer can run many of
//! them inside one transaction; reads take any executor (usually the read pool).

use std::collections::HashMap;

use boxoffice_shared::clients::{
    BookingEmail, ConcertInventory, EmailKind, OutboxMessage, SeatInventory,
};
use boxoffice_shared::clock::{from_millis, to_millis};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqliteExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Booking, BookingStatus};
use crate::error::BookingError;
use crate::view::{ConcertSale, Inventory, Seat};

/// A saved answer to an idempotent request.
#[derive(Debug, Clone)]
pub struct SavedResponse {
    pub request_hash: Vec<u8>,
    pub status: u16,
    pub body: String,
}

fn booking_from_row(row: &SqliteRow) -> Result<Booking, BookingError> {
    let status: String = row.try_get("status")?;
    Ok(Booking {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        concert_id: row.try_get("concert_id")?,
        seat_type_id: row.try_get("seat_type_id")?,
        status: BookingStatus::parse(&status)
            .ok_or_else(|| BookingError::Corrupt(format!("booking status {status}")))?,
        price_cents: row.try_get("price_cents")?,
        currency: row.try_get("currency")?,
        created_at: from_millis(row.try_get("created_at")?),
        cancelled_at: row
            .try_get::<Option<i64>, _>("cancelled_at")?
            .map(from_millis),
    })
}

macro_rules! booking_columns {
    () => {
        "id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at, cancelled_at"
    };
}

/// Everything the in-memory view holds, read from the store.
pub async fn load_inventory(executor: &mut SqliteConnection) -> Result<Inventory, BookingError> {
    let mut inventory = Inventory::default();
    let concerts =
        sqlx::query("SELECT concert_id, name, venue, starts_at, cancelled_at FROM sales")
            .fetch_all(&mut *executor)
            .await?;
    for row in &concerts {
        inventory.concerts.insert(
            row.try_get("concert_id")?,
            ConcertSale {
                name: row.try_get("name")?,
                venue: row.try_get("venue")?,
                starts_at: from_millis(row.try_get("starts_at")?),
                cancelled: row.try_get::<Option<i64>, _>("cancelled_at")?.is_some(),
                seat_types: Vec::new(),
            },
        );
    }
    let seats = sqlx::query(
        "SELECT id, concert_id, name, price_cents, currency, capacity, remaining
         FROM seat_types ORDER BY rowid",
    )
    .fetch_all(&mut *executor)
    .await?;
    for row in &seats {
        let id: Uuid = row.try_get("id")?;
        let concert_id: Uuid = row.try_get("concert_id")?;
        inventory.seats.insert(
            id,
            Seat {
                concert_id,
                name: row.try_get("name")?,
                price_cents: row.try_get("price_cents")?,
                currency: row.try_get("currency")?,
                capacity: row.try_get("capacity")?,
                remaining: row.try_get("remaining")?,
            },
        );
        if let Some(concert) = inventory.concerts.get_mut(&concert_id) {
            concert.seat_types.push(id);
        }
    }
    Ok(inventory)
}

pub async fn saved_response<'c>(
    executor: impl SqliteExecutor<'c>,
    user_id: Uuid,
    key: &str,
) -> Result<Option<SavedResponse>, BookingError> {
    let row = sqlx::query(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys
         WHERE user_id = ? AND idempotency_key = ?",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(executor)
    .await?;
    row.map(|row| {
        Ok(SavedResponse {
            request_hash: row.try_get("request_hash")?,
            status: u16::try_from(row.try_get::<i64, _>("response_status")?)
                .map_err(|_| BookingError::Corrupt("response status".into()))?,
            body: row.try_get("response_body")?,
        })
    })
    .transpose()
}

pub async fn save_response(
    conn: &mut SqliteConnection,
    user_id: Uuid,
    key: &str,
    request_hash: &[u8],
    status: u16,
    body: &str,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    sqlx::query(
        "INSERT INTO idempotency_keys
            (user_id, idempotency_key, request_hash, response_status, response_body, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(user_id)
    .bind(key)
    .bind(request_hash)
    .bind(i64::from(status))
    .bind(body)
    .bind(to_millis(now))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn holds_confirmed_booking(
    conn: &mut SqliteConnection,
    user_id: Uuid,
    concert_id: Uuid,
) -> Result<bool, BookingError> {
    let row = sqlx::query(
        "SELECT 1 FROM bookings WHERE user_id = ? AND concert_id = ? AND status = 'confirmed'",
    )
    .bind(user_id)
    .bind(concert_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Inserts a confirmed booking. The schema's trigger takes the seat (or refuses: sold out, closed).
pub async fn insert_booking(
    conn: &mut SqliteConnection,
    booking: &Booking,
) -> Result<(), BookingError> {
    sqlx::query(
        "INSERT INTO bookings
            (id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at, cancelled_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(booking.id)
    .bind(booking.user_id)
    .bind(booking.concert_id)
    .bind(booking.seat_type_id)
    .bind(booking.status.as_str())
    .bind(booking.price_cents)
    .bind(&booking.currency)
    .bind(to_millis(booking.created_at))
    .bind(booking.cancelled_at.map(to_millis))
    .execute(conn)
    .await
    .map_err(constraint_to_rule)?;
    Ok(())
}

pub async fn booking_by_id<'c>(
    executor: impl SqliteExecutor<'c>,
    id: Uuid,
) -> Result<Option<Booking>, BookingError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(booking_from_row).transpose()
}

/// Flips a confirmed booking to cancelled; the schema's trigger returns the seat. `None` when
/// the booking was not confirmed.
pub async fn cancel_booking(
    conn: &mut SqliteConnection,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<Option<Booking>, BookingError> {
    let row = sqlx::query(concat!(
        "UPDATE bookings SET status = 'cancelled', cancelled_at = ?
         WHERE id = ? AND status = 'confirmed'
         RETURNING ",
        booking_columns!()
    ))
    .bind(to_millis(now))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(constraint_to_rule)?;
    row.as_ref().map(booking_from_row).transpose()
}

/// Queues an email in the outbox.
pub async fn enqueue_email(
    conn: &mut SqliteConnection,
    kind: EmailKind,
    email: &BookingEmail,
    now: OffsetDateTime,
) -> Result<Uuid, BookingError> {
    let message_id = Uuid::now_v7();
    let payload =
        serde_json::to_string(email).map_err(|error| BookingError::Corrupt(error.to_string()))?;
    let kind = match kind {
        EmailKind::BookingConfirmed => "booking_confirmed",
        EmailKind::BookingCancelled => "booking_cancelled",
    };
    sqlx::query(
        "INSERT INTO outbox (message_id, kind, payload, created_at, available_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(message_id)
    .bind(kind)
    .bind(payload)
    .bind(to_millis(now))
    .bind(to_millis(now))
    .execute(conn)
    .await?;
    Ok(message_id)
}

/// Creates or updates a concert's sale window and adds the seat types it does not have yet.
pub async fn provision(
    conn: &mut SqliteConnection,
    concert: &ConcertInventory,
) -> Result<Vec<SeatInventory>, BookingError> {
    sqlx::query(
        "INSERT INTO sales (concert_id, name, venue, starts_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (concert_id) DO UPDATE SET
            name = excluded.name, venue = excluded.venue, starts_at = excluded.starts_at",
    )
    .bind(concert.concert_id)
    .bind(&concert.name)
    .bind(&concert.venue)
    .bind(to_millis(concert.starts_at))
    .execute(&mut *conn)
    .await?;
    let mut added = Vec::new();
    for seat in &concert.seat_types {
        let result = sqlx::query(
            "INSERT INTO seat_types (id, concert_id, name, price_cents, currency, capacity, remaining)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(seat.seat_type_id)
        .bind(concert.concert_id)
        .bind(&seat.name)
        .bind(seat.price_cents)
        .bind(&seat.currency)
        .bind(seat.capacity)
        .bind(seat.capacity)
        .execute(&mut *conn)
        .await?;
        if result.rows_affected() == 1 {
            added.push(seat.clone());
        }
    }
    Ok(added)
}

/// Sets a seat type's capacity, moving `remaining` by the same amount. The CHECK on `remaining`
/// refuses to shrink below what is sold. Returns the new `(capacity, remaining)`.
pub async fn set_capacity(
    conn: &mut SqliteConnection,
    seat_type_id: Uuid,
    capacity: i64,
) -> Result<Option<(i64, i64)>, BookingError> {
    let row = sqlx::query(
        "UPDATE seat_types SET remaining = remaining + (? - capacity), capacity = ?
         WHERE id = ? RETURNING capacity, remaining",
    )
    .bind(capacity)
    .bind(capacity)
    .bind(seat_type_id)
    .fetch_optional(conn)
    .await
    .map_err(|error| match constraint_to_rule(error) {
        BookingError::SoldOut => {
            BookingError::invalid("capacity", "cannot shrink below the seats already sold")
        }
        other => other,
    })?;
    row.map(|row| Ok((row.try_get("capacity")?, row.try_get("remaining")?)))
        .transpose()
}

/// Marks a concert cancelled and cancels its confirmed bookings, returning them.
pub async fn cancel_sale(
    conn: &mut SqliteConnection,
    concert_id: Uuid,
    now: OffsetDateTime,
) -> Result<Vec<Booking>, BookingError> {
    sqlx::query("UPDATE sales SET cancelled_at = ? WHERE concert_id = ? AND cancelled_at IS NULL")
        .bind(to_millis(now))
        .bind(concert_id)
        .execute(&mut *conn)
        .await?;
    let rows = sqlx::query(concat!(
        "UPDATE bookings SET status = 'cancelled', cancelled_at = ?
         WHERE concert_id = ? AND status = 'confirmed'
         RETURNING ",
        booking_columns!()
    ))
    .bind(to_millis(now))
    .bind(concert_id)
    .fetch_all(conn)
    .await
    .map_err(constraint_to_rule)?;
    rows.iter().map(booking_from_row).collect()
}

/// Leases up to `limit` due messages until `lease_until`.
pub async fn claim_outbox(
    conn: &mut SqliteConnection,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: u32,
) -> Result<Vec<OutboxMessage>, BookingError> {
    let rows = sqlx::query(
        "UPDATE outbox SET available_at = ?, attempts = attempts + 1
         WHERE message_id IN (
            SELECT message_id FROM outbox
            WHERE sent_at IS NULL AND available_at <= ?
            ORDER BY available_at LIMIT ?)
         RETURNING message_id, kind, payload, attempts",
    )
    .bind(to_millis(lease_until))
    .bind(to_millis(now))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            let payload: String = row.try_get("payload")?;
            let attempts: i64 = row.try_get("attempts")?;
            Ok(OutboxMessage {
                message_id: row.try_get("message_id")?,
                kind: match kind.as_str() {
                    "booking_confirmed" => EmailKind::BookingConfirmed,
                    "booking_cancelled" => EmailKind::BookingCancelled,
                    other => return Err(BookingError::Corrupt(format!("outbox kind {other}"))),
                },
                attempts: u32::try_from(attempts.saturating_sub(1)).unwrap_or(0),
                booking: serde_json::from_str(&payload)
                    .map_err(|error| BookingError::Corrupt(format!("outbox payload: {error}")))?,
            })
        })
        .collect()
}

pub async fn acknowledge_outbox(
    conn: &mut SqliteConnection,
    message_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    sqlx::query(
        "UPDATE outbox SET sent_at = ?, last_error = NULL WHERE message_id = ? AND sent_at IS NULL",
    )
    .bind(to_millis(now))
    .bind(message_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn retry_outbox(
    conn: &mut SqliteConnection,
    message_id: Uuid,
    retry_at: OffsetDateTime,
    error: &str,
) -> Result<(), BookingError> {
    sqlx::query("UPDATE outbox SET available_at = ?, last_error = ? WHERE message_id = ? AND sent_at IS NULL")
        .bind(to_millis(retry_at))
        .bind(error)
        .bind(message_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn outbox_depth<'c>(executor: impl SqliteExecutor<'c>) -> Result<u64, BookingError> {
    let depth: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(executor)
        .await?;
    Ok(u64::try_from(depth).unwrap_or(0))
}

/// One page of a user's bookings, newest first, strictly older than `before` when given.
pub async fn list_bookings<'c>(
    executor: impl SqliteExecutor<'c>,
    user_id: Uuid,
    status: Option<BookingStatus>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Booking>, BookingError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings
         WHERE user_id = ?1
           AND (?2 IS NULL OR status = ?2)
           AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4"
    ))
    .bind(user_id)
    .bind(status.map(BookingStatus::as_str))
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(executor)
    .await?;
    rows.iter().map(booking_from_row).collect()
}

/// Per seat type: `(capacity, remaining, price_cents, currency, name)`, and booking counts by
/// status, for the sales report.
pub struct SalesRows {
    pub seat_types: Vec<(Uuid, String, i64, i64, i64, String)>,
    pub confirmed: i64,
    pub cancelled: i64,
}

pub async fn sales<'c>(
    executor: impl SqliteExecutor<'c> + Copy,
    concert_id: Uuid,
) -> Result<Option<SalesRows>, BookingError> {
    let exists = sqlx::query("SELECT 1 FROM sales WHERE concert_id = ?")
        .bind(concert_id)
        .fetch_optional(executor)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let seats = sqlx::query(
        "SELECT id, name, capacity, remaining, price_cents, currency FROM seat_types
         WHERE concert_id = ? ORDER BY rowid",
    )
    .bind(concert_id)
    .fetch_all(executor)
    .await?;
    let counts: HashMap<String, i64> = sqlx::query(
        "SELECT status, count(*) AS n FROM bookings WHERE concert_id = ? GROUP BY status",
    )
    .bind(concert_id)
    .fetch_all(executor)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("status")?, row.try_get("n")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(Some(SalesRows {
        seat_types: seats
            .iter()
            .map(|row| {
                Ok((
                    row.try_get("id")?,
                    row.try_get("name")?,
                    row.try_get("capacity")?,
                    row.try_get("remaining")?,
                    row.try_get("price_cents")?,
                    row.try_get("currency")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?,
        confirmed: counts.get("confirmed").copied().unwrap_or(0),
        cancelled: counts.get("cancelled").copied().unwrap_or(0),
    }))
}

/// Maps the schema's refusals onto booking rules: the CHECK on `remaining` is "sold out", the
/// partial unique index is "already booked", and the triggers name their rule.
fn constraint_to_rule(error: sqlx::Error) -> BookingError {
    if let sqlx::Error::Database(db) = &error {
        let message = db.message();
        if message.contains("remaining_within_capacity") {
            return BookingError::SoldOut;
        }
        if message.contains("booking_closed") {
            return BookingError::BookingClosed;
        }
        if message.contains("already_cancelled") {
            return BookingError::AlreadyCancelled;
        }
        if db.is_unique_violation() && message.contains("bookings.user_id") {
            return BookingError::AlreadyBooked;
        }
    }
    BookingError::Store(error)
}
