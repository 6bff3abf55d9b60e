//! This instance's writer on PostgreSQL: takes the queued commands, settles the bookings and
//! cancellations of each batch in one transaction (`settle`), runs inventory changes
//! each on its own (`admin`), and answers only after the commit.

use std::sync::Arc;

use boxoffice_shared::clock::SharedClock;
use sqlx::PgPool;
use tokio::sync::{Notify, broadcast, mpsc};
use uuid::Uuid;

use super::listener::refresh;
use super::settle::{Settled, settle};
use super::statements::{ms, retryable};
use super::view::PgView;
use super::{admin, holds, waitlist};
use crate::command::{
    Admin, BookOutcome, BookRequest, Canceller, Command, MAX_BATCH, Reply, Wiring, fill_batch,
};
use crate::domain::Booking;
use crate::error::BookingError;
use crate::events::AvailabilityEvent;
use crate::waitlist::OfferTerms;
use crate::webhook::Subscribed;

/// How often a batch that hit a deadlock or serialization failure is tried again.
const ATTEMPTS: usize = 4;

/// This instance's writer: settles queued bookings and cancellations in batches.
pub struct PgWriter {
    pool: PgPool,
    view: PgView,
    clock: SharedClock,
    events: broadcast::Sender<AvailabilityEvent>,
    on_email: Option<Arc<Notify>>,
    on_schedule: Arc<Notify>,
    offers: OfferTerms,
    /// The event types some webhook endpoint subscribes to: which events a change queues.
    webhooks: Subscribed,
    /// Names this process's batches in their notifications, which its own listener skips.
    origin: Uuid,
}

/// One batch's bookings and cancellations, and where their answers go.
#[derive(Default)]
struct Batch {
    books: Vec<(BookRequest, Reply<BookOutcome>)>,
    cancels: Vec<(Uuid, Canceller, Reply<Booking>)>,
}

impl PgWriter {
    pub fn new(pool: PgPool, view: PgView, wiring: &Wiring, origin: Uuid) -> Self {
        Self {
            pool,
            view,
            clock: wiring.clock.clone(),
            events: wiring.events.clone(),
            on_email: wiring.on_email.clone(),
            on_schedule: wiring.schedule.clone(),
            offers: wiring.offers,
            webhooks: wiring.webhooks.clone(),
            origin,
        }
    }

    /// Runs until every sender of `commands` is gone.
    pub async fn run(self, mut commands: mpsc::Receiver<Command>) {
        let mut queued = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = commands.recv().await {
            fill_batch(first, &mut commands, &mut queued);
            let size = queued.len();
            let mut batch = Batch::default();
            for command in queued.drain(..) {
                match command {
                    Command::Book(request, reply) => batch.books.push((request, reply)),
                    Command::Cancel(id, canceller, reply) => {
                        batch.cancels.push((id, canceller, reply));
                    }
                    Command::Administer(admin) => self.administer(admin).await,
                    // Hold commands, each in a transaction of its own.
                    Command::Hold(request, reply) => {
                        let changed = holds::hold(
                            &self.pool,
                            &request,
                            self.offers,
                            self.now(),
                            &self.webhooks,
                        )
                        .await;
                        self.after_hold(changed, reply).await;
                    }
                    Command::Release(hold_id, user_id, reply) => {
                        let changed = holds::release(
                            &self.pool,
                            hold_id,
                            user_id,
                            self.offers,
                            self.now(),
                            &self.webhooks,
                        )
                        .await;
                        self.after_hold(changed, reply).await;
                    }
                    Command::Pay(paid, reply) => {
                        let changed =
                            holds::pay(&self.pool, &paid, self.offers, self.now(), &self.webhooks)
                                .await;
                        self.after_hold(changed, reply).await;
                    }
                    Command::PaymentFailed(failed, reply) => {
                        let changed = holds::fail(&self.pool, &failed, self.now()).await;
                        self.after_hold(changed, reply).await;
                    }
                    Command::ExpireHolds(reply) => {
                        let changed =
                            holds::expire_all(&self.pool, self.offers, self.now(), &self.webhooks)
                                .await;
                        self.after_hold(changed, reply).await;
                    }
                    Command::JoinWaitlist(request, reply) => {
                        let _ = reply.send(waitlist::join(&self.pool, &request, self.now()).await);
                    }
                    Command::LeaveWaitlist(entry_id, user_id, reply) => {
                        let left = waitlist::leave(
                            &self.pool,
                            entry_id,
                            user_id,
                            self.offers,
                            self.now(),
                            &self.webhooks,
                        )
                        .await;
                        let changed = holds::Changed {
                            result: left.result,
                            concerts: left.concert.into_iter().collect(),
                            emails: left.offers,
                        };
                        self.after_hold(changed, reply).await;
                    }
                }
            }
            if !batch.books.is_empty() || !batch.cancels.is_empty() {
                self.commit_batch(batch).await;
            }
            metrics::histogram!("booking_writer_batch_size").record(size as f64);
        }
        tracing::debug!("booking writer stopped");
    }

    async fn commit_batch(&self, batch: Batch) {
        let now = ms(self.clock.now());
        let books: Vec<&BookRequest> = batch.books.iter().map(|(request, _)| request).collect();
        let cancels: Vec<(Uuid, Canceller)> = batch
            .cancels
            .iter()
            .map(|(id, canceller, _)| (*id, *canceller))
            .collect();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match settle(
                &self.pool,
                &books,
                &cancels,
                self.offers,
                now,
                &self.webhooks,
                self.origin,
            )
            .await
            {
                Err(BookingError::Store(error)) if attempt < ATTEMPTS && retryable(&error) => {
                    tracing::debug!(%error, attempt, "booking batch conflicted; running it again");
                }
                other => break other,
            }
        };
        match outcome {
            Ok(settled) => {
                self.publish(&settled);
                if settled.offers > 0 {
                    // New holds (the offers): the view learns when the next one expires.
                    let concerts: Vec<Uuid> = settled.concerts.iter().copied().collect();
                    if let Err(error) = refresh(
                        &self.pool,
                        &self.view,
                        &self.events,
                        &self.on_schedule,
                        Some(&concerts),
                    )
                    .await
                    {
                        tracing::warn!(%error, "cannot reload the concerts after offers");
                    }
                    self.on_schedule.notify_one();
                }
                for ((_, reply), result) in batch.books.into_iter().zip(settled.books) {
                    let _ = reply.send(result);
                }
                for ((_, _, reply), result) in batch.cancels.into_iter().zip(settled.cancels) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, "booking batch failed to commit");
                for (_, reply) in batch.books {
                    let _ = reply.send(Err(BookingError::WriterStopped));
                }
                for (_, _, reply) in batch.cancels {
                    let _ = reply.send(Err(BookingError::WriterStopped));
                }
            }
        }
    }

    fn publish(&self, settled: &Settled) {
        self.view.publish(&settled.seats);
        for concert in &settled.concerts {
            let _ = self.events.send(AvailabilityEvent::Changed(*concert));
        }
        self.wake_email(settled.emails);
    }

    fn wake_email(&self, emails: usize) {
        if emails > 0
            && let Some(waker) = &self.on_email
        {
            waker.notify_one();
        }
    }

    /// Provisioning, capacity changes and concert cancellations: rare, each in a transaction of
    /// its own; the view reloads the concert from the store after the commit.
    async fn administer(&self, admin: Admin) {
        let now = ms(self.clock.now());
        match admin {
            Admin::Provision(concert, reply) => {
                let result = admin::provision(&self.pool, &concert, now).await;
                self.after(concert.concert_id, reply, result).await;
            }
            Admin::SetCapacity(seat_type_id, capacity, reply) => {
                // From the store, not the view: the seat type may have been added through another
                // instance a moment ago. A seat type never changes concert.
                let concert_id = sqlx::query_scalar::<_, Uuid>(
                    "SELECT concert_id FROM seat_types WHERE id = $1",
                )
                .bind(seat_type_id)
                .fetch_optional(&self.pool)
                .await;
                match concert_id {
                    Ok(Some(concert_id)) => {
                        let result = admin::set_capacity(
                            &self.pool,
                            concert_id,
                            seat_type_id,
                            capacity,
                            self.offers,
                            now,
                            &self.webhooks,
                        )
                        .await;
                        self.after(concert_id, reply, result).await;
                    }
                    Ok(None) => {
                        let _ = reply.send(Err(BookingError::SeatTypeNotFound));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.into()));
                    }
                }
            }
            Admin::CancelConcert(concert_id, reply) => {
                let result =
                    admin::cancel_concert(&self.pool, concert_id, now, &self.webhooks).await;
                let emails = *result.as_ref().unwrap_or(&0);
                self.wake_email(emails);
                self.after(concert_id, reply, result.map(|_| ())).await;
            }
        }
    }

    /// The writer's time, at the stores' millisecond precision.
    fn now(&self) -> time::OffsetDateTime {
        ms(self.clock.now())
    }

    /// Answers a hold command once the view has reloaded the concerts whose counts it moved.
    async fn after_hold<T>(&self, changed: holds::Changed<T>, reply: Reply<T>) {
        self.wake_email(changed.emails);
        if !changed.concerts.is_empty() {
            let concerts: Vec<Uuid> = changed.concerts.into_iter().collect();
            if let Err(error) = refresh(
                &self.pool,
                &self.view,
                &self.events,
                &self.on_schedule,
                Some(&concerts),
            )
            .await
            {
                tracing::warn!(%error, "cannot reload the concerts after a hold changed");
            }
            // When the next hold expires may have moved: the sales timer plans again.
            self.on_schedule.notify_one();
        }
        let _ = reply.send(changed.result);
    }

    /// Answers an administrative command after bringing the view up to date with the store.
    async fn after<T>(&self, concert_id: Uuid, reply: Reply<T>, result: Result<T, BookingError>) {
        if let Err(error) = refresh(
            &self.pool,
            &self.view,
            &self.events,
            &self.on_schedule,
            Some(&[concert_id]),
        )
        .await
        {
            tracing::warn!(%error, "cannot reload the concert after a change");
        }
        let _ = reply.send(result);
    }
}
