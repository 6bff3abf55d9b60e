//! The booking engine in-process, through the real single writer on a real SQLite file with the
//! default durability (`synchronous=FULL`): how many durable bookings per second it commits when
//! many requests arrive at once, and how fast the in-memory view answers the losers.
//!
//! `cargo bench -p boxoffice-booking` — results and method in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_booking::command::BookOutcome;
use boxoffice_booking::{BookingError, BookingService};
use boxoffice_shared::clients::{ConcertInventory, Inventory, SeatInventory};
use boxoffice_shared::db::SqliteStore;
use boxoffice_shared::keys::KeyMaterial;
use boxoffice_shared::token::{AuthUser, Authenticator, RevokedSessions, Role};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// The allocator the `boxoffice` binary runs with, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bookings in flight at once in one measured round.
const WAVE: usize = 8_192;

async fn start(dir: &std::path::Path) -> BookingService {
    let store = SqliteStore::open(&dir.join("booking.db"), 4)
        .await
        .expect("store");
    let keys = KeyMaterial::from_secret(&secrecy::SecretString::from("b".repeat(40))).expect("key");
    let authenticator = Authenticator {
        verifier: Arc::new(keys.verifier()),
        revoked: RevokedSessions::default(),
        clock: boxoffice_shared::clock::system(),
    };
    BookingService::start(
        store,
        authenticator,
        boxoffice_shared::clock::system(),
        None,
        boxoffice_booking::service::Selling {
            checkout: boxoffice_booking::payments::Checkout::default(),
            tickets: boxoffice_booking::service::Tickets::unnamed(),
        },
        CancellationToken::new(),
        &TaskTracker::new(),
    )
    .await
    .expect("booking service")
}

async fn concert(service: &BookingService, capacity: i64) -> (Uuid, Uuid) {
    let concert_id = Uuid::now_v7();
    let seat_type_id = Uuid::now_v7();
    service
        .provision(&ConcertInventory {
            concert_id,
            name: "Bench".into(),
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

fn customer() -> AuthUser {
    AuthUser {
        user_id: Uuid::now_v7(),
        session_id: Uuid::now_v7(),
        role: Role::Customer,
    }
}

/// Fires `WAVE` bookings by distinct users at once and waits for every answer; each must be
/// confirmed (`sold_out == false`) or refused as sold out (`sold_out == true`), so that a writer
/// failing every request is not timed as a fast one.
async fn wave(
    service: &BookingService,
    concert_id: Uuid,
    seat_type_id: Uuid,
    sold_out: bool,
) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(WAVE);
    for _ in 0..WAVE {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            service
                .book(customer(), concert_id, seat_type_id, None)
                .await
        }));
    }
    for task in tasks {
        match (task.await.expect("booking task"), sold_out) {
            (Ok(BookOutcome::Created(_)), false) | (Err(BookingError::SoldOut), true) => {}
            (other, _) => panic!("unexpected answer in a wave (sold out: {sold_out}): {other:?}"),
        }
    }
    started.elapsed()
}

fn engine(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let service = runtime.block_on(start(dir.path()));

    let mut group = c.benchmark_group("booking_engine");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(WAVE as u64));
    group.bench_function("durable_bookings", |b| {
        b.to_async(&runtime).iter_custom(|rounds| {
            let service = service.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..rounds {
                    // A fresh seat type each round so every booking in the wave wins.
                    let (concert_id, seat_type_id) = concert(&service, WAVE as i64).await;
                    total += wave(&service, concert_id, seat_type_id, false).await;
                }
                total
            }
        });
    });

    let (concert_id, seat_type_id) = runtime.block_on(async {
        let (concert_id, seat_type_id) = concert(&service, 1).await;
        let _ = service
            .book(customer(), concert_id, seat_type_id, None)
            .await;
        (concert_id, seat_type_id)
    });
    group.bench_function("sold_out_answers", |b| {
        b.to_async(&runtime).iter_custom(|rounds| {
            let service = service.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..rounds {
                    total += wave(&service, concert_id, seat_type_id, true).await;
                }
                total
            }
        });
    });
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
