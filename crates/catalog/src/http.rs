//! The Catalog routes (API contract, "Concerts"): `/api/v1/concerts` and the admin routes under
//! it. Availability, its stream and sales figures belong to the Booking service.
//!
//! Handlers turn requests into domain types, collecting every invalid field into one
//! `validation_failed` problem, then call [`CatalogService`]. Admin routes take the [`Admin`]
//! extractor, so that 401 and 403 are decided before the body is even read. Every route is
//! described for OpenAPI by its `#[utoipa::path]` attribute.

use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use boxoffice_shared::extract::{Json, Query};
use boxoffice_shared::token::{AuthUser, Authenticator};
use boxoffice_shared::{FieldErrors, Problem, problem_responses};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{
    Capacity, ConcertId, ConcertStatus, Cursor, ListStatus, PageLimit, SearchText, SeatTypeId,
};
use crate::error::CatalogError;
use crate::service::{CatalogService, ConcertPage, ConcertView, ListQuery, SeatTypeView};

mod requests;
pub use requests::{
    CreateConcertRequest, SeatTypeRequest, UpdateConcertRequest, UpdateSeatTypeRequest,
    WaitingRoomRequest,
};

impl FromRef<CatalogService> for Authenticator {
    fn from_ref(service: &CatalogService) -> Self {
        service.authenticator().clone()
    }
}

/// The Catalog service's routes, with their OpenAPI descriptions.
pub fn router(service: CatalogService) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_concerts, create_concert))
        .routes(routes!(get_concert, update_concert))
        .routes(routes!(cancel_concert))
        .routes(routes!(add_seat_type))
        .routes(routes!(update_seat_type))
        .with_state(service)
}

/// A caller with the admin role: 401 `unauthenticated` without a valid token, 403 `forbidden`
/// for anyone else.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub AuthUser);

impl<S> FromRequestParts<S> for Admin
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require_admin()?;
        Ok(Admin(user))
    }
}

/// A concert with every seat type and its exact remaining seats.
#[derive(Debug, Serialize, ToSchema)]
pub struct Concert {
    pub id: Uuid,
    pub name: String,
    pub artist: String,
    pub venue: String,
    pub description: String,
    #[schema(example = "concert")]
    pub category: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2027-05-01T19:30:00Z")]
    pub starts_at: OffsetDateTime,
    /// The venue's IANA time zone: the time the venue's clocks show at `starts_at`, and the one
    /// confirmation emails give.
    #[schema(example = "Europe/London")]
    pub time_zone: String,
    /// When sales open; `null`: on sale since the concert was created.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2027-03-01T10:00:00Z")]
    pub sales_open_at: Option<OffsetDateTime>,
    /// The waiting room in front of its sales; `null`: none, anyone may book once sales open.
    pub waiting_room: Option<WaitingRoom>,
    /// `cancelled` if called off, else `closed` once started, else `scheduled` before
    /// `sales_open_at`, else `sold_out` when no seat type has a seat left, else `on_sale`.
    pub status: ConcertStatus,
    /// True exactly when `status` is `on_sale`.
    pub booking_open: bool,
    pub seat_types: Vec<SeatType>,
}

impl From<ConcertView> for Concert {
    fn from(view: ConcertView) -> Self {
        let booking_open = view.booking_open();
        let concert = view.concert;
        Self {
            id: concert.id,
            name: concert.name,
            artist: concert.artist,
            venue: concert.venue,
            description: concert.description,
            category: concert.category,
            starts_at: concert.starts_at,
            time_zone: concert.time_zone,
            sales_open_at: concert.sales_open_at,
            waiting_room: concert.waiting_room.map(WaitingRoom::from),
            status: view.status,
            booking_open,
            seat_types: view.seat_types.into_iter().map(SeatType::from).collect(),
        }
    }
}

/// A concert's waiting room (API contract, "Waiting room for on-sales"): while it has one,
/// bookings and holds need an admission from its queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct WaitingRoom {
    /// People admitted from the queue per minute.
    #[schema(example = 1000, minimum = 1, maximum = 1_000_000)]
    pub admit_per_minute: u32,
    /// How long an admission lasts, in seconds.
    #[schema(example = 600, minimum = 60, maximum = 86_400)]
    pub admission_ttl_seconds: u32,
}

impl From<boxoffice_shared::clients::WaitingRoom> for WaitingRoom {
    fn from(room: boxoffice_shared::clients::WaitingRoom) -> Self {
        Self {
            admit_per_minute: room.admit_per_minute,
            admission_ttl_seconds: room.admission_ttl_seconds,
        }
    }
}

/// A seat type with its capacity and remaining seats, read from the booking store.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeatType {
    pub id: Uuid,
    #[schema(example = "VIP")]
    pub name: String,
    #[schema(example = 25000)]
    pub price_cents: i64,
    #[schema(example = "USD")]
    pub currency: String,
    #[schema(example = 50)]
    pub capacity: i64,
    #[schema(example = 12)]
    pub remaining: i64,
}

impl From<SeatTypeView> for SeatType {
    fn from(view: SeatTypeView) -> Self {
        Self {
            id: view.seat_type.id,
            name: view.seat_type.name,
            price_cents: view.seat_type.price_cents,
            currency: view.seat_type.currency,
            capacity: view.capacity,
            remaining: view.remaining,
        }
    }
}

/// One page of concerts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConcertList {
    pub items: Vec<Concert>,
    /// Pass as `cursor` to get the next page; `null` on the last page. With `status=on_sale` a
    /// page may hold fewer than `limit` concerts and still have a next page.
    pub next_cursor: Option<String>,
}

impl From<ConcertPage> for ConcertList {
    fn from(page: ConcertPage) -> Self {
        Self {
            items: page.items.into_iter().map(Concert::from).collect(),
            next_cursor: page.next_cursor.map(|cursor| cursor.encode()),
        }
    }
}

/// Query of `GET /api/v1/concerts`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `available` (default): not started and not cancelled, sold-out included; `on_sale`:
    /// bookable now; `all`: everything, past and cancelled included.
    #[param(value_type = Option<ListStatus>, inline)]
    pub status: Option<String>,
    /// Case-insensitive text searched in name, artist and venue (at most 200 characters).
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Only this category (case-insensitive).
    pub category: Option<String>,
    /// Only concerts starting at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// Only concerts starting at or before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    fn parse(self) -> Result<ListQuery, CatalogError> {
        let mut errors = FieldErrors::default();
        let status = errors.check(
            "status",
            match self.status.as_deref().map(str::trim) {
                None | Some("") | Some("available") => Ok(ListStatus::Available),
                Some("on_sale") => Ok(ListStatus::OnSale),
                Some("all") => Ok(ListStatus::All),
                Some(_) => Err("must be one of available, on_sale, all"),
            },
        );
        let search = errors.check("q", SearchText::parse(self.q.as_deref().unwrap_or("")));
        let category = self
            .category
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        let from = errors.check("from", parse_instant(self.from.as_deref()));
        let to = errors.check("to", parse_instant(self.to.as_deref()));
        if let (Some(Some(from)), Some(Some(to))) = (from, to)
            && from > to
        {
            errors.push("to", "must not be before from");
        }
        let limit = errors.check(
            "limit",
            match self.limit.as_deref().map(str::trim) {
                None | Some("") => Ok(PageLimit::DEFAULT),
                Some(raw) => raw
                    .parse::<i64>()
                    .map_err(|_| "must be a whole number between 1 and 100".to_owned())
                    .and_then(|n| PageLimit::parse(Some(n))),
            },
        );
        let cursor = errors.check(
            "cursor",
            match self.cursor.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(raw) => Cursor::decode(raw)
                    .map(Some)
                    .ok_or("is not a cursor returned by this endpoint"),
            },
        );
        errors
            .finish(|| {
                Some(ListQuery {
                    status: status?,
                    search: search?,
                    category,
                    from: from?,
                    to: to?,
                    limit: limit?,
                    cursor: cursor?,
                })
            })
            .map_err(CatalogError::Validation)
    }
}

fn parse_instant(raw: Option<&str>) -> Result<Option<OffsetDateTime>, String> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => OffsetDateTime::parse(raw, &Rfc3339)
            // A `+` in a query string decodes to a space; take it back.
            .or_else(|_| OffsetDateTime::parse(&raw.replace(' ', "+"), &Rfc3339))
            .map(Some)
            .map_err(|_| "must be an RFC 3339 time such as 2027-05-01T19:30:00Z".to_owned()),
    }
}

/// The concert id of a path, or 404: a malformed id names no concert.
fn concert_id(raw: &str) -> Result<Uuid, CatalogError> {
    ConcertId::parse(raw)
        .map(|id| id.as_uuid())
        .ok_or(CatalogError::ConcertNotFound)
}

problem_responses!(
    struct ListProblems {
        ValidationFailed: "a bad `status`, `limit`, `from`/`to` (unparsable or `from` after `to`), `q` or `cursor`",
        Unavailable: "the booking service could not be reached for seat counts",
    }
);

/// List concerts, soonest first.
#[utoipa::path(
    get, path = "/api/v1/concerts", tag = "concerts",
    params(ListParams),
    responses(
        (status = 200, description = "A page of concerts, sorted by `starts_at` then id", body = ConcertList),
        ListProblems,
    )
)]
pub async fn list_concerts(
    State(service): State<CatalogService>,
    Query(params): Query<ListParams>,
) -> Result<Json<ConcertList>, CatalogError> {
    let query = params.parse()?;
    Ok(Json(service.list(query).await?.into()))
}

problem_responses!(
    struct GetProblems {
        ConcertNotFound,
        Unavailable: "the booking service could not be reached for seat counts",
    }
);

/// One concert with every seat type and its exact remaining seats.
#[utoipa::path(
    get, path = "/api/v1/concerts/{id}", tag = "concerts",
    params(("id" = Uuid, Path, description = "The concert's id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "The concert", body = Concert),
        GetProblems,
    )
)]
pub async fn get_concert(
    State(service): State<CatalogService>,
    Path(id): Path<String>,
) -> Result<Json<Concert>, CatalogError> {
    let id = concert_id(&id)?;
    Ok(Json(service.concert(id).await?.into()))
}

problem_responses!(
    struct CreateProblems {
        MalformedBody,
        Unauthenticated,
        Forbidden: "not an admin",
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "listing every invalid field; also a start in the past or two seat types of one name",
        Unavailable: "the booking service is down; the concert will appear once it is provisioned",
    }
);

/// Create a concert with its seat types (admin).
///
/// Seats are provisioned with the booking service in the same request. If that service is
/// unreachable the answer is 503 and the concert is provisioned (and becomes visible) shortly
/// after, by a background reconciler.
#[utoipa::path(
    post, path = "/api/v1/concerts", tag = "concerts",
    security(("bearer" = [])),
    request_body = CreateConcertRequest,
    responses(
        (status = 201, description = "Created; `Location` names the new concert", body = Concert,
            headers(("Location" = String, description = "/api/v1/concerts/{id}"))),
        CreateProblems,
    )
)]
pub async fn create_concert(
    State(service): State<CatalogService>,
    _admin: Admin,
    Json(request): Json<CreateConcertRequest>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Concert>), CatalogError> {
    let concert = request.parse(service.now())?;
    let view = service.create_concert(concert).await?;
    let location = format!("/api/v1/concerts/{}", view.concert.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view.into()),
    ))
}

problem_responses!(
    struct UpdateProblems {
        MalformedBody,
        Unauthenticated,
        Forbidden: "not an admin",
        ConcertNotFound,
        BookingClosed: "the concert has started or was cancelled",
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "listing every invalid field; also a start in the past",
        Unavailable: "the change is saved and will reach the booking service shortly",
    }
);

/// Change a concert's details (admin).
#[utoipa::path(
    patch, path = "/api/v1/concerts/{id}", tag = "concerts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The concert's id; anything that is not a UUID is not found either")),
    request_body = UpdateConcertRequest,
    responses(
        (status = 200, description = "The concert, changed", body = Concert),
        UpdateProblems,
    )
)]
pub async fn update_concert(
    State(service): State<CatalogService>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(request): Json<UpdateConcertRequest>,
) -> Result<Json<Concert>, CatalogError> {
    let id = concert_id(&id)?;
    let change = request.parse(service.now())?;
    Ok(Json(service.update_concert(id, change).await?.into()))
}

problem_responses!(
    struct CancelProblems {
        Unauthenticated,
        Forbidden: "not an admin",
        ConcertNotFound,
        BookingClosed: "the concert has already started",
        Unavailable: "the cancellation is saved and will reach the booking service shortly",
    }
);

/// Call a concert off (admin): sales close at once and every confirmed booking is cancelled.
///
/// Idempotent: cancelling a cancelled concert answers 200 again. A concert that has already
/// started cannot be cancelled (409 `booking_closed`).
#[utoipa::path(
    post, path = "/api/v1/concerts/{id}/cancel", tag = "concerts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The concert's id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "The concert, now `cancelled`", body = Concert),
        CancelProblems,
    )
)]
pub async fn cancel_concert(
    State(service): State<CatalogService>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Concert>, CatalogError> {
    let id = concert_id(&id)?;
    Ok(Json(service.cancel_concert(id).await?.into()))
}

problem_responses!(
    struct AddSeatTypeProblems {
        MalformedBody,
        Unauthenticated,
        Forbidden: "not an admin",
        ConcertNotFound,
        BookingClosed: "the concert has started or was cancelled",
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "also for a name already used in the concert or more than 20 seat types",
        Unavailable: "the seat type is saved and will reach the booking service shortly",
    }
);

/// Add a seat type to a concert (admin).
#[utoipa::path(
    post, path = "/api/v1/concerts/{id}/seat-types", tag = "concerts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The concert's id; anything that is not a UUID is not found either")),
    request_body = SeatTypeRequest,
    responses(
        (status = 201, description = "The new seat type", body = SeatType),
        AddSeatTypeProblems,
    )
)]
pub async fn add_seat_type(
    State(service): State<CatalogService>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(request): Json<SeatTypeRequest>,
) -> Result<(StatusCode, Json<SeatType>), CatalogError> {
    let id = concert_id(&id)?;
    let mut errors = FieldErrors::default();
    let seat = request.parse("", &mut errors);
    let seat = errors.finish(|| seat).map_err(CatalogError::Validation)?;
    let view = service.add_seat_type(id, seat).await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

problem_responses!(
    struct UpdateSeatTypeProblems {
        MalformedBody,
        Unauthenticated,
        Forbidden: "not an admin",
        ConcertNotFound,
        SeatTypeNotFound: "no such seat type in this concert (also a malformed id)",
        BookingClosed: "the concert has started or was cancelled",
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "out of range, or below the seats already sold",
        Unavailable: "the booking service could not be reached; nothing changed",
    }
);

/// Change a seat type's capacity (admin). It may grow, and shrink only down to what is sold.
#[utoipa::path(
    patch, path = "/api/v1/concerts/{id}/seat-types/{seat_type_id}", tag = "concerts",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The concert's id; anything that is not a UUID is not found either"),
        ("seat_type_id" = Uuid, Path, description = "The seat type's id; anything that is not a UUID is not found either"),
    ),
    request_body = UpdateSeatTypeRequest,
    responses(
        (status = 200, description = "The seat type with its new capacity", body = SeatType),
        UpdateSeatTypeProblems,
    )
)]
pub async fn update_seat_type(
    State(service): State<CatalogService>,
    _admin: Admin,
    Path((id, seat_type_id)): Path<(String, String)>,
    Json(request): Json<UpdateSeatTypeRequest>,
) -> Result<Json<SeatType>, CatalogError> {
    let id = concert_id(&id)?;
    let seat_type_id = SeatTypeId::parse(&seat_type_id)
        .ok_or(CatalogError::SeatTypeNotFound)?
        .as_uuid();
    let capacity =
        Capacity::parse(request.capacity).map_err(|m| CatalogError::invalid("capacity", m))?;
    Ok(Json(
        service
            .set_capacity(id, seat_type_id, capacity)
            .await?
            .into(),
    ))
}

#[cfg(test)]
mod tests;
