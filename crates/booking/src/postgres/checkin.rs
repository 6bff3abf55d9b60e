//! Check-ins as the PostgreSQL store makes them, on the pool, outside the writer: the ticket is
//! read, the door's rule ([`crate::checkin::decide`]) applied, and the check-in inserted with
//! `ON CONFLICT DO NOTHING`. The primary key settles a race between doors of every instance: an
//! insert that finds the ticket checked in already lost it, and the ticket is read again, so
//! that the winner's check-in is the answer. The schema's trigger refuses a cancelled booking.

use sqlx::PgPool;
use time::OffsetDateTime;

use super::statements::{constraint_to_rule, ms};
use super::webhooks::enqueue;
use crate::checkin::{CheckedIn, Decision, Scan, decide};
use crate::error::BookingError;
use crate::rows;
use crate::webhook::{Subscribed, WebhookEvent};

/// Decides `scan` and, when it admits, checks the ticket in at `now`.
pub async fn check_in(
    pool: &PgPool,
    scan: &Scan,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Result<CheckedIn, BookingError> {
    let now = ms(now);
    // The second read always finds the check-in that beat this one.
    for _ in 0..2 {
        let ticket = rows::ticket_row(pool, scan.booking_id).await?;
        match decide(ticket.as_ref(), scan)? {
            Decision::Replay(checked_in) => return Ok(checked_in),
            Decision::CheckIn => {
                if insert(pool, scan, now, webhooks).await?
                    && let Some(ticket) = ticket
                {
                    return Ok(CheckedIn {
                        booking_id: ticket.booking_id,
                        user_id: ticket.user_id,
                        seat_type_id: ticket.seat_type_id,
                        checked_in_at: now,
                    });
                }
            }
        }
    }
    Err(BookingError::Corrupt(format!(
        "booking {} is neither checked in nor admitted",
        scan.booking_id
    )))
}

/// Inserts the check-in; `false` when the ticket was checked in already. With a subscriber to
/// `checkin.created`, in a transaction that queues the event too.
async fn insert(
    pool: &PgPool,
    scan: &Scan,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Result<bool, BookingError> {
    if webhooks.contains(WebhookEvent::CheckinCreated) {
        let mut tx = pool.begin().await?;
        let inserted = insert_on(&mut *tx, scan, now).await?;
        if inserted {
            let event = (WebhookEvent::CheckinCreated, scan.booking_id);
            enqueue(&mut tx, webhooks, [event], now).await?;
        }
        tx.commit().await?;
        return Ok(inserted);
    }
    insert_on(pool, scan, now).await
}

async fn insert_on<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    scan: &Scan,
    now: OffsetDateTime,
) -> Result<bool, BookingError> {
    let inserted = sqlx::query(
        "INSERT INTO checkins (booking_id, checked_in_at, nonce, scanned_by)
         VALUES ($1, $2, $3, $4) ON CONFLICT (booking_id) DO NOTHING",
    )
    .bind(scan.booking_id)
    .bind(now)
    .bind(scan.nonce.as_deref())
    .bind(scan.scanned_by)
    .execute(executor)
    .await
    .map_err(constraint_to_rule)?;
    Ok(inserted.rows_affected() == 1)
}
