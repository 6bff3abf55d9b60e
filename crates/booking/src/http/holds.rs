//! The checkout routes (API contract, "Checkout: holds and payment"): a hold keeps one seat for
//! one user while they pay, and a paid hold becomes a confirmed booking.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use boxoffice_shared::extract::{ClientAddress, Json, Query};
use boxoffice_shared::token::AuthUser;
use boxoffice_shared::{paging, problem_responses};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::owner::{NewWrite, Write};
use super::{idempotency_key, page_request, parse_id};
use crate::error::BookingError;
use crate::hold::{Hold, HoldStatus};
use crate::service::BookingService;

/// The checkout routes, with their OpenAPI descriptions.
pub fn router() -> OpenApiRouter<BookingService> {
    OpenApiRouter::new()
        .routes(routes!(create_hold, list_holds))
        .routes(routes!(get_hold))
        .routes(routes!(release_hold))
        .routes(routes!(pay_hold))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHoldRequest {
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayHoldRequest {
    /// What to pay with. With the simulated provider, Stripe's test names: `pm_card_visa`
    /// succeeds, `pm_card_visa_chargeDeclined` is declined. May be left out for a seat of price 0.
    #[serde(default)]
    #[schema(
        example = "pm_card_visa",
        min_length = 1,
        max_length = 255,
        required = false
    )]
    pub payment_method: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HoldPage {
    pub items: Vec<Hold>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListHoldsQuery {
    /// Only holds with this status now (an active hold past its `expires_at` is `expired`).
    #[param(inline)]
    pub status: Option<HoldStatus>,
    /// 1 to 100, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

problem_responses!(
    struct CreateHoldProblems {
        MalformedBody,
        Unauthenticated,
        AdmissionRequired,
        ConcertNotFound,
        SeatTypeNotFound: "no such seat type, or one of another concert",
        SoldOut,
        AlreadyBooked: "the user has a confirmed booking or an active hold for this concert",
        BookingClosed,
        SalesNotOpen,
        IdempotencyKeyReused,
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "a field is missing or not a UUID, or the `Idempotency-Key` is not 1 to 255 visible ASCII characters",
        RateLimited: "too many writes by this user or from this address",
        Unavailable: "safe to retry with the same `Idempotency-Key`",
    }
);

/// Hold one seat of a seat type while paying for it; the seat is taken at once and comes back by
/// itself at `expires_at` unless the hold is paid.
#[utoipa::path(
    post, path = "/api/v1/holds", tag = "checkout",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]([ -~]*[!-~])?$", nullable = false,
        description = "1 to 255 visible ASCII characters, inner spaces allowed; a retry with the same key and body returns the original response"),
        ("Boxoffice-Admission" = Option<String>, Header, nullable = false,
            description = "The caller's admission from the concert's waiting room (`admission` of its QueueTicket); needed while the concert has a waiting room")),
    request_body = CreateHoldRequest,
    responses(
        (status = 201, description = "Held; durable on disk", body = Hold,
            headers(("Location" = String, description = "/api/v1/holds/{id}"))),
        CreateHoldProblems,
    )
)]
pub async fn create_hold(
    State(service): State<BookingService>,
    caller: AuthUser,
    client: ClientAddress,
    headers: HeaderMap,
    Json(request): Json<CreateHoldRequest>,
) -> Result<Response, BookingError> {
    service.take_write(&caller, client.0).await?;
    let asked = NewWrite {
        kind: Write::Hold,
        caller,
        concert_id: request.concert_id,
        seat_type_id: request.seat_type_id,
        key: idempotency_key(&headers)?,
        admission: super::admission(&headers),
    };
    super::owner::write(&service, asked).await
}

problem_responses!(
    struct ListHoldsProblems {
        Unauthenticated,
        ValidationFailed: "a bad `status`, `limit` or `cursor`, or an unknown parameter",
        Unavailable,
    }
);

/// The caller's holds, newest first, each as it stands now.
#[utoipa::path(
    get, path = "/api/v1/holds", tag = "checkout",
    security(("bearer" = [])),
    params(ListHoldsQuery),
    responses(
        (status = 200, description = "A page of the caller's holds, newest first", body = HoldPage),
        ListHoldsProblems,
    )
)]
pub async fn list_holds(
    State(service): State<BookingService>,
    caller: AuthUser,
    Query(query): Query<ListHoldsQuery>,
) -> Result<Json<HoldPage>, BookingError> {
    let (limit, before) = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let items = service
        .list_holds(caller, query.status, before, limit + 1)
        .await?;
    let (items, next_cursor) = paging::page(items, limit, |hold| hold.id);
    Ok(Json(HoldPage { items, next_cursor }))
}

problem_responses!(
    struct GetHoldProblems {
        Unauthenticated,
        HoldNotFound: "no such hold (also for a malformed id or another user's hold)",
        Unavailable,
    }
);

/// One hold as it stands now: the caller's own (admins may read any).
#[utoipa::path(
    get, path = "/api/v1/holds/{id}", tag = "checkout",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Hold id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "The hold", body = Hold),
        GetHoldProblems,
    )
)]
pub async fn get_hold(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Hold>, BookingError> {
    let id = parse_id(&id, BookingError::HoldNotFound)?;
    Ok(Json(service.get_hold(caller, id).await?))
}

problem_responses!(
    struct ReleaseHoldProblems {
        Unauthenticated,
        HoldNotFound: "no such hold (also for a malformed id or another user's hold)",
        HoldNotActive,
        RateLimited: "too many writes by this user or from this address",
        Unavailable,
    }
);

/// Let a hold go before it expires: its seat returns at once.
#[utoipa::path(
    post, path = "/api/v1/holds/{id}/release", tag = "checkout",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Hold id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "Released", body = Hold),
        ReleaseHoldProblems,
    )
)]
pub async fn release_hold(
    State(service): State<BookingService>,
    caller: AuthUser,
    client: ClientAddress,
    Path(id): Path<String>,
) -> Result<Json<Hold>, BookingError> {
    service.take_write(&caller, client.0).await?;
    let id = parse_id(&id, BookingError::HoldNotFound)?;
    Ok(Json(service.release(caller, id).await?))
}

problem_responses!(
    struct PayHoldProblems {
        MalformedBody,
        Unauthenticated,
        PaymentDeclined,
        HoldNotFound: "no such hold (also for a malformed id or another user's hold)",
        HoldNotActive: "the hold was released (a payment that raced the release is refunded)",
        HoldExpired: "the hold expired before it was paid (a payment that raced the expiry is refunded when no seat is left)",
        AlreadyBooked: "the user booked this concert otherwise meanwhile (the payment is refunded)",
        BookingClosed: "the concert started or was cancelled meanwhile (the payment is refunded)",
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "`payment_method` is missing for a seat with a price, or not one the provider takes",
        RateLimited: "too many writes by this user or from this address",
        Unavailable: "the store or the payment provider is down; safe to retry (a hold is charged at most once)",
    }
);

/// Pay a hold: it becomes a confirmed booking in the same transaction as the payment's record,
/// and the confirmation email is queued. Paying a completed hold again answers the same and
/// charges nothing.
#[utoipa::path(
    post, path = "/api/v1/holds/{id}/pay", tag = "checkout",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Hold id; anything that is not a UUID is not found either")),
    request_body = PayHoldRequest,
    responses(
        (status = 200, description = "Paid: `completed`, with `booking_id`", body = Hold),
        PayHoldProblems,
    )
)]
pub async fn pay_hold(
    State(service): State<BookingService>,
    caller: AuthUser,
    client: ClientAddress,
    Path(id): Path<String>,
    Json(request): Json<PayHoldRequest>,
) -> Result<Json<Hold>, BookingError> {
    service.take_write(&caller, client.0).await?;
    let id = parse_id(&id, BookingError::HoldNotFound)?;
    if let Some(method) = &request.payment_method
        && !(1..=255).contains(&method.len())
    {
        return Err(BookingError::invalid(
            "payment_method",
            "must be 1 to 255 characters",
        ));
    }
    Ok(Json(service.pay(caller, id, request.payment_method).await?))
}
