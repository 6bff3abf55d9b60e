//! The SQLite store's own reads, on the async read pool; the reads both engines make alike are
//! in [`crate::rows`]. Everything that changes the store is done by the single writer
//! ([`super::writer`]).

use boxoffice_shared::clock::to_millis;
use sqlx::SqliteExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Booking, BookingStatus, BookingsOf};
use crate::error::BookingError;
use crate::hold::{Hold, HoldStatus};
use crate::rows::{booking_columns, booking_from_row, hold_columns, hold_from_row};

/// One page of a user's or a concert's bookings, newest first, strictly older than `before`
/// when given.
pub async fn list_bookings<'c>(
    executor: impl SqliteExecutor<'c>,
    of: BookingsOf,
    status: Option<BookingStatus>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Booking>, BookingError> {
    macro_rules! page_of {
        ($column:literal) => {
            concat!(
                "SELECT ",
                booking_columns!(),
                " FROM bookings
                 WHERE ",
                $column,
                " = ?1
                   AND (?2 IS NULL OR status = ?2)
                   AND (?3 IS NULL OR id < ?3)
                 ORDER BY id DESC LIMIT ?4"
            )
        };
    }
    let (query, id) = match of {
        BookingsOf::User(id) => (page_of!("user_id"), id),
        BookingsOf::Concert(id) => (page_of!("concert_id"), id),
    };
    let rows = sqlx::query(query)
        .bind(id)
        .bind(status.map(BookingStatus::as_str))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(executor)
        .await?;
    rows.iter().map(booking_from_row).collect()
}

/// The sales report's seat types of concert `$1`, in the order they were added.
pub const SALES_SEATS: &str = "SELECT id, name, capacity, remaining, price_cents, currency,
            (SELECT count(*) FROM holds h
             WHERE h.seat_type_id = seat_types.id AND h.status = 'active') AS held,
            (SELECT coalesce(sum(r.amount_cents), 0) FROM refunds r
             LEFT JOIN bookings b ON b.id = r.booking_id
             LEFT JOIN holds h ON h.id = r.hold_id
             WHERE coalesce(b.seat_type_id, h.seat_type_id) = seat_types.id
               AND r.refunded_at IS NOT NULL) AS refunded_cents
     FROM seat_types WHERE concert_id = $1 ORDER BY rowid";

/// A concert's confirmed bookings per UTC day they were made (times are milliseconds): counted
/// per day number from the concert's index alone, and each day named once.
pub const SALES_BY_DAY: &str = "SELECT date(day * 86400, 'unixepoch') AS day, n
     FROM (SELECT created_at / 86400000 AS day, count(*) AS n
           FROM bookings WHERE concert_id = $1 AND status = 'confirmed' GROUP BY 1)
     ORDER BY 1";

/// Whether user `?1` booked or held a seat of concert `?2` at or after `?3` (milliseconds): an
/// admission from the waiting room is used up by either.
///
/// `+concert_id` keeps SQLite off the concert's index: without statistics it would pick
/// `bookings_by_concert` and read every booking of the concert, for every admitted booking (a
/// sold-out concert's last fans would each read all of them). A user's own rows are a handful.
pub const BOOKED_OR_HELD_SINCE: &str = "SELECT
        EXISTS (SELECT 1 FROM bookings
                WHERE user_id = ?1 AND +concert_id = ?2 AND created_at >= ?3)
     OR EXISTS (SELECT 1 FROM holds
                WHERE user_id = ?1 AND +concert_id = ?2 AND created_at >= ?3)";

/// One page of a user's holds, newest first, strictly older than `before` when given, with
/// `status` as it stands at `now`: an active hold at or past its expiry counts as expired.
pub async fn list_holds<'c>(
    executor: impl SqliteExecutor<'c>,
    user_id: Uuid,
    status: Option<HoldStatus>,
    before: Option<Uuid>,
    limit: u32,
    now: OffsetDateTime,
) -> Result<Vec<Hold>, BookingError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        hold_columns!(),
        " FROM holds
         WHERE user_id = ?1
           AND (?2 IS NULL
                OR (CASE WHEN status = 'active' AND expires_at <= ?5 THEN 'expired'
                         ELSE status END) = ?2)
           AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4"
    ))
    .bind(user_id)
    .bind(status.map(HoldStatus::as_str))
    .bind(before)
    .bind(i64::from(limit))
    .bind(to_millis(now))
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| hold_from_row(row).map(|hold| hold.as_of(now)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rusqlite::Connection;

    /// A store in memory with every migration the store embeds ([`super::super::MIGRATIONS`])
    /// applied.
    fn migrated() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for migration in super::super::MIGRATIONS.iter() {
            conn.execute_batch(migration.sql.as_str()).unwrap();
        }
        conn
    }

    /// How SQLite plans `query` (its parameters left NULL): one line per step.
    fn plan(conn: &Connection, query: &str) -> Vec<String> {
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
            .unwrap();
        let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
        statement
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The sales report's count per day reads the concert's index alone, not every booking.
    #[test]
    fn the_sales_by_day_read_the_concerts_index_alone() {
        let steps = plan(&migrated(), super::SALES_BY_DAY);
        assert!(
            steps
                .iter()
                .any(|step| step.contains("COVERING INDEX bookings_by_concert")),
            "{steps:?}"
        );
    }

    /// Checking an admission reads the user's rows, not the concert's: by the concert, each
    /// admitted booking of a large on-sale read every booking made before it.
    #[test]
    fn an_admission_is_checked_against_the_users_rows_only() {
        let steps = plan(&migrated(), super::BOOKED_OR_HELD_SINCE);
        assert!(
            steps.iter().any(|step| step.contains("bookings_by_user")),
            "{steps:?}"
        );
        assert!(
            steps.iter().any(|step| step.contains("holds_by_user")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|step| step.contains("by_concert")),
            "{steps:?}"
        );
    }
}
