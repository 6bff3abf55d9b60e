//! New bookings and holds sent to their concert's owner ([`crate::owner`]): the instance a fan's
//! request reaches checks the token, the limits and what its view answers, then forwards the
//! write (batched with others, [`crate::owner::forward`]) to the owner's
//! `/internal/v1/owned/batch` route and relays the owner's answer as it came.

use axum::Router;
use axum::body::to_bytes;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use boxoffice_shared::clients::{OWNER_HEADER, SOLD_OUT_LASTS_HEADER};
use boxoffice_shared::component::Url;
use boxoffice_shared::extract::Json;
use boxoffice_shared::remote::{ServiceCredential, guarded};
use boxoffice_shared::token::AuthUser;
use futures_util::future::join_all;
use uuid::Uuid;

use super::{IDEMPOTENT_REPLAYED, made_response};
use crate::domain::IdempotencyKey;
use crate::error::BookingError;
use crate::owner::forward::BATCH_PATH;
pub use crate::owner::forward::{Answer, Batch, Failure, OwnedWrite, Write};
use crate::service::BookingService;

/// The headers of an answer a client reads, relayed from the owner.
static KEPT: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::RETRY_AFTER,
    IDEMPOTENT_REPLAYED,
];

/// A new booking or hold as a caller asked this instance for it.
pub struct NewWrite<'a> {
    pub kind: Write,
    pub caller: AuthUser,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub key: Option<IdempotencyKey>,
    pub admission: Option<&'a str>,
}

impl NewWrite<'_> {
    /// The write as its concert's owner is sent it.
    fn owned(&self) -> OwnedWrite {
        OwnedWrite {
            kind: self.kind,
            user_id: self.caller.user_id,
            session_id: self.caller.session_id,
            role: self.caller.role,
            concert_id: self.concert_id,
            seat_type_id: self.seat_type_id,
            idempotency_key: self.key.as_ref().map(|key| key.as_str().to_owned()),
            admission: self.admission.map(str::to_owned),
        }
    }
}

impl OwnedWrite {
    /// The write as the forwarding instance was asked for it.
    fn asked(&self) -> Result<NewWrite<'_>, BookingError> {
        let key = (self.idempotency_key.as_deref())
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(|message| BookingError::invalid("Idempotency-Key", message))?;
        Ok(NewWrite {
            kind: self.kind,
            caller: AuthUser {
                user_id: self.user_id,
                session_id: self.session_id,
                role: self.role,
            },
            concert_id: self.concert_id,
            seat_type_id: self.seat_type_id,
            key,
            admission: self.admission.as_deref(),
        })
    }
}

/// The owner's side: batches of writes forwarded by the other instances, for callers they
/// authenticated.
pub fn routes(service: BookingService, credential: ServiceCredential) -> Router {
    let routes = Router::new()
        .route(BATCH_PATH, post(owned_batch))
        .with_state(service);
    guarded(routes, credential)
}

/// Makes every write of the batch at once (so the writer group-commits them together) and
/// answers each as its own request would have been answered.
async fn owned_batch(
    State(service): State<BookingService>,
    Json(batch): Json<Batch<OwnedWrite>>,
) -> axum::Json<Batch<Answer>> {
    let answers = batch.items.into_iter().map(|write| {
        let service = service.clone();
        async move {
            let made = match write.asked() {
                Ok(asked) => make(&service, asked).await,
                Err(error) => Err(error),
            };
            answer_of(made.unwrap_or_else(IntoResponse::into_response)).await
        }
    });
    axum::Json(Batch {
        items: join_all(answers).await,
    })
}

/// How long the gateway may repeat a `sold_out` answer at most ([`SOLD_OUT_LASTS_HEADER`]): a
/// seat that comes back in a way the gateway does not see (through another gateway, say) is
/// offered again within this.
pub const SOLD_OUT_REPEATED_FOR: time::Duration = time::Duration::milliseconds(100);

/// Makes a new booking or hold a caller asked this instance for: at its concert's owner when
/// that is another instance (a forward), else here. When concerts have owners (behind the
/// gateway), the answer names the owner ([`OWNER_HEADER`]), and a `sold_out` refusal that
/// holds for every caller says for how long ([`SOLD_OUT_LASTS_HEADER`]).
pub async fn write(
    service: &BookingService,
    asked: NewWrite<'_>,
) -> Result<Response, BookingError> {
    let (concert_id, seat_type_id) = (asked.concert_id, asked.seat_type_id);
    let for_anyone = asked.key.is_none() && asked.admission.is_none();
    match write_here_or_there(service, asked).await {
        Err(BookingError::SoldOut) if for_anyone && service.ownership().is_some() => {
            let mut response = BookingError::SoldOut.into_response();
            let lasts = service.sold_out_lasts(concert_id, seat_type_id, SOLD_OUT_REPEATED_FOR);
            if let Some(lasts) = lasts {
                let millis = lasts.whole_milliseconds().max(1);
                if let Ok(value) = HeaderValue::from_str(&millis.to_string()) {
                    response.headers_mut().insert(SOLD_OUT_LASTS_HEADER, value);
                }
            }
            Ok(response)
        }
        answered => answered,
    }
}

/// [`write`], the request made at its concert's owner or here.
async fn write_here_or_there(
    service: &BookingService,
    asked: NewWrite<'_>,
) -> Result<Response, BookingError> {
    let concert_id = asked.concert_id;
    let mut owner = service
        .owner_elsewhere(
            &asked.caller,
            concert_id,
            asked.seat_type_id,
            asked.key.as_ref(),
            asked.admission,
        )
        .await?;
    let forwarded = match &owner {
        Some(owner) => forward(service, owner, asked.owned()).await?,
        None => None,
    };
    let mut response = match forwarded {
        Some(response) => response,
        None => {
            let made = make(service, asked).await?;
            owner = service.owner_of(concert_id);
            made
        }
    };
    if let Some(owner) = owner
        && let Ok(owner) = HeaderValue::from_str(owner.as_str())
    {
        response.headers_mut().insert(OWNER_HEADER, owner);
    }
    Ok(response)
}

/// Makes `asked` here.
async fn make(service: &BookingService, asked: NewWrite<'_>) -> Result<Response, BookingError> {
    service.owned_here(asked.concert_id).await;
    let NewWrite {
        kind,
        caller,
        concert_id,
        seat_type_id,
        key,
        admission,
    } = asked;
    Ok(match kind {
        Write::Booking => {
            let made = service
                .book_admitted(caller, concert_id, seat_type_id, key, admission)
                .await?;
            made_response(made, "/api/v1/bookings", |booking| booking.id)
        }
        Write::Hold => {
            let made = service
                .hold_admitted(caller, concert_id, seat_type_id, key, admission)
                .await?;
            made_response(made, "/api/v1/holds", |hold| hold.id)
        }
    })
}

/// A response as an [`Answer`] to send back.
async fn answer_of(response: Response) -> Answer {
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let headers = KEPT
        .iter()
        .filter_map(|name| {
            let value = parts.headers.get(name)?.to_str().ok()?;
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect();
    Answer {
        status: parts.status.as_u16(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// An [`Answer`] as this instance's response.
fn response_of(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    for (name, value) in answer.headers {
        let kept = KEPT.iter().find(|kept| kept.as_str() == name);
        if let (Some(name), Ok(value)) = (kept, HeaderValue::from_str(&value)) {
            response.headers_mut().insert(name.clone(), value);
        }
    }
    response
}

/// Sends `write` to the owner at `owner` and relays its answer. `Ok(None)`: the owner could not
/// be connected to, so nothing was sent and the write may be made here. A forward that fails once
/// sent is refused as unavailable: the owner may have made it, and a retry with the same
/// `Idempotency-Key` finds out.
pub async fn forward(
    service: &BookingService,
    owner: &Url,
    write: OwnedWrite,
) -> Result<Option<Response>, BookingError> {
    let Some(ownership) = service.ownership() else {
        return Ok(None);
    };
    match ownership.forwarder.send(owner, write).await {
        Ok(answer) => {
            metrics::counter!("booking_forwards_total", "outcome" => "relayed").increment(1);
            Ok(Some(response_of(answer)))
        }
        Err(Failure::NotSent) => {
            tracing::warn!(%owner, "a concert's owner cannot be reached; selling here");
            ownership.owners.unreachable(owner);
            metrics::counter!("booking_forwards_total", "outcome" => "unreachable").increment(1);
            Ok(None)
        }
        Err(Failure::Lost(why)) => {
            tracing::warn!(%owner, %why, "a write forwarded to its concert's owner got no answer");
            metrics::counter!("booking_forwards_total", "outcome" => "failed").increment(1);
            Err(BookingError::PeerUnavailable(format!(
                "the concert's owner did not answer: {why}"
            )))
        }
    }
}
