//! The PostgreSQL store's own reads, on the pool: a page of bookings, and the inventory the view
//! is loaded from (with each row's version, see [`super::view::PgView`]); the reads both engines
//! make alike are in [`crate::rows`].

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Booking, BookingStatus, BookingsOf, waiting_room_from_columns};
use crate::error::BookingError;
use crate::hold::{Hold, HoldStatus};
use crate::rows::{booking_columns, booking_from_row, hold_columns, hold_from_row};
use crate::view::{ConcertSale, Inventory, Seat};

/// One page of a user's or a concert's bookings, newest first, strictly older than `before`
/// when given.
pub async fn list_bookings(
    pool: &PgPool,
    of: BookingsOf,
    status: Option<BookingStatus>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Booking>, BookingError> {
    macro_rules! page_of {
        ($column:literal) => {
            concat!(
                "SELECT ",
                booking_columns!(),
                " FROM bookings
                 WHERE ",
                $column,
                " = $1
                   AND ($2::text IS NULL OR status = $2)
                   AND ($3::uuid IS NULL OR id < $3)
                 ORDER BY id DESC LIMIT $4"
            )
        };
    }
    let (query, id) = match of {
        BookingsOf::User(id) => (page_of!("user_id"), id),
        BookingsOf::Concert(id) => (page_of!("concert_id"), id),
    };
    let rows = sqlx::query(query)
        .bind(id)
        .bind(status.map(BookingStatus::as_str))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(booking_from_row).collect()
}

/// One page of a user's holds, newest first, strictly older than `before` when given, with
/// `status` as it stands at `now`: an active hold at or past its expiry counts as expired.
pub async fn list_holds(
    pool: &PgPool,
    user_id: Uuid,
    status: Option<HoldStatus>,
    before: Option<Uuid>,
    limit: u32,
    now: OffsetDateTime,
) -> Result<Vec<Hold>, BookingError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        hold_columns!(),
        " FROM holds
         WHERE user_id = $1
           AND ($2::text IS NULL
                OR (CASE WHEN status = 'active' AND expires_at <= $5 THEN 'expired'
                         ELSE status END) = $2)
           AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(user_id)
    .bind(status.map(HoldStatus::as_str))
    .bind(before)
    .bind(i64::from(limit))
    .bind(now)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| hold_from_row(row).map(|hold| hold.as_of(now)))
        .collect()
}

/// The sales report's seat types of concert `$1`, in the order they were added.
pub const SALES_SEATS: &str = "SELECT id, name, capacity, remaining, price_cents, currency,
            (SELECT count(*) FROM holds h
             WHERE h.seat_type_id = seat_types.id AND h.status = 'active') AS held,
            (SELECT coalesce(sum(r.amount_cents), 0)::int8 FROM refunds r
             LEFT JOIN bookings b ON b.id = r.booking_id
             LEFT JOIN holds h ON h.id = r.hold_id
             WHERE coalesce(b.seat_type_id, h.seat_type_id) = seat_types.id
               AND r.refunded_at IS NOT NULL) AS refunded_cents
     FROM seat_types WHERE concert_id = $1 ORDER BY position";

/// A concert's confirmed bookings per UTC day they were made.
pub const SALES_BY_DAY: &str =
    "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*)::int8 AS n
     FROM bookings WHERE concert_id = $1 AND status = 'confirmed' GROUP BY day ORDER BY day";

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
        "SELECT concert_id, name, venue, starts_at, cancelled_at, sales_open_at,
                waiting_room_admit_per_minute, waiting_room_admission_ttl_seconds, version
         FROM sales
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
    inventory.next_hold_expiry =
        sqlx::query_scalar("SELECT min(expires_at) FROM holds WHERE status = 'active'")
            .fetch_one(pool)
            .await?;
    Ok(Snapshot {
        inventory,
        versions,
    })
}

/// The `sales` columns [`sale_from_row`] reads, as a literal so that queries stay `&'static str`.
macro_rules! sale_columns {
    () => {
        "name, venue, starts_at, cancelled_at, sales_open_at, \
         waiting_room_admit_per_minute, waiting_room_admission_ttl_seconds"
    };
}
pub(crate) use sale_columns;

/// A sale window from the columns of [`sale_columns!`], without its seat types.
pub fn sale_from_row(row: &PgRow) -> Result<ConcertSale, sqlx::Error> {
    let setting = |column: &str| {
        row.try_get::<Option<i32>, _>(column)
            .map(|value| value.map(i64::from))
    };
    Ok(ConcertSale {
        name: row.try_get("name")?,
        venue: row.try_get("venue")?,
        starts_at: row.try_get("starts_at")?,
        opens_at: row.try_get("sales_open_at")?,
        waiting_room: waiting_room_from_columns(
            setting("waiting_room_admit_per_minute")?,
            setting("waiting_room_admission_ttl_seconds")?,
        )
        .map_err(|error| sqlx::Error::Decode(error.to_string().into()))?,
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

/// Locks a concert's sale for a transaction that takes or offers its seats (holds, the waiting list); `None` when Booking does not sell it.
pub async fn lock_sale(
    tx: &mut Transaction<'_, Postgres>,
    concert_id: Uuid,
) -> Result<Option<ConcertSale>, BookingError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        sale_columns!(),
        " FROM sales WHERE concert_id = $1 FOR NO KEY UPDATE"
    ))
    .bind(concert_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(sale_from_row).transpose()?)
}
