//! Webhooks on PostgreSQL: events queued in the transaction that causes them ([`enqueue`]), one
//! row each, fanned out to the subscribed endpoints by the workers ([`fan_out`]: one instance at
//! a time, in the order the schema makes gap-free), endpoints changed on the pool, deliveries
//! claimed by the workers of every instance with `FOR UPDATE SKIP LOCKED` and a lease owned by
//! the instance, and the set of subscribed types followed by a poll ([`follow_subscriptions`]).
//! `concert.sold_out` is queued by the schema (migrations `0010_webhooks.sql` and
//! `0011_webhook_events.sql`): it is caused by a count, which every instance moves.

use std::sync::LazyLock;
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
    Attempted, Claimed, Delivery, EVENT_BIT_SQL, Endpoint, EventSet, NewEndpoint, Outcome, Queued,
    SUBSCRIPTIONS_POLL, Subscribed, WebhookEvent,
};

/// The fan-out of the events after the cursor (`$1`, `$2`) whose transactions have all ended
/// (`xact` below the snapshot's `xmin`), `$3` at most: their deliveries, and the last event
/// taken with how many.
static FAN_OUT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH batch AS (
            SELECT xact, seq, event_id, event, subject_id, created_at, {EVENT_BIT_SQL} AS bit
            FROM webhook_events
            WHERE (xact, seq) > ($1, $2)
              AND xact < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
            ORDER BY xact, seq LIMIT $3),
         delivered AS (
            INSERT INTO webhook_deliveries
                (endpoint_id, event_id, event, subject_id, created_at, next_attempt_at)
            SELECT e.id, b.event_id, b.event, b.subject_id, b.created_at, b.created_at
            FROM batch b
            JOIN webhook_endpoints e ON (e.events & b.bit) <> 0 AND e.disabled_at IS NULL
                                    AND e.created_at <= b.created_at)
         SELECT (SELECT count(*) FROM batch) AS events, last.xact, last.seq
         FROM (SELECT xact, seq FROM batch ORDER BY xact DESC, seq DESC LIMIT 1) AS last"
    )
});

/// Queues `events` in the caller's transaction, one `webhook_events` row each whatever the number
/// of endpoints ([`fan_out`] writes those): one `INSERT … SELECT FROM UNNEST` for all of them,
/// and no statement at all when this instance knows of no endpoint subscribing to any of them.
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
    for (event, subject) in events {
        if wanted.contains(event) {
            ids.push(Uuid::now_v7());
            types.push(event.as_str());
            subjects.push(subject);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO webhook_events (event_id, event, subject_id, created_at)
         SELECT v.id, v.event, v.subject, $4
         FROM UNNEST($1::uuid[], $2::text[], $3::uuid[]) AS v(id, event, subject)",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&subjects)
    .bind(ms(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the deliveries of up to `limit` events after the fan-out cursor — one per endpoint
/// active and subscribed to the event's type, created by the event's time — and moves the cursor
/// past them, in one transaction. The cursor's row is locked first, so the workers of several
/// instances fan out one range after another: none writes a delivery twice, and since only
/// events of ended transactions are taken, in the order of the cursor, none is skipped. (The
/// horizon is the server's: a long transaction, in any of its databases, holds the fan-out of
/// the events committed after it began until it ends.) Answers how many events.
pub async fn fan_out(pool: &PgPool, limit: u32) -> Result<usize, BookingError> {
    let mut tx = pool.begin().await?;
    let (xact, seq): (i64, i64) = sqlx::query_as("SELECT xact, seq FROM webhook_fanout FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    let taken = sqlx::query(sqlx::AssertSqlSafe(FAN_OUT.as_str()))
        .bind(xact)
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_optional(&mut *tx)
        .await?;
    let Some(taken) = taken else {
        // Nothing to fan out: the lock ends with the transaction.
        tx.rollback().await?;
        return Ok(0);
    };
    let events: i64 = taken.try_get("events")?;
    sqlx::query("UPDATE webhook_fanout SET xact = $1, seq = $2")
        .bind(taken.try_get::<i64, _>("xact")?)
        .bind(taken.try_get::<i64, _>("seq")?)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(usize::try_from(events).unwrap_or(0))
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

    pub async fn fan_out_webhooks(&self, limit: u32) -> Result<usize, BookingError> {
        fan_out(&self.db.pool, limit).await
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use boxoffice_shared::pgtest::TestDatabase;

    use super::*;

    /// A migrated store with two endpoints for `booking.confirmed`, and the set that says so.
    async fn store(test: &str) -> Option<(TestDatabase, PgPool, Subscribed)> {
        let database = TestDatabase::create(test).await?;
        let pool = PgPool::connect(&database.url)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        super::super::MIGRATIONS
            .run(&pool)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let subscribed = Subscribed::default();
        for secret in ["a", "b"] {
            let endpoint = NewEndpoint {
                id: Uuid::now_v7(),
                url: "http://127.0.0.1:9/hook".into(),
                events: EventSet::from_bits(1),
                secret: format!("whsec_{}", secret.repeat(40)),
                created_at: OffsetDateTime::UNIX_EPOCH,
            };
            create(&pool, &endpoint, &subscribed)
                .await
                .unwrap_or_else(|error| panic!("{error}"));
        }
        Some((database, pool, subscribed))
    }

    async fn queue(pool: &PgPool, subscribed: &Subscribed, count: usize) -> Vec<Uuid> {
        let mut tx = pool.begin().await.unwrap_or_else(|error| panic!("{error}"));
        let subjects: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
        let events = subjects
            .iter()
            .map(|subject| (WebhookEvent::BookingConfirmed, *subject));
        enqueue(&mut tx, subscribed, events, OffsetDateTime::now_utc())
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        tx.commit().await.unwrap_or_else(|error| panic!("{error}"));
        subjects
    }

    /// Deliveries per subject.
    async fn deliveries_by_subject(pool: &PgPool) -> HashMap<Uuid, i64> {
        sqlx::query_as("SELECT subject_id, count(*) FROM webhook_deliveries GROUP BY subject_id")
            .fetch_all(pool)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
            .into_iter()
            .collect()
    }

    async fn fan(pool: &PgPool, limit: u32) -> usize {
        fan_out(pool, limit)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Fans out until `expected` events are, or panics after ten seconds: a transaction of the
    /// server's other databases (other tests) may hold the horizon back a moment.
    async fn fan_all(pool: &PgPool, expected: usize) -> usize {
        let mut fanned = 0;
        for _ in 0..1000 {
            fanned += fan(pool, 100).await;
            if fanned >= expected {
                return fanned;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{fanned} of {expected} events fanned out");
    }

    #[tokio::test]
    async fn an_event_committed_after_a_later_one_is_not_skipped() {
        let Some((_database, pool, subscribed)) = store("postgres::webhooks::order").await else {
            return;
        };
        // The first event's transaction is still open when a second one commits.
        let mut first = pool.begin().await.unwrap_or_else(|error| panic!("{error}"));
        let early = Uuid::now_v7();
        let event = [(WebhookEvent::BookingConfirmed, early)];
        enqueue(&mut first, &subscribed, event, OffsetDateTime::now_utc())
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let late = queue(&pool, &subscribed, 1).await;
        // Neither may be taken yet: the cursor would pass the first, unseen.
        assert_eq!(fan(&pool, 10).await, 0);
        first
            .commit()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(fan_all(&pool, 2).await, 2);
        assert_eq!(fan(&pool, 10).await, 0);
        let delivered = deliveries_by_subject(&pool).await;
        assert_eq!(delivered.get(&early), Some(&2));
        assert_eq!(delivered.get(&late[0]), Some(&2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_fan_outs_deliver_every_event_once_to_each_endpoint() {
        let Some((_database, pool, subscribed)) = store("postgres::webhooks::race").await else {
            return;
        };
        let writers: Vec<_> = (0..6)
            .map(|_| {
                let (pool, subscribed) = (pool.clone(), subscribed.clone());
                tokio::spawn(async move {
                    let mut subjects = Vec::new();
                    for round in 0..20 {
                        subjects.extend(queue(&pool, &subscribed, 1 + round % 3).await);
                    }
                    subjects
                })
            })
            .collect();
        let stop = CancellationToken::new();
        let fanners: Vec<_> = (0..4)
            .map(|_| {
                let (pool, stop) = (pool.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut fanned = 0;
                    while !stop.is_cancelled() {
                        fanned += fan(&pool, 7).await;
                    }
                    fanned
                })
            })
            .collect();
        let mut subjects = Vec::new();
        for writer in writers {
            subjects.extend(writer.await.unwrap_or_else(|error| panic!("{error}")));
        }
        stop.cancel();
        let mut fanned = 0;
        for fanner in fanners {
            fanned += fanner.await.unwrap_or_else(|error| panic!("{error}"));
        }
        fanned += fan_all(&pool, subjects.len().saturating_sub(fanned)).await;
        assert_eq!(fanned, subjects.len(), "each event fanned out once");
        let delivered = deliveries_by_subject(&pool).await;
        assert_eq!(delivered.len(), subjects.len(), "no event skipped");
        assert!(
            subjects
                .iter()
                .all(|subject| delivered.get(subject) == Some(&2)),
            "one delivery per endpoint and event"
        );
    }

    #[tokio::test]
    async fn events_stay_as_written_and_the_cursor_only_moves_forward() {
        let Some((_database, pool, subscribed)) = store("postgres::webhooks::rules").await else {
            return;
        };
        queue(&pool, &subscribed, 1).await;
        assert_eq!(fan_all(&pool, 1).await, 1);
        for refused in [
            "DELETE FROM webhook_events",
            "UPDATE webhook_events SET created_at = now()",
            "UPDATE webhook_fanout SET xact = 0, seq = 0",
            "DELETE FROM webhook_fanout",
        ] {
            assert!(
                sqlx::query(refused).execute(&pool).await.is_err(),
                "{refused}"
            );
        }
    }
}
