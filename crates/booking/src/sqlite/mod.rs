//! The Booking store on SQLite: one file, one writer.
//!
//! - [`writer`]: the single writer thread, with group commit; `batch` is what one batch is made
//!   of, and `rules` the booking rules it runs per command.
//! - [`statements`]: the writer's SQL, on its own synchronous connection; `outbox`: the
//!   outbox's statements, which run in the writer's batches too.
//! - [`reads`]: what clients read that SQLite reads its own way, on the async read pool (the
//!   rest is in [`crate::rows`]).
//! - [`checkpoint`]: copies the write-ahead log back into the database file off the writer's
//!   thread.
//!
//! [`SqliteBooking`] is what [`crate::store::BookingStore`] calls.

mod batch;
mod checkin;
pub mod checkpoint;
mod holds;
mod outbox;
pub mod reads;
mod refunds;
mod rules;
pub mod statements;
mod waitlist;
pub mod webhooks;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use boxoffice_shared::clients::OutboxMessage;
use boxoffice_shared::db::SqliteStore;
use time::OffsetDateTime;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use self::batch::{Job, OutboxJob, RefundJob};
use self::writer::Writer;
use crate::checkin::{Admissions, CheckedIn, Scan};
use crate::command::{Command, NotQueued, QUEUE_CAPACITY, Refund, Reply, SalesRows, Wiring};
use crate::domain::{Booking, BookingStatus, BookingsOf};
use crate::error::BookingError;
use crate::hold::{Hold, HoldStatus};
use crate::rows;
use crate::view::SharedInventory;

/// The SQLite migrations of the Booking store, embedded in the binary.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The SQLite store of a running service: its pools, and the queue of its writer thread.
pub struct SqliteBooking {
    db: SqliteStore,
    writer: mpsc::Sender<Job>,
    /// The tickets the writer checked in: a repeat scan is answered from here.
    admitted: Arc<Admissions>,
}

impl SqliteBooking {
    /// Migrates the store, loads the view and starts the writer on a thread of its own (it
    /// blocks on SQLite); `tasks` learns when it has drained its queue and ended. Outbox leases
    /// left by a previous run are released when the notifications worker runs in this process.
    pub async fn start(
        db: SqliteStore,
        wiring: &Wiring,
        tasks: &TaskTracker,
    ) -> anyhow::Result<(Self, SharedInventory)> {
        MIGRATIONS.run(&db.write).await?;
        let (path, durability) = (db.path.clone(), db.durability);
        let local_worker = wiring.on_email.is_some();
        let now = wiring.clock.now();
        let (conn, inventory, subscribed) = tokio::task::spawn_blocking(move || {
            let conn = statements::open(&path, durability)?;
            if local_worker {
                let released = outbox::release_leases(&conn, now)?;
                if released > 0 {
                    tracing::info!(released, "released outbox leases left by the previous run");
                }
            }
            let inventory = statements::load_inventory(&conn)?;
            let subscribed = webhooks::start(&conn, now)?;
            Ok::<_, BookingError>((conn, inventory, subscribed))
        })
        .await??;
        wiring.webhooks.set(subscribed);
        let view = SharedInventory::new(inventory);
        let (writer, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let admitted = Arc::new(Admissions::default());
        let task = Writer::new(conn, view.clone(), wiring, admitted.clone());
        let (finished, writer_done) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("booking-writer".into())
            .spawn(move || {
                task.run(jobs);
                let _ = finished.send(());
            })?;
        tasks.spawn(async move {
            let _ = writer_done.await;
        });
        Ok((
            Self {
                db,
                writer,
                admitted,
            },
            view,
        ))
    }

    /// Queues `command` if the queue has room now.
    pub fn try_submit(&self, command: Command) -> Result<(), NotQueued> {
        self.writer
            .try_send(Job::Command(command))
            .map_err(|error| match error {
                TrySendError::Full(Job::Command(command)) => NotQueued::Full(Box::new(command)),
                // Only a command was sent, so only a command comes back; the queue is closed.
                TrySendError::Full(_) | TrySendError::Closed(_) => NotQueued::Stopped,
            })
    }

    pub async fn submit(&self, command: Command) -> Result<(), BookingError> {
        self.writer
            .send(Job::Command(command))
            .await
            .map_err(|_| BookingError::WriterStopped)
    }

    pub fn writer_running(&self) -> bool {
        !self.writer.is_closed()
    }

    /// The one writer updates the view with every commit: it never lags the store.
    pub fn view_may_lag(&self) -> bool {
        false
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
        reads::list_bookings(&self.db.read, of, status, before, limit).await
    }

    pub async fn list_holds(
        &self,
        user_id: Uuid,
        status: Option<HoldStatus>,
        before: Option<Uuid>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<Vec<Hold>, BookingError> {
        reads::list_holds(&self.db.read, user_id, status, before, limit, now).await
    }

    pub async fn booked_or_held_since(
        &self,
        user_id: Uuid,
        concert_id: Uuid,
        since: OffsetDateTime,
    ) -> Result<bool, BookingError> {
        Ok(sqlx::query_scalar(reads::BOOKED_OR_HELD_SINCE)
            .bind(user_id)
            .bind(concert_id)
            .bind(boxoffice_shared::clock::to_millis(since))
            .fetch_one(&self.db.read)
            .await?)
    }

    /// The pool clients' reads go to; the reads both engines make alike ([`crate::rows`]) run
    /// on it.
    pub fn read_pool(&self) -> &sqlx::SqlitePool {
        &self.db.read
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

    /// The outbox changes go through the writer: it holds the only write connection.
    pub async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxMessage>, BookingError> {
        self.outbox(|reply| OutboxJob::Claim(limit, lease, reply))
            .await
    }

    pub async fn acknowledge_outbox(&self, message_ids: &[Uuid]) -> Result<(), BookingError> {
        let ids = message_ids.to_vec();
        self.outbox(|reply| OutboxJob::Acknowledge(ids, reply))
            .await
    }

    pub async fn retry_outbox(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: String,
    ) -> Result<(), BookingError> {
        self.outbox(|reply| OutboxJob::Retry(message_id, retry_at, error, reply))
            .await
    }

    pub async fn claim_refunds(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Refund>, BookingError> {
        self.job(|reply| Job::Refunds(RefundJob::Claim(limit, lease, reply)))
            .await
    }

    pub async fn refunded(&self, id: Uuid) -> Result<(), BookingError> {
        self.job(|reply| Job::Refunds(RefundJob::Done(id, reply)))
            .await
    }

    pub async fn retry_refund(
        &self,
        id: Uuid,
        retry_at: OffsetDateTime,
        error: String,
    ) -> Result<(), BookingError> {
        self.job(|reply| Job::Refunds(RefundJob::Retry(id, retry_at, error, reply)))
            .await
    }

    async fn outbox<T>(&self, make: impl FnOnce(Reply<T>) -> OutboxJob) -> Result<T, BookingError> {
        self.job(|reply| Job::Outbox(make(reply))).await
    }

    /// Decides a scan of a genuine ticket and checks it in when it admits, in the writer — or,
    /// for a ticket the writer already checked in, from what it remembers.
    pub async fn check_in(&self, scan: Scan) -> Result<CheckedIn, BookingError> {
        if let Some(answer) = self.admitted.answer(&scan) {
            return answer;
        }
        self.job(|reply| Job::CheckIn(scan, reply)).await
    }

    /// Hands a job to the writer and waits for its answer, given after the commit.
    async fn job<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, BookingError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(make(reply))
            .await
            .map_err(|_| BookingError::WriterStopped)?;
        answer.await.map_err(|_| BookingError::WriterStopped)?
    }
}
