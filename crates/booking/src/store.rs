//! The Booking store's reads, on the async read pool. Everything that changes the store is in
//! [`crate::write`], run by the single writer.

use std::collections::HashMap;

use boxoffice_shared::clock::from_millis;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteExecutor};
use uuid::Uuid;

use crate::domain::{Booking, BookingStatus};
use crate::error::BookingError;

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
