//! The refund queue on SQLite: claimed, marked refunded and retried by the writer, inside its
//! batches, since it holds the only write connection.

use boxoffice_shared::clock::to_millis;
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::command::Refund;
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
         RETURNING id, hold_id, payment_ref, amount_cents, attempts",
    )?;
    let rows = statement.query_map(
        params![to_millis(lease_until), to_millis(now), i64::from(limit)],
        |row| {
            Ok(Refund {
                id: row.get(0)?,
                hold_id: row.get(1)?,
                payment_ref: row.get(2)?,
                amount_cents: row.get(3)?,
                attempts: u32::try_from(row.get::<_, i64>(4)?).unwrap_or(u32::MAX),
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Marks a refund given back by the provider, and its hold's payment refunded.
pub fn done(conn: &Connection, id: Uuid, now: OffsetDateTime) -> Result<(), BookingError> {
    let hold_id: Option<Uuid> = conn
        .prepare_cached(
            "UPDATE refunds SET refunded_at = ?1, last_error = NULL
             WHERE id = ?2 AND refunded_at IS NULL RETURNING hold_id",
        )?
        .query_row(params![to_millis(now), id], |row| row.get(0))
        .optional()?;
    if let Some(hold_id) = hold_id {
        conn.prepare_cached("UPDATE holds SET payment_status = 'refunded' WHERE id = ?1")?
            .execute(params![hold_id])?;
    }
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
