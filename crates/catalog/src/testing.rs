//! Test support: an in-memory stand-in for Booking's side of the [`Inventory`] contract, a
//! catalog on a real SQLite file in a temporary directory, and access tokens.
//!
//! The fake follows the contract's documented behaviour (idempotent provisioning that only adds
//! unknown seat types, `booking_closed` once started or cancelled, capacity never below sold);
//! black-box tests against the real Booking service live with the binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use boxoffice_shared::clients::{
    Availability, ClientError, ConcertInventory, Inventory, SeatAvailability, WaitingRoom,
};
use boxoffice_shared::clock::{Clock, ManualClock, SharedClock};
use boxoffice_shared::db::SqliteStore;
use boxoffice_shared::problem::ErrorCode;
use boxoffice_shared::token::{
    AUDIENCE, AccessClaims, Authenticator, ISSUER, RevokedSessions, Role, TokenVerifier,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use crate::domain::{
    Capacity, Category, Currency, Description, FutureStart, NewConcert, NewSeatType, PriceCents,
    SeatTypeName, TimeZoneName, Title,
};
use crate::service::CatalogService;

/// "Now" in every test, unless a test moves the clock.
pub const START: OffsetDateTime = datetime!(2030-01-01 12:00 UTC);

const SECRET: &[u8] = b"catalog-test-secret-catalog-test-secret";

#[derive(Debug, Clone)]
pub struct FakeConcert {
    pub name: String,
    pub venue: String,
    pub starts_at: OffsetDateTime,
    pub cancelled: bool,
    /// The waiting room last provisioned.
    pub waiting_room: Option<WaitingRoom>,
    /// Seat type → (capacity, sold), in provisioning order.
    pub seats: Vec<(Uuid, i64, i64)>,
}

/// Booking as the catalog sees it, in memory.
pub struct FakeInventory {
    pub concerts: Mutex<HashMap<Uuid, FakeConcert>>,
    /// When set, every call fails as if Booking were unreachable.
    pub down: AtomicBool,
    pub provisions: AtomicUsize,
    clock: Arc<ManualClock>,
}

impl FakeInventory {
    pub fn new(clock: Arc<ManualClock>) -> Self {
        Self {
            concerts: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
            provisions: AtomicUsize::new(0),
            clock,
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check_up(&self) -> Result<(), ClientError> {
        if self.down.load(Ordering::SeqCst) {
            Err(ClientError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }

    pub fn concert(&self, id: Uuid) -> Option<FakeConcert> {
        self.concerts.lock().unwrap().get(&id).cloned()
    }

    /// Books `count` seats of a seat type, as bookings would.
    pub fn sell(&self, seat_type_id: Uuid, count: i64) {
        let mut concerts = self.concerts.lock().unwrap();
        for concert in concerts.values_mut() {
            for seat in &mut concert.seats {
                if seat.0 == seat_type_id {
                    assert!(seat.2 + count <= seat.1, "overselling in a test");
                    seat.2 += count;
                    return;
                }
            }
        }
        panic!("unknown seat type {seat_type_id}");
    }
}

#[async_trait]
impl Inventory for FakeInventory {
    async fn provision(&self, concert: &ConcertInventory) -> Result<(), ClientError> {
        self.check_up()?;
        let now = self.clock.now();
        let mut concerts = self.concerts.lock().unwrap();
        let entry = concerts
            .entry(concert.concert_id)
            .or_insert_with(|| FakeConcert {
                name: String::new(),
                venue: String::new(),
                starts_at: concert.starts_at,
                cancelled: false,
                waiting_room: None,
                seats: Vec::new(),
            });
        if entry.cancelled || entry.starts_at <= now {
            return Err(ClientError::rejected(
                ErrorCode::BookingClosed,
                "sales are closed",
            ));
        }
        entry.name = concert.name.clone();
        entry.venue = concert.venue.clone();
        entry.starts_at = concert.starts_at;
        entry.waiting_room = concert.waiting_room;
        for seat in &concert.seat_types {
            if !entry.seats.iter().any(|known| known.0 == seat.seat_type_id) {
                entry.seats.push((seat.seat_type_id, seat.capacity, 0));
            }
        }
        self.provisions.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn set_capacity(&self, seat_type_id: Uuid, capacity: i64) -> Result<(), ClientError> {
        self.check_up()?;
        let mut concerts = self.concerts.lock().unwrap();
        for concert in concerts.values_mut() {
            for seat in &mut concert.seats {
                if seat.0 == seat_type_id {
                    if capacity < seat.2 {
                        return Err(ClientError::rejected(
                            ErrorCode::ValidationFailed,
                            format!("{} seats are already sold", seat.2),
                        ));
                    }
                    seat.1 = capacity;
                    return Ok(());
                }
            }
        }
        Err(ClientError::rejected(
            ErrorCode::SeatTypeNotFound,
            "unknown seat type",
        ))
    }

    async fn cancel_concert(&self, concert_id: Uuid) -> Result<(), ClientError> {
        self.check_up()?;
        let mut concerts = self.concerts.lock().unwrap();
        match concerts.get_mut(&concert_id) {
            Some(concert) => {
                concert.cancelled = true;
                Ok(())
            }
            None => Err(ClientError::rejected(
                ErrorCode::ConcertNotFound,
                "unknown concert",
            )),
        }
    }

    async fn availability(
        &self,
        concert_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Availability>, ClientError> {
        self.check_up()?;
        let now = self.clock.now();
        let concerts = self.concerts.lock().unwrap();
        Ok(concert_ids
            .iter()
            .filter_map(|id| concerts.get(id).map(|concert| (*id, concert)))
            .map(|(id, concert)| {
                let seat_types: Vec<SeatAvailability> = concert
                    .seats
                    .iter()
                    .map(|(seat_type_id, capacity, sold)| SeatAvailability {
                        seat_type_id: *seat_type_id,
                        capacity: *capacity,
                        remaining: capacity - sold,
                    })
                    .collect();
                let open = !concert.cancelled
                    && concert.starts_at > now
                    && seat_types.iter().any(|s| s.remaining > 0);
                (
                    id,
                    Availability {
                        concert_id: id,
                        booking_open: open,
                        cancelled: concert.cancelled,
                        seat_types,
                    },
                )
            })
            .collect())
    }
}

/// A catalog service over a fresh SQLite file, with its fake Booking and clock.
pub struct Harness {
    pub service: CatalogService,
    pub inventory: Arc<FakeInventory>,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteStore::open(&dir.path().join("catalog.db"), 4)
            .await
            .unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let shared: SharedClock = clock.clone();
        let inventory = Arc::new(FakeInventory::new(clock.clone()));
        let authenticator = Authenticator {
            verifier: Arc::new(TokenVerifier::new(
                Algorithm::HS256,
                DecodingKey::from_secret(SECRET),
            )),
            revoked: RevokedSessions::default(),
            clock: shared.clone(),
        };
        let service = CatalogService::new(db, inventory.clone(), authenticator, shared);
        service.migrate().await.unwrap();
        Self {
            service,
            inventory,
            clock,
            _dir: dir,
        }
    }

    /// A bearer token for a user with `role`.
    pub fn token(&self, role: Role) -> String {
        // jsonwebtoken checks expiry against the wall clock, not the test clock.
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            role,
            iat: now,
            exp: now + 600,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            jti: Uuid::now_v7(),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }
}

/// A valid concert starting `hours_from_start` hours after [`START`], with the given seat types
/// (name, capacity), priced 10.00 USD.
pub fn new_concert(
    name: &str,
    artist: &str,
    venue: &str,
    hours: i64,
    seats: &[(&str, i64)],
) -> NewConcert {
    NewConcert {
        name: Title::parse(name).unwrap(),
        artist: Title::parse(artist).unwrap(),
        venue: Title::parse(venue).unwrap(),
        description: Description::default(),
        category: Category::default_category(),
        starts_at: FutureStart::parse(START + time::Duration::hours(hours), START).unwrap(),
        time_zone: TimeZoneName::default_zone(),
        sales_open_at: None,
        waiting_room: None,
        seat_types: seats
            .iter()
            .map(|(name, capacity)| new_seat_type(name, *capacity))
            .collect(),
    }
}

pub fn new_seat_type(name: &str, capacity: i64) -> NewSeatType {
    NewSeatType {
        name: SeatTypeName::parse(name).unwrap(),
        price_cents: PriceCents::parse(1000).unwrap(),
        currency: Currency::default_currency(),
        capacity: Capacity::parse(capacity).unwrap(),
    }
}
