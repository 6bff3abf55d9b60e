//! The single writer of the Booking store, with group commit.
//!
//! Every change to the Booking store — bookings, cancellations, provisioning, the outbox — is a
//! [`Command`] sent to one thread that owns the store's only write connection. The thread takes the
//! first waiting command and every other one already queued (up to [`MAX_BATCH`]), runs them all
//! in one transaction and commits once. With `synchronous=FULL` the commit is one fsync for the
//! whole batch, which is what lets a hot seat type take thousands of durable bookings per second.
//! Callers are answered only after the commit returns: a 201 means the booking is on disk. A
//! command that fails is undone (its one refused statement by SQLite, or its savepoint) and is
//! answered with its own error; its neighbours commit. Consecutive bookings without an
//! Idempotency-Key are written with multi-row statements (`book_run`) and answered exactly as
//! one by one. If the commit itself fails, every command of the batch is answered `unavailable`
//! (none of them happened) and the in-memory view is reloaded.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use boxoffice_shared::clients::{ConcertInventory, EmailKind, OutboxMessage};
use boxoffice_shared::clock::{SharedClock, from_millis, to_millis};
use rusqlite::{Connection, TransactionBehavior};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::checkpoint::Checkpointer;
use crate::domain::{
    Booking, BookingStatus, IdempotencyKey, SaleState, request_fingerprint, sale_state,
};
use crate::error::BookingError;
use crate::events::AvailabilityEvent;
use crate::view::{ConcertSale, Seat, SharedInventory, bookable};
use crate::write as store;

/// The most commands committed in one transaction.
pub const MAX_BATCH: usize = 1024;

/// A booking request that passed the view's checks.
#[derive(Debug, Clone)]
pub struct BookRequest {
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub key: Option<IdempotencyKey>,
}

/// What a booking request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookOutcome {
    Created(Booking),
    /// The same Idempotency-Key and body were seen before: the saved answer.
    Replayed {
        status: u16,
        body: String,
    },
}

/// Who asks to cancel a booking.
#[derive(Debug, Clone, Copy)]
pub struct Canceller {
    pub user_id: Uuid,
    pub is_admin: bool,
}

type Reply<T> = oneshot::Sender<Result<T, BookingError>>;

/// A change to the Booking store.
#[derive(Debug)]
pub enum Command {
    Book(BookRequest, Reply<BookOutcome>),
    Cancel(Uuid, Canceller, Reply<Booking>),
    Provision(ConcertInventory, Reply<()>),
    SetCapacity(Uuid, i64, Reply<(i64, i64)>),
    CancelConcert(Uuid, Reply<()>),
    ClaimOutbox(u32, Duration, Reply<Vec<OutboxMessage>>),
    AcknowledgeOutbox(Vec<Uuid>, Reply<()>),
    RetryOutbox(Uuid, OffsetDateTime, String, Reply<()>),
}

/// Changes a batch makes to the in-memory view, applied only once the batch is committed.
#[derive(Default)]
struct Effects {
    remaining: HashMap<Uuid, i64>,
    capacity: HashMap<Uuid, i64>,
    concerts: HashMap<Uuid, ConcertSale>,
    new_seats: Vec<(Uuid, Seat)>,
    touched: HashSet<Uuid>,
    emails: usize,
    /// A savepoint could not be released or rolled back: the batch must not commit.
    poisoned: bool,
}

/// The view changes of one command, kept apart until its savepoint is released, so that a
/// command that fails halfway leaves no trace in the view either.
#[derive(Default)]
struct Staged {
    /// A statement failed after this command had already written: the batch must not commit.
    poisoned: bool,
    remaining: Vec<(Uuid, i64)>,
    capacity: Vec<(Uuid, i64)>,
    concerts: Vec<(Uuid, ConcertSale)>,
    new_seats: Vec<(Uuid, Seat)>,
    touched: Vec<Uuid>,
    emails: usize,
}

impl Effects {
    fn absorb(&mut self, staged: Staged, succeeded: bool) {
        self.poisoned |= staged.poisoned;
        if !succeeded {
            return;
        }
        self.remaining.extend(staged.remaining);
        self.capacity.extend(staged.capacity);
        self.concerts.extend(staged.concerts);
        self.new_seats.extend(staged.new_seats);
        self.touched.extend(staged.touched);
        self.emails += staged.emails;
    }

    /// `remaining` of a seat type as this batch has left it so far.
    fn remaining(&self, view: &SharedInventory, seat_type_id: Uuid) -> Option<i64> {
        self.remaining.get(&seat_type_id).copied().or_else(|| {
            view.read()
                .seats
                .get(&seat_type_id)
                .map(|seat| seat.remaining)
        })
    }

    /// A concert's sale as this batch has left it so far.
    fn sale(&self, view: &SharedInventory, concert_id: Uuid) -> Option<ConcertSale> {
        self.concerts
            .get(&concert_id)
            .cloned()
            .or_else(|| view.read().concerts.get(&concert_id).cloned())
    }
}

/// An answer to send once the batch's fate is known.
type Answer = Box<dyn FnOnce(bool) + Send>;

fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, BookingError>) -> Answer {
    Box::new(move |committed| {
        let result = if committed {
            result
        } else {
            result.and(Err(BookingError::WriterStopped))
        };
        // The caller may have gone away (client disconnected); the work stands regardless.
        let _ = reply.send(result);
    })
}

/// The writer thread's state.
pub struct Writer {
    conn: Connection,
    view: SharedInventory,
    clock: SharedClock,
    events: broadcast::Sender<AvailabilityEvent>,
    /// Poked after a commit that queued emails, so the worker sends them without waiting.
    on_email: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// Poked when a concert's start changes, so the closing timer re-plans.
    on_schedule: std::sync::Arc<tokio::sync::Notify>,
    /// Copies the log back into the database file off this thread ([`crate::checkpoint`]).
    checkpointer: Option<Checkpointer>,
}

impl Writer {
    pub fn new(
        conn: Connection,
        view: SharedInventory,
        clock: SharedClock,
        events: broadcast::Sender<AvailabilityEvent>,
        on_email: Option<std::sync::Arc<tokio::sync::Notify>>,
        on_schedule: std::sync::Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            conn,
            view,
            clock,
            events,
            on_email,
            on_schedule,
            checkpointer: None,
        }
    }

    /// Runs until every sender of `commands` is gone, committing what is queued in batches.
    /// Blocking: run it on a thread of its own.
    pub fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        self.start_checkpointer();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = commands.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let size = batch.len();
            self.commit_batch(batch.drain(..));
            metrics::histogram!("booking_writer_batch_size").record(size as f64);
        }
        // Stops the checkpoint thread after a last checkpoint.
        self.checkpointer = None;
        tracing::debug!("booking writer stopped");
    }

    /// Hands checkpoints to a thread of their own; the writer's connection keeps only a backstop.
    /// A database in memory has no log to copy back.
    fn start_checkpointer(&mut self) {
        let Some(path) = self.conn.path().filter(|path| !path.is_empty()) else {
            return;
        };
        let started = Checkpointer::start(std::path::Path::new(path)).and_then(|checkpointer| {
            self.conn
                .pragma_update(
                    None,
                    "wal_autocheckpoint",
                    crate::checkpoint::BACKSTOP_PAGES,
                )
                .map_err(std::io::Error::other)?;
            Ok(checkpointer)
        });
        match started {
            Ok(checkpointer) => self.checkpointer = Some(checkpointer),
            Err(error) => {
                tracing::warn!(%error, "no checkpoint thread; the writer checkpoints on its own");
            }
        }
    }

    fn commit_batch(&mut self, batch: impl Iterator<Item = Command>) {
        // The store keeps milliseconds; answering with the same precision means a booking reads
        // back exactly as it was first returned.
        let now = from_millis(to_millis(self.clock.now()));
        let mut effects = Effects::default();
        let mut answers: Vec<Answer> = Vec::new();
        let outcome = (|| -> Result<(), BookingError> {
            let mut tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Bookings without an Idempotency-Key that arrive one after another go in together
            // (`book_run`); every other command, and a booking with a key, on its own, in order.
            let mut run: Vec<(BookRequest, Reply<BookOutcome>)> = Vec::new();
            for command in batch {
                match command {
                    Command::Book(request, reply) if request.key.is_none() => {
                        run.push((request, reply));
                    }
                    command => {
                        if !run.is_empty() {
                            book_run(
                                &tx,
                                &self.view,
                                std::mem::take(&mut run),
                                now,
                                &mut effects,
                                &mut answers,
                            );
                        }
                        answers.push(apply(&mut tx, &self.view, command, now, &mut effects));
                    }
                }
            }
            if !run.is_empty() {
                book_run(&tx, &self.view, run, now, &mut effects, &mut answers);
            }
            if effects.poisoned {
                tx.rollback()?;
                return Err(BookingError::Corrupt(
                    "a savepoint failed; the batch was rolled back".into(),
                ));
            }
            tx.commit()?;
            Ok(())
        })();
        let committed = match outcome {
            Ok(()) => {
                if let Some(checkpointer) = &self.checkpointer {
                    checkpointer.poke();
                }
                self.publish(effects);
                true
            }
            Err(error) => {
                tracing::error!(%error, "booking batch failed to commit; reloading the view");
                self.reload();
                false
            }
        };
        for answer in answers {
            answer(committed);
        }
    }

    fn publish(&self, effects: Effects) {
        let schedule_changed = !effects.concerts.is_empty();
        {
            let mut view = self.view.write();
            for (id, concert) in effects.concerts {
                let seat_types = view
                    .concerts
                    .get(&id)
                    .map(|old| old.seat_types.clone())
                    .unwrap_or_default();
                view.concerts.insert(
                    id,
                    ConcertSale {
                        seat_types,
                        ..concert
                    },
                );
            }
            for (id, seat) in effects.new_seats {
                let concert_id = seat.concert_id;
                view.seats.insert(id, seat);
                if let Some(concert) = view.concerts.get_mut(&concert_id)
                    && !concert.seat_types.contains(&id)
                {
                    concert.seat_types.push(id);
                }
            }
            for (id, capacity) in effects.capacity {
                if let Some(seat) = view.seats.get_mut(&id) {
                    seat.capacity = capacity;
                }
            }
            for (id, remaining) in effects.remaining {
                if let Some(seat) = view.seats.get_mut(&id) {
                    seat.remaining = remaining;
                }
            }
        }
        for concert in effects.touched {
            // No subscriber is fine: nobody is watching this concert.
            let _ = self.events.send(AvailabilityEvent::Changed(concert));
        }
        if schedule_changed {
            self.on_schedule.notify_one();
        }
        if effects.emails > 0
            && let Some(waker) = &self.on_email
        {
            waker.notify_one();
        }
    }

    fn reload(&mut self) {
        match store::load_inventory(&self.conn) {
            Ok(inventory) => *self.view.write() = inventory,
            Err(error) => tracing::error!(%error, "cannot reload the inventory view"),
        }
    }
}

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

/// Runs one command under its own savepoint.
fn apply(
    tx: &mut rusqlite::Transaction<'_>,
    view: &SharedInventory,
    command: Command,
    now: OffsetDateTime,
    effects: &mut Effects,
) -> Answer {
    match command {
        // Bookings and cancellations run without a savepoint: every rule that can refuse them
        // is enforced by their one INSERT or UPDATE, and SQLite undoes a failed statement on its
        // own. Should a later statement of the same command fail, the whole batch is rolled back.
        Command::Book(request, reply) => {
            let mut staged = Staged::default();
            let result = book(tx, view, effects, &mut staged, &request, now);
            effects.absorb(staged, result.is_ok());
            answer(reply, result)
        }
        Command::Cancel(id, canceller, reply) => {
            let mut staged = Staged::default();
            let result = cancel(tx, view, effects, &mut staged, id, canceller, now);
            effects.absorb(staged, result.is_ok());
            answer(reply, result)
        }
        Command::Provision(concert, reply) => {
            let mut staged = Staged::default();
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
        Command::SetCapacity(seat_type_id, capacity, reply) => {
            let mut staged = Staged::default();
            let result = guarded!(tx, effects, |conn| set_capacity(
                conn,
                view,
                effects,
                &mut staged,
                seat_type_id,
                capacity,
                now
            ));
            effects.absorb(staged, result.is_ok());
            answer(reply, result)
        }
        Command::CancelConcert(concert_id, reply) => {
            let mut staged = Staged::default();
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
        Command::ClaimOutbox(limit, lease, reply) => {
            let lease_until =
                now + time::Duration::try_from(lease).unwrap_or(time::Duration::MINUTE);
            answer(reply, store::claim_outbox(tx, now, lease_until, limit))
        }
        Command::AcknowledgeOutbox(ids, reply) => {
            answer(reply, store::acknowledge_outbox(tx, &ids, now))
        }
        Command::RetryOutbox(id, at, error, reply) => {
            answer(reply, store::retry_outbox(tx, id, at, &error))
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
    bookable(now, &sale, remaining)?;
    // A second confirmed booking of the same user and concert is refused by the INSERT itself
    // (the partial unique index), which SQLite undoes on its own: no separate lookup first.
    let booking = confirmed_booking(request, &seat, now);
    store::insert_booking(conn, &booking)?;
    let rest = || -> Result<(), BookingError> {
        store::enqueue_emails(conn, EmailKind::BookingConfirmed, &[booking.id], now)?;
        if let Some(key) = &request.key {
            let body = serde_json::to_string(&booking)
                .map_err(|error| BookingError::Corrupt(error.to_string()))?;
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
fn book_run(
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
                bookable(now, &sale, 1)?;
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
            effects.absorb(staged, true);
            answers.push(answer(reply, Ok(BookOutcome::Created(booking))));
        }
    }
}

/// The booking a request makes, at the seat type's price.
fn confirmed_booking(request: &BookRequest, seat: &Seat, now: OffsetDateTime) -> Booking {
    Booking {
        id: Uuid::now_v7(),
        user_id: request.user_id,
        concert_id: request.concert_id,
        seat_type_id: request.seat_type_id,
        status: BookingStatus::Confirmed,
        price_cents: seat.price_cents,
        currency: seat.currency.clone(),
        created_at: now,
        cancelled_at: None,
    }
}

pub(crate) fn replay(
    saved: crate::store::SavedResponse,
    fingerprint: &[u8; 32],
) -> Result<BookOutcome, BookingError> {
    if saved.request_hash.as_slice() == fingerprint.as_slice() {
        Ok(BookOutcome::Replayed {
            status: saved.status,
            body: saved.body,
        })
    } else {
        Err(BookingError::IdempotencyKeyReused)
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
    {
        staged.poisoned = true;
        return Err(error);
    }
    let remaining = effects
        .remaining(view, booking.seat_type_id)
        .unwrap_or(seat.remaining);
    staged.remaining.push((booking.seat_type_id, remaining + 1));
    staged.touched.push(booking.concert_id);
    staged.emails += 1;
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
    if concert.starts_at <= now {
        return Err(BookingError::invalid("starts_at", "must be in the future"));
    }
    let added = store::provision(conn, concert)?;
    staged.concerts.push((
        concert.concert_id,
        ConcertSale {
            name: concert.name.clone(),
            venue: concert.venue.clone(),
            starts_at: concert.starts_at,
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
    if !(1..=1_000_000).contains(&capacity) {
        return Err(BookingError::invalid(
            "capacity",
            "must be between 1 and 1000000",
        ));
    }
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
    let ids: Vec<Uuid> = cancelled.iter().map(|booking| booking.id).collect();
    store::enqueue_emails(conn, EmailKind::BookingCancelled, &ids, now)?;
    staged.emails += cancelled.len();
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
