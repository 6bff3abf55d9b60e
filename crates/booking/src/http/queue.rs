//! The waiting-room routes (API v1.1, "Waiting room for on-sales"): join a concert's queue, read
//! one's place, and follow it as a stream until admitted.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use boxoffice_shared::extract::Json;
use boxoffice_shared::problem_responses;
use boxoffice_shared::token::AuthUser;
use futures_util::Stream;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::parse_id;
use crate::error::BookingError;
use crate::queue::{QueueState, QueueTicket};
use crate::service::BookingService;

/// The waiting-room routes, with their OpenAPI descriptions.
pub fn router() -> OpenApiRouter<BookingService> {
    OpenApiRouter::new()
        .routes(routes!(join_queue, get_queue))
        .routes(routes!(queue_stream))
}

/// The caller's place in a concert's waiting room.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueTicketBody {
    pub concert_id: Uuid,
    /// `waiting`, or `admitted` once the room let the caller through.
    #[schema(example = "waiting")]
    pub state: &'static str,
    /// 1 is next. `null` before sales open (the pre-queue is shuffled then) and once admitted.
    pub position: Option<i64>,
    /// The position at the room's admission rate. `null` when `position` is.
    pub estimated_wait_seconds: Option<i64>,
    /// While admitted and not expired: the token for the `Boxoffice-Admission` header of
    /// `POST /bookings` and `POST /holds`.
    pub admission: Option<String>,
    /// Until when the admission is good (also once it is not any more).
    #[serde(with = "time::serde::rfc3339::option")]
    pub admitted_until: Option<OffsetDateTime>,
}

impl From<QueueTicket> for QueueTicketBody {
    fn from(ticket: QueueTicket) -> Self {
        Self {
            concert_id: ticket.concert_id,
            state: ticket.state.as_str(),
            position: ticket.position,
            estimated_wait_seconds: ticket.estimated_wait_seconds,
            admission: ticket.admission,
            admitted_until: ticket.admitted_until,
        }
    }
}

problem_responses!(
    struct JoinQueueProblems {
        Unauthenticated,
        ConcertNotFound: "no such concert (also for a malformed id)",
        NotFound: "the concert has no waiting room",
        BookingClosed: "the concert has started or was cancelled",
        Unavailable,
    }
);

/// Join the concert's waiting room. Everyone who joins before `sales_open_at` is shuffled into
/// a random order when sales open; later arrivals queue behind them in arrival order. Joining
/// again returns the same place (200).
#[utoipa::path(
    post, path = "/api/v1/concerts/{id}/queue", tag = "waiting room",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Concert id; anything that is not a UUID is not found either")),
    responses(
        (status = 201, description = "A new place", body = QueueTicketBody),
        (status = 200, description = "The place the caller already had", body = QueueTicketBody),
        JoinQueueProblems,
    )
)]
pub async fn join_queue(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, BookingError> {
    let concert_id = parse_id(&id, BookingError::ConcertNotFound)?;
    let (ticket, new) = service.join_queue(&caller, concert_id).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(QueueTicketBody::from(ticket))).into_response())
}

problem_responses!(
    struct GetQueueProblems {
        Unauthenticated,
        ConcertNotFound: "no such concert (also for a malformed id)",
        NotFound: "the concert has no waiting room, or the caller has not joined it",
        BookingClosed: "the concert has started or was cancelled",
        Unavailable,
    }
);

/// The caller's place in the concert's waiting room.
#[utoipa::path(
    get, path = "/api/v1/concerts/{id}/queue", tag = "waiting room",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Concert id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "The caller's place", body = QueueTicketBody),
        GetQueueProblems,
    )
)]
pub async fn get_queue(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<QueueTicketBody>, BookingError> {
    let concert_id = parse_id(&id, BookingError::ConcertNotFound)?;
    let ticket = service.queue_ticket(&caller, concert_id).await?;
    Ok(Json(ticket.into()))
}

/// One event of `GET /api/v1/concerts/{id}/queue/stream`, as a server-sent event's fields
/// (OpenAPI 3.1 has the schema of an event stream describe each event).
#[derive(ToSchema)]
#[allow(dead_code)] // Only described: `queue_stream` writes these.
pub struct QueueEvent {
    #[schema(inline)]
    event: QueueEventKind,
    /// JSON: a `QueueTicketBody`.
    #[schema(content_media_type = "application/json")]
    data: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum QueueEventKind {
    Position,
    Admitted,
}

/// The caller's place as it changes: a `position` event (a QueueTicket) at once and whenever
/// the position changes, and an `admitted` event (the QueueTicket with its `admission`) when the
/// room lets the caller through. Ends when the server shuts down.
#[utoipa::path(
    get, path = "/api/v1/concerts/{id}/queue/stream", tag = "waiting room",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Concert id; anything that is not a UUID is not found either")),
    responses(
        (status = 200, description = "Server-sent events: `position` and `admitted`, each a QueueTicket",
            content_type = "text/event-stream", body = QueueEvent),
        GetQueueProblems,
    )
)]
pub async fn queue_stream(
    State(service): State<BookingService>,
    caller: AuthUser,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, BookingError> {
    let concert_id = parse_id(&id, BookingError::ConcertNotFound)?;
    let updates = service.queue_updates(&caller, concert_id).await?;
    let events = ReceiverStream::new(updates).map(|ticket| {
        let name = match ticket.state {
            QueueState::Waiting => "position",
            QueueState::Admitted => "admitted",
        };
        let event = Event::default().event(name);
        Ok(event
            .json_data(QueueTicketBody::from(ticket))
            .unwrap_or_else(|_| Event::default().comment("unserialisable ticket")))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
