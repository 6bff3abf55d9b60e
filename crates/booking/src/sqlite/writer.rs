//! The single writer of the SQLite store, with group commit.
//!
//! Every change to the SQLite store — bookings, cancellations, provisioning, the outbox — is a
//! `Job` sent to one thread that owns the store's only write connection. The thread takes the
//! first waiting command and every other one already queued (up to [`crate::command::MAX_BATCH`]), runs them all
//! in one transaction and commits once. With `synchronous=FULL` the commit is one fsync for the
//! whole batch, which is what lets a hot seat type take thousands of durable bookings per second.
//! Callers are answered only after the commit returns: a 201 means the booking is on disk. A
//! command that fails is undone (its one refused statement by SQLite, or its savepoint) and is
//! answered with its own error; its neighbours commit. Consecutive bookings without an
//! Idempotency-Key are written with multi-row statements (`book_run`) and answered exactly as
//! one by one; every other job runs under the rules of `rules`. If the commit itself fails, every command of the batch is answered `unavailable`
//! (none of them happened) and the in-memory view is reloaded.

use std::sync::Arc;

use boxoffice_shared::clock::{SharedClock, from_millis, to_millis};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{Notify, broadcast, mpsc};

use super::batch::{Answer, Effects, Job, Staged};
use super::checkpoint::{self, Checkpointer};
use super::rules::{apply, book_run};
use super::{holds, statements, waitlist, webhooks};
use crate::checkin::Admissions;
use crate::command::{BookOutcome, BookRequest, Command, Reply, Wiring, fill_batch};
use crate::domain::is_due;
use crate::error::BookingError;
use crate::events::AvailabilityEvent;
use crate::view::{ConcertSale, SharedInventory};
use crate::waitlist::OfferTerms;
use crate::webhook::Subscribed;

/// The writer thread's state.
pub struct Writer {
    conn: Connection,
    view: SharedInventory,
    clock: SharedClock,
    events: broadcast::Sender<AvailabilityEvent>,
    /// Poked after a commit that queued emails, so the worker sends them without waiting.
    on_email: Option<Arc<Notify>>,
    /// Poked when a concert's start changes, so the closing timer re-plans.
    on_schedule: Arc<Notify>,
    /// Copies the log back into the database file off this thread ([`super::checkpoint`]).
    checkpointer: Option<Checkpointer>,
    /// What a waiting-list offer is.
    offers: OfferTerms,
    /// The event types some webhook endpoint subscribes to: which events a batch queues.
    webhooks: Subscribed,
    /// The tickets checked in here, for the door's repeat scans.
    admitted: Arc<Admissions>,
}

impl Writer {
    pub fn new(
        conn: Connection,
        view: SharedInventory,
        wiring: &Wiring,
        admitted: Arc<Admissions>,
    ) -> Self {
        Self {
            conn,
            view,
            clock: wiring.clock.clone(),
            events: wiring.events.clone(),
            on_email: wiring.on_email.clone(),
            on_schedule: wiring.schedule.clone(),
            checkpointer: None,
            offers: wiring.offers,
            webhooks: wiring.webhooks.clone(),
            admitted,
        }
    }

    /// Runs until every sender of `jobs` is gone, committing what is queued in batches.
    /// Blocking: run it on a thread of its own.
    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        self.start_checkpointer();
        let mut batch = Vec::with_capacity(crate::command::MAX_BATCH);
        while let Some(first) = jobs.blocking_recv() {
            fill_batch(first, &mut jobs, &mut batch);
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
                .pragma_update(None, "wal_autocheckpoint", checkpoint::BACKSTOP_PAGES)
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

    fn commit_batch(&mut self, batch: impl Iterator<Item = Job>) {
        // The store keeps milliseconds; answering with the same precision means a booking reads
        // back exactly as it was first returned.
        let now = from_millis(to_millis(self.clock.now()));
        let mut effects = Effects::default();
        let mut answers: Vec<Answer> = Vec::new();
        let outcome = (|| -> Result<(), BookingError> {
            let mut tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Holds due at the batch's time end first: every command of the batch sees their
            // seats free, as the contract's "at `expires_at`" asks.
            if self
                .view
                .read()
                .next_hold_expiry
                .is_some_and(|at| is_due(at, now))
            {
                let mut staged = Staged::default();
                holds::expire_due(&tx, now, &mut staged)?;
                waitlist::hand_on(&tx, self.offers, now, &mut staged)?;
                effects.absorb(staged, true);
            }
            // Bookings without an Idempotency-Key that arrive one after another go in together
            // (`book_run`); every other command, and a booking with a key, on its own, in order.
            let mut run: Vec<(BookRequest, Reply<BookOutcome>)> = Vec::new();
            for job in batch {
                match job {
                    Job::Command(Command::Book(request, reply)) if request.key.is_none() => {
                        run.push((request, reply));
                    }
                    job => {
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
                        answers.push(apply(
                            &mut tx,
                            &self.view,
                            job,
                            now,
                            self.offers,
                            &mut effects,
                        ));
                    }
                }
            }
            if !run.is_empty() {
                book_run(&tx, &self.view, run, now, &mut effects, &mut answers);
            }
            if effects.holds_changed {
                effects.next_hold_expiry = Some(statements::next_hold_expiry(&tx)?);
            }
            webhooks::flush(&tx, &self.webhooks, &self.view, &mut effects, now)?;
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
        // Before the answers: a cancel is answered only once its ticket is forgotten here.
        for (checked_in, nonce) in effects.admitted {
            self.admitted.admit(checked_in, nonce);
        }
        for booking_id in effects.cancelled {
            self.admitted.forget(booking_id);
        }
        let schedule_changed = !effects.concerts.is_empty() || effects.next_hold_expiry.is_some();
        {
            let mut view = self.view.write();
            if let Some(next) = effects.next_hold_expiry {
                view.next_hold_expiry = next;
            }
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
        match statements::load_inventory(&self.conn) {
            Ok(inventory) => *self.view.write() = inventory,
            Err(error) => tracing::error!(%error, "cannot reload the inventory view"),
        }
    }
}
