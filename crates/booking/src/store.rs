//! The Booking store as the service sees it: one interface, on whichever engine was chosen at
//! start-up.
//!
//! [`BookingStore`] is everything the booking rules need from storage: the writer's queue
//! ([`BookingStore::submit`]), the reads, and the outbox (claim, acknowledge, retry, depth). Each
//! engine implements it in a module of its own, neither importing the other:
//! - [`crate::sqlite`]: one file and one writer thread; the outbox goes through the writer.
//! - [`crate::postgres`]: several instances on one database; the outbox is claimed with
//!   `SKIP LOCKED`, outside the writer.
//!
//! The engine is chosen once, in [`BookingStore::start`]; [`dispatch!`] is the one place that
//! tells the engines apart. It is a `match`, not a trait object, so a booking's way to the
//! writer costs no allocation and no indirect call.

use std::collections::HashMap;
use std::time::Duration;

use boxoffice_shared::clients::OutboxMessage;
use boxoffice_shared::db::Store;
use time::OffsetDateTime;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::checkin::{CheckedIn, Scan, SeatCheckins, TicketRow};
use crate::command::{Command, NotQueued, Refund, SalesRows, SavedResponse, Wiring};
use crate::domain::{Booking, BookingStatus, BookingsOf};
use crate::error::BookingError;
use crate::hold::{Hold, HoldStatus};
use crate::postgres::PgBooking;
use crate::rows;
use crate::sqlite::SqliteBooking;
use crate::view::SharedInventory;
use crate::waitlist::WaitlistEntry;

/// The Booking store of a running service, on the engine it was started with.
pub enum BookingStore {
    Sqlite(SqliteBooking),
    Postgres(PgBooking),
}

/// Hands `$call` to the engine `$store` runs on, as `$engine`: the one place the engines are
/// told apart.
macro_rules! dispatch {
    ($store:expr, $engine:ident => $call:expr) => {
        match $store {
            BookingStore::Sqlite($engine) => $call,
            BookingStore::Postgres($engine) => $call,
        }
    };
}

impl BookingStore {
    /// Migrates the store, loads the view, and starts the engine's writer (and, on PostgreSQL,
    /// its listener) on `tasks`. Returns the store and the view the service answers from.
    pub async fn start(
        store: Store,
        wiring: &Wiring,
        tasks: &TaskTracker,
    ) -> anyhow::Result<(Self, SharedInventory)> {
        Ok(match store {
            Store::Sqlite(db) => {
                let (store, view) = SqliteBooking::start(db, wiring, tasks).await?;
                (Self::Sqlite(store), view)
            }
            Store::Postgres(db) => {
                let (store, view) = PgBooking::start(db, wiring, tasks).await?;
                (Self::Postgres(store), view)
            }
        })
    }

    /// Queues `command` for the writer if its queue has room now; its answer comes through the
    /// command's reply.
    pub fn try_submit(&self, command: Command) -> Result<(), NotQueued> {
        dispatch!(self, engine => engine.try_submit(command))
    }

    /// Queues `command` for the writer, waiting for room in its queue.
    pub async fn submit(&self, command: Command) -> Result<(), BookingError> {
        dispatch!(self, engine => engine.submit(command).await)
    }

    /// Whether the writer still takes commands.
    pub fn writer_running(&self) -> bool {
        dispatch!(self, engine => engine.writer_running())
    }

    /// Whether the view may not know yet a concert or seat type the store holds (provisioned
    /// through another instance): then an unknown one is for the writer to refuse, not the view.
    pub fn view_may_lag(&self) -> bool {
        dispatch!(self, engine => engine.view_may_lag())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        dispatch!(self, engine => engine.ping().await)
    }

    /// The saved answer of a user's Idempotency-Key, if any.
    pub async fn saved_response(
        &self,
        user_id: Uuid,
        key: &str,
    ) -> Result<Option<SavedResponse>, BookingError> {
        dispatch!(self, engine => rows::saved_response(engine.read_pool(), user_id, key).await)
    }

    pub async fn booking_by_id(&self, id: Uuid) -> Result<Option<Booking>, BookingError> {
        dispatch!(self, engine => rows::booking_by_id(engine.read_pool(), id).await)
    }

    /// One page of a user's or a concert's bookings, newest first, strictly older than `before`
    /// when given.
    pub async fn list_bookings(
        &self,
        of: BookingsOf,
        status: Option<BookingStatus>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Booking>, BookingError> {
        dispatch!(self, engine => engine.list_bookings(of, status, before, limit).await)
    }

    /// One hold, whoever holds it, as stored.
    pub async fn hold_by_id(&self, id: Uuid) -> Result<Option<Hold>, BookingError> {
        dispatch!(self, engine => rows::hold_by_id(engine.read_pool(), id).await)
    }

    /// One page of a user's holds as they stand at `now`, newest first, strictly older than
    /// `before` when given; `status` as of `now` (an active hold past its expiry is expired).
    pub async fn list_holds(
        &self,
        user_id: Uuid,
        status: Option<HoldStatus>,
        before: Option<Uuid>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<Vec<Hold>, BookingError> {
        dispatch!(self, engine => engine.list_holds(user_id, status, before, limit, now).await)
    }

    /// Whether the user booked or held the concert at or after `since`: what uses up a waiting
    /// room's admission given at `since`.
    pub async fn booked_or_held_since(
        &self,
        user_id: Uuid,
        concert_id: Uuid,
        since: OffsetDateTime,
    ) -> Result<bool, BookingError> {
        dispatch!(self, engine => engine.booked_or_held_since(user_id, concert_id, since).await)
    }

    /// The sales report's rows of one concert; `None` when Booking does not sell it.
    pub async fn sales(&self, concert_id: Uuid) -> Result<Option<SalesRows>, BookingError> {
        dispatch!(self, engine => engine.sales(concert_id).await)
    }

    /// A ticket: its booking and its check-in, if any.
    pub async fn ticket_row(&self, booking_id: Uuid) -> Result<Option<TicketRow>, BookingError> {
        dispatch!(self, engine => rows::ticket_row(engine.read_pool(), booking_id).await)
    }

    /// Decides a scan of a genuine ticket by the door's rule ([`crate::checkin::decide`]) and
    /// checks it in now when it admits. Exactly one scan of a ticket is admitted, whatever the
    /// instance: the schema allows one check-in per ticket, of a confirmed booking only.
    pub async fn check_in(&self, scan: Scan) -> Result<CheckedIn, BookingError> {
        dispatch!(self, engine => engine.check_in(scan).await)
    }

    /// Confirmed and checked-in tickets of a concert, per seat type that has any.
    pub async fn checkin_counts(
        &self,
        concert_id: Uuid,
    ) -> Result<HashMap<Uuid, SeatCheckins>, BookingError> {
        dispatch!(self, engine => rows::checkin_counts(engine.read_pool(), concert_id).await)
    }

    /// One waiting-list entry, whoever's it is.
    pub async fn waitlist_entry(&self, id: Uuid) -> Result<Option<WaitlistEntry>, BookingError> {
        dispatch!(self, engine => rows::waitlist_entry(engine.read_pool(), id).await)
    }

    /// One page of a fan's waiting-list entries, newest first, strictly older than `before`.
    pub async fn list_waitlist(
        &self,
        user_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<WaitlistEntry>, BookingError> {
        dispatch!(self, engine => rows::list_waitlist(engine.read_pool(), user_id, before, limit).await)
    }

    /// How many messages wait in the outbox.
    pub async fn outbox_depth(&self) -> Result<u64, BookingError> {
        dispatch!(self, engine => rows::outbox_depth(engine.read_pool()).await)
    }

    /// Leases up to `limit` due messages for `lease`.
    pub async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxMessage>, BookingError> {
        dispatch!(self, engine => engine.claim_outbox(limit, lease).await)
    }

    /// Marks messages sent.
    pub async fn acknowledge_outbox(&self, message_ids: &[Uuid]) -> Result<(), BookingError> {
        dispatch!(self, engine => engine.acknowledge_outbox(message_ids).await)
    }

    /// Leases up to `limit` due refunds for `lease`.
    pub async fn claim_refunds(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Refund>, BookingError> {
        dispatch!(self, engine => engine.claim_refunds(limit, lease).await)
    }

    /// Marks a refund given back, and its hold's payment refunded.
    pub async fn refunded(&self, id: Uuid) -> Result<(), BookingError> {
        dispatch!(self, engine => engine.refunded(id).await)
    }

    /// Makes a refund due again at `retry_at`, noting why the provider did not take it.
    pub async fn retry_refund(
        &self,
        id: Uuid,
        retry_at: OffsetDateTime,
        error: String,
    ) -> Result<(), BookingError> {
        dispatch!(self, engine => engine.retry_refund(id, retry_at, error).await)
    }

    /// Makes a message due again at `retry_at`, noting why it failed.
    pub async fn retry_outbox(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: String,
    ) -> Result<(), BookingError> {
        dispatch!(self, engine => engine.retry_outbox(message_id, retry_at, error).await)
    }
}

mod webhooks;
