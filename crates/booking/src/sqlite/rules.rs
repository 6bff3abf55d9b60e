//! The booking rules as the SQLite writer runs them, one command at a time inside the batch's
//! transaction: each answers from the batch's view of the inventory ([`Effects`]) and stages its
//! own view changes ([`Staged`]), which count only once its statements (or its savepoint) stand.

use std::collections::HashMap;

use boxoffice_shared::clients::{ConcertInventory, EmailKind};
use rusqlite::Connection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::batch::{Answer, Effects, Job, OutboxJob, RefundJob, Staged, answer};
use super::{checkin, holds, outbox, refunds, statements as store, waitlist};
use crate::command::{
    Admin, BookOutcome, BookRequest, Canceller, Command, Reply, booking_json, confirmed_booking,
    payable_in_one_step, refunds_payment, replay, unbookable_answer,
};
use crate::domain::{
    Booking, BookingStatus, SaleState, check_capacity, check_start, check_waiting_room,
    request_fingerprint, sale_state,
};
use crate::error::BookingError;
use crate::hold::{Hold, Paid};
use crate::view::{ConcertSale, Seat, SharedInventory, bookable};
use crate::waitlist::OfferTerms;
use crate::webhook::WebhookEvent;

/// Runs `$step` (an expression using `$conn`) inside a savepoint: released on success, rolled
/// back on failure, so a failing command leaves nothing behind and its neighbours commit. If the
/// savepoint machinery itself fails, the batch is marked poisoned and rolled back whole.
macro_rules! guarded {
    ($tx:expr, $effects:expr, |$conn:ident| $step:expr) => {{
        match $tx.savepoint() {
            Err(error) => {
                $effects.poisoned = true;
                Err(BookingError::from(error))
            }
            Ok(savepoint) => {
                let result = {
                    let $conn: &Connection = &savepoint;
                    $step
                };
                // Failure: roll back to the savepoint, then release it.
                let finish = match &result {
                    Ok(_) => savepoint.commit(),
                    Err(_) => savepoint.finish(),
                };
                match finish {
                    Ok(()) => result,
                    Err(error) => {
                        $effects.poisoned = true;
                        Err(BookingError::from(error))
                    }
                }
            }
        }
    }};
}

/// Counts a command's view changes once it has run — after offering the seats it freed to
/// their waiting lists, in the same transaction, so that no later command of the batch (or
/// anyone else) can take a seat someone waits for. Should that fail, the batch must not commit.
fn hand_on(
    conn: &Connection,
    effects: &mut Effects,
    mut staged: Staged,
    terms: OfferTerms,
    now: OffsetDateTime,
    succeeded: bool,
) {
    if succeeded
        && !staged.freed.is_empty()
        && let Err(error) = waitlist::hand_on(conn, terms, now, &mut staged)
    {
        tracing::error!(%error, "could not offer freed seats to the waiting list");
        staged.poisoned = true;
    }
    effects.absorb(staged, succeeded);
}

/// Runs one job of the batch, and returns the answer to send once the batch's fate is known.
pub(super) fn apply(
    tx: &mut rusqlite::Transaction<'_>,
    view: &SharedInventory,
    job: Job,
    now: OffsetDateTime,
    terms: OfferTerms,
    effects: &mut Effects,
) -> Answer {
    match job {
        // Bookings and cancellations run without a savepoint: every rule that can refuse them
        // is enforced by their one INSERT or UPDATE, and SQLite undoes a failed statement on its
        // own. Should a later statement of the same command fail, the whole batch is rolled back.
        Job::Command(Command::Book(request, reply)) => {
            let mut staged = Staged::default();
            let result = book(tx, view, effects, &mut staged, &request, now);
            effects.absorb(staged, result.is_ok());
            answer(reply, result)
        }
        Job::Command(Command::Cancel(id, canceller, reply)) => {
            let mut staged = Staged::default();
            let result = cancel(tx, view, effects, &mut staged, id, canceller, now);
            hand_on(tx, effects, staged, terms, now, result.is_ok());
            answer(reply, result)
        }
        Job::Command(Command::Hold(request, reply)) => {
            let mut staged = Staged::default();
            let result = guarded!(tx, effects, |conn| holds::hold(
                conn,
                view,
                effects,
                &mut staged,
                &request,
                now
            ));
            effects.absorb(staged, result.is_ok());
            answer(reply, result)
        }
        Job::Command(Command::Release(hold_id, user_id, reply)) => {
            let mut staged = Staged::default();
            let result = guarded!(tx, effects, |conn| holds::release(
                conn,
                &mut staged,
                hold_id,
                user_id,
                now
            ));
            hand_on(tx, effects, staged, terms, now, result.is_ok());
            answer(reply, result)
        }
        Job::Command(Command::Pay(paid, reply)) => {
            answer(reply, pay(tx, &paid, now, terms, effects))
        }
        Job::Command(Command::PaymentFailed(failed, reply)) => {
            let result = guarded!(tx, effects, |conn| holds::fail(conn, &failed, now));
            answer(reply, result)
        }
        Job::Command(Command::ExpireHolds(reply)) => {
            let mut staged = Staged::default();
            let result = guarded!(tx, effects, |conn| holds::expire_due(
                conn,
                now,
                &mut staged
            ));
            hand_on(tx, effects, staged, terms, now, result.is_ok());
            answer(reply, result)
        }
        Job::Command(Command::JoinWaitlist(request, reply)) => {
            answer(reply, waitlist::join(tx, &request, now))
        }
        Job::Command(Command::LeaveWaitlist(entry_id, user_id, reply)) => {
            let mut staged = Staged::default();
            let result = guarded!(tx, effects, |conn| waitlist::leave(
                conn,
                &mut staged,
                entry_id,
                user_id,
                now
            ));
            hand_on(tx, effects, staged, terms, now, result.is_ok());
            answer(reply, result)
        }
        Job::Command(Command::Administer(admin)) => {
            administer(tx, view, admin, now, terms, effects)
        }
        Job::Outbox(job) => change_outbox(tx, job, now),
        Job::Refunds(job) => change_refunds(tx, job, now),
        Job::CheckIn(scan, reply) => answer(reply, checkin::check_in(tx, &scan, now, effects)),
        Job::Webhooks(job) => super::webhooks::apply(tx, job, now),
    }
}

/// Records a payment: the hold becomes a booking, or — when the hold ended with no seat to give
/// (released, or expired and sold out since), the sale closed or the user booked otherwise — the
/// payment is queued for a refund and the refusal is the answer. Each step under its own
/// savepoint, so a refused completion leaves nothing behind but the refund.
fn pay(
    tx: &mut rusqlite::Transaction<'_>,
    paid: &Paid,
    now: OffsetDateTime,
    terms: OfferTerms,
    effects: &mut Effects,
) -> Result<Hold, BookingError> {
    let mut staged = Staged::default();
    let completed = guarded!(tx, effects, |conn| holds::complete(
        conn,
        &mut staged,
        paid,
        now
    ));
    match completed {
        Err(refused) if refunds_payment(&refused) => {
            let mut staged = Staged::default();
            let queued = guarded!(tx, effects, |conn| holds::refund_unbookable(
                conn,
                &mut staged,
                paid,
                now
            ));
            hand_on(tx, effects, staged, terms, now, queued.is_ok());
            queued?;
            Err(unbookable_answer(refused))
        }
        result => {
            hand_on(tx, effects, staged, terms, now, result.is_ok());
            result
        }
    }
}

/// Runs one inventory change under its own savepoint.
fn administer(
    tx: &mut rusqlite::Transaction<'_>,
    view: &SharedInventory,
    admin: Admin,
    now: OffsetDateTime,
    terms: OfferTerms,
    effects: &mut Effects,
) -> Answer {
    let mut staged = Staged::default();
    match admin {
        Admin::Provision(concert, reply) => {
            let result = guarded!(tx, effects, |conn| provision(
                conn,
                view,
                effects,
                &mut staged,
                &concert,
                now
            ));
            effects.absorb(staged, result.is_ok());
            answer(reply, result)
        }
        Admin::SetCapacity(seat_type_id, capacity, reply) => {
            let result = guarded!(tx, effects, |conn| set_capacity(
                conn,
                view,
                effects,
                &mut staged,
                seat_type_id,
                capacity,
                now
            ));
            hand_on(tx, effects, staged, terms, now, result.is_ok());
            // Seats the larger capacity gave went to the waiting list first: answer what is left.
            let result = result.map(|(capacity, remaining)| {
                let left = effects.remaining.get(&seat_type_id).copied();
                (capacity, left.unwrap_or(remaining))
            });
            answer(reply, result)
        }
        Admin::CancelConcert(concert_id, reply) => {
            let result = guarded!(tx, effects, |conn| cancel_concert(
                conn,
                view,
                effects,
                &mut staged,
                concert_id,
                now
            ));
            effects.absorb(staged, result.is_ok());
            answer(reply, result)
        }
    }
}

/// Claims, completes or retries refunds, within the batch's transaction.
fn change_refunds(tx: &rusqlite::Transaction<'_>, job: RefundJob, now: OffsetDateTime) -> Answer {
    match job {
        RefundJob::Claim(limit, lease, reply) => {
            let lease_until =
                now + time::Duration::try_from(lease).unwrap_or(time::Duration::MINUTE);
            answer(reply, refunds::claim(tx, now, lease_until, limit))
        }
        RefundJob::Done(id, reply) => answer(reply, refunds::done(tx, id, now)),
        RefundJob::Retry(id, at, error, reply) => answer(reply, refunds::retry(tx, id, at, &error)),
    }
}

/// Claims, acknowledges or retries outbox messages, within the batch's transaction.
fn change_outbox(tx: &rusqlite::Transaction<'_>, job: OutboxJob, now: OffsetDateTime) -> Answer {
    match job {
        OutboxJob::Claim(limit, lease, reply) => {
            let lease_until =
                now + time::Duration::try_from(lease).unwrap_or(time::Duration::MINUTE);
            answer(reply, outbox::claim_outbox(tx, now, lease_until, limit))
        }
        OutboxJob::Acknowledge(ids, reply) => {
            answer(reply, outbox::acknowledge_outbox(tx, &ids, now))
        }
        OutboxJob::Retry(id, at, error, reply) => {
            answer(reply, outbox::retry_outbox(tx, id, at, &error))
        }
    }
}

fn book(
    conn: &Connection,
    view: &SharedInventory,
    effects: &Effects,
    staged: &mut Staged,
    request: &BookRequest,
    now: OffsetDateTime,
) -> Result<BookOutcome, BookingError> {
    let fingerprint = request_fingerprint(request.concert_id, request.seat_type_id);
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
    payable_in_one_step(request, &seat)?;
    bookable(now, &sale, remaining > 0)?;
    // A second confirmed booking of the same user and concert is refused by the INSERT itself
    // (the partial unique index), which SQLite undoes on its own: no separate lookup first.
    let booking = confirmed_booking(request, &seat, now);
    store::insert_booking(conn, &booking)?;
    let rest = || -> Result<(), BookingError> {
        store::enqueue_emails(conn, EmailKind::BookingConfirmed, &[booking.id], now)?;
        if let Some(key) = &request.key {
            let body = booking_json(&booking)?;
            store::save_response(
                conn,
                request.user_id,
                key.as_str(),
                &fingerprint,
                201,
                &body,
                now,
            )?;
        }
        Ok(())
    };
    if let Err(error) = rest() {
        staged.poisoned = true;
        return Err(error);
    }
    staged.remaining.push((request.seat_type_id, remaining - 1));
    staged.touched.push(request.concert_id);
    staged.emails += 1;
    staged
        .webhooks
        .push((WebhookEvent::BookingConfirmed, booking.id));
    Ok(BookOutcome::Created(booking))
}

/// Books a run of requests without Idempotency-Keys with as few statements as possible.
///
/// SQLite journals every page a statement first changes, because the booking's triggers may abort
/// it; one multi-row `INSERT` for the whole run journals each page once instead of once per
/// booking. The outcome is exactly that of booking them one by one, in order ([`book`]):
/// - requests the view refuses (no such concert or seat type, closed) are answered first and
///   written nowhere;
/// - the rest go in together only when every seat type they want has a seat for each of them,
///   so that no request is refused for a seat an earlier one of the run might not take;
///   otherwise the run is booked one by one;
/// - a multi-row `INSERT` the store refuses (a user booking twice, say) is undone whole by
///   SQLite, and that part of the run is booked one by one, each with its own answer.
pub(super) fn book_run(
    conn: &Connection,
    view: &SharedInventory,
    run: Vec<(BookRequest, Reply<BookOutcome>)>,
    now: OffsetDateTime,
    effects: &mut Effects,
    answers: &mut Vec<Answer>,
) {
    let mut wanted: HashMap<Uuid, i64> = HashMap::new();
    let mut open = Vec::with_capacity(run.len());
    for (request, reply) in run {
        let checked = effects
            .sale(view, request.concert_id)
            .ok_or(BookingError::ConcertNotFound)
            .and_then(|sale| {
                let seat = view
                    .read()
                    .seat_of(request.concert_id, request.seat_type_id)?
                    .clone();
                // Open for sale: the seat count is settled below, for the run as a whole.
                bookable(now, &sale, true)?;
                Ok(seat)
            });
        match checked {
            Ok(seat) => {
                *wanted.entry(request.seat_type_id).or_default() += 1;
                open.push((request, reply, seat));
            }
            Err(error) => answers.push(answer(reply, Err(error))),
        }
    }
    let fits = wanted.iter().all(|(seat_type_id, count)| {
        effects
            .remaining(view, *seat_type_id)
            .is_some_and(|remaining| remaining >= *count)
    });
    // One by one, exactly as `apply` books a single request.
    let book_each = |requests: Vec<(BookRequest, Reply<BookOutcome>)>,
                     effects: &mut Effects,
                     answers: &mut Vec<Answer>| {
        for (request, reply) in requests {
            let mut staged = Staged::default();
            let result = book(conn, view, effects, &mut staged, &request, now);
            effects.absorb(staged, result.is_ok());
            answers.push(answer(reply, result));
        }
    };
    if !fits || open.len() < 2 {
        book_each(
            open.into_iter()
                .map(|(request, reply, ..)| (request, reply))
                .collect(),
            effects,
            answers,
        );
        return;
    }
    let count = open.len();
    let mut rest = open.into_iter().map(|(request, reply, seat)| {
        let booking = confirmed_booking(&request, &seat, now);
        (request, reply, seat, booking)
    });
    for size in store::chunk_sizes(count) {
        let part: Vec<_> = rest.by_ref().take(size).collect();
        let rows: Vec<&Booking> = part.iter().map(|(.., booking)| booking).collect();
        if store::insert_bookings(conn, &rows).is_err() {
            // Undone whole by SQLite: book these one by one, each with its own answer.
            book_each(
                part.into_iter()
                    .map(|(request, reply, ..)| (request, reply))
                    .collect(),
                effects,
                answers,
            );
            continue;
        }
        let booked: Vec<Uuid> = part.iter().map(|(.., booking)| booking.id).collect();
        if let Err(error) = store::enqueue_emails(conn, EmailKind::BookingConfirmed, &booked, now) {
            // The bookings are written and their emails are not: the batch must not commit, and
            // none of its commands happened.
            tracing::error!(%error, "could not queue the confirmation emails of a booking run");
            effects.poisoned = true;
            for (_, reply, ..) in part {
                answers.push(answer(reply, Err(BookingError::WriterStopped)));
            }
            continue;
        }
        for (request, reply, seat, booking) in part {
            let mut staged = Staged::default();
            let remaining = effects
                .remaining(view, request.seat_type_id)
                .unwrap_or(seat.remaining);
            staged.remaining.push((request.seat_type_id, remaining - 1));
            staged.touched.push(request.concert_id);
            staged.emails += 1;
            staged
                .webhooks
                .push((WebhookEvent::BookingConfirmed, booking.id));
            effects.absorb(staged, true);
            answers.push(answer(reply, Ok(BookOutcome::Created(booking))));
        }
    }
}

fn cancel(
    conn: &Connection,
    view: &SharedInventory,
    effects: &Effects,
    staged: &mut Staged,
    booking_id: Uuid,
    canceller: Canceller,
    now: OffsetDateTime,
) -> Result<Booking, BookingError> {
    let booking = store::booking_by_id(conn, booking_id)?
        .filter(|booking| canceller.is_admin || booking.user_id == canceller.user_id)
        .ok_or(BookingError::BookingNotFound)?;
    if booking.status == BookingStatus::Cancelled {
        return Err(BookingError::AlreadyCancelled);
    }
    let sale = effects.sale(view, booking.concert_id);
    let seat = view.read().seats.get(&booking.seat_type_id).cloned();
    let (Some(sale), Some(seat)) = (sale, seat) else {
        return Err(BookingError::Corrupt(format!(
            "booking {booking_id} has no inventory"
        )));
    };
    if sale_state(now, sale.starts_at, false) == SaleState::Started {
        return Err(BookingError::BookingClosed);
    }
    let cancelled =
        store::cancel_booking(conn, booking_id, now)?.ok_or(BookingError::AlreadyCancelled)?;
    if let Err(error) =
        store::enqueue_emails(conn, EmailKind::BookingCancelled, &[cancelled.id], now)
            .and_then(|()| refunds::queue_for_bookings(conn, std::slice::from_ref(&cancelled), now))
    {
        staged.poisoned = true;
        return Err(error);
    }
    let remaining = effects
        .remaining(view, booking.seat_type_id)
        .unwrap_or(seat.remaining);
    staged.remaining.push((booking.seat_type_id, remaining + 1));
    staged.touched.push(booking.concert_id);
    staged
        .freed
        .push((booking.seat_type_id, booking.concert_id));
    staged.emails += 1;
    staged
        .webhooks
        .push((WebhookEvent::BookingCancelled, cancelled.id));
    staged.cancelled.push(cancelled.id);
    Ok(cancelled)
}

fn provision(
    conn: &Connection,
    view: &SharedInventory,
    effects: &Effects,
    staged: &mut Staged,
    concert: &ConcertInventory,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    if let Some(current) = effects.sale(view, concert.concert_id)
        && sale_state(now, current.starts_at, current.cancelled) != SaleState::Open
    {
        return Err(BookingError::BookingClosed);
    }
    check_start(concert.starts_at, now)?;
    check_waiting_room(concert.waiting_room)?;
    let added = store::provision(conn, concert)?;
    staged.concerts.push((
        concert.concert_id,
        ConcertSale {
            name: concert.name.clone(),
            venue: concert.venue.clone(),
            starts_at: concert.starts_at,
            opens_at: concert.sales_open_at,
            waiting_room: concert.waiting_room,
            cancelled: false,
            seat_types: Vec::new(),
        },
    ));
    for seat in added {
        staged.new_seats.push((
            seat.seat_type_id,
            Seat {
                concert_id: concert.concert_id,
                name: seat.name,
                price_cents: seat.price_cents,
                currency: seat.currency,
                capacity: seat.capacity,
                remaining: seat.capacity,
            },
        ));
    }
    staged.touched.push(concert.concert_id);
    Ok(())
}

fn set_capacity(
    conn: &Connection,
    view: &SharedInventory,
    effects: &Effects,
    staged: &mut Staged,
    seat_type_id: Uuid,
    capacity: i64,
    now: OffsetDateTime,
) -> Result<(i64, i64), BookingError> {
    check_capacity(capacity)?;
    let concert_id = view
        .read()
        .seats
        .get(&seat_type_id)
        .map(|seat| seat.concert_id);
    let concert_id = concert_id.ok_or(BookingError::SeatTypeNotFound)?;
    let sale = effects
        .sale(view, concert_id)
        .ok_or(BookingError::ConcertNotFound)?;
    if sale_state(now, sale.starts_at, sale.cancelled) != SaleState::Open {
        return Err(BookingError::BookingClosed);
    }
    let (capacity, remaining) =
        store::set_capacity(conn, seat_type_id, capacity)?.ok_or(BookingError::SeatTypeNotFound)?;
    staged.capacity.push((seat_type_id, capacity));
    staged.remaining.push((seat_type_id, remaining));
    staged.touched.push(concert_id);
    staged.freed.push((seat_type_id, concert_id));
    Ok((capacity, remaining))
}

fn cancel_concert(
    conn: &Connection,
    view: &SharedInventory,
    effects: &Effects,
    staged: &mut Staged,
    concert_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let sale = effects
        .sale(view, concert_id)
        .ok_or(BookingError::ConcertNotFound)?;
    if sale.cancelled {
        return Ok(());
    }
    if sale_state(now, sale.starts_at, false) == SaleState::Started {
        return Err(BookingError::BookingClosed);
    }
    let cancelled = store::cancel_sale(conn, concert_id, now)?;
    let mut returned: HashMap<Uuid, i64> = HashMap::new();
    for booking in &cancelled {
        if !view.read().seats.contains_key(&booking.seat_type_id) {
            return Err(BookingError::Corrupt(format!(
                "booking {} has no inventory",
                booking.id
            )));
        }
        *returned.entry(booking.seat_type_id).or_default() += 1;
    }
    for (seat_type_id, count) in returned {
        let remaining = effects.remaining(view, seat_type_id).unwrap_or(0);
        staged.remaining.push((seat_type_id, remaining + count));
    }
    // After the counts above: reads back every seat type's count, the holds' seats included.
    // The waiting lists end first, so that their offered holds' release reads as their end.
    waitlist::end_for_concert(conn, concert_id, now)?;
    holds::end_for_concert(conn, concert_id, now, staged)?;
    let ids: Vec<Uuid> = cancelled.iter().map(|booking| booking.id).collect();
    store::enqueue_emails(conn, EmailKind::BookingCancelled, &ids, now)?;
    refunds::queue_for_bookings(conn, &cancelled, now)?;
    staged.emails += cancelled.len();
    staged
        .webhooks
        .extend(ids.iter().map(|id| (WebhookEvent::BookingCancelled, *id)));
    staged.cancelled.extend(ids);
    staged.concerts.push((
        concert_id,
        ConcertSale {
            cancelled: true,
            ..sale
        },
    ));
    staged.touched.push(concert_id);
    Ok(())
}
