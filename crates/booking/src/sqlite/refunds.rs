//! The refund queue on SQLite: claimed, marked refunded and retried by the writer, inside its
//! batches, since it holds the only write connection.

use boxoffice_shared::clock::to_millis;
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::command::Refund;
use crate::domain::Booking;
use crate::error::BookingError;

/// Leases up to `limit` due refunds until `lease_until`.
pub fn claim(
    conn: &Connection,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: u32,
) -> Result<Vec<Refund>, BookingError> {
    let mut statement = conn.prepare_cached(
        "UPDATE refunds SET available_at = ?1, attempts = attempts + 1
         WHERE id IN (
            SELECT id FROM refunds
            WHERE refunded_at IS NULL AND available_at <= ?2
            ORDER BY available_at LIMIT ?3)
         RETURNING id, payment_ref, amount_cents, attempts",
    )?;
    let rows = statement.query_map(
        params![to_millis(lease_until), to_millis(now), i64::from(limit)],
        |row| {
            Ok(Refund {
                id: row.get(0)?,
                payment_ref: row.get(1)?,
                amount_cents: row.get(2)?,
                attempts: u32::try_from(row.get::<_, i64>(3)?).unwrap_or(u32::MAX),
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Marks a refund given back by the provider, and the payment refunded where it shows: on the
/// hold it was taken for, or on the booking (and the hold that became it).
pub fn done(conn: &Connection, id: Uuid, now: OffsetDateTime) -> Result<(), BookingError> {
    let paid_for: Option<(Option<Uuid>, Option<Uuid>)> = conn
        .prepare_cached(
            "UPDATE refunds SET refunded_at = ?1, last_error = NULL
             WHERE id = ?2 AND refunded_at IS NULL RETURNING hold_id, booking_id",
        )?
        .query_row(params![to_millis(now), id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let Some((hold_id, booking_id)) = paid_for else {
        return Ok(());
    };
    conn.prepare_cached(
        "UPDATE holds SET payment_status = 'refunded' WHERE id = ?1 OR booking_id = ?2",
    )?
    .execute(params![hold_id, booking_id])?;
    conn.prepare_cached("UPDATE bookings SET payment_status = 'refunded' WHERE id = ?1")?
        .execute(params![booking_id])?;
    Ok(())
}

/// Makes a refund due again at `retry_at`, noting why the provider did not take it.
pub fn retry(
    conn: &Connection,
    id: Uuid,
    retry_at: OffsetDateTime,
    error: &str,
) -> Result<(), BookingError> {
    conn.prepare_cached("UPDATE refunds SET available_at = ?1, last_error = ?2 WHERE id = ?3")?
        .execute(params![to_millis(retry_at), error, id])?;
    Ok(())
}

/// Queues the refund of every paid booking among `cancelled`, in the cancellation's transaction.
pub fn queue_for_bookings(
    conn: &Connection,
    cancelled: &[Booking],
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO refunds (id, booking_id, provider, payment_ref, amount_cents, currency,
                              created_at, available_at)
         SELECT ?1, id, payment_provider, payment_ref, amount_cents, currency, ?2, ?2
         FROM bookings WHERE id = ?3 AND payment_status = 'succeeded'
         ON CONFLICT (payment_ref) DO NOTHING",
    )?;
    for booking in cancelled.iter().filter(|booking| booking.payment.is_some()) {
        insert.execute(params![Uuid::now_v7(), to_millis(now), booking.id])?;
    }
    Ok(())
}
