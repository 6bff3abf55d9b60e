//! Webhooks on [`BookingService`]: the endpoints admins manage, and the delivery worker.
//!
//! The worker runs wherever Booking runs, off the writer. It first fans out the events queued
//! since it last looked — writes their deliveries, one per subscribed endpoint, a batch of events
//! per job (on PostgreSQL one instance at a time) — then claims due deliveries (leased; on
//! PostgreSQL with `SKIP LOCKED`, so the workers of several instances share them), reads what
//! each event says, and hands each to a task of its own, at most [`Settings::concurrency`] at
//! once, each bounded by [`Settings::timeout`]. Outcomes are recorded in batches as they come
//! back. A receiver that is slow or hangs holds one of those tasks until its timeout — never the
//! writer, never a booking. It does nothing while no endpoint subscribes to anything, and while
//! the writer has a queue (an on-sale) it lets bookings go first: it fans out only
//! [`FAN_OUT_BUSY`] events a poll, and claims nothing for up to a second at a time. Events
//! queued while no worker runs (stopped, crashed) wait in the store for the next one.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{BookingService, Inner};
use crate::error::BookingError;
use crate::webhook::deliver::{Deliverer, body};
use crate::webhook::guard::check_url;
use crate::webhook::{
    Attempted, Claimed, Delivery, Endpoint, EventSet, NewEndpoint, Outcome, Settings, new_secret,
};

/// How often the worker looks for due deliveries while it has nothing to do, and how long
/// outcomes wait at most to be recorded.
const POLL: Duration = Duration::from_millis(200);

/// How many outcomes are recorded at once at most.
const RECORD_BATCH: usize = 64;

/// Events fanned out per job while the writer has no queue.
const FAN_OUT_BATCH: u32 = 512;

/// Events fanned out per poll while the writer has a queue: the on-sale keeps the writer, and
/// the fan-out still moves.
const FAN_OUT_BUSY: u32 = 32;

/// A writer queue longer than this is an on-sale in progress: deliveries wait for it...
const BUSY_BACKLOG: usize = 8;

/// ...for at most this many half-polls in a row (one second), so that they go on, if slower,
/// under a load that never ends.
const MAX_DEFERRED: u32 = 10;

/// How this process delivers webhooks: the settings and the deliveries' HTTP client.
#[derive(Debug, Clone)]
pub struct Webhooks {
    settings: Settings,
    deliverer: Deliverer,
}

/// A new endpoint as its creation answers it: with its secret, shown only then.
#[derive(Debug, Clone)]
pub struct Created {
    pub endpoint: Endpoint,
    pub secret: String,
}

impl BookingService {
    /// Starts delivering webhooks from this process with `settings`, on `tasks`; `owner` names
    /// this instance's leases and must stay the same across its restarts (a restart releases
    /// what its previous run had claimed). Without it, events are queued but not delivered here.
    pub fn deliver_webhooks(
        &self,
        settings: Settings,
        owner: Uuid,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<(), BookingError> {
        let webhooks = Webhooks {
            deliverer: Deliverer::new(settings.clone())?,
            settings,
        };
        if self.inner.webhooks.set(webhooks).is_ok() {
            tasks.spawn(run_webhooks(
                Arc::downgrade(&self.inner),
                owner,
                self.inner.stop.clone(),
            ));
        }
        Ok(())
    }

    /// Whether endpoints on private addresses are allowed ([`Settings::allow_private`]).
    fn allow_private(&self) -> bool {
        self.inner
            .webhooks
            .get()
            .is_some_and(|webhooks| webhooks.settings.allow_private)
    }

    /// Registers an endpoint for `events` (none is refused); a URL the forgery guard refuses is
    /// a validation error of `url`.
    pub async fn create_webhook(
        &self,
        url: &str,
        events: EventSet,
    ) -> Result<Created, BookingError> {
        let url = check_url(url, self.allow_private())
            .await
            .map_err(|message| BookingError::invalid("url", message))?;
        if events.is_empty() {
            return Err(BookingError::invalid(
                "events",
                "name at least one event type",
            ));
        }
        let endpoint = NewEndpoint {
            id: Uuid::now_v7(),
            url: url.to_string(),
            events,
            secret: new_secret()?,
            created_at: boxoffice_shared::clock::from_millis(boxoffice_shared::clock::to_millis(
                self.inner.clock.now(),
            )),
        };
        self.inner
            .store
            .create_webhook(endpoint.clone(), &self.inner.subscribed)
            .await?;
        Ok(Created {
            endpoint: Endpoint {
                id: endpoint.id,
                url: endpoint.url,
                events: endpoint.events.events(),
                created_at: endpoint.created_at,
                disabled_at: None,
            },
            secret: endpoint.secret,
        })
    }

    pub async fn webhooks(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Endpoint>, BookingError> {
        self.inner.store.webhook_endpoints(before, limit).await
    }

    pub async fn webhook(&self, id: Uuid) -> Result<Endpoint, BookingError> {
        self.inner
            .store
            .webhook_endpoint(id)
            .await?
            .ok_or(BookingError::WebhookNotFound)
    }

    /// Deletes an endpoint: no delivery is attempted for it afterwards.
    pub async fn delete_webhook(&self, id: Uuid) -> Result<(), BookingError> {
        let subscribed = &self.inner.subscribed;
        match self.inner.store.delete_webhook(id, subscribed).await? {
            true => Ok(()),
            false => Err(BookingError::WebhookNotFound),
        }
    }

    pub async fn webhook_deliveries(
        &self,
        id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Delivery>, BookingError> {
        self.webhook(id).await?;
        self.inner.store.webhook_deliveries(id, before, limit).await
    }
}

/// Delivers due webhooks until `stop` or until the service is gone; `owner` names this
/// instance's leases (stable across restarts, so a restart releases the ones it left).
pub(super) async fn run_webhooks(inner: Weak<Inner>, owner: Uuid, stop: CancellationToken) {
    let Some(service) = inner.upgrade() else {
        return;
    };
    let (Some(webhooks), subscribed) =
        (service.webhooks.get().cloned(), service.subscribed.clone())
    else {
        return;
    };
    match service.store.release_webhook_leases(owner).await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "released webhook leases of the previous run"),
        Err(error) => tracing::warn!(%error, "cannot release webhook leases"),
    }
    drop(service);
    let concurrency = webhooks.settings.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let (done, mut outcomes) = mpsc::unbounded_channel::<Attempted>();
    let mut finished: Vec<Attempted> = Vec::new();
    let mut recorded = Instant::now();
    let mut deferred = 0;
    loop {
        while let Ok(attempted) = outcomes.try_recv() {
            finished.push(attempted);
        }
        let Some(service) = inner.upgrade() else {
            return;
        };
        let free = permits.available_permits();
        // Outcomes are recorded a batch at a time: one writer job for many deliveries.
        let idle = free == concurrency;
        if !finished.is_empty()
            && (idle || finished.len() >= RECORD_BATCH || recorded.elapsed() >= POLL)
        {
            record(&service, std::mem::take(&mut finished)).await;
            recorded = Instant::now();
        }
        let mut claimed = 0;
        let subscribing = !subscribed.get().is_empty();
        let busy = service.store.writer_backlog() > BUSY_BACKLOG;
        let fanned = if subscribing {
            fan_out(&service, busy).await
        } else {
            0
        };
        // Claims wait for half the slots to be free, so that each claim is a batch.
        if free * 2 >= concurrency && subscribing {
            // Bookings first: while the writer has a queue, deliveries wait (a moment, never
            // more than `MAX_DEFERRED` polls in a row).
            if busy && deferred < MAX_DEFERRED {
                deferred += 1;
            } else {
                deferred = 0;
                let lease = webhooks.settings.lease();
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match service.store.claim_webhooks(owner, limit, lease).await {
                    Ok(due) => {
                        claimed = due.len();
                        dispatch(&service, &webhooks, due, &permits, &done).await;
                    }
                    Err(error) => tracing::warn!(%error, "cannot claim webhook deliveries"),
                }
            }
        }
        drop(service);
        // A full batch either way: there is likely more, now.
        if (claimed > 0 && claimed == free) || fanned == FAN_OUT_BATCH as usize {
            continue;
        }
        let pause = if deferred > 0 { POLL / 2 } else { POLL };
        tokio::select! {
            () = stop.cancelled() => return,
            Some(attempted) = outcomes.recv() => finished.push(attempted),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Fans out a batch of queued events: [`FAN_OUT_BUSY`] of them while the writer is `busy`,
/// [`FAN_OUT_BATCH`] otherwise. Answers how many; an error is logged, and the events wait for the
/// next poll.
async fn fan_out(inner: &Inner, busy: bool) -> usize {
    let limit = if busy { FAN_OUT_BUSY } else { FAN_OUT_BATCH };
    match inner.store.fan_out_webhooks(limit).await {
        Ok(fanned) => fanned,
        Err(error) => {
            tracing::warn!(%error, "cannot fan out webhook events");
            0
        }
    }
}

/// Reads what each claimed event says (once per event) and starts its delivery.
async fn dispatch(
    inner: &Inner,
    webhooks: &Webhooks,
    claimed: Vec<Claimed>,
    permits: &Arc<Semaphore>,
    done: &mpsc::UnboundedSender<Attempted>,
) {
    let mut bodies: HashMap<Uuid, String> = HashMap::new();
    for delivery in claimed {
        let made = match bodies.get(&delivery.event_id) {
            Some(made) => Ok(made.clone()),
            None => event_body(inner, &delivery).await,
        };
        let made = match made {
            Ok(made) => made,
            Err(error) => {
                tracing::warn!(%error, event = %delivery.event_id, "cannot read a webhook's data");
                let retry_at = webhooks
                    .settings
                    .retry_at(delivery.attempts, inner.clock.now());
                let _ = done.send(Attempted {
                    endpoint_id: delivery.endpoint_id,
                    event_id: delivery.event_id,
                    outcome: Outcome::Failed {
                        status: None,
                        error: error.to_string(),
                        retry_at,
                    },
                });
                continue;
            }
        };
        bodies.insert(delivery.event_id, made.clone());
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (deliverer, done) = (webhooks.deliverer.clone(), done.clone());
        tokio::spawn(async move {
            let outcome = deliverer.attempt(&delivery, made).await;
            let label = match &outcome {
                Outcome::Delivered(_) => "delivered",
                Outcome::Gone => "gone",
                Outcome::Failed { .. } => "failed",
            };
            metrics::counter!("webhook_deliveries_total", "outcome" => label).increment(1);
            let _ = done.send(Attempted {
                endpoint_id: delivery.endpoint_id,
                event_id: delivery.event_id,
                outcome,
            });
            drop(permit);
        });
    }
}

/// The body of a claimed event: its data as the store has it now.
async fn event_body(inner: &Inner, delivery: &Claimed) -> Result<String, BookingError> {
    let data = inner
        .store
        .webhook_data(delivery.event, delivery.subject_id)
        .await?
        // The subject is never deleted; should it be missing, the receiver still learns its id.
        .unwrap_or_else(|| serde_json::json!({ "id": delivery.subject_id }));
    body(delivery.event, delivery.created_at, &data)
}

/// Records outcomes; one that cannot be recorded is attempted again once its lease ends
/// (deliveries are at least once).
async fn record(inner: &Inner, finished: Vec<Attempted>) {
    let count = finished.len();
    if let Err(error) = inner
        .store
        .record_webhooks(finished, &inner.subscribed)
        .await
    {
        tracing::error!(%error, count, "cannot record webhook deliveries");
    }
}
