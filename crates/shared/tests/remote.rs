//! The HTTP form of the service contracts, black-box: real servers on 127.0.0.1:0 serving the
//! `/internal/v1` routes over small in-memory services, and the `Remote*` clients calling them.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_shared::ErrorCode;
use boxoffice_shared::clients::{
    Availability, BookingEmail, ClientError, ConcertInventory, Contact, EmailKind, Inventory,
    OutboxMessage, OutboxSource, RevocationSource, RevokedSession, SeatAvailability, SeatInventory,
    UserDirectory, WaitingRoom,
};
use boxoffice_shared::clock::{Clock, ManualClock};
use boxoffice_shared::remote::{
    Failover, MAX_ACKNOWLEDGED, RemoteDirectory, RemoteInventory, RemoteOutbox, RemoteRevocations,
    ServiceCredential, directory_routes, inventory_routes, outbox_routes,
};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

// ----- in-memory services that keep the contracts' rules -----

#[derive(Clone)]
struct Seat {
    concert_id: Uuid,
    capacity: i64,
    sold: i64,
}

struct Concert {
    inventory: ConcertInventory,
    cancelled: bool,
}

/// Booking's inventory, reduced to its rules.
#[derive(Default)]
struct MemoryInventory {
    concerts: Mutex<HashMap<Uuid, Concert>>,
    seats: Mutex<HashMap<Uuid, Seat>>,
    down: AtomicBool,
    calls: AtomicUsize,
}

impl MemoryInventory {
    fn enter(&self) -> Result<(), ClientError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.down.load(Ordering::SeqCst) {
            true => Err(ClientError::Unavailable("the store is down".into())),
            false => Ok(()),
        }
    }

    fn sell(&self, seat_type_id: Uuid, count: i64) {
        self.seats
            .lock()
            .unwrap()
            .get_mut(&seat_type_id)
            .unwrap()
            .sold += count;
    }
}

#[async_trait]
impl Inventory for MemoryInventory {
    async fn provision(&self, concert: &ConcertInventory) -> Result<(), ClientError> {
        self.enter()?;
        let mut concerts = self.concerts.lock().unwrap();
        if let Some(known) = concerts.get(&concert.concert_id)
            && (known.cancelled || known.inventory.starts_at <= OffsetDateTime::now_utc())
        {
            return Err(ClientError::rejected(
                ErrorCode::BookingClosed,
                "sales for this concert are closed",
            ));
        }
        let mut seats = self.seats.lock().unwrap();
        for seat in &concert.seat_types {
            seats.entry(seat.seat_type_id).or_insert(Seat {
                concert_id: concert.concert_id,
                capacity: seat.capacity,
                sold: 0,
            });
        }
        concerts.insert(
            concert.concert_id,
            Concert {
                inventory: concert.clone(),
                cancelled: false,
            },
        );
        Ok(())
    }

    async fn set_capacity(&self, seat_type_id: Uuid, capacity: i64) -> Result<(), ClientError> {
        self.enter()?;
        let mut seats = self.seats.lock().unwrap();
        let seat = seats.get_mut(&seat_type_id).ok_or_else(|| {
            ClientError::rejected(ErrorCode::SeatTypeNotFound, "unknown seat type")
        })?;
        if capacity < seat.sold {
            return Err(ClientError::rejected(
                ErrorCode::ValidationFailed,
                format!("{} seats are already sold", seat.sold),
            ));
        }
        seat.capacity = capacity;
        Ok(())
    }

    async fn cancel_concert(&self, concert_id: Uuid) -> Result<(), ClientError> {
        self.enter()?;
        let mut concerts = self.concerts.lock().unwrap();
        let concert = concerts
            .get_mut(&concert_id)
            .ok_or_else(|| ClientError::rejected(ErrorCode::ConcertNotFound, "unknown concert"))?;
        concert.cancelled = true;
        Ok(())
    }

    async fn availability(
        &self,
        concert_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Availability>, ClientError> {
        self.enter()?;
        let concerts = self.concerts.lock().unwrap();
        let seats = self.seats.lock().unwrap();
        let now = OffsetDateTime::now_utc();
        Ok(concert_ids
            .iter()
            .filter_map(|id| concerts.get(id).map(|concert| (*id, concert)))
            .map(|(id, concert)| {
                let mut seat_types: Vec<SeatAvailability> = seats
                    .iter()
                    .filter(|(_, seat)| seat.concert_id == id)
                    .map(|(seat_type_id, seat)| SeatAvailability {
                        seat_type_id: *seat_type_id,
                        capacity: seat.capacity,
                        remaining: seat.capacity - seat.sold,
                    })
                    .collect();
                seat_types.sort_by_key(|seat| seat.seat_type_id);
                let booking_open = !concert.cancelled
                    && concert.inventory.starts_at > now
                    && seat_types.iter().any(|seat| seat.remaining > 0);
                let availability = Availability {
                    concert_id: id,
                    booking_open,
                    cancelled: concert.cancelled,
                    seat_types,
                };
                (id, availability)
            })
            .collect())
    }
}

struct Row {
    message: OutboxMessage,
    due_at: OffsetDateTime,
    leased_until: Option<OffsetDateTime>,
    last_error: Option<String>,
}

/// Booking's outbox, on a clock the test moves.
struct MemoryOutbox {
    clock: ManualClock,
    rows: Mutex<Vec<Row>>,
    calls: AtomicUsize,
}

impl MemoryOutbox {
    fn new() -> Self {
        Self {
            clock: ManualClock::new(datetime!(2027-05-01 12:00 UTC)),
            rows: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
        }
    }

    fn enqueue(&self, kind: EmailKind) -> OutboxMessage {
        let message = OutboxMessage {
            message_id: Uuid::now_v7(),
            kind,
            attempts: 0,
            booking: BookingEmail {
                booking_id: Uuid::now_v7(),
                user_id: Uuid::now_v7(),
                concert_id: Uuid::now_v7(),
                concert_name: "Nils Frahm — Live".into(),
                artist: "Nils Frahm".into(),
                venue: "Funkhaus".into(),
                time_zone: "Europe/Berlin".into(),
                starts_at: datetime!(2027-06-01 20:00:00.123 +02:00),
                seat_type_name: "Balcony".into(),
                price_cents: 4_900,
                currency: "EUR".into(),
                at: self.clock.now(),
                payment: None,
                ticket_code: None,
            },
        };
        self.rows.lock().unwrap().push(Row {
            message: message.clone(),
            due_at: self.clock.now(),
            leased_until: None,
            last_error: None,
        });
        message
    }

    fn with_row<T>(&self, id: Uuid, f: impl FnOnce(&mut Row) -> T) -> Result<T, ClientError> {
        let mut rows = self.rows.lock().unwrap();
        let row = rows
            .iter_mut()
            .find(|row| row.message.message_id == id)
            .ok_or_else(|| ClientError::rejected(ErrorCode::NotFound, "no such message"))?;
        Ok(f(row))
    }
}

#[async_trait]
impl OutboxSource for MemoryOutbox {
    async fn claim(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxMessage>, ClientError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.clock.now();
        let mut rows = self.rows.lock().unwrap();
        Ok(rows
            .iter_mut()
            .filter(|row| row.due_at <= now && row.leased_until.is_none_or(|until| until <= now))
            .take(limit as usize)
            .map(|row| {
                row.leased_until = Some(now + lease);
                row.message.clone()
            })
            .collect())
    }

    async fn acknowledge(&self, message_ids: &[Uuid]) -> Result<(), ClientError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // Acknowledged messages leave the outbox; a second acknowledgement is a no-op.
        let mut rows = self.rows.lock().unwrap();
        rows.retain(|row| !message_ids.contains(&row.message.message_id));
        Ok(())
    }

    async fn retry_later(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), ClientError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.with_row(message_id, |row| {
            row.message.attempts += 1;
            row.due_at = retry_at;
            row.leased_until = None;
            row.last_error = Some(error.to_owned());
        })
    }

    async fn depth(&self) -> Result<u64, ClientError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.rows.lock().unwrap().len() as u64)
    }
}

#[derive(Default)]
struct MemoryDirectory(Mutex<HashMap<Uuid, Contact>>, Mutex<Vec<RevokedSession>>);

#[async_trait]
impl UserDirectory for MemoryDirectory {
    async fn contact(&self, user_id: Uuid) -> Result<Option<Contact>, ClientError> {
        Ok(self.0.lock().unwrap().get(&user_id).cloned())
    }
}

#[async_trait]
impl RevocationSource for MemoryDirectory {
    async fn revoked_sessions(&self) -> Result<Vec<RevokedSession>, ClientError> {
        Ok(self.1.lock().unwrap().clone())
    }
}

// ----- harness -----

/// One internal router served on a real socket.
struct Server {
    base: Url,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(router: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(signal)
                .await
                .unwrap();
        });
        Self {
            base: base.parse().unwrap(),
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }
}

fn credential() -> ServiceCredential {
    ServiceCredential::parse("test-service-credential-0123456789abcdef").unwrap()
}

fn wrong_credential() -> ServiceCredential {
    ServiceCredential::parse("not-the-service-credential-0123456789abc").unwrap()
}

fn concert(seats: &[(Uuid, i64)]) -> ConcertInventory {
    ConcertInventory {
        concert_id: Uuid::now_v7(),
        name: "Nils Frahm — Live".into(),
        artist: "Nils Frahm".into(),
        venue: "Funkhaus".into(),
        time_zone: "Europe/Berlin".into(),
        starts_at: OffsetDateTime::now_utc() + time::Duration::days(30),
        sales_open_at: Some(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()),
        waiting_room: Some(WaitingRoom {
            admit_per_minute: 1_000,
            admission_ttl_seconds: 600,
        }),
        seat_types: seats
            .iter()
            .map(|(id, capacity)| SeatInventory {
                seat_type_id: *id,
                name: "Balcony".into(),
                price_cents: 4_900,
                currency: "EUR".into(),
                capacity: *capacity,
            })
            .collect(),
    }
}

fn rejected(code: ErrorCode, detail: &str) -> ClientError {
    ClientError::rejected(code, detail)
}

async fn inventory_server() -> (Arc<MemoryInventory>, Server, RemoteInventory) {
    let inner = Arc::new(MemoryInventory::default());
    let server = Server::start(inventory_routes(inner.clone(), credential())).await;
    let client = RemoteInventory::new(server.base.clone(), credential(), reqwest::Client::new());
    (inner, server, client)
}

async fn outbox_server() -> (Arc<MemoryOutbox>, Server, RemoteOutbox) {
    let inner = Arc::new(MemoryOutbox::new());
    let server = Server::start(outbox_routes(inner.clone(), credential())).await;
    let client = RemoteOutbox::new(server.base.clone(), credential(), reqwest::Client::new());
    (inner, server, client)
}

/// Asserts a problem+json answer and returns its body.
async fn problem(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body
}

// ----- round trips -----

#[tokio::test]
async fn inventory_round_trips_and_keeps_rejection_codes() {
    let (inner, _server, remote) = inventory_server().await;
    let (stalls, balcony) = (Uuid::now_v7(), Uuid::now_v7());
    let mut show = concert(&[(stalls, 100)]);

    // Provisioning is idempotent, and later provisions add seat types and rename.
    remote.provision(&show).await.unwrap();
    remote.provision(&show).await.unwrap();
    show.name = "Nils Frahm — Live (extra date)".into();
    show.seat_types.extend(concert(&[(balcony, 20)]).seat_types);
    remote.provision(&show).await.unwrap();
    assert_eq!(inner.seats.lock().unwrap().len(), 2);
    assert_eq!(
        inner.concerts.lock().unwrap()[&show.concert_id].inventory,
        show
    );

    // Capacity grows, and shrinks only down to what is sold.
    remote.set_capacity(stalls, 120).await.unwrap();
    inner.sell(stalls, 50);
    remote.set_capacity(stalls, 50).await.unwrap();
    assert_eq!(
        remote.set_capacity(stalls, 49).await,
        Err(rejected(
            ErrorCode::ValidationFailed,
            "50 seats are already sold"
        ))
    );
    assert_eq!(
        remote.set_capacity(Uuid::now_v7(), 1).await,
        Err(rejected(ErrorCode::SeatTypeNotFound, "unknown seat type"))
    );

    // Availability comes back keyed by concert, unknown concerts left out.
    let unknown = Uuid::now_v7();
    let found = remote
        .availability(&[show.concert_id, unknown])
        .await
        .unwrap();
    let mut expected = inner.availability(&[show.concert_id]).await.unwrap();
    assert_eq!(found, expected);
    let seats = &found[&show.concert_id].seat_types;
    assert!(found[&show.concert_id].booking_open);
    assert!(seats.contains(&SeatAvailability {
        seat_type_id: stalls,
        capacity: 50,
        remaining: 0
    }));

    // Cancelling is idempotent and closes sales; provisioning is then refused.
    remote.cancel_concert(show.concert_id).await.unwrap();
    remote.cancel_concert(show.concert_id).await.unwrap();
    expected = remote.availability(&[show.concert_id]).await.unwrap();
    assert!(expected[&show.concert_id].cancelled);
    assert!(!expected[&show.concert_id].booking_open);
    assert_eq!(
        remote.provision(&show).await,
        Err(rejected(
            ErrorCode::BookingClosed,
            "sales for this concert are closed"
        ))
    );
    assert_eq!(
        remote.cancel_concert(unknown).await,
        Err(rejected(ErrorCode::ConcertNotFound, "unknown concert"))
    );
    assert_eq!(remote.availability(&[]).await, Ok(HashMap::new()));
}

#[tokio::test]
async fn outbox_leases_acknowledges_and_retries_over_http() {
    let (inner, _server, remote) = outbox_server().await;
    let first = inner.enqueue(EmailKind::BookingConfirmed);
    let second = inner.enqueue(EmailKind::BookingCancelled);
    let third = inner.enqueue(EmailKind::BookingConfirmed);
    let lease = Duration::from_secs(30);

    // Claims lease: what one claim took, the next does not see, until the lease runs out.
    assert_eq!(
        remote.claim(2, lease).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(remote.claim(10, lease).await.unwrap(), vec![third.clone()]);
    assert_eq!(remote.claim(10, lease).await.unwrap(), vec![]);
    assert_eq!(remote.depth().await.unwrap(), 3);

    remote.acknowledge(&[first.message_id]).await.unwrap();
    remote.acknowledge(&[first.message_id]).await.unwrap();
    let retry_at = inner.clock.now() + time::Duration::minutes(5);
    remote
        .retry_later(second.message_id, retry_at, "SMTP 451: try again later")
        .await
        .unwrap();
    assert_eq!(remote.depth().await.unwrap(), 2);

    // The third message's lease runs out: offered again. The second waits for its retry time.
    inner.clock.advance(time::Duration::seconds(31));
    assert_eq!(remote.claim(10, lease).await.unwrap(), vec![third.clone()]);
    // Several at once, one of them already acknowledged.
    remote
        .acknowledge(&[first.message_id, third.message_id])
        .await
        .unwrap();
    inner.clock.advance(time::Duration::minutes(5));
    let again = remote.claim(10, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, second.message_id);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(
        inner.with_row(second.message_id, |row| row.last_error.clone()),
        Ok(Some("SMTP 451: try again later".into()))
    );
    assert_eq!(
        remote.retry_later(Uuid::now_v7(), retry_at, "gone").await,
        Err(rejected(ErrorCode::NotFound, "no such message"))
    );
}

#[tokio::test]
async fn acknowledgements_one_at_a_time_still_work_and_a_huge_one_is_refused_whole() {
    let (inner, server, _remote) = outbox_server().await;
    let first = inner.enqueue(EmailKind::BookingConfirmed);
    let second = inner.enqueue(EmailKind::BookingConfirmed);
    let http = reqwest::Client::new();
    let secret = "test-service-credential-0123456789abcdef";

    // The route a worker of the previous release calls, one message per request.
    let response = http
        .post(server.url(&format!("/internal/v1/outbox/{}/ack", first.message_id)))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        inner.with_row(first.message_id, |_| ()).is_err(),
        "acknowledged"
    );

    // More ids than one acknowledgement may carry: refused, and nothing is acknowledged.
    let mut ids = vec![second.message_id];
    ids.extend((0..MAX_ACKNOWLEDGED).map(|_| Uuid::now_v7()));
    let response = http
        .post(server.url("/internal/v1/outbox/ack"))
        .bearer_auth(secret)
        .json(&json!({ "message_ids": ids }))
        .send()
        .await
        .unwrap();
    problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(
        inner.with_row(second.message_id, |_| ()).is_ok(),
        "still queued"
    );
}

#[tokio::test]
async fn directory_answers_contacts_and_none_for_unknown_users() {
    let inner = Arc::new(MemoryDirectory::default());
    let known = Uuid::now_v7();
    let contact = Contact {
        email: "ada@example.com".into(),
        full_name: "Ada Lovelace".into(),
    };
    inner.0.lock().unwrap().insert(known, contact.clone());
    let server = Server::start(directory_routes(inner, credential())).await;
    let remote = RemoteDirectory::new(server.base.clone(), credential(), reqwest::Client::new());

    assert_eq!(remote.contact(known).await, Ok(Some(contact)));
    assert_eq!(remote.contact(Uuid::now_v7()).await, Ok(None));
}

#[tokio::test]
async fn revoked_sessions_cross_intact_and_need_the_credential() {
    let inner = Arc::new(MemoryDirectory::default());
    let revoked = RevokedSession {
        session_id: Uuid::now_v7(),
        forget_after: 1_900_000_000,
    };
    inner.1.lock().unwrap().push(revoked);
    let server = Server::start(directory_routes(inner, credential())).await;
    let http = reqwest::Client::new();
    let remote = RemoteRevocations::new(server.base.clone(), credential(), http.clone());
    assert_eq!(remote.revoked_sessions().await, Ok(vec![revoked]));

    let stranger = RemoteRevocations::new(server.base.clone(), wrong_credential(), http);
    assert!(matches!(
        stranger.revoked_sessions().await,
        Err(ClientError::Unavailable(_))
    ));
}

#[tokio::test]
async fn failover_moves_past_a_dead_instance_but_not_past_a_refusal() {
    let (inner, server, _) = inventory_server().await;
    // A port nobody listens on: bound, then released.
    let dead: Url = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", socket.local_addr().unwrap())
            .parse()
            .unwrap()
    };
    let http = reqwest::Client::new();
    let failover = Failover::new(vec![
        RemoteInventory::new(dead.clone(), credential(), http.clone()),
        RemoteInventory::new(server.base.clone(), credential(), http.clone()),
    ]);
    let seat = Uuid::now_v7();
    let show = concert(&[(seat, 10)]);
    // Whichever instance each call starts at, every call reaches the live one.
    for _ in 0..4 {
        failover.provision(&show).await.unwrap();
    }
    assert!(
        inner
            .concerts
            .lock()
            .unwrap()
            .contains_key(&show.concert_id)
    );
    // A refusal is an answer: not retried elsewhere.
    let refused = failover.set_capacity(Uuid::now_v7(), 5).await;
    assert!(
        matches!(refused, Err(ClientError::Rejected { .. })),
        "{refused:?}"
    );

    let all_dead = Failover::new(vec![RemoteInventory::new(dead, credential(), http)]);
    assert!(matches!(
        all_dead.cancel_concert(show.concert_id).await,
        Err(ClientError::Unavailable(_))
    ));
}

// ----- authentication -----

#[tokio::test]
async fn internal_routes_refuse_a_missing_or_wrong_credential_and_change_nothing() {
    let (inner, server, _) = inventory_server().await;
    let http = reqwest::Client::new();
    let show = concert(&[(Uuid::now_v7(), 10)]);
    let url = server.url(&format!(
        "/internal/v1/inventory/concerts/{}",
        show.concert_id
    ));

    let missing = http.put(url.clone()).json(&show).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    problem(missing, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    for token in [
        "not-the-service-credential-0123456789abc",
        "x",
        "test-service-credential",
    ] {
        let wrong = http.put(url.clone()).bearer_auth(token).json(&show).send();
        problem(
            wrong.await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        )
        .await;
    }
    let basic = http
        .put(url.clone())
        .basic_auth("catalog", Some("x"))
        .json(&show);
    problem(
        basic.send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    // The credential is checked before the body is read: no hint about what the route expects.
    let garbage = http
        .put(url)
        .body("{")
        .header("content-type", "application/json");
    problem(
        garbage.send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    // A client with the wrong credential sees an outage, not an end-user `unauthenticated`.
    let remote = RemoteInventory::new(server.base.clone(), wrong_credential(), http);
    assert!(matches!(
        remote.provision(&show).await,
        Err(ClientError::Unavailable(_))
    ));
    assert!(matches!(
        remote.cancel_concert(show.concert_id).await,
        Err(ClientError::Unavailable(_))
    ));

    assert_eq!(inner.calls.load(Ordering::SeqCst), 0);
    assert!(inner.concerts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn outbox_and_directory_routes_are_guarded_too() {
    let (outbox, server, _) = outbox_server().await;
    outbox.enqueue(EmailKind::BookingConfirmed);
    let remote = RemoteOutbox::new(
        server.base.clone(),
        wrong_credential(),
        reqwest::Client::new(),
    );
    assert!(matches!(
        remote.claim(10, Duration::from_secs(30)).await,
        Err(ClientError::Unavailable(_))
    ));
    assert!(matches!(
        remote.depth().await,
        Err(ClientError::Unavailable(_))
    ));
    assert_eq!(outbox.calls.load(Ordering::SeqCst), 0);
    assert!(outbox.rows.lock().unwrap()[0].leased_until.is_none());

    let users = Server::start(directory_routes(
        Arc::new(MemoryDirectory::default()),
        credential(),
    ))
    .await;
    let response =
        reqwest::get(users.url(&format!("/internal/v1/users/{}/contact", Uuid::now_v7())))
            .await
            .unwrap();
    problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

// ----- malformed input and failures -----

#[tokio::test]
async fn malformed_bodies_are_problem_documents() {
    let (inner, server, _) = inventory_server().await;
    let (outbox, outbox_server, _) = outbox_server().await;
    let http = reqwest::Client::new();
    let token = "test-service-credential-0123456789abcdef";
    let show = concert(&[(Uuid::now_v7(), 10)]);

    let concert_url = server.url(&format!(
        "/internal/v1/inventory/concerts/{}",
        show.concert_id
    ));
    let send = |request: reqwest::RequestBuilder| request.bearer_auth(token).send();

    let syntax = http
        .put(concert_url.clone())
        .header("content-type", "application/json")
        .body("{\"name\":");
    problem(
        send(syntax).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_body",
    )
    .await;

    let shape = http
        .put(concert_url.clone())
        .json(&json!({"concert_id": show.concert_id}));
    let body = problem(
        send(shape).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "name");

    let other = concert(&[]);
    let mismatch = http.put(concert_url.clone()).json(&other);
    let body = problem(
        send(mismatch).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "concert_id");

    let text = http
        .put(concert_url)
        .body(serde_json::to_string(&show).unwrap());
    problem(
        send(text).await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let capacity = server.url("/internal/v1/inventory/seat-types/not-a-uuid/capacity");
    let bad_id = http.put(capacity).json(&json!({"capacity": 3}));
    problem(
        send(bad_id).await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let claim = outbox_server.url("/internal/v1/outbox/claim");
    let negative = http
        .post(claim)
        .json(&json!({"limit": -1, "lease_ms": 1000}));
    let body = problem(
        send(negative).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "limit");

    assert_eq!(inner.calls.load(Ordering::SeqCst), 0);
    assert_eq!(outbox.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failing_service_is_503_on_the_wire_and_unavailable_to_the_caller() {
    let (inner, server, remote) = inventory_server().await;
    inner.down.store(true, Ordering::SeqCst);

    let response = reqwest::Client::new()
        .post(server.url("/internal/v1/inventory/availability"))
        .bearer_auth("test-service-credential-0123456789abcdef")
        .json(&json!({"concert_ids": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    assert!(matches!(
        remote.availability(&[Uuid::now_v7()]).await,
        Err(ClientError::Unavailable(_))
    ));
    assert!(matches!(
        remote.set_capacity(Uuid::now_v7(), 1).await,
        Err(ClientError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_stopped_server_is_unavailable() {
    let (_inner, server, remote) = outbox_server().await;
    assert_eq!(remote.depth().await, Ok(0));
    server.stop().await;

    let outcome = remote.depth().await;
    assert!(
        matches!(outcome, Err(ClientError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(matches!(
        remote.acknowledge(&[Uuid::now_v7()]).await,
        Err(ClientError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_peer_that_never_answers_times_out_as_unavailable() {
    // Accepts connections and then says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base: Url = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let remote = RemoteDirectory::new(base, credential(), reqwest::Client::new())
        .with_timeout(Duration::from_millis(200));
    let outcome = remote.contact(Uuid::now_v7()).await;
    let Err(ClientError::Unavailable(cause)) = outcome else {
        panic!("expected a timeout, got {outcome:?}");
    };
    assert!(cause.contains("timed out"), "{cause}");
    silent.abort();
}

#[tokio::test]
async fn an_answer_that_is_not_the_contract_is_unavailable() {
    // Something else at the address (a misrouted proxy): 404 without a problem document.
    let stranger = Server::start(axum::Router::new()).await;
    let remote = RemoteDirectory::new(stranger.base.clone(), credential(), reqwest::Client::new());
    let outcome = remote.contact(Uuid::now_v7()).await;
    assert!(
        matches!(outcome, Err(ClientError::Unavailable(_))),
        "{outcome:?}"
    );
}
