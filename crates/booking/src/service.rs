//! [`BookingService`]: what the handlers and the other services call. Bookings, cancels and
//! reads here; holds, payments and refunds in `checkout`; tickets and check-in in `tickets`.

mod checkout;
mod owners;
mod queue;
mod tickets;
mod waitlist;
mod webhooks;

pub use owners::Ownership;
pub use queue::WaitingRooms;
pub use tickets::{Admitted, SeatTypeCheckins, Ticket, TicketStatus, Tickets};
pub use webhooks::{Created, Webhooks};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_shared::clients::{
    Availability, ClientError, ConcertInventory, EmailKind, Inventory, OutboxMessage, OutboxSource,
    WriteLimiter,
};
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::db::Store;
use boxoffice_shared::token::{AuthUser, Authenticator};
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::command::{
    Admin, BookOutcome, BookRequest, Canceller, Command, Made, NotQueued, Reply, Wiring, replay,
};
use crate::domain::{Booking, BookingStatus, BookingsOf, IdempotencyKey, request_fingerprint};
use crate::error::BookingError;
use crate::events::{AvailabilityEvent, run_sales_timer};
use crate::payments::Checkout;
use crate::store::BookingStore;
use crate::view::{self, ConcertSale, Seat, SharedInventory, bookable};
use crate::waitlist::OfferTerms;

/// The sales report of one concert (API contract, `GET /concerts/{id}/sales`).
#[derive(Debug, Clone)]
pub struct SalesReport {
    pub seat_types: Vec<SeatSales>,
    pub bookings_confirmed: i64,
    pub bookings_cancelled: i64,
    /// Confirmed bookings by the UTC day they were made, oldest first.
    pub by_day: Vec<(String, i64)>,
}

#[derive(Debug, Clone)]
pub struct SeatSales {
    pub id: Uuid,
    pub name: String,
    pub capacity: i64,
    pub sold: i64,
    /// Seats kept by active holds: neither sold nor remaining.
    pub held: i64,
    pub remaining: i64,
    pub revenue_cents: i64,
    pub refunded_cents: i64,
    pub currency: String,
}

/// How the service sells: who takes the money and for how long a hold keeps its seat, and how
/// tickets are signed and whose names they carry.
#[derive(Clone)]
pub struct Selling {
    pub checkout: Checkout,
    pub tickets: Tickets,
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
    /// The store, on the engine chosen at start; its writer takes every change.
    store: BookingStore,
    view: SharedInventory,
    clock: SharedClock,
    authenticator: Authenticator,
    events: broadcast::Sender<AvailabilityEvent>,
    stop: CancellationToken,
    /// The limits on writes, when the deployment sets them ([`BookingService::limit_writes`]).
    write_limiter: std::sync::OnceLock<Arc<dyn WriteLimiter>>,
    /// How long holds last and who takes the money.
    checkout: Checkout,
    /// Poked when a refund may have been queued, so the refund worker looks at once.
    refund_waker: Arc<Notify>,
    /// The ticket key and the holders' names.
    tickets: Tickets,
    /// The event types some webhook endpoint subscribes to, shared with the store's writer.
    subscribed: crate::webhook::Subscribed,
    /// How webhooks are delivered, once [`BookingService::deliver_webhooks`] started it.
    webhooks: std::sync::OnceLock<Webhooks>,
    /// The waiting rooms, once [`BookingService::open_waiting_rooms`] opened them. Without
    /// them a concert with a waiting room admits nobody.
    rooms: std::sync::OnceLock<Arc<WaitingRooms>>,
    /// Who sells which concert, once [`BookingService::share_concerts`] set it (a split
    /// deployment on PostgreSQL): new bookings and holds go to their concert's owner.
    ownership: std::sync::OnceLock<Ownership>,
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
        selling: Selling,
        stop: CancellationToken,
        tasks: &TaskTracker,
    ) -> anyhow::Result<Self> {
        let instance = worker.as_ref().map(|worker| worker.instance);
        let (events, _) = broadcast::channel(1024);
        let wiring = Wiring {
            clock: clock.clone(),
            events: events.clone(),
            schedule: Arc::new(Notify::new()),
            on_email: worker.map(|worker| worker.waker),
            instance,
            stop: stop.clone(),
            offers: OfferTerms {
                ttl: time::Duration::try_from(selling.checkout.offer_ttl)?,
                provider: selling.checkout.payments.kind(),
            },
            webhooks: crate::webhook::Subscribed::default(),
        };
        let (store, view) = BookingStore::start(store.into(), &wiring, tasks).await?;
        let service = Self {
            inner: Arc::new(Inner {
                store,
                view: view.clone(),
                clock: clock.clone(),
                authenticator,
                events: events.clone(),
                stop: stop.clone(),
                write_limiter: std::sync::OnceLock::new(),
                ownership: std::sync::OnceLock::new(),
                checkout: selling.checkout,
                refund_waker: Arc::new(Notify::new()),
                tickets: selling.tickets,
                subscribed: wiring.webhooks.clone(),
                webhooks: std::sync::OnceLock::new(),
                rooms: std::sync::OnceLock::new(),
            }),
        };
        tasks.spawn(checkout::run_refunds(
            Arc::downgrade(&service.inner),
            service.inner.refund_waker.clone(),
            stop.clone(),
        ));
        // The timer asks the writer to expire holds that fell due; it must not keep the service
        // (and so the writer) alive once every caller has dropped it.
        let writer = Arc::downgrade(&service.inner);
        let expire_holds = move || {
            if let Some(inner) = writer.upgrade() {
                let (reply, _) = oneshot::channel();
                let _ = inner.store.try_submit(Command::ExpireHolds(reply));
            }
        };
        tasks.spawn(run_sales_timer(
            view,
            clock,
            events,
            wiring.schedule,
            expire_holds,
            stop,
        ));
        Ok(service)
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
        if !self.inner.store.writer_running() {
            return Err("the booking writer has stopped".into());
        }
        self.inner
            .store
            .ping()
            .await
            .map_err(|error| error.to_string())
    }

    /// Queues a command for the writer and waits for its answer, given after the commit.
    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, BookingError> {
        let (reply, answer) = oneshot::channel();
        match self.inner.store.try_submit(make(reply)) {
            Ok(()) => {}
            // The queue is full: wait for room (back-pressure) in a future of its own on the
            // heap. Waiting inline would make every caller's future carry the queue's send future
            // — every booking's, and every sold-out answer's — and a larger future is a slower
            // task to spawn (the engine bench's sold-out answers: about a fifth).
            Err(NotQueued::Full(command)) => Box::pin(self.inner.store.submit(*command)).await?,
            Err(NotQueued::Stopped) => return Err(BookingError::WriterStopped),
        }
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
        self.book_admitted(caller, concert_id, seat_type_id, key, None)
            .await
    }

    /// [`BookingService::book`] with the caller's admission to the concert's waiting room (the
    /// `Boxoffice-Admission` header), which a concert with a waiting room needs.
    pub async fn book_admitted(
        &self,
        caller: AuthUser,
        concert_id: Uuid,
        seat_type_id: Uuid,
        key: Option<IdempotencyKey>,
        admission: Option<&str>,
    ) -> Result<BookOutcome, BookingError> {
        if let Some(key) = &key {
            // Boxed: the lookup's future (a query on either engine) is large, and kept inline it
            // would make every `book` future as large, sold-out answers included.
            let fingerprint = request_fingerprint(concert_id, seat_type_id);
            if let Some(made) = Box::pin(self.replayed(caller.user_id, key, fingerprint)).await? {
                return Ok(made);
            }
        }
        let admitted = self
            .check_admission(&caller, concert_id, admission)
            .inspect_err(count_refusal)?;
        self.precheck(concert_id, seat_type_id)
            .inspect_err(count_refusal)?;
        if let Some(admitted) = &admitted {
            self.refuse_used(admitted).await?;
        }
        let request = BookRequest {
            provider: self.inner.checkout.payments.kind(),
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

    /// The answer an Idempotency-Key the user sent before stands for: the saved one again for
    /// the same request (`fingerprint`), a refusal for another; `None` for a key not seen yet.
    async fn replayed<T>(
        &self,
        user_id: Uuid,
        key: &IdempotencyKey,
        fingerprint: [u8; 32],
    ) -> Result<Option<Made<T>>, BookingError> {
        match self
            .inner
            .store
            .saved_response(user_id, key.as_str())
            .await?
        {
            Some(saved) => replay(saved, &fingerprint).map(Some),
            None => Ok(None),
        }
    }

    /// The checks the view answers exactly, without the writer. A concert or seat type the view
    /// does not know is refused here only when the view cannot lag the store; otherwise (another
    /// instance may have just provisioned it) the writer decides from the store.
    fn precheck(&self, concert_id: Uuid, seat_type_id: Uuid) -> Result<(), BookingError> {
        self.check_in_view(concert_id, seat_type_id, |view, concert, seat, now| {
            bookable(now, concert, view.may_have_seat(seat, now))
        })
    }

    /// Runs `check` on the concert and seat type as the view has them at the service's time. One
    /// the view does not know is refused here only when the view cannot lag the store.
    fn check_in_view(
        &self,
        concert_id: Uuid,
        seat_type_id: Uuid,
        check: impl FnOnce(
            &view::Inventory,
            &ConcertSale,
            &Seat,
            OffsetDateTime,
        ) -> Result<(), BookingError>,
    ) -> Result<(), BookingError> {
        let now = self.inner.clock.now();
        let view = self.inner.view.read();
        let known = view
            .concerts
            .get(&concert_id)
            .ok_or(BookingError::ConcertNotFound)
            .and_then(|concert| Ok((concert, view.seat_of(concert_id, seat_type_id)?)));
        match known {
            Ok((concert, seat)) => check(&view, concert, seat, now),
            Err(_) if self.inner.store.view_may_lag() => Ok(()),
            Err(unknown) => Err(unknown),
        }
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
        if booking.payment.is_some() {
            // Its refund was queued with the cancellation.
            self.inner.refund_waker.notify_one();
        }
        Ok(booking)
    }

    /// One booking, if the caller may see it (its holder, or an admin).
    pub async fn get(&self, caller: AuthUser, booking_id: Uuid) -> Result<Booking, BookingError> {
        let booking = self.inner.store.booking_by_id(booking_id).await?;
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
        self.inner
            .store
            .list_bookings(BookingsOf::User(caller.user_id), status, before, limit)
            .await
    }

    /// A concert's bookings, newest first (the route lets admins only, as for the sales report).
    pub async fn list_for_concert(
        &self,
        concert_id: Uuid,
        status: Option<BookingStatus>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Booking>, BookingError> {
        if !self.inner.view.read().concerts.contains_key(&concert_id) {
            return Err(BookingError::ConcertNotFound);
        }
        self.inner
            .store
            .list_bookings(BookingsOf::Concert(concert_id), status, before, limit)
            .await
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
        let rows = self
            .inner
            .store
            .sales(concert_id)
            .await?
            .ok_or(BookingError::ConcertNotFound)?;
        Ok(SalesReport {
            seat_types: rows
                .seat_types
                .into_iter()
                .map(|row| {
                    let sold = row.capacity - row.remaining - row.held;
                    SeatSales {
                        id: row.id,
                        name: row.name,
                        capacity: row.capacity,
                        sold,
                        held: row.held,
                        remaining: row.remaining,
                        revenue_cents: sold.saturating_mul(row.price_cents),
                        refunded_cents: row.refunded_cents,
                        currency: row.currency,
                    }
                })
                .collect(),
            bookings_confirmed: rows.confirmed,
            bookings_cancelled: rows.cancelled,
            by_day: rows.by_day,
        })
    }
}

fn count_refusal(error: &BookingError) {
    let outcome = match error {
        BookingError::SoldOut => "sold_out",
        BookingError::BookingClosed => "booking_closed",
        BookingError::SalesNotOpen => "sales_not_open",
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
            .send(|reply| Command::Administer(Admin::Provision(concert, reply)))
            .await?)
    }

    async fn set_capacity(&self, seat_type_id: Uuid, capacity: i64) -> Result<(), ClientError> {
        self.send(|reply| Command::Administer(Admin::SetCapacity(seat_type_id, capacity, reply)))
            .await?;
        Ok(())
    }

    async fn cancel_concert(&self, concert_id: Uuid) -> Result<(), ClientError> {
        self.send(|reply| Command::Administer(Admin::CancelConcert(concert_id, reply)))
            .await?;
        // The refunds of its paid bookings were queued with the cancellation.
        self.inner.refund_waker.notify_one();
        Ok(())
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

/// The outbox as the notifications worker of this process sees it; each store keeps its own
/// (through the writer on SQLite, with `SKIP LOCKED` on PostgreSQL).
#[async_trait]
impl OutboxSource for BookingService {
    async fn claim(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxMessage>, ClientError> {
        let mut messages = self.inner.store.claim_outbox(limit, lease).await?;
        for message in &mut messages {
            if message.kind == EmailKind::BookingConfirmed {
                let booking = &mut message.booking;
                booking.ticket_code =
                    Some(self.ticket_code(booking.booking_id, booking.concert_id));
            }
        }
        Ok(messages)
    }

    async fn acknowledge(&self, message_ids: &[Uuid]) -> Result<(), ClientError> {
        if message_ids.is_empty() {
            return Ok(());
        }
        Ok(self.inner.store.acknowledge_outbox(message_ids).await?)
    }

    async fn retry_later(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), ClientError> {
        let error: String = error.chars().take(1000).collect();
        Ok(self
            .inner
            .store
            .retry_outbox(message_id, retry_at, error)
            .await?)
    }

    async fn depth(&self) -> Result<u64, ClientError> {
        Ok(self.inner.store.outbox_depth().await?)
    }
}
