//! The Booking store on PostgreSQL: the reads, the outbox, the inventory listener and the
//! group-commit writer that lets several Booking instances sell the same seats.
//!
//! # Group commit across instances
//! A hot seat type is one row. Booking one ticket per transaction holds that row's lock across
//! the commit's WAL flush, so the row admits one booking per flush whatever the number of clients
//! or instances. Here each instance's writer takes every queued booking and cancellation (up to
//! [`MAX_BATCH`]) and settles them all in one transaction:
//!
//! 1. lock, in one order in every instance (so instances queue behind each other instead of
//!    deadlocking): the batch's Idempotency-Keys (advisory locks), the sales involved (shared, in
//!    id order; every administrative change locks its sale exclusively first, so no sale window
//!    moves while a batch decides on it), the bookings being cancelled and every seat type
//!    involved (in id order); and read counts and sale windows from the locked rows — never from
//!    a cache;
//! 2. read which users already hold a booking for these concerts, and the saved answers of
//!    Idempotency-Keys;
//! 3. decide every request in memory, in arrival order: closed, already booked, a seat, or sold
//!    out;
//! 4. write the outcome with a handful of set-based statements (one `INSERT … SELECT FROM
//!    UNNEST` each for bookings, emails and idempotency records, one `UPDATE` for the
//!    cancellations); the schema's statement-level triggers move `remaining` by the number of
//!    rows, and its CHECK and partial unique index refuse an oversell or a duplicate whatever
//!    this code decided;
//! 5. `pg_notify` the touched concerts and commit once: one lock hold and one WAL flush for the
//!    whole batch. Every caller is answered only after the commit.
//!
//! A booking insert that another instance beat (the same user booking the same concert there at
//! the same moment) is skipped by `ON CONFLICT DO NOTHING` and answered `already_booked`; the seat
//! it would have taken goes to the next request of the batch that was refused for want of it. A
//! retry with the same Idempotency-Key waits on the key's lock for the instance settling the first
//! request, then reads its saved answer and replays it.
//! A deadlock or serialization failure rolls the batch back and runs it again (nobody was answered
//! yet); any other failure answers the whole batch `unavailable`.
//!
//! # The view across instances
//! Each instance keeps the in-memory view that answers sold-out and closed requests. Its own
//! writer updates it after each commit; every commit also notifies the channel
//! [`CHANNEL`], and a listener in every instance reloads the notified concerts from the store, so
//! a booking or cancellation made through another instance shows up within milliseconds. Each
//! time the listener starts listening (at start, after a lost connection) it reloads the whole
//! view, since commits made before were not notified to it. Row versions keep these writers from
//! taking the view back to an older state when they race ([`PgView`]). A view that is behind can
//! only refuse a request the store would have granted (for those milliseconds); it can never
//! grant one the store would refuse, since the writer decides on locked rows.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use boxoffice_shared::clients::{
    BookingEmail, ConcertInventory, EmailKind, OutboxMessage, SeatInventory,
};
use boxoffice_shared::clock::{SharedClock, from_millis, to_millis};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{
    Booking, BookingStatus, SaleState, email_date, missing_booking, outbox_kind, queued_email,
    request_fingerprint, sale_state,
};
use crate::engine::{BookOutcome, BookRequest, Canceller, Command, MAX_BATCH};
use crate::error::BookingError;
use crate::events::AvailabilityEvent;
use crate::store::{SalesRows, SavedResponse};
use crate::view::{ConcertSale, Inventory, Seat, SharedInventory, bookable};

/// The notification channel on which every commit names the concerts it touched.
pub const CHANNEL: &str = "booking_inventory";

/// How often a batch that hit a deadlock or serialization failure is tried again.
const ATTEMPTS: usize = 4;

macro_rules! booking_columns {
    () => {
        "id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at, cancelled_at"
    };
}

fn booking_from_row(row: &PgRow) -> Result<Booking, BookingError> {
    let status: String = row.try_get("status")?;
    Ok(Booking {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        concert_id: row.try_get("concert_id")?,
        seat_type_id: row.try_get("seat_type_id")?,
        status: BookingStatus::parse(&status)
            .ok_or_else(|| BookingError::Corrupt(format!("booking status {status}")))?,
        price_cents: row.try_get("price_cents")?,
        currency: row.try_get("currency")?,
        created_at: row.try_get("created_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
    })
}

/// Instants are kept with millisecond precision on both engines.
fn ms(at: OffsetDateTime) -> OffsetDateTime {
    from_millis(to_millis(at))
}

// ---------------------------------------------------------------------------------------------
// Reads.

pub async fn saved_response(
    pool: &PgPool,
    user_id: Uuid,
    key: &str,
) -> Result<Option<SavedResponse>, BookingError> {
    let row = sqlx::query(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys
         WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    row.map(|row| saved_from_row(&row)).transpose()
}

fn saved_from_row(row: &PgRow) -> Result<SavedResponse, BookingError> {
    Ok(SavedResponse {
        request_hash: row.try_get("request_hash")?,
        status: u16::try_from(row.try_get::<i32, _>("response_status")?)
            .map_err(|_| BookingError::Corrupt("response status".into()))?,
        body: row.try_get("response_body")?,
    })
}

pub async fn booking_by_id(pool: &PgPool, id: Uuid) -> Result<Option<Booking>, BookingError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(booking_from_row).transpose()
}

pub async fn list_bookings(
    pool: &PgPool,
    user_id: Uuid,
    status: Option<BookingStatus>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Booking>, BookingError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        booking_columns!(),
        " FROM bookings
         WHERE user_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(user_id)
    .bind(status.map(BookingStatus::as_str))
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(booking_from_row).collect()
}

pub async fn outbox_depth(pool: &PgPool) -> Result<u64, BookingError> {
    let depth: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(depth).unwrap_or(0))
}

pub async fn sales(pool: &PgPool, concert_id: Uuid) -> Result<Option<SalesRows>, BookingError> {
    let exists = sqlx::query("SELECT 1 FROM sales WHERE concert_id = $1")
        .bind(concert_id)
        .fetch_optional(pool)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let seats = sqlx::query(
        "SELECT id, name, capacity, remaining, price_cents, currency FROM seat_types
         WHERE concert_id = $1 ORDER BY position",
    )
    .bind(concert_id)
    .fetch_all(pool)
    .await?;
    let counts: HashMap<String, i64> = sqlx::query(
        "SELECT status, count(*) AS n FROM bookings WHERE concert_id = $1 GROUP BY status",
    )
    .bind(concert_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("status")?, row.try_get("n")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(Some(SalesRows {
        seat_types: seats
            .iter()
            .map(|row| {
                Ok((
                    row.try_get("id")?,
                    row.try_get("name")?,
                    row.try_get("capacity")?,
                    row.try_get("remaining")?,
                    row.try_get("price_cents")?,
                    row.try_get("currency")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?,
        confirmed: counts.get("confirmed").copied().unwrap_or(0),
        cancelled: counts.get("cancelled").copied().unwrap_or(0),
    }))
}

/// Concerts and seat types as read from the store, with the version of each row.
pub struct Snapshot {
    inventory: Inventory,
    versions: Versions,
}

/// The `version` of each `sales` and `seat_types` row (see [`PgView`]).
#[derive(Debug, Default)]
struct Versions {
    concerts: HashMap<Uuid, i64>,
    seats: HashMap<Uuid, i64>,
}

/// The whole view, or only the given concerts, read from the store.
pub async fn load_inventory(
    pool: &PgPool,
    only: Option<&[Uuid]>,
) -> Result<Snapshot, BookingError> {
    let only: Option<Vec<Uuid>> = only.map(<[Uuid]>::to_vec);
    let mut inventory = Inventory::default();
    let mut versions = Versions::default();
    let concerts = sqlx::query(
        "SELECT concert_id, name, venue, starts_at, cancelled_at, version FROM sales
         WHERE $1::uuid[] IS NULL OR concert_id = ANY($1)",
    )
    .bind(&only)
    .fetch_all(pool)
    .await?;
    for row in &concerts {
        let id: Uuid = row.try_get("concert_id")?;
        versions.concerts.insert(id, row.try_get("version")?);
        inventory.concerts.insert(
            id,
            ConcertSale {
                name: row.try_get("name")?,
                venue: row.try_get("venue")?,
                starts_at: row.try_get("starts_at")?,
                cancelled: row
                    .try_get::<Option<OffsetDateTime>, _>("cancelled_at")?
                    .is_some(),
                seat_types: Vec::new(),
            },
        );
    }
    let seats = sqlx::query(
        "SELECT id, concert_id, name, price_cents, currency, capacity, remaining, version
         FROM seat_types
         WHERE $1::uuid[] IS NULL OR concert_id = ANY($1) ORDER BY position",
    )
    .bind(&only)
    .fetch_all(pool)
    .await?;
    for row in &seats {
        let id: Uuid = row.try_get("id")?;
        let seat = seat_from_row(row)?;
        if let Some(concert) = inventory.concerts.get_mut(&seat.concert_id) {
            concert.seat_types.push(id);
        }
        versions.seats.insert(id, row.try_get("version")?);
        inventory.seats.insert(id, seat);
    }
    Ok(Snapshot {
        inventory,
        versions,
    })
}

fn seat_from_row(row: &PgRow) -> Result<Seat, sqlx::Error> {
    Ok(Seat {
        concert_id: row.try_get("concert_id")?,
        name: row.try_get("name")?,
        price_cents: row.try_get("price_cents")?,
        currency: row.try_get("currency")?,
        capacity: row.try_get("capacity")?,
        remaining: row.try_get("remaining")?,
    })
}

// ---------------------------------------------------------------------------------------------
// The view.

/// This instance's in-memory view on PostgreSQL, and the version of every row it shows.
///
/// Two things write the view, and they race: this instance's writer, right after each commit,
/// with the counts it read under lock and moved; and reloads from the store (the listener, and
/// the writer after an administrative change). A reload that read a newer state can land before
/// the writer publishes an older one, or a slow reload can land after a quicker, newer one; left
/// alone, the view would keep the older state until the next change to that row (a seat type
/// shown sold out while seats are free, for as long as nobody books or cancels it).
///
/// So every `sales` and `seat_types` row carries a `version`, which a trigger bumps on each update
/// under the row's lock: versions order a row's committed states. The view remembers, per row,
/// where in that order the state it shows stands, and drops a write that would take it back. A
/// state read at version `v` stands at `2v`; the state a writer's batch left after locking the row
/// at version `v` stands at `2v + 1` — no older than `v`, and no newer than whatever a reload reads
/// at a version above `v` (the batch's own updates included).
#[derive(Debug, Clone, Default)]
pub struct PgView {
    inventory: SharedInventory,
    /// Where each row's shown state stands; locked only while `inventory` is write-locked.
    shown: Arc<Mutex<Versions>>,
}

impl PgView {
    /// The whole view, read from the store.
    pub async fn load(pool: &PgPool) -> Result<Self, BookingError> {
        let view = Self::default();
        view.apply(load_inventory(pool, None).await?);
        Ok(view)
    }

    /// The view the service answers from.
    pub fn inventory(&self) -> &SharedInventory {
        &self.inventory
    }

    /// Applies what a reload read, row by row, except where the view already shows a later
    /// state. Returns the concerts read, and whether a sale window moved (for the closing timer).
    fn apply(&self, snapshot: Snapshot) -> (Vec<Uuid>, bool) {
        let Snapshot {
            inventory: fresh,
            versions,
        } = snapshot;
        let mut current = self.inventory.write();
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        let mut read = Vec::with_capacity(fresh.concerts.len());
        let mut moved = false;
        for (id, concert) in fresh.concerts {
            read.push(id);
            let at = 2 * versions.concerts.get(&id).copied().unwrap_or(0);
            if shown.concerts.get(&id).is_some_and(|shown| *shown > at) {
                continue;
            }
            shown.concerts.insert(id, at);
            moved |= current.concerts.get(&id).is_none_or(|old| {
                old.starts_at != concert.starts_at || old.cancelled != concert.cancelled
            });
            current.concerts.insert(id, concert);
        }
        for (id, seat) in fresh.seats {
            let at = 2 * versions.seats.get(&id).copied().unwrap_or(0);
            if shown.seats.get(&id).is_some_and(|shown| *shown > at) {
                continue;
            }
            shown.seats.insert(id, at);
            current.seats.insert(id, seat);
        }
        (read, moved)
    }

    /// Applies the seat types a batch of this instance's writer left, each as `(seat, version
    /// the batch locked it at)`, except where the view already shows a later state.
    fn publish(&self, seats: &HashMap<Uuid, (Seat, i64)>) {
        let mut current = self.inventory.write();
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, (seat, locked_at)) in seats {
            let at = 2 * locked_at + 1;
            if shown.seats.get(id).is_some_and(|shown| *shown > at) {
                continue;
            }
            shown.seats.insert(*id, at);
            current.seats.insert(*id, seat.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The outbox: workers in any process claim with SKIP LOCKED, so they never take the same message.

/// Leases up to `limit` due messages until `lease_until`, with what each email says: read from
/// the booking, its concert and its seat type as they are now, or, for a message queued before
/// emails were queued by reference, from the payload it was queued with.
pub async fn claim_outbox(
    pool: &PgPool,
    owner: Option<Uuid>,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: u32,
) -> Result<Vec<OutboxMessage>, BookingError> {
    let rows = sqlx::query(
        "WITH claimed AS (
            UPDATE outbox SET available_at = $1, attempts = attempts + 1, leased = true, leased_by = $4
            WHERE message_id IN (
                SELECT message_id FROM outbox
                WHERE sent_at IS NULL AND available_at <= $2
                ORDER BY available_at LIMIT $3
                FOR UPDATE SKIP LOCKED)
            RETURNING message_id, kind, booking_id, payload, attempts)
         SELECT c.message_id, c.kind, c.booking_id, c.payload, c.attempts,
                b.user_id, b.concert_id, s.name AS concert_name, s.artist, s.venue, s.time_zone,
                s.starts_at,
                t.name AS seat_type_name, b.price_cents, b.currency, b.created_at, b.cancelled_at
         FROM claimed AS c
         LEFT JOIN bookings AS b ON b.id = c.booking_id
         LEFT JOIN sales AS s ON s.concert_id = b.concert_id
         LEFT JOIN seat_types AS t ON t.id = b.seat_type_id",
    )
    .bind(ms(lease_until))
    .bind(ms(now))
    .bind(i64::from(limit))
    .bind(owner)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let message_id: Uuid = row.try_get("message_id")?;
            let kind = outbox_kind(row.try_get("kind")?)?;
            let attempts: i32 = row.try_get("attempts")?;
            let payload: Option<&str> = row.try_get("payload")?;
            let booking = queued_email(
                message_id,
                row.try_get("booking_id")?,
                payload,
                |booking_id| claimed_email(row, booking_id, kind),
            )?;
            Ok(OutboxMessage {
                message_id,
                kind,
                attempts: u32::try_from(attempts.saturating_sub(1)).unwrap_or(0),
                booking,
            })
        })
        .collect()
}

/// The email a claimed row names, from the booking, concert and seat type joined to it.
fn claimed_email(
    row: &PgRow,
    booking_id: Uuid,
    kind: EmailKind,
) -> Result<BookingEmail, BookingError> {
    let at = email_date(
        booking_id,
        kind,
        joined(row, "created_at", booking_id)?,
        row.try_get("cancelled_at")?,
    )?;
    Ok(BookingEmail {
        booking_id,
        user_id: joined(row, "user_id", booking_id)?,
        concert_id: joined(row, "concert_id", booking_id)?,
        concert_name: joined(row, "concert_name", booking_id)?,
        artist: joined(row, "artist", booking_id)?,
        venue: joined(row, "venue", booking_id)?,
        time_zone: joined(row, "time_zone", booking_id)?,
        starts_at: joined(row, "starts_at", booking_id)?,
        seat_type_name: joined(row, "seat_type_name", booking_id)?,
        price_cents: joined(row, "price_cents", booking_id)?,
        currency: joined(row, "currency", booking_id)?,
        at,
    })
}

/// A column of the claim's outer join to the booking: NULL only when the store has no such booking.
fn joined<'r, T>(row: &'r PgRow, column: &str, booking_id: Uuid) -> Result<T, BookingError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get::<Option<T>, _>(column)?
        .ok_or_else(|| missing_booking(booking_id))
}

/// Makes the messages leased by `owner`'s worker due again at once: called when that instance
/// starts, so the leases are those of its previous run, which died with its process.
pub async fn release_leases(
    pool: &PgPool,
    owner: Uuid,
    now: OffsetDateTime,
) -> Result<u64, BookingError> {
    let released = sqlx::query(
        "UPDATE outbox SET available_at = $1, leased = false, leased_by = NULL
         WHERE leased AND leased_by = $2 AND sent_at IS NULL AND available_at > $1",
    )
    .bind(ms(now))
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(released.rows_affected())
}

pub async fn acknowledge_outbox(
    pool: &PgPool,
    message_ids: &[Uuid],
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    sqlx::query(
        "UPDATE outbox SET sent_at = $1, last_error = NULL, leased = false
         WHERE message_id = ANY($2) AND sent_at IS NULL",
    )
    .bind(ms(now))
    .bind(message_ids)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn retry_outbox(
    pool: &PgPool,
    message_id: Uuid,
    retry_at: OffsetDateTime,
    error: &str,
) -> Result<(), BookingError> {
    sqlx::query(
        "UPDATE outbox SET available_at = $1, last_error = $2, leased = false
         WHERE message_id = $3 AND sent_at IS NULL",
    )
    .bind(ms(retry_at))
    .bind(error)
    .bind(message_id)
    .execute(pool)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The listener that keeps the view in step with commits made by other instances.

/// Reloads notified concerts into the view until `stop`.
///
/// A commit made before `LISTEN` takes effect is never notified, so the whole view is reloaded
/// each time listening starts: at start (the service loaded the view before the listener
/// connected) and after a lost connection (notifications sent meanwhile are gone).
pub async fn run_listener(
    pool: PgPool,
    view: PgView,
    events: broadcast::Sender<AvailabilityEvent>,
    schedule: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        first = false;
        let mut listener = match connect_listener(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for inventory changes; retrying");
                continue;
            }
        };
        if let Err(error) = refresh(&pool, &view, &events, &schedule, None).await {
            tracing::warn!(%error, "cannot reload the inventory view; retrying");
            continue;
        }
        if let Err(reason) = listen(&mut listener, &pool, &view, &events, &schedule, &stop).await {
            tracing::warn!(%reason, "inventory notifications may be lost; listening afresh");
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

/// Reloads notified concerts until `stop` (`Ok`) or until notifications may have been missed
/// (`Err`, saying why): the connection was lost, or a reload failed.
async fn listen(
    listener: &mut PgListener,
    pool: &PgPool,
    view: &PgView,
    events: &broadcast::Sender<AvailabilityEvent>,
    schedule: &Notify,
    stop: &CancellationToken,
) -> Result<(), String> {
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            next = listener.try_recv() => next.map_err(|error| error.to_string())?,
        };
        // `None`: the connection was lost (`try_recv` would reconnect on the next call, but
        // what was notified meanwhile is gone); the caller listens afresh and reloads it all.
        let Some(first) = first else {
            return Err("the connection was lost".into());
        };
        let mut concerts = HashSet::new();
        if let Ok(id) = first.payload().parse::<Uuid>() {
            concerts.insert(id);
        }
        // Take whatever else already arrived, to reload it in one go.
        while let Some(Ok(Some(more))) = futures_util::FutureExt::now_or_never(listener.try_recv())
        {
            if let Ok(id) = more.payload().parse::<Uuid>() {
                concerts.insert(id);
            }
        }
        let ids: Vec<Uuid> = concerts.into_iter().collect();
        refresh(pool, view, events, schedule, Some(&ids))
            .await
            .map_err(|error| format!("cannot reload notified concerts: {error}"))?;
    }
}

async fn connect_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Reloads the given concerts (or the whole view) from the store into the view.
async fn refresh(
    pool: &PgPool,
    view: &PgView,
    events: &broadcast::Sender<AvailabilityEvent>,
    schedule: &Notify,
    only: Option<&[Uuid]>,
) -> Result<(), BookingError> {
    let (changed, moved) = view.apply(load_inventory(pool, only).await?);
    for id in changed {
        let _ = events.send(AvailabilityEvent::Changed(id));
    }
    if moved {
        schedule.notify_one();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The writer.

type Reply<T> = oneshot::Sender<Result<T, BookingError>>;

/// This instance's writer: settles queued bookings and cancellations in batches.
pub struct PgWriter {
    pool: PgPool,
    view: PgView,
    clock: SharedClock,
    events: broadcast::Sender<AvailabilityEvent>,
    on_email: Option<Arc<Notify>>,
    on_schedule: Arc<Notify>,
}

/// One batch's bookings and cancellations, and where their answers go.
#[derive(Default)]
struct Batch {
    books: Vec<(BookRequest, Reply<BookOutcome>)>,
    cancels: Vec<(Uuid, Canceller, Reply<Booking>)>,
}

/// What the batch's transaction decided, sent once it commits.
struct Settled {
    books: Vec<Result<BookOutcome, BookingError>>,
    cancels: Vec<Result<Booking, BookingError>>,
    /// Each seat type as the batch left it (read under lock, `remaining` moved by the batch),
    /// with the row version it was locked at.
    seats: HashMap<Uuid, (Seat, i64)>,
    concerts: HashSet<Uuid>,
    emails: usize,
}

/// A seat type as locked by the batch.
struct Locked {
    seat: Seat,
    /// Its concert's sale, share-locked.
    sale: ConcertSale,
    /// The row's version when the batch locked it.
    version: i64,
}

impl PgWriter {
    pub fn new(
        pool: PgPool,
        view: PgView,
        clock: SharedClock,
        events: broadcast::Sender<AvailabilityEvent>,
        on_email: Option<Arc<Notify>>,
        on_schedule: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            view,
            clock,
            events,
            on_email,
            on_schedule,
        }
    }

    /// Runs until every sender of `commands` is gone.
    pub async fn run(self, mut commands: mpsc::Receiver<Command>) {
        let mut queued = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = commands.recv().await {
            queued.push(first);
            while queued.len() < MAX_BATCH {
                match commands.try_recv() {
                    Ok(command) => queued.push(command),
                    Err(_) => break,
                }
            }
            let size = queued.len();
            let mut batch = Batch::default();
            for command in queued.drain(..) {
                match command {
                    Command::Book(request, reply) => batch.books.push((request, reply)),
                    Command::Cancel(id, canceller, reply) => {
                        batch.cancels.push((id, canceller, reply));
                    }
                    other => self.administer(other).await,
                }
            }
            if !batch.books.is_empty() || !batch.cancels.is_empty() {
                self.commit_batch(batch).await;
            }
            metrics::histogram!("booking_writer_batch_size").record(size as f64);
        }
        tracing::debug!("booking writer stopped");
    }

    async fn commit_batch(&self, batch: Batch) {
        let now = ms(self.clock.now());
        let books: Vec<&BookRequest> = batch.books.iter().map(|(request, _)| request).collect();
        let cancels: Vec<(Uuid, Canceller)> = batch
            .cancels
            .iter()
            .map(|(id, canceller, _)| (*id, *canceller))
            .collect();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.settle(&books, &cancels, now).await {
                Err(BookingError::Store(error)) if attempt < ATTEMPTS && retryable(&error) => {
                    tracing::debug!(%error, attempt, "booking batch conflicted; running it again");
                }
                other => break other,
            }
        };
        match outcome {
            Ok(settled) => {
                self.publish(&settled);
                for ((_, reply), result) in batch.books.into_iter().zip(settled.books) {
                    let _ = reply.send(result);
                }
                for ((_, _, reply), result) in batch.cancels.into_iter().zip(settled.cancels) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, "booking batch failed to commit");
                for (_, reply) in batch.books {
                    let _ = reply.send(Err(BookingError::WriterStopped));
                }
                for (_, _, reply) in batch.cancels {
                    let _ = reply.send(Err(BookingError::WriterStopped));
                }
            }
        }
    }

    /// Runs one batch in one transaction; nothing is answered here.
    async fn settle(
        &self,
        books: &[&BookRequest],
        cancels: &[(Uuid, Canceller)],
        now: OffsetDateTime,
    ) -> Result<Settled, BookingError> {
        let mut tx = self.pool.begin().await?;

        // 1. The batch's Idempotency-Keys, locked: a retry that another instance is settling at
        //    this moment has either committed its answer (read in 5) or waits for this batch.
        lock_keys(&mut tx, books).await?;

        // 2. The sales involved, share-locked in id order. Every administrative change (moving or
        //    cancelling a concert, adding seat types, changing a capacity) locks its sale for update
        //    first,
        //    so it either waits for this batch or this batch waits for it and reads its outcome.
        //    Reading the sale in the seat types' locking statement instead would not do: after
        //    waiting for a seat type's lock, PostgreSQL re-reads the locked row but not the rows
        //    joined to it, and the batch would decide on a sale window that was just closed.
        let mut cancel_ids: Vec<Uuid> = cancels.iter().map(|(id, _)| *id).collect();
        cancel_ids.sort_unstable();
        cancel_ids.dedup();
        let concert_ids: Vec<Uuid> = books.iter().map(|request| request.concert_id).collect();
        let sales: HashMap<Uuid, ConcertSale> = sqlx::query(
            "SELECT concert_id, name, venue, starts_at, cancelled_at FROM sales
             WHERE concert_id = ANY($1)
                OR concert_id IN (SELECT concert_id FROM bookings WHERE id = ANY($2))
             ORDER BY concert_id FOR SHARE",
        )
        .bind(&concert_ids)
        .bind(&cancel_ids)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("concert_id")?,
                ConcertSale {
                    name: row.try_get("name")?,
                    venue: row.try_get("venue")?,
                    starts_at: row.try_get("starts_at")?,
                    cancelled: row
                        .try_get::<Option<OffsetDateTime>, _>("cancelled_at")?
                        .is_some(),
                    seat_types: Vec::new(),
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;

        // 3. The bookings to cancel, locked in id order.
        let targets: HashMap<Uuid, Booking> = if cancel_ids.is_empty() {
            HashMap::new()
        } else {
            sqlx::query(concat!(
                "SELECT ",
                booking_columns!(),
                " FROM bookings WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ))
            .bind(&cancel_ids)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| booking_from_row(row).map(|booking| (booking.id, booking)))
            .collect::<Result<_, _>>()?
        };

        // 4. Every seat type involved, locked in id order (only those of the sales locked in 2: a
        //    request naming a seat type of another concert is refused below).
        let mut seat_ids: Vec<Uuid> = books.iter().map(|request| request.seat_type_id).collect();
        seat_ids.extend(targets.values().map(|booking| booking.seat_type_id));
        seat_ids.sort_unstable();
        seat_ids.dedup();
        let locked_sales: Vec<Uuid> = sales.keys().copied().collect();
        let mut locked: HashMap<Uuid, Locked> = sqlx::query(
            "SELECT id, concert_id, name, price_cents, currency, capacity, remaining, version
             FROM seat_types WHERE id = ANY($1) AND concert_id = ANY($2)
             ORDER BY id FOR UPDATE",
        )
        .bind(&seat_ids)
        .bind(&locked_sales)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| {
            let seat = seat_from_row(row)?;
            let sale = sales.get(&seat.concert_id).cloned().ok_or_else(|| {
                BookingError::Corrupt(format!("seat type of unlocked concert {}", seat.concert_id))
            })?;
            Ok((
                row.try_get("id")?,
                Locked {
                    seat,
                    sale,
                    version: row.try_get("version")?,
                },
            ))
        })
        .collect::<Result<_, BookingError>>()?;

        // 5. Who already holds a booking for these concerts, and saved Idempotency-Key answers.
        let (users, concerts): (Vec<Uuid>, Vec<Uuid>) = books
            .iter()
            .map(|request| (request.user_id, request.concert_id))
            .unzip();
        let mut holders: HashSet<(Uuid, Uuid)> = sqlx::query(
            "SELECT b.user_id, b.concert_id FROM bookings b
             JOIN UNNEST($1::uuid[], $2::uuid[]) AS r(user_id, concert_id)
               ON b.user_id = r.user_id AND b.concert_id = r.concert_id
             WHERE b.status = 'confirmed'",
        )
        .bind(&users)
        .bind(&concerts)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("user_id")?, row.try_get("concert_id")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let (key_users, keys): (Vec<Uuid>, Vec<String>) = books
            .iter()
            .filter_map(|request| {
                request
                    .key
                    .as_ref()
                    .map(|key| (request.user_id, key.as_str().to_owned()))
            })
            .unzip();
        let mut saved: HashMap<(Uuid, String), SavedResponse> = if keys.is_empty() {
            HashMap::new()
        } else {
            sqlx::query(
                "SELECT k.user_id, k.idempotency_key, k.request_hash, k.response_status,
                        k.response_body
                 FROM idempotency_keys k
                 JOIN UNNEST($1::uuid[], $2::text[]) AS r(user_id, idempotency_key)
                   ON k.user_id = r.user_id AND k.idempotency_key = r.idempotency_key",
            )
            .bind(&key_users)
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    (row.try_get("user_id")?, row.try_get("idempotency_key")?),
                    saved_from_row(row)?,
                ))
            })
            .collect::<Result<_, BookingError>>()?
        };

        let mut settled = Settled {
            books: Vec::with_capacity(books.len()),
            cancels: Vec::with_capacity(cancels.len()),
            seats: HashMap::new(),
            concerts: HashSet::new(),
            emails: 0,
        };
        let mut emails: Vec<(EmailKind, Uuid)> = Vec::new();

        // 6a. Cancellations first: a seat they free is there for this batch's bookings.
        let mut cancelling: Vec<Uuid> = Vec::new();
        for (id, canceller) in cancels {
            let result = (|| {
                let booking = targets
                    .get(id)
                    .filter(|booking| canceller.is_admin || booking.user_id == canceller.user_id)
                    .ok_or(BookingError::BookingNotFound)?;
                if booking.status == BookingStatus::Cancelled || cancelling.contains(id) {
                    return Err(BookingError::AlreadyCancelled);
                }
                let locked = locked.get_mut(&booking.seat_type_id).ok_or_else(|| {
                    BookingError::Corrupt(format!("booking {id} has no inventory"))
                })?;
                if sale_state(now, locked.sale.starts_at, false) == SaleState::Started {
                    return Err(BookingError::BookingClosed);
                }
                locked.seat.remaining += 1;
                holders.remove(&(booking.user_id, booking.concert_id));
                let cancelled = Booking {
                    status: BookingStatus::Cancelled,
                    cancelled_at: Some(now),
                    ..booking.clone()
                };
                emails.push((EmailKind::BookingCancelled, cancelled.id));
                Ok(cancelled)
            })();
            if result.is_ok() {
                cancelling.push(*id);
            }
            settled.cancels.push(result);
        }

        // 6b. Bookings, in arrival order.
        let mut created: Vec<(usize, Booking)> = Vec::new();
        for (index, request) in books.iter().enumerate() {
            let fingerprint = request_fingerprint(request.concert_id, request.seat_type_id);
            let saved_key = request
                .key
                .as_ref()
                .map(|key| (request.user_id, key.as_str().to_owned()));
            if let Some(saved) = saved_key.as_ref().and_then(|key| saved.get(key)) {
                settled
                    .books
                    .push(crate::engine::replay(saved.clone(), &fingerprint));
                continue;
            }
            let result = (|| {
                let locked = locked
                    .get_mut(&request.seat_type_id)
                    .filter(|locked| locked.seat.concert_id == request.concert_id)
                    .ok_or(BookingError::SeatTypeNotFound)?;
                bookable(now, &locked.sale, locked.seat.remaining)?;
                if !holders.insert((request.user_id, request.concert_id)) {
                    return Err(BookingError::AlreadyBooked);
                }
                locked.seat.remaining -= 1;
                Ok(Booking {
                    id: Uuid::now_v7(),
                    user_id: request.user_id,
                    concert_id: request.concert_id,
                    seat_type_id: request.seat_type_id,
                    status: BookingStatus::Confirmed,
                    price_cents: locked.seat.price_cents,
                    currency: locked.seat.currency.clone(),
                    created_at: now,
                    cancelled_at: None,
                })
            })();
            match result {
                Ok(booking) => {
                    if let Some(key) = saved_key {
                        // A second request of this batch with the same key replays this one.
                        saved.insert(
                            key,
                            SavedResponse {
                                request_hash: fingerprint.to_vec(),
                                status: 201,
                                body: booking_json(&booking)?,
                            },
                        );
                    }
                    created.push((index, booking.clone()));
                    settled.books.push(Ok(BookOutcome::Created(booking)));
                }
                Err(error) => settled.books.push(Err(error)),
            }
        }

        // 7. Write. Cancellations: one UPDATE; the trigger returns the seats.
        if !cancelling.is_empty() {
            let updated = sqlx::query(
                "UPDATE bookings SET status = 'cancelled', cancelled_at = $2
                 WHERE id = ANY($1) AND status = 'confirmed'",
            )
            .bind(&cancelling)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != cancelling.len() as u64 {
                return Err(BookingError::Corrupt(
                    "a locked booking changed under the writer".into(),
                ));
            }
        }

        // Bookings: one INSERT; a row another instance beat us to is skipped and answered
        // already_booked, and its seat goes to the next request refused for want of it.
        let mut skipped = insert_bookings(&mut tx, created.iter().map(|(_, b)| b)).await?;
        if !skipped.is_empty() {
            let mut second: Vec<(usize, Booking)> = Vec::new();
            for (index, booking) in &created {
                if skipped.contains(&booking.id) {
                    settled.books[*index] = Err(BookingError::AlreadyBooked);
                    if let Some(locked) = locked.get_mut(&booking.seat_type_id) {
                        locked.seat.remaining += 1;
                    }
                }
            }
            created.retain(|(_, booking)| !skipped.contains(&booking.id));
            for (index, request) in books.iter().enumerate() {
                let Err(BookingError::SoldOut) = settled.books[index] else {
                    continue;
                };
                let Some(locked) = locked.get_mut(&request.seat_type_id) else {
                    continue;
                };
                if locked.seat.remaining <= 0
                    || !holders.insert((request.user_id, request.concert_id))
                {
                    continue;
                }
                locked.seat.remaining -= 1;
                let booking = Booking {
                    id: Uuid::now_v7(),
                    user_id: request.user_id,
                    concert_id: request.concert_id,
                    seat_type_id: request.seat_type_id,
                    status: BookingStatus::Confirmed,
                    price_cents: locked.seat.price_cents,
                    currency: locked.seat.currency.clone(),
                    created_at: now,
                    cancelled_at: None,
                };
                second.push((index, booking));
            }
            skipped = insert_bookings(&mut tx, second.iter().map(|(_, b)| b)).await?;
            for (index, booking) in second {
                if skipped.contains(&booking.id) {
                    if let Some(locked) = locked.get_mut(&booking.seat_type_id) {
                        locked.seat.remaining += 1;
                    }
                    settled.books[index] = Err(BookingError::AlreadyBooked);
                } else {
                    settled.books[index] = Ok(BookOutcome::Created(booking.clone()));
                    created.push((index, booking));
                }
            }
        }

        // Confirmation emails and idempotency records of what was created.
        let mut idempotency: Vec<(Uuid, String, Vec<u8>, String)> = Vec::new();
        for (index, booking) in &created {
            emails.push((EmailKind::BookingConfirmed, booking.id));
            if let Some(key) = &books[*index].key {
                idempotency.push((
                    booking.user_id,
                    key.as_str().to_owned(),
                    request_fingerprint(booking.concert_id, booking.seat_type_id).to_vec(),
                    booking_json(booking)?,
                ));
            }
        }
        enqueue_emails(&mut tx, &emails, now).await?;
        if !idempotency.is_empty() {
            let mut users = Vec::new();
            let mut keys = Vec::new();
            let mut hashes = Vec::new();
            let mut bodies = Vec::new();
            for (user, key, hash, body) in idempotency {
                users.push(user);
                keys.push(key);
                hashes.push(hash);
                bodies.push(body);
            }
            sqlx::query(
                "INSERT INTO idempotency_keys
                    (user_id, idempotency_key, request_hash, response_status, response_body,
                     created_at)
                 SELECT u, k, h, 201, b, $5
                 FROM UNNEST($1::uuid[], $2::text[], $3::bytea[], $4::text[]) AS r(u, k, h, b)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&users)
            .bind(&keys)
            .bind(&hashes)
            .bind(&bodies)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }

        // Tell every instance's view, then commit.
        for (_, booking) in &created {
            settled.concerts.insert(booking.concert_id);
        }
        for id in &cancelling {
            if let Some(booking) = targets.get(id) {
                settled.concerts.insert(booking.concert_id);
            }
        }
        notify(&mut tx, &settled.concerts).await?;
        tx.commit().await?;

        settled.emails = emails.len();
        settled.seats = locked
            .into_iter()
            .map(|(id, locked)| (id, (locked.seat, locked.version)))
            .collect();
        Ok(settled)
    }

    fn publish(&self, settled: &Settled) {
        self.view.publish(&settled.seats);
        for concert in &settled.concerts {
            let _ = self.events.send(AvailabilityEvent::Changed(*concert));
        }
        self.wake_email(settled.emails);
    }

    fn wake_email(&self, emails: usize) {
        if emails > 0
            && let Some(waker) = &self.on_email
        {
            waker.notify_one();
        }
    }

    /// Provisioning, capacity changes and concert cancellations: rare, each in a transaction of
    /// its own; the view reloads the concert from the store after the commit.
    async fn administer(&self, command: Command) {
        let now = ms(self.clock.now());
        match command {
            Command::Provision(concert, reply) => {
                let result = self.provision(&concert, now).await;
                self.after(concert.concert_id, reply, result).await;
            }
            Command::SetCapacity(seat_type_id, capacity, reply) => {
                // From the store, not the view: the seat type may have been added through another
                // instance a moment ago. A seat type never changes concert.
                let concert_id = sqlx::query_scalar::<_, Uuid>(
                    "SELECT concert_id FROM seat_types WHERE id = $1",
                )
                .bind(seat_type_id)
                .fetch_optional(&self.pool)
                .await;
                match concert_id {
                    Ok(Some(concert_id)) => {
                        let result = self
                            .set_capacity(concert_id, seat_type_id, capacity, now)
                            .await;
                        self.after(concert_id, reply, result).await;
                    }
                    Ok(None) => {
                        let _ = reply.send(Err(BookingError::SeatTypeNotFound));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.into()));
                    }
                }
            }
            Command::CancelConcert(concert_id, reply) => {
                let result = self.cancel_concert(concert_id, now).await;
                let emails = *result.as_ref().unwrap_or(&0);
                self.wake_email(emails);
                self.after(concert_id, reply, result.map(|_| ())).await;
            }
            // The outbox does not go through the writer on PostgreSQL; answer anyway.
            Command::ClaimOutbox(limit, lease, reply) => {
                let until = now + time::Duration::try_from(lease).unwrap_or(time::Duration::MINUTE);
                let _ = reply.send(claim_outbox(&self.pool, None, now, until, limit).await);
            }
            Command::AcknowledgeOutbox(ids, reply) => {
                let _ = reply.send(acknowledge_outbox(&self.pool, &ids, now).await);
            }
            Command::RetryOutbox(id, at, error, reply) => {
                let _ = reply.send(retry_outbox(&self.pool, id, at, &error).await);
            }
            Command::Book(..) | Command::Cancel(..) => {
                unreachable!("bookings and cancellations are batched")
            }
        }
    }

    /// Answers an administrative command after bringing the view up to date with the store.
    async fn after<T>(&self, concert_id: Uuid, reply: Reply<T>, result: Result<T, BookingError>) {
        if let Err(error) = refresh(
            &self.pool,
            &self.view,
            &self.events,
            &self.on_schedule,
            Some(&[concert_id]),
        )
        .await
        {
            tracing::warn!(%error, "cannot reload the concert after a change");
        }
        let _ = reply.send(result);
    }

    async fn provision(
        &self,
        concert: &ConcertInventory,
        now: OffsetDateTime,
    ) -> Result<(), BookingError> {
        if concert.starts_at <= now {
            return Err(BookingError::invalid("starts_at", "must be in the future"));
        }
        let mut tx = self.pool.begin().await?;
        let current = sqlx::query(
            "SELECT starts_at, cancelled_at FROM sales WHERE concert_id = $1 FOR UPDATE",
        )
        .bind(concert.concert_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = current {
            let starts_at: OffsetDateTime = row.try_get("starts_at")?;
            let cancelled = row
                .try_get::<Option<OffsetDateTime>, _>("cancelled_at")?
                .is_some();
            if sale_state(now, starts_at, cancelled) != SaleState::Open {
                return Err(BookingError::BookingClosed);
            }
        }
        sqlx::query(
            "INSERT INTO sales (concert_id, name, venue, starts_at, artist, time_zone)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (concert_id) DO UPDATE SET
                name = excluded.name, venue = excluded.venue, starts_at = excluded.starts_at,
                artist = excluded.artist, time_zone = excluded.time_zone",
        )
        .bind(concert.concert_id)
        .bind(&concert.name)
        .bind(&concert.venue)
        .bind(ms(concert.starts_at))
        .bind(&concert.artist)
        .bind(&concert.time_zone)
        .execute(&mut *tx)
        .await?;
        for seat in &concert.seat_types {
            insert_seat_type(&mut tx, concert.concert_id, seat).await?;
        }
        notify(&mut tx, &HashSet::from([concert.concert_id])).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_capacity(
        &self,
        concert_id: Uuid,
        seat_type_id: Uuid,
        capacity: i64,
        now: OffsetDateTime,
    ) -> Result<(i64, i64), BookingError> {
        if !(1..=1_000_000).contains(&capacity) {
            return Err(BookingError::invalid(
                "capacity",
                "must be between 1 and 1000000",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let (starts_at, cancelled) = lock_sale(&mut tx, concert_id).await?;
        if sale_state(now, starts_at, cancelled) != SaleState::Open {
            return Err(BookingError::BookingClosed);
        }
        let row = sqlx::query(
            "UPDATE seat_types SET remaining = remaining + ($1 - capacity), capacity = $1
             WHERE id = $2 AND remaining + ($1 - capacity) >= 0
             RETURNING capacity, remaining",
        )
        .bind(capacity)
        .bind(seat_type_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let exists = sqlx::query("SELECT 1 FROM seat_types WHERE id = $1")
                .bind(seat_type_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                Some(_) => {
                    BookingError::invalid("capacity", "cannot shrink below the seats already sold")
                }
                None => BookingError::SeatTypeNotFound,
            });
        };
        let result = (row.try_get("capacity")?, row.try_get("remaining")?);
        notify(&mut tx, &HashSet::from([concert_id])).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// Returns how many cancellation emails were queued.
    async fn cancel_concert(
        &self,
        concert_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<usize, BookingError> {
        let mut tx = self.pool.begin().await?;
        let (starts_at, cancelled) = lock_sale(&mut tx, concert_id).await?;
        if cancelled {
            return Ok(0);
        }
        if sale_state(now, starts_at, false) == SaleState::Started {
            return Err(BookingError::BookingClosed);
        }
        // Lock the seat types in id order, like every batch does, before touching bookings.
        sqlx::query("SELECT id FROM seat_types WHERE concert_id = $1 ORDER BY id FOR UPDATE")
            .bind(concert_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE sales SET cancelled_at = $1 WHERE concert_id = $2")
            .bind(now)
            .bind(concert_id)
            .execute(&mut *tx)
            .await?;
        let cancelled = sqlx::query(concat!(
            "UPDATE bookings SET status = 'cancelled', cancelled_at = $1
             WHERE concert_id = $2 AND status = 'confirmed' RETURNING ",
            booking_columns!()
        ))
        .bind(now)
        .bind(concert_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut emails = Vec::with_capacity(cancelled.len());
        for row in &cancelled {
            let booking = booking_from_row(row)?;
            emails.push((EmailKind::BookingCancelled, booking.id));
        }
        enqueue_emails(&mut tx, &emails, now).await?;
        notify(&mut tx, &HashSet::from([concert_id])).await?;
        tx.commit().await?;
        Ok(emails.len())
    }
}

/// `(starts_at, cancelled)` of a concert's sale, locked for the transaction.
async fn lock_sale(
    tx: &mut Transaction<'_, Postgres>,
    concert_id: Uuid,
) -> Result<(OffsetDateTime, bool), BookingError> {
    let row =
        sqlx::query("SELECT starts_at, cancelled_at FROM sales WHERE concert_id = $1 FOR UPDATE")
            .bind(concert_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(BookingError::ConcertNotFound)?;
    Ok((
        row.try_get("starts_at")?,
        row.try_get::<Option<OffsetDateTime>, _>("cancelled_at")?
            .is_some(),
    ))
}

/// Takes a transaction-scoped advisory lock on each (user, Idempotency-Key) of the batch, in
/// one order in every instance. A hash collision only makes two unrelated keys wait for each
/// other.
async fn lock_keys(
    tx: &mut Transaction<'_, Postgres>,
    books: &[&BookRequest],
) -> Result<(), BookingError> {
    let mut locks: Vec<i64> = books
        .iter()
        .filter_map(|request| {
            let key = request.key.as_ref()?;
            let digest = Sha256::new()
                .chain_update(b"booking idempotency key\0")
                .chain_update(request.user_id.as_bytes())
                .chain_update(key.as_str().as_bytes())
                .finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            Some(i64::from_be_bytes(first))
        })
        .collect();
    if locks.is_empty() {
        return Ok(());
    }
    locks.sort_unstable();
    locks.dedup();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM UNNEST($1::int8[]) WITH ORDINALITY AS t(k, n)
         ORDER BY n",
    )
    .bind(&locks)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_seat_type(
    tx: &mut Transaction<'_, Postgres>,
    concert_id: Uuid,
    seat: &SeatInventory,
) -> Result<(), BookingError> {
    sqlx::query(
        "INSERT INTO seat_types (id, concert_id, name, price_cents, currency, capacity, remaining)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(seat.seat_type_id)
    .bind(concert_id)
    .bind(&seat.name)
    .bind(seat.price_cents)
    .bind(&seat.currency)
    .bind(seat.capacity)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts confirmed bookings in one statement; returns the ids that were skipped because the
/// user already holds a confirmed booking for the concert (committed by another instance).
async fn insert_bookings<'a>(
    tx: &mut Transaction<'_, Postgres>,
    bookings: impl Iterator<Item = &'a Booking>,
) -> Result<HashSet<Uuid>, BookingError> {
    let mut ids = Vec::new();
    let mut users = Vec::new();
    let mut concerts = Vec::new();
    let mut seats = Vec::new();
    let mut prices = Vec::new();
    let mut currencies = Vec::new();
    let mut created = None;
    for booking in bookings {
        ids.push(booking.id);
        users.push(booking.user_id);
        concerts.push(booking.concert_id);
        seats.push(booking.seat_type_id);
        prices.push(booking.price_cents);
        currencies.push(booking.currency.clone());
        created = Some(booking.created_at);
    }
    let Some(created_at) = created else {
        return Ok(HashSet::new());
    };
    let inserted: HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO bookings
            (id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at)
         SELECT id, u, c, s, 'confirmed', p, cur, $7
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int8[], $6::text[])
              AS r(id, u, c, s, p, cur)
         ON CONFLICT (user_id, concert_id) WHERE status = 'confirmed' DO NOTHING
         RETURNING id",
    )
    .bind(&ids)
    .bind(&users)
    .bind(&concerts)
    .bind(&seats)
    .bind(&prices)
    .bind(&currencies)
    .bind(created_at)
    .fetch_all(&mut **tx)
    .await
    .map_err(constraint_to_rule)?
    .into_iter()
    .collect();
    Ok(ids
        .into_iter()
        .filter(|id| !inserted.contains(id))
        .collect())
}

/// Queues one email per `(kind, booking)`, by reference: what it says is read when it is claimed
/// ([`claim_outbox`]).
async fn enqueue_emails(
    tx: &mut Transaction<'_, Postgres>,
    emails: &[(EmailKind, Uuid)],
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    if emails.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(emails.len());
    let mut kinds = Vec::with_capacity(emails.len());
    let mut bookings = Vec::with_capacity(emails.len());
    for (kind, booking_id) in emails {
        ids.push(Uuid::now_v7());
        kinds.push(kind.as_str());
        bookings.push(*booking_id);
    }
    sqlx::query(
        "INSERT INTO outbox (message_id, kind, booking_id, created_at, available_at)
         SELECT m, k, b, $4, $4 FROM UNNEST($1::uuid[], $2::text[], $3::uuid[]) AS r(m, k, b)",
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&bookings)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn notify(
    tx: &mut Transaction<'_, Postgres>,
    concerts: &HashSet<Uuid>,
) -> Result<(), BookingError> {
    if concerts.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = concerts.iter().map(Uuid::to_string).collect();
    sqlx::query("SELECT pg_notify($1, c) FROM UNNEST($2::text[]) AS c")
        .bind(CHANNEL)
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn booking_json(booking: &Booking) -> Result<String, BookingError> {
    serde_json::to_string(booking).map_err(|error| BookingError::Corrupt(error.to_string()))
}

/// Deadlocks and serialization failures: the batch may simply run again.
fn retryable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// The schema's refusals as booking rules (the code decides first; these are the backstop).
fn constraint_to_rule(error: sqlx::Error) -> BookingError {
    if let sqlx::Error::Database(db) = &error {
        if db.constraint() == Some("remaining_within_capacity") {
            return BookingError::SoldOut;
        }
        if db.message().contains("booking_closed") {
            return BookingError::BookingClosed;
        }
    }
    BookingError::Store(error)
}
