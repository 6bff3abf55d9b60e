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

/// One seat type's count as a booking batch left it: the seat type, its `remaining`, and the
/// row's version with the batch's changes (what a read right after the commit would see).
pub type SeatCount = (Uuid, i64, i64);

/// The longest notification payload sent with counts; PostgreSQL takes up to 8 000 bytes, and a
/// concert with more seat types than fit is notified without them.
const MAX_PAYLOAD: usize = 7_000;

/// The count of each of `seats` as the transaction leaves it, with the row's version after its
/// changes, by concert: what a booking batch's notices carry ([`notify_from`]).
pub async fn seat_counts(
    tx: &mut Transaction<'_, Postgres>,
    seats: &[Uuid],
) -> Result<Vec<(Uuid, SeatCount)>, BookingError> {
    if seats.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(Uuid, Uuid, i64, i64)> = sqlx::query_as(
        "SELECT concert_id, id, remaining, version FROM seat_types WHERE id = ANY($1)",
    )
    .bind(seats)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(concert, seat, remaining, version)| (concert, (seat, remaining, version)))
        .collect())
}

/// `concerts` notified as changed by the writer of `origin` (this process), whose view holds the
/// change already: its own listener skips them ([`notified`]), every other instance follows.
/// With `counts` (a batch that changed nothing but seat counts) each notice carries the counts
/// of the concert's seat types among them, which the other instances apply without reading the
/// store; without, they reload the concerts.
pub async fn notify_from(
    tx: &mut Transaction<'_, Postgres>,
    concerts: &HashSet<Uuid>,
    counts: Option<&[(Uuid, SeatCount)]>,
    origin: Uuid,
) -> Result<(), BookingError> {
    if concerts.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = concerts
        .iter()
        .map(|concert| notice(*concert, origin, counts))
        .collect();
    sqlx::query("SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p")
        .bind(CHANNEL)
        .bind(&payloads)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The payload of a notice of `concert` from `origin`: `concert/origin`, and with `counts` (by
/// concert) `/seat:remaining:version,…` for the concert's seat types when they fit.
fn notice(concert: Uuid, origin: Uuid, counts: Option<&[(Uuid, SeatCount)]>) -> String {
    let plain = format!("{concert}/{origin}");
    let Some(counts) = counts else {
        return plain;
    };
    let of_concert: Vec<String> = counts
        .iter()
        .filter(|(of, _)| *of == concert)
        .map(|(_, (seat, remaining, version))| format!("{seat}:{remaining}:{version}"))
        .collect();
    let with_counts = format!("{plain}/{}", of_concert.join(","));
    match !of_concert.is_empty() && with_counts.len() <= MAX_PAYLOAD {
        true => with_counts,
        false => plain,
    }
}

/// What a notification asks of the listener of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notified {
    /// Reload the concert from the store.
    Reload(Uuid),
    /// Apply these counts of the concert's seat types ([`SeatCount`]).
    Counts(Uuid, Vec<SeatCount>),
}

/// What a notification's payload asks of the listener of `origin`: `None` for one `origin`'s
/// own writer sent ([`notify_from`]) or a payload that names no concert. Counts that do not
/// parse make it a reload.
pub fn notified(payload: &str, origin: Uuid) -> Option<Notified> {
    let mut parts = payload.splitn(3, '/');
    let concert: Uuid = parts.next()?.parse().ok()?;
    let from = parts.next().map(str::parse::<Uuid>);
    if let Some(Ok(from)) = from
        && from == origin
    {
        return None;
    }
    let counts = parts.next().and_then(|counts| {
        counts
            .split(',')
            .map(|count| {
                let mut fields = count.split(':');
                let seat = fields.next()?.parse().ok()?;
                let remaining = fields.next()?.parse().ok()?;
                let version = fields.next()?.parse().ok()?;
                fields
                    .next()
                    .is_none()
                    .then_some((seat, remaining, version))
            })
            .collect::<Option<Vec<SeatCount>>>()
    });
    Some(match counts {
        Some(counts) => Notified::Counts(concert, counts),
        None => Notified::Reload(concert),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_carries_its_concerts_counts_and_is_skipped_by_its_origin() {
        let (concert, other, origin, elsewhere) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let counts = [
            (concert, (a, 0, 7)),
            (other, (b, 3, 1)),
            (concert, (c, 12, 40)),
        ];
        let payload = notice(concert, origin, Some(&counts));
        assert_eq!(
            notified(&payload, elsewhere),
            Some(Notified::Counts(concert, vec![(a, 0, 7), (c, 12, 40)]))
        );
        assert_eq!(notified(&payload, origin), None, "the origin's own");
        let plain = notice(concert, origin, None);
        assert_eq!(notified(&plain, elsewhere), Some(Notified::Reload(concert)));
        // A concert without counts among them, an administrative notice (no origin) and a
        // garbled count are reloads; a payload without a concert is nothing.
        let none_of_its = notice(concert, origin, Some(&counts[1..2]));
        assert_eq!(
            notified(&none_of_its, elsewhere),
            Some(Notified::Reload(concert))
        );
        let admin = concert.to_string();
        assert_eq!(notified(&admin, origin), Some(Notified::Reload(concert)));
        let garbled = format!("{concert}/{origin}/{a}:x:1");
        assert_eq!(
            notified(&garbled, elsewhere),
            Some(Notified::Reload(concert))
        );
        assert_eq!(notified("not a concert", elsewhere), None);
    }

    #[test]
    fn counts_that_do_not_fit_a_notification_are_left_out() {
        let (concert, origin) = (Uuid::now_v7(), Uuid::now_v7());
        let many: Vec<(Uuid, SeatCount)> = (0..200)
            .map(|n| (concert, (Uuid::now_v7(), n, n)))
            .collect();
        let payload = notice(concert, origin, Some(&many));
        assert!(payload.len() < 100, "{} bytes", payload.len());
        assert_eq!(
            notified(&payload, Uuid::now_v7()),
            Some(Notified::Reload(concert))
        );
    }
}
