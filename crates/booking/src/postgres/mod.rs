//! The Booking store on PostgreSQL: the reads, the outbox, the inventory listener and the
//! group-commit writer that lets several Booking instances sell the same seats.
//!
//! - [`writer`]: this instance's writer; it settles each batch of bookings and cancellations in
//!   one transaction (`settle`) and runs inventory changes each on its own (`admin`).
//! - `checkin`: a ticket's check-in, on the pool, outside the writer.
//! - [`reads`]: a page of bookings and the inventory the view loads (the reads both engines
//!   make alike are in [`crate::rows`]); [`outbox`]: claimed with
//!   `SKIP LOCKED`, outside the writer; [`statements`]: SQL several of these share.
//! - [`view`] and [`listener`]: this instance's view, and the listener that keeps it in step with
//!   commits made through other instances.
//!
//! [`PgBooking`] is what [`crate::store::BookingStore`] calls.
//!
//! # Group commit across instances
//! A hot seat type is one row. Booking one ticket per transaction holds that row's lock across
//! the commit's WAL flush, so the row admits one booking per flush whatever the number of clients
//! or instances. Here each instance's writer takes every queued booking and cancellation (up to
//! [`crate::command::MAX_BATCH`]) and settles them all in one transaction:
//!
//! 1. lock, in one order in every instance (so instances queue behind each other instead of
//!    deadlocking): the batch's Idempotency-Keys (advisory locks), the sales involved (shared, in
//!    id order; every administrative change locks its sale exclusively first, so no sale window
//!    moves while a batch decides on it), the bookings being cancelled and every seat type
//!    involved (in id order); and read counts and sale windows from the locked rows — never from
//!    a cache;
//! 2. read which users already hold a booking for these concerts, and the saved answers of
//!    Idempotency-Keys;
//! 3. decide every request in memory, in arrival order: closed, already booked, a seat, or sold
//!    out;
//! 4. write the outcome with a handful of set-based statements (one `INSERT … SELECT FROM
//!    UNNEST` each for bookings, emails and idempotency records, one `UPDATE` for the
//!    cancellations); the schema's statement-level triggers move `remaining` by the number of
//!    rows, and its CHECK and partial unique index refuse an oversell or a duplicate whatever
//!    this code decided;
//! 5. `pg_notify` the touched concerts and commit once: one lock hold and one WAL flush for the
//!    whole batch. Every caller is answered only after the commit.
//!
//! A booking insert that another instance beat (the same user booking the same concert there at
//! the same moment) is skipped by `ON CONFLICT DO NOTHING` and answered `already_booked`; the seat
//! it would have taken goes to the next request of the batch that was refused for want of it. A
//! retry with the same Idempotency-Key waits on the key's lock for the instance settling the first
//! request, then reads its saved answer and replays it.
//! A deadlock or serialization failure rolls the batch back and runs it again (nobody was answered
//! yet); any other failure answers the whole batch `unavailable`.
//!
//! # The view across instances
//! Each instance keeps the in-memory view that answers sold-out and closed requests. Its own
//! writer updates it after each commit; every commit also notifies the channel
//! [`statements::CHANNEL`], and a listener in every instance follows. A booking batch that changed
//! nothing but seat counts (no hold expired, no seat offered) sends each seat type's count and
//! row version with its notice, and the other instances apply them as they arrive, without
//! reading the store; any other change is reloaded from the store, so it shows up within ~25 ms
//! (reloads are at least 25 ms apart, the notifications meanwhile reloaded together). A process skips the
//! notifications of its own booking batches: its writer has published their seats to the view. Each
//! time the listener starts listening (at start, after a lost connection) it reloads the whole
//! view, since commits made before were not notified to it. Row versions keep these writers from
//! taking the view back to an older state when they race ([`view::PgView`]). A view that is behind can
//! only refuse a request the store would have granted (for those milliseconds); it can never
//! grant one the store would refuse, since the writer decides on locked rows.

mod admin;
mod checkin;
mod holds;
pub mod listener;
pub mod outbox;
pub mod reads;
mod refunds;
mod settle;
pub mod statements;
pub mod view;
mod waitlist;
pub mod webhooks;
pub mod writer;

use std::time::Duration;

use boxoffice_shared::clients::OutboxMessage;
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::db::PgStore;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use self::view::PgView;
use self::writer::PgWriter;
use crate::checkin::{CheckedIn, Scan};
use crate::command::{Command, NotQueued, QUEUE_CAPACITY, Refund, SalesRows, Wiring};
use crate::domain::{Booking, BookingStatus, BookingsOf};
use crate::error::BookingError;
use crate::hold::{Hold, HoldStatus};
use crate::rows;
use crate::view::SharedInventory;

/// The PostgreSQL migrations of the Booking store, embedded in the binary.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The PostgreSQL store of a running service: its pool, and the queue of this instance's writer.
pub struct PgBooking {
    db: PgStore,
    writer: mpsc::Sender<Command>,
    clock: SharedClock,
    /// The owner of the outbox leases of this instance's notifications worker, if it runs here.
    instance: Option<Uuid>,
    /// The event types some webhook endpoint subscribes to: whether a check-in queues one.
    webhooks: crate::webhook::Subscribed,
}

impl PgBooking {
    /// Migrates the store, releases the outbox leases this instance's previous run left, loads
    /// the view, and starts the listener and the writer on `tasks`.
    pub async fn start(
        db: PgStore,
        wiring: &Wiring,
        tasks: &TaskTracker,
    ) -> anyhow::Result<(Self, SharedInventory)> {
        db.migrate(&MIGRATIONS).await?;
        // Only this instance's own leases are released: other instances' workers may be holding
        // theirs right now.
        if let Some(instance) = wiring.instance {
            let released = outbox::release_leases(&db.pool, instance, wiring.clock.now()).await?;
            if released > 0 {
                tracing::info!(released, "released outbox leases left by the previous run");
            }
        }
        let view = PgView::load(&db.pool).await?;
        wiring
            .webhooks
            .set(webhooks::subscriptions(&db.pool).await?);
        tasks.spawn(webhooks::follow_subscriptions(
            db.pool.clone(),
            wiring.webhooks.clone(),
            wiring.stop.clone(),
        ));
        // This process's writer and listener: the listener skips what the writer notified, which
        // the writer has put in the view itself.
        let origin = Uuid::new_v4();
        tasks.spawn(listener::run_listener(
            db.pool.clone(),
            view.clone(),
            wiring.events.clone(),
            wiring.schedule.clone(),
            origin,
            wiring.stop.clone(),
        ));
        let (writer, commands) = mpsc::channel(QUEUE_CAPACITY);
        let task = PgWriter::new(db.pool.clone(), view.clone(), wiring, origin);
        tasks.spawn(task.run(commands));
        let store = Self {
            db,
            writer,
            clock: wiring.clock.clone(),
            instance: wiring.instance,
            webhooks: wiring.webhooks.clone(),
        };
        Ok((store, view.inventory().clone()))
    }

    /// Queues `command` if the queue has room now.
    pub fn try_submit(&self, command: Command) -> Result<(), NotQueued> {
        self.writer.try_send(command).map_err(|error| match error {
            TrySendError::Full(command) => NotQueued::Full(Box::new(command)),
            TrySendError::Closed(_) => NotQueued::Stopped,
        })
    }

    pub async fn submit(&self, command: Command) -> Result<(), BookingError> {
        self.writer
            .send(command)
            .await
            .map_err(|_| BookingError::WriterStopped)
    }

    pub fn writer_running(&self) -> bool {
        !self.writer.is_closed()
    }

    /// A concert or seat type provisioned through another instance reaches this view through
    /// the listener, a moment after its commit.
    pub fn view_may_lag(&self) -> bool {
        true
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.db.ping().await
    }

    pub async fn list_bookings(
        &self,
        of: BookingsOf,
        status: Option<BookingStatus>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Booking>, BookingError> {
        reads::list_bookings(&self.db.pool, of, status, before, limit).await
    }

    pub async fn list_holds(
        &self,
        user_id: Uuid,
        status: Option<HoldStatus>,
        before: Option<Uuid>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<Vec<Hold>, BookingError> {
        reads::list_holds(&self.db.pool, user_id, status, before, limit, now).await
    }

    pub async fn booked_or_held_since(
        &self,
        user_id: Uuid,
        concert_id: Uuid,
        since: OffsetDateTime,
    ) -> Result<bool, BookingError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM bookings
                            WHERE user_id = $1 AND concert_id = $2 AND created_at >= $3)
                 OR EXISTS (SELECT 1 FROM holds
                            WHERE user_id = $1 AND concert_id = $2 AND created_at >= $3)",
        )
        .bind(user_id)
        .bind(concert_id)
        .bind(since)
        .fetch_one(&self.db.pool)
        .await?)
    }

    /// The pool clients' reads go to; the reads both engines make alike ([`crate::rows`]) run
    /// on it.
    pub fn read_pool(&self) -> &sqlx::PgPool {
        &self.db.pool
    }

    pub async fn sales(&self, concert_id: Uuid) -> Result<Option<SalesRows>, BookingError> {
        rows::sales(
            self.read_pool(),
            concert_id,
            reads::SALES_SEATS,
            reads::SALES_BY_DAY,
        )
        .await
    }

    /// Decides a scan of a genuine ticket and checks it in when it admits.
    pub async fn check_in(&self, scan: Scan) -> Result<CheckedIn, BookingError> {
        checkin::check_in(&self.db.pool, &scan, self.clock.now(), &self.webhooks).await
    }

    pub async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxMessage>, BookingError> {
        let now = self.clock.now();
        let until = now + time::Duration::try_from(lease).unwrap_or(time::Duration::MINUTE);
        outbox::claim_outbox(&self.db.pool, self.instance, now, until, limit).await
    }

    pub async fn acknowledge_outbox(&self, message_ids: &[Uuid]) -> Result<(), BookingError> {
        outbox::acknowledge_outbox(&self.db.pool, message_ids, self.clock.now()).await
    }

    pub async fn claim_refunds(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Refund>, BookingError> {
        let now = self.clock.now();
        let until = now + time::Duration::try_from(lease).unwrap_or(time::Duration::MINUTE);
        refunds::claim(&self.db.pool, now, until, limit).await
    }

    pub async fn refunded(&self, id: Uuid) -> Result<(), BookingError> {
        refunds::done(&self.db.pool, id, self.clock.now()).await
    }

    pub async fn retry_refund(
        &self,
        id: Uuid,
        retry_at: OffsetDateTime,
        error: String,
    ) -> Result<(), BookingError> {
        refunds::retry(&self.db.pool, id, retry_at, &error).await
    }

    pub async fn retry_outbox(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: String,
    ) -> Result<(), BookingError> {
        outbox::retry_outbox(&self.db.pool, message_id, retry_at, &error).await
    }
}
