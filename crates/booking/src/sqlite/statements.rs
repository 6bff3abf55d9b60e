//! The writer's SQL, on the writer's own synchronous SQLite connection.
//!
//! The writer runs on a dedicated thread and talks to SQLite directly (rusqlite, prepared
//! statements cached per connection), so a batch of a thousand bookings is a thousand calls into
//! SQLite on one thread — not a thousand round trips to a database worker thread. Reads served to
//! clients stay on the async pool in [`super::reads`]; the outbox's statements are in
//! `outbox`.

use boxoffice_shared::clients::{ConcertInventory, EmailKind, SeatInventory};
use boxoffice_shared::clock::{from_millis, to_millis};
use boxoffice_shared::db::Durability;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::command::SavedResponse;
use crate::domain::{
    Booking, BookingPayment, BookingStatus, waiting_room_columns, waiting_room_from_columns,
};
use crate::error::BookingError;
use crate::payments::simulated_charge;
use crate::view::{ConcertSale, Inventory, Seat};

/// Opens the writer's connection with the pragmas the store relies on.
pub fn open(path: &std::path::Path, durability: Durability) -> Result<Connection, BookingError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A booking's INSERT fires triggers that may abort it, so SQLite keeps a statement journal
    // for it to undo just that statement. With the default temp store that journal is a file and
    // every booking paid several write() calls for it (a third of the writer's time); in memory
    // it is a copy. It holds only what one statement changed, so it stays small.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

const BOOKING_COLUMNS: &str = "id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at, cancelled_at, payment_provider, amount_cents, payment_status";

fn booking_from_row(row: &Row<'_>) -> rusqlite::Result<Booking> {
    let status: String = row.get(4)?;
    Ok(Booking {
        id: row.get(0)?,
        user_id: row.get(1)?,
        concert_id: row.get(2)?,
        seat_type_id: row.get(3)?,
        status: BookingStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("status {status}").into(),
            )
        })?,
        price_cents: row.get(5)?,
        currency: row.get(6)?,
        created_at: from_millis(row.get(7)?),
        cancelled_at: row.get::<_, Option<i64>>(8)?.map(from_millis),
        payment: BookingPayment::from_columns(row.get(9)?, row.get(10)?, row.get(11)?).map_err(
            |error| {
                rusqlite::Error::FromSqlConversionFailure(
                    9,
                    rusqlite::types::Type::Text,
                    error.to_string().into(),
                )
            },
        )?,
    })
}

/// Everything the in-memory view holds, read from the store.
pub fn load_inventory(conn: &Connection) -> Result<Inventory, BookingError> {
    let mut inventory = Inventory::default();
    let mut concerts = conn.prepare(
        "SELECT concert_id, name, venue, starts_at, cancelled_at, sales_open_at,
                waiting_room_admit_per_minute, waiting_room_admission_ttl_seconds
         FROM sales",
    )?;
    let rows = concerts.query_map([], |row| {
        Ok((
            row.get::<_, Uuid>(0)?,
            ConcertSale {
                name: row.get(1)?,
                venue: row.get(2)?,
                starts_at: from_millis(row.get(3)?),
                opens_at: row.get::<_, Option<i64>>(5)?.map(from_millis),
                waiting_room: waiting_room_from_columns(row.get(6)?, row.get(7)?).map_err(
                    |error| {
                        rusqlite::Error::FromSqlConversionFailure(
                            6,
                            rusqlite::types::Type::Integer,
                            error.to_string().into(),
                        )
                    },
                )?,
                cancelled: row.get::<_, Option<i64>>(4)?.is_some(),
                seat_types: Vec::new(),
            },
        ))
    })?;
    for row in rows {
        let (id, concert) = row?;
        inventory.concerts.insert(id, concert);
    }
    let mut seats = conn.prepare(
        "SELECT id, concert_id, name, price_cents, currency, capacity, remaining FROM seat_types ORDER BY rowid",
    )?;
    let rows = seats.query_map([], |row| {
        Ok((
            row.get::<_, Uuid>(0)?,
            Seat {
                concert_id: row.get(1)?,
                name: row.get(2)?,
                price_cents: row.get(3)?,
                currency: row.get(4)?,
                capacity: row.get(5)?,
                remaining: row.get(6)?,
            },
        ))
    })?;
    for row in rows {
        let (id, seat) = row?;
        if let Some(concert) = inventory.concerts.get_mut(&seat.concert_id) {
            concert.seat_types.push(id);
        }
        inventory.seats.insert(id, seat);
    }
    inventory.next_hold_expiry = next_hold_expiry(conn)?;
    Ok(inventory)
}

/// When the next active hold expires, if any.
pub fn next_hold_expiry(conn: &Connection) -> Result<Option<OffsetDateTime>, BookingError> {
    let at: Option<i64> = conn
        .prepare_cached("SELECT min(expires_at) FROM holds WHERE status = 'active'")?
        .query_row([], |row| row.get(0))?;
    Ok(at.map(from_millis))
}

pub fn saved_response(
    conn: &Connection,
    user_id: Uuid,
    key: &str,
) -> Result<Option<SavedResponse>, BookingError> {
    Ok(conn
        .prepare_cached(
            "SELECT request_hash, response_status, response_body FROM idempotency_keys
             WHERE user_id = ?1 AND idempotency_key = ?2",
        )?
        .query_row(params![user_id, key], |row| {
            Ok(SavedResponse {
                request_hash: row.get(0)?,
                status: u16::try_from(row.get::<_, i64>(1)?).unwrap_or(500),
                body: row.get(2)?,
            })
        })
        .optional()?)
}

pub fn save_response(
    conn: &Connection,
    user_id: Uuid,
    key: &str,
    request_hash: &[u8],
    status: u16,
    body: &str,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    conn.prepare_cached(
        "INSERT INTO idempotency_keys
            (user_id, idempotency_key, request_hash, response_status, response_body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        user_id,
        key,
        request_hash,
        i64::from(status),
        body,
        to_millis(now)
    ])?;
    Ok(())
}

/// Inserts a confirmed booking. The schema's trigger takes the seat (or refuses: sold out, closed).
pub fn insert_booking(conn: &Connection, booking: &Booking) -> Result<(), BookingError> {
    insert_bookings(conn, &[booking])
}

/// The sizes to cut `count` rows into for [`insert_bookings`]: powers of two, largest first, at
/// most [`MAX_ROWS_PER_INSERT`], so that a handful of prepared statements serve every batch.
pub fn chunk_sizes(count: usize) -> impl Iterator<Item = usize> {
    let mut left = count;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let size = MAX_ROWS_PER_INSERT.min(1 << left.ilog2());
        left -= size;
        Some(size)
    })
}

/// The most bookings one multi-row `INSERT` carries (13 parameters each, far below SQLite's limit).
pub const MAX_ROWS_PER_INSERT: usize = 256;

/// Inserts confirmed bookings with one statement; the schema's trigger takes a seat for each. If
/// any row is refused, SQLite undoes the whole statement and none is inserted. A booking with a
/// payment was paid in one step, in its own transaction (the simulated provider's way).
pub fn insert_bookings(conn: &Connection, bookings: &[&Booking]) -> Result<(), BookingError> {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; bookings.len()].join(", ");
    let mut statement = conn.prepare_cached(&format!(
        "INSERT INTO bookings
            (id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at,
             cancelled_at, payment_provider, payment_ref, amount_cents, payment_status)
         VALUES {values}"
    ))?;
    let mut index = 0;
    for booking in bookings {
        let created_at = to_millis(booking.created_at);
        let cancelled_at = booking.cancelled_at.map(to_millis);
        let payment = booking.payment.as_ref();
        let provider = payment.map(|payment| payment.provider.as_str());
        // Paid in the booking's own transaction: the charge is named after the booking.
        let reference = payment.map(|_| simulated_charge(booking.id));
        let amount = payment.map(|payment| payment.amount_cents);
        let paid = payment.map(|payment| payment.status.as_str());
        let row: [&dyn rusqlite::ToSql; 13] = [
            &booking.id,
            &booking.user_id,
            &booking.concert_id,
            &booking.seat_type_id,
            &booking.status.as_str(),
            &booking.price_cents,
            &booking.currency,
            &created_at,
            &cancelled_at,
            &provider,
            &reference,
            &amount,
            &paid,
        ];
        for value in row {
            index += 1;
            statement.raw_bind_parameter(index, value)?;
        }
    }
    statement.raw_execute().map_err(constraint_to_rule)?;
    Ok(())
}

pub fn booking_by_id(conn: &Connection, id: Uuid) -> Result<Option<Booking>, BookingError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = ?1"
        ))?
        .query_row(params![id], booking_from_row)
        .optional()?)
}

/// Flips a confirmed booking to cancelled; the schema's trigger returns the seat. `None` when the
/// booking was not confirmed.
pub fn cancel_booking(
    conn: &Connection,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<Option<Booking>, BookingError> {
    conn.prepare_cached(&format!(
        "UPDATE bookings SET status = 'cancelled', cancelled_at = ?1
         WHERE id = ?2 AND status = 'confirmed' RETURNING {BOOKING_COLUMNS}"
    ))?
    .query_row(params![to_millis(now), id], booking_from_row)
    .optional()
    .map_err(constraint_to_rule)
}

/// Queues one email whose text is `payload` (a [`BookingEmail`] as JSON), for an email that
/// names no booking: a waiting-list offer.
///
/// [`BookingEmail`]: boxoffice_shared::clients::BookingEmail
pub fn enqueue_payload(
    conn: &Connection,
    kind: EmailKind,
    payload: &str,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    conn.prepare_cached(
        "INSERT INTO outbox (message_id, kind, payload, created_at, available_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![
        Uuid::now_v7(),
        kind.as_str(),
        payload,
        to_millis(now)
    ])?;
    Ok(())
}

/// Queues one email per booking in the outbox, by reference: the row names the booking and the
/// email is read from the store when it is claimed (`outbox::claim_outbox`). One multi-row statement
/// per chunk ([`chunk_sizes`]).
pub fn enqueue_emails(
    conn: &Connection,
    kind: EmailKind,
    booking_ids: &[Uuid],
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let created = to_millis(now);
    let mut rest = booking_ids.iter();
    for size in chunk_sizes(booking_ids.len()) {
        let values = vec!["(?, ?, ?, ?, ?)"; size].join(", ");
        let mut statement = conn.prepare_cached(&format!(
            "INSERT INTO outbox (message_id, kind, booking_id, created_at, available_at) VALUES {values}"
        ))?;
        let mut index = 0;
        for booking_id in rest.by_ref().take(size) {
            let message_id = Uuid::now_v7();
            let row: [&dyn rusqlite::ToSql; 5] =
                [&message_id, &kind.as_str(), booking_id, &created, &created];
            for value in row {
                index += 1;
                statement.raw_bind_parameter(index, value)?;
            }
        }
        statement.raw_execute()?;
    }
    Ok(())
}

/// Creates or updates a concert's sale window (its waiting room included) and adds the seat types
/// it does not have yet.
pub fn provision(
    conn: &Connection,
    concert: &ConcertInventory,
) -> Result<Vec<SeatInventory>, BookingError> {
    let (admit_per_minute, admission_ttl_seconds) = waiting_room_columns(concert.waiting_room);
    conn.prepare_cached(
        "INSERT INTO sales (concert_id, name, venue, starts_at, artist, time_zone, sales_open_at,
                            waiting_room_admit_per_minute, waiting_room_admission_ttl_seconds)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (concert_id) DO UPDATE SET
            name = excluded.name, venue = excluded.venue, starts_at = excluded.starts_at,
            artist = excluded.artist, time_zone = excluded.time_zone,
            sales_open_at = excluded.sales_open_at,
            waiting_room_admit_per_minute = excluded.waiting_room_admit_per_minute,
            waiting_room_admission_ttl_seconds = excluded.waiting_room_admission_ttl_seconds",
    )?
    .execute(params![
        concert.concert_id,
        concert.name,
        concert.venue,
        to_millis(concert.starts_at),
        concert.artist,
        concert.time_zone,
        concert.sales_open_at.map(to_millis),
        admit_per_minute,
        admission_ttl_seconds,
    ])?;
    let mut added = Vec::new();
    let mut insert = conn.prepare_cached(
        "INSERT INTO seat_types (id, concert_id, name, price_cents, currency, capacity, remaining)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (id) DO NOTHING",
    )?;
    for seat in &concert.seat_types {
        let inserted = insert.execute(params![
            seat.seat_type_id,
            concert.concert_id,
            seat.name,
            seat.price_cents,
            seat.currency,
            seat.capacity,
        ])?;
        if inserted == 1 {
            added.push(seat.clone());
        }
    }
    Ok(added)
}

/// Sets a seat type's capacity, moving `remaining` by the same amount. The CHECK on `remaining`
/// refuses to shrink below what is sold. Returns the new `(capacity, remaining)`.
pub fn set_capacity(
    conn: &Connection,
    seat_type_id: Uuid,
    capacity: i64,
) -> Result<Option<(i64, i64)>, BookingError> {
    conn.prepare_cached(
        "UPDATE seat_types SET remaining = remaining + (?1 - capacity), capacity = ?1
         WHERE id = ?2 RETURNING capacity, remaining",
    )?
    .query_row(params![capacity, seat_type_id], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })
    .optional()
    .map_err(|error| match constraint_to_rule(error) {
        BookingError::SoldOut => {
            BookingError::invalid("capacity", "cannot shrink below the seats already sold")
        }
        other => other,
    })
}

/// Marks a concert cancelled and cancels its confirmed bookings, returning them.
pub fn cancel_sale(
    conn: &Connection,
    concert_id: Uuid,
    now: OffsetDateTime,
) -> Result<Vec<Booking>, BookingError> {
    conn.prepare_cached(
        "UPDATE sales SET cancelled_at = ?1 WHERE concert_id = ?2 AND cancelled_at IS NULL",
    )?
    .execute(params![to_millis(now), concert_id])?;
    let mut statement = conn.prepare_cached(&format!(
        "UPDATE bookings SET status = 'cancelled', cancelled_at = ?1
         WHERE concert_id = ?2 AND status = 'confirmed' RETURNING {BOOKING_COLUMNS}"
    ))?;
    let rows = statement.query_map(params![to_millis(now), concert_id], booking_from_row)?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(constraint_to_rule)
}

/// Maps the schema's refusals onto booking rules: the CHECK on `remaining` is "sold out", the
/// partial unique indexes are "already booked", and the triggers name their rule.
pub(super) fn constraint_to_rule(error: rusqlite::Error) -> BookingError {
    if let rusqlite::Error::SqliteFailure(failure, Some(message)) = &error {
        if message.contains("remaining_within_capacity") {
            return BookingError::SoldOut;
        }
        if message.contains("booking_closed") {
            return BookingError::BookingClosed;
        }
        if message.contains("sales_not_open") {
            return BookingError::SalesNotOpen;
        }
        if message.contains("already_cancelled") {
            return BookingError::AlreadyCancelled;
        }
        if message.contains("hold_not_active") {
            return BookingError::HoldNotActive;
        }
        if message.contains("ticket_cancelled") {
            return BookingError::TicketCancelled;
        }
        if message.contains("seat_type_not_found") {
            return BookingError::SeatTypeNotFound;
        }
        if message.contains("seats_available") {
            return BookingError::SeatsAvailable;
        }
        if message.contains("already_waitlisted")
            || (failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && message.contains("waitlist.user_id"))
        {
            return BookingError::AlreadyWaitlisted;
        }
        if message.contains("already_booked")
            || (failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && (message.contains("bookings.user_id") || message.contains("holds.user_id")))
        {
            return BookingError::AlreadyBooked;
        }
    }
    BookingError::Writer(error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn rows_are_cut_into_powers_of_two_up_to_the_statement_limit() {
        for count in [0, 1, 2, 3, 255, 256, 257, 300, 1024, 1023] {
            let sizes: Vec<usize> = super::chunk_sizes(count).collect();
            assert_eq!(sizes.iter().sum::<usize>(), count, "{sizes:?}");
            assert!(
                sizes
                    .iter()
                    .all(|size| size.is_power_of_two() && *size <= super::MAX_ROWS_PER_INSERT),
                "{sizes:?}"
            );
            assert!(sizes.windows(2).all(|pair| pair[0] >= pair[1]), "{sizes:?}");
        }
    }

    /// The bundled SQLite is built with the options of `.cargo/config.toml`: without them every
    /// allocation SQLite makes takes a global mutex, and the writer is about an eighth slower.
    #[test]
    fn sqlite_is_built_with_the_repository_compile_options() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut statement = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            options.iter().any(|option| option == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options
                .iter()
                .any(|option| option == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }
}
