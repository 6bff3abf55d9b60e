//! [`BookingService`]: what the handlers and the other services call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_shared::clients::{
    Availability, ClientError, ConcertInventory, Inventory, OutboxMessage, OutboxSource,
    WriteLimiter,
};
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::db::{SqliteStore, Store};
use boxoffice_shared::token::{AuthUser, Authenticator};
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::domain::{Booking, BookingStatus, IdempotencyKey, request_fingerprint};
use crate::engine::{BookOutcome, BookRequest, Canceller, Command, Writer};
use crate::error::BookingError;
use crate::events::{AvailabilityEvent, run_closing_timer};
use crate::store;
use crate::view::{SharedInventory, bookable};

/// How many commands may wait for the writer before callers wait to enqueue (back-pressure).
const QUEUE_CAPACITY: usize = 16 * 1024;

/// The sales report of one concert (API contract, `GET /concerts/{id}/sales`).
#[derive(Debug, Clone)]
pub struct SalesReport {
    pub seat_types: Vec<SeatSales>,
    pub bookings_confirmed: i64,
    pub bookings_cancelled: i64,
}

#[derive(Debug, Clone)]
pub struct SeatSales {
    pub id: Uuid,
    pub name: String,
    pub capacity: i64,
    pub sold: i64,
    pub remaining: i64,
    pub revenue_cents: i64,
    pub currency: String,
}

/// The notifications worker of this process, as Booking sees it.
#[derive(Debug, Clone)]
pub struct LocalWorker {
    /// Poked after every commit that queued emails.
    pub waker: Arc<Notify>,
    /// This instance, stable across restarts: the owner of the worker's outbox leases.
    pub instance: Uuid,
}

struct Inner {
    store: Store,
    /// Set when the notifications worker runs in this process.
    instance: Option<Uuid>,
    view: SharedInventory,
    writer: mpsc::Sender<Command>,
    clock: SharedClock,
    authenticator: Authenticator,
    events: broadcast::Sender<AvailabilityEvent>,
    stop: CancellationToken,
    /// The limits on writes, when the deployment sets them ([`BookingService::limit_writes`]).
    write_limiter: std::sync::OnceLock<Arc<dyn WriteLimiter>>,
}

/// The Booking service. Cheap to clone; clones share everything. The writer task stops once
/// every clone is dropped and the queue is drained.
#[derive(Clone)]
pub struct BookingService {
    inner: Arc<Inner>,
}

impl BookingService {
    /// Migrates the store, loads the view, and starts the writer and the closing timer on
    /// `tasks`. `worker` is given when the notifications worker runs in this process: its waker
    /// is poked after commits that queued emails, and outbox leases left by a previous run of
    /// this instance (which crashed) are released at start. `stop` ends the closing timer and the
    /// SSE streams.
    pub async fn start(
        store: impl Into<Store>,
        authenticator: Authenticator,
        clock: SharedClock,
        worker: Option<LocalWorker>,
        stop: CancellationToken,
        tasks: &TaskTracker,
    ) -> anyhow::Result<Self> {
        let store = store.into();
        let instance = worker.as_ref().map(|worker| worker.instance);
        let email_waker = worker.map(|worker| worker.waker);
        let (events, _) = broadcast::channel(1024);
        let (writer, commands) = mpsc::channel(QUEUE_CAPACITY);
        let schedule = Arc::new(Notify::new());
        let view = match &store {
            Store::Sqlite(db) => {
                start_sqlite_writer(db, &clock, &events, email_waker, &schedule, commands, tasks)
                    .await?
            }
            Store::Postgres(db) => {
                db.migrate(&crate::POSTGRES_MIGRATIONS).await?;
                // Only this instance's own leases are released: other instances' workers may
                // be holding theirs right now.
                if let Some(instance) = instance {
                    let released =
                        crate::pg::release_leases(&db.pool, instance, clock.now()).await?;
                    if released > 0 {
                        tracing::info!(released, "released outbox leases left by the previous run");
                    }
                }
                let view = crate::pg::PgView::load(&db.pool).await?;
                tasks.spawn(crate::pg::run_listener(
                    db.pool.clone(),
                    view.clone(),
                    events.clone(),
                    schedule.clone(),
                    stop.clone(),
                ));
                let task = crate::pg::PgWriter::new(
                    db.pool.clone(),
                    view.clone(),
                    clock.clone(),
                    events.clone(),
                    email_waker,
                    schedule.clone(),
                );
                tasks.spawn(task.run(commands));
                view.inventory().clone()
            }
        };
        tasks.spawn(run_closing_timer(
            view.clone(),
            clock.clone(),
            events.clone(),
            schedule,
            stop.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                instance,
                view,
                writer,
                clock,
                authenticator,
                events,
                stop,
                write_limiter: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Limits the writes of signed-in users (bookings and cancels) with `limiter` from now on.
    /// Without it (`BOXOFFICE_RATE_LIMIT=off`) writes are not limited.
    pub fn limit_writes(&self, limiter: Arc<dyn WriteLimiter>) {
        let _ = self.inner.write_limiter.set(limiter);
    }

    /// Counts one write by `caller` from `client` against the limits on writes; refused with
    /// `RateLimited` once a limit is met.
    pub async fn take_write(&self, caller: &AuthUser, client: IpAddr) -> Result<(), BookingError> {
        match self.inner.write_limiter.get() {
            Some(limiter) => limiter
                .take(caller.user_id, client)
                .await
                .map_err(BookingError::RateLimited),
            None => Ok(()),
        }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.authenticator
    }

    pub fn view(&self) -> &SharedInventory {
        &self.inner.view
    }

    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AvailabilityEvent> {
        self.inner.events.subscribe()
    }

    pub fn stop_token(&self) -> CancellationToken {
        self.inner.stop.clone()
    }

    /// Readiness: the read pool answers and the writer is running.
    pub async fn ready(&self) -> Result<(), String> {
        if self.inner.writer.is_closed() {
            return Err("the booking writer has stopped".into());
        }
        self.inner
            .store
            .ping()
            .await
            .map_err(|error| error.to_string())
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, BookingError>>) -> Command,
    ) -> Result<T, BookingError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .writer
            .send(make(reply))
            .await
            .map_err(|_| BookingError::WriterStopped)?;
        answer.await.map_err(|_| BookingError::WriterStopped)?
    }

    /// Books one ticket. Requests that must fail (unknown, closed, sold out) are answered from the
    /// in-memory view; the rest go to the writer, which decides inside the transaction.
    pub async fn book(
        &self,
        caller: AuthUser,
        concert_id: Uuid,
        seat_type_id: Uuid,
        key: Option<IdempotencyKey>,
    ) -> Result<BookOutcome, BookingError> {
        if let Some(key) = &key {
            let saved = match &self.inner.store {
                Store::Sqlite(db) => {
                    store::saved_response(&db.read, caller.user_id, key.as_str()).await?
                }
                Store::Postgres(db) => {
                    crate::pg::saved_response(&db.pool, caller.user_id, key.as_str()).await?
                }
            };
            if let Some(saved) = saved {
                return if saved.request_hash.as_slice()
                    == request_fingerprint(concert_id, seat_type_id).as_slice()
                {
                    Ok(BookOutcome::Replayed {
                        status: saved.status,
                        body: saved.body,
                    })
                } else {
                    Err(BookingError::IdempotencyKeyReused)
                };
            }
        }
        self.precheck(concert_id, seat_type_id)
            .inspect_err(count_refusal)?;
        let request = BookRequest {
            user_id: caller.user_id,
            concert_id,
            seat_type_id,
            key,
        };
        let outcome = self
            .send(|reply| Command::Book(request, reply))
            .await
            .inspect_err(count_refusal)?;
        if matches!(outcome, BookOutcome::Created(_)) {
            metrics::counter!("bookings_total", "outcome" => "created").increment(1);
        }
        Ok(outcome)
    }

    /// The checks the view answers exactly, without the writer.
    fn precheck(&self, concert_id: Uuid, seat_type_id: Uuid) -> Result<(), BookingError> {
        let now = self.inner.clock.now();
        let view = self.inner.view.read();
        let concert = view
            .concerts
            .get(&concert_id)
            .ok_or(BookingError::ConcertNotFound)?;
        let seat = view.seat_of(concert_id, seat_type_id)?;
        bookable(now, concert, seat.remaining)
    }

    /// Cancels a booking; the seat returns in the same transaction.
    pub async fn cancel(
        &self,
        caller: AuthUser,
        booking_id: Uuid,
    ) -> Result<Booking, BookingError> {
        let canceller = Canceller {
            user_id: caller.user_id,
            is_admin: caller.is_admin(),
        };
        let booking = self
            .send(|reply| Command::Cancel(booking_id, canceller, reply))
            .await?;
        metrics::counter!("bookings_cancelled_total").increment(1);
        Ok(booking)
    }

    /// One booking, if the caller may see it (its holder, or an admin).
    pub async fn get(&self, caller: AuthUser, booking_id: Uuid) -> Result<Booking, BookingError> {
        let booking = match &self.inner.store {
            Store::Sqlite(db) => store::booking_by_id(&db.read, booking_id).await?,
            Store::Postgres(db) => crate::pg::booking_by_id(&db.pool, booking_id).await?,
        };
        booking
            .filter(|booking| caller.is_admin() || booking.user_id == caller.user_id)
            .ok_or(BookingError::BookingNotFound)
    }

    /// The caller's bookings, newest first.
    pub async fn list(
        &self,
        caller: AuthUser,
        status: Option<BookingStatus>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Booking>, BookingError> {
        let user = caller.user_id;
        match &self.inner.store {
            Store::Sqlite(db) => store::list_bookings(&db.read, user, status, before, limit).await,
            Store::Postgres(db) => {
                crate::pg::list_bookings(&db.pool, user, status, before, limit).await
            }
        }
    }

    /// Exact availability of one concert, from the view.
    pub fn availability_of(&self, concert_id: Uuid) -> Option<Availability> {
        self.inner
            .view
            .read()
            .availability(concert_id, self.inner.clock.now())
    }

    /// The sales report, read from the store.
    pub async fn sales(&self, concert_id: Uuid) -> Result<SalesReport, BookingError> {
        let rows = match &self.inner.store {
            Store::Sqlite(db) => store::sales(&db.read, concert_id).await?,
            Store::Postgres(db) => crate::pg::sales(&db.pool, concert_id).await?,
        };
        let rows = rows.ok_or(BookingError::ConcertNotFound)?;
        Ok(SalesReport {
            seat_types: rows
                .seat_types
                .into_iter()
                .map(|(id, name, capacity, remaining, price_cents, currency)| {
                    let sold = capacity - remaining;
                    SeatSales {
                        id,
                        name,
                        capacity,
                        sold,
                        remaining,
                        revenue_cents: sold.saturating_mul(price_cents),
                        currency,
                    }
                })
                .collect(),
            bookings_confirmed: rows.confirmed,
            bookings_cancelled: rows.cancelled,
        })
    }
}

/// Migrates the SQLite store, loads the view and starts the writer on a thread of its own (it
/// blocks on SQLite); the tracker learns when it has drained its queue and ended.
async fn start_sqlite_writer(
    db: &SqliteStore,
    clock: &SharedClock,
    events: &broadcast::Sender<AvailabilityEvent>,
    email_waker: Option<Arc<Notify>>,
    schedule: &Arc<Notify>,
    commands: mpsc::Receiver<Command>,
    tasks: &TaskTracker,
) -> anyhow::Result<SharedInventory> {
    crate::SQLITE_MIGRATIONS.run(&db.write).await?;
    let (path, durability) = (db.path.clone(), db.durability);
    let local_worker = email_waker.is_some();
    let now = clock.now();
    let (conn, inventory) = tokio::task::spawn_blocking(move || {
        let conn = crate::write::open(&path, durability)?;
        if local_worker {
            let released = crate::write::release_leases(&conn, now)?;
            if released > 0 {
                tracing::info!(released, "released outbox leases left by the previous run");
            }
        }
        let inventory = crate::write::load_inventory(&conn)?;
        Ok::<_, BookingError>((conn, inventory))
    })
    .await??;
    let view = SharedInventory::new(inventory);
    let task = Writer::new(
        conn,
        view.clone(),
        clock.clone(),
        events.clone(),
        email_waker,
        schedule.clone(),
    );
    let (finished, writer_done) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("booking-writer".into())
        .spawn(move || {
            task.run(commands);
            let _ = finished.send(());
        })?;
    tasks.spawn(async move {
        let _ = writer_done.await;
    });
    Ok(view)
}

fn count_refusal(error: &BookingError) {
    let outcome = match error {
        BookingError::SoldOut => "sold_out",
        BookingError::BookingClosed => "booking_closed",
        BookingError::AlreadyBooked => "already_booked",
        BookingError::ConcertNotFound | BookingError::SeatTypeNotFound => "not_found",
        BookingError::IdempotencyKeyReused => "idempotency_key_reused",
        _ => "error",
    };
    metrics::counter!("bookings_total", "outcome" => outcome).increment(1);
}

#[async_trait]
impl Inventory for BookingService {
    async fn provision(&self, concert: &ConcertInventory) -> Result<(), ClientError> {
        let concert = concert.clone();
        Ok(self
            .send(|reply| Command::Provision(concert, reply))
            .await?)
    }

    async fn set_capacity(&self, seat_type_id: Uuid, capacity: i64) -> Result<(), ClientError> {
        self.send(|reply| Command::SetCapacity(seat_type_id, capacity, reply))
            .await?;
        Ok(())
    }

    async fn cancel_concert(&self, concert_id: Uuid) -> Result<(), ClientError> {
        Ok(self
            .send(|reply| Command::CancelConcert(concert_id, reply))
            .await?)
    }

    async fn availability(
        &self,
        concert_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Availability>, ClientError> {
        let now = self.inner.clock.now();
        let view = self.inner.view.read();
        Ok(concert_ids
            .iter()
            .filter_map(|id| {
                view.availability(*id, now)
                    .map(|availability| (*id, availability))
            })
            .collect())
    }
}

#[async_trait]
impl OutboxSource for BookingService {
    async fn claim(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxMessage>, ClientError> {
        if let Store::Postgres(db) = &self.inner.store {
            let now = self.inner.clock.now();
            let until = now + time::Duration::try_from(lease).unwrap_or(time::Duration::MINUTE);
            return Ok(
                crate::pg::claim_outbox(&db.pool, self.inner.instance, now, until, limit).await?,
            );
        }
        Ok(self
            .send(|reply| Command::ClaimOutbox(limit, lease, reply))
            .await?)
    }

    async fn acknowledge(&self, message_ids: &[Uuid]) -> Result<(), ClientError> {
        if message_ids.is_empty() {
            return Ok(());
        }
        if let Store::Postgres(db) = &self.inner.store {
            let now = self.inner.clock.now();
            return Ok(crate::pg::acknowledge_outbox(&db.pool, message_ids, now).await?);
        }
        let ids = message_ids.to_vec();
        Ok(self
            .send(|reply| Command::AcknowledgeOutbox(ids, reply))
            .await?)
    }

    async fn retry_later(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), ClientError> {
        let error: String = error.chars().take(1000).collect();
        if let Store::Postgres(db) = &self.inner.store {
            return Ok(crate::pg::retry_outbox(&db.pool, message_id, retry_at, &error).await?);
        }
        Ok(self
            .send(|reply| Command::RetryOutbox(message_id, retry_at, error, reply))
            .await?)
    }

    async fn depth(&self) -> Result<u64, ClientError> {
        Ok(match &self.inner.store {
            Store::Sqlite(db) => store::outbox_depth(&db.read).await?,
            Store::Postgres(db) => crate::pg::outbox_depth(&db.pool).await?,
        })
    }
}
