//! The SQL that several jobs of the PostgreSQL store share: queueing emails, notifying the other
//! instances, and mapping the schema's refusals.

use std::collections::HashSet;

use boxoffice_shared::clients::EmailKind;
use boxoffice_shared::clock::{from_millis, to_millis};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::BookingError;

/// The notification channel on which every commit names the concerts it touched.
pub const CHANNEL: &str = "booking_inventory";

/// Instants are kept with millisecond precision on both engines.
pub fn ms(at: OffsetDateTime) -> OffsetDateTime {
    from_millis(to_millis(at))
}

/// Queues one email per `(kind, booking)`, by reference: what it says is read when it is claimed
/// ([`super::outbox::claim_outbox`]).
pub async fn enqueue_emails(
    tx: &mut Transaction<'_, Postgres>,
    emails: &[(EmailKind, Uuid)],
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    if emails.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(emails.len());
    let mut kinds = Vec::with_capacity(emails.len());
    let mut bookings = Vec::with_capacity(emails.len());
    for (kind, booking_id) in emails {
        ids.push(Uuid::now_v7());
        kinds.push(kind.as_str());
        bookings.push(*booking_id);
    }
    sqlx::query(
        "INSERT INTO outbox (message_id, kind, booking_id, created_at, available_at)
         SELECT m, k, b, $4, $4 FROM UNNEST($1::uuid[], $2::text[], $3::uuid[]) AS r(m, k, b)",
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&bookings)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `concerts` notified as changed by the writer of `origin` (this process), whose view holds the
/// change already: its own listener skips them ([`notified_concert`]), every other instance
/// reloads them.
pub async fn notify_from(
    tx: &mut Transaction<'_, Postgres>,
    concerts: &HashSet<Uuid>,
    origin: Uuid,
) -> Result<(), BookingError> {
    if concerts.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = concerts.iter().map(Uuid::to_string).collect();
    sqlx::query("SELECT pg_notify($1, c || '/' || $3) FROM UNNEST($2::text[]) AS c")
        .bind(CHANNEL)
        .bind(&ids)
        .bind(origin.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The concert a notification's payload names for the listener of `origin` to reload: `None`
/// for one `origin`'s own writer sent ([`notify_from`]) or a payload that names no concert.
pub fn notified_concert(payload: &str, origin: Uuid) -> Option<Uuid> {
    match payload.split_once('/') {
        Some((concert, from)) if from.parse::<Uuid>().ok() != Some(origin) => concert.parse().ok(),
        Some(_) => None,
        None => payload.parse().ok(),
    }
}

pub async fn notify(
    tx: &mut Transaction<'_, Postgres>,
    concerts: &HashSet<Uuid>,
) -> Result<(), BookingError> {
    if concerts.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = concerts.iter().map(Uuid::to_string).collect();
    sqlx::query("SELECT pg_notify($1, c) FROM UNNEST($2::text[]) AS c")
        .bind(CHANNEL)
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deadlocks and serialization failures: the batch may simply run again.
pub fn retryable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// The schema's refusals as booking rules (the code decides first; these are the backstop).
pub fn constraint_to_rule(error: sqlx::Error) -> BookingError {
    if let sqlx::Error::Database(db) = &error {
        if db.constraint() == Some("remaining_within_capacity") {
            return BookingError::SoldOut;
        }
        if db.message().contains("booking_closed") {
            return BookingError::BookingClosed;
        }
        if db.message().contains("sales_not_open") {
            return BookingError::SalesNotOpen;
        }
        if db.message().contains("hold_not_active") {
            return BookingError::HoldNotActive;
        }
        if db.message().contains("ticket_cancelled") {
            return BookingError::TicketCancelled;
        }
        if db.message().contains("seat_type_not_found") {
            return BookingError::SeatTypeNotFound;
        }
        if db.message().contains("seats_available") {
            return BookingError::SeatsAvailable;
        }
        if db.message().contains("already_waitlisted")
            || db.constraint() == Some("one_place_per_user_and_concert")
        {
            return BookingError::AlreadyWaitlisted;
        }
        if db.message().contains("already_booked")
            || matches!(
                db.constraint(),
                Some(
                    "one_active_hold_per_user_and_concert"
                        | "one_confirmed_booking_per_user_and_concert"
                )
            )
        {
            return BookingError::AlreadyBooked;
        }
    }
    BookingError::Store(error)
}

/// Takes a transaction-scoped advisory lock on each `(user, Idempotency-Key)`, in one order in
/// every instance: a retry that another instance is settling at this moment has either committed
/// its answer or waits for this transaction. A hash collision only makes two unrelated keys wait
/// for each other.
pub async fn lock_keys<'k>(
    tx: &mut Transaction<'_, Postgres>,
    keys: impl Iterator<Item = (Uuid, &'k str)>,
) -> Result<(), BookingError> {
    let mut locks: Vec<i64> = keys
        .map(|(user_id, key)| {
            let digest = Sha256::new()
                .chain_update(b"booking idempotency key\0")
                .chain_update(user_id.as_bytes())
                .chain_update(key.as_bytes())
                .finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            i64::from_be_bytes(first)
        })
        .collect();
    if locks.is_empty() {
        return Ok(());
    }
    locks.sort_unstable();
    locks.dedup();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM UNNEST($1::int8[]) WITH ORDINALITY AS t(k, n)
         ORDER BY n",
    )
    .bind(&locks)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
