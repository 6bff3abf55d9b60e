//! New bookings and holds sent to their concert's owner ([`crate::owner`]): the instance a fan's
//! request reaches checks the token, the limits and what its view answers, then forwards the
//! write to the owner's `/internal/v1/owned/...` route and relays the answer as it came.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use boxoffice_shared::component::Url;
use boxoffice_shared::extract::Json;
use boxoffice_shared::remote::{ServiceCredential, guarded};
use boxoffice_shared::token::{AuthUser, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{IDEMPOTENT_REPLAYED, made_response};
use crate::domain::IdempotencyKey;
use crate::error::BookingError;
use crate::service::BookingService;

/// How long a forward may take: the owner's answer comes after its commit, which a storm queues.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Which write is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Booking,
    Hold,
}

impl Write {
    fn path(self) -> &'static str {
        match self {
            Write::Booking => "/internal/v1/owned/bookings",
            Write::Hold => "/internal/v1/owned/holds",
        }
    }
}

/// A new booking or hold as the owner receives it: the caller the forwarding instance
/// authenticated, and the request as the caller sent it.
#[derive(Debug, Serialize, Deserialize)]
pub struct OwnedWrite {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub idempotency_key: Option<String>,
    pub admission: Option<String>,
}

impl OwnedWrite {
    pub fn new(
        caller: &AuthUser,
        concert_id: Uuid,
        seat_type_id: Uuid,
        key: Option<&IdempotencyKey>,
        admission: Option<&str>,
    ) -> Self {
        Self {
            user_id: caller.user_id,
            session_id: caller.session_id,
            role: caller.role,
            concert_id,
            seat_type_id,
            idempotency_key: key.map(|key| key.as_str().to_owned()),
            admission: admission.map(str::to_owned),
        }
    }

    fn caller(&self) -> AuthUser {
        AuthUser {
            user_id: self.user_id,
            session_id: self.session_id,
            role: self.role,
        }
    }

    fn key(&self) -> Result<Option<IdempotencyKey>, BookingError> {
        self.idempotency_key
            .as_deref()
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(|message| BookingError::invalid("Idempotency-Key", message))
    }
}

/// The owner's side: writes forwarded by the other instances, for callers they authenticated.
pub fn routes(service: BookingService, credential: ServiceCredential) -> Router {
    let routes = Router::new()
        .route(Write::Booking.path(), post(owned_booking))
        .route(Write::Hold.path(), post(owned_hold))
        .with_state(service);
    guarded(routes, credential)
}

async fn owned_booking(
    State(service): State<BookingService>,
    Json(write): Json<OwnedWrite>,
) -> Result<Response, BookingError> {
    service.owned_here(write.concert_id).await;
    let outcome = service
        .book_admitted(
            write.caller(),
            write.concert_id,
            write.seat_type_id,
            write.key()?,
            write.admission.as_deref(),
        )
        .await?;
    Ok(made_response(outcome, "/api/v1/bookings", |booking| {
        booking.id
    }))
}

async fn owned_hold(
    State(service): State<BookingService>,
    Json(write): Json<OwnedWrite>,
) -> Result<Response, BookingError> {
    service.owned_here(write.concert_id).await;
    let outcome = service
        .hold_admitted(
            write.caller(),
            write.concert_id,
            write.seat_type_id,
            write.key()?,
            write.admission.as_deref(),
        )
        .await?;
    Ok(made_response(outcome, "/api/v1/holds", |hold| hold.id))
}

/// Sends `write` to the owner at `owner` and relays its answer. `Ok(None)`: the owner could not
/// be connected to, so nothing was sent and the write may be made here. A forward that fails once
/// sent is refused as unavailable: the owner may have made it, and a retry with the same
/// `Idempotency-Key` finds out.
pub async fn forward(
    service: &BookingService,
    owner: &Url,
    kind: Write,
    write: &OwnedWrite,
) -> Result<Option<Response>, BookingError> {
    let Some(ownership) = service.ownership() else {
        return Ok(None);
    };
    let mut url = owner.clone();
    url.set_path(kind.path());
    let request = ownership
        .http
        .post(url)
        .json(write)
        .timeout(FORWARD_TIMEOUT);
    let sent = ownership.credential.authorize(request).send().await;
    let response = match sent {
        Ok(response) => response,
        Err(error) if error.is_connect() => {
            tracing::warn!(%owner, %error, "a concert's owner cannot be reached; selling here");
            ownership.owners.unreachable(owner);
            metrics::counter!("booking_forwards_total", "outcome" => "unreachable").increment(1);
            return Ok(None);
        }
        Err(error) => {
            metrics::counter!("booking_forwards_total", "outcome" => "failed").increment(1);
            return Err(BookingError::PeerUnavailable(format!(
                "the concert's owner did not answer: {error}"
            )));
        }
    };
    metrics::counter!("booking_forwards_total", "outcome" => "relayed").increment(1);
    Ok(Some(relay(response).await?))
}

/// The owner's answer as this instance's: status, the headers a client reads, and the body.
async fn relay(response: reqwest::Response) -> Result<Response, BookingError> {
    const KEPT: [HeaderName; 4] = [
        header::CONTENT_TYPE,
        header::LOCATION,
        header::RETRY_AFTER,
        IDEMPOTENT_REPLAYED,
    ];
    let status = StatusCode::from_u16(response.status().as_u16())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers: Vec<(HeaderName, HeaderValue)> = KEPT
        .iter()
        .filter_map(|name| {
            let value = response.headers().get(name.as_str())?;
            let value = HeaderValue::from_bytes(value.as_bytes()).ok()?;
            Some((name.clone(), value))
        })
        .collect();
    let body = response.bytes().await.map_err(|error| {
        BookingError::PeerUnavailable(format!("the concert's owner's answer broke off: {error}"))
    })?;
    let mut relayed = (status, body).into_response();
    relayed.headers_mut().extend(headers);
    Ok(relayed)
}
