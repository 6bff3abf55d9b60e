//! The refund queue on PostgreSQL: workers in any instance claim with `SKIP LOCKED`, so they
//! never hand the same refund to the provider at once; none of it goes through the writer.

use sqlx::{PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::statements::ms;
use crate::command::Refund;
use crate::domain::Booking;
use crate::error::BookingError;

/// Leases up to `limit` due refunds until `lease_until`.
pub async fn claim(
    pool: &PgPool,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: u32,
) -> Result<Vec<Refund>, BookingError> {
    let rows = sqlx::query(
        "UPDATE refunds SET available_at = $1, attempts = attempts + 1
         WHERE id IN (
            SELECT id FROM refunds
            WHERE refunded_at IS NULL AND available_at <= $2
            ORDER BY available_at LIMIT $3
            FOR UPDATE SKIP LOCKED)
         RETURNING id, payment_ref, amount_cents, attempts",
    )
    .bind(ms(lease_until))
    .bind(ms(now))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Refund {
                id: row.try_get("id")?,
                payment_ref: row.try_get("payment_ref")?,
                amount_cents: row.try_get("amount_cents")?,
                attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(u32::MAX),
            })
        })
        .collect()
}

/// Marks a refund given back by the provider, and the payment refunded where it shows: on the
/// hold it was taken for, or on the booking (and the hold that became it). Locks the hold before
/// the refund, in the order a payment's transaction takes them (it locks the hold, then may queue
/// a refund of the same payment), so the two never deadlock.
pub async fn done(pool: &PgPool, id: Uuid, now: OffsetDateTime) -> Result<(), BookingError> {
    let mut tx = pool.begin().await?;
    let paid_for: Option<(Option<Uuid>, Option<Uuid>)> =
        sqlx::query_as("SELECT hold_id, booking_id FROM refunds WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((hold_id, booking_id)) = paid_for else {
        return Ok(());
    };
    sqlx::query("UPDATE holds SET payment_status = 'refunded' WHERE id = $1 OR booking_id = $2")
        .bind(hold_id)
        .bind(booking_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE bookings SET payment_status = 'refunded' WHERE id = $1")
        .bind(booking_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE refunds SET refunded_at = $2, last_error = NULL
         WHERE id = $1 AND refunded_at IS NULL",
    )
    .bind(id)
    .bind(ms(now))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Makes a refund due again at `retry_at`, noting why the provider did not take it.
pub async fn retry(
    pool: &PgPool,
    id: Uuid,
    retry_at: OffsetDateTime,
    error: &str,
) -> Result<(), BookingError> {
    sqlx::query("UPDATE refunds SET available_at = $1, last_error = $2 WHERE id = $3")
        .bind(ms(retry_at))
        .bind(error)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Queues the refund of every paid booking among `cancelled`, in the cancellation's transaction:
/// one statement.
pub async fn queue_for_bookings<'b>(
    tx: &mut Transaction<'_, Postgres>,
    cancelled: impl Iterator<Item = &'b Booking>,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let bookings: Vec<Uuid> = cancelled
        .filter(|booking| booking.payment.is_some())
        .map(|booking| booking.id)
        .collect();
    if bookings.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = bookings.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO refunds (id, booking_id, provider, payment_ref, amount_cents, currency,
                              created_at, available_at)
         SELECT q.i, b.id, b.payment_provider, b.payment_ref, b.amount_cents, b.currency, $3, $3
         FROM UNNEST($1::uuid[], $2::uuid[]) AS q(i, b_id)
         JOIN bookings b ON b.id = q.b_id
         WHERE b.payment_status = 'succeeded'
         ON CONFLICT (payment_ref) DO NOTHING",
    )
    .bind(&ids)
    .bind(&bookings)
    .bind(ms(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
