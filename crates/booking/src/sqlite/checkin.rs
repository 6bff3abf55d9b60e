//! Check-ins as the SQLite writer records them (the rule that decides them is
//! [`crate::checkin::decide`]).

use boxoffice_shared::clock::to_millis;
use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::statements::constraint_to_rule;
use crate::checkin::Scan;
use crate::error::BookingError;

/// Checks the scanned ticket in at `now`; `None` when it was checked in already (the decision is
/// then read again). No savepoint: the one statement either stands or is undone by SQLite, and
/// the schema's trigger refuses a cancelled booking (`ticket_cancelled`).
pub(super) fn insert(
    conn: &Connection,
    scan: &Scan,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, BookingError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO checkins (booking_id, checked_in_at, nonce, scanned_by)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (booking_id) DO NOTHING",
        )?
        .execute(params![
            scan.booking_id,
            to_millis(now),
            scan.nonce,
            scan.scanned_by
        ])
        .map_err(constraint_to_rule)?;
    Ok((inserted == 1).then_some(now))
}
