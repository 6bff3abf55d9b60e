//! The SQLite store's reads, on the async read pool. Everything that changes the store is done
//! by the single writer ([`super::writer`]).

use sqlx::SqliteExecutor;
use uuid::Uuid;

use crate::command::{SalesRows, SavedResponse};
use crate::domain::{Booking, BookingStatus};
use crate::error::BookingError;
use crate::rows::{booking_columns, booking_from_row, sales_from_rows, saved_from_row};

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
    row.as_ref().map(saved_from_row).transpose()
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

/// The sales report's rows of one concert; `None` when Booking does not sell it.
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
    let counts = sqlx::query(
        "SELECT status, count(*) AS n FROM bookings WHERE concert_id = ? GROUP BY status",
    )
    .bind(concert_id)
    .fetch_all(executor)
    .await?;
    Ok(Some(sales_from_rows(&seats, &counts)?))
}
