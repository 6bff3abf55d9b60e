//! The ticket and door routes (API contract, "Tickets and check-in"): a confirmed booking's
//! signed code and QR code, the public key that verifies codes offline, and check-in.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_shared::extract::{ClientAddress, Json};
use boxoffice_shared::problem_responses;
use boxoffice_shared::token::AuthUser;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::parse_id;
use crate::error::BookingError;
use crate::service::{Admitted, BookingService, Ticket, TicketStatus};

/// The ticket and door routes, with their OpenAPI descriptions.
pub fn router() -> OpenApiRouter<BookingService> {
    OpenApiRouter::new()
        .routes(routes!(ticket_key))
        .routes(routes!(get_ticket))
        .routes(routes!(get_ticket_svg))
        .routes(routes!(check_in, list_checkins))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketKeyResponse {
    /// Always `EdDSA` (Ed25519).
    #[schema(example = "EdDSA")]
    pub alg: &'static str,
    /// The public key as `SubjectPublicKeyInfo` PEM.
    pub public_key_pem: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketResponse {
    pub booking_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub holder_name: String,
    /// URL-safe, at most 256 characters, signed: base64url (no padding) of version `1`, the
    /// booking id, the concert id (16 bytes each) and the Ed25519 signature of those 33 bytes.
    #[schema(max_length = 256, pattern = "^[A-Za-z0-9_-]+$")]
    pub code: String,
    pub status: TicketStatus,
}

impl From<Ticket> for TicketResponse {
    fn from(ticket: Ticket) -> Self {
        Self {
            booking_id: ticket.booking_id,
            concert_id: ticket.concert_id,
            seat_type_id: ticket.seat_type_id,
            holder_name: ticket.holder_name,
            code: ticket.code,
            status: ticket.status,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckInRequest {
    /// The scanned ticket code.
    #[schema(min_length = 1, max_length = 256)]
    pub code: String,
    /// The scanner's name for this scan: the same scan sent again with the same nonce (a retry
    /// after a lost answer) gets the same 201.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128, required = false)]
    pub nonce: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckInResponse {
    pub booking_id: Uuid,
    pub seat_type_id: Uuid,
    pub holder_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_in_at: OffsetDateTime,
}

impl From<Admitted> for CheckInResponse {
    fn from(admitted: Admitted) -> Self {
        Self {
            booking_id: admitted.checked_in.booking_id,
            seat_type_id: admitted.checked_in.seat_type_id,
            holder_name: admitted.holder_name,
            checked_in_at: admitted.checked_in.checked_in_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatTypeCheckinsResponse {
    pub id: Uuid,
    pub name: String,
    /// Confirmed bookings: tickets that may come in.
    pub confirmed: i64,
    /// Of those, the ones checked in.
    pub checked_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckinsResponse {
    pub concert_id: Uuid,
    pub seat_types: Vec<SeatTypeCheckinsResponse>,
}

/// The public key that verifies ticket codes, for scanners that check tickets offline.
#[utoipa::path(
    get, path = "/api/v1/tickets/key", tag = "tickets",
    responses((status = 200, description = "The ticket key's public half", body = TicketKeyResponse))
)]
pub async fn ticket_key(State(service): State<BookingService>) -> Json<TicketKeyResponse> {
    Json(TicketKeyResponse {
        alg: "EdDSA",
        public_key_pem: service.ticket_public_key().to_owned(),
    })
}

problem_responses!(
    struct TicketProblems {
        Unauthenticated,
        BookingNotFound: "no such booking, or another user's",
        Unavailable,
    }
);

/// A booking's ticket: its signed code and where it stands (holder or admin).
#[utoipa::path(
    get, path = "/api/v1/bookings/{id}/ticket", tag = "tickets",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Booking id")),
    responses(
        (status = 200, description = "The ticket", body = TicketResponse),
        TicketProblems,
    )
)]
pub async fn get_ticket(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<TicketResponse>, BookingError> {
    let id = parse_id(&id, BookingError::BookingNotFound)?;
    Ok(Json(service.ticket(caller, id).await?.into()))
}

/// A booking's ticket code as a QR code (holder or admin).
#[utoipa::path(
    get, path = "/api/v1/bookings/{id}/ticket.svg", tag = "tickets",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Booking id")),
    responses(
        (status = 200, description = "The code as a QR code", content_type = "image/svg+xml", body = String),
        TicketProblems,
    )
)]
pub async fn get_ticket_svg(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, BookingError> {
    let id = parse_id(&id, BookingError::BookingNotFound)?;
    let svg = service.ticket_svg(caller, id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        svg,
    )
        .into_response())
}

problem_responses!(
    struct CheckInProblems {
        MalformedBody,
        Unauthenticated,
        Forbidden: "neither door staff nor an admin",
        ConcertNotFound,
        AlreadyCheckedIn,
        TicketCancelled,
        InvalidTicket,
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "`code` missing, or a `nonce` that is empty or over 128 characters",
        RateLimited: "too many writes by this user or from this address",
        Unavailable: "safe to retry with the same `nonce`",
    }
);

/// Check a ticket in at the door (door staff or admin): exactly one scan of a ticket is
/// admitted, however many doors scan it at once.
#[utoipa::path(
    post, path = "/api/v1/concerts/{id}/checkins", tag = "tickets",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Concert id")),
    request_body = CheckInRequest,
    responses(
        (status = 201, description = "Admitted (or the same scan again, by its nonce)", body = CheckInResponse),
        CheckInProblems,
    )
)]
pub async fn check_in(
    State(service): State<BookingService>,
    caller: AuthUser,
    client: ClientAddress,
    Path(id): Path<String>,
    Json(request): Json<CheckInRequest>,
) -> Result<Response, BookingError> {
    let id = parse_id(&id, BookingError::ConcertNotFound)?;
    service.take_write(&caller, client.0).await?;
    let admitted = service
        .check_in(caller, id, &request.code, request.nonce)
        .await?;
    Ok((StatusCode::CREATED, Json(CheckInResponse::from(admitted))).into_response())
}

problem_responses!(
    struct CheckinsProblems {
        Unauthenticated,
        Forbidden: "neither door staff nor an admin",
        ConcertNotFound,
        Unavailable,
    }
);

/// Confirmed and checked-in tickets per seat type (door staff or admin).
#[utoipa::path(
    get, path = "/api/v1/concerts/{id}/checkins", tag = "tickets",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Concert id")),
    responses(
        (status = 200, description = "Counts per seat type, in the order they were added", body = CheckinsResponse),
        CheckinsProblems,
    )
)]
pub async fn list_checkins(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<CheckinsResponse>, BookingError> {
    let id = parse_id(&id, BookingError::ConcertNotFound)?;
    let seat_types = service.checkins(caller, id).await?;
    Ok(Json(CheckinsResponse {
        concert_id: id,
        seat_types: seat_types
            .into_iter()
            .map(|seat| SeatTypeCheckinsResponse {
                id: seat.id,
                name: seat.name,
                confirmed: seat.counts.confirmed,
                checked_in: seat.counts.checked_in,
            })
            .collect(),
    }))
}
