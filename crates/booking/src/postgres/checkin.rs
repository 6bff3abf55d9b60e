//! Check-ins as the PostgreSQL store records them: one statement on the pool, outside the
//! writer — the primary key settles a race between doors of every instance, and the schema's
//! trigger refuses a cancelled booking (the rule that decides a scan is
//! [`crate::checkin::decide`]).

use sqlx::PgPool;
use time::OffsetDateTime;

use super::statements::{constraint_to_rule, ms};
use crate::checkin::Scan;
use crate::error::BookingError;

/// Checks the scanned ticket in at `now`; `None` when it was checked in already.
pub async fn insert(
    pool: &PgPool,
    scan: &Scan,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, BookingError> {
    let now = ms(now);
    let inserted = sqlx::query(
        "INSERT INTO checkins (booking_id, checked_in_at, nonce, scanned_by)
         VALUES ($1, $2, $3, $4) ON CONFLICT (booking_id) DO NOTHING",
    )
    .bind(scan.booking_id)
    .bind(now)
    .bind(scan.nonce.as_deref())
    .bind(scan.scanned_by)
    .execute(pool)
    .await
    .map_err(constraint_to_rule)?;
    Ok((inserted.rows_affected() == 1).then_some(now))
}
