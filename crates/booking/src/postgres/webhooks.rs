//! Webhooks on PostgreSQL: events queued in the transaction that causes them ([`enqueue`]),
//! endpoints changed on the pool, deliveries claimed by the workers of every instance with
//! `FOR UPDATE SKIP LOCKED` and a lease owned by the instance, and the set of subscribed types
//! followed by a poll ([`follow_subscriptions`]). `concert.sold_out` is queued by the schema
//! (migration `0010_webhooks.sql`): it is caused by a count, which every instance moves.

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::PgBooking;
use super::statements::ms;
use crate::error::BookingError;
use crate::webhook::{
    Attempted, Claimed, Delivery, Endpoint, EventSet, NewEndpoint, Outcome, Queued,
    SUBSCRIPTIONS_POLL, Subscribed, WebhookEvent,
};

/// Queues `events` in the caller's transaction for the endpoints that subscribe to each: one
/// `INSERT … SELECT FROM UNNEST` for all of them, and no statement at all when this instance
/// knows of no endpoint subscribing to any of them.
pub async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    subscribed: &Subscribed,
    events: impl IntoIterator<Item = Queued>,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let wanted = subscribed.get();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut types = Vec::new();
    let mut subjects = Vec::new();
    let mut bits = Vec::new();
    for (event, subject) in events {
        if wanted.contains(event) {
            ids.push(Uuid::now_v7());
            types.push(event.as_str());
            subjects.push(subject);
            bits.push(event.bit() as i32);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO webhook_deliveries
            (endpoint_id, event_id, event, subject_id, created_at, next_attempt_at)
         SELECT e.id, v.id, v.event, v.subject, $5, $5
         FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::int4[]) AS v(id, event, subject, bit)
         JOIN webhook_endpoints AS e ON (e.events & v.bit) <> 0 AND e.disabled_at IS NULL",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&subjects)
    .bind(&bits)
    .bind(ms(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The event types some active endpoint subscribes to.
pub async fn subscriptions(pool: &PgPool) -> Result<EventSet, BookingError> {
    let bits: Option<i32> = sqlx::query_scalar(
        "SELECT bit_or(events) FROM webhook_endpoints WHERE disabled_at IS NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok(EventSet::from_bits(bits.unwrap_or(0).unsigned_abs()))
}

/// Reads the subscribed types every [`SUBSCRIPTIONS_POLL`] until `stop`, so that endpoints
/// created, deleted or disabled through other instances count here within that time.
pub async fn follow_subscriptions(pool: PgPool, subscribed: Subscribed, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SUBSCRIPTIONS_POLL) => {}
        }
        match subscriptions(&pool).await {
            Ok(set) => subscribed.set(set),
            Err(error) => tracing::debug!(%error, "cannot read webhook subscriptions"),
        }
    }
}

pub async fn create(
    pool: &PgPool,
    endpoint: &NewEndpoint,
    subscribed: &Subscribed,
) -> Result<(), BookingError> {
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, events, secret, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(endpoint.id)
    .bind(&endpoint.url)
    .bind(endpoint.events.bits() as i32)
    .bind(&endpoint.secret)
    .bind(ms(endpoint.created_at))
    .execute(pool)
    .await?;
    subscribed.set(subscriptions(pool).await?);
    Ok(())
}

/// Disables an endpoint as deleted and stops its pending deliveries; whether there was one.
pub async fn delete(
    pool: &PgPool,
    id: Uuid,
    at: OffsetDateTime,
    subscribed: &Subscribed,
) -> Result<bool, BookingError> {
    let mut tx = pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE webhook_endpoints SET disabled_at = $1, disabled_reason = 'deleted'
         WHERE id = $2 AND disabled_reason IS DISTINCT FROM 'deleted'",
    )
    .bind(ms(at))
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    stop_pending(&mut tx, id).await?;
    tx.commit().await?;
    subscribed.set(subscriptions(pool).await?);
    Ok(changed == 1)
}

async fn stop_pending(
    tx: &mut Transaction<'_, Postgres>,
    endpoint_id: Uuid,
) -> Result<(), BookingError> {
    sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = NULL, leased_by = NULL
         WHERE endpoint_id = $1 AND next_attempt_at IS NOT NULL",
    )
    .bind(endpoint_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Leases up to `limit` due deliveries of active endpoints to `owner` until `lease_until`; the
/// workers of other instances skip the rows this one locked.
pub async fn claim(
    pool: &PgPool,
    owner: Uuid,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: u32,
) -> Result<Vec<Claimed>, BookingError> {
    sqlx::query(
        "WITH claimed AS (
            UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1,
                   leased_by = $4
            WHERE (endpoint_id, event_id) IN (
                SELECT d.endpoint_id, d.event_id FROM webhook_deliveries d
                JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.disabled_at IS NULL
                WHERE d.next_attempt_at <= $2
                ORDER BY d.next_attempt_at LIMIT $3
                FOR UPDATE OF d SKIP LOCKED)
            RETURNING endpoint_id, event_id, event, subject_id, created_at, attempts)
         SELECT c.*, e.url, e.secret FROM claimed c JOIN webhook_endpoints e ON e.id = c.endpoint_id",
    )
    .bind(ms(lease_until))
    .bind(ms(now))
    .bind(i64::from(limit))
    .bind(owner)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        let event: String = row.try_get("event")?;
        Ok(Claimed {
            endpoint_id: row.try_get("endpoint_id")?,
            event_id: row.try_get("event_id")?,
            event: parse_event(&event)?,
            subject_id: row.try_get("subject_id")?,
            created_at: row.try_get("created_at")?,
            attempts: row.try_get::<i32, _>("attempts")?.unsigned_abs(),
            url: row.try_get("url")?,
            secret: row.try_get("secret")?,
        })
    })
    .collect()
}

fn parse_event(event: &str) -> Result<WebhookEvent, BookingError> {
    WebhookEvent::parse(event)
        .ok_or_else(|| BookingError::Corrupt(format!("webhook event {event}")))
}

/// Records what attempts came to, in one transaction. A failure is tried again only while its
/// endpoint is active; a `410 Gone` disables the endpoint and stops its pending deliveries.
pub async fn record(
    pool: &PgPool,
    attempts: &[Attempted],
    now: OffsetDateTime,
    subscribed: &Subscribed,
) -> Result<(), BookingError> {
    let now = ms(now);
    let mut tx = pool.begin().await?;
    let mut disabled = false;
    for attempted in attempts {
        let (endpoint, event) = (attempted.endpoint_id, attempted.event_id);
        match &attempted.outcome {
            Outcome::Delivered(status) => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET delivered_at = $1, last_status = $2,
                            last_error = NULL, next_attempt_at = NULL, leased_by = NULL
                     WHERE endpoint_id = $3 AND event_id = $4 AND delivered_at IS NULL",
                )
                .bind(now)
                .bind(i32::from(*status))
                .bind(endpoint)
                .bind(event)
                .execute(&mut *tx)
                .await?;
            }
            Outcome::Failed {
                status,
                error,
                retry_at,
            } => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET last_status = $1, last_error = $2,
                            leased_by = NULL,
                            next_attempt_at = (SELECT $3::timestamptz FROM webhook_endpoints
                                               WHERE id = $4 AND disabled_at IS NULL)
                     WHERE endpoint_id = $4 AND event_id = $5 AND delivered_at IS NULL",
                )
                .bind(status.map(i32::from))
                .bind(error)
                .bind(retry_at.map(ms))
                .bind(endpoint)
                .bind(event)
                .execute(&mut *tx)
                .await?;
            }
            Outcome::Gone => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET last_status = 410, leased_by = NULL,
                            last_error = 'answered 410 Gone: the endpoint is disabled'
                     WHERE endpoint_id = $1 AND event_id = $2 AND delivered_at IS NULL",
                )
                .bind(endpoint)
                .bind(event)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE webhook_endpoints SET disabled_at = $1, disabled_reason = 'gone'
                     WHERE id = $2 AND disabled_at IS NULL",
                )
                .bind(now)
                .bind(endpoint)
                .execute(&mut *tx)
                .await?;
                stop_pending(&mut tx, endpoint).await?;
                disabled = true;
            }
        }
    }
    tx.commit().await?;
    if disabled {
        subscribed.set(subscriptions(pool).await?);
    }
    Ok(())
}

/// Makes the deliveries leased by `owner`'s worker due at once: called when that instance starts,
/// so the leases are those of its previous run, which died with its process.
pub async fn release_leases(
    pool: &PgPool,
    owner: Uuid,
    now: OffsetDateTime,
) -> Result<u64, BookingError> {
    Ok(sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = $1, leased_by = NULL
         WHERE leased_by = $2 AND next_attempt_at IS NOT NULL",
    )
    .bind(ms(now))
    .bind(owner)
    .execute(pool)
    .await?
    .rows_affected())
}

fn endpoint_from_row(row: &PgRow) -> Result<Endpoint, BookingError> {
    Ok(Endpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: EventSet::from_bits(row.try_get::<i32, _>("events")?.unsigned_abs()).events(),
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

/// One page of endpoints (not deleted), newest first, older than `before` when given.
pub async fn endpoints(
    pool: &PgPool,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Endpoint>, BookingError> {
    sqlx::query(
        "SELECT id, url, events, created_at, disabled_at FROM webhook_endpoints
         WHERE disabled_reason IS DISTINCT FROM 'deleted' AND ($1::uuid IS NULL OR id < $1)
         ORDER BY id DESC LIMIT $2",
    )
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?
    .iter()
    .map(endpoint_from_row)
    .collect()
}

/// One endpoint, unless it was deleted.
pub async fn endpoint(pool: &PgPool, id: Uuid) -> Result<Option<Endpoint>, BookingError> {
    sqlx::query(
        "SELECT id, url, events, created_at, disabled_at FROM webhook_endpoints
         WHERE id = $1 AND disabled_reason IS DISTINCT FROM 'deleted'",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(endpoint_from_row)
    .transpose()
}

/// One page of an endpoint's deliveries, newest first.
pub async fn deliveries(
    pool: &PgPool,
    endpoint_id: Uuid,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Delivery>, BookingError> {
    sqlx::query(
        "SELECT event_id, event, attempts, last_status, delivered_at, next_attempt_at
         FROM webhook_deliveries
         WHERE endpoint_id = $1 AND ($2::uuid IS NULL OR event_id < $2)
         ORDER BY event_id DESC LIMIT $3",
    )
    .bind(endpoint_id)
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        let event: String = row.try_get("event")?;
        Ok(Delivery {
            id: row.try_get("event_id")?,
            event: parse_event(&event)?,
            attempts: row.try_get::<i32, _>("attempts")?.unsigned_abs(),
            last_status: row
                .try_get::<Option<i32>, _>("last_status")?
                .and_then(|status| u16::try_from(status).ok()),
            delivered_at: row.try_get("delivered_at")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
        })
    })
    .collect()
}

impl PgBooking {
    pub fn writer_backlog(&self) -> usize {
        self.writer.max_capacity() - self.writer.capacity()
    }

    pub async fn create_webhook(
        &self,
        endpoint: NewEndpoint,
        subscribed: &Subscribed,
    ) -> Result<(), BookingError> {
        create(&self.db.pool, &endpoint, subscribed).await
    }

    pub async fn delete_webhook(
        &self,
        id: Uuid,
        subscribed: &Subscribed,
    ) -> Result<bool, BookingError> {
        delete(&self.db.pool, id, self.clock.now(), subscribed).await
    }

    pub async fn claim_webhooks(
        &self,
        owner: Uuid,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Claimed>, BookingError> {
        let now = self.clock.now();
        let until = now + time::Duration::try_from(lease).unwrap_or(time::Duration::MINUTE);
        claim(&self.db.pool, owner, now, until, limit).await
    }

    pub async fn record_webhooks(
        &self,
        attempts: Vec<Attempted>,
        subscribed: &Subscribed,
    ) -> Result<(), BookingError> {
        record(&self.db.pool, &attempts, self.clock.now(), subscribed).await
    }

    pub async fn release_webhook_leases(&self, owner: Uuid) -> Result<u64, BookingError> {
        release_leases(&self.db.pool, owner, self.clock.now()).await
    }

    pub async fn webhook_endpoints(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Endpoint>, BookingError> {
        endpoints(&self.db.pool, before, limit).await
    }

    pub async fn webhook_endpoint(&self, id: Uuid) -> Result<Option<Endpoint>, BookingError> {
        endpoint(&self.db.pool, id).await
    }

    pub async fn webhook_deliveries(
        &self,
        endpoint_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Delivery>, BookingError> {
        deliveries(&self.db.pool, endpoint_id, before, limit).await
    }
}
