//! What both stores read alike through sqlx, written once for both: a booking by id, a saved
//! answer, the outbox's depth, the sales report, a ticket and the check-in counts, waiting-list
//! entries, a seat type's sell-out for webhooks, and the rows
//! they decode. The engines differ only in how they keep an instant (milliseconds on SQLite,
//! `timestamptz` on PostgreSQL) and a status code, which [`StoredRow`] hides; `$n` placeholders
//! serve both. What the engines read differently (a page of bookings, the inventory) stays in
//! their own `reads`.

use std::collections::HashMap;

use boxoffice_shared::clock::from_millis;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::checkin::{SeatCheckins, TicketRow};
use crate::command::{SalesRows, SavedResponse, SeatSalesRow};
use crate::domain::{Booking, BookingPayment, BookingStatus};
use crate::error::BookingError;
use crate::hold::{Hold, HoldPayment, HoldStatus, PaymentStatus, Provider};
use crate::waitlist::{WaitlistEntry, WaitlistStatus};
use crate::webhook::SoldOut;

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
        "id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at, cancelled_at, \
         payment_provider, amount_cents, payment_status"
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
        payment: BookingPayment::from_columns(
            row.try_get("payment_provider")?,
            row.try_get("amount_cents")?,
            row.try_get("payment_status")?,
        )?,
    })
}

/// The columns [`hold_from_row`] reads.
macro_rules! hold_columns {
    () => {
        "id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at, \
         expires_at, booking_id, provider, payment_status, client_secret, payment_ref"
    };
}
pub(crate) use hold_columns;

/// A hold from the columns of [`hold_columns!`], as stored (not yet [`Hold::as_of`] a time).
pub fn hold_from_row<R>(row: &R) -> Result<Hold, BookingError>
where
    R: StoredRow,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let text = |column: &str| -> Result<String, BookingError> { Ok(row.try_get(column)?) };
    let corrupt = |what: &str, value: &str| BookingError::Corrupt(format!("hold {what} {value}"));
    let status = text("status")?;
    let provider = text("provider")?;
    let payment_status = text("payment_status")?;
    let instant = |column: &str| -> Result<OffsetDateTime, BookingError> {
        row.instant(column)?
            .ok_or_else(|| BookingError::Corrupt(format!("hold without {column}")))
    };
    Ok(Hold {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        concert_id: row.try_get("concert_id")?,
        seat_type_id: row.try_get("seat_type_id")?,
        status: HoldStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        price_cents: row.try_get("price_cents")?,
        currency: text("currency")?,
        created_at: instant("created_at")?,
        expires_at: instant("expires_at")?,
        booking_id: row.try_get("booking_id")?,
        payment: HoldPayment {
            provider: Provider::parse(&provider).ok_or_else(|| corrupt("provider", &provider))?,
            status: PaymentStatus::parse(&payment_status)
                .ok_or_else(|| corrupt("payment status", &payment_status))?,
            client_secret: row.try_get("client_secret")?,
            reference: row.try_get("payment_ref")?,
        },
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
/// currency`), its booking counts (`status, n`) and its confirmed bookings per day (`day, n`).
pub fn sales_from_rows<R>(seats: &[R], counts: &[R], days: &[R]) -> Result<SalesRows, sqlx::Error>
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
                Ok(SeatSalesRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    capacity: row.try_get("capacity")?,
                    remaining: row.try_get("remaining")?,
                    held: row.try_get("held")?,
                    refunded_cents: row.try_get("refunded_cents")?,
                    price_cents: row.try_get("price_cents")?,
                    currency: row.try_get("currency")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?,
        confirmed: counts.get("confirmed").copied().unwrap_or(0),
        cancelled: counts.get("cancelled").copied().unwrap_or(0),
        by_day: days
            .iter()
            .map(|row| Ok((row.try_get("day")?, row.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()?,
    })
}

/// The saved answer of a user's Idempotency-Key, if any.
pub async fn saved_response<'c, DB, E>(
    executor: E,
    user_id: Uuid,
    key: &str,
) -> Result<Option<SavedResponse>, BookingError>
where
    DB: Database,
    DB::Row: StoredRow,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
{
    let row = sqlx::query::<DB>(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys
         WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(saved_from_row).transpose()
}

/// One booking, whoever holds it.
pub async fn booking_by_id<'c, DB, E>(
    executor: E,
    id: Uuid,
) -> Result<Option<Booking>, BookingError>
where
    DB: Database,
    DB::Row: StoredRow,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> Uuid: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    let row = sqlx::query::<DB>(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(booking_from_row).transpose()
}

/// One hold, whoever holds it, as stored.
pub async fn hold_by_id<'c, DB, E>(executor: E, id: Uuid) -> Result<Option<Hold>, BookingError>
where
    DB: Database,
    DB::Row: StoredRow,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> Uuid: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    let row = sqlx::query::<DB>(concat!(
        "SELECT ",
        hold_columns!(),
        " FROM holds WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(hold_from_row).transpose()
}

/// How many messages wait in the outbox.
pub async fn outbox_depth<'c, DB, E>(executor: E) -> Result<u64, BookingError>
where
    DB: Database,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let depth: i64 =
        sqlx::query_scalar::<DB, i64>("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(executor)
            .await?;
    Ok(u64::try_from(depth).unwrap_or(0))
}

/// The sales report's rows of one concert; `None` when Booking does not sell it. `seats` is the
/// engine's query of the concert's seat types in the order they were added, `days` its query of
/// confirmed bookings per UTC day (`$1`: the concert; dialects differ on dates).
pub async fn sales<'c, DB, E>(
    executor: E,
    concert_id: Uuid,
    seats: &'static str,
    days: &'static str,
) -> Result<Option<SalesRows>, BookingError>
where
    DB: Database,
    E: Executor<'c, Database = DB> + Copy,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> Uuid: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    let exists = sqlx::query::<DB>("SELECT 1 FROM sales WHERE concert_id = $1")
        .bind(concert_id)
        .fetch_optional(executor)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let seats = sqlx::query::<DB>(seats)
        .bind(concert_id)
        .fetch_all(executor)
        .await?;
    let counts = sqlx::query::<DB>(
        "SELECT status, count(*) AS n FROM bookings WHERE concert_id = $1 GROUP BY status",
    )
    .bind(concert_id)
    .fetch_all(executor)
    .await?;
    let days = sqlx::query::<DB>(days)
        .bind(concert_id)
        .fetch_all(executor)
        .await?;
    Ok(Some(sales_from_rows(&seats, &counts, &days)?))
}

/// A ticket: its booking and its check-in, if any.
pub async fn ticket_row<'c, DB, E>(
    executor: E,
    booking_id: Uuid,
) -> Result<Option<TicketRow>, BookingError>
where
    DB: Database,
    DB::Row: StoredRow,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> Uuid: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    let row = sqlx::query::<DB>(
        "SELECT b.user_id, b.concert_id, b.seat_type_id, b.status, c.checked_in_at, c.nonce
         FROM bookings b LEFT JOIN checkins c ON c.booking_id = b.id
         WHERE b.id = $1",
    )
    .bind(booking_id)
    .fetch_optional(executor)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    Ok(Some(TicketRow {
        booking_id,
        user_id: row.try_get("user_id")?,
        concert_id: row.try_get("concert_id")?,
        seat_type_id: row.try_get("seat_type_id")?,
        status: BookingStatus::parse(&status)
            .ok_or_else(|| BookingError::Corrupt(format!("booking status {status}")))?,
        checked_in_at: row.instant("checked_in_at")?,
        nonce: row.try_get("nonce")?,
    }))
}

/// Confirmed and checked-in tickets of concert `concert_id`, per seat type that has any.
pub async fn checkin_counts<'c, DB, E>(
    executor: E,
    concert_id: Uuid,
) -> Result<HashMap<Uuid, SeatCheckins>, BookingError>
where
    DB: Database,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> Uuid: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    let rows = sqlx::query::<DB>(
        "SELECT b.seat_type_id, count(*) AS confirmed, count(c.booking_id) AS checked_in
         FROM bookings b LEFT JOIN checkins c ON c.booking_id = b.id
         WHERE b.concert_id = $1 AND b.status = 'confirmed'
         GROUP BY b.seat_type_id",
    )
    .bind(concert_id)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("seat_type_id")?,
                SeatCheckins {
                    confirmed: row.try_get("confirmed")?,
                    checked_in: row.try_get("checked_in")?,
                },
            ))
        })
        .collect()
}

/// The columns [`entry_from_row`] reads from `waitlist AS w`, with `position` counted among
/// those waiting for the same seat type.
macro_rules! entry_columns {
    () => {
        "w.id, w.user_id, w.concert_id, w.seat_type_id, w.status, w.created_at, w.hold_id, \
         CASE WHEN w.status = 'waiting' THEN (SELECT count(*) FROM waitlist AS a \
            WHERE a.seat_type_id = w.seat_type_id AND a.status = 'waiting' AND a.seq <= w.seq) \
         END AS position"
    };
}
pub(crate) use entry_columns;

/// A waiting-list entry from the columns of [`entry_columns!`].
pub fn entry_from_row<R>(row: &R) -> Result<WaitlistEntry, BookingError>
where
    R: StoredRow,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: String = row.try_get("status")?;
    Ok(WaitlistEntry {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        concert_id: row.try_get("concert_id")?,
        seat_type_id: row.try_get("seat_type_id")?,
        status: WaitlistStatus::parse(&status)
            .ok_or_else(|| BookingError::Corrupt(format!("waiting-list status {status}")))?,
        position: row.try_get("position")?,
        created_at: row
            .instant("created_at")?
            .ok_or_else(|| BookingError::Corrupt("waiting-list entry without created_at".into()))?,
        hold_id: row.try_get("hold_id")?,
    })
}

/// One waiting-list entry, whoever's it is.
pub async fn waitlist_entry<'c, DB, E>(
    executor: E,
    id: Uuid,
) -> Result<Option<WaitlistEntry>, BookingError>
where
    DB: Database,
    DB::Row: StoredRow,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> Uuid: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    let row = sqlx::query::<DB>(concat!(
        "SELECT ",
        entry_columns!(),
        " FROM waitlist AS w WHERE w.id = $1"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(entry_from_row).transpose()
}

/// One page of a fan's waiting-list entries, newest first, strictly older than `before`.
pub async fn list_waitlist<'c, DB, E>(
    executor: E,
    user_id: Uuid,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<WaitlistEntry>, BookingError>
where
    DB: Database,
    DB::Row: StoredRow,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB>,
    for<'t> i64: Encode<'t, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> Uuid: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    let rows = sqlx::query::<DB>(concat!(
        "SELECT ",
        entry_columns!(),
        " FROM waitlist AS w
         WHERE w.user_id = $1 AND w.id < $2
         ORDER BY w.id DESC LIMIT $3"
    ))
    .bind(user_id)
    .bind(before.unwrap_or(Uuid::max()))
    .bind(i64::from(limit))
    .fetch_all(executor)
    .await?;
    rows.iter().map(entry_from_row).collect()
}

/// A seat type's sell-out as a `concert.sold_out` event shows it, read now.
pub async fn sold_out<'c, DB, E>(
    executor: E,
    seat_type_id: Uuid,
) -> Result<Option<SoldOut>, BookingError>
where
    DB: Database,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> Uuid: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> i32: Decode<'r, DB> + Type<DB>,
{
    // An integer, not a boolean: SQLite has none, and both engines decode an int4 alike.
    let row = sqlx::query::<DB>(
        "SELECT t.concert_id, t.name, t.capacity, t.remaining,
                CASE WHEN EXISTS (SELECT 1 FROM seat_types o
                                  WHERE o.concert_id = t.concert_id AND o.remaining > 0)
                     THEN 0 ELSE 1 END AS concert_sold_out
         FROM seat_types t WHERE t.id = $1",
    )
    .bind(seat_type_id)
    .fetch_optional(executor)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(SoldOut {
        concert_id: row.try_get("concert_id")?,
        seat_type_id,
        seat_type_name: row.try_get("name")?,
        capacity: row.try_get("capacity")?,
        remaining: row.try_get("remaining")?,
        concert_sold_out: row.try_get::<i32, _>("concert_sold_out")? != 0,
    }))
}
