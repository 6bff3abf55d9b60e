//! Check-ins as the SQLite writer makes them: the ticket is read, the door's rule
//! ([`crate::checkin::decide`]) applied and the check-in inserted in one job of the writer's
//! batch, so no scan waits on the read pool and no two scans of a ticket can interleave.

use boxoffice_shared::clock::{from_millis, to_millis};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::batch::Effects;
use super::statements::constraint_to_rule;
use crate::checkin::{CheckedIn, Decision, Scan, TicketRow, decide};
use crate::domain::BookingStatus;
use crate::error::BookingError;
use crate::webhook::WebhookEvent;

/// Decides `scan` and, when it admits, checks the ticket in at `now`. No savepoint: the one
/// insert either stands or is undone by SQLite, and the schema's trigger refuses a cancelled
/// booking (`ticket_cancelled`) should the rule ever let one through.
pub(super) fn check_in(
    conn: &Connection,
    scan: &Scan,
    now: OffsetDateTime,
    effects: &mut Effects,
) -> Result<CheckedIn, BookingError> {
    let ticket = ticket_row(conn, scan)?;
    match decide(ticket.as_ref(), scan)? {
        Decision::Replay(checked_in) => Ok(checked_in),
        Decision::CheckIn => {
            conn.prepare_cached(
                "INSERT INTO checkins (booking_id, checked_in_at, nonce, scanned_by)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                scan.booking_id,
                to_millis(now),
                scan.nonce,
                scan.scanned_by
            ])
            .map_err(constraint_to_rule)?;
            let ticket = ticket.ok_or(BookingError::InvalidTicket("no such booking"))?;
            effects
                .webhooks
                .push((WebhookEvent::CheckinCreated, ticket.booking_id));
            let checked_in = CheckedIn {
                booking_id: ticket.booking_id,
                user_id: ticket.user_id,
                seat_type_id: ticket.seat_type_id,
                checked_in_at: now,
            };
            effects
                .admitted
                .push((checked_in.clone(), scan.nonce.clone()));
            Ok(checked_in)
        }
    }
}

/// The scanned ticket as the writer's transaction sees it.
fn ticket_row(conn: &Connection, scan: &Scan) -> Result<Option<TicketRow>, BookingError> {
    let row = conn
        .prepare_cached(
            "SELECT b.user_id, b.concert_id, b.seat_type_id, b.status, c.checked_in_at, c.nonce
             FROM bookings b LEFT JOIN checkins c ON c.booking_id = b.id
             WHERE b.id = ?1",
        )?
        .query_row(params![scan.booking_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<i64>>(4)?,
                row.get(5)?,
            ))
        })
        .optional()?;
    row.map(
        |(user_id, concert_id, seat_type_id, status, checked_in_at, nonce)| {
            Ok(TicketRow {
                booking_id: scan.booking_id,
                user_id,
                concert_id,
                seat_type_id,
                status: BookingStatus::parse(&status)
                    .ok_or_else(|| BookingError::Corrupt(format!("booking status {status}")))?,
                checked_in_at: checked_in_at.map(from_millis),
                nonce,
            })
        },
    )
    .transpose()
}
