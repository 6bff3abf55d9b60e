//! The outbox worker: claim → look up → render → send → acknowledge, forever.
//!
//! Booking queues an email in the same transaction as the booking change; this loop leases due
//! messages in batches, and for each one:
//! - looks up the user's contact; a user who no longer exists has nobody to write to, so the
//!   message is acknowledged (dropped) with a warning;
//! - renders and sends it; success is acknowledged, so it is never sent again — in one
//!   acknowledgement per batch, made when the batch is done (or the worker is told to stop), so
//!   that an on-sale's backlog costs Booking one write per batch rather than one per email;
//! - on failure asks the outbox to try again later, after `base · 2^attempts` capped at
//!   `max_backoff`, plus up to 10 % jitter so that messages that failed together (a relay
//!   outage) do not all come back in the same instant;
//! - a message that can never be sent as it stands (an address lettre rejects) is acknowledged
//!   with an error rather than retried forever.
//!
//! If the worker dies between sending and acknowledging (or the acknowledgement is lost), the
//! lease runs out and the messages of that batch that were sent are sent again: delivery is at
//! least once, and the stable `Message-ID` makes a duplicate recognisable (and the mail
//! directory overwrites the same file).
//!
//! When nothing is due the worker sleeps for `poll_interval`, or until Booking pokes the
//! [`WorkerWaker`] after a commit, or until it is told to stop. On stop it finishes the message
//! it is sending, does not start another, and returns; messages of its last batch that it did
//! not start are claimed again once their lease runs out.
//!
//! Metrics: `emails_sent_total{kind}`, `email_failures_total{reason}` (`transport`,
//! `directory` or `undeliverable`) and the gauge `outbox_depth`, refreshed at most every
//! few seconds because counting the outbox is a query.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_shared::clients::{OutboxMessage, OutboxSource, UserDirectory};
use boxoffice_shared::clock::SharedClock;
use lettre::message::Mailbox;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::config::NotificationsConfig;
use crate::error::NotificationsError;
use crate::render::render;
use crate::transport::MailTransport;

/// How often at most the `outbox_depth` gauge is refreshed.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// The longest pause between claims while the outbox itself keeps failing.
const MAX_CLAIM_BACKOFF: Duration = Duration::from_secs(30);

/// A handle that wakes the worker at once, so an email goes out right after the booking that
/// queued it commits instead of up to `poll_interval` later. Cheap to clone; waking a worker
/// that is busy makes it look again as soon as it is done, so no wake-up is lost.
#[derive(Debug, Clone, Default)]
pub struct WorkerWaker(Arc<Notify>);

impl WorkerWaker {
    /// A waker not yet connected to a worker; hand clones to Booking and to [`run`].
    pub fn new() -> Self {
        Self::default()
    }

    /// There is new work in the outbox.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// The underlying notification, for a service that pokes it without depending on this crate.
    pub fn notify(&self) -> Arc<Notify> {
        Arc::clone(&self.0)
    }
}

/// Runs the worker until `stop` is cancelled.
///
/// `waker` is the handle Booking pokes after committing; pass `WorkerWaker::new()` when nobody
/// will. The transport is shut down (pooled SMTP connections closed) before returning.
pub async fn run(
    outbox: Arc<dyn OutboxSource>,
    users: Arc<dyn UserDirectory>,
    transport: MailTransport,
    config: NotificationsConfig,
    clock: SharedClock,
    waker: WorkerWaker,
    stop: CancellationToken,
) {
    tracing::info!(transport = %config.transport, "notifications worker started");
    let worker = Worker {
        outbox,
        users,
        transport,
        from: config.from.clone(),
        config,
        clock,
    };
    worker.run(&waker, &stop).await;
    worker.transport.shutdown().await;
    tracing::info!("notifications worker stopped");
}

/// The worker's collaborators, so the helpers need not take seven parameters.
struct Worker {
    /// Booking's outbox.
    outbox: Arc<dyn OutboxSource>,
    /// Auth's contact details.
    users: Arc<dyn UserDirectory>,
    /// Where emails go.
    transport: MailTransport,
    /// The `From:` of every email.
    from: Mailbox,
    /// Batch size, lease, intervals, backoff.
    config: NotificationsConfig,
    /// "Now" for `Date:` headers and retry times: the outbox compares them with its own clock.
    clock: SharedClock,
}

/// What became of one message, once delivery was tried.
enum Settled {
    /// Done with: acknowledge it.
    Done,
    /// Scheduled for another attempt (or left to its lease): not acknowledged.
    Later,
}

/// What became of one message.
enum Outcome {
    /// The transport accepted it.
    Sent,
    /// Its user no longer exists.
    NoRecipient,
}

impl Worker {
    async fn run(&self, waker: &WorkerWaker, stop: &CancellationToken) {
        let mut depth_refreshed: Option<Instant> = None;
        let mut claim_failures: u32 = 0;
        while !stop.is_cancelled() {
            if depth_refreshed.is_none_or(|at| at.elapsed() >= DEPTH_EVERY) {
                depth_refreshed = Some(Instant::now());
                self.refresh_depth().await;
            }

            let batch = match self
                .outbox
                .claim(self.config.batch.max(1), self.config.lease)
                .await
            {
                Ok(batch) => {
                    claim_failures = 0;
                    batch
                }
                Err(error) => {
                    tracing::warn!(error = %error, "could not claim outbox messages");
                    let pause =
                        backoff(claim_failures, self.config.poll_interval, MAX_CLAIM_BACKOFF);
                    claim_failures = claim_failures.saturating_add(1);
                    // Not woken early: poking a failing outbox harder does not help.
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            };

            if batch.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = waker.0.notified() => {}
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                }
                continue;
            }

            let mut done = Vec::with_capacity(batch.len());
            for message in batch {
                // Checked between messages only: the one being sent is always finished.
                if stop.is_cancelled() {
                    break;
                }
                let span = tracing::info_span!(
                    "email",
                    message_id = %message.message_id,
                    booking_id = %message.booking.booking_id,
                    kind = message.kind.as_str(),
                    attempt = message.attempts + 1,
                );
                if let Settled::Done = self.handle(&message).instrument(span).await {
                    done.push(message.message_id);
                }
            }
            self.acknowledge(&done).await;
        }
    }

    async fn refresh_depth(&self) {
        match self.outbox.depth().await {
            // Precision loss above 2^53 messages is not a concern for a gauge.
            Ok(depth) => metrics::gauge!("outbox_depth").set(depth as f64),
            Err(error) => tracing::debug!(error = %error, "could not read the outbox depth"),
        }
    }

    async fn handle(&self, message: &OutboxMessage) -> Settled {
        match self.deliver(message).await {
            Ok(Outcome::Sent) => {
                metrics::counter!("emails_sent_total", "kind" => message.kind.as_str())
                    .increment(1);
                tracing::debug!("email sent");
                Settled::Done
            }
            Ok(Outcome::NoRecipient) => {
                tracing::warn!(user_id = %message.booking.user_id, "user no longer exists; nobody to send to, dropping the email");
                Settled::Done
            }
            Err(error) if error.is_undeliverable() => {
                metrics::counter!("email_failures_total", "reason" => error.reason()).increment(1);
                tracing::error!(error = %error, "email can never be sent as it stands; dropping it");
                Settled::Done
            }
            Err(error) => {
                metrics::counter!("email_failures_total", "reason" => error.reason()).increment(1);
                let delay = jitter(
                    backoff(
                        message.attempts,
                        self.config.base_backoff,
                        self.config.max_backoff,
                    ),
                    self.config.max_backoff,
                );
                // Saturating: an absurd `max_backoff` in the configuration must not panic the worker.
                let retry_at = self
                    .clock
                    .now()
                    .saturating_add(time::Duration::try_from(delay).unwrap_or(time::Duration::MAX));
                tracing::warn!(error = %error, retry_in = ?delay, "email not sent; will retry");
                if let Err(outbox_error) = self
                    .outbox
                    .retry_later(message.message_id, retry_at, &error.to_string())
                    .await
                {
                    // The lease runs out and the message is claimed again: only the backoff is lost.
                    tracing::warn!(error = %outbox_error, "could not schedule the retry");
                }
                Settled::Later
            }
        }
    }

    async fn deliver(&self, message: &OutboxMessage) -> Result<Outcome, NotificationsError> {
        let Some(contact) = self.users.contact(message.booking.user_id).await? else {
            return Ok(Outcome::NoRecipient);
        };
        let shop = self.config.shop_url.as_deref();
        let email = render(message, &contact, &self.from, shop, self.clock.now())?;
        self.transport.send(&email, message.message_id).await?;
        Ok(Outcome::Sent)
    }

    /// Acknowledges what a batch settled, in one call.
    async fn acknowledge(&self, message_ids: &[Uuid]) {
        if message_ids.is_empty() {
            return;
        }
        if let Err(error) = self.outbox.acknowledge(message_ids).await {
            // The leases run out and the emails are sent again, under the same Message-IDs.
            tracing::warn!(error = %error, count = message_ids.len(), "could not acknowledge the emails; they will be sent again");
        }
    }
}

/// `base · 2^attempts`, capped at `max`, without jitter.
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    base.saturating_mul(2_u32.saturating_pow(attempts)).min(max)
}

/// Adds up to 10 % to `delay`, never going past `max`.
fn jitter(delay: Duration, max: Duration) -> Duration {
    let extra = delay.mul_f64(rand::random_range(0.0..0.1));
    delay.saturating_add(extra).min(max.max(delay))
}

#[cfg(test)]
mod tests;
