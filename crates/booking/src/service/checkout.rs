//! Checkout on [`BookingService`]: holds, their payment through the deployment's provider, the
//! provider's events, and the refund worker.
//!
//! Provider calls happen here, in the request's task or the refund worker — never inside a
//! database transaction or on a writer's thread: the provider is asked first, then the writer is
//! handed what the provider said.

use std::sync::{Arc, Weak};
use std::time::Duration;

use boxoffice_shared::token::AuthUser;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{BookingService, Inner};
use crate::command::{Command, HoldOutcome, Made};
use crate::domain::IdempotencyKey;
use crate::error::BookingError;
use crate::hold::{Failed, Hold, HoldRequest, HoldStatus, Intent, Paid, hold_fingerprint};
use crate::payments::{Charge, EventError, Order, PaymentError, ProviderEvent};

impl BookingService {
    /// Holds a seat for the deployment's hold time. Refused like a booking (unknown, closed, not
    /// open yet, sold out) from the view when it can; the rest is decided by the writer. A
    /// provider that prepares payments (Stripe) is asked first, keyed by the new hold's id; what
    /// it prepared for a hold that is then refused is let go.
    pub async fn hold(
        &self,
        caller: AuthUser,
        concert_id: Uuid,
        seat_type_id: Uuid,
        key: Option<IdempotencyKey>,
    ) -> Result<HoldOutcome, BookingError> {
        self.hold_admitted(caller, concert_id, seat_type_id, key, None)
            .await
    }

    /// [`BookingService::hold`] with the caller's admission to the concert's waiting room (the
    /// `Boxoffice-Admission` header), which a concert with a waiting room needs.
    pub async fn hold_admitted(
        &self,
        caller: AuthUser,
        concert_id: Uuid,
        seat_type_id: Uuid,
        key: Option<IdempotencyKey>,
        admission: Option<&str>,
    ) -> Result<HoldOutcome, BookingError> {
        if let Some(key) = &key {
            let fingerprint = hold_fingerprint(concert_id, seat_type_id);
            if let Some(made) = Box::pin(self.replayed(caller.user_id, key, fingerprint)).await? {
                return Ok(made);
            }
        }
        let admitted = self.check_admission(&caller, concert_id, admission)?;
        self.precheck(concert_id, seat_type_id)?;
        if let Some(admitted) = &admitted {
            self.refuse_used(admitted).await?;
        }
        let checkout = &self.inner.checkout;
        let id = Uuid::now_v7();
        let intent = self.prepare_payment(id, concert_id, seat_type_id).await?;
        let request = HoldRequest {
            id,
            user_id: caller.user_id,
            concert_id,
            seat_type_id,
            key,
            ttl: time::Duration::try_from(checkout.hold_ttl)
                .map_err(|error| BookingError::Corrupt(error.to_string()))?,
            provider: checkout.payments.kind(),
            intent: intent.clone(),
        };
        let outcome = self.send(|reply| Command::Hold(request, reply)).await;
        let made = matches!(&outcome, Ok(Made::Created(hold)) if hold.id == id);
        if made {
            metrics::counter!("holds_total", "outcome" => "created").increment(1);
        } else if let Some(intent) = intent {
            let payments = checkout.payments.clone();
            tokio::spawn(async move { payments.abandon(&intent).await });
        }
        outcome
    }

    /// What the provider prepares for a new hold of a priced seat, before the hold exists.
    async fn prepare_payment(
        &self,
        hold_id: Uuid,
        concert_id: Uuid,
        seat_type_id: Uuid,
    ) -> Result<Option<Intent>, BookingError> {
        let payments = &self.inner.checkout.payments;
        if payments.kind().charges_in_one_step() {
            return Ok(None);
        }
        let price = self
            .inner
            .view
            .read()
            .seat_of(concert_id, seat_type_id)
            .map(|seat| (seat.price_cents, seat.currency.clone()));
        let (amount_cents, currency) = price.map_err(|_| {
            // Only a view that lags the store (another instance just added the concert) gets
            // here: the price to ask for is not known yet.
            BookingError::PaymentUnavailable("this concert's prices are not loaded yet".into())
        })?;
        if amount_cents == 0 {
            return Ok(None);
        }
        let order = Order {
            hold_id,
            amount_cents,
            currency,
        };
        Ok(payments.prepare(&order).await?)
    }

    /// Expires every hold whose `expires_at` has passed (the sales timer asks the same when the
    /// next one falls due); their seats return, to the waiting lists first. Answers how many.
    pub async fn expire_holds(&self) -> Result<usize, BookingError> {
        self.send(Command::ExpireHolds).await
    }

    /// One hold as it stands now, if the caller may see it (its holder, or an admin).
    pub async fn get_hold(&self, caller: AuthUser, hold_id: Uuid) -> Result<Hold, BookingError> {
        let hold = self.inner.store.hold_by_id(hold_id).await?;
        hold.filter(|hold| caller.is_admin() || hold.user_id == caller.user_id)
            .map(|hold| hold.as_of(self.inner.clock.now()))
            .ok_or(BookingError::HoldNotFound)
    }

    /// The caller's holds as they stand now, newest first.
    pub async fn list_holds(
        &self,
        caller: AuthUser,
        status: Option<HoldStatus>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Hold>, BookingError> {
        let now = self.inner.clock.now();
        self.inner
            .store
            .list_holds(caller.user_id, status, before, limit, now)
            .await
    }

    /// Lets the caller's hold go; its seat returns at once.
    pub async fn release(&self, caller: AuthUser, hold_id: Uuid) -> Result<Hold, BookingError> {
        self.send(|reply| Command::Release(hold_id, caller.user_id, reply))
            .await
    }

    /// Pays the caller's hold: the provider charges (once per hold, however often this is
    /// called), then the writer makes the hold a confirmed booking. Paying a completed hold again
    /// answers it as it is and charges nothing. A declined attempt marks the hold's payment
    /// `failed`; the hold stays active, to be paid with another method.
    pub async fn pay(
        &self,
        caller: AuthUser,
        hold_id: Uuid,
        method: Option<String>,
    ) -> Result<Hold, BookingError> {
        let hold = self
            .inner
            .store
            .hold_by_id(hold_id)
            .await?
            .filter(|hold| hold.user_id == caller.user_id)
            .ok_or(BookingError::HoldNotFound)?
            .as_of(self.inner.clock.now());
        match hold.status {
            HoldStatus::Completed => return Ok(hold),
            HoldStatus::Released => return Err(BookingError::HoldNotActive),
            HoldStatus::Expired => return Err(BookingError::HoldExpired),
            HoldStatus::Active => {}
        }
        let reference = if hold.price_cents == 0 {
            None
        } else {
            let method = method.ok_or_else(|| {
                BookingError::invalid(
                    "payment_method",
                    "a seat with a price needs a payment method",
                )
            })?;
            // A waiting-list offer is made inside the writer's transaction, where no provider
            // is asked: its payment is prepared now (keyed by the hold, so once).
            let intent = match &hold.payment.reference {
                Some(reference) => Some(reference.clone()),
                None => self
                    .prepare_payment(hold_id, hold.concert_id, hold.seat_type_id)
                    .await?
                    .map(|intent| intent.reference),
            };
            let charge = Charge {
                hold_id,
                amount_cents: hold.price_cents,
                currency: hold.currency.clone(),
                method,
                intent,
            };
            match self.inner.checkout.payments.charge(&charge).await {
                Ok(reference) => Some(reference),
                Err(PaymentError::Declined(reason)) => {
                    let failed = Failed {
                        hold_id,
                        user_id: Some(caller.user_id),
                        event: None,
                    };
                    self.send(|reply| Command::PaymentFailed(failed, reply))
                        .await?;
                    return Err(BookingError::PaymentDeclined(reason));
                }
                Err(other) => return Err(other.into()),
            }
        };
        self.record_payment(Paid {
            hold_id,
            user_id: Some(caller.user_id),
            reference,
            event: None,
        })
        .await
    }

    /// Records a payment the provider took for a hold, whenever it arrives: the hold becomes a
    /// confirmed booking — after its expiry too, if a seat of its type is free — or, when it
    /// cannot (released, no seat left, the sale closed, the user booked otherwise), the payment
    /// is queued for a refund in the same transaction and the refusal is the answer.
    pub async fn record_payment(&self, paid: Paid) -> Result<Hold, BookingError> {
        let completed = self
            .send(|reply| Command::Pay(paid, reply))
            .await
            // A refusal may have queued the payment's refund.
            .inspect_err(|_| self.inner.refund_waker.notify_one())?;
        metrics::counter!("holds_total", "outcome" => "completed").increment(1);
        Ok(completed)
    }

    /// Checks an event the payment provider delivered to its webhook: signed by the provider,
    /// recently, and about something this deployment reads.
    pub fn verify_payment_event(
        &self,
        signature: Option<&str>,
        payload: &[u8],
    ) -> Result<ProviderEvent, EventError> {
        self.inner
            .checkout
            .payments
            .verify_event(signature, payload, self.inner.clock.now())
    }

    /// Applies a verified provider event, at most once per event id: a payment that succeeded
    /// is recorded ([`Self::record_payment`]: a booking, or a refund), a failed attempt marks
    /// the hold's payment `failed`. `Ok` once the event is settled for good — an event about a
    /// hold this deployment does not have, or one that is refused, included — so that the
    /// provider stops delivering it; an error only when it should be delivered again.
    pub async fn apply_payment_event(&self, event: ProviderEvent) -> Result<(), BookingError> {
        let applied = match event {
            ProviderEvent::Succeeded {
                id,
                hold_id,
                reference,
            } => self
                .record_payment(Paid {
                    hold_id,
                    user_id: None,
                    reference: Some(reference),
                    event: Some(id),
                })
                .await
                .map(drop),
            ProviderEvent::Failed { id, hold_id } => {
                let failed = Failed {
                    hold_id,
                    user_id: None,
                    event: Some(id),
                };
                self.send(|reply| Command::PaymentFailed(failed, reply))
                    .await
                    .map(drop)
            }
            ProviderEvent::Ignored { id, kind } => {
                tracing::debug!(event = %id, kind, "payment event not read");
                Ok(())
            }
        };
        match applied {
            Err(error) if !settles_event(&error) => Err(error),
            _ => Ok(()),
        }
    }
}

/// Whether an answer to a provider's event settles it for good (the provider need not deliver
/// it again): everything but a store or a provider that could not be reached.
fn settles_event(error: &BookingError) -> bool {
    !matches!(
        error,
        BookingError::WriterStopped
            | BookingError::Store(_)
            | BookingError::Writer(_)
            | BookingError::Corrupt(_)
            | BookingError::PaymentUnavailable(_)
    )
}

/// How many refunds the worker claims at once.
const REFUND_BATCH: u32 = 32;

/// How long the refund worker waits for a poke before it looks at the queue anyway (refunds
/// queued by another instance, retries falling due).
const REFUND_POLL: Duration = Duration::from_secs(5);

/// Hands queued refunds to the payment provider until it confirms each: a batch at a time,
/// leased for a minute (a refund whose worker died is claimed again after it), off the writer
/// and outside any transaction, and retried after a pause that doubles with every attempt (at
/// most an hour). Stops with `stop` or once the service is gone.
pub(super) async fn run_refunds(inner: Weak<Inner>, waker: Arc<Notify>, stop: CancellationToken) {
    loop {
        let Some(service) = inner.upgrade() else {
            return;
        };
        let handled = hand_over_refunds(&service).await;
        drop(service);
        if handled == REFUND_BATCH as usize {
            continue;
        }
        tokio::select! {
            () = waker.notified() => {}
            () = tokio::time::sleep(REFUND_POLL) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One batch of the refund worker; returns how many refunds it claimed.
async fn hand_over_refunds(inner: &Inner) -> usize {
    let claimed = match inner
        .store
        .claim_refunds(REFUND_BATCH, Duration::from_secs(60))
        .await
    {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(%error, "cannot claim refunds");
            return 0;
        }
    };
    for refund in &claimed {
        let given = inner.checkout.payments.refund(refund).await;
        let recorded = match &given {
            Ok(()) => inner.store.refunded(refund.id).await,
            Err(error) => {
                let pause = 2u64.saturating_pow(refund.attempts.min(12)).min(3600);
                let retry_at = inner.clock.now() + time::Duration::seconds(pause as i64);
                tracing::warn!(refund = %refund.id, %error, pause, "refund not taken; retrying");
                inner
                    .store
                    .retry_refund(refund.id, retry_at, error.to_string())
                    .await
            }
        };
        if let Err(error) = recorded {
            tracing::error!(refund = %refund.id, %error, "cannot record a refund's outcome");
        }
        let outcome = if given.is_ok() { "refunded" } else { "retry" };
        metrics::counter!("refunds_total", "outcome" => outcome).increment(1);
    }
    claimed.len()
}
