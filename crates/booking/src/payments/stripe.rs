//! Stripe as the payment provider (`--payments stripe`), through its HTTP API: a PaymentIntent
//! per hold, created with the hold's id as idempotency key and metadata, whose `client_secret`
//! the client confirms with Stripe; events delivered to the webhook route, verified by the
//! `Stripe-Signature` scheme; refunds keyed by the refund's own id.
//!
//! The API address is configurable (`--stripe-api-url`) so that tests run against a local
//! Stripe-compatible server (localstripe); nothing here assumes which one it talks to.

use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Charge, EventError, Order, PaymentError, PaymentProvider, ProviderEvent, Refund};
use crate::hold::{Intent, Provider};

/// How far a `Stripe-Signature` timestamp may be from now: Stripe's own libraries' default.
pub const SIGNATURE_TOLERANCE: time::Duration = time::Duration::minutes(5);

/// How a deployment reaches Stripe.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// The secret API key (`BOXOFFICE_STRIPE_SECRET_KEY`).
    pub secret_key: SecretString,
    /// The webhook endpoint's signing secret (`BOXOFFICE_STRIPE_WEBHOOK_SECRET`).
    pub webhook_secret: SecretString,
    /// The API's address without a trailing slash (`--stripe-api-url`).
    pub api_url: String,
}

/// Stripe's address when none is configured.
pub const STRIPE_API_URL: &str = "https://api.stripe.com";

/// The Stripe provider.
pub struct Stripe {
    config: StripeConfig,
    http: reqwest::Client,
}

impl Stripe {
    pub fn new(mut config: StripeConfig) -> Result<Self, PaymentError> {
        config.api_url = config.api_url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|error| PaymentError::Unavailable(error.to_string()))?;
        Ok(Self { config, http })
    }

    /// A form `POST` to the API, with an idempotency key when given; the answer's JSON.
    async fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        key: Option<String>,
    ) -> Result<PaymentIntent, StripeFailure> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.config.api_url))
            .bearer_auth(self.config.secret_key.expose_secret())
            .form(form);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        answer(request.send().await).await
    }

    async fn get(&self, path: &str) -> Result<PaymentIntent, StripeFailure> {
        let request = self
            .http
            .get(format!("{}{path}", self.config.api_url))
            .bearer_auth(self.config.secret_key.expose_secret());
        answer(request.send().await).await
    }
}

/// The part of a PaymentIntent (or of any answer) boxoffice reads.
#[derive(Debug, Deserialize)]
struct PaymentIntent {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    client_secret: Option<String>,
    last_payment_error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

impl ApiError {
    fn reason(&self) -> String {
        self.decline_code
            .clone()
            .or_else(|| self.code.clone())
            .unwrap_or_else(|| "card_declined".to_owned())
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

/// Why a call to Stripe did not give an answer to use.
#[derive(Debug)]
enum StripeFailure {
    /// 402: the card was refused.
    Declined(String),
    /// 404: something named in the call does not exist (a payment method, say).
    Missing(String),
    /// Anything else: network, 5xx, 429, or a request Stripe refused.
    Other(String),
}

impl From<StripeFailure> for PaymentError {
    fn from(failure: StripeFailure) -> Self {
        match failure {
            StripeFailure::Declined(reason) => PaymentError::Declined(reason),
            StripeFailure::Missing(_) => PaymentError::UnknownMethod,
            StripeFailure::Other(why) => PaymentError::Unavailable(why),
        }
    }
}

async fn answer(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<PaymentIntent, StripeFailure> {
    let response = sent.map_err(|error| StripeFailure::Other(error.to_string()))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|error| StripeFailure::Other(error.to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|error| StripeFailure::Other(format!("unreadable answer: {error}")));
    }
    let error = serde_json::from_slice::<ErrorBody>(&body)
        .ok()
        .map(|body| body.error);
    let message = error
        .as_ref()
        .and_then(|error| error.message.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    Err(match status.as_u16() {
        402 => {
            StripeFailure::Declined(error.map_or_else(|| "card_declined".into(), |e| e.reason()))
        }
        404 => StripeFailure::Missing(message),
        code => StripeFailure::Other(format!("Stripe answered {code}: {message}")),
    })
}

#[async_trait]
impl PaymentProvider for Stripe {
    fn kind(&self) -> Provider {
        Provider::Stripe
    }

    async fn prepare(&self, order: &Order) -> Result<Option<Intent>, PaymentError> {
        let form = [
            ("amount", order.amount_cents.to_string()),
            ("currency", order.currency.to_lowercase()),
            ("metadata[hold_id]", order.hold_id.to_string()),
        ];
        let intent = self
            .post(
                "/v1/payment_intents",
                &form,
                Some(order.hold_id.to_string()),
            )
            .await?;
        Ok(Some(Intent {
            reference: intent.id,
            client_secret: intent.client_secret,
        }))
    }

    async fn abandon(&self, intent: &Intent) {
        let path = format!("/v1/payment_intents/{}/cancel", intent.reference);
        if let Err(error) = self.post(&path, &[], None).await {
            tracing::info!(intent = %intent.reference, ?error, "cannot cancel a PaymentIntent");
        }
    }

    /// Confirms the hold's PaymentIntent with `method` on the server's side (the route for
    /// clients that do not confirm with Stripe themselves). An intent that already succeeded —
    /// paid from another tab, or by the client — is the charge, and nothing is confirmed again.
    async fn charge(&self, charge: &Charge) -> Result<String, PaymentError> {
        let intent_id = charge
            .intent
            .as_deref()
            .ok_or_else(|| PaymentError::Unavailable("the hold has no PaymentIntent".to_owned()))?;
        let path = format!("/v1/payment_intents/{intent_id}");
        let intent = self.get(&path).await?;
        if intent.status == "succeeded" {
            return Ok(intent.id);
        }
        self.post(&path, &[("payment_method", charge.method.clone())], None)
            .await?;
        // Keyed by hold and method: two tabs paying with one card confirm once; another card
        // after a decline is another attempt.
        let key = format!("{}-confirm-{}", charge.hold_id, charge.method);
        let confirmed = match self.post(&format!("{path}/confirm"), &[], Some(key)).await {
            Ok(confirmed) => confirmed,
            // Refused because another request (a second tab, the client) confirmed it first:
            // the intent as it now is says whether that payment went through.
            Err(StripeFailure::Other(why)) => match self.get(&path).await? {
                intent if intent.status == "succeeded" => intent,
                _ => return Err(PaymentError::Unavailable(why)),
            },
            Err(failure) => return Err(failure.into()),
        };
        match confirmed.status.as_str() {
            "succeeded" => Ok(confirmed.id),
            "requires_payment_method" => Err(PaymentError::Declined(
                confirmed
                    .last_payment_error
                    .map_or_else(|| "card_declined".into(), |error| error.reason()),
            )),
            "requires_action" => Err(PaymentError::Declined("authentication_required".into())),
            other => Err(PaymentError::Unavailable(format!(
                "the payment is {other}; its outcome arrives by webhook"
            ))),
        }
    }

    async fn refund(&self, refund: &Refund) -> Result<(), PaymentError> {
        let form = [
            ("payment_intent", refund.payment_ref.clone()),
            ("amount", refund.amount_cents.to_string()),
        ];
        self.post("/v1/refunds", &form, Some(refund.id.to_string()))
            .await
            .map(|_| ())
            // A refund Stripe refuses is retried like an unreachable Stripe; its reason is kept
            // with the refund.
            .map_err(|failure| match failure {
                StripeFailure::Declined(why)
                | StripeFailure::Missing(why)
                | StripeFailure::Other(why) => PaymentError::Unavailable(why),
            })
    }

    fn verify_event(
        &self,
        signature: Option<&str>,
        payload: &[u8],
        now: OffsetDateTime,
    ) -> Result<ProviderEvent, EventError> {
        verify_signature(
            self.config.webhook_secret.expose_secret().as_bytes(),
            signature.ok_or(EventError::Signature("no Stripe-Signature header"))?,
            payload,
            now,
        )?;
        parse_event(payload)
    }
}

/// Checks a `Stripe-Signature` header (`t=<unix seconds>,v1=<hex HMAC-SHA256>,…`): one `v1`
/// must be the HMAC of `"<t>.<payload>"` under `secret`, and `t` within
/// [`SIGNATURE_TOLERANCE`] of `now`.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    payload: &[u8],
    now: OffsetDateTime,
) -> Result<(), EventError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(EventError::Signature("no timestamp"))?;
    if signatures.is_empty() {
        return Err(EventError::Signature("no v1 signature"));
    }
    let (key, signed) = signing(secret, timestamp, payload);
    if !signatures
        .iter()
        .any(|signature| hmac::verify(&key, &signed, signature).is_ok())
    {
        return Err(EventError::Signature("no v1 signature matches"));
    }
    let age = now.unix_timestamp().abs_diff(timestamp);
    if age > SIGNATURE_TOLERANCE.whole_seconds().unsigned_abs() {
        return Err(EventError::Signature(
            "the timestamp is outside the tolerance",
        ));
    }
    Ok(())
}

/// The header Stripe would send for `payload` at `timestamp` (for tests and tools that play
/// Stripe).
pub fn sign(secret: &[u8], timestamp: i64, payload: &[u8]) -> String {
    let (key, signed) = signing(secret, timestamp, payload);
    let tag = hmac::sign(&key, &signed);
    format!("t={timestamp},v1={}", hex::encode(tag.as_ref()))
}

/// The key and the message of the `Stripe-Signature` scheme: HMAC-SHA256 under the webhook
/// secret of `"<timestamp>.<payload>"`.
fn signing(secret: &[u8], timestamp: i64, payload: &[u8]) -> (hmac::Key, Vec<u8>) {
    let mut signed = timestamp.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(payload);
    (hmac::Key::new(hmac::HMAC_SHA256, secret), signed)
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: EventObject,
}

#[derive(Debug, Deserialize)]
struct EventObject {
    #[serde(default)]
    id: String,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

/// What a verified event says: a PaymentIntent of one of this deployment's holds (its
/// `metadata.hold_id`) succeeded or failed; anything else is acknowledged and left alone.
pub fn parse_event(payload: &[u8]) -> Result<ProviderEvent, EventError> {
    let event: Event = serde_json::from_slice(payload)
        .map_err(|error| EventError::Malformed(error.to_string()))?;
    let hold_id = event
        .data
        .object
        .metadata
        .get("hold_id")
        .and_then(|value| value.as_str())
        .and_then(|value| Uuid::parse_str(value).ok());
    Ok(match (event.kind.as_str(), hold_id) {
        ("payment_intent.succeeded", Some(hold_id)) => ProviderEvent::Succeeded {
            id: event.id,
            hold_id,
            reference: event.data.object.id,
        },
        ("payment_intent.payment_failed", Some(hold_id)) => ProviderEvent::Failed {
            id: event.id,
            hold_id,
        },
        _ => ProviderEvent::Ignored {
            id: event.id,
            kind: event.kind,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";

    fn event(kind: &str, hold_id: Uuid) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": "evt_1", "type": kind,
            "data": {"object": {"id": "pi_1", "object": "payment_intent",
                                "metadata": {"hold_id": hold_id.to_string()}}}
        }))
        .unwrap()
    }

    #[test]
    fn a_signature_verifies_only_for_its_payload_secret_and_time() {
        let now = OffsetDateTime::now_utc();
        let payload = event("payment_intent.succeeded", Uuid::now_v7());
        let header = sign(SECRET, now.unix_timestamp(), &payload);
        assert_eq!(verify_signature(SECRET, &header, &payload, now), Ok(()));
        let mut altered = payload.clone();
        altered[3] ^= 1;
        assert!(verify_signature(SECRET, &header, &altered, now).is_err());
        assert!(verify_signature(b"whsec_other", &header, &payload, now).is_err());
        let stale = now + SIGNATURE_TOLERANCE + time::Duration::seconds(1);
        assert!(verify_signature(SECRET, &header, &payload, stale).is_err());
        let early = now - SIGNATURE_TOLERANCE - time::Duration::seconds(1);
        assert!(verify_signature(SECRET, &header, &payload, early).is_err());
        for broken in [
            "",
            "t=abc,v1=00",
            "v1=00",
            &format!("t={}", now.unix_timestamp()),
        ] {
            assert!(
                verify_signature(SECRET, broken, &payload, now).is_err(),
                "{broken}"
            );
        }
        // Stripe sends one v1 per active secret while a secret is rolled: any one may match.
        let rolled = format!("{header},v1=00ff");
        assert_eq!(verify_signature(SECRET, &rolled, &payload, now), Ok(()));
    }

    #[test]
    fn events_name_the_hold_they_settle() {
        let hold_id = Uuid::now_v7();
        assert_eq!(
            parse_event(&event("payment_intent.succeeded", hold_id)),
            Ok(ProviderEvent::Succeeded {
                id: "evt_1".into(),
                hold_id,
                reference: "pi_1".into()
            })
        );
        assert_eq!(
            parse_event(&event("payment_intent.payment_failed", hold_id)),
            Ok(ProviderEvent::Failed {
                id: "evt_1".into(),
                hold_id
            })
        );
        assert!(matches!(
            parse_event(&event("charge.refunded", hold_id)),
            Ok(ProviderEvent::Ignored { .. })
        ));
        assert!(matches!(
            parse_event(b"{\"id\": 1}"),
            Err(EventError::Malformed(_))
        ));
    }
}
