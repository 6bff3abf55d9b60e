//! One batch of bookings and cancellations settled in one PostgreSQL transaction, in the steps
//! of the module doc of [`super`]: [`lock`] the rows the batch decides on, [`read`] who already
//! holds a booking and the saved Idempotency-Key answers, [`decide`] every request in memory,
//! [`write`] the outcome with a handful of set-based statements, then [`notify_and_commit`].
//! Nothing is answered here: the writer answers once the transaction has committed.

use std::collections::{HashMap, HashSet};

use boxoffice_shared::clients::EmailKind;
use sqlx::{PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::reads::{sale_columns, sale_from_row, seat_from_row};
use super::refunds::queue_for_bookings;
use super::statements::{constraint_to_rule, enqueue_emails, lock_keys, notify_from, seat_counts};
use super::waitlist;
use super::webhooks::enqueue;
use crate::command::{
    BookOutcome, BookRequest, Canceller, SavedResponse, booking_json, confirmed_booking,
    payable_in_one_step, replay,
};
use crate::domain::{Booking, BookingStatus, SaleState, request_fingerprint, sale_state};
use crate::error::BookingError;
use crate::payments::simulated_charge;
use crate::rows::{booking_columns, booking_from_row, saved_from_row};
use crate::view::{ConcertSale, Seat, bookable};
use crate::waitlist::OfferTerms;
use crate::webhook::{Subscribed, WebhookEvent};

/// What the batch's transaction decided, sent once it commits.
pub struct Settled {
    pub books: Vec<Result<BookOutcome, BookingError>>,
    pub cancels: Vec<Result<Booking, BookingError>>,
    /// Each seat type as the batch left it (read under lock, `remaining` moved by the batch),
    /// with the row version it was locked at.
    pub seats: HashMap<Uuid, (Seat, i64)>,
    pub concerts: HashSet<Uuid>,
    pub emails: usize,
    /// Seats the batch offered to waiting lists (each a new hold, each an email).
    pub offers: usize,
}

/// A seat type as locked by the batch.
struct Locked {
    seat: Seat,
    /// Its concert's sale, share-locked.
    sale: ConcertSale,
    /// The row's version when the batch locked it.
    version: i64,
}

/// The rows the batch holds locked: the bookings to cancel and every seat type involved.
struct Held {
    targets: HashMap<Uuid, Booking>,
    /// The concerts whose sales are locked: those of the batch that exist.
    concerts: HashSet<Uuid>,
    seats: HashMap<Uuid, Locked>,
    /// How many fans wait for each seat type a cancellation frees (read only then).
    waiting: HashMap<Uuid, i64>,
    /// Seat types of seats cancellations freed for their waiting lists, one entry per seat:
    /// never counted free for this batch's bookings.
    reserved: Vec<Uuid>,
    /// Seats offered to waiting lists.
    offers: usize,
}

impl Held {
    /// A booking another instance beat this batch to: its seat is free again, and the request
    /// is answered `already_booked`.
    fn beaten(&mut self, booking: &Booking) -> Result<BookOutcome, BookingError> {
        if let Some(locked) = self.seats.get_mut(&booking.seat_type_id) {
            locked.seat.remaining += 1;
        }
        Err(BookingError::AlreadyBooked)
    }
}

/// What the batch read under its locks besides the locked rows.
struct Known {
    /// `(user, concert)` of every confirmed booking of the batch's users and concerts, kept up to
    /// date as the batch decides.
    holders: HashSet<(Uuid, Uuid)>,
    /// Saved answers by `(user, Idempotency-Key)`, including those of this batch's own bookings.
    saved: HashMap<(Uuid, String), SavedResponse>,
}

/// What the batch decided, in memory, before writing it.
struct Decided {
    books: Vec<Result<BookOutcome, BookingError>>,
    cancels: Vec<Result<Booking, BookingError>>,
    /// The bookings being cancelled.
    cancelling: Vec<Uuid>,
    /// The bookings being created, by the index of their request.
    created: Vec<(usize, Booking)>,
    /// The emails to queue.
    emails: Vec<(EmailKind, Uuid)>,
}

/// Runs one batch in one transaction; nothing is answered here.
pub async fn settle(
    pool: &PgPool,
    books: &[&BookRequest],
    cancels: &[(Uuid, Canceller)],
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
    origin: Uuid,
) -> Result<Settled, BookingError> {
    let mut tx = pool.begin().await?;
    let mut held = lock(&mut tx, books, cancels).await?;
    let expired = expire_due_holds(&mut tx, &mut held, terms, now, webhooks).await?;
    let mut known = read(&mut tx, books, now).await?;
    let mut decided = decide(books, cancels, &mut held, &mut known, now)?;
    write(&mut tx, books, &mut held, &mut known, &mut decided, now).await?;
    let reserved = std::mem::take(&mut held.reserved);
    hand_on(&mut tx, &mut held, reserved, terms, now, webhooks).await?;
    let events = (decided
        .created
        .iter()
        .map(|(_, b)| (WebhookEvent::BookingConfirmed, b.id)))
    .chain(
        decided
            .cancelling
            .iter()
            .map(|id| (WebhookEvent::BookingCancelled, *id)),
    )
    .chain(expired.iter().map(|id| (WebhookEvent::HoldExpired, *id)));
    let holds_ended = !expired.is_empty();
    enqueue(&mut tx, webhooks, events, now).await?;
    let concerts = notify_and_commit(tx, &held, &decided, holds_ended, origin).await?;
    Ok(Settled {
        books: decided.books,
        cancels: decided.cancels,
        seats: held
            .seats
            .into_iter()
            .map(|(id, locked)| (id, (locked.seat, locked.version)))
            .collect(),
        concerts,
        emails: decided.emails.len() + held.offers,
        offers: held.offers,
    })
}

/// Step 1: locks, in one order in every instance (so instances queue behind each other instead
/// of deadlocking), the batch's Idempotency-Keys, its sales, the bookings it cancels and every
/// seat type involved; counts and sale windows are read from the locked rows, never a cache.
async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    books: &[&BookRequest],
    cancels: &[(Uuid, Canceller)],
) -> Result<Held, BookingError> {
    // The batch's Idempotency-Keys: a retry that another instance is settling at this moment
    // has either committed its answer (read in step 2) or waits for this batch.
    lock_keys(
        tx,
        books.iter().filter_map(|request| {
            let key = request.key.as_ref()?;
            Some((request.user_id, key.as_str()))
        }),
    )
    .await?;
    let mut cancel_ids: Vec<Uuid> = cancels.iter().map(|(id, _)| *id).collect();
    cancel_ids.sort_unstable();
    cancel_ids.dedup();
    let sales = lock_sales(tx, books, &cancel_ids).await?;
    // The bookings to cancel, locked in id order.
    let targets: HashMap<Uuid, Booking> = if cancel_ids.is_empty() {
        HashMap::new()
    } else {
        sqlx::query(concat!(
            "SELECT ",
            booking_columns!(),
            " FROM bookings WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        ))
        .bind(&cancel_ids)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| booking_from_row(row).map(|booking| (booking.id, booking)))
        .collect::<Result<_, _>>()?
    };
    let seats = lock_seat_types(tx, books, &targets, &sales).await?;
    let freeing: Vec<Uuid> = targets
        .values()
        .map(|booking| booking.seat_type_id)
        .collect();
    let waiting = if freeing.is_empty() {
        HashMap::new()
    } else {
        sqlx::query(
            "SELECT seat_type_id, count(*) AS waiting FROM waitlist
             WHERE seat_type_id = ANY($1) AND status = 'waiting' GROUP BY seat_type_id",
        )
        .bind(&freeing)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("seat_type_id")?, row.try_get("waiting")?)))
        .collect::<Result<_, sqlx::Error>>()?
    };
    Ok(Held {
        targets,
        concerts: sales.into_keys().collect(),
        seats,
        waiting,
        reserved: Vec::new(),
        offers: 0,
    })
}

/// The sales involved, share-locked in id order. Every administrative change (moving or
/// cancelling a concert, adding seat types, changing a capacity) locks its sale for update first,
/// so it either waits for this batch or this batch waits for it and reads its outcome. Reading
/// the sale in the seat types' locking statement instead would not do: after waiting for a seat
/// type's lock, PostgreSQL re-reads the locked row but not the rows joined to it, and the batch
/// would decide on a sale window that was just closed.
async fn lock_sales(
    tx: &mut Transaction<'_, Postgres>,
    books: &[&BookRequest],
    cancel_ids: &[Uuid],
) -> Result<HashMap<Uuid, ConcertSale>, BookingError> {
    let concert_ids: Vec<Uuid> = books.iter().map(|request| request.concert_id).collect();
    Ok(sqlx::query(concat!(
        "SELECT concert_id, ",
        sale_columns!(),
        " FROM sales
             WHERE concert_id = ANY($1)
                OR concert_id IN (SELECT concert_id FROM bookings WHERE id = ANY($2))
             ORDER BY concert_id FOR SHARE"
    ))
    .bind(&concert_ids)
    .bind(cancel_ids)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("concert_id")?, sale_from_row(row)?)))
    .collect::<Result<_, sqlx::Error>>()?)
}

/// Every seat type involved, locked in id order (only those of the sales locked: a request
/// naming a seat type of another concert is refused when deciding).
async fn lock_seat_types(
    tx: &mut Transaction<'_, Postgres>,
    books: &[&BookRequest],
    targets: &HashMap<Uuid, Booking>,
    sales: &HashMap<Uuid, ConcertSale>,
) -> Result<HashMap<Uuid, Locked>, BookingError> {
    let mut seat_ids: Vec<Uuid> = books.iter().map(|request| request.seat_type_id).collect();
    seat_ids.extend(targets.values().map(|booking| booking.seat_type_id));
    seat_ids.sort_unstable();
    seat_ids.dedup();
    let locked_sales: Vec<Uuid> = sales.keys().copied().collect();
    sqlx::query(
        "SELECT id, concert_id, name, price_cents, currency, capacity, remaining, version
         FROM seat_types WHERE id = ANY($1) AND concert_id = ANY($2)
         ORDER BY id FOR UPDATE",
    )
    .bind(&seat_ids)
    .bind(&locked_sales)
    .fetch_all(&mut **tx)
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
    .collect()
}

/// Between steps 1 and 2: the holds of the locked seat types that are due at the batch's time
/// expire first, so that the batch sees their seats free; the schema's trigger returns each
/// seat once (a hold another instance expired first is no longer `active` here). Returns the
/// holds it expired.
async fn expire_due_holds(
    tx: &mut Transaction<'_, Postgres>,
    held: &mut Held,
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Result<Vec<Uuid>, BookingError> {
    let seat_ids: Vec<Uuid> = held.seats.keys().copied().collect();
    let returned: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "UPDATE holds SET status = 'expired', ended_at = $2
         WHERE seat_type_id = ANY($1) AND status = 'active' AND expires_at <= $2
         RETURNING id, seat_type_id",
    )
    .bind(&seat_ids)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let mut expired = Vec::with_capacity(returned.len());
    let mut freed = Vec::with_capacity(returned.len());
    for (hold_id, seat_type_id) in returned {
        if let Some(locked) = held.seats.get_mut(&seat_type_id) {
            locked.seat.remaining += 1;
        }
        expired.push(hold_id);
        freed.push(seat_type_id);
    }
    hand_on(tx, held, freed, terms, now, webhooks).await?;
    Ok(expired)
}

/// Offers the seats freed for `seat_types` to their waiting lists (under the batch's locks),
/// and reads back what is left of each for the public.
async fn hand_on(
    tx: &mut Transaction<'_, Postgres>,
    held: &mut Held,
    mut seat_types: Vec<Uuid>,
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Result<(), BookingError> {
    if seat_types.is_empty() {
        return Ok(());
    }
    seat_types.sort_unstable();
    seat_types.dedup();
    held.offers += waitlist::hand_on(tx, &seat_types, terms, now, webhooks).await?;
    let rows = sqlx::query("SELECT id, remaining FROM seat_types WHERE id = ANY($1)")
        .bind(&seat_types)
        .fetch_all(&mut **tx)
        .await?;
    for row in rows {
        let id: Uuid = row.try_get("id")?;
        if let Some(locked) = held.seats.get_mut(&id) {
            locked.seat.remaining = row.try_get("remaining")?;
        }
    }
    Ok(())
}

/// Step 2: who already holds a booking or an active hold for these concerts, and saved
/// Idempotency-Key answers.
async fn read(
    tx: &mut Transaction<'_, Postgres>,
    books: &[&BookRequest],
    now: OffsetDateTime,
) -> Result<Known, BookingError> {
    let (users, concerts): (Vec<Uuid>, Vec<Uuid>) = books
        .iter()
        .map(|request| (request.user_id, request.concert_id))
        .unzip();
    // One index probe per request (the LATERAL ... LIMIT 1 keeps the planner to that): joined
    // as sets, a planner without fresh statistics — a table filled by the on-sale itself —
    // read every confirmed booking of the store for each batch, so each batch cost time in
    // proportion to the bookings already made.
    let holders: HashSet<(Uuid, Uuid)> = sqlx::query(
        "SELECT r.user_id, r.concert_id
         FROM UNNEST($1::uuid[], $2::uuid[]) AS r(user_id, concert_id)
         CROSS JOIN LATERAL (
             SELECT 1 FROM bookings b
             WHERE b.user_id = r.user_id AND b.concert_id = r.concert_id
               AND b.status = 'confirmed'
             UNION ALL
             SELECT 1 FROM holds h
             WHERE h.user_id = r.user_id AND h.concert_id = r.concert_id
               AND h.status = 'active' AND h.expires_at > $3
             LIMIT 1) AS taken",
    )
    .bind(&users)
    .bind(&concerts)
    .bind(now)
    .fetch_all(&mut **tx)
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
    let saved = if keys.is_empty() {
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
        .fetch_all(&mut **tx)
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
    Ok(Known { holders, saved })
}

/// Step 3: decides every request in memory: cancellations first (a seat they free is there for
/// this batch's bookings), then bookings in arrival order: closed, already booked, a seat, or
/// sold out.
fn decide(
    books: &[&BookRequest],
    cancels: &[(Uuid, Canceller)],
    held: &mut Held,
    known: &mut Known,
    now: OffsetDateTime,
) -> Result<Decided, BookingError> {
    let mut decided = Decided {
        books: Vec::with_capacity(books.len()),
        cancels: Vec::with_capacity(cancels.len()),
        cancelling: Vec::new(),
        created: Vec::new(),
        emails: Vec::new(),
    };
    for (id, canceller) in cancels {
        let result = decide_cancel(*id, *canceller, held, known, &decided.cancelling, now);
        if let Ok(cancelled) = &result {
            decided.cancelling.push(*id);
            decided
                .emails
                .push((EmailKind::BookingCancelled, cancelled.id));
        }
        decided.cancels.push(result);
    }
    for (index, request) in books.iter().enumerate() {
        let fingerprint = request_fingerprint(request.concert_id, request.seat_type_id);
        let saved_key = request
            .key
            .as_ref()
            .map(|key| (request.user_id, key.as_str().to_owned()));
        if let Some(saved) = saved_key.as_ref().and_then(|key| known.saved.get(key)) {
            decided.books.push(replay(saved.clone(), &fingerprint));
            continue;
        }
        match decide_book(request, held, known, now) {
            Ok(booking) => {
                if let Some(key) = saved_key {
                    // A second request of this batch with the same key replays this one.
                    known.saved.insert(
                        key,
                        SavedResponse {
                            request_hash: fingerprint.to_vec(),
                            status: 201,
                            body: booking_json(&booking)?,
                        },
                    );
                }
                decided.created.push((index, booking.clone()));
                decided.books.push(Ok(BookOutcome::Created(booking)));
            }
            Err(error) => decided.books.push(Err(error)),
        }
    }
    Ok(decided)
}

/// One cancellation: the booking as it will be once cancelled, its seat returned.
fn decide_cancel(
    id: Uuid,
    canceller: Canceller,
    held: &mut Held,
    known: &mut Known,
    cancelling: &[Uuid],
    now: OffsetDateTime,
) -> Result<Booking, BookingError> {
    let booking = held
        .targets
        .get(&id)
        .filter(|booking| canceller.is_admin || booking.user_id == canceller.user_id)
        .ok_or(BookingError::BookingNotFound)?;
    if booking.status == BookingStatus::Cancelled || cancelling.contains(&id) {
        return Err(BookingError::AlreadyCancelled);
    }
    let locked = held
        .seats
        .get_mut(&booking.seat_type_id)
        .ok_or_else(|| BookingError::Corrupt(format!("booking {id} has no inventory")))?;
    if sale_state(now, locked.sale.starts_at, false) == SaleState::Started {
        return Err(BookingError::BookingClosed);
    }
    // A fan waits for this seat type: the seat is theirs, offered once the batch has written.
    match held.waiting.get_mut(&booking.seat_type_id) {
        Some(waiting) if *waiting > 0 => {
            *waiting -= 1;
            held.reserved.push(booking.seat_type_id);
        }
        _ => locked.seat.remaining += 1,
    }
    known.holders.remove(&(booking.user_id, booking.concert_id));
    Ok(Booking {
        status: BookingStatus::Cancelled,
        cancelled_at: Some(now),
        ..booking.clone()
    })
}

/// One booking request without a saved answer: a seat taken, or why not.
fn decide_book(
    request: &BookRequest,
    held: &mut Held,
    known: &mut Known,
    now: OffsetDateTime,
) -> Result<Booking, BookingError> {
    if !held.concerts.contains(&request.concert_id) {
        return Err(BookingError::ConcertNotFound);
    }
    let locked = held
        .seats
        .get_mut(&request.seat_type_id)
        .filter(|locked| locked.seat.concert_id == request.concert_id)
        .ok_or(BookingError::SeatTypeNotFound)?;
    payable_in_one_step(request, &locked.seat)?;
    bookable(now, &locked.sale, locked.seat.remaining > 0)?;
    if !known.holders.insert((request.user_id, request.concert_id)) {
        return Err(BookingError::AlreadyBooked);
    }
    locked.seat.remaining -= 1;
    Ok(confirmed_booking(request, &locked.seat, now))
}

/// Step 4: writes the outcome with a handful of set-based statements; the schema's
/// statement-level triggers move `remaining` by the number of rows, and its CHECK and partial
/// unique index refuse an oversell or a duplicate whatever was decided.
async fn write(
    tx: &mut Transaction<'_, Postgres>,
    books: &[&BookRequest],
    held: &mut Held,
    known: &mut Known,
    decided: &mut Decided,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    // Cancellations: one UPDATE; the trigger returns the seats.
    if !decided.cancelling.is_empty() {
        let updated = sqlx::query(
            "UPDATE bookings SET status = 'cancelled', cancelled_at = $2
             WHERE id = ANY($1) AND status = 'confirmed'",
        )
        .bind(&decided.cancelling)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        if updated.rows_affected() != decided.cancelling.len() as u64 {
            return Err(BookingError::Corrupt(
                "a locked booking changed under the writer".into(),
            ));
        }
        let cancelled = decided
            .cancelling
            .iter()
            .filter_map(|id| held.targets.get(id));
        queue_for_bookings(tx, cancelled, now).await?;
    }
    write_bookings(tx, books, held, known, decided, now).await?;
    // Confirmation emails and idempotency records of what was created.
    let mut idempotency: Vec<(Uuid, String, Vec<u8>, String)> = Vec::new();
    for (index, booking) in &decided.created {
        decided
            .emails
            .push((EmailKind::BookingConfirmed, booking.id));
        if let Some(key) = &books[*index].key {
            idempotency.push((
                booking.user_id,
                key.as_str().to_owned(),
                request_fingerprint(booking.concert_id, booking.seat_type_id).to_vec(),
                booking_json(booking)?,
            ));
        }
    }
    enqueue_emails(tx, &decided.emails, now).await?;
    save_responses(tx, idempotency, now).await
}

/// Bookings: one INSERT; a row another instance beat us to is skipped and answered
/// `already_booked`, and its seat goes to the next request refused for want of it.
async fn write_bookings(
    tx: &mut Transaction<'_, Postgres>,
    books: &[&BookRequest],
    held: &mut Held,
    known: &mut Known,
    decided: &mut Decided,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let skipped = insert_bookings(tx, decided.created.iter().map(|(_, b)| b)).await?;
    if skipped.is_empty() {
        return Ok(());
    }
    for (index, booking) in &decided.created {
        if skipped.contains(&booking.id) {
            decided.books[*index] = held.beaten(booking);
        }
    }
    decided
        .created
        .retain(|(_, booking)| !skipped.contains(&booking.id));
    let mut second: Vec<(usize, Booking)> = Vec::new();
    for (index, request) in books.iter().enumerate() {
        let Err(BookingError::SoldOut) = decided.books[index] else {
            continue;
        };
        let Some(locked) = held.seats.get_mut(&request.seat_type_id) else {
            continue;
        };
        if locked.seat.remaining <= 0
            || !known.holders.insert((request.user_id, request.concert_id))
        {
            continue;
        }
        locked.seat.remaining -= 1;
        second.push((index, confirmed_booking(request, &locked.seat, now)));
    }
    let skipped = insert_bookings(tx, second.iter().map(|(_, b)| b)).await?;
    for (index, booking) in second {
        if skipped.contains(&booking.id) {
            decided.books[index] = held.beaten(&booking);
        } else {
            decided.books[index] = Ok(BookOutcome::Created(booking.clone()));
            decided.created.push((index, booking));
        }
    }
    Ok(())
}

/// The idempotency records of the created bookings that came with a key: one INSERT.
async fn save_responses(
    tx: &mut Transaction<'_, Postgres>,
    idempotency: Vec<(Uuid, String, Vec<u8>, String)>,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    if idempotency.is_empty() {
        return Ok(());
    }
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Step 5: `pg_notify`s every concert the batch touched, so that every instance's view follows,
/// and commits: one lock hold and one WAL flush for the whole batch. Returns those concerts.
/// A batch that changed nothing but seat counts (no hold expired, no seat offered) sends the
/// counts with the notices; the other instances apply them without reading the store.
async fn notify_and_commit(
    mut tx: Transaction<'_, Postgres>,
    held: &Held,
    decided: &Decided,
    holds_ended: bool,
    origin: Uuid,
) -> Result<HashSet<Uuid>, BookingError> {
    let mut concerts = HashSet::new();
    for (_, booking) in &decided.created {
        concerts.insert(booking.concert_id);
    }
    for id in &decided.cancelling {
        if let Some(booking) = held.targets.get(id) {
            concerts.insert(booking.concert_id);
        }
    }
    if held.offers > 0 {
        // Offers are new holds: every instance's view reloads the concerts they were made in.
        concerts.extend(held.seats.values().map(|locked| locked.seat.concert_id));
    }
    let counts = match held.offers == 0 && !holds_ended {
        true => {
            let seats = (held.seats.iter())
                .filter(|(_, locked)| concerts.contains(&locked.seat.concert_id))
                .map(|(id, _)| *id);
            Some(seat_counts(&mut tx, &seats.collect::<Vec<_>>()).await?)
        }
        false => None,
    };
    // The view of this process has the batch's seats from `publish`; offers are reloaded by the
    // writer after the commit.
    notify_from(&mut tx, &concerts, counts.as_deref(), origin).await?;
    tx.commit().await?;
    Ok(concerts)
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
    let mut providers: Vec<Option<&str>> = Vec::new();
    let mut references: Vec<Option<String>> = Vec::new();
    let mut amounts: Vec<Option<i64>> = Vec::new();
    let mut created = None;
    for booking in bookings {
        ids.push(booking.id);
        users.push(booking.user_id);
        concerts.push(booking.concert_id);
        seats.push(booking.seat_type_id);
        prices.push(booking.price_cents);
        currencies.push(booking.currency.clone());
        let payment = booking.payment.as_ref();
        providers.push(payment.map(|payment| payment.provider.as_str()));
        // Paid in the booking's own transaction: the charge is named after the booking.
        references.push(payment.map(|_| simulated_charge(booking.id)));
        amounts.push(payment.map(|payment| payment.amount_cents));
        created = Some(booking.created_at);
    }
    let Some(created_at) = created else {
        return Ok(HashSet::new());
    };
    let inserted: HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO bookings
            (id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at,
             payment_provider, payment_ref, amount_cents, payment_status)
         SELECT id, u, c, s, 'confirmed', p, cur, $7, pp, pr, pa,
                CASE WHEN pp IS NULL THEN NULL ELSE 'succeeded' END
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int8[], $6::text[],
                     $8::text[], $9::text[], $10::int8[])
              AS r(id, u, c, s, p, cur, pp, pr, pa)
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
    .bind(&providers)
    .bind(&references)
    .bind(&amounts)
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
