//! The waiting-list routes (API contract, "Waiting list"): a fan waits for a sold-out seat type,
//! and a seat that comes free is offered to them as a hold.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use boxoffice_shared::extract::{ClientAddress, Json, Query};
use boxoffice_shared::token::AuthUser;
use boxoffice_shared::{paging, problem_responses};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{page_request, parse_id};
use crate::error::BookingError;
use crate::service::BookingService;
use crate::waitlist::WaitlistEntry;

/// The waiting-list routes, with their OpenAPI descriptions.
pub fn router() -> OpenApiRouter<BookingService> {
    OpenApiRouter::new()
        .routes(routes!(join_waitlist))
        .routes(routes!(list_waitlist))
        .routes(routes!(get_waitlist_entry, leave_waitlist))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinWaitlistRequest {
    pub seat_type_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WaitlistPage {
    pub items: Vec<WaitlistEntry>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListWaitlistQuery {
    /// 1 to 100, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

problem_responses!(
    struct JoinWaitlistProblems {
        MalformedBody,
        Unauthenticated,
        ConcertNotFound: "no such concert (also for a malformed id)",
        SeatTypeNotFound: "no such seat type, or one of another concert",
        SeatsAvailable,
        AlreadyWaitlisted,
        AlreadyBooked: "the user has a confirmed booking or an active hold for this concert",
        BookingClosed,
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "`seat_type_id` is missing or not a UUID",
        RateLimited: "too many writes by this user or from this address",
        Unavailable,
    }
);

/// Wait for a sold-out seat type. When a seat of it comes free, the first fan waiting is offered
/// it at once: a hold in their name (see `hold_id`), announced by email, that lasts the offer
/// time; unpaid by then, it goes to the next fan.
#[utoipa::path(
    post, path = "/api/v1/concerts/{id}/waitlist", tag = "waitlist",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Concert id; anything that is not a UUID is not found either")),
    request_body = JoinWaitlistRequest,
    responses(
        (status = 201, description = "On the list: `waiting`, with its `position`", body = WaitlistEntry,
            headers(("Location" = String, description = "/api/v1/waitlist/{id}"))),
        JoinWaitlistProblems,
    )
)]
pub async fn join_waitlist(
    State(service): State<BookingService>,
    caller: AuthUser,
    client: ClientAddress,
    Path(id): Path<String>,
    Json(request): Json<JoinWaitlistRequest>,
) -> Result<Response, BookingError> {
    service.take_write(&caller, client.0).await?;
    let concert_id = parse_id(&id, BookingError::ConcertNotFound)?;
    let entry = service
        .join_waitlist(caller, concert_id, request.seat_type_id)
        .await?;
    let location = format!("/api/v1/waitlist/{}", entry.id);
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(entry)).into_response())
}

problem_responses!(
    struct ListWaitlistProblems {
        Unauthenticated,
        ValidationFailed: "a bad `limit` or `cursor`, or an unknown parameter",
        Unavailable,
    }
);

/// The caller's waiting-list entries, newest first.
#[utoipa::path(
    get, path = "/api/v1/waitlist", tag = "waitlist",
    security(("bearer" = [])),
    params(ListWaitlistQuery),
    responses(
        (status = 200, description = "A page of the caller's entries, newest first", body = WaitlistPage),
        ListWaitlistProblems,
    )
)]
pub async fn list_waitlist(
    State(service): State<BookingService>,
    caller: AuthUser,
    Query(query): Query<ListWaitlistQuery>,
) -> Result<Json<WaitlistPage>, BookingError> {
    let (limit, before) = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let items = service.list_waitlist(caller, before, limit + 1).await?;
    let (items, next_cursor) = paging::page(items, limit, |entry| entry.id);
    Ok(Json(WaitlistPage { items, next_cursor }))
}

problem_responses!(
    struct GetWaitlistEntryProblems {
        Unauthenticated,
        WaitlistEntryNotFound: "no such entry (also for a malformed id or another user's entry)",
        Unavailable,
    }
);

/// One waiting-list entry: the caller's own (admins may read any).
#[utoipa::path(
    get, path = "/api/v1/waitlist/{id}", tag = "waitlist",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Entry id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "The entry", body = WaitlistEntry),
        GetWaitlistEntryProblems,
    )
)]
pub async fn get_waitlist_entry(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<WaitlistEntry>, BookingError> {
    let id = parse_id(&id, BookingError::WaitlistEntryNotFound)?;
    Ok(Json(service.waitlist_entry(caller, id).await?))
}

problem_responses!(
    struct LeaveWaitlistProblems {
        Unauthenticated,
        WaitlistEntryNotFound: "no such entry (also for a malformed id or another user's entry)",
        RateLimited: "too many writes by this user or from this address",
        Unavailable,
    }
);

/// Leave the waiting list. A seat offered to the entry is let go (its hold released) and offered
/// to the next fan. Leaving an entry that has already ended changes nothing.
#[utoipa::path(
    delete, path = "/api/v1/waitlist/{id}", tag = "waitlist",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Entry id; anything that is not a UUID is not found either")),
    responses(
        (status = 204, description = "Off the list"),
        LeaveWaitlistProblems,
    )
)]
pub async fn leave_waitlist(
    State(service): State<BookingService>,
    caller: AuthUser,
    client: ClientAddress,
    Path(id): Path<String>,
) -> Result<StatusCode, BookingError> {
    service.take_write(&caller, client.0).await?;
    let id = parse_id(&id, BookingError::WaitlistEntryNotFound)?;
    service.leave_waitlist(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
