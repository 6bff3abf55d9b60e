//! Holds on PostgreSQL: each command in a transaction of its own that first locks its concert's
//! sale `FOR NO KEY UPDATE`. A booking batch locks the sales it sells `FOR SHARE`, so a hold's
//! transaction and a batch of the same concert never overlap, and each sees what the other
//! committed — which is what makes "one confirmed booking or active hold per user and concert"
//! exact across instances (see the migration `0006_holds.sql`). Counts are read and moved under
//! the seat type's row lock, and the schema's triggers move `remaining`.

use std::collections::HashSet;

use boxoffice_shared::clients::EmailKind;
use sqlx::{Acquire, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::reads::{lock_sale, seat_from_row};
use super::statements::{constraint_to_rule, enqueue_emails, lock_keys, notify};
use super::waitlist;
use super::webhooks::enqueue;
use crate::command::{
    HoldOutcome, Made, paid_booking, refunds_payment, replay, saved_json, unbookable_answer,
};
use crate::error::BookingError;
use crate::hold::{Failed, Hold, HoldRequest, HoldStatus, Paid, hold_fingerprint, new_hold};
use crate::rows::{hold_columns, hold_from_row, saved_response};
use crate::view::bookable;
use crate::waitlist::OfferTerms;
use crate::webhook::{Subscribed, WebhookEvent};

/// What a hold command changed, for the writer to publish once it has committed.
pub struct Changed<T> {
    pub result: Result<T, BookingError>,
    /// The concerts whose counts moved.
    pub concerts: HashSet<Uuid>,
    pub emails: usize,
}

impl<T> Changed<T> {
    fn of(result: Result<T, BookingError>, concert_id: Option<Uuid>, emails: usize) -> Self {
        Self {
            result,
            concerts: concert_id.into_iter().collect(),
            emails,
        }
    }
}

/// Expires the concert's holds due at `now` (the trigger returns their seats), queues their
/// `hold.expired` events, and offers the seats to their waiting lists. Returns how many seats
/// were offered.
async fn expire_due(
    tx: &mut Transaction<'_, Postgres>,
    concert_id: Uuid,
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Result<usize, BookingError> {
    let expired: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "UPDATE holds SET status = 'expired', ended_at = $2
         WHERE concert_id = $1 AND status = 'active' AND expires_at <= $2
         RETURNING id, seat_type_id",
    )
    .bind(concert_id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let mut freed: Vec<Uuid> = expired
        .iter()
        .map(|(_, seat_type_id)| *seat_type_id)
        .collect();
    let events = expired
        .into_iter()
        .map(|(id, _)| (WebhookEvent::HoldExpired, id));
    enqueue(tx, webhooks, events, now).await?;
    freed.sort_unstable();
    freed.dedup();
    waitlist::hand_on(tx, &freed, terms, now, webhooks).await
}

/// The caller's own hold (any hold for a provider's event, which names no caller), locked;
/// anyone else's is not found. Locks its sale first.
async fn lock_own_hold(
    tx: &mut Transaction<'_, Postgres>,
    hold_id: Uuid,
    user_id: Option<Uuid>,
) -> Result<Hold, BookingError> {
    let concert_id: Option<Uuid> = sqlx::query_scalar(
        "SELECT concert_id FROM holds WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
    )
    .bind(hold_id)
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?;
    let concert_id = concert_id.ok_or(BookingError::HoldNotFound)?;
    lock_sale(tx, concert_id).await?;
    let row = sqlx::query(concat!(
        "SELECT ",
        hold_columns!(),
        " FROM holds WHERE id = $1 FOR UPDATE"
    ))
    .bind(hold_id)
    .fetch_one(&mut **tx)
    .await?;
    hold_from_row(&row)
}

/// Records a provider's event about `hold`; `false` if it was recorded before (and must not be
/// applied again). Concurrent deliveries of one event wait for each other on its key.
async fn first_delivery(
    tx: &mut Transaction<'_, Postgres>,
    event: Option<&str>,
    kind: &str,
    hold: &Hold,
    now: OffsetDateTime,
) -> Result<bool, BookingError> {
    let Some(event) = event else {
        return Ok(true);
    };
    let inserted = sqlx::query(
        "INSERT INTO payment_events (id, provider, kind, hold_id, received_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(event)
    .bind(hold.payment.provider.as_str())
    .bind(kind)
    .bind(hold.id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Takes a seat for a while: a new active hold, or the saved answer of the request's key.
pub async fn hold(
    pool: &PgPool,
    request: &HoldRequest,
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Changed<HoldOutcome> {
    let result = take(pool, request, terms, now, webhooks).await;
    let moved = matches!(result, Ok(Made::Created(_))).then_some(request.concert_id);
    Changed::of(result, moved, 0)
}

async fn take(
    pool: &PgPool,
    request: &HoldRequest,
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Result<HoldOutcome, BookingError> {
    let fingerprint = hold_fingerprint(request.concert_id, request.seat_type_id);
    let mut tx = pool.begin().await?;
    if let Some(key) = &request.key {
        lock_keys(&mut tx, std::iter::once((request.user_id, key.as_str()))).await?;
        if let Some(saved) = saved_response(&mut *tx, request.user_id, key.as_str()).await? {
            return replay(saved, &fingerprint);
        }
    }
    let sale = lock_sale(&mut tx, request.concert_id)
        .await?
        .ok_or(BookingError::ConcertNotFound)?;
    // Seats handed to the waiting list here are committed only with the hold; a refused hold
    // leaves them to the sales timer's expiry, which offers them again.
    expire_due(&mut tx, request.concert_id, terms, now, webhooks).await?;
    let row = sqlx::query(
        "SELECT id, concert_id, name, price_cents, currency, capacity, remaining
         FROM seat_types WHERE id = $1 AND concert_id = $2 FOR UPDATE",
    )
    .bind(request.seat_type_id)
    .bind(request.concert_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(BookingError::SeatTypeNotFound)?;
    let seat = seat_from_row(&row)?;
    bookable(now, &sale, seat.remaining > 0)?;
    let hold = new_hold(request, &seat, now);
    sqlx::query(
        "INSERT INTO holds (id, user_id, concert_id, seat_type_id, status, price_cents, currency,
                            created_at, expires_at, provider, payment_status, payment_ref,
                            client_secret)
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, 'requires_payment', $10, $11)",
    )
    .bind(hold.id)
    .bind(hold.user_id)
    .bind(hold.concert_id)
    .bind(hold.seat_type_id)
    .bind(hold.price_cents)
    .bind(&hold.currency)
    .bind(hold.created_at)
    .bind(hold.expires_at)
    .bind(hold.payment.provider.as_str())
    .bind(&hold.payment.reference)
    .bind(&hold.payment.client_secret)
    .execute(&mut *tx)
    .await
    .map_err(constraint_to_rule)?;
    if let Some(key) = &request.key {
        sqlx::query(
            "INSERT INTO idempotency_keys
                (user_id, idempotency_key, request_hash, response_status, response_body, created_at)
             VALUES ($1, $2, $3, 201, $4, $5)",
        )
        .bind(request.user_id)
        .bind(key.as_str())
        .bind(fingerprint.as_slice())
        .bind(saved_json(&hold)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    notify(&mut tx, &HashSet::from([request.concert_id])).await?;
    tx.commit().await?;
    Ok(Made::Created(hold))
}

/// Lets a hold go before it expires; its seat returns at once.
pub async fn release(
    pool: &PgPool,
    hold_id: Uuid,
    user_id: Uuid,
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Changed<Hold> {
    let result = async {
        let mut tx = pool.begin().await?;
        let hold = lock_own_hold(&mut tx, hold_id, Some(user_id)).await?;
        if hold.clone().as_of(now).status != HoldStatus::Active {
            return Err(BookingError::HoldNotActive);
        }
        let row = sqlx::query(concat!(
            "UPDATE holds SET status = 'released', ended_at = $2 WHERE id = $1 RETURNING ",
            hold_columns!()
        ))
        .bind(hold_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(constraint_to_rule)?;
        let offers = waitlist::hand_on(&mut tx, &[hold.seat_type_id], terms, now, webhooks).await?;
        notify(&mut tx, &HashSet::from([hold.concert_id])).await?;
        tx.commit().await?;
        Ok((hold_from_row(&row)?, hold.concert_id, offers))
    }
    .await;
    match result {
        Ok((hold, concert_id, offers)) => Changed::of(Ok(hold), Some(concert_id), offers),
        Err(error) => Changed::of(Err(error), None, 0),
    }
}

/// Records a payment: the hold becomes a confirmed booking — before its expiry from its own
/// seat, after it (a payment that arrived late) from a free seat of the same type if there is
/// one. When the hold ended with no seat to give (released, or expired and sold out since), the
/// sale closed or the user booked otherwise, the payment is queued for a refund and the refusal
/// is the answer. The completion runs under a savepoint, so a refused one leaves only the refund.
pub async fn pay(
    pool: &PgPool,
    paid: &Paid,
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Changed<Hold> {
    let result = async {
        let mut tx = pool.begin().await?;
        let hold = lock_own_hold(&mut tx, paid.hold_id, paid.user_id).await?;
        let first = first_delivery(&mut tx, paid.event.as_deref(), "succeeded", &hold, now).await?;
        if !first || hold.status == HoldStatus::Completed {
            tx.commit().await?;
            return Ok((Ok(hold), None, 0));
        }
        let concert_id = hold.concert_id;
        let mut savepoint = Acquire::begin(&mut *tx).await?;
        let completed = complete(&mut savepoint, &hold, paid, now).await;
        let mut offers = 0;
        let answer = match completed {
            Ok(completed) => {
                savepoint.commit().await?;
                let booked = completed
                    .booking_id
                    .map(|id| (WebhookEvent::BookingConfirmed, id));
                enqueue(&mut tx, webhooks, booked, now).await?;
                Ok(completed)
            }
            Err(refused) if refunds_payment(&refused) => {
                savepoint.rollback().await?;
                if hold.status == HoldStatus::Active {
                    offers = expire_due(&mut tx, concert_id, terms, now, webhooks).await?;
                }
                if let Some(reference) = &paid.reference {
                    enqueue_refund(&mut tx, &hold, reference, now).await?;
                }
                Err(unbookable_answer(refused))
            }
            Err(error) => return Err(error),
        };
        let emails = usize::from(answer.is_ok()) + offers;
        notify(&mut tx, &HashSet::from([concert_id])).await?;
        tx.commit().await?;
        Ok((answer, Some(concert_id), emails))
    }
    .await;
    match result {
        Ok((answer, concert_id, emails)) => Changed::of(answer, concert_id, emails),
        Err(error) => Changed::of(Err(error), None, 0),
    }
}

async fn complete(
    tx: &mut Transaction<'_, Postgres>,
    hold: &Hold,
    paid: &Paid,
    now: OffsetDateTime,
) -> Result<Hold, BookingError> {
    if hold.status == HoldStatus::Released {
        return Err(BookingError::HoldNotActive);
    }
    // A hold past its expiry expires first (its seat returns), then competes for a free seat.
    if hold.status == HoldStatus::Active && hold.clone().as_of(now).status == HoldStatus::Expired {
        sqlx::query("UPDATE holds SET status = 'expired', ended_at = $2 WHERE id = $1")
            .bind(hold.id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    let booking = paid_booking(hold, paid, now);
    sqlx::query("SELECT 1 FROM seat_types WHERE id = $1 FOR UPDATE")
        .bind(hold.seat_type_id)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query(concat!(
        "UPDATE holds SET status = 'completed', ended_at = coalesce(ended_at, $2),
                booking_id = $3, payment_status = 'succeeded', payment_ref = $4
         WHERE id = $1 RETURNING ",
        hold_columns!()
    ))
    .bind(hold.id)
    .bind(now)
    .bind(booking.id)
    .bind(&paid.reference)
    .fetch_one(&mut **tx)
    .await
    .map_err(constraint_to_rule)?;
    let payment = booking.payment.as_ref();
    sqlx::query(
        "INSERT INTO bookings
            (id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at,
             payment_provider, payment_ref, amount_cents, payment_status)
         VALUES ($1, $2, $3, $4, 'confirmed', $5, $6, $7, $8, $9, $10,
                 CASE WHEN $8::text IS NULL THEN NULL ELSE 'succeeded' END)",
    )
    .bind(booking.id)
    .bind(booking.user_id)
    .bind(booking.concert_id)
    .bind(booking.seat_type_id)
    .bind(booking.price_cents)
    .bind(&booking.currency)
    .bind(now)
    .bind(payment.map(|payment| payment.provider.as_str()))
    .bind(&paid.reference)
    .bind(payment.map(|payment| payment.amount_cents))
    .execute(&mut **tx)
    .await
    .map_err(constraint_to_rule)?;
    enqueue_emails(tx, &[(EmailKind::BookingConfirmed, booking.id)], now).await?;
    hold_from_row(&row)
}

/// Marks the payment of an active hold `failed` (the provider refused an attempt); the hold
/// stays active until it is paid after all or ends. Any other hold is answered as it is.
pub async fn fail(pool: &PgPool, failed: &Failed, now: OffsetDateTime) -> Changed<Hold> {
    let result = async {
        let mut tx = pool.begin().await?;
        let hold = lock_own_hold(&mut tx, failed.hold_id, failed.user_id).await?;
        if !first_delivery(&mut tx, failed.event.as_deref(), "failed", &hold, now).await? {
            tx.commit().await?;
            return Ok(hold);
        }
        let marked = sqlx::query(concat!(
            "UPDATE holds SET payment_status = 'failed'
             WHERE id = $1 AND status = 'active' AND expires_at > $2
               AND payment_status = 'requires_payment'
             RETURNING ",
            hold_columns!()
        ))
        .bind(hold.id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        match marked {
            Some(row) => hold_from_row(&row),
            None => Ok(hold),
        }
    }
    .await;
    Changed::of(result.map(|hold| hold.as_of(now)), None, 0)
}

/// Queues a refund of `reference` (the whole price of `hold`), unless one is queued already.
async fn enqueue_refund(
    tx: &mut Transaction<'_, Postgres>,
    hold: &Hold,
    reference: &str,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    if hold.price_cents == 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO refunds (id, hold_id, provider, payment_ref, amount_cents, currency,
                              created_at, available_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (payment_ref) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(hold.id)
    .bind(hold.payment.provider.as_str())
    .bind(reference)
    .bind(hold.price_cents)
    .bind(&hold.currency)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Expires every hold due at `now`, locking the sales of their concerts first, queues their
/// `hold.expired` events and offers the seats to their waiting lists; returns the concerts
/// whose seats came back.
pub async fn expire_all(
    pool: &PgPool,
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Changed<usize> {
    let result = async {
        let mut concerts: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT concert_id FROM holds WHERE status = 'active' AND expires_at <= $1",
        )
        .bind(now)
        .fetch_all(pool)
        .await?;
        if concerts.is_empty() {
            return Ok((0, HashSet::new(), 0));
        }
        concerts.sort_unstable();
        let mut tx = pool.begin().await?;
        sqlx::query(
            "SELECT 1 FROM sales WHERE concert_id = ANY($1) ORDER BY concert_id FOR NO KEY UPDATE",
        )
        .bind(&concerts)
        .execute(&mut *tx)
        .await?;
        let expired: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "UPDATE holds SET status = 'expired', ended_at = $2
             WHERE concert_id = ANY($1) AND status = 'active' AND expires_at <= $2
             RETURNING id, seat_type_id",
        )
        .bind(&concerts)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let count = expired.len();
        let mut freed: Vec<Uuid> = expired
            .iter()
            .map(|(_, seat_type_id)| *seat_type_id)
            .collect();
        let events = expired
            .into_iter()
            .map(|(id, _)| (WebhookEvent::HoldExpired, id));
        enqueue(&mut tx, webhooks, events, now).await?;
        freed.sort_unstable();
        freed.dedup();
        let offers = waitlist::hand_on(&mut tx, &freed, terms, now, webhooks).await?;
        let touched: HashSet<Uuid> = concerts.into_iter().collect();
        notify(&mut tx, &touched).await?;
        tx.commit().await?;
        Ok((count, touched, offers))
    }
    .await;
    match result {
        Ok((count, concerts, offers)) => Changed {
            result: Ok(count),
            concerts,
            emails: offers,
        },
        Err(error) => Changed::of(Err(error), None, 0),
    }
}

/// Ends the active holds of a concert being cancelled (released, or expired when due); the
/// trigger returns their seats. The caller holds the sale's lock.
pub async fn end_for_concert(
    tx: &mut Transaction<'_, Postgres>,
    concert_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    sqlx::query(
        "UPDATE holds SET ended_at = $2,
                status = CASE WHEN expires_at <= $2 THEN 'expired' ELSE 'released' END
         WHERE concert_id = $1 AND status = 'active'",
    )
    .bind(concert_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
