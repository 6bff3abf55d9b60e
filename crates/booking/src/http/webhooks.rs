//! The webhook routes (API contract, "Webhooks (v1.1)"), admins only: endpoints that receive
//! signed events, and each endpoint's delivery log.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_shared::extract::{Json, Query};
use boxoffice_shared::token::AuthUser;
use boxoffice_shared::{paging, problem_responses};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{page_request, parse_id};
use crate::error::BookingError;
use crate::service::BookingService;
use crate::webhook::{Delivery, Endpoint, EventSet, WebhookEvent};

/// The webhook routes, with their OpenAPI descriptions.
pub fn router() -> OpenApiRouter<BookingService> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, delete_webhook))
        .routes(routes!(list_webhook_deliveries))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where events are `POST`ed: `http` or `https`, not a private, loopback or link-local
    /// address (unless the deployment allows them).
    #[schema(example = "https://example.com/hooks/boxoffice", max_length = 2048)]
    pub url: String,
    /// The event types to receive; at least one.
    #[schema(value_type = Vec<WebhookEvent>, min_items = 1)]
    pub events: Vec<String>,
}

/// A new endpoint, with the secret its deliveries are signed with — shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    /// `whsec_` and the base64 of the signing key (Standard Webhooks).
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwTZ0U7JLZ/HQ=")]
    pub secret: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookPage {
    pub items: Vec<Endpoint>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 100, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

fn admin(caller: &AuthUser) -> Result<(), BookingError> {
    match caller.is_admin() {
        true => Ok(()),
        false => Err(BookingError::Forbidden("admin")),
    }
}

/// The event types a request names: every one known, at least one.
fn event_set(names: &[String]) -> Result<EventSet, BookingError> {
    if names.is_empty() {
        return Err(BookingError::invalid(
            "events",
            "name at least one event type",
        ));
    }
    names
        .iter()
        .map(|name| {
            WebhookEvent::parse(name).ok_or_else(|| {
                BookingError::invalid(
                    "events",
                    "unknown event type: booking.confirmed, booking.cancelled, hold.expired, \
                     checkin.created, concert.sold_out or waitlist.offered",
                )
            })
        })
        .collect()
}

problem_responses!(
    struct CreateWebhookProblems {
        MalformedBody,
        Unauthenticated,
        Forbidden: "not an admin",
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "a URL that is not http or https, carries credentials, or is or resolves to a private, loopback or link-local address; no event type, or an unknown one",
        Unavailable,
    }
);

/// Register an endpoint for events (admin). Deliveries are signed with the returned secret.
#[utoipa::path(
    post, path = "/api/v1/webhooks", tag = "webhooks",
    security(("bearer" = [])),
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Registered; the secret is shown only in this answer", body = CreatedWebhook,
            headers(("Location" = String, description = "/api/v1/webhooks/{id}"))),
        CreateWebhookProblems,
    )
)]
pub async fn create_webhook(
    State(service): State<BookingService>,
    caller: AuthUser,
    Json(request): Json<CreateWebhookRequest>,
) -> Result<Response, BookingError> {
    admin(&caller)?;
    let events = event_set(&request.events)?;
    let created = service.create_webhook(&request.url, events).await?;
    let location = HeaderValue::from_str(&format!("/api/v1/webhooks/{}", created.endpoint.id))
        .unwrap_or_else(|_| HeaderValue::from_static("/api/v1/webhooks"));
    let body = CreatedWebhook {
        id: created.endpoint.id,
        url: created.endpoint.url,
        events: created.endpoint.events,
        secret: created.secret,
        created_at: created.endpoint.created_at,
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

problem_responses!(
    struct ListWebhooksProblems {
        Unauthenticated,
        Forbidden: "not an admin",
        ValidationFailed: "a bad `limit` or `cursor`, or an unknown parameter",
        Unavailable,
    }
);

/// The registered endpoints, newest first, without their secrets (admin).
#[utoipa::path(
    get, path = "/api/v1/webhooks", tag = "webhooks",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of endpoints, newest first", body = WebhookPage),
        ListWebhooksProblems,
    )
)]
pub async fn list_webhooks(
    State(service): State<BookingService>,
    caller: AuthUser,
    Query(query): Query<PageQuery>,
) -> Result<Json<WebhookPage>, BookingError> {
    admin(&caller)?;
    let (limit, before) = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let items = service.webhooks(before, limit + 1).await?;
    let (items, next_cursor) = paging::page(items, limit, |endpoint| endpoint.id);
    Ok(Json(WebhookPage { items, next_cursor }))
}

problem_responses!(
    struct WebhookProblems {
        Unauthenticated,
        Forbidden: "not an admin",
        WebhookNotFound: "no such webhook (also for a malformed id or a deleted one)",
        Unavailable,
    }
);

/// One endpoint, without its secret (admin).
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "The endpoint", body = Endpoint),
        WebhookProblems,
    )
)]
pub async fn get_webhook(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, BookingError> {
    admin(&caller)?;
    let id = parse_id(&id, BookingError::WebhookNotFound)?;
    Ok(Json(service.webhook(id).await?))
}

/// Delete an endpoint (admin): nothing more is delivered to it; its deliveries stop.
#[utoipa::path(
    delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id; anything that is not a UUID is not found either")),
    responses(
        (status = 204, description = "Deleted"),
        WebhookProblems,
    )
)]
pub async fn delete_webhook(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, BookingError> {
    admin(&caller)?;
    let id = parse_id(&id, BookingError::WebhookNotFound)?;
    service.delete_webhook(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

problem_responses!(
    struct DeliveriesProblems {
        Unauthenticated,
        Forbidden: "not an admin",
        WebhookNotFound: "no such webhook (also for a malformed id or a deleted one)",
        ValidationFailed: "a bad `limit` or `cursor`, or an unknown parameter",
        Unavailable,
    }
);

/// An endpoint's deliveries, newest first: one per event, with its attempts (admin).
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id; anything that is not a UUID is not found either"), PageQuery),
    responses(
        (status = 200, description = "A page of deliveries, newest first", body = DeliveryPage),
        DeliveriesProblems,
    )
)]
pub async fn list_webhook_deliveries(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<DeliveryPage>, BookingError> {
    admin(&caller)?;
    let id = parse_id(&id, BookingError::WebhookNotFound)?;
    let (limit, before) = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let items = service.webhook_deliveries(id, before, limit + 1).await?;
    let (items, next_cursor) = paging::page(items, limit, |delivery| delivery.id);
    Ok(Json(DeliveryPage { items, next_cursor }))
}
