//! The outbox on PostgreSQL: workers in any process claim with `SKIP LOCKED`, so they never take
//! the same message; none of it goes through the writer.

use boxoffice_shared::clients::{BookingEmail, EmailKind, OutboxMessage};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::statements::ms;
use crate::domain::{email_date, email_payment, missing_booking, outbox_kind, queued_email};
use crate::error::BookingError;

/// Leases up to `limit` due messages until `lease_until`, with what each email says: read from
/// the booking, its concert and its seat type as they are now, or, for a message queued before
/// emails were queued by reference, from the payload it was queued with.
pub async fn claim_outbox(
    pool: &PgPool,
    owner: Option<Uuid>,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: u32,
) -> Result<Vec<OutboxMessage>, BookingError> {
    let rows = sqlx::query(
        "WITH claimed AS (
            UPDATE outbox SET available_at = $1, attempts = attempts + 1, leased = true, leased_by = $4
            WHERE message_id IN (
                SELECT message_id FROM outbox
                WHERE sent_at IS NULL AND available_at <= $2
                ORDER BY available_at LIMIT $3
                FOR UPDATE SKIP LOCKED)
            RETURNING message_id, kind, booking_id, payload, attempts)
         SELECT c.message_id, c.kind, c.booking_id, c.payload, c.attempts,
                b.user_id, b.concert_id, s.name AS concert_name, s.artist, s.venue, s.time_zone,
                s.starts_at,
                t.name AS seat_type_name, b.price_cents, b.currency, b.created_at, b.cancelled_at,
                b.payment_provider, b.amount_cents
         FROM claimed AS c
         LEFT JOIN bookings AS b ON b.id = c.booking_id
         LEFT JOIN sales AS s ON s.concert_id = b.concert_id
         LEFT JOIN seat_types AS t ON t.id = b.seat_type_id",
    )
    .bind(ms(lease_until))
    .bind(ms(now))
    .bind(i64::from(limit))
    .bind(owner)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let message_id: Uuid = row.try_get("message_id")?;
            let kind = outbox_kind(row.try_get("kind")?)?;
            let attempts: i32 = row.try_get("attempts")?;
            let payload: Option<&str> = row.try_get("payload")?;
            let booking = queued_email(
                message_id,
                row.try_get("booking_id")?,
                payload,
                |booking_id| claimed_email(row, booking_id, kind),
            )?;
            Ok(OutboxMessage {
                message_id,
                kind,
                attempts: u32::try_from(attempts.saturating_sub(1)).unwrap_or(0),
                booking,
            })
        })
        .collect()
}

/// The email a claimed row names, from the booking, concert and seat type joined to it.
fn claimed_email(
    row: &PgRow,
    booking_id: Uuid,
    kind: EmailKind,
) -> Result<BookingEmail, BookingError> {
    let at = email_date(
        booking_id,
        kind,
        joined(row, "created_at", booking_id)?,
        row.try_get("cancelled_at")?,
    )?;
    Ok(BookingEmail {
        booking_id,
        user_id: joined(row, "user_id", booking_id)?,
        concert_id: joined(row, "concert_id", booking_id)?,
        concert_name: joined(row, "concert_name", booking_id)?,
        artist: joined(row, "artist", booking_id)?,
        venue: joined(row, "venue", booking_id)?,
        time_zone: joined(row, "time_zone", booking_id)?,
        starts_at: joined(row, "starts_at", booking_id)?,
        seat_type_name: joined(row, "seat_type_name", booking_id)?,
        price_cents: joined(row, "price_cents", booking_id)?,
        currency: joined(row, "currency", booking_id)?,
        at,
        payment: email_payment(
            row.try_get("payment_provider")?,
            row.try_get("amount_cents")?,
        ),
        ticket_code: None,
    })
}

/// A column of the claim's outer join to the booking: NULL only when the store has no such booking.
fn joined<'r, T>(row: &'r PgRow, column: &str, booking_id: Uuid) -> Result<T, BookingError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get::<Option<T>, _>(column)?
        .ok_or_else(|| missing_booking(booking_id))
}

/// Makes the messages leased by `owner`'s worker due again at once: called when that instance
/// starts, so the leases are those of its previous run, which died with its process.
pub async fn release_leases(
    pool: &PgPool,
    owner: Uuid,
    now: OffsetDateTime,
) -> Result<u64, BookingError> {
    let released = sqlx::query(
        "UPDATE outbox SET available_at = $1, leased = false, leased_by = NULL
         WHERE leased AND leased_by = $2 AND sent_at IS NULL AND available_at > $1",
    )
    .bind(ms(now))
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(released.rows_affected())
}

pub async fn acknowledge_outbox(
    pool: &PgPool,
    message_ids: &[Uuid],
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    sqlx::query(
        "UPDATE outbox SET sent_at = $1, last_error = NULL, leased = false
         WHERE message_id = ANY($2) AND sent_at IS NULL",
    )
    .bind(ms(now))
    .bind(message_ids)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn retry_outbox(
    pool: &PgPool,
    message_id: Uuid,
    retry_at: OffsetDateTime,
    error: &str,
) -> Result<(), BookingError> {
    sqlx::query(
        "UPDATE outbox SET available_at = $1, last_error = $2, leased = false
         WHERE message_id = $3 AND sent_at IS NULL",
    )
    .bind(ms(retry_at))
    .bind(error)
    .bind(message_id)
    .execute(pool)
    .await?;
    Ok(())
}
