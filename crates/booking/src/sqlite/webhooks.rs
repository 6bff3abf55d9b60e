//! Webhooks on SQLite: events queued in the writer's batches, endpoints changed and deliveries
//! claimed and recorded by the writer (it holds the only write connection), and the reads on the
//! async pool.
//!
//! Commands stage their events ([`super::batch::Staged`]`::webhooks`: one push, no SQL); just
//! before the batch commits, [`flush`] adds the seat types the batch sold out and writes one
//! `webhook_events` row per event whose type some endpoint subscribes to — or nothing when none
//! is. The set of subscribed types is exact: only this writer changes endpoints, and it updates
//! the set once each change has committed. The worker's [`fan_out`] job then writes the
//! deliveries of the events after the fan-out cursor, a batch at a time, and moves the cursor in
//! the same transaction: the writer commits in `seq` order, so the cursor skips nothing.

use std::collections::HashMap;
use std::time::Duration;

use boxoffice_shared::clock::{from_millis, to_millis};
use rusqlite::{Connection, params};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::SqliteBooking;
use super::batch::{Answer, Effects, Job, Staged, WebhookJob, answer};
use crate::command::Reply;
use crate::error::BookingError;
use crate::view::SharedInventory;
use crate::webhook::{
    Attempted, Claimed, Delivery, EVENT_BIT_SQL, Endpoint, EventSet, NewEndpoint, Outcome, Queued,
    Subscribed, WebhookEvent,
};

/// Queues `event` about `subject_id` with the rest of a command's changes (the waiting list's
/// `waitlist.offered`, subject the offer's hold, say): written by [`flush`] just before the batch
/// commits, only if the command's changes stand and some endpoint subscribes to `event`. No SQL
/// here, so a command may call it whatever is subscribed.
pub fn enqueue_webhook(staged: &mut Staged, event: WebhookEvent, subject_id: Uuid) {
    staged.webhooks.push((event, subject_id));
}

/// Queues, just before the batch commits, the events its commands staged and the seat types it
/// left at 0 that the view still has above 0, for the endpoints subscribed to each.
pub(super) fn flush(
    conn: &Connection,
    subscribed: &Subscribed,
    view: &SharedInventory,
    effects: &mut Effects,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let wanted = subscribed.get();
    if wanted.is_empty() {
        effects.webhooks.clear();
        return Ok(());
    }
    if wanted.contains(WebhookEvent::ConcertSoldOut) {
        let view = view.read();
        for (seat_type_id, remaining) in &effects.remaining {
            let was = view.seats.get(seat_type_id).map(|seat| seat.remaining);
            if *remaining == 0 && was.is_some_and(|was| was > 0) {
                effects
                    .webhooks
                    .push((WebhookEvent::ConcertSoldOut, *seat_type_id));
            }
        }
    }
    let events: Vec<Queued> = effects
        .webhooks
        .drain(..)
        .filter(|(event, _)| wanted.contains(*event))
        .collect();
    enqueue(conn, &events, now)
}

/// Queues `events`, now, in the caller's transaction: one `webhook_events` row each, by
/// reference, whatever the number of endpoints ([`fan_out`] writes those). One single-row
/// statement, prepared once: its text does not change with the number of events.
pub fn enqueue(
    conn: &Connection,
    events: &[Queued],
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    if events.is_empty() {
        return Ok(());
    }
    let at = to_millis(now);
    let mut statement = conn.prepare_cached(
        "INSERT INTO webhook_events (event_id, event, subject_id, created_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (event, subject) in events {
        statement.execute(params![Uuid::now_v7(), event.as_str(), subject, at])?;
    }
    Ok(())
}

/// Writes the deliveries of up to `limit` events after the fan-out cursor, in `seq` order — one
/// per endpoint active and subscribed to the event's type, created by the event's time — and
/// moves the cursor past them, in the caller's transaction. Answers how many events.
pub fn fan_out(conn: &Connection, limit: u32) -> Result<usize, BookingError> {
    let from: i64 = conn
        .prepare_cached("SELECT seq FROM webhook_fanout")?
        .query_row([], |row| row.get(0))?;
    let (upto, count): (Option<i64>, i64) = conn
        .prepare_cached(
            "SELECT max(seq), count(*) FROM
                (SELECT seq FROM webhook_events WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
        )?
        .query_row(params![from, i64::from(limit)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    let Some(upto) = upto else {
        return Ok(0);
    };
    conn.prepare_cached(&format!(
        "INSERT INTO webhook_deliveries
            (endpoint_id, event_id, event, subject_id, created_at, next_attempt_at)
         SELECT e.id, v.event_id, v.event, v.subject_id, v.created_at, v.created_at
         FROM (SELECT *, {EVENT_BIT_SQL} AS bit FROM webhook_events
               WHERE seq > ?1 AND seq <= ?2) AS v
         JOIN webhook_endpoints AS e ON (e.events & v.bit) <> 0 AND e.disabled_at IS NULL
                                    AND e.created_at <= v.created_at"
    ))?
    .execute(params![from, upto])?;
    conn.prepare_cached("UPDATE webhook_fanout SET seq = ?1")?
        .execute(params![upto])?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// Runs a webhook job in the batch's transaction. A change to endpoints updates the process's
/// set of subscribed types once the batch has committed.
pub(super) fn apply(conn: &Connection, job: WebhookJob, now: OffsetDateTime) -> Answer {
    match job {
        WebhookJob::Create(endpoint, subscribed, reply) => {
            let result = create(conn, &endpoint).and_then(|()| subscriptions(conn));
            after_change(reply, result.map(|set| ((), set)), subscribed)
        }
        WebhookJob::Delete(id, subscribed, reply) => {
            let result =
                delete(conn, id, now).and_then(|found| subscriptions(conn).map(|set| (found, set)));
            after_change(reply, result, subscribed)
        }
        WebhookJob::FanOut(limit, reply) => answer(reply, all_or_nothing(conn, fan_out, limit)),
        WebhookJob::Claim(limit, lease, reply) => {
            let until = now + time::Duration::try_from(lease).unwrap_or(time::Duration::MINUTE);
            answer(reply, claim(conn, now, until, limit))
        }
        WebhookJob::Record(attempts, subscribed, reply) => {
            let result = record(conn, &attempts, now).and_then(|()| subscriptions(conn));
            after_change(reply, result.map(|set| ((), set)), subscribed)
        }
    }
}

/// Runs `job` under a savepoint: the deliveries and the cursor's move stand together or not at
/// all, whatever the rest of the batch does.
fn all_or_nothing<T>(
    conn: &Connection,
    job: impl FnOnce(&Connection, u32) -> Result<T, BookingError>,
    limit: u32,
) -> Result<T, BookingError> {
    conn.execute_batch("SAVEPOINT fan_out")?;
    let result = job(conn, limit);
    let end = match result {
        Ok(_) => "RELEASE fan_out",
        Err(_) => "ROLLBACK TO fan_out; RELEASE fan_out",
    };
    conn.execute_batch(end)?;
    result
}

/// Answers `reply` once the batch's fate is known and, if it committed, makes `set` the
/// process's subscribed types.
fn after_change<T: Send + 'static>(
    reply: Reply<T>,
    result: Result<(T, EventSet), BookingError>,
    subscribed: Subscribed,
) -> Answer {
    let set = result.as_ref().ok().map(|(_, set)| *set);
    let inner = answer(reply, result.map(|(value, _)| value));
    Box::new(move |committed| {
        if committed && let Some(set) = set {
            subscribed.set(set);
        }
        inner(committed);
    })
}

/// The event types some active endpoint subscribes to.
pub fn subscriptions(conn: &Connection) -> Result<EventSet, BookingError> {
    let mut statement =
        conn.prepare_cached("SELECT events FROM webhook_endpoints WHERE disabled_at IS NULL")?;
    let bits = statement
        .query_map([], |row| row.get::<_, u32>(0))?
        .try_fold(0u32, |bits, row| row.map(|row| bits | row))?;
    Ok(EventSet::from_bits(bits))
}

fn create(conn: &Connection, endpoint: &NewEndpoint) -> Result<(), BookingError> {
    conn.prepare_cached(
        "INSERT INTO webhook_endpoints (id, url, events, secret, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        endpoint.id,
        endpoint.url,
        endpoint.events.bits(),
        endpoint.secret,
        to_millis(endpoint.created_at)
    ])?;
    Ok(())
}

/// Disables an endpoint as deleted, and stops its pending deliveries.
fn delete(conn: &Connection, id: Uuid, at: OffsetDateTime) -> Result<bool, BookingError> {
    let changed = conn
        .prepare_cached(
            "UPDATE webhook_endpoints SET disabled_at = ?1, disabled_reason = 'deleted'
             WHERE id = ?2 AND disabled_reason IS NOT 'deleted'",
        )?
        .execute(params![to_millis(at), id])?;
    stop_pending(conn, id)?;
    Ok(changed == 1)
}

fn stop_pending(conn: &Connection, endpoint_id: Uuid) -> Result<(), BookingError> {
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET next_attempt_at = NULL, leased = 0
         WHERE endpoint_id = ?1 AND next_attempt_at IS NOT NULL",
    )?
    .execute(params![endpoint_id])?;
    Ok(())
}

/// Leases up to `limit` due deliveries until `lease_until`, with their endpoints' URL and secret.
fn claim(
    conn: &Connection,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    limit: u32,
) -> Result<Vec<Claimed>, BookingError> {
    let mut statement = conn.prepare_cached(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, leased = 1, next_attempt_at = ?1
         WHERE (endpoint_id, event_id) IN (
            SELECT endpoint_id, event_id FROM webhook_deliveries
            WHERE next_attempt_at <= ?2 ORDER BY next_attempt_at LIMIT ?3)
         RETURNING endpoint_id, event_id, event, subject_id, created_at, attempts",
    )?;
    let rows = statement
        .query_map(
            params![to_millis(lease_until), to_millis(now), i64::from(limit)],
            |row| {
                Ok((
                    row.get::<_, Uuid>(0)?,
                    row.get::<_, Uuid>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Uuid>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, u32>(5)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let endpoints: HashMap<Uuid, (String, String)> = conn
        .prepare_cached("SELECT id, url, secret FROM webhook_endpoints WHERE disabled_at IS NULL")?
        .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))?
        .collect::<rusqlite::Result<_>>()?;
    let mut claimed = Vec::with_capacity(rows.len());
    for (endpoint_id, event_id, event, subject_id, created_at, attempts) in rows {
        let event = WebhookEvent::parse(&event)
            .ok_or_else(|| BookingError::Corrupt(format!("webhook event {event}")))?;
        // An endpoint disabled since its delivery fell due: not called.
        let Some((url, secret)) = endpoints.get(&endpoint_id).cloned() else {
            stop_pending(conn, endpoint_id)?;
            continue;
        };
        claimed.push(Claimed {
            endpoint_id,
            event_id,
            event,
            subject_id,
            created_at: from_millis(created_at),
            attempts,
            url,
            secret,
        });
    }
    Ok(claimed)
}

/// Records what attempts came to. A failure is tried again only while its endpoint is active; a
/// `410 Gone` disables the endpoint and stops its pending deliveries.
fn record(
    conn: &Connection,
    attempts: &[Attempted],
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let at = to_millis(now);
    for attempted in attempts {
        let (endpoint, event) = (attempted.endpoint_id, attempted.event_id);
        match &attempted.outcome {
            Outcome::Delivered(status) => {
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET delivered_at = ?1, last_status = ?2,
                            last_error = NULL, next_attempt_at = NULL, leased = 0
                     WHERE endpoint_id = ?3 AND event_id = ?4 AND delivered_at IS NULL",
                )?
                .execute(params![at, status, endpoint, event])?;
            }
            Outcome::Failed {
                status,
                error,
                retry_at,
            } => {
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET last_status = ?1, last_error = ?2, leased = 0,
                            next_attempt_at = (SELECT ?3 FROM webhook_endpoints
                                               WHERE id = ?4 AND disabled_at IS NULL)
                     WHERE endpoint_id = ?4 AND event_id = ?5 AND delivered_at IS NULL",
                )?
                .execute(params![
                    status,
                    error,
                    retry_at.map(to_millis),
                    endpoint,
                    event
                ])?;
            }
            Outcome::Gone => {
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET last_status = 410, leased = 0,
                            last_error = 'answered 410 Gone: the endpoint is disabled'
                     WHERE endpoint_id = ?1 AND event_id = ?2 AND delivered_at IS NULL",
                )?
                .execute(params![endpoint, event])?;
                conn.prepare_cached(
                    "UPDATE webhook_endpoints SET disabled_at = ?1, disabled_reason = 'gone'
                     WHERE id = ?2 AND disabled_at IS NULL",
                )?
                .execute(params![at, endpoint])?;
                stop_pending(conn, endpoint)?;
            }
        }
    }
    Ok(())
}

/// Readies webhooks when the store starts: releases the leases of the previous run's worker and
/// reads which event types are subscribed.
pub(super) fn start(conn: &Connection, now: OffsetDateTime) -> Result<EventSet, BookingError> {
    let released = release_leases(conn, now)?;
    if released > 0 {
        tracing::info!(released, "released webhook leases left by the previous run");
    }
    subscriptions(conn)
}

/// Makes deliveries leased by a worker of a previous run of this process due at once: that worker
/// died with the process. Returns how many.
pub fn release_leases(conn: &Connection, now: OffsetDateTime) -> Result<usize, BookingError> {
    Ok(conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = ?1, leased = 0
         WHERE leased = 1 AND next_attempt_at IS NOT NULL",
        params![to_millis(now)],
    )?)
}

fn endpoint_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Endpoint, BookingError> {
    Ok(Endpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: EventSet::from_bits(row.try_get("events")?).events(),
        created_at: from_millis(row.try_get("created_at")?),
        disabled_at: row
            .try_get::<Option<i64>, _>("disabled_at")?
            .map(from_millis),
    })
}

/// One page of endpoints (not deleted), newest first, older than `before` when given.
pub async fn endpoints(
    pool: &SqlitePool,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Endpoint>, BookingError> {
    sqlx::query(
        "SELECT id, url, events, created_at, disabled_at FROM webhook_endpoints
         WHERE disabled_reason IS NOT 'deleted' AND ($1 IS NULL OR id < $1)
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
pub async fn endpoint(pool: &SqlitePool, id: Uuid) -> Result<Option<Endpoint>, BookingError> {
    sqlx::query(
        "SELECT id, url, events, created_at, disabled_at FROM webhook_endpoints
         WHERE id = $1 AND disabled_reason IS NOT 'deleted'",
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
    pool: &SqlitePool,
    endpoint_id: Uuid,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Delivery>, BookingError> {
    sqlx::query(
        "SELECT event_id, event, attempts, last_status, delivered_at, next_attempt_at
         FROM webhook_deliveries
         WHERE endpoint_id = $1 AND ($2 IS NULL OR event_id < $2)
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
            event: WebhookEvent::parse(&event)
                .ok_or_else(|| BookingError::Corrupt(format!("webhook event {event}")))?,
            attempts: row.try_get("attempts")?,
            last_status: row
                .try_get::<Option<i64>, _>("last_status")?
                .and_then(|status| u16::try_from(status).ok()),
            delivered_at: row
                .try_get::<Option<i64>, _>("delivered_at")?
                .map(from_millis),
            next_attempt_at: row
                .try_get::<Option<i64>, _>("next_attempt_at")?
                .map(from_millis),
        })
    })
    .collect()
}

impl SqliteBooking {
    pub fn writer_backlog(&self) -> usize {
        self.writer.max_capacity() - self.writer.capacity()
    }

    pub async fn create_webhook(
        &self,
        endpoint: NewEndpoint,
        subscribed: &Subscribed,
    ) -> Result<(), BookingError> {
        let subscribed = subscribed.clone();
        self.job(|reply| Job::Webhooks(WebhookJob::Create(endpoint, subscribed, reply)))
            .await
    }

    pub async fn delete_webhook(
        &self,
        id: Uuid,
        subscribed: &Subscribed,
    ) -> Result<bool, BookingError> {
        let subscribed = subscribed.clone();
        self.job(|reply| Job::Webhooks(WebhookJob::Delete(id, subscribed, reply)))
            .await
    }

    /// Fans out up to `limit` events through the writer. Asks the writer only when the read pool
    /// sees an event after the cursor, so an idle worker costs the writer no commits.
    pub async fn fan_out_webhooks(&self, limit: u32) -> Result<usize, BookingError> {
        let waiting: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_events WHERE seq > (SELECT seq FROM webhook_fanout) LIMIT 1",
        )
        .fetch_optional(self.read_pool())
        .await?;
        if waiting.is_none() {
            return Ok(0);
        }
        self.job(|reply| Job::Webhooks(WebhookJob::FanOut(limit, reply)))
            .await
    }

    /// One process, one worker: `_owner` is for PostgreSQL's instances. Asks the writer only
    /// when the read pool sees a due delivery, so an idle worker costs the writer no commits.
    pub async fn claim_webhooks(
        &self,
        _owner: Uuid,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Claimed>, BookingError> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_deliveries WHERE next_attempt_at <= $1 LIMIT 1",
        )
        .bind(to_millis(OffsetDateTime::now_utc()))
        .fetch_optional(self.read_pool())
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        self.job(|reply| Job::Webhooks(WebhookJob::Claim(limit, lease, reply)))
            .await
    }

    pub async fn record_webhooks(
        &self,
        attempts: Vec<Attempted>,
        subscribed: &Subscribed,
    ) -> Result<(), BookingError> {
        let subscribed = subscribed.clone();
        self.job(|reply| Job::Webhooks(WebhookJob::Record(attempts, subscribed, reply)))
            .await
    }

    /// Released when the store starts ([`release_leases`]), before any worker claims.
    pub async fn release_webhook_leases(&self, _owner: Uuid) -> Result<u64, BookingError> {
        Ok(0)
    }

    pub async fn webhook_endpoints(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Endpoint>, BookingError> {
        endpoints(self.read_pool(), before, limit).await
    }

    pub async fn webhook_endpoint(&self, id: Uuid) -> Result<Option<Endpoint>, BookingError> {
        endpoint(self.read_pool(), id).await
    }

    pub async fn webhook_deliveries(
        &self,
        endpoint_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Delivery>, BookingError> {
        deliveries(self.read_pool(), endpoint_id, before, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Inventory, Seat};

    /// A connection with the webhook tables alone, two endpoints: one for `booking.confirmed`,
    /// one for `concert.sold_out`.
    fn store() -> Connection {
        let conn = Connection::open_in_memory().unwrap_or_else(|error| panic!("{error}"));
        for migration in [
            include_str!("../../migrations/sqlite/0011_webhooks.sql"),
            include_str!("../../migrations/sqlite/0012_webhook_events.sql"),
        ] {
            conn.execute_batch(migration)
                .unwrap_or_else(|error| panic!("{error}"));
        }
        for (events, secret) in [(1u32, "a"), (16, "b")] {
            let endpoint = NewEndpoint {
                id: Uuid::now_v7(),
                url: "http://127.0.0.1:9/hook".into(),
                events: EventSet::from_bits(events),
                secret: format!("whsec_{}", secret.repeat(40)),
                created_at: OffsetDateTime::UNIX_EPOCH,
            };
            create(&conn, &endpoint).unwrap_or_else(|error| panic!("{error}"));
        }
        conn
    }

    /// The events queued: one row each, whatever the number of endpoints.
    fn queued(conn: &Connection) -> Vec<(String, Uuid)> {
        rows(
            conn,
            "SELECT event, subject_id FROM webhook_events ORDER BY event",
        )
    }

    /// The deliveries written by the fan-out.
    fn delivering(conn: &Connection) -> Vec<(String, Uuid)> {
        rows(
            conn,
            "SELECT event, subject_id FROM webhook_deliveries ORDER BY event",
        )
    }

    fn rows(conn: &Connection, query: &str) -> Vec<(String, Uuid)> {
        let mut statement = conn
            .prepare(query)
            .unwrap_or_else(|error| panic!("{error}"));
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    fn view_with_seat(seat_type_id: Uuid, remaining: i64) -> SharedInventory {
        let seat = Seat {
            concert_id: Uuid::now_v7(),
            name: "GA".into(),
            price_cents: 0,
            currency: "USD".into(),
            capacity: 10,
            remaining,
        };
        let mut inventory = Inventory::default();
        inventory.seats.insert(seat_type_id, seat);
        SharedInventory::new(inventory)
    }

    #[test]
    fn nothing_is_written_when_nobody_subscribes() {
        let conn = store();
        let seat = Uuid::now_v7();
        let mut effects = Effects::default();
        effects.remaining.insert(seat, 0);
        effects
            .webhooks
            .push((WebhookEvent::BookingConfirmed, Uuid::now_v7()));
        let none = Subscribed::default();
        flush(
            &conn,
            &none,
            &view_with_seat(seat, 1),
            &mut effects,
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert!(effects.webhooks.is_empty());
        assert!(queued(&conn).is_empty());
    }

    #[test]
    fn events_go_to_their_subscribers_and_a_seat_type_reaching_zero_is_sold_out() {
        let conn = store();
        let subscribed = Subscribed::default();
        subscribed.set(subscriptions(&conn).unwrap_or_default());
        let (seat, booking, cancelled) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut effects = Effects::default();
        effects.remaining.insert(seat, 0);
        effects
            .webhooks
            .push((WebhookEvent::BookingConfirmed, booking));
        // Nobody subscribes to cancellations: not written.
        effects
            .webhooks
            .push((WebhookEvent::BookingCancelled, cancelled));
        let view = view_with_seat(seat, 1);
        flush(
            &conn,
            &subscribed,
            &view,
            &mut effects,
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            queued(&conn),
            vec![
                ("booking.confirmed".to_owned(), booking),
                ("concert.sold_out".to_owned(), seat)
            ]
        );
        // Already at 0 before the batch: not sold out again.
        let mut effects = Effects::default();
        effects.remaining.insert(seat, 0);
        flush(
            &conn,
            &subscribed,
            &view_with_seat(seat, 0),
            &mut effects,
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(queued(&conn).len(), 2);
        assert!(delivering(&conn).is_empty());
    }

    fn queue(conn: &Connection, events: &[Queued]) {
        enqueue(conn, events, OffsetDateTime::UNIX_EPOCH).unwrap_or_else(|error| panic!("{error}"));
    }

    fn fan(conn: &Connection, limit: u32) -> usize {
        all_or_nothing(conn, fan_out, limit).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn the_fan_out_writes_each_subscriber_its_delivery_once_in_order() {
        let conn = store();
        // A second endpoint for `booking.confirmed`, and one deleted: not delivered to.
        for deleted in [false, true] {
            let endpoint = NewEndpoint {
                id: Uuid::now_v7(),
                url: "http://127.0.0.1:9/other".into(),
                events: EventSet::from_bits(1),
                secret: format!("whsec_{}", "c".repeat(40)),
                created_at: OffsetDateTime::UNIX_EPOCH,
            };
            create(&conn, &endpoint).unwrap_or_else(|error| panic!("{error}"));
            if deleted {
                delete(&conn, endpoint.id, OffsetDateTime::UNIX_EPOCH)
                    .unwrap_or_else(|error| panic!("{error}"));
            }
        }
        let bookings: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let events: Vec<Queued> = (bookings.iter())
            .map(|id| (WebhookEvent::BookingConfirmed, *id))
            .collect();
        queue(&conn, &events[..3]);
        assert_eq!(fan(&conn, 2), 2);
        queue(&conn, &events[3..]);
        assert_eq!(fan(&conn, 10), 3);
        assert_eq!(fan(&conn, 10), 0);
        let delivered = delivering(&conn);
        assert_eq!(delivered.len(), 10, "two endpoints, five events");
        for booking in &bookings {
            let mut ids: Vec<Uuid> = conn
                .prepare("SELECT DISTINCT event_id FROM webhook_deliveries WHERE subject_id = ?1")
                .and_then(|mut statement| {
                    statement
                        .query_map([booking], |row| row.get(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(ids.len(), 1, "one event id for every endpoint");
            let event: Uuid = conn
                .query_row(
                    "SELECT event_id FROM webhook_events WHERE subject_id = ?1",
                    [booking],
                    |row| row.get(0),
                )
                .unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(ids.pop(), Some(event));
        }
    }

    #[test]
    fn an_endpoint_created_after_an_event_does_not_receive_it() {
        let conn = store();
        queue(&conn, &[(WebhookEvent::ConcertSoldOut, Uuid::now_v7())]);
        let later = NewEndpoint {
            id: Uuid::now_v7(),
            url: "http://127.0.0.1:9/later".into(),
            events: EventSet::from_bits(16),
            secret: format!("whsec_{}", "d".repeat(40)),
            created_at: OffsetDateTime::UNIX_EPOCH + time::Duration::SECOND,
        };
        create(&conn, &later).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(fan(&conn, 10), 1);
        let endpoints: Vec<Uuid> = conn
            .prepare("SELECT endpoint_id FROM webhook_deliveries")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()
            })
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(endpoints.len(), 1);
        assert_ne!(endpoints.first(), Some(&later.id));
    }

    #[test]
    fn events_stay_as_written_and_the_cursor_only_moves_forward() {
        let conn = store();
        queue(&conn, &[(WebhookEvent::BookingConfirmed, Uuid::now_v7())]);
        assert_eq!(fan(&conn, 10), 1);
        assert!(conn.execute("DELETE FROM webhook_events", []).is_err());
        assert!(
            conn.execute("UPDATE webhook_events SET created_at = 5", [])
                .is_err()
        );
        assert!(
            conn.execute("UPDATE webhook_fanout SET seq = 0", [])
                .is_err()
        );
        assert!(conn.execute("DELETE FROM webhook_fanout", []).is_err());
    }
}
