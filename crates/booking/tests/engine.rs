//! The booking engine under concurrency, against a real SQLite store: the rules that must hold
//! whatever the interleaving (no oversell, one booking per user and concert, one seat back per
//! cancellation, remaining == capacity - confirmed), closing at the start instant, idempotency,
//! and a property test against a model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use boxoffice_booking::BookingError;
use boxoffice_booking::BookingService;
use boxoffice_booking::domain::{BookingStatus, IdempotencyKey};
use boxoffice_booking::engine::BookOutcome;
use boxoffice_shared::clients::{ConcertInventory, Inventory, OutboxSource, SeatInventory};
use boxoffice_shared::clock::{Clock, ManualClock, SharedClock};
use boxoffice_shared::db::SqliteStore;
use boxoffice_shared::keys::KeyMaterial;
use boxoffice_shared::token::{AuthUser, Authenticator, RevokedSessions, Role};
use proptest::prelude::*;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

struct Engine {
    service: BookingService,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

async fn engine_with_clock(clock: SharedClock) -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("booking.db"), 4)
        .await
        .unwrap();
    let keys = KeyMaterial::from_secret(&secrecy::SecretString::from("k".repeat(40))).unwrap();
    let authenticator = Authenticator {
        verifier: Arc::new(keys.verifier()),
        revoked: RevokedSessions::default(),
        clock: clock.clone(),
    };
    let service = BookingService::start(
        store.clone(),
        authenticator,
        clock,
        None,
        CancellationToken::new(),
        &TaskTracker::new(),
    )
    .await
    .unwrap();
    Engine {
        service,
        store,
        _dir: dir,
    }
}

async fn engine() -> Engine {
    engine_with_clock(boxoffice_shared::clock::system()).await
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
    let concert_id = Uuid::now_v7();
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
    let ids = seat_types.iter().map(|seat| seat.seat_type_id).collect();
    engine
        .service
        .provision(&ConcertInventory {
            concert_id,
            name: "Night Show".into(),
            venue: "Hall".into(),
            starts_at,
            seat_types,
        })
        .await
        .unwrap();
    (concert_id, ids)
}

fn in_a_day() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(1)
}

/// `(capacity, remaining, confirmed)` of a seat type, read straight from the store.
async fn counts(engine: &Engine, seat_type_id: Uuid) -> (i64, i64, i64) {
    let (capacity, remaining): (i64, i64) =
        sqlx::query_as("SELECT capacity, remaining FROM seat_types WHERE id = ?")
            .bind(seat_type_id)
            .fetch_one(&engine.store.read)
            .await
            .unwrap();
    let confirmed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM bookings WHERE seat_type_id = ? AND status = 'confirmed'",
    )
    .bind(seat_type_id)
    .fetch_one(&engine.store.read)
    .await
    .unwrap();
    (capacity, remaining, confirmed)
}

fn created(outcome: BookOutcome) -> boxoffice_booking::domain::Booking {
    match outcome {
        BookOutcome::Created(booking) => booking,
        other => panic!("expected a new booking, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_users_racing_for_five_seats_get_exactly_five() {
    let engine = engine().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_simultaneous_bookings_yield_exactly_one() {
    let engine = engine().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cancels_of_one_booking_return_one_seat() {
    let engine = engine().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_and_cancel_storm_keeps_remaining_equal_to_capacity_minus_confirmed() {
    let engine = engine().await;
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
        let view = engine.service.availability_of(concert_id).unwrap();
        let in_view = view
            .seat_types
            .iter()
            .find(|s| s.seat_type_id == *seat)
            .unwrap()
            .remaining;
        assert_eq!(
            in_view, remaining,
            "the in-memory view agrees with the store"
        );
    }
    // One confirmed booking per user and concert, whatever happened.
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT user_id FROM bookings WHERE status = 'confirmed'
         GROUP BY user_id, concert_id HAVING count(*) > 1)",
    )
    .fetch_one(&engine.store.read)
    .await
    .unwrap();
    assert_eq!(duplicates, 0);
}

#[tokio::test]
async fn sales_close_at_the_start_instant_inside_the_transaction() {
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::hours(1);
    let clock = Arc::new(ManualClock::new(start - time::Duration::minutes(5)));
    let engine = engine_with_clock(clock.clone()).await;
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

#[tokio::test]
async fn the_database_itself_refuses_an_oversell_a_duplicate_and_a_late_booking() {
    let engine = engine().await;
    let (concert_id, seats) = concert(&engine, in_a_day(), &[1]).await;
    let user = customer();
    created(
        engine
            .service
            .book(user, concert_id, seats[0], None)
            .await
            .unwrap(),
    );
    let insert = "INSERT INTO bookings (id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at)
                  VALUES (?, ?, ?, ?, 'confirmed', 0, 'USD', ?)";
    let now = boxoffice_shared::clock::to_millis(OffsetDateTime::now_utc());
    let oversell = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&engine.store.read)
        .await;
    // The read pool is read-only; open a writer of our own to try the raw SQL.
    assert!(oversell.is_err());
    let mut conn = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(engine._dir.path().join("booking.db")),
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
    assert_eq!(counts(&engine, seats[0]).await, (1, 0, 1));
}

use sqlx::Connection;

#[tokio::test]
async fn an_idempotency_key_replays_the_original_booking_and_refuses_another_body() {
    let engine = engine().await;
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
            let replayed: boxoffice_booking::domain::Booking = serde_json::from_str(&body).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_key_make_one_booking() {
    let engine = engine().await;
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
        match retry.await.unwrap().unwrap() {
            BookOutcome::Created(booking) => ids.insert(booking.id),
            BookOutcome::Replayed { body, .. } => ids.insert(
                serde_json::from_str::<boxoffice_booking::domain::Booking>(&body)
                    .unwrap()
                    .id,
            ),
        };
    }
    assert_eq!(ids.len(), 1, "every retry saw the same booking");
    assert_eq!(counts(&engine, seats[0]).await, (50, 49, 1));
}

#[tokio::test]
async fn bookings_and_cancellations_queue_their_emails_in_the_same_transaction() {
    let engine = engine().await;
    let (concert_id, seats) = concert(&engine, in_a_day(), &[5]).await;
    let user = customer();
    let booking = created(
        engine
            .service
            .book(user, concert_id, seats[0], None)
            .await
            .unwrap(),
    );
    engine.service.cancel(user, booking.id).await.unwrap();
    let claimed = engine
        .service
        .claim(10, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        claimed
            .iter()
            .all(|message| message.booking.booking_id == booking.id)
    );
    // Leased: a second claim gets nothing until the lease runs out or a retry is scheduled.
    assert!(
        engine
            .service
            .claim(10, std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    engine
        .service
        .acknowledge(claimed[0].message_id)
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
        .claim(10, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, claimed[1].message_id);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(engine.service.depth().await.unwrap(), 1);
}

#[tokio::test]
async fn cancelling_a_concert_cancels_every_booking_and_frees_every_seat() {
    let engine = engine().await;
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

#[tokio::test]
async fn capacity_grows_and_shrinks_only_down_to_what_is_sold() {
    let engine = engine().await;
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

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    Book { user: usize, seat: usize },
    Cancel { user: usize },
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, 0..2usize).prop_map(|(user, seat)| Op::Book { user, seat }),
        3 => (0..4usize).prop_map(|user| Op::Cancel { user }),
        1 => Just(Op::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random sequences of book / cancel / close over four users and two small seat types behave
    /// exactly like the model: a seat is taken only if one is left and sales are open, a user
    /// holds at most one booking, a cancel returns exactly one seat.
    #[test]
    fn booking_rules_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let start = OffsetDateTime::now_utc() + time::Duration::hours(1);
            let clock = Arc::new(ManualClock::new(start - time::Duration::minutes(1)));
            let engine = engine_with_clock(clock.clone()).await;
            let (concert_id, seats) = concert(&engine, start, &[2, 1]).await;
            let users: Vec<AuthUser> = (0..4).map(|_| customer()).collect();
            let mut remaining = [2i64, 1];
            let mut held: HashMap<usize, (Uuid, usize)> = HashMap::new();
            let mut closed = false;
            for op in ops {
                match op {
                    Op::Book { user, seat } => {
                        let outcome = engine.service.book(users[user], concert_id, seats[seat], None).await;
                        let expected = if closed { "closed" } else if remaining[seat] == 0 { "sold_out" }
                            else if held.contains_key(&user) { "already_booked" } else { "created" };
                        match (expected, outcome) {
                            ("created", Ok(BookOutcome::Created(booking))) => {
                                remaining[seat] -= 1;
                                held.insert(user, (booking.id, seat));
                            }
                            ("closed", Err(BookingError::BookingClosed))
                            | ("sold_out", Err(BookingError::SoldOut))
                            | ("already_booked", Err(BookingError::AlreadyBooked)) => {}
                            (expected, actual) => panic!("book: expected {expected}, got {actual:?}"),
                        }
                    }
                    Op::Cancel { user } => {
                        let Some((booking_id, seat)) = held.get(&user).copied() else { continue };
                        let outcome = engine.service.cancel(users[user], booking_id).await;
                        if closed {
                            assert!(matches!(outcome, Err(BookingError::BookingClosed)), "{outcome:?}");
                        } else {
                            assert_eq!(outcome.unwrap().status, BookingStatus::Cancelled);
                            remaining[seat] += 1;
                            held.remove(&user);
                        }
                    }
                    Op::Close => {
                        clock.advance(time::Duration::minutes(1));
                        closed = true;
                    }
                }
                for (index, seat) in seats.iter().enumerate() {
                    let (capacity, stored, confirmed) = counts(&engine, *seat).await;
                    assert_eq!(stored, remaining[index]);
                    assert_eq!(stored, capacity - confirmed);
                }
            }
        });
    }
}
