//! One hot seat type on PostgreSQL with `synchronous_commit=on`: the naive design against
//! boxoffice's group-commit writer, side by side in one run on one server.
//!
//! - naive: every booking is its own transaction (`INSERT` the booking — the schema's trigger
//!   takes the seat, holding the seat type's row lock — `INSERT` its email, `COMMIT`), from
//!   [`CLIENTS`] concurrent connections. The row lock is held across each commit's WAL flush, so
//!   the row admits one booking per flush.
//! - group commit: the same bookings through [`BookingService`] on PostgreSQL, whose writer
//!   settles every queued request in one transaction (one lock hold and one flush per batch).
//!
//! Both write the same rows (booking, outbox email) into the same schema and refuse the same
//! things. `cargo bench -p boxoffice-booking --bench hot_row` (needs PostgreSQL: the server of
//! `BOXOFFICE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`; it makes
//! and drops a database of its own). Results in docs/performance.md.

use std::sync::Arc;
use std::time::Instant;

use boxoffice_booking::BookingService;
use boxoffice_shared::clients::{ConcertInventory, Inventory, SeatInventory};
use boxoffice_shared::db::PgStore;
use boxoffice_shared::keys::KeyMaterial;
use boxoffice_shared::pgtest::TestDatabase;
use boxoffice_shared::token::{AuthUser, Authenticator, RevokedSessions, Role};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// Concurrent clients in both runs.
const CLIENTS: usize = 64;

fn bookings() -> usize {
    std::env::var("HOT_ROW_BOOKINGS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(6_000)
}

async fn concert(service: &BookingService, capacity: i64) -> (Uuid, Uuid) {
    let concert_id = Uuid::now_v7();
    let seat_type_id = Uuid::now_v7();
    service
        .provision(&ConcertInventory {
            concert_id,
            name: "Hot row".into(),
            artist: "Aurora".into(),
            venue: "Hall".into(),
            time_zone: "UTC".into(),
            starts_at: OffsetDateTime::now_utc() + time::Duration::days(1),
            sales_open_at: None,
            waiting_room: None,
            seat_types: vec![SeatInventory {
                seat_type_id,
                name: "GA".into(),
                price_cents: 1_000,
                currency: "USD".into(),
                capacity,
            }],
        })
        .await
        .expect("provision");
    (concert_id, seat_type_id)
}

/// One transaction per booking, `CLIENTS` at a time; returns bookings per second.
async fn naive(pool: &PgPool, concert_id: Uuid, seat_type_id: Uuid, count: usize) -> f64 {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (pool, next) = (pool.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                let now = OffsetDateTime::now_utc();
                let mut tx = pool.begin().await.expect("begin");
                let id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO bookings
                        (id, user_id, concert_id, seat_type_id, status, price_cents, currency,
                         created_at)
                     VALUES ($1, $2, $3, $4, 'confirmed', 1000, 'USD', $5)",
                )
                .bind(id)
                .bind(Uuid::now_v7())
                .bind(concert_id)
                .bind(seat_type_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .expect("a naive booking");
                sqlx::query(
                    "INSERT INTO outbox (message_id, kind, payload, created_at, available_at)
                     VALUES ($1, 'booking_confirmed', '{}', $2, $2)",
                )
                .bind(Uuid::now_v7())
                .bind(now)
                .execute(&mut *tx)
                .await
                .expect("its email");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// The same bookings through the group-commit writer; returns bookings per second.
async fn grouped(
    service: &BookingService,
    concert_id: Uuid,
    seat_type_id: Uuid,
    count: usize,
) -> f64 {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (service, next) = (service.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                let user = AuthUser {
                    user_id: Uuid::now_v7(),
                    session_id: Uuid::now_v7(),
                    role: Role::Customer,
                };
                service
                    .book(user, concert_id, seat_type_id, None)
                    .await
                    .expect("a grouped booking");
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

async fn sold(pool: &PgPool, seat_type_id: Uuid) -> (i64, i64) {
    sqlx::query_as(
        "SELECT capacity - remaining, (SELECT count(*) FROM bookings
                                       WHERE seat_type_id = $1 AND status = 'confirmed')
         FROM seat_types WHERE id = $1",
    )
    .bind(seat_type_id)
    .fetch_one(pool)
    .await
    .expect("counts")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let Some(database) = TestDatabase::create("hot_row bench").await else {
            eprintln!("hot_row: no PostgreSQL, nothing measured");
            return;
        };
        let store = PgStore::connect(&database.url, "booking", (CLIENTS + 8) as u32)
            .await
            .expect("PostgreSQL");
        let keys =
            KeyMaterial::from_secret(&secrecy::SecretString::from("b".repeat(40))).expect("key");
        let authenticator = Authenticator {
            verifier: Arc::new(keys.verifier()),
            revoked: RevokedSessions::default(),
            clock: boxoffice_shared::clock::system(),
        };
        let stop = CancellationToken::new();
        let service = BookingService::start(
            store.clone(),
            authenticator,
            boxoffice_shared::clock::system(),
            None,
            boxoffice_booking::service::Selling {
                checkout: boxoffice_booking::payments::Checkout::default(),
                tickets: boxoffice_booking::service::Tickets::unnamed(),
            },
            stop.clone(),
            &TaskTracker::new(),
        )
        .await
        .expect("booking service");
        let count = bookings();
        let capacity = i64::try_from(count).expect("count");
        println!(
            "hot row: {count} bookings of one seat type, {CLIENTS} clients, synchronous_commit=on"
        );
        // Warm both paths up on a concert of their own.
        let (warm_concert, warm_seat) = concert(&service, 1_000_000).await;
        naive(&store.pool, warm_concert, warm_seat, 500).await;
        grouped(&service, warm_concert, warm_seat, 500).await;

        let (naive_concert, naive_seat) = concert(&service, capacity).await;
        let naive_rate = naive(&store.pool, naive_concert, naive_seat, count).await;
        let (group_concert, group_seat) = concert(&service, capacity).await;
        let group_rate = grouped(&service, group_concert, group_seat, count).await;
        for seat in [naive_seat, group_seat] {
            let (taken, confirmed) = sold(&store.pool, seat).await;
            assert_eq!(taken, confirmed, "remaining == capacity - confirmed");
            assert_eq!(confirmed, capacity, "every booking was made");
        }
        println!("naive (one transaction per booking): {naive_rate:>10.0} bookings/s");
        println!("group commit (boxoffice writer):     {group_rate:>10.0} bookings/s");
        println!("ratio: {:.1}x", group_rate / naive_rate);
        stop.cancel();
        drop(service);
        store.close().await;
    });
}
