//! The Booking routes (API contract, "Bookings", plus the availability and sales reads of
//! "Concerts", which come from this service's store). The availability stream (server-sent
//! events) is in [`stream`]; tickets and check-in in [`tickets`]; webhooks in [`webhooks`].

pub mod holds;
pub mod owner;
pub mod payments;
pub mod queue;
pub mod stream;
pub mod tickets;
pub mod waitlist;
pub mod webhooks;

use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_shared::clients::IDEMPOTENCY_KEY_HEADER;
use boxoffice_shared::extract::{ClientAddress, Json, Query};
use boxoffice_shared::token::{AuthUser, Authenticator};
use boxoffice_shared::{FieldErrors, paging, problem_responses};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::command::Made;
use crate::domain::{Booking, BookingStatus, IdempotencyKey};
use crate::error::BookingError;
use crate::service::BookingService;
use stream::{AvailabilityResponse, availability_stream};

/// The request's admission token, if it sent one (a value that is not text is none).
pub fn admission(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(&boxoffice_shared::clients::ADMISSION_HEADER)
        .and_then(|value| value.to_str().ok())
}

impl FromRef<BookingService> for Authenticator {
    fn from_ref(service: &BookingService) -> Self {
        service.authenticator().clone()
    }
}

/// The Booking service's routes, with their OpenAPI descriptions.
pub fn router(service: BookingService) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_booking, list_bookings))
        .routes(routes!(get_booking))
        .routes(routes!(cancel_booking))
        .routes(routes!(get_availability))
        .routes(routes!(stream_availability))
        .routes(routes!(get_sales))
        .routes(routes!(list_concert_bookings))
        .merge(holds::router())
        .merge(payments::router())
        .merge(tickets::router())
        .merge(queue::router())
        .merge(waitlist::router())
        .merge(webhooks::router())
        .with_state(service)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBookingRequest {
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingPage {
    pub items: Vec<Booking>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListBookingsQuery {
    /// Only bookings with this status.
    #[param(inline)]
    pub status: Option<BookingStatus>,
    /// 1 to 100, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One event of `GET /api/v1/concerts/{id}/availability/stream`, as a server-sent event's fields
/// (OpenAPI 3.1 has the schema of an event stream describe each event): `availability` on connect
/// and on every change, `opened` when sales open (at `sales_open_at`), `closed` when they close.
#[derive(ToSchema)]
#[allow(dead_code)] // Only described: `availability_stream` writes these.
pub struct AvailabilityEvent {
    #[schema(inline)]
    event: AvailabilityEventKind,
    /// JSON: an `AvailabilityResponse` for `availability`, `{"concert_id"}` for `opened` and
    /// `closed`.
    #[schema(content_media_type = "application/json")]
    data: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum AvailabilityEventKind {
    Availability,
    Opened,
    Closed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatTypeSales {
    pub id: Uuid,
    pub name: String,
    pub capacity: i64,
    pub sold: i64,
    /// Seats kept by active holds: `sold + held + remaining == capacity`.
    pub held: i64,
    pub remaining: i64,
    /// What the sold seats brought in: `sold × price`.
    pub revenue_cents: i64,
    /// Money given back for this seat type: cancelled paid bookings and payments that found no
    /// seat, once the payment provider confirmed each refund.
    pub refunded_cents: i64,
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SalesResponse {
    pub concert_id: Uuid,
    pub seat_types: Vec<SeatTypeSales>,
    pub bookings_confirmed: i64,
    pub bookings_cancelled: i64,
    /// Sales over time: the bookings still confirmed, by the UTC day they were made, oldest
    /// first (days without one left out).
    pub by_day: Vec<DaySales>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DaySales {
    /// `YYYY-MM-DD`, UTC.
    #[schema(example = "2027-05-01")]
    pub day: String,
    pub sold: i64,
}

pub fn parse_id(raw: &str, not_found: BookingError) -> Result<Uuid, BookingError> {
    Uuid::parse_str(raw).map_err(|_| not_found)
}

problem_responses!(
    struct CreateBookingProblems {
        MalformedBody,
        Unauthenticated,
        AdmissionRequired,
        ConcertNotFound,
        SeatTypeNotFound: "no such seat type, or one of another concert",
        SoldOut,
        AlreadyBooked,
        BookingClosed,
        SalesNotOpen,
        PaymentRequired,
        IdempotencyKeyReused,
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "a field is missing or not a UUID, or the `Idempotency-Key` is not 1 to 255 visible ASCII characters",
        RateLimited: "too many writes to bookings by this user or from this address",
        Unavailable: "safe to retry with the same `Idempotency-Key`",
    }
);

/// Book one ticket of a seat type.
#[utoipa::path(
    post, path = "/api/v1/bookings", tag = "bookings",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]([ -~]*[!-~])?$", nullable = false,
        description = "1 to 255 visible ASCII characters, inner spaces allowed (HTTP drops spaces at either end); a retry with the same key and body returns the original response"),
        ("Boxoffice-Admission" = Option<String>, Header, nullable = false,
            description = "The caller's admission from the concert's waiting room (`admission` of its QueueTicket); needed while the concert has a waiting room")),
    request_body = CreateBookingRequest,
    responses(
        (status = 201, description = "Booked; durable on disk", body = Booking,
            headers(("Location" = String, description = "/api/v1/bookings/{id}"))),
        CreateBookingProblems,
    )
)]
pub async fn create_booking(
    State(service): State<BookingService>,
    caller: AuthUser,
    client: ClientAddress,
    headers: HeaderMap,
    Json(request): Json<CreateBookingRequest>,
) -> Result<Response, BookingError> {
    service.take_write(&caller, client.0).await?;
    let asked = owner::NewWrite {
        kind: owner::Write::Booking,
        caller,
        concert_id: request.concert_id,
        seat_type_id: request.seat_type_id,
        key: idempotency_key(&headers)?,
        admission: admission(&headers),
    };
    owner::write(&service, asked).await
}

/// A list's `limit` and `cursor` (the id to continue after), each refused with its field.
pub fn page_request(
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<(u32, Option<Uuid>), BookingError> {
    let mut errors = FieldErrors::default();
    let limit = errors.check("limit", paging::limit(limit));
    let before = errors.check("cursor", paging::after_id(cursor));
    errors
        .finish(|| Some((limit?, before?)))
        .map_err(BookingError::Validation)
}

/// The request's `Idempotency-Key`, if it sent one.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, BookingError> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let raw = value.to_str().map_err(|_| {
        BookingError::invalid("Idempotency-Key", "must be visible ASCII characters")
    })?;
    IdempotencyKey::parse(raw)
        .map(Some)
        .map_err(|message| BookingError::invalid("Idempotency-Key", message))
}

/// Marks an answer replayed for a repeated `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The answer to a request that created something at `{collection}/{id}`: 201 with it and its
/// `Location`, or the saved answer of an earlier request with the same Idempotency-Key, marked
/// `Idempotent-Replayed`.
pub fn made_response<T>(made: Made<T>, collection: &str, id: impl Fn(&T) -> Uuid) -> Response
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let location = |id: &str| {
        HeaderValue::from_str(&format!("{collection}/{id}"))
            .unwrap_or_else(|_| HeaderValue::from_static("/"))
    };
    match made {
        Made::Created(made) => {
            let location = location(&id(&made).to_string());
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(made),
            )
                .into_response()
        }
        Made::Replayed { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
            let saved = serde_json::from_str::<T>(&body)
                .map(|made| id(&made).to_string())
                .unwrap_or_default();
            (
                status,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (header::LOCATION, location(&saved)),
                    (IDEMPOTENT_REPLAYED, HeaderValue::from_static("true")),
                ],
                body,
            )
                .into_response()
        }
    }
}

problem_responses!(
    struct ListBookingsProblems {
        Unauthenticated,
        ValidationFailed: "a bad `status`, `limit` or `cursor`, or an unknown parameter",
        Unavailable,
    }
);

/// The caller's bookings, newest first.
#[utoipa::path(
    get, path = "/api/v1/bookings", tag = "bookings",
    security(("bearer" = [])),
    params(ListBookingsQuery),
    responses(
        (status = 200, description = "A page of the caller's bookings, newest first", body = BookingPage),
        ListBookingsProblems,
    )
)]
pub async fn list_bookings(
    State(service): State<BookingService>,
    caller: AuthUser,
    Query(query): Query<ListBookingsQuery>,
) -> Result<Json<BookingPage>, BookingError> {
    let (limit, before) = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let items = service
        .list(caller, query.status, before, limit + 1)
        .await?;
    let (items, next_cursor) = paging::page(items, limit, |booking| booking.id);
    Ok(Json(BookingPage { items, next_cursor }))
}

problem_responses!(
    struct ListConcertBookingsProblems {
        Unauthenticated,
        Forbidden: "the caller is not an admin",
        ConcertNotFound: "no such concert (also for a malformed id)",
        ValidationFailed: "a bad `status`, `limit` or `cursor`, or an unknown parameter",
        Unavailable,
    }
);

/// A concert's bookings, newest first (admin): whoever booked them, confirmed or cancelled.
#[utoipa::path(
    get, path = "/api/v1/concerts/{id}/bookings", tag = "bookings",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Concert id; anything that is not a UUID is not found either"),
        ListBookingsQuery,
    ),
    responses(
        (status = 200, description = "A page of the concert's bookings, newest first", body = BookingPage),
        ListConcertBookingsProblems,
    )
)]
pub async fn list_concert_bookings(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
    Query(query): Query<ListBookingsQuery>,
) -> Result<Json<BookingPage>, BookingError> {
    if !caller.is_admin() {
        return Err(BookingError::Forbidden("admin"));
    }
    let concert_id = parse_id(&id, BookingError::ConcertNotFound)?;
    let (limit, before) = page_request(query.limit.as_deref(), query.cursor.as_deref())?;
    let items = service
        .list_for_concert(concert_id, query.status, before, limit + 1)
        .await?;
    let (items, next_cursor) = paging::page(items, limit, |booking| booking.id);
    Ok(Json(BookingPage { items, next_cursor }))
}

problem_responses!(
    struct GetBookingProblems {
        Unauthenticated,
        BookingNotFound: "no such booking (also for a malformed id or another user's booking)",
        Unavailable,
    }
);

/// One booking: the caller's own (admins may read any).
#[utoipa::path(
    get, path = "/api/v1/bookings/{id}", tag = "bookings",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Booking id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "The booking", body = Booking),
        GetBookingProblems,
    )
)]
pub async fn get_booking(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Booking>, BookingError> {
    let id = parse_id(&id, BookingError::BookingNotFound)?;
    Ok(Json(service.get(caller, id).await?))
}

problem_responses!(
    struct CancelBookingProblems {
        Unauthenticated,
        BookingNotFound: "no such booking (also for a malformed id or another user's booking)",
        AlreadyCancelled,
        BookingClosed: "the concert has started",
        RateLimited: "too many writes to bookings by this user or from this address",
        Unavailable,
    }
);

/// Cancel a booking: the seat is returned at once and a cancellation email is queued.
#[utoipa::path(
    post, path = "/api/v1/bookings/{id}/cancel", tag = "bookings",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Booking id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "Cancelled", body = Booking),
        CancelBookingProblems,
    )
)]
pub async fn cancel_booking(
    State(service): State<BookingService>,
    caller: AuthUser,
    client: ClientAddress,
    Path(id): Path<String>,
) -> Result<Json<Booking>, BookingError> {
    service.take_write(&caller, client.0).await?;
    let id = parse_id(&id, BookingError::BookingNotFound)?;
    Ok(Json(service.cancel(caller, id).await?))
}

problem_responses!(
    /// Availability is read from memory: only an unknown concert is an error.
    struct ConcertReadProblems {
        ConcertNotFound,
    }
);

/// Exact remaining seats of a concert: the cheap read.
#[utoipa::path(
    get, path = "/api/v1/concerts/{id}/availability", tag = "concerts",
    params(("id" = Uuid, Path, description = "Concert id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "Remaining seats per seat type, exact at the moment of the read", body = AvailabilityResponse),
        ConcertReadProblems,
    )
)]
pub async fn get_availability(
    State(service): State<BookingService>,
    Path(id): Path<String>,
) -> Result<Json<AvailabilityResponse>, BookingError> {
    let id = parse_id(&id, BookingError::ConcertNotFound)?;
    let availability = service
        .availability_of(id)
        .ok_or(BookingError::ConcertNotFound)?;
    Ok(Json(availability.into()))
}

/// Server-sent events: `availability` on connect and on every change (at most one per 100 ms),
/// `opened` when sales open, `closed` when they close.
#[utoipa::path(
    get, path = "/api/v1/concerts/{id}/availability/stream", tag = "concerts",
    params(("id" = Uuid, Path, description = "Concert id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "A `text/event-stream` of `availability` events (`data`: an `AvailabilityResponse`) and `opened` and `closed` events (`data`: `{\"concert_id\"}`); comments keep the connection alive",
            content_type = "text/event-stream", body = AvailabilityEvent),
        ConcertReadProblems,
    )
)]
pub async fn stream_availability(
    State(service): State<BookingService>,
    Path(id): Path<String>,
) -> Result<Response, BookingError> {
    let id = parse_id(&id, BookingError::ConcertNotFound)?;
    // Subscribe before the existence check so no change between the two is missed.
    let events = service.subscribe();
    if service.availability_of(id).is_none() {
        return Err(BookingError::ConcertNotFound);
    }
    Ok(availability_stream(
        id,
        service.view().clone(),
        service.clock().clone(),
        events,
        service.stop_token(),
    )
    .into_response())
}

problem_responses!(
    struct SalesProblems {
        Unauthenticated,
        Forbidden: "not an admin",
        ConcertNotFound,
        Unavailable,
    }
);

/// Sales of a concert, read from the booking store (admin).
#[utoipa::path(
    get, path = "/api/v1/concerts/{id}/sales", tag = "concerts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Concert id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "Sales per seat type; `sold + remaining == capacity`", body = SalesResponse),
        SalesProblems,
    )
)]
pub async fn get_sales(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<SalesResponse>, BookingError> {
    if !caller.is_admin() {
        return Err(BookingError::Forbidden("admin"));
    }
    let id = parse_id(&id, BookingError::ConcertNotFound)?;
    let report = service.sales(id).await?;
    Ok(Json(SalesResponse {
        concert_id: id,
        seat_types: report
            .seat_types
            .into_iter()
            .map(|seat| SeatTypeSales {
                id: seat.id,
                name: seat.name,
                capacity: seat.capacity,
                sold: seat.sold,
                held: seat.held,
                remaining: seat.remaining,
                revenue_cents: seat.revenue_cents,
                refunded_cents: seat.refunded_cents,
                currency: seat.currency,
            })
            .collect(),
        bookings_confirmed: report.bookings_confirmed,
        bookings_cancelled: report.bookings_cancelled,
        by_day: report
            .by_day
            .into_iter()
            .map(|(day, sold)| DaySales { day, sold })
            .collect(),
    }))
}
