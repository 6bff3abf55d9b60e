//! The hold rules as the SQLite writer runs them, each command under its own savepoint inside
//! the batch's transaction (see `rules`), and the SQL they need.
//!
//! A command that frees a seat names its seat type in `Staged::freed`: the writer then offers it
//! to the seat type's waiting list in the same transaction (`super::waitlist::hand_on`).
//!
//! Expiry: every batch first expires the holds due at the batch's time when the view says one
//! is due ([`expire_due`]), so every command of the batch sees their seats free; the schema's
//! triggers return each seat exactly once. After a batch that changed holds, the writer reads
//! when the next one falls due (`statements::next_hold_expiry`), for the view and the sales timer.

use boxoffice_shared::clients::EmailKind;
use boxoffice_shared::clock::{from_millis, to_millis};
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::batch::{Effects, Staged};
use super::statements::{self as store, constraint_to_rule};
use crate::command::{HoldOutcome, Made, paid_booking, replay, saved_json};
use crate::error::BookingError;
use crate::hold::{
    Failed, Hold, HoldPayment, HoldRequest, HoldStatus, Paid, PaymentStatus, Provider,
    hold_fingerprint, new_hold,
};
use crate::view::{SharedInventory, bookable};
use crate::webhook::WebhookEvent;

const HOLD_COLUMNS: &str = "id, user_id, concert_id, seat_type_id, status, price_cents, currency, \
     created_at, expires_at, booking_id, provider, payment_status, client_secret, payment_ref";

fn hold_from_row(row: &Row<'_>) -> rusqlite::Result<Hold> {
    fn parsed<T>(row: &Row<'_>, index: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
        let value: String = row.get(index)?;
        parse(&value).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Text,
                format!("hold column {index}: {value}").into(),
            )
        })
    }
    Ok(Hold {
        id: row.get(0)?,
        user_id: row.get(1)?,
        concert_id: row.get(2)?,
        seat_type_id: row.get(3)?,
        status: parsed(row, 4, HoldStatus::parse)?,
        price_cents: row.get(5)?,
        currency: row.get(6)?,
        created_at: from_millis(row.get(7)?),
        expires_at: from_millis(row.get(8)?),
        booking_id: row.get(9)?,
        payment: HoldPayment {
            provider: parsed(row, 10, Provider::parse)?,
            status: parsed(row, 11, PaymentStatus::parse)?,
            client_secret: row.get(12)?,
            reference: row.get(13)?,
        },
    })
}

fn hold_by_id(conn: &Connection, id: Uuid) -> Result<Option<Hold>, BookingError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?1"))?
        .query_row(params![id], hold_from_row)
        .optional()?)
}

/// The caller's own hold (any hold for a provider's event, which names no caller); anyone
/// else's is not found.
fn own_hold(conn: &Connection, id: Uuid, user_id: Option<Uuid>) -> Result<Hold, BookingError> {
    hold_by_id(conn, id)?
        .filter(|hold| hold.payable_by(user_id))
        .ok_or(BookingError::HoldNotFound)
}

/// Records a provider's event about `hold`; `false` if it was recorded before (and must not be
/// applied again).
fn first_delivery(
    conn: &Connection,
    event: Option<&str>,
    kind: &str,
    hold: &Hold,
    now: OffsetDateTime,
) -> Result<bool, BookingError> {
    let Some(event) = event else {
        return Ok(true);
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO payment_events (id, provider, kind, hold_id, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            event,
            hold.payment.provider.as_str(),
            kind,
            hold.id,
            to_millis(now)
        ])?;
    Ok(inserted == 1)
}

/// `remaining` of each seat type as the store now has it, staged for the view.
fn stage_remaining(
    conn: &Connection,
    staged: &mut Staged,
    seats: impl IntoIterator<Item = (Uuid, Uuid)>,
) -> Result<(), BookingError> {
    let mut read = conn.prepare_cached("SELECT remaining FROM seat_types WHERE id = ?1")?;
    for (seat_type_id, concert_id) in seats {
        let remaining: i64 = read.query_row(params![seat_type_id], |row| row.get(0))?;
        staged.remaining.push((seat_type_id, remaining));
        staged.touched.push(concert_id);
    }
    staged.holds_changed = true;
    Ok(())
}

/// Expires every active hold due at `now`; the triggers return their seats. Returns how many.
pub(super) fn expire_due(
    conn: &Connection,
    now: OffsetDateTime,
    staged: &mut Staged,
) -> Result<usize, BookingError> {
    let mut expire = conn.prepare_cached(
        "UPDATE holds SET status = 'expired', ended_at = ?1
         WHERE status = 'active' AND expires_at <= ?1
         RETURNING seat_type_id, concert_id, id",
    )?;
    let ended: Vec<(Uuid, Uuid)> = expire
        .query_map(params![to_millis(now)], |row| {
            staged
                .webhooks
                .push((WebhookEvent::HoldExpired, row.get(2)?));
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let count = ended.len();
    let mut seats = ended;
    seats.sort_unstable();
    seats.dedup();
    staged.freed.extend(seats.iter().copied());
    stage_remaining(conn, staged, seats)?;
    Ok(count)
}

/// Ends the active holds of a cancelled concert (released, or expired when due); the triggers
/// return their seats. Stages `remaining` of every seat type of the concert as the store has it
/// after the cancellation.
pub(super) fn end_for_concert(
    conn: &Connection,
    concert_id: Uuid,
    now: OffsetDateTime,
    staged: &mut Staged,
) -> Result<(), BookingError> {
    conn.prepare_cached(
        "UPDATE holds SET ended_at = ?1,
                status = CASE WHEN expires_at <= ?1 THEN 'expired' ELSE 'released' END
         WHERE concert_id = ?2 AND status = 'active'",
    )?
    .execute(params![to_millis(now), concert_id])?;
    let seats: Vec<Uuid> = conn
        .prepare_cached("SELECT id FROM seat_types WHERE concert_id = ?1")?
        .query_map(params![concert_id], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    stage_remaining(conn, staged, seats.into_iter().map(|id| (id, concert_id)))
}

/// Takes a seat for a while: a new active hold, or the saved answer of the request's key.
pub(super) fn hold(
    conn: &Connection,
    view: &SharedInventory,
    effects: &Effects,
    staged: &mut Staged,
    request: &HoldRequest,
    now: OffsetDateTime,
) -> Result<HoldOutcome, BookingError> {
    let fingerprint = hold_fingerprint(request.concert_id, request.seat_type_id);
    if let Some(key) = &request.key
        && let Some(saved) = store::saved_response(conn, request.user_id, key.as_str())?
    {
        return replay(saved, &fingerprint);
    }
    let sale = effects
        .sale(view, request.concert_id)
        .ok_or(BookingError::ConcertNotFound)?;
    let seat = view
        .read()
        .seat_of(request.concert_id, request.seat_type_id)?
        .clone();
    let remaining = effects
        .remaining(view, request.seat_type_id)
        .unwrap_or(seat.remaining);
    bookable(now, &sale, remaining > 0)?;
    let hold = new_hold(request, &seat, now);
    insert_hold(conn, &hold)?;
    if let Some(key) = &request.key {
        store::save_response(
            conn,
            request.user_id,
            key.as_str(),
            &fingerprint,
            201,
            &saved_json(&hold)?,
            now,
        )?;
    }
    staged.remaining.push((request.seat_type_id, remaining - 1));
    staged.touched.push(request.concert_id);
    staged.holds_changed = true;
    Ok(Made::Created(hold))
}

/// Inserts a new active hold; the schema's triggers take its seat, or refuse it (sold out, a
/// closed sale, a user who holds a seat of the concert already).
pub(super) fn insert_hold(conn: &Connection, hold: &Hold) -> Result<(), BookingError> {
    conn.prepare_cached(
        "INSERT INTO holds (id, user_id, concert_id, seat_type_id, status, price_cents, currency,
                            created_at, expires_at, provider, payment_status, payment_ref,
                            client_secret)
         VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7, ?8, ?9, 'requires_payment', ?10, ?11)",
    )?
    .execute(params![
        hold.id,
        hold.user_id,
        hold.concert_id,
        hold.seat_type_id,
        hold.price_cents,
        hold.currency,
        to_millis(hold.created_at),
        to_millis(hold.expires_at),
        hold.payment.provider.as_str(),
        hold.payment.reference,
        hold.payment.client_secret,
    ])
    .map_err(constraint_to_rule)?;
    Ok(())
}

/// Lets a hold go before it expires; its seat returns at once.
pub(super) fn release(
    conn: &Connection,
    staged: &mut Staged,
    hold_id: Uuid,
    user_id: Uuid,
    now: OffsetDateTime,
) -> Result<Hold, BookingError> {
    let hold = own_hold(conn, hold_id, Some(user_id))?;
    if hold.clone().as_of(now).status != HoldStatus::Active {
        return Err(BookingError::HoldNotActive);
    }
    let released = conn
        .prepare_cached(&format!(
            "UPDATE holds SET status = 'released', ended_at = ?1
             WHERE id = ?2 AND status = 'active' RETURNING {HOLD_COLUMNS}"
        ))?
        .query_row(params![to_millis(now), hold_id], hold_from_row)
        .map_err(constraint_to_rule)?;
    staged.freed.push((hold.seat_type_id, hold.concert_id));
    stage_remaining(conn, staged, [(hold.seat_type_id, hold.concert_id)])?;
    Ok(released)
}

/// Makes a paid hold a confirmed booking: before its expiry from its own seat, after it (a
/// payment that arrived late) from a free seat of the same type if there is one. The seat checks
/// are the schema's: the booking's insert refuses an oversell, a closed sale, a second booking.
///
/// A refusal that leaves the money without a seat — the hold was released, or no seat, a closed
/// sale, another booking of the user — is for the caller to refund ([`refund_unbookable`]),
/// after rolling this back.
pub(super) fn complete(
    conn: &Connection,
    staged: &mut Staged,
    paid: &Paid,
    now: OffsetDateTime,
) -> Result<Hold, BookingError> {
    let hold = own_hold(conn, paid.hold_id, paid.user_id)?;
    if !first_delivery(conn, paid.event.as_deref(), "succeeded", &hold, now)? {
        return Ok(hold);
    }
    match hold.status {
        // Paid before: the same charge (its key is the hold), nothing more to do.
        HoldStatus::Completed => return Ok(hold),
        HoldStatus::Released => return Err(BookingError::HoldNotActive),
        HoldStatus::Active | HoldStatus::Expired => {}
    }
    let booking = paid_booking(&hold, paid, now);
    let completed = conn
        .prepare_cached(&format!(
            "UPDATE holds SET status = 'completed', ended_at = coalesce(ended_at, ?1),
                    booking_id = ?2, payment_status = 'succeeded', payment_ref = ?3
             WHERE id = ?4 RETURNING {HOLD_COLUMNS}"
        ))?
        .query_row(
            params![to_millis(now), booking.id, paid.reference, hold.id],
            hold_from_row,
        )
        .map_err(constraint_to_rule)?;
    store::insert_booking(conn, &booking)?;
    if let Some(reference) = &paid.reference {
        // The charge is the hold's, not one made in the booking's own transaction.
        conn.prepare_cached("UPDATE bookings SET payment_ref = ?1 WHERE id = ?2")?
            .execute(params![reference, booking.id])?;
    }
    store::enqueue_emails(conn, EmailKind::BookingConfirmed, &[booking.id], now)?;
    stage_remaining(conn, staged, [(hold.seat_type_id, hold.concert_id)])?;
    staged.emails += 1;
    staged
        .webhooks
        .push((WebhookEvent::BookingConfirmed, booking.id));
    Ok(completed)
}

/// Queues the refund of a payment taken for a hold that could not be completed, and marks an
/// active hold past its expiry expired.
pub(super) fn refund_unbookable(
    conn: &Connection,
    staged: &mut Staged,
    paid: &Paid,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let hold = own_hold(conn, paid.hold_id, paid.user_id)?;
    first_delivery(conn, paid.event.as_deref(), "succeeded", &hold, now)?;
    if hold.status == HoldStatus::Active && hold.clone().as_of(now).status == HoldStatus::Expired {
        conn.prepare_cached(
            "UPDATE holds SET status = 'expired', ended_at = ?1 WHERE id = ?2 AND status = 'active'",
        )?
        .execute(params![to_millis(now), hold.id])?;
        staged.freed.push((hold.seat_type_id, hold.concert_id));
        stage_remaining(conn, staged, [(hold.seat_type_id, hold.concert_id)])?;
        staged.webhooks.push((WebhookEvent::HoldExpired, hold.id));
    }
    let Some(reference) = &paid.reference else {
        return Ok(());
    };
    enqueue_refund(conn, &hold, None, reference, now)
}

/// Marks the payment of an active hold `failed` (the provider refused an attempt); the hold
/// stays active until it is paid after all or ends. Any other hold is answered as it is.
pub(super) fn fail(
    conn: &Connection,
    failed: &Failed,
    now: OffsetDateTime,
) -> Result<Hold, BookingError> {
    let hold = own_hold(conn, failed.hold_id, failed.user_id)?;
    if !first_delivery(conn, failed.event.as_deref(), "failed", &hold, now)? {
        return Ok(hold);
    }
    let marked = conn
        .prepare_cached(&format!(
            "UPDATE holds SET payment_status = 'failed'
             WHERE id = ?1 AND status = 'active' AND expires_at > ?2
               AND payment_status = 'requires_payment'
             RETURNING {HOLD_COLUMNS}"
        ))?
        .query_row(params![hold.id, to_millis(now)], hold_from_row)
        .optional()?;
    Ok(marked.unwrap_or(hold).as_of(now))
}

/// Queues a refund of `reference` (the whole price of `hold`), unless one is queued already.
pub(super) fn enqueue_refund(
    conn: &Connection,
    hold: &Hold,
    booking_id: Option<Uuid>,
    reference: &str,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    if hold.price_cents == 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO refunds (id, hold_id, booking_id, provider, payment_ref, amount_cents,
                              currency, created_at, available_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (payment_ref) DO NOTHING",
    )?
    .execute(params![
        Uuid::now_v7(),
        hold.id,
        booking_id,
        hold.payment.provider.as_str(),
        reference,
        hold.price_cents,
        hold.currency,
        to_millis(now),
    ])?;
    Ok(())
}
