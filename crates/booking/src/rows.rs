//! Rows that both stores read through sqlx, decoded once for both: a booking, a saved answer,
//! and the sales report. The engines differ only in how they keep an instant (milliseconds on
//! SQLite, `timestamptz` on PostgreSQL), which [`StoredRow`] hides.

use std::collections::HashMap;

use boxoffice_shared::clock::from_millis;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{ColumnIndex, Decode, Row, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::command::{SalesRows, SavedResponse};
use crate::domain::{Booking, BookingStatus};
use crate::error::BookingError;

/// A row of either store, with its engine's way of keeping instants and small integers.
pub trait StoredRow: Row {
    /// The instant in `column`, `None` when NULL.
    fn instant(&self, column: &str) -> Result<Option<OffsetDateTime>, sqlx::Error>;
    /// The HTTP status in `column`.
    fn status(&self, column: &str) -> Result<i64, sqlx::Error>;
}

impl StoredRow for SqliteRow {
    fn instant(&self, column: &str) -> Result<Option<OffsetDateTime>, sqlx::Error> {
        Ok(self.try_get::<Option<i64>, _>(column)?.map(from_millis))
    }

    fn status(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }
}

impl StoredRow for PgRow {
    fn instant(&self, column: &str) -> Result<Option<OffsetDateTime>, sqlx::Error> {
        self.try_get(column)
    }

    fn status(&self, column: &str) -> Result<i64, sqlx::Error> {
        Ok(i64::from(self.try_get::<i32, _>(column)?))
    }
}

/// The columns [`booking_from_row`] reads, as a literal so that queries stay `&'static str`.
macro_rules! booking_columns {
    () => {
        "id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at, cancelled_at"
    };
}
pub(crate) use booking_columns;

/// A booking from the columns of [`booking_columns!`].
pub fn booking_from_row<R>(row: &R) -> Result<Booking, BookingError>
where
    R: StoredRow,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
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
        created_at: row
            .instant("created_at")?
            .ok_or_else(|| BookingError::Corrupt("booking without created_at".into()))?,
        cancelled_at: row.instant("cancelled_at")?,
    })
}

/// A saved answer from the columns `request_hash, response_status, response_body`.
pub fn saved_from_row<R>(row: &R) -> Result<SavedResponse, BookingError>
where
    R: StoredRow,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(SavedResponse {
        request_hash: row.try_get("request_hash")?,
        status: u16::try_from(row.status("response_status")?)
            .map_err(|_| BookingError::Corrupt("response status".into()))?,
        body: row.try_get("response_body")?,
    })
}

/// The sales report from its seat types (`id, name, capacity, remaining, price_cents,
/// currency`) and its booking counts (`status, n`).
pub fn sales_from_rows<R>(seats: &[R], counts: &[R]) -> Result<SalesRows, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let counts: HashMap<String, i64> = counts
        .iter()
        .map(|row| Ok((row.try_get("status")?, row.try_get("n")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(SalesRows {
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
    })
}
