//! Payment providers: who takes a hold's money and gives it back.
//!
//! The booking rules never call a provider inside a database transaction or on a writer's
//! thread: the service charges first, then hands the writer what was charged ([`crate::hold::Paid`]);
//! refunds are queued in the transaction that decides them and handed to the provider afterwards.
//! A charge carries the hold's id as its idempotency key, so however often a hold is paid — two
//! tabs, a retry — the provider charges it once and names the charge the same way each time.

pub mod stripe;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::command::Refund;
use crate::error::BookingError;
use crate::hold::{Intent, Provider};

/// The payment a new hold asks for, before the hold exists.
#[derive(Debug, Clone)]
pub struct Order {
    /// The hold to be paid for: the payment's idempotency key and metadata.
    pub hold_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
}

/// One charge to make.
#[derive(Debug, Clone)]
pub struct Charge {
    /// The hold paid for: the charge's idempotency key.
    pub hold_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    /// What the client pays with (for Stripe and the simulated provider, a PaymentMethod id).
    pub method: String,
    /// What the provider prepared with the hold ([`PaymentProvider::prepare`]), if anything.
    pub intent: Option<String>,
}

/// What a provider's event says about a hold's payment ([`PaymentProvider::verify_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    /// The payment `reference` for the hold succeeded.
    Succeeded {
        id: String,
        hold_id: Uuid,
        reference: String,
    },
    /// An attempt to pay the hold failed.
    Failed { id: String, hold_id: Uuid },
    /// Anything else: acknowledged and left alone.
    Ignored { id: String, kind: String },
}

/// Why a provider's event was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The signature is missing, forged, or too old.
    #[error("invalid signature: {0}")]
    Signature(&'static str),
    /// Signed, but not an event this provider sends.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// This deployment's provider takes no events.
    #[error("this deployment takes no events from this provider")]
    NotTaken,
}

/// Why a provider did not take or give back the money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The payment method was refused (the reason, as the provider names it).
    #[error("declined: {0}")]
    Declined(String),
    /// The client named a payment method the provider does not know.
    #[error("unknown payment method")]
    UnknownMethod,
    /// The provider could not be reached or failed; safe to try again.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
}

/// A payment provider.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Which provider this is, as holds and bookings record it.
    fn kind(&self) -> Provider;

    /// Prepares the payment of a hold about to be made, for the client to confirm (Stripe: a
    /// PaymentIntent keyed by the hold). `None` when the provider needs nothing up front.
    async fn prepare(&self, _order: &Order) -> Result<Option<Intent>, PaymentError> {
        Ok(None)
    }

    /// Lets go of what [`Self::prepare`] made for a hold that was then refused. Best effort:
    /// an abandoned intent nobody confirms takes no money.
    async fn abandon(&self, _intent: &Intent) {}

    /// Charges once per hold; returns the provider's name for the charge, the same for every
    /// call with the same hold.
    async fn charge(&self, charge: &Charge) -> Result<String, PaymentError>;

    /// Gives a refund (`amount_cents` of the charge `payment_ref`); safe to call again with the
    /// same one, whose id is its idempotency key.
    async fn refund(&self, refund: &Refund) -> Result<(), PaymentError>;

    /// Checks an event the provider delivered (its signature against `now`) and says what it
    /// means for a hold.
    fn verify_event(
        &self,
        _signature: Option<&str>,
        _payload: &[u8],
        _now: OffsetDateTime,
    ) -> Result<ProviderEvent, EventError> {
        Err(EventError::NotTaken)
    }
}

impl From<PaymentError> for BookingError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::Declined(reason) => BookingError::PaymentDeclined(reason),
            PaymentError::UnknownMethod => BookingError::invalid(
                "payment_method",
                "is not a payment method this deployment takes (with the simulated provider: \
                 Stripe's test names, such as pm_card_visa)",
            ),
            PaymentError::Unavailable(why) => BookingError::PaymentUnavailable(why),
        }
    }
}

/// How checkout works in a deployment.
#[derive(Clone)]
pub struct Checkout {
    /// How long a hold lasts (`--hold-ttl`).
    pub hold_ttl: Duration,
    /// How long a waiting-list offer keeps its seat (`--offer-ttl`).
    pub offer_ttl: Duration,
    pub payments: Arc<dyn PaymentProvider>,
}

/// The hold time when none is configured: ten minutes.
pub const DEFAULT_HOLD_TTL: Duration = Duration::from_secs(600);

/// The offer time when none is configured: half an hour.
pub const DEFAULT_OFFER_TTL: Duration = Duration::from_secs(1800);

impl Default for Checkout {
    fn default() -> Self {
        Self {
            hold_ttl: DEFAULT_HOLD_TTL,
            offer_ttl: DEFAULT_OFFER_TTL,
            payments: Arc::new(Simulated),
        }
    }
}

/// The simulated provider: Stripe's test payment-method names decide the outcome, and nothing
/// leaves the process. A charge is named after its hold (`sim_ch_<hold id>`), so paying a hold
/// twice names one charge.
#[derive(Debug, Clone, Copy, Default)]
pub struct Simulated;

/// The test payment methods the simulated provider knows, and what each does: `None` succeeds,
/// `Some(reason)` is declined with Stripe's decline code.
pub const SIMULATED_METHODS: &[(&str, Option<&str>)] = &[
    ("pm_card_visa", None),
    ("pm_card_mastercard", None),
    ("pm_card_amex", None),
    ("pm_card_visa_debit", None),
    ("pm_card_visa_chargeDeclined", Some("generic_decline")),
    ("pm_card_chargeDeclined", Some("generic_decline")),
    ("pm_card_chargeCustomerFail", Some("generic_decline")),
    (
        "pm_card_chargeDeclinedInsufficientFunds",
        Some("insufficient_funds"),
    ),
    ("pm_card_chargeDeclinedExpiredCard", Some("expired_card")),
    ("pm_card_chargeDeclinedFraudulent", Some("fraudulent")),
];

/// The simulated provider's name for the charge of `paid_for` (a hold, or a booking paid in one
/// step).
pub fn simulated_charge(paid_for: Uuid) -> String {
    format!("sim_ch_{}", paid_for.simple())
}

#[async_trait]
impl PaymentProvider for Simulated {
    fn kind(&self) -> Provider {
        Provider::Simulated
    }

    async fn charge(&self, charge: &Charge) -> Result<String, PaymentError> {
        match SIMULATED_METHODS
            .iter()
            .find(|(name, _)| *name == charge.method)
        {
            Some((_, None)) => Ok(simulated_charge(charge.hold_id)),
            Some((_, Some(reason))) => Err(PaymentError::Declined((*reason).to_owned())),
            None => Err(PaymentError::UnknownMethod),
        }
    }

    async fn refund(&self, refund: &Refund) -> Result<(), PaymentError> {
        if refund.payment_ref.starts_with("sim_ch_") {
            Ok(())
        } else {
            Err(PaymentError::Declined(format!(
                "{} is not a simulated charge",
                refund.payment_ref
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(method: &str) -> Charge {
        Charge {
            hold_id: Uuid::now_v7(),
            amount_cents: 2500,
            currency: "EUR".into(),
            method: method.into(),
            intent: None,
        }
    }

    #[tokio::test]
    async fn stripe_test_names_decide_the_simulated_outcome() {
        let visa = charge("pm_card_visa");
        let reference = Simulated.charge(&visa).await.unwrap();
        assert_eq!(Simulated.charge(&visa).await.unwrap(), reference);
        assert_eq!(
            Simulated
                .charge(&charge("pm_card_visa_chargeDeclined"))
                .await,
            Err(PaymentError::Declined("generic_decline".into()))
        );
        assert_eq!(
            Simulated.charge(&charge("pm_nope")).await,
            Err(PaymentError::UnknownMethod)
        );
        let refund = Refund {
            id: Uuid::now_v7(),
            payment_ref: reference,
            amount_cents: 2500,
            attempts: 1,
        };
        assert!(Simulated.refund(&refund).await.is_ok());
    }
}
