//! The PostgreSQL store's reads, on the pool: what clients read, and the inventory the view is
//! loaded from (with each row's version, see [`super::view::PgView`]).

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::command::{SalesRows, SavedResponse};
use crate::domain::{Booking, BookingStatus};
use crate::error::BookingError;
use crate::rows::{booking_columns, booking_from_row, sales_from_rows, saved_from_row};
use crate::view::{ConcertSale, Inventory, Seat};

pub async fn saved_response(
    pool: &PgPool,
    user_id: Uuid,
    key: &str,
) -> Result<Option<SavedResponse>, BookingError> {
    let row = sqlx::query(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys
         WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(saved_from_row).transpose()
}

pub async fn booking_by_id(pool: &PgPool, id: Uuid) -> Result<Option<Booking>, BookingError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(booking_from_row).transpose()
}

pub async fn list_bookings(
    pool: &PgPool,
    user_id: Uuid,
    status: Option<BookingStatus>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Booking>, BookingError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings
         WHERE user_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(user_id)
    .bind(status.map(BookingStatus::as_str))
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(booking_from_row).collect()
}

pub async fn outbox_depth(pool: &PgPool) -> Result<u64, BookingError> {
    let depth: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(depth).unwrap_or(0))
}

/// The sales report's rows of one concert; `None` when Booking does not sell it.
pub async fn sales(pool: &PgPool, concert_id: Uuid) -> Result<Option<SalesRows>, BookingError> {
    let exists = sqlx::query("SELECT 1 FROM sales WHERE concert_id = $1")
        .bind(concert_id)
        .fetch_optional(pool)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let seats = sqlx::query(
        "SELECT id, name, capacity, remaining, price_cents, currency FROM seat_types
         WHERE concert_id = $1 ORDER BY position",
    )
    .bind(concert_id)
    .fetch_all(pool)
    .await?;
    let counts = sqlx::query(
        "SELECT status, count(*) AS n FROM bookings WHERE concert_id = $1 GROUP BY status",
    )
    .bind(concert_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(sales_from_rows(&seats, &counts)?))
}

/// Concerts and seat types as read from the store, with the version of each row.
pub struct Snapshot {
    pub inventory: Inventory,
    pub versions: Versions,
}

/// The `version` of each `sales` and `seat_types` row (see [`super::view::PgView`]).
#[derive(Debug, Default)]
pub struct Versions {
    pub concerts: HashMap<Uuid, i64>,
    pub seats: HashMap<Uuid, i64>,
}

/// The whole view, or only the given concerts, read from the store.
pub async fn load_inventory(
    pool: &PgPool,
    only: Option<&[Uuid]>,
) -> Result<Snapshot, BookingError> {
    let only: Option<Vec<Uuid>> = only.map(<[Uuid]>::to_vec);
    let mut inventory = Inventory::default();
    let mut versions = Versions::default();
    let concerts = sqlx::query(
        "SELECT concert_id, name, venue, starts_at, cancelled_at, version FROM sales
         WHERE $1::uuid[] IS NULL OR concert_id = ANY($1)",
    )
    .bind(&only)
    .fetch_all(pool)
    .await?;
    for row in &concerts {
        let id: Uuid = row.try_get("concert_id")?;
        versions.concerts.insert(id, row.try_get("version")?);
        inventory.concerts.insert(id, sale_from_row(row)?);
    }
    let seats = sqlx::query(
        "SELECT id, concert_id, name, price_cents, currency, capacity, remaining, version
         FROM seat_types
         WHERE $1::uuid[] IS NULL OR concert_id = ANY($1) ORDER BY position",
    )
    .bind(&only)
    .fetch_all(pool)
    .await?;
    for row in &seats {
        let id: Uuid = row.try_get("id")?;
        let seat = seat_from_row(row)?;
        if let Some(concert) = inventory.concerts.get_mut(&seat.concert_id) {
            concert.seat_types.push(id);
        }
        versions.seats.insert(id, row.try_get("version")?);
        inventory.seats.insert(id, seat);
    }
    Ok(Snapshot {
        inventory,
        versions,
    })
}

/// A sale window from its `name, venue, starts_at, cancelled_at`, without its seat types.
pub fn sale_from_row(row: &PgRow) -> Result<ConcertSale, sqlx::Error> {
    Ok(ConcertSale {
        name: row.try_get("name")?,
        venue: row.try_get("venue")?,
        starts_at: row.try_get("starts_at")?,
        cancelled: row
            .try_get::<Option<OffsetDateTime>, _>("cancelled_at")?
            .is_some(),
        seat_types: Vec::new(),
    })
}

/// A seat type from its columns.
pub fn seat_from_row(row: &PgRow) -> Result<Seat, sqlx::Error> {
    Ok(Seat {
        concert_id: row.try_get("concert_id")?,
        name: row.try_get("name")?,
        price_cents: row.try_get("price_cents")?,
        currency: row.try_get("currency")?,
        capacity: row.try_get("capacity")?,
        remaining: row.try_get("remaining")?,
    })
}
