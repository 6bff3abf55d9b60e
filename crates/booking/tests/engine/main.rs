//! The booking engine under concurrency, against a real store: the rules that must hold whatever
//! the interleaving (no oversell, one booking per user and concert, one seat back per
//! cancellation, remaining == capacity - confirmed), closing at the start instant, idempotency,
//! and a property test against a model.
//!
//! Every test runs on both backends: [`on_every_backend!`] turns `async fn name(backend: Backend)`
//! into a module `name` with a `sqlite` and a `postgres` test (the latter on a fresh database of
//! the local PostgreSQL, skipped when none answers; see `boxoffice_shared::pgtest`). The tests at
//! the end run on PostgreSQL only: two Booking instances on one database, the way a deployment
//! scales out, selling the same seats.
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
    /// Emails queued before the outbox named bookings (each row carried its rendered email)
    /// survive the migration, and are claimed exactly as they were queued.
    async fn emails_queued_with_their_text_before_the_outbox_named_bookings_are_still_sent(
        backend: Backend
    ) {
        // The store as the previous release left it: its migrations only, one email queued.
        let previous = tempfile::tempdir().unwrap();
        let migrations: [(&str, &str); 2] = match backend {
            Backend::Sqlite => [
                (
                    "0001_booking.sql",
                    include_str!("../../migrations/sqlite/0001_booking.sql"),
                ),
                (
                    "0002_outbox_leases.sql",
                    include_str!("../../migrations/sqlite/0002_outbox_leases.sql"),
                ),
            ],
            Backend::Postgres(_) => [
                (
                    "0001_booking.sql",
                    include_str!("../../migrations/postgres/0001_booking.sql"),
                ),
                (
                    "0002_lease_owner.sql",
                    include_str!("../../migrations/postgres/0002_lease_owner.sql"),
                ),
            ],
        };
        for (name, sql) in migrations {
            std::fs::write(previous.path().join(name), sql).unwrap();
        }
        let previous = sqlx::migrate::Migrator::new(previous.path()).await.unwrap();
        let queued = BookingEmail {
            booking_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            concert_id: Uuid::now_v7(),
            concert_name: "Farewell Tour".into(),
            // What a payload queued by an earlier release decodes to: it had neither.
            artist: String::new(),
            venue: "Arena".into(),
            time_zone: "UTC".into(),
            starts_at: in_a_day().replace_nanosecond(0).unwrap(),
            seat_type_name: "VIP".into(),
            price_cents: 12_000,
            currency: "EUR".into(),
            at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
            payment: None,
            ticket_code: None,
        };
        let message_id = Uuid::now_v7();
        let payload = serde_json::to_string(&queued).unwrap();
        let (store, dir, database): (Store, _, _) = match &backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(&dir.path().join("booking.db"), 2)
                    .await
                    .unwrap();
                previous.run(&store.write).await.unwrap();
                sqlx::query(
                    "INSERT INTO outbox (message_id, kind, payload, created_at, available_at)
                     VALUES (?, 'booking_confirmed', ?, 0, 0)",
                )
                .bind(message_id)
                .bind(&payload)
                .execute(&store.write)
                .await
                .unwrap();
                (store.into(), Some(dir), None)
            }
            Backend::Postgres(database) => {
                let store = PgStore::connect(&database.url, "booking", 4).await.unwrap();
                previous.run(&store.pool).await.unwrap();
                sqlx::query(
                    "INSERT INTO outbox (message_id, kind, payload, created_at, available_at)
                     VALUES ($1, 'booking_confirmed', $2, now() - interval '1 second',
                             now() - interval '1 second')",
                )
                .bind(message_id)
                .bind(&payload)
                .execute(&store.pool)
                .await
                .unwrap();
                (store.into(), None, Some(database.clone()))
            }
        };

        // This release opens it: the outbox is migrated, the old message claimed as it was queued.
        let engine = start_engine(
            store,
            boxoffice_shared::clock::system(),
            Checkout::default(),
            dir,
            database,
        ).await;
        let claimed = engine
            .service
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].message_id, message_id);
        assert_eq!(claimed[0].kind, EmailKind::BookingConfirmed);
        assert_eq!(
            claimed[0].booking,
            BookingEmail {
                ticket_code: Some(
                    engine
                        .service
                        .ticket_code(queued.booking_id, queued.concert_id)
                ),
                ..queued
            }
        );
        // New bookings queue their emails by reference beside it.
        let (concert_id, seats) = concert(&engine, in_a_day(), &[5]).await;
        let booking = created(
            engine
                .service
                .book(customer(), concert_id, seats[0], None)
                .await
                .unwrap(),
        );
        let claimed = engine
            .service
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].booking.booking_id, booking.id);
        assert_eq!(engine.service.depth().await.unwrap(), 2);
    }
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

on_every_backend! {
    async fn sales_close_at_the_start_instant_inside_the_transaction(backend: Backend) {
        let start =
            OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::hours(1);
        let clock = Arc::new(ManualClock::new(start - time::Duration::minutes(5)));
        let engine = engine_with_clock(&backend, clock.clone()).await;
        let (concert_id, seats) = concert(&engine, start, &[10]).await;
        let early = customer();
        let booking = created(
            engine
                .service
                .book(early, concert_id, seats[0], None)
                .await
                .unwrap(),
        );

        clock.advance(time::Duration::minutes(5) - time::Duration::milliseconds(1));
        assert!(
            engine
                .service
                .availability_of(concert_id)
                .unwrap()
                .booking_open
        );
        clock.advance(time::Duration::milliseconds(1));
        assert_eq!(clock.now(), start);
        let late = engine
            .service
            .book(customer(), concert_id, seats[0], None)
            .await;
        assert!(matches!(late, Err(BookingError::BookingClosed)), "{late:?}");
        let cancel = engine.service.cancel(early, booking.id).await;
        assert!(
            matches!(cancel, Err(BookingError::BookingClosed)),
            "{cancel:?}"
        );
        assert!(
            !engine
                .service
                .availability_of(concert_id)
                .unwrap()
                .booking_open
        );
        assert_eq!(counts(&engine, seats[0]).await, (10, 9, 1));
    }
}

on_every_backend! {
    async fn sales_open_at_the_on_sale_instant_inside_the_transaction(backend: Backend) {
        let opens =
            OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::hours(1);
        let clock = Arc::new(ManualClock::new(opens - time::Duration::minutes(5)));
        let engine = engine_with_clock(&backend, clock.clone()).await;
        let (concert_id, seats) =
            concert_opening(&engine, Some(opens), opens + time::Duration::days(1), &[10]).await;
        let early = engine
            .service
            .book(customer(), concert_id, seats[0], None)
            .await;
        assert!(matches!(early, Err(BookingError::SalesNotOpen)), "{early:?}");
        clock.advance(time::Duration::minutes(5) - time::Duration::milliseconds(1));
        let availability = engine.service.availability_of(concert_id).unwrap();
        assert!(!availability.booking_open);
        let almost = engine
            .service
            .book(customer(), concert_id, seats[0], None)
            .await;
        assert!(matches!(almost, Err(BookingError::SalesNotOpen)), "{almost:?}");

        clock.advance(time::Duration::milliseconds(1));
        assert_eq!(clock.now(), opens);
        created(
            engine
                .service
                .book(customer(), concert_id, seats[0], None)
                .await
                .unwrap(),
        );
        assert!(
            engine
                .service
                .availability_of(concert_id)
                .unwrap()
                .booking_open
        );
        assert_eq!(counts(&engine, seats[0]).await, (10, 9, 1));
    }
}

/// The waiting room of a concert as the engine's in-memory view has it.
fn waiting_room_in_view(engine: &Engine, concert_id: Uuid) -> Option<WaitingRoom> {
    engine
        .service
        .view()
        .read()
        .concerts
        .get(&concert_id)
        .unwrap_or_else(|| panic!("the view does not know {concert_id}"))
        .waiting_room
}

on_every_backend! {
    /// The waiting room Catalog provisions is in the view as soon as provisioning answers, each
    /// provision replaces or removes it, and a restart reads it back from the store.
    async fn a_provisioned_waiting_room_reaches_the_view_and_is_loaded_at_start_up(
        backend: Backend
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = reopen(&backend, &dir).await;
        let room = WaitingRoom {
            admit_per_minute: 1_000,
            admission_ttl_seconds: 600,
        };
        let mut show = ConcertInventory {
            waiting_room: Some(room),
            ..inventory(in_a_day(), &[10])
        };
        let id = show.concert_id;
        engine.service.provision(&show).await.unwrap();
        assert_eq!(waiting_room_in_view(&engine, id), Some(room));
        let faster = WaitingRoom {
            admit_per_minute: 5_000,
            ..room
        };
        show.waiting_room = Some(faster);
        engine.service.provision(&show).await.unwrap();
        assert_eq!(waiting_room_in_view(&engine, id), Some(faster));
        drop(engine);

        let restarted = reopen(&backend, &dir).await;
        assert_eq!(waiting_room_in_view(&restarted, id), Some(faster));
        show.waiting_room = None;
        restarted.service.provision(&show).await.unwrap();
        assert_eq!(waiting_room_in_view(&restarted, id), None);
        // Out of range: refused, and nothing changes.
        show.waiting_room = Some(WaitingRoom {
            admission_ttl_seconds: WaitingRoom::MIN_ADMISSION_TTL_SECONDS - 1,
            ..room
        });
        let refused = restarted.service.provision(&show).await;
        assert!(
            matches!(
                &refused,
                Err(ClientError::Rejected { code: ErrorCode::ValidationFailed, .. })
            ),
            "{refused:?}"
        );
        assert_eq!(waiting_room_in_view(&restarted, id), None);
        drop(restarted);

        let again = reopen(&backend, &dir).await;
        assert_eq!(waiting_room_in_view(&again, id), None);
        assert_eq!(counts(&again, show.seat_types[0].seat_type_id).await, (10, 10, 0));
    }
}

on_every_backend! {
    /// Raw SQL on a connection of its own, past the engine: the schema alone refuses what the
    /// engine never attempts.
    async fn the_database_itself_refuses_an_oversell_a_duplicate_a_late_and_an_early_booking(
        backend: Backend
    ) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[1, 2]).await;
        let user = customer();
        created(
            engine
                .service
                .book(user, concert_id, seats[0], None)
                .await
                .unwrap(),
        );
        match &backend {
            Backend::Sqlite => refused_by_sqlite(&engine, concert_id, &seats, user).await,
            Backend::Postgres(database) => {
                refused_by_postgres(&engine, &database.url, concert_id, &seats, user).await;
            }
        }
        assert_eq!(counts(&engine, seats[0]).await, (1, 0, 1));
    }
}

async fn refused_by_sqlite(engine: &Engine, concert_id: Uuid, seats: &[Uuid], user: AuthUser) {
    let Store::Sqlite(db) = &engine.store else {
        unreachable!("a SQLite engine")
    };
    let insert = "INSERT INTO bookings (id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at)
                  VALUES (?, ?, ?, ?, 'confirmed', 0, 'USD', ?)";
    let now = boxoffice_shared::clock::to_millis(OffsetDateTime::now_utc());
    // The read pool is read-only; open a writer of our own to try the raw SQL.
    let oversell = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&db.read)
        .await;
    assert!(oversell.is_err());
    let mut conn = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&db.path),
    )
    .await
    .unwrap();
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut conn)
        .await
        .unwrap();
    let oversell = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        oversell.to_string().contains("remaining_within_capacity"),
        "{oversell}"
    );
    let duplicate = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(user.user_id)
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        duplicate.to_string().contains("UNIQUE") || duplicate.to_string().contains("remaining"),
        "{duplicate}"
    );
    let late = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[0])
        .bind(boxoffice_shared::clock::to_millis(
            in_a_day() + time::Duration::days(1),
        ))
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(late.to_string().contains("booking_closed"), "{late}");
    sqlx::query("UPDATE sales SET sales_open_at = ? WHERE concert_id = ?")
        .bind(now + 60_000)
        .bind(concert_id)
        .execute(&mut conn)
        .await
        .unwrap();
    let early = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[1])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(early.to_string().contains("sales_not_open"), "{early}");
}

async fn refused_by_postgres(
    engine: &Engine,
    url: &str,
    concert_id: Uuid,
    seats: &[Uuid],
    user: AuthUser,
) {
    let options = boxoffice_shared::db::pg_options(url, "booking").unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let insert = "INSERT INTO bookings (id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at)
                  VALUES ($1, $2, $3, $4, 'confirmed', 0, 'USD', $5)";
    let now = OffsetDateTime::now_utc();
    let oversell = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        oversell.to_string().contains("remaining_within_capacity"),
        "{oversell}"
    );
    let duplicate = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(user.user_id)
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        duplicate
            .to_string()
            .contains("one_confirmed_booking_per_user_and_concert"),
        "{duplicate}"
    );
    let late = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[1])
        .bind(in_a_day() + time::Duration::days(1))
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(late.to_string().contains("booking_closed"), "{late}");
    let on_sale = "UPDATE sales SET sales_open_at = $1 WHERE concert_id = $2";
    sqlx::query(on_sale)
        .bind(now + time::Duration::minutes(1))
        .bind(concert_id)
        .execute(&mut conn)
        .await
        .unwrap();
    let early = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[1])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(early.to_string().contains("sales_not_open"), "{early}");
    sqlx::query(on_sale)
        .bind(None::<OffsetDateTime>)
        .bind(concert_id)
        .execute(&mut conn)
        .await
        .unwrap();

    // Bookings are cancelled, never deleted, and a cancellation is final.
    let other = customer();
    let booking = created(
        engine
            .service
            .book(other, concert_id, seats[1], None)
            .await
            .unwrap(),
    );
    engine.service.cancel(other, booking.id).await.unwrap();
    assert_eq!(counts(engine, seats[1]).await, (2, 2, 0));
    let deleted = sqlx::query("DELETE FROM bookings WHERE id = $1")
        .bind(booking.id)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(deleted.to_string().contains("never deleted"), "{deleted}");
    // CASCADE: the outbox's reference to bookings would refuse a plain TRUNCATE on its own.
    // TRUNCATE locks every table the cascade reaches before the trigger can refuse, so it can
    // deadlock with the engine's own outbox relay or refund worker; PostgreSQL then rolls it
    // back, which truncates nothing either, and the statement is asked again.
    let truncated = loop {
        let refused = sqlx::query("TRUNCATE bookings CASCADE")
            .execute(&mut conn)
            .await
            .unwrap_err();
        if !refused.to_string().contains("deadlock detected") {
            break refused;
        }
    };
    assert!(
        truncated.to_string().contains("never deleted"),
        "{truncated}"
    );
    let revived =
        sqlx::query("UPDATE bookings SET status = 'confirmed', cancelled_at = NULL WHERE id = $1")
            .bind(booking.id)
            .execute(&mut conn)
            .await
            .unwrap_err();
    assert!(
        revived.to_string().contains("already_cancelled"),
        "{revived}"
    );
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(bookings, 2, "nothing was deleted");
    assert_eq!(counts(engine, seats[1]).await, (2, 2, 0));
    conn.close().await.unwrap();
}

on_every_backend! {
    async fn an_idempotency_key_replays_the_original_booking_and_refuses_another_body(
        backend: Backend
    ) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[1, 5]).await;
        let user = customer();
        let key = IdempotencyKey::parse("order-1").unwrap();
        let first = created(
            engine
                .service
                .book(user, concert_id, seats[0], Some(key.clone()))
                .await
                .unwrap(),
        );
        // The seat type is now sold out, yet the retry gets the original answer.
        match engine
            .service
            .book(user, concert_id, seats[0], Some(key.clone()))
            .await
            .unwrap()
        {
            BookOutcome::Replayed { status, body } => {
                assert_eq!(status, 201);
                let replayed: Booking = serde_json::from_str(&body).unwrap();
                assert_eq!(replayed, first);
            }
            other => panic!("expected a replay, got {other:?}"),
        }
        let reused = engine
            .service
            .book(user, concert_id, seats[1], Some(key))
            .await;
        assert!(
            matches!(reused, Err(BookingError::IdempotencyKeyReused)),
            "{reused:?}"
        );
        // Keys are per user: another user's identical key is a new request.
        let other = engine
            .service
            .book(
                customer(),
                concert_id,
                seats[1],
                Some(IdempotencyKey::parse("order-1").unwrap()),
            )
            .await
            .unwrap();
        assert!(matches!(other, BookOutcome::Created(_)));
        assert_eq!(counts(&engine, seats[0]).await, (1, 0, 1));
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
    async fn concurrent_retries_with_one_key_make_one_booking(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[50]).await;
        let user = customer();
        let mut retries = Vec::new();
        for _ in 0..20 {
            let service = engine.service.clone();
            let seat = seats[0];
            retries.push(tokio::spawn(async move {
                service
                    .book(
                        user,
                        concert_id,
                        seat,
                        Some(IdempotencyKey::parse("same").unwrap()),
                    )
                    .await
            }));
        }
        let mut ids = HashSet::new();
        for retry in retries {
            ids.insert(booking_id_of(retry.await.unwrap().unwrap()));
        }
        assert_eq!(ids.len(), 1, "every retry saw the same booking");
        assert_eq!(counts(&engine, seats[0]).await, (50, 49, 1));
    }
}

on_every_backend! {
    async fn bookings_and_cancellations_queue_their_emails_in_the_same_transaction(
        backend: Backend
    ) {
        let engine = engine(&backend).await;
        let starts_at = in_a_day().replace_nanosecond(0).unwrap();
        let (concert_id, seats) = concert(&engine, starts_at, &[5]).await;
        let user = customer();
        let booking = created(
            engine
                .service
                .book(user, concert_id, seats[0], None)
                .await
                .unwrap(),
        );
        let cancelled = engine.service.cancel(user, booking.id).await.unwrap();
        let claimed = engine
            .service
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        // What each email says: the booking, its concert and seat type, dated when the booking
        // was made or cancelled.
        let email = |at| BookingEmail {
            booking_id: booking.id,
            user_id: user.user_id,
            concert_id,
            concert_name: "Night Show".into(),
            artist: "Aurora".into(),
            venue: "Hall".into(),
            time_zone: "Europe/Oslo".into(),
            starts_at,
            seat_type_name: "Tier 0".into(),
            price_cents: 5_000,
            currency: "USD".into(),
            at,
            // A priced seat booked in one step is paid through the simulated provider.
            payment: Some(EmailPayment {
                provider: "simulated".into(),
                amount_cents: 5_000,
            }),
            ticket_code: None,
        };
        let of_kind = |kind| {
            claimed
                .iter()
                .find(|message| message.kind == kind)
                .map(|message| message.booking.clone())
        };
        // A confirmation carries the ticket's code; a cancellation does not.
        assert_eq!(
            of_kind(EmailKind::BookingConfirmed),
            Some(BookingEmail {
                ticket_code: Some(engine.service.ticket_code(booking.id, concert_id)),
                ..email(booking.created_at)
            })
        );
        assert_eq!(
            of_kind(EmailKind::BookingCancelled),
            Some(email(cancelled.cancelled_at.unwrap()))
        );
        // Leased: a second claim gets nothing until the lease runs out or a retry is scheduled.
        assert!(
            engine
                .service
                .claim(10, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
        engine
            .service
            .acknowledge(&[claimed[0].message_id])
            .await
            .unwrap();
        engine
            .service
            .retry_later(
                claimed[1].message_id,
                OffsetDateTime::now_utc() - time::Duration::seconds(1),
                "smtp down",
            )
            .await
            .unwrap();
        let again = engine
            .service
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].message_id, claimed[1].message_id);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(engine.service.depth().await.unwrap(), 1);
        // One acknowledgement for several messages; one already acknowledged is skipped.
        engine
            .service
            .acknowledge(&[claimed[0].message_id, again[0].message_id])
            .await
            .unwrap();
        assert_eq!(engine.service.depth().await.unwrap(), 0);
        assert!(
            engine
                .service
                .claim(10, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
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

// ---------------------------------------------------------------------------------------------
// Scale-out: two Booking instances (two pools, two writers, two views) on one PostgreSQL
// database, selling the same seats.

/// Two instances on a fresh database, or `None` when no PostgreSQL answers.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sell_five_seats_to_exactly_five_of_hundreds() {
    let Some((a, b)) =
        two_instances("engine::two_instances_sell_five_seats_to_exactly_five_of_hundreds").await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[5]).await;
    // The second instance learns of the new concert from the first one's notification.
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let mut racers = Vec::new();
    for index in 0..400 {
        let service = [&a, &b][index % 2].service.clone();
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
    assert_eq!(counts(&a, seats[0]).await, (5, 0, 5));
    assert_eq!(duplicates(&a).await, 0);
    views_agree([&a, &b], concert_id, seats[0], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_bookings_spread_over_two_instances_yield_exactly_one() {
    let Some((a, b)) =
        two_instances("engine::one_users_bookings_spread_over_two_instances_yield_exactly_one")
            .await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[100, 100]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let user = customer();
    let mut attempts = Vec::new();
    for index in 0..40 {
        // Every pairing of instance and seat type: the same user racing on two seat types
        // through two writers is what only the database's unique index can settle.
        let service = [&a, &b][(index / 2) % 2].service.clone();
        let seat = seats[index % 2];
        attempts.push(tokio::spawn(async move {
            service.book(user, concert_id, seat, None).await
        }));
    }
    let mut won = 0;
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(BookOutcome::Created(_)) => won += 1,
            Err(BookingError::AlreadyBooked) => refused += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((won, refused), (1, 39));
    let (first, second) = (counts(&a, seats[0]).await, counts(&a, seats[1]).await);
    assert_eq!(first.2 + second.2, 1);
    assert_eq!(first.1 + second.1, 199);
    assert_eq!(duplicates(&a).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cancels_through_two_instances_return_one_seat() {
    let Some((a, b)) =
        two_instances("engine::concurrent_cancels_through_two_instances_return_one_seat").await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[3]).await;
    let user = customer();
    let booking = created(
        a.service
            .book(user, concert_id, seats[0], None)
            .await
            .unwrap(),
    );
    let mut cancels = Vec::new();
    for index in 0..30 {
        let service = [&a, &b][index % 2].service.clone();
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
    assert_eq!(counts(&a, seats[0]).await, (3, 3, 0));
    views_agree([&a, &b], concert_id, seats[0], 3).await;
    // Exactly one cancellation email went out with the one confirmation.
    assert_eq!(a.service.depth().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_through_two_instances_keeps_remaining_equal_to_capacity_minus_confirmed() {
    let Some((a, b)) = two_instances(
        "engine::a_storm_through_two_instances_keeps_remaining_equal_to_capacity_minus_confirmed",
    )
    .await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[20, 7]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let mut workers = Vec::new();
    for index in 0..60 {
        let services = [a.service.clone(), b.service.clone()];
        let seats = seats.clone();
        let user = customer();
        workers.push(tokio::spawn(async move {
            let mut created = 0u32;
            for round in 0..15 {
                let seat = seats[(index + round) % 2];
                // Book through one instance and cancel through the other.
                let through = (index + round / 2) % 2;
                if let Ok(BookOutcome::Created(booking)) =
                    services[through].book(user, concert_id, seat, None).await
                {
                    created += 1;
                    if (index + round) % 3 != 0 {
                        tokio::task::yield_now().await;
                        services[1 - through]
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
        let (capacity, remaining, confirmed) = counts(&a, *seat).await;
        assert_eq!(remaining, capacity - confirmed, "seat type {seat}");
        views_agree([&a, &b], concert_id, *seat, remaining).await;
    }
    assert_eq!(duplicates(&a).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_instance_shows_in_the_other_instances_view() {
    let Some((a, b)) =
        two_instances("engine::a_change_through_one_instance_shows_in_the_other_instances_view")
            .await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[10]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    assert_eq!(remaining_in_view(&b, concert_id, seats[0]), 10);

    let user = customer();
    let booking = created(
        a.service
            .book(user, concert_id, seats[0], None)
            .await
            .unwrap(),
    );
    assert_eq!(remaining_in_view(&a, concert_id, seats[0]), 9);
    eventually("a booking through the first shows in the second", || {
        remaining_in_view(&b, concert_id, seats[0]) == 9
    })
    .await;

    b.service.cancel(user, booking.id).await.unwrap();
    assert_eq!(remaining_in_view(&b, concert_id, seats[0]), 10);
    eventually(
        "a cancellation through the second shows in the first",
        || remaining_in_view(&a, concert_id, seats[0]) == 10,
    )
    .await;

    b.service.set_capacity(seats[0], 4).await.unwrap();
    eventually(
        "a capacity change through the second shows in the first",
        || {
            let seat = &a.service.availability_of(concert_id).unwrap().seat_types[0];
            (seat.capacity, seat.remaining) == (4, 4)
        },
    )
    .await;

    a.service.cancel_concert(concert_id).await.unwrap();
    eventually(
        "a concert cancelled through the first shows in the second",
        || {
            let availability = b.service.availability_of(concert_id).unwrap();
            availability.cancelled && !availability.booking_open
        },
    )
    .await;
    let refused = b.service.book(customer(), concert_id, seats[0], None).await;
    assert!(
        matches!(refused, Err(BookingError::BookingClosed)),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concert_provisioned_through_one_instance_sells_through_the_other_at_once() {
    let Some((a, b)) = two_instances(
        "engine::a_concert_provisioned_through_one_instance_sells_through_the_other_at_once",
    )
    .await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[10]).await;
    // No waiting for the second instance's view: the writer decides from the store what the
    // view does not know yet.
    let booked = b.service.book(customer(), concert_id, seats[0], None).await;
    assert!(matches!(booked, Ok(BookOutcome::Created(_))), "{booked:?}");
    let unknown = b
        .service
        .book(customer(), Uuid::new_v4(), seats[0], None)
        .await;
    assert!(
        matches!(unknown, Err(BookingError::ConcertNotFound)),
        "{unknown:?}"
    );
    let other_seat = b
        .service
        .book(customer(), concert_id, Uuid::new_v4(), None)
        .await;
    assert!(
        matches!(other_seat, Err(BookingError::SeatTypeNotFound)),
        "{other_seat:?}"
    );
    assert_eq!(counts(&a, seats[0]).await, (10, 9, 1));
    views_agree([&a, &b], concert_id, seats[0], 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_one_key_through_two_instances_make_one_booking() {
    let Some((a, b)) =
        two_instances("engine::retries_with_one_key_through_two_instances_make_one_booking").await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[50, 50]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let user = customer();
    let mut retries = Vec::new();
    for index in 0..40 {
        let service = [&a, &b][index % 2].service.clone();
        let seat = seats[0];
        retries.push(tokio::spawn(async move {
            service
                .book(
                    user,
                    concert_id,
                    seat,
                    Some(IdempotencyKey::parse("same").unwrap()),
                )
                .await
        }));
    }
    let mut ids = HashSet::new();
    for retry in retries {
        match retry.await.unwrap() {
            Ok(outcome) => ids.insert(booking_id_of(outcome)),
            Err(error) => panic!("a retry must replay the original booking, got {error:?}"),
        };
    }
    assert_eq!(ids.len(), 1, "every retry saw the same booking");
    assert_eq!(counts(&a, seats[0]).await, (50, 49, 1));

    // The same key with another body, through both instances at once: one booking, and every
    // other answer is a replay or idempotency_key_reused, never a second booking.
    let other = customer();
    let mut attempts = Vec::new();
    for index in 0..20 {
        let service = [&a, &b][index % 2].service.clone();
        let seat = seats[(index / 2) % 2];
        attempts.push(tokio::spawn(async move {
            service
                .book(
                    other,
                    concert_id,
                    seat,
                    Some(IdempotencyKey::parse("other").unwrap()),
                )
                .await
        }));
    }
    let mut ids = HashSet::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(outcome) => {
                ids.insert(booking_id_of(outcome));
            }
            Err(BookingError::IdempotencyKeyReused) => {}
            Err(error) => panic!("unexpected outcome {error:?}"),
        }
    }
    assert_eq!(ids.len(), 1, "one booking for one key");
    assert_eq!(duplicates(&a).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concert_cancelled_through_one_instance_during_a_storm_on_the_other_frees_every_seat() {
    let Some((a, b)) = two_instances(
        "engine::a_concert_cancelled_through_one_instance_during_a_storm_on_the_other",
    )
    .await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[30, 30]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let mut workers = Vec::new();
    for index in 0..40 {
        let service = b.service.clone();
        let seats = seats.clone();
        let user = customer();
        workers.push(tokio::spawn(async move {
            for round in 0..20 {
                match service
                    .book(user, concert_id, seats[(index + round) % 2], None)
                    .await
                {
                    Ok(BookOutcome::Created(booking)) => {
                        match service.cancel(user, booking.id).await {
                            Ok(_) | Err(BookingError::AlreadyCancelled) => {}
                            Err(BookingError::BookingClosed) => return,
                            Err(error) => panic!("cancel: unexpected {error:?}"),
                        }
                    }
                    Err(BookingError::BookingClosed) => return,
                    Err(BookingError::SoldOut) => {}
                    other => panic!("book: unexpected {other:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.service.cancel_concert(concert_id).await.unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    for seat in &seats {
        assert_eq!(counts(&a, *seat).await, (30, 30, 0), "seat type {seat}");
        views_agree([&a, &b], concert_id, *seat, 30).await;
    }
}

mod holds;
mod model;
mod waitlist;
mod webhooks;
