//! The refund queue on PostgreSQL: workers in any instance claim with `SKIP LOCKED`, so they
//! never hand the same refund to the provider at once; none of it goes through the writer.

use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::statements::ms;
use crate::command::Refund;
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
         RETURNING id, hold_id, payment_ref, amount_cents, attempts",
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
                hold_id: row.try_get("hold_id")?,
                payment_ref: row.try_get("payment_ref")?,
                amount_cents: row.try_get("amount_cents")?,
                attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(u32::MAX),
            })
        })
        .collect()
}

/// Marks a refund given back by the provider, and its hold's payment refunded. Locks the hold
/// before the refund, in the order a payment's transaction takes them (it locks the hold, then
/// may queue a refund of the same payment), so the two never deadlock.
pub async fn done(pool: &PgPool, id: Uuid, now: OffsetDateTime) -> Result<(), BookingError> {
    let mut tx = pool.begin().await?;
    let hold_id: Option<Uuid> = sqlx::query_scalar("SELECT hold_id FROM refunds WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(hold_id) = hold_id else {
        return Ok(());
    };
    sqlx::query("UPDATE holds SET payment_status = 'refunded' WHERE id = $1")
        .bind(hold_id)
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
