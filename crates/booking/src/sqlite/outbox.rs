//! The outbox on SQLite: claimed, acknowledged and retried by the writer, inside its batches, since
//! it holds the only write connection.

use boxoffice_shared::clients::{BookingEmail, EmailKind, OutboxMessage};
use boxoffice_shared::clock::{from_millis, to_millis};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{email_date, email_payment, missing_booking, outbox_kind, queued_email};
use crate::error::BookingError;

/// Leases up to `limit` due messages until `lease_until`, with what each email says: read from
/// the booking, its concert and its seat type as they are now (a rescheduled concert is mailed
/// with its new start), or, for a message queued before emails were queued by reference, from
/// the payload it was queued with.
pub fn claim_outbox(
    conn: &Connection,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: u32,
) -> Result<Vec<OutboxMessage>, BookingError> {
    let mut statement = conn.prepare_cached(
        "UPDATE outbox SET available_at = ?1, attempts = attempts + 1, leased = 1
         WHERE message_id IN (
            SELECT message_id FROM outbox
            WHERE sent_at IS NULL AND available_at <= ?2
            ORDER BY available_at LIMIT ?3)
         RETURNING message_id, kind, booking_id, payload, attempts",
    )?;
    let rows = statement.query_map(
        params![to_millis(lease_until), to_millis(now), i64::from(limit)],
        |row| {
            Ok((
                row.get::<_, Uuid>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<Uuid>>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, i64>(4)?,
            ))
        },
    )?;
    let claimed = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    let mut messages = Vec::with_capacity(claimed.len());
    for (message_id, kind, booking_id, payload, attempts) in claimed {
        let kind = outbox_kind(&kind)?;
        let booking = queued_email(message_id, booking_id, payload.as_deref(), |booking_id| {
            booking_email(conn, booking_id, kind)
        })?;
        messages.push(OutboxMessage {
            message_id,
            kind,
            attempts: u32::try_from(attempts.saturating_sub(1)).unwrap_or(0),
            booking,
        });
    }
    Ok(messages)
}

/// What an email about `booking_id` says, read from the store. A confirmation is dated when the
/// booking was made, a cancellation when it was cancelled.
fn booking_email(
    conn: &Connection,
    booking_id: Uuid,
    kind: EmailKind,
) -> Result<BookingEmail, BookingError> {
    let (email, created_at, cancelled_at) = conn
        .prepare_cached(
            "SELECT b.user_id, b.concert_id, s.name, s.venue, s.starts_at, t.name, b.price_cents,
                    b.currency, b.created_at, b.cancelled_at, s.artist, s.time_zone,
                    b.payment_provider, b.amount_cents
             FROM bookings AS b
             JOIN sales AS s ON s.concert_id = b.concert_id
             JOIN seat_types AS t ON t.id = b.seat_type_id
             WHERE b.id = ?1",
        )?
        .query_row(params![booking_id], |row| {
            let created_at = from_millis(row.get(8)?);
            Ok((
                BookingEmail {
                    booking_id,
                    user_id: row.get(0)?,
                    concert_id: row.get(1)?,
                    concert_name: row.get(2)?,
                    artist: row.get(10)?,
                    venue: row.get(3)?,
                    time_zone: row.get(11)?,
                    starts_at: from_millis(row.get(4)?),
                    seat_type_name: row.get(5)?,
                    price_cents: row.get(6)?,
                    currency: row.get(7)?,
                    at: created_at,
                    payment: email_payment(row.get(12)?, row.get(13)?),
                    ticket_code: None,
                },
                created_at,
                row.get::<_, Option<i64>>(9)?.map(from_millis),
            ))
        })
        .optional()?
        .ok_or_else(|| missing_booking(booking_id))?;
    let at = email_date(booking_id, kind, created_at, cancelled_at)?;
    Ok(BookingEmail { at, ..email })
}

/// Marks the messages sent, inside the writer's transaction: one statement run per id, one
/// commit for all of them.
pub fn acknowledge_outbox(
    conn: &Connection,
    message_ids: &[Uuid],
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let mut statement = conn.prepare_cached("UPDATE outbox SET sent_at = ?1, last_error = NULL, leased = 0 WHERE message_id = ?2 AND sent_at IS NULL")?;
    for message_id in message_ids {
        statement.execute(params![to_millis(now), message_id])?;
    }
    Ok(())
}

pub fn retry_outbox(
    conn: &Connection,
    message_id: Uuid,
    retry_at: OffsetDateTime,
    error: &str,
) -> Result<(), BookingError> {
    conn.prepare_cached("UPDATE outbox SET available_at = ?1, last_error = ?2, leased = 0 WHERE message_id = ?3 AND sent_at IS NULL")?
        .execute(params![to_millis(retry_at), error, message_id])?;
    Ok(())
}

/// Makes messages leased by a worker of a previous run of this process due again at once: that
/// worker died with the process (a crash), so its leases would otherwise delay the emails until
/// they ran out. Returns how many were released.
pub fn release_leases(conn: &Connection, now: OffsetDateTime) -> Result<usize, BookingError> {
    Ok(conn.execute(
        "UPDATE outbox SET available_at = ?1, leased = 0
         WHERE leased = 1 AND sent_at IS NULL AND available_at > ?1",
        params![to_millis(now)],
    )?)
}
