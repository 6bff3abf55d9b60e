//! The payment provider's webhook (API contract, "Checkout: holds and payment"): Stripe tells
//! boxoffice here that a hold's PaymentIntent succeeded or failed. No bearer: the
//! `Stripe-Signature` header, checked against the webhook secret, is the authentication.

use axum::extract::State;
use axum::http::HeaderMap;
use boxoffice_shared::extract::{Json, JsonBytes};
use boxoffice_shared::problem::{ErrorCode, Problem};
use boxoffice_shared::problem_responses;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::BookingError;
use crate::payments::EventError;
use crate::service::BookingService;

/// The provider's routes, with their OpenAPI descriptions.
pub fn router() -> OpenApiRouter<BookingService> {
    OpenApiRouter::new().routes(routes!(stripe_webhook))
}

/// What the webhook answers an event it has settled.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventReceived {
    pub received: bool,
}

problem_responses!(
    struct StripeWebhookProblems {
        InvalidSignature: "no `Stripe-Signature`, none that matches the webhook secret, or one older than 5 minutes",
        NotFound: "a signed request, but this deployment does not take payments through Stripe",
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "signed, but not an event Stripe sends",
        Unavailable: "not recorded; Stripe delivers it again",
    }
);

/// Stripe's events about the holds' PaymentIntents.
///
/// `payment_intent.succeeded` completes the hold named in the intent's metadata (or refunds the
/// payment when the hold can no longer be completed), `payment_intent.payment_failed` marks its
/// payment `failed`; other events are acknowledged and left alone. Each event id is applied at
/// most once, however often Stripe delivers it; the answer is 2xx once it is recorded.
#[utoipa::path(
    post, path = "/api/v1/payments/stripe/webhook", tag = "checkout",
    request_body(content = String, description = "A Stripe event, as Stripe signed it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"t.body\" under the webhook secret>`")),
    responses(
        (status = 200, description = "Recorded (or not about this deployment's holds)", body = EventReceived),
        StripeWebhookProblems,
    )
)]
pub async fn stripe_webhook(
    State(service): State<BookingService>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Json<EventReceived>, Problem> {
    // Checked first, whatever the provider: without a signature this is no event from Stripe.
    let signature = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            Problem::from(BookingError::InvalidSignature(
                "no Stripe-Signature header".into(),
            ))
        })?;
    let event = service
        .verify_payment_event(Some(signature), &body)
        .map_err(|error| match error {
            EventError::Signature(why) => Problem::from(BookingError::InvalidSignature(why.into())),
            EventError::Malformed(why) => Problem::from(BookingError::invalid("body", &why)),
            EventError::NotTaken => Problem::new(
                ErrorCode::NotFound,
                "this box office does not take payments through Stripe",
            ),
        })?;
    service.apply_payment_event(event).await?;
    Ok(Json(EventReceived { received: true }))
}
