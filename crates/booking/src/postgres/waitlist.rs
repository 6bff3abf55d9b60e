//! The waiting list on PostgreSQL: joining and leaving, each in a transaction of its own that
//! first locks the concert's sale `FOR NO KEY UPDATE` (like a hold command), and handing freed
//! seats on ([`hand_on`]) inside whichever transaction freed them — a booking batch's cancels,
//! a release, an expiry, a larger capacity — which holds the sale's lock too. So a join and a
//! freed seat of the same concert never overlap, on any instance: a seat is either freed before
//! the join (which then finds it and is refused `seats_available`) or offered to the fan.
//! The rules the schema keeps are in the migration `0009_waitlist.sql`.

use std::collections::HashSet;

use boxoffice_shared::clients::EmailKind;
use sqlx::{PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::reads::lock_sale;
use super::statements::{constraint_to_rule, notify};
use super::webhooks::enqueue;
use crate::command::saved_json;
use crate::error::BookingError;
use crate::rows::{entry_columns, entry_from_row};
use crate::waitlist::{
    JoinRequest, NextInLine, OfferTerms, OfferedSeat, WaitlistEntry, WaitlistStatus, offer_email,
    offered_hold,
};
use crate::webhook::{Subscribed, WebhookEvent};

/// What a waiting-list command changed, for the writer to publish once it has committed.
pub struct Left {
    pub result: Result<(), BookingError>,
    /// The concert whose counts may have moved, when the fan let an offered seat go.
    pub concert: Option<Uuid>,
    /// Offers made with the seat let go (each queued an email).
    pub offers: usize,
}

/// Puts the fan on the seat type's list; the schema refuses what may not wait (see the
/// migration), under the sale's lock.
pub async fn join(
    pool: &PgPool,
    request: &JoinRequest,
    now: OffsetDateTime,
) -> Result<WaitlistEntry, BookingError> {
    let mut tx = pool.begin().await?;
    lock_sale(&mut tx, request.concert_id)
        .await?
        .ok_or(BookingError::ConcertNotFound)?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO waitlist (id, user_id, concert_id, seat_type_id, status, created_at)
         VALUES ($1, $2, $3, $4, 'waiting', $5)",
    )
    .bind(id)
    .bind(request.user_id)
    .bind(request.concert_id)
    .bind(request.seat_type_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(constraint_to_rule)?;
    let row = sqlx::query(concat!(
        "SELECT ",
        entry_columns!(),
        " FROM waitlist AS w WHERE w.id = $1"
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    entry_from_row(&row)
}

/// Takes the fan's entry off the list: a waiting entry is `left`; an offered one lets its hold
/// go (released, or expired if its time is up), the entry follows it, and the seat goes to the
/// next fan in line in the same transaction. An entry that has ended is left as it is.
pub async fn leave(
    pool: &PgPool,
    entry_id: Uuid,
    user_id: Uuid,
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Left {
    let mut concert = None;
    let result = async {
        let mut tx = pool.begin().await?;
        let entry = crate::rows::waitlist_entry(&mut *tx, entry_id)
            .await?
            .filter(|entry| entry.user_id == user_id)
            .ok_or(BookingError::WaitlistEntryNotFound)?;
        lock_sale(&mut tx, entry.concert_id).await?;
        let mut offers = 0;
        if matches!(
            entry.status,
            WaitlistStatus::Waiting | WaitlistStatus::Offered
        ) {
            sqlx::query(
                "UPDATE waitlist SET status = 'left', ended_at = $2
                 WHERE id = $1 AND status = 'waiting'",
            )
            .bind(entry_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // An offered seat: its hold ends, the entry follows it, and the seat goes on.
            let ended = sqlx::query(
                "UPDATE holds SET ended_at = $2,
                        status = CASE WHEN expires_at <= $2 THEN 'expired' ELSE 'released' END
                 WHERE id = $1 AND status = 'active'",
            )
            .bind(entry.hold_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if ended == 1 {
                concert = Some(entry.concert_id);
                offers = hand_on(&mut tx, &[entry.seat_type_id], terms, now, webhooks).await?;
                notify(&mut tx, &HashSet::from([entry.concert_id])).await?;
            }
        }
        tx.commit().await?;
        Ok(offers)
    }
    .await;
    match result {
        Ok(offers) => Left {
            result: Ok(()),
            concert,
            offers,
        },
        Err(error) => Left {
            result: Err(error),
            concert: None,
            offers: 0,
        },
    }
}

/// Ends the lists of a concert being cancelled: every entry waiting or offered is `expired`
/// (before the concert's holds are released, so that the entries do not read as `left`). The
/// caller holds the sale's lock.
pub async fn end_for_concert(
    tx: &mut Transaction<'_, Postgres>,
    concert_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    sqlx::query(
        "UPDATE waitlist SET status = 'expired', ended_at = $2
         WHERE concert_id = $1 AND status IN ('waiting', 'offered')",
    )
    .bind(concert_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Offers the free seats of `seat_types` to the fans first in line for them, in the caller's
/// transaction (which holds the sales' locks): per seat type, as many holds as it has seats
/// left and fans waiting, each in the first fan's name for the offer time; the entries
/// `offered`; the offers' emails queued. A fan who has booked the concert otherwise since they
/// joined — a confirmed booking, or a hold still stored active — leaves the line when their turn
/// comes (they cannot hold a second seat), and the seat goes to the next. Each offer queues its
/// `waitlist.offered` event (subject: the hold). Set-based: a handful of statements however
/// many seats an expiry storm freed. Returns how many seats were offered.
pub async fn hand_on(
    tx: &mut Transaction<'_, Postgres>,
    seat_types: &[Uuid],
    terms: OfferTerms,
    now: OffsetDateTime,
    webhooks: &Subscribed,
) -> Result<usize, BookingError> {
    let mut offered = 0;
    if seat_types.is_empty() {
        return Ok(offered);
    }
    loop {
        // The first fans in line, as many per seat type as it has free seats; a fan who holds a
        // seat of the concert (a confirmed booking, or a hold stored active) is `seated`.
        let line = sqlx::query(
            "SELECT w.seq, w.user_id, w.concert_id, w.seat_type_id, t.price_cents, t.currency,
                    s.name AS concert_name, s.artist, s.venue, s.time_zone, s.starts_at,
                    t.name AS seat_type_name,
                    (EXISTS (SELECT 1 FROM bookings AS b WHERE b.user_id = w.user_id
                             AND b.concert_id = w.concert_id AND b.status = 'confirmed')
                     OR EXISTS (SELECT 1 FROM holds AS h WHERE h.user_id = w.user_id
                             AND h.concert_id = w.concert_id AND h.status = 'active'))
                    AS seated
             FROM (SELECT l.*,
                          row_number() OVER (PARTITION BY l.seat_type_id ORDER BY l.seq) AS n
                   FROM waitlist AS l
                   WHERE l.seat_type_id = ANY($1) AND l.status = 'waiting') AS w
             JOIN seat_types AS t ON t.id = w.seat_type_id
             JOIN sales AS s ON s.concert_id = t.concert_id
             WHERE w.n <= t.remaining
               AND s.cancelled_at IS NULL AND s.starts_at > $2
               AND (s.sales_open_at IS NULL OR s.sales_open_at <= $2)
             ORDER BY w.seq",
        )
        .bind(seat_types)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        let mut seated = Vec::new();
        let mut offers = Offers::default();
        for row in &line {
            if row.try_get::<bool, _>("seated")? {
                seated.push(row.try_get::<i64, _>("seq")?);
                continue;
            }
            offers.push(row, terms, now)?;
        }
        if !offers.ids.is_empty() {
            offers.write(tx, terms, now).await?;
            let events = offers
                .ids
                .iter()
                .map(|hold| (WebhookEvent::WaitlistOffered, *hold));
            enqueue(tx, webhooks, events, now).await?;
            offered += offers.ids.len();
        }
        if seated.is_empty() {
            break;
        }
        // Seated fans leave the line; the seats they were not given go to the fans behind.
        sqlx::query("UPDATE waitlist SET status = 'left', ended_at = $2 WHERE seq = ANY($1)")
            .bind(&seated)
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(offered)
}

/// The offers [`hand_on`] makes, column by column, for set-based statements.
#[derive(Default)]
struct Offers {
    seqs: Vec<i64>,
    ids: Vec<Uuid>,
    users: Vec<Uuid>,
    concerts: Vec<Uuid>,
    seat_types: Vec<Uuid>,
    prices: Vec<i64>,
    currencies: Vec<String>,
    emails: Vec<String>,
}

impl Offers {
    /// The offer to the fan of `row` (a row of [`hand_on`]'s line).
    fn push(
        &mut self,
        row: &sqlx::postgres::PgRow,
        terms: OfferTerms,
        now: OffsetDateTime,
    ) -> Result<(), BookingError> {
        let next = NextInLine {
            user_id: row.try_get("user_id")?,
            concert_id: row.try_get("concert_id")?,
            seat_type_id: row.try_get("seat_type_id")?,
            price_cents: row.try_get("price_cents")?,
            currency: row.try_get("currency")?,
        };
        let hold = offered_hold(&next, terms, now);
        let seat = OfferedSeat {
            concert_name: row.try_get("concert_name")?,
            artist: row.try_get("artist")?,
            venue: row.try_get("venue")?,
            time_zone: row.try_get("time_zone")?,
            starts_at: row.try_get("starts_at")?,
            seat_type_name: row.try_get("seat_type_name")?,
        };
        self.emails.push(saved_json(&offer_email(&hold, seat))?);
        self.seqs.push(row.try_get("seq")?);
        self.add(&hold);
        Ok(())
    }

    fn add(&mut self, hold: &crate::hold::Hold) {
        self.ids.push(hold.id);
        self.users.push(hold.user_id);
        self.concerts.push(hold.concert_id);
        self.seat_types.push(hold.seat_type_id);
        self.prices.push(hold.price_cents);
        self.currencies.push(hold.currency.clone());
    }

    /// The holds (the schema's triggers take their seats), the entries `offered`, the emails.
    async fn write(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        terms: OfferTerms,
        now: OffsetDateTime,
    ) -> Result<(), BookingError> {
        sqlx::query(
            "INSERT INTO holds (id, user_id, concert_id, seat_type_id, status, price_cents,
                                currency, created_at, expires_at, provider, payment_status)
             SELECT i, u, c, t, 'active', p, cur, $7, $8, $9, 'requires_payment'
             FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[],
                         $6::text[]) AS r(i, u, c, t, p, cur)",
        )
        .bind(&self.ids)
        .bind(&self.users)
        .bind(&self.concerts)
        .bind(&self.seat_types)
        .bind(&self.prices)
        .bind(&self.currencies)
        .bind(now)
        .bind(now + terms.ttl)
        .bind(terms.provider.as_str())
        .execute(&mut **tx)
        .await
        .map_err(constraint_to_rule)?;
        sqlx::query(
            "UPDATE waitlist AS w SET status = 'offered', hold_id = r.h, offered_at = $3
             FROM UNNEST($1::bigint[], $2::uuid[]) AS r(s, h)
             WHERE w.seq = r.s",
        )
        .bind(&self.seqs)
        .bind(&self.ids)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let message_ids: Vec<Uuid> = self.emails.iter().map(|_| Uuid::now_v7()).collect();
        sqlx::query(
            "INSERT INTO outbox (message_id, kind, payload, created_at, available_at)
             SELECT m, $2, p, $4, $4 FROM UNNEST($1::uuid[], $3::text[]) AS r(m, p)",
        )
        .bind(&message_ids)
        .bind(EmailKind::WaitlistOffered.as_str())
        .bind(&self.emails)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
