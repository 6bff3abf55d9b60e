//! Provisioning, capacity changes and concert cancellations on PostgreSQL: rare, each in a
//! transaction of its own that locks its sale for update first (see [`super::settle`]).

use std::collections::HashSet;

use boxoffice_shared::clients::{ConcertInventory, EmailKind, SeatInventory};
use sqlx::{PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::holds::end_for_concert;
use super::refunds::queue_for_bookings;
use super::statements::{enqueue_emails, ms, notify};
use super::waitlist;
use super::webhooks::enqueue;
use crate::domain::{
    SaleState, check_capacity, check_start, check_waiting_room, sale_state, waiting_room_columns,
};
use crate::error::BookingError;
use crate::rows::{booking_columns, booking_from_row};
use crate::waitlist::OfferTerms;
use crate::webhook::{Subscribed, WebhookEvent};

pub async fn provision(
    pool: &PgPool,
    concert: &ConcertInventory,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    check_start(concert.starts_at, now)?;
    check_waiting_room(concert.waiting_room)?;
    let (admit_per_minute, admission_ttl_seconds) = waiting_room_columns(concert.waiting_room);
    let mut tx = pool.begin().await?;
    let current =
        sqlx::query("SELECT starts_at, cancelled_at FROM sales WHERE concert_id = $1 FOR UPDATE")
            .bind(concert.concert_id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(row) = current {
        let starts_at: OffsetDateTime = row.try_get("starts_at")?;
        let cancelled = row
            .try_get::<Option<OffsetDateTime>, _>("cancelled_at")?
            .is_some();
        if sale_state(now, starts_at, cancelled) != SaleState::Open {
            return Err(BookingError::BookingClosed);
        }
    }
    sqlx::query(
        "INSERT INTO sales (concert_id, name, venue, starts_at, artist, time_zone, sales_open_at,
                            waiting_room_admit_per_minute, waiting_room_admission_ttl_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (concert_id) DO UPDATE SET
            name = excluded.name, venue = excluded.venue, starts_at = excluded.starts_at,
            artist = excluded.artist, time_zone = excluded.time_zone,
            sales_open_at = excluded.sales_open_at,
            waiting_room_admit_per_minute = excluded.waiting_room_admit_per_minute,
            waiting_room_admission_ttl_seconds = excluded.waiting_room_admission_ttl_seconds",
    )
    .bind(concert.concert_id)
    .bind(&concert.name)
    .bind(&concert.venue)
    .bind(ms(concert.starts_at))
    .bind(&concert.artist)
    .bind(&concert.time_zone)
    .bind(concert.sales_open_at.map(ms))
    .bind(admit_per_minute)
    .bind(admission_ttl_seconds)
    .execute(&mut *tx)
    .await?;
    for seat in &concert.seat_types {
        insert_seat_type(&mut tx, concert.concert_id, seat).await?;
    }
    notify(&mut tx, &HashSet::from([concert.concert_id])).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets a seat type's capacity; seats a larger one gives go to its waiting list first. Returns
/// the capacity and what is left for the public.
pub async fn set_capacity(
    pool: &PgPool,
    concert_id: Uuid,
    seat_type_id: Uuid,
    capacity: i64,
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Result<(i64, i64), BookingError> {
    check_capacity(capacity)?;
    let mut tx = pool.begin().await?;
    let (starts_at, cancelled) = lock_sale(&mut tx, concert_id).await?;
    if sale_state(now, starts_at, cancelled) != SaleState::Open {
        return Err(BookingError::BookingClosed);
    }
    let row = sqlx::query(
        "UPDATE seat_types SET remaining = remaining + ($1 - capacity), capacity = $1
         WHERE id = $2 AND remaining + ($1 - capacity) >= 0
         RETURNING capacity, remaining",
    )
    .bind(capacity)
    .bind(seat_type_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        let exists = sqlx::query("SELECT 1 FROM seat_types WHERE id = $1")
            .bind(seat_type_id)
            .fetch_optional(&mut *tx)
            .await?;
        return Err(match exists {
            Some(_) => {
                BookingError::invalid("capacity", "cannot shrink below the seats already sold")
            }
            None => BookingError::SeatTypeNotFound,
        });
    };
    let capacity: i64 = row.try_get("capacity")?;
    let offered = waitlist::hand_on(&mut tx, &[seat_type_id], terms, now, webhooks).await?;
    let remaining: i64 = row.try_get("remaining")?;
    let result = (capacity, remaining - offered as i64);
    notify(&mut tx, &HashSet::from([concert_id])).await?;
    tx.commit().await?;
    Ok(result)
}

/// Returns how many cancellation emails were queued.
pub async fn cancel_concert(
    pool: &PgPool,
    concert_id: Uuid,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Result<usize, BookingError> {
    let mut tx = pool.begin().await?;
    let (starts_at, cancelled) = lock_sale(&mut tx, concert_id).await?;
    if cancelled {
        return Ok(0);
    }
    if sale_state(now, starts_at, false) == SaleState::Started {
        return Err(BookingError::BookingClosed);
    }
    // Lock the seat types in id order, like every batch does, before touching bookings.
    sqlx::query("SELECT id FROM seat_types WHERE concert_id = $1 ORDER BY id FOR UPDATE")
        .bind(concert_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE sales SET cancelled_at = $1 WHERE concert_id = $2")
        .bind(now)
        .bind(concert_id)
        .execute(&mut *tx)
        .await?;
    // The waiting lists end first, so that their offered holds' release reads as their end.
    waitlist::end_for_concert(&mut tx, concert_id, now).await?;
    end_for_concert(&mut tx, concert_id, now).await?;
    let cancelled = sqlx::query(concat!(
        "UPDATE bookings SET status = 'cancelled', cancelled_at = $1
         WHERE concert_id = $2 AND status = 'confirmed' RETURNING ",
        booking_columns!()
    ))
    .bind(now)
    .bind(concert_id)
    .fetch_all(&mut *tx)
    .await?;
    let cancelled = cancelled
        .iter()
        .map(booking_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let emails: Vec<(EmailKind, Uuid)> = cancelled
        .iter()
        .map(|booking| (EmailKind::BookingCancelled, booking.id))
        .collect();
    enqueue_emails(&mut tx, &emails, now).await?;
    let events = cancelled
        .iter()
        .map(|b| (WebhookEvent::BookingCancelled, b.id));
    enqueue(&mut tx, webhooks, events, now).await?;
    queue_for_bookings(&mut tx, cancelled.iter(), now).await?;
    notify(&mut tx, &HashSet::from([concert_id])).await?;
    tx.commit().await?;
    Ok(emails.len())
}

/// `(starts_at, cancelled)` of a concert's sale, locked for the transaction.
async fn lock_sale(
    tx: &mut Transaction<'_, Postgres>,
    concert_id: Uuid,
) -> Result<(OffsetDateTime, bool), BookingError> {
    let row =
        sqlx::query("SELECT starts_at, cancelled_at FROM sales WHERE concert_id = $1 FOR UPDATE")
            .bind(concert_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(BookingError::ConcertNotFound)?;
    Ok((
        row.try_get("starts_at")?,
        row.try_get::<Option<OffsetDateTime>, _>("cancelled_at")?
            .is_some(),
    ))
}

async fn insert_seat_type(
    tx: &mut Transaction<'_, Postgres>,
    concert_id: Uuid,
    seat: &SeatInventory,
) -> Result<(), BookingError> {
    sqlx::query(
        "INSERT INTO seat_types (id, concert_id, name, price_cents, currency, capacity, remaining)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(seat.seat_type_id)
    .bind(concert_id)
    .bind(&seat.name)
    .bind(seat.price_cents)
    .bind(&seat.currency)
    .bind(seat.capacity)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
