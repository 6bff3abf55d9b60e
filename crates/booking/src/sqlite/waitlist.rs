//! The waiting list as the SQLite writer runs it: joining, leaving, and handing freed seats on
//! ([`hand_on`]), each inside the writer's batch transaction. The rules the schema keeps are in
//! the migration `0010_waitlist.sql`; the one it cannot state — a freed seat goes to the first
//! fan waiting for its type before anyone else can take it — is [`hand_on`], which the writer
//! runs after every command that freed a seat, in that command's transaction.

use boxoffice_shared::clients::EmailKind;
use boxoffice_shared::clock::{from_millis, to_millis};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::batch::Staged;
use super::holds::insert_hold;
use super::statements::{constraint_to_rule, enqueue_payload};
use super::webhooks::enqueue_webhook;
use crate::command::saved_json;
use crate::error::BookingError;
use crate::hold::Hold;
use crate::rows::entry_columns;
use crate::waitlist::{
    JoinRequest, NextInLine, OfferTerms, OfferedSeat, WaitlistEntry, WaitlistStatus, offer_email,
    offered_hold,
};
use crate::webhook::WebhookEvent;

/// An entry from the columns of [`entry_columns!`], in their order.
fn entry_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WaitlistEntry> {
    let status: String = row.get(4)?;
    Ok(WaitlistEntry {
        id: row.get(0)?,
        user_id: row.get(1)?,
        concert_id: row.get(2)?,
        seat_type_id: row.get(3)?,
        status: WaitlistStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("waiting-list status {status}").into(),
            )
        })?,
        created_at: from_millis(row.get(5)?),
        hold_id: row.get(6)?,
        position: row.get(7)?,
    })
}

fn entry_by_id(conn: &Connection, id: Uuid) -> Result<Option<WaitlistEntry>, BookingError> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM waitlist AS w WHERE w.id = ?1"
        ))?
        .query_row(params![id], entry_from_row)
        .optional()?)
}

/// Puts the fan on the seat type's list. The schema refuses a seat type with seats left
/// (`seats_available`), a closed sale, a fan who holds a booking or a hold for the concert, and
/// a second place on the concert's lists (`already_waitlisted`).
pub(super) fn join(
    conn: &Connection,
    request: &JoinRequest,
    now: OffsetDateTime,
) -> Result<WaitlistEntry, BookingError> {
    let id = Uuid::now_v7();
    conn.prepare_cached(
        "INSERT INTO waitlist (id, user_id, concert_id, seat_type_id, status, created_at)
         VALUES (?1, ?2, ?3, ?4, 'waiting', ?5)",
    )?
    .execute(params![
        id,
        request.user_id,
        request.concert_id,
        request.seat_type_id,
        to_millis(now)
    ])
    .map_err(constraint_to_rule)?;
    entry_by_id(conn, id)?.ok_or_else(|| BookingError::Corrupt("a new entry vanished".into()))
}

/// Takes the fan's entry off the list. A waiting entry is `left`; an offered one lets its hold
/// go (released, or expired if its time is up), the entry follows it, and the seat is staged
/// as freed, for the next fan. An entry that has ended already is left as it is.
pub(super) fn leave(
    conn: &Connection,
    staged: &mut Staged,
    entry_id: Uuid,
    user_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let entry = entry_by_id(conn, entry_id)?
        .filter(|entry| entry.user_id == user_id)
        .ok_or(BookingError::WaitlistEntryNotFound)?;
    match (entry.status, entry.hold_id) {
        (WaitlistStatus::Waiting, _) => {
            conn.prepare_cached(
                "UPDATE waitlist SET status = 'left', ended_at = ?1
                 WHERE id = ?2 AND status = 'waiting'",
            )?
            .execute(params![to_millis(now), entry_id])?;
        }
        (WaitlistStatus::Offered, Some(hold_id)) => {
            let ended = conn
                .prepare_cached(
                    "UPDATE holds SET ended_at = ?1,
                            status = CASE WHEN expires_at <= ?1 THEN 'expired' ELSE 'released' END
                     WHERE id = ?2 AND status = 'active'",
                )?
                .execute(params![to_millis(now), hold_id])?;
            if ended == 1 {
                staged.freed.push((entry.seat_type_id, entry.concert_id));
                staged.holds_changed = true;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Ends the lists of a concert being cancelled: every entry waiting or offered is `expired`
/// (before the concert's holds are released, so that the entries do not read as `left`).
pub(super) fn end_for_concert(
    conn: &Connection,
    concert_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    conn.prepare_cached(
        "UPDATE waitlist SET status = 'expired', ended_at = ?1
         WHERE concert_id = ?2 AND status IN ('waiting', 'offered')",
    )?
    .execute(params![to_millis(now), concert_id])?;
    Ok(())
}

/// Offers the seats the command freed (`staged.freed`) to the fans first in line for them: for
/// each seat left of such a seat type, while anyone waits, a hold in the first fan's name for
/// the offer time, the entry `offered`, and the offer's email queued. A fan who has booked or
/// holds a seat of the concert since they joined (the schema refuses them a second one) leaves
/// the line when their turn comes, and the seat goes to the next. Stages each seat type's
/// `remaining` as it ends.
pub(super) fn hand_on(
    conn: &Connection,
    terms: OfferTerms,
    now: OffsetDateTime,
    staged: &mut Staged,
) -> Result<(), BookingError> {
    let mut freed = std::mem::take(&mut staged.freed);
    freed.sort_unstable();
    freed.dedup();
    for (seat_type_id, concert_id) in freed {
        while let Some((seq, next)) = next_in_line(conn, seat_type_id, now)? {
            match offer(conn, seq, &next, terms, now) {
                Ok(hold_id) => {
                    staged.emails += 1;
                    staged.holds_changed = true;
                    enqueue_webhook(staged, WebhookEvent::WaitlistOffered, hold_id);
                }
                Err(BookingError::AlreadyBooked) => {
                    conn.prepare_cached(
                        "UPDATE waitlist SET status = 'left', ended_at = ?1 WHERE seq = ?2",
                    )?
                    .execute(params![to_millis(now), seq])?;
                }
                // Closed (the concert started or was cancelled): nothing more is offered.
                Err(BookingError::BookingClosed | BookingError::SalesNotOpen) => break,
                Err(error) => return Err(error),
            }
        }
        let remaining: i64 = conn
            .prepare_cached("SELECT remaining FROM seat_types WHERE id = ?1")?
            .query_row(params![seat_type_id], |row| row.get(0))?;
        staged.remaining.push((seat_type_id, remaining));
        staged.touched.push(concert_id);
    }
    Ok(())
}

/// The first fan waiting for the seat type, when it has a seat left and its sale is open.
fn next_in_line(
    conn: &Connection,
    seat_type_id: Uuid,
    now: OffsetDateTime,
) -> Result<Option<(i64, NextInLine)>, BookingError> {
    Ok(conn
        .prepare_cached(
            "SELECT w.seq, w.user_id, w.concert_id, t.price_cents, t.currency
             FROM seat_types AS t
             JOIN sales AS s ON s.concert_id = t.concert_id
             JOIN waitlist AS w ON w.seat_type_id = t.id AND w.status = 'waiting'
             WHERE t.id = ?1 AND t.remaining > 0
               AND s.cancelled_at IS NULL AND s.starts_at > ?2
               AND (s.sales_open_at IS NULL OR s.sales_open_at <= ?2)
             ORDER BY w.seq LIMIT 1",
        )?
        .query_row(params![seat_type_id, to_millis(now)], |row| {
            Ok((
                row.get(0)?,
                NextInLine {
                    user_id: row.get(1)?,
                    concert_id: row.get(2)?,
                    seat_type_id,
                    price_cents: row.get(3)?,
                    currency: row.get(4)?,
                },
            ))
        })
        .optional()?)
}

/// Offers one seat to the fan of entry `seq`: their hold (whose insert the schema checks like
/// any hold's), the entry `offered`, the email queued. Returns the hold's id.
fn offer(
    conn: &Connection,
    seq: i64,
    next: &NextInLine,
    terms: OfferTerms,
    now: OffsetDateTime,
) -> Result<Uuid, BookingError> {
    let hold = offered_hold(next, terms, now);
    insert_hold(conn, &hold)?;
    conn.prepare_cached(
        "UPDATE waitlist SET status = 'offered', hold_id = ?1, offered_at = ?2 WHERE seq = ?3",
    )?
    .execute(params![hold.id, to_millis(now), seq])?;
    let email = offer_email(&hold, offered_seat(conn, &hold)?);
    enqueue_payload(conn, EmailKind::WaitlistOffered, &saved_json(&email)?, now)?;
    Ok(hold.id)
}

/// What the offer's email says about the concert and the seat type.
fn offered_seat(conn: &Connection, hold: &Hold) -> Result<OfferedSeat, BookingError> {
    Ok(conn
        .prepare_cached(
            "SELECT s.name, s.artist, s.venue, s.time_zone, s.starts_at, t.name
             FROM seat_types AS t JOIN sales AS s ON s.concert_id = t.concert_id
             WHERE t.id = ?1",
        )?
        .query_row(params![hold.seat_type_id], |row| {
            Ok(OfferedSeat {
                concert_name: row.get(0)?,
                artist: row.get(1)?,
                venue: row.get(2)?,
                time_zone: row.get(3)?,
                starts_at: from_millis(row.get(4)?),
                seat_type_name: row.get(5)?,
            })
        })?)
}
