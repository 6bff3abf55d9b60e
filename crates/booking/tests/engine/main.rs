//! The booking engine under concurrency, against a real store: the rules that must hold whatever
//! the interleaving (no oversell, one booking per user and concert, one seat back per
//! cancellation, remaining == capacity - confirmed), closing at the start instant, idempotency,
//! and a property test against a model.
//!
//! Every test runs on both backends: [`on_every_backend!`] turns `async fn name(backend: Backend)`
//! into a module `name` with a `sqlite` and a `postgres` test (the latter on a fresh database of
//! the local PostgreSQL, skipped when none answers; see `boxoffice_shared::pgtest`). The tests of
//! `instances` run on PostgreSQL only: two Booking instances on one database, the way a
//! deployment scales out, selling the same seats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use boxoffice_booking::BookingError;
use boxoffice_booking::BookingService;
use boxoffice_booking::command::BookOutcome;
use boxoffice_booking::domain::{Booking, BookingStatus, IdempotencyKey};
use boxoffice_booking::payments::Checkout;
use boxoffice_shared::ErrorCode;
use boxoffice_shared::clients::{
    BookingEmail, ClientError, ConcertInventory, EmailKind, EmailPayment, Inventory, OutboxSource,
    SeatInventory, WaitingRoom,
};
use boxoffice_shared::clock::{Clock, ManualClock, SharedClock};
use boxoffice_shared::db::{PgStore, SqliteStore, Store};
use boxoffice_shared::keys::KeyMaterial;
use boxoffice_shared::pgtest::TestDatabase;
use boxoffice_shared::token::{AuthUser, Authenticator, RevokedSessions, Role};
use proptest::prelude::*;
use sqlx::Connection;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// The store a test runs against.
#[derive(Debug, Clone)]
enum Backend {
    /// A SQLite file in a directory of its own.
    Sqlite,
    /// A fresh PostgreSQL database; several engines may share it, as instances of a deployment.
    Postgres(Arc<TestDatabase>),
}

/// Turns `async fn name(backend: Backend) { … }` into a module `name` holding one test per
/// backend. The PostgreSQL test returns early (after `TestDatabase::create` printed SKIPPED) when
/// no server answers.
macro_rules! on_every_backend {
    ($(#[doc = $doc:literal])* async fn $name:ident($backend:ident: Backend) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            use super::*;

            async fn run($backend: Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(database) = TestDatabase::create(concat!("engine::", stringify!($name))).await
                else {
                    return;
                };
                run(Backend::Postgres(Arc::new(database))).await;
            }
        }
    };
}

/// A running Booking service and the store under it.
struct Engine {
    service: BookingService,
    store: Store,
    /// Ends the service's background tasks (closing timer, PostgreSQL listener) with the test.
    stop: CancellationToken,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
    /// Keeps the PostgreSQL database alive (it is dropped with its last engine).
    _database: Option<Arc<TestDatabase>>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn engine_with_clock(backend: &Backend, clock: SharedClock) -> Engine {
    engine_with(backend, clock, Checkout::default()).await
}

/// An engine on `backend` with `clock` and `checkout` (how long holds last, who takes money).
async fn engine_with(backend: &Backend, clock: SharedClock, checkout: Checkout) -> Engine {
    let (store, dir, database): (Store, _, _) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("booking.db"), 4)
                .await
                .unwrap();
            (store.into(), Some(dir), None)
        }
        Backend::Postgres(database) => {
            let store = PgStore::connect(&database.url, "booking", 8).await.unwrap();
            (store.into(), None, Some(database.clone()))
        }
    };
    start_engine(store, clock, checkout, dir, database).await
}

/// Starts a Booking service on `store` (running its migrations).
async fn start_engine(
    store: Store,
    clock: SharedClock,
    checkout: Checkout,
    dir: Option<tempfile::TempDir>,
    database: Option<Arc<TestDatabase>>,
) -> Engine {
    let keys = KeyMaterial::from_secret(&secrecy::SecretString::from("k".repeat(40))).unwrap();
    let authenticator = Authenticator {
        verifier: Arc::new(keys.verifier()),
        revoked: RevokedSessions::default(),
        clock: clock.clone(),
    };
    let stop = CancellationToken::new();
    let service = BookingService::start(
        store.clone(),
        authenticator,
        clock,
        None,
        boxoffice_booking::service::Selling {
            checkout,
            tickets: boxoffice_booking::service::Tickets::unnamed(),
        },
        stop.clone(),
        &TaskTracker::new(),
    )
    .await
    .unwrap();
    Engine {
        service,
        store,
        stop,
        _dir: dir,
        _database: database,
    }
}

async fn engine(backend: &Backend) -> Engine {
    engine_with_clock(backend, boxoffice_shared::clock::system()).await
}

/// An engine on the store of `backend` in `dir`, opened again at each call: a restart.
async fn reopen(backend: &Backend, dir: &tempfile::TempDir) -> Engine {
    let (store, database): (Store, _) = match backend {
        Backend::Sqlite => {
            let store = SqliteStore::open(&dir.path().join("booking.db"), 4)
                .await
                .unwrap();
            (store.into(), None)
        }
        Backend::Postgres(database) => {
            let store = PgStore::connect(&database.url, "booking", 8).await.unwrap();
            (store.into(), Some(database.clone()))
        }
    };
    let clock = boxoffice_shared::clock::system();
    start_engine(store, clock, Checkout::default(), None, database).await
}

fn customer() -> AuthUser {
    AuthUser {
        user_id: Uuid::now_v7(),
        session_id: Uuid::now_v7(),
        role: Role::Customer,
    }
}

/// Provisions a concert with one seat type per capacity; returns (concert, seat types).
async fn concert(
    engine: &Engine,
    starts_at: OffsetDateTime,
    capacities: &[i64],
) -> (Uuid, Vec<Uuid>) {
    concert_opening(engine, None, starts_at, capacities).await
}

/// [`concert`], with sales opening at `sales_open_at`.
async fn concert_opening(
    engine: &Engine,
    sales_open_at: Option<OffsetDateTime>,
    starts_at: OffsetDateTime,
    capacities: &[i64],
) -> (Uuid, Vec<Uuid>) {
    let concert = ConcertInventory {
        sales_open_at,
        ..inventory(starts_at, capacities)
    };
    let ids = concert
        .seat_types
        .iter()
        .map(|seat| seat.seat_type_id)
        .collect();
    engine.service.provision(&concert).await.unwrap();
    (concert.concert_id, ids)
}

/// A new concert as Catalog provisions it, with one seat type per capacity, on sale at once and
/// without a waiting room.
fn inventory(starts_at: OffsetDateTime, capacities: &[i64]) -> ConcertInventory {
    let seat_types: Vec<SeatInventory> = capacities
        .iter()
        .enumerate()
        .map(|(index, capacity)| SeatInventory {
            seat_type_id: Uuid::now_v7(),
            name: format!("Tier {index}"),
            price_cents: 5_000,
            currency: "USD".into(),
            capacity: *capacity,
        })
        .collect();
    ConcertInventory {
        concert_id: Uuid::now_v7(),
        name: "Night Show".into(),
        artist: "Aurora".into(),
        venue: "Hall".into(),
        time_zone: "Europe/Oslo".into(),
        starts_at,
        sales_open_at: None,
        waiting_room: None,
        seat_types,
    }
}

fn in_a_day() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(1)
}

/// `(capacity, remaining, confirmed)` of a seat type, read straight from the store.
async fn counts(engine: &Engine, seat_type_id: Uuid) -> (i64, i64, i64) {
    match &engine.store {
        Store::Sqlite(db) => {
            let (capacity, remaining): (i64, i64) =
                sqlx::query_as("SELECT capacity, remaining FROM seat_types WHERE id = ?")
                    .bind(seat_type_id)
                    .fetch_one(&db.read)
                    .await
                    .unwrap();
            let confirmed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM bookings WHERE seat_type_id = ? AND status = 'confirmed'",
            )
            .bind(seat_type_id)
            .fetch_one(&db.read)
            .await
            .unwrap();
            (capacity, remaining, confirmed)
        }
        Store::Postgres(db) => {
            let (capacity, remaining): (i64, i64) =
                sqlx::query_as("SELECT capacity, remaining FROM seat_types WHERE id = $1")
                    .bind(seat_type_id)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            let confirmed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM bookings WHERE seat_type_id = $1 AND status = 'confirmed'",
            )
            .bind(seat_type_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
            (capacity, remaining, confirmed)
        }
    }
}

/// A count read from the store: `query`, with `id` as its one parameter (`$1`).
async fn count_of(engine: &Engine, query: &str, id: Uuid) -> i64 {
    let query = sqlx::AssertSqlSafe(query.to_owned());
    match &engine.store {
        Store::Sqlite(db) => sqlx::query_scalar(query)
            .bind(id)
            .fetch_one(&db.read)
            .await
            .unwrap(),
        Store::Postgres(db) => sqlx::query_scalar(query)
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap(),
    }
}

/// Users holding more than one confirmed booking for a concert, in the whole store.
async fn duplicates(engine: &Engine) -> i64 {
    let sql = "SELECT count(*) FROM (SELECT user_id FROM bookings WHERE status = 'confirmed'
               GROUP BY user_id, concert_id HAVING count(*) > 1) AS duplicated";
    match &engine.store {
        Store::Sqlite(db) => sqlx::query_scalar(sql).fetch_one(&db.read).await.unwrap(),
        Store::Postgres(db) => sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap(),
    }
}

/// `remaining` of a seat type in the engine's in-memory view.
fn remaining_in_view(engine: &Engine, concert_id: Uuid, seat_type_id: Uuid) -> i64 {
    view_remaining(engine, concert_id, seat_type_id)
        .unwrap_or_else(|| panic!("the view does not know {concert_id}/{seat_type_id}"))
}

/// `remaining` of a seat type in the engine's view, if the view knows it yet (another
/// instance's view learns of a new concert a moment after it is provisioned).
fn view_remaining(engine: &Engine, concert_id: Uuid, seat_type_id: Uuid) -> Option<i64> {
    engine
        .service
        .availability_of(concert_id)?
        .seat_types
        .iter()
        .find(|seat| seat.seat_type_id == seat_type_id)
        .map(|seat| seat.remaining)
}

fn created(outcome: BookOutcome) -> Booking {
    match outcome {
        BookOutcome::Created(booking) => booking,
        other => panic!("expected a new booking, got {other:?}"),
    }
}

/// Polls `check` until it holds. Another instance's view follows a commit through LISTEN/NOTIFY,
/// a few milliseconds later; the generous bound only turns a view that never catches up into a
/// failure instead of a hang.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

on_every_backend! {
    async fn hundreds_of_users_racing_for_five_seats_get_exactly_five(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[5]).await;
        let mut racers = Vec::new();
        for _ in 0..400 {
            let service = engine.service.clone();
            let seat = seats[0];
            racers.push(tokio::spawn(async move {
                service.book(customer(), concert_id, seat, None).await
            }));
        }
        let mut won = 0;
        let mut sold_out = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(BookOutcome::Created(_)) => won += 1,
                Err(BookingError::SoldOut) => sold_out += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((won, sold_out), (5, 395));
        assert_eq!(counts(&engine, seats[0]).await, (5, 0, 5));
        let availability = engine.service.availability_of(concert_id).unwrap();
        assert_eq!(availability.seat_types[0].remaining, 0);
        assert!(!availability.booking_open);
    }
}

on_every_backend! {
    async fn one_users_simultaneous_bookings_yield_exactly_one(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[100, 100]).await;
        let user = customer();
        let mut attempts = Vec::new();
        for index in 0..50 {
            let service = engine.service.clone();
            let seat = seats[index % 2];
            attempts.push(tokio::spawn(async move {
                service.book(user, concert_id, seat, None).await
            }));
        }
        let mut outcomes = Vec::new();
        for attempt in attempts {
            outcomes.push(attempt.await.unwrap());
        }
        let won = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        let refused = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Err(BookingError::AlreadyBooked)))
            .count();
        assert_eq!((won, refused), (1, 49));
        let confirmed = counts(&engine, seats[0]).await.2 + counts(&engine, seats[1]).await.2;
        assert_eq!(confirmed, 1);
    }
}

on_every_backend! {
    /// Bookings that arrive together are written together; a user among them who books twice
    /// must still get exactly one, and everyone else theirs.
    async fn a_crowd_with_one_double_booker_books_everyone_else_once(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[1000, 1000]).await;
        let twice = customer();
        let mut attempts = Vec::new();
        for index in 0..600 {
            let service = engine.service.clone();
            let seat = seats[index % 2];
            let user = if index % 100 == 7 { twice } else { customer() };
            attempts.push(tokio::spawn(async move {
                service.book(user, concert_id, seat, None).await
            }));
        }
        let (mut won, mut refused) = (0, 0);
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(BookOutcome::Created(_)) => won += 1,
                Err(BookingError::AlreadyBooked) => refused += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((won, refused), (595, 5));
        let (first, second) = (counts(&engine, seats[0]).await, counts(&engine, seats[1]).await);
        assert_eq!(first.2 + second.2, 595);
        assert_eq!(first.1 + first.2, 1000, "remaining + confirmed == capacity");
        assert_eq!(second.1 + second.2, 1000, "remaining + confirmed == capacity");
        assert_eq!(duplicates(&engine).await, 0);
        assert_eq!(remaining_in_view(&engine, concert_id, seats[0]), first.1);
        assert_eq!(remaining_in_view(&engine, concert_id, seats[1]), second.1);
        assert_eq!(engine.service.depth().await.unwrap(), 595, "one email per booking");
    }
}

/// The write-ahead log is copied into the database file by the checkpoint thread while bookings
/// arrive (`boxoffice_booking::sqlite::checkpoint`), long before the writer's own backstop of 16 384 log
/// pages would: a few thousand bookings later the database file holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_copied_into_the_database_file_while_bookings_arrive() {
    let engine = engine(&Backend::Sqlite).await;
    let Store::Sqlite(db) = &engine.store else {
        unreachable!("a SQLite engine")
    };
    let file = db.path.clone();
    let size = move || std::fs::metadata(&file).map_or(0, |meta| meta.len());
    let before = size();
    let (concert_id, seats) = concert(&engine, in_a_day(), &[10_000]).await;
    let mut bookings = Vec::new();
    for _ in 0..3_000 {
        let service = engine.service.clone();
        let seat = seats[0];
        bookings.push(tokio::spawn(async move {
            service.book(customer(), concert_id, seat, None).await
        }));
    }
    for booking in bookings {
        created(booking.await.unwrap().unwrap());
    }
    // 3 000 bookings and their emails are about 2 MiB of pages; a log that is never copied
    // back leaves the database file as small as it was.
    eventually("the database file grows by the bookings' pages", || {
        size() > before + 1024 * 1024
    })
    .await;
}

on_every_backend! {
    async fn concurrent_cancels_of_one_booking_return_one_seat(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[3]).await;
        let user = customer();
        let booking = created(
            engine
                .service
                .book(user, concert_id, seats[0], None)
                .await
                .unwrap(),
        );
        assert_eq!(counts(&engine, seats[0]).await, (3, 2, 1));
        let mut cancels = Vec::new();
        for _ in 0..30 {
            let service = engine.service.clone();
            cancels.push(tokio::spawn(async move {
                service.cancel(user, booking.id).await
            }));
        }
        let mut ok = 0;
        let mut already = 0;
        for cancel in cancels {
            match cancel.await.unwrap() {
                Ok(cancelled) => {
                    assert_eq!(cancelled.status, BookingStatus::Cancelled);
                    ok += 1;
                }
                Err(BookingError::AlreadyCancelled) => already += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((ok, already), (1, 29));
        assert_eq!(counts(&engine, seats[0]).await, (3, 3, 0));
        // The seat is free again, and the user may book the concert again.
        created(
            engine
                .service
                .book(user, concert_id, seats[0], None)
                .await
                .unwrap(),
        );
    }
}

on_every_backend! {
    async fn a_book_and_cancel_storm_keeps_remaining_equal_to_capacity_minus_confirmed(
        backend: Backend
    ) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[20, 7]).await;
        let users: Vec<AuthUser> = (0..60).map(|_| customer()).collect();
        let mut workers = Vec::new();
        for (index, user) in users.into_iter().enumerate() {
            let service = engine.service.clone();
            let seats = seats.clone();
            workers.push(tokio::spawn(async move {
                let mut created = 0u32;
                for round in 0..15 {
                    let seat = seats[(index + round) % 2];
                    if let Ok(BookOutcome::Created(booking)) =
                        service.book(user, concert_id, seat, None).await
                    {
                        created += 1;
                        if (index + round) % 3 != 0 {
                            tokio::task::yield_now().await;
                            service
                                .cancel(user, booking.id)
                                .await
                                .expect("cancel own booking");
                        }
                    }
                }
                created
            }));
        }
        let mut total_created = 0;
        for worker in workers {
            total_created += worker.await.unwrap();
        }
        assert!(
            total_created > 27,
            "the storm booked too little to mean anything: {total_created}"
        );
        for seat in &seats {
            let (capacity, remaining, confirmed) = counts(&engine, *seat).await;
            assert_eq!(remaining, capacity - confirmed, "seat type {seat}");
            assert_eq!(
                remaining_in_view(&engine, concert_id, *seat),
                remaining,
                "the in-memory view agrees with the store"
            );
        }
        // One confirmed booking per user and concert, whatever happened.
        assert_eq!(duplicates(&engine).await, 0);
    }
}

/// The booking id an answer to a booking request names.
fn booking_id_of(outcome: BookOutcome) -> Uuid {
    match outcome {
        BookOutcome::Created(booking) => booking.id,
        BookOutcome::Replayed { body, .. } => serde_json::from_str::<Booking>(&body).unwrap().id,
    }
}

on_every_backend! {
    async fn cancelling_a_concert_cancels_every_booking_and_frees_every_seat(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[4]).await;
        for _ in 0..3 {
            created(
                engine
                    .service
                    .book(customer(), concert_id, seats[0], None)
                    .await
                    .unwrap(),
            );
        }
        engine.service.cancel_concert(concert_id).await.unwrap();
        engine.service.cancel_concert(concert_id).await.unwrap();
        assert_eq!(counts(&engine, seats[0]).await, (4, 4, 0));
        let refused = engine
            .service
            .book(customer(), concert_id, seats[0], None)
            .await;
        assert!(
            matches!(refused, Err(BookingError::BookingClosed)),
            "{refused:?}"
        );
        assert_eq!(
            engine.service.depth().await.unwrap(),
            6,
            "3 confirmations + 3 cancellations"
        );
    }
}

on_every_backend! {
    async fn capacity_grows_and_shrinks_only_down_to_what_is_sold(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[2]).await;
        created(
            engine
                .service
                .book(customer(), concert_id, seats[0], None)
                .await
                .unwrap(),
        );
        engine.service.set_capacity(seats[0], 5).await.unwrap();
        assert_eq!(counts(&engine, seats[0]).await, (5, 4, 1));
        engine.service.set_capacity(seats[0], 1).await.unwrap();
        assert_eq!(counts(&engine, seats[0]).await, (1, 0, 1));
        let error = engine.service.set_capacity(seats[0], 0).await.unwrap_err();
        assert!(
            format!("{error:?}").contains("ValidationFailed"),
            "{error:?}"
        );
        assert_eq!(counts(&engine, seats[0]).await, (1, 0, 1));
    }
}

/// Scale-out: two Booking instances (two pools, two writers, two views) on one PostgreSQL
/// database. Two instances on a fresh database, or `None` when no PostgreSQL answers.
async fn two_instances(test: &str) -> Option<(Engine, Engine)> {
    let backend = Backend::Postgres(Arc::new(TestDatabase::create(test).await?));
    let first = engine(&backend).await;
    let second = engine(&backend).await;
    Some((first, second))
}

/// Both instances' views show `remaining` for the seat type, sooner or later.
async fn views_agree(
    instances: [&Engine; 2],
    concert_id: Uuid,
    seat_type_id: Uuid,
    remaining: i64,
) {
    for (name, instance) in ["first", "second"].into_iter().zip(instances) {
        eventually(
            &format!("the {name} instance's view shows {remaining} left of {seat_type_id}"),
            || view_remaining(instance, concert_id, seat_type_id) == Some(remaining),
        )
        .await;
    }
}

mod emails;
mod holds;
mod idempotency;
mod instances;
mod model;
mod schema;
mod waitlist;
mod webhooks;
mod windows;
