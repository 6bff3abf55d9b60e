//! A concert's waiting room as a fan goes through it (API v1.1, "Waiting room for on-sales"):
//! joining the queue from the concert's page, the queue page — where the fan stands and how
//! long the wait should be, said again as it changes — and, once let through, the concert's
//! ticket types with the admission in each form, which [`hold`] sends to the API as
//! `Boxoffice-Admission`; from there on, checkout is the shop's ([`crate::shop`]).
//!
//! The API's stream of a place needs the fan's bearer token, which lives in an HttpOnly cookie
//! that no script reads; so the page follows a stream of the pages' own ([`stream`]), which
//! calls the API's in process as the fan and retells each event as the page's sentence — the
//! admission itself never reaches a script. Without JavaScript the page says the same on every
//! load, and a link loads it again.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use boxoffice_shared::clients::ADMISSION_HEADER;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::api::Api;
use crate::format::{Concert, Hold, QueueTicket};
use crate::page::{Chrome, CsrfForm, PageError, encode, render, see_other};
use crate::session::Visitor;
use crate::shop::{read_concert, refused_on_concert};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/concerts/{id}/queue", get(queue).post(join))
        .route("/concerts/{id}/queue/stream", get(stream))
        .route("/concerts/{id}/queue/hold", post(hold))
}

/// Takes a place in the concert's queue (or finds the one the fan has), then on to the queue
/// page; a refusal is said on the concert's page.
async fn join(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require(&format!("/concerts/{id}"))?;
    let path = format!("/api/v1/concerts/{}/queue", encode(&id));
    match api
        .call::<QueueTicket>(&visitor.caller, Method::POST, &path, None)
        .await
    {
        Ok(ticket) => Ok(see_other(
            visitor,
            &format!("/concerts/{}/queue", ticket.concert_id),
        )),
        Err(refusal) => refused_on_concert(api, visitor, &id, refusal).await,
    }
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    chrome: Chrome,
    concert: Concert,
    ticket: QueueTicket,
    /// Where the fan stands, as [`QueueTicket::place_text`] says it.
    place: String,
}

async fn queue(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    visitor.require(&format!("/concerts/{id}/queue"))?;
    queue_page(api, visitor, &id, StatusCode::OK, None).await
}

/// The fan's place in the queue of concert `id`, with `notice` above it; the concert's page
/// for a fan who is not in its queue (or when it has no waiting room any more: it says how to
/// buy).
async fn queue_page(
    api: Api,
    visitor: Visitor,
    id: &str,
    status: StatusCode,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let concert = read_concert(&api, &visitor, id).await?;
    let path = format!("/api/v1/concerts/{}/queue", concert.id);
    let ticket: QueueTicket = match api.get(&visitor.caller, &path).await {
        Ok(ticket) => ticket,
        Err(refusal) if refusal.status == StatusCode::NOT_FOUND => {
            return Ok(see_other(visitor, &format!("/concerts/{}", concert.id)));
        }
        Err(refusal) => return Err(refusal.into()),
    };
    let place = ticket.place_text(concert.sales_open_at);
    let chrome = Chrome::of(&visitor).with_notice(notice);
    let page = QueuePage {
        chrome,
        concert,
        ticket,
        place,
    };
    Ok(render(visitor, status, &page))
}

/// The hold form of a fan let through: the ticket type, and the admission.
#[derive(Debug, Deserialize)]
struct AdmittedSeatForm {
    csrf: String,
    seat_type_id: String,
    #[serde(default)]
    admission: String,
}

/// Takes a seat (a hold) with the fan's admission, then on to the shop's checkout; a refusal
/// (`admission_required` once the turn is over or used) is said on the queue page.
async fn hold(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<AdmittedSeatForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require(&format!("/concerts/{id}/queue"))?;
    let body = json!({ "concert_id": id, "seat_type_id": form.seat_type_id });
    // What is not even a header value is no admission: the API says so.
    let headers: Vec<(HeaderName, HeaderValue)> = HeaderValue::from_str(form.admission.trim())
        .ok()
        .filter(|value| !value.is_empty())
        .map(|value| (ADMISSION_HEADER, value))
        .into_iter()
        .collect();
    let path = "/api/v1/holds";
    match api
        .call_with::<Hold>(&visitor.caller, Method::POST, path, Some(&body), &headers)
        .await
    {
        Ok(hold) => Ok(see_other(visitor, &format!("/holds/{}", hold.id))),
        Err(refusal) if refusal.needs_sign_in() => {
            Err(PageError::SignIn(format!("/concerts/{id}/queue")))
        }
        Err(refusal) => {
            let sentence = refusal.sentence();
            queue_page(api, visitor, &id, refusal.status, Some(sentence)).await
        }
    }
}

/// The fan's place as it changes, as server-sent events for the queue page's script: the API's
/// stream, called in process as the fan, each `position` event retold as `{"text": sentence}`
/// and the `admitted` event as the turn's sentence (the page then loads itself again, to show
/// the ticket types). Any refusal is its bare status, which ends an `EventSource` for good.
async fn stream(State(api): State<Api>, visitor: Visitor, Path(id): Path<String>) -> Response {
    if visitor.user.is_none() {
        return visitor.respond(StatusCode::UNAUTHORIZED);
    }
    let concert = match read_concert(&api, &visitor, &id).await {
        Ok(concert) => concert,
        Err(refusal) => return visitor.respond(refusal.status),
    };
    let path = format!("/api/v1/concerts/{}/queue/stream", concert.id);
    let body = match api.stream(&visitor.caller, &path).await {
        Ok(body) => body,
        Err(refusal) => return visitor.respond(refusal.status),
    };
    let mut retold = Retelling::new(concert.sales_open_at);
    let body = body.map_frame(move |frame| frame.map_data(|data| retold.feed(&data)));
    let answer = (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::new(body),
    );
    visitor.respond(answer.into_response())
}

/// The API's events of a place, retold for the page as they come, whole events at a time (an
/// event may come in pieces).
struct Retelling {
    /// What came of an event not yet complete.
    pending: Vec<u8>,
    /// When the concert's sales open, for the sentence before the opening.
    opens: Option<OffsetDateTime>,
}

impl Retelling {
    fn new(opens: Option<OffsetDateTime>) -> Self {
        Self {
            pending: Vec::new(),
            opens,
        }
    }

    /// The page's events for every event `data` completes.
    fn feed(&mut self, data: &[u8]) -> Bytes {
        self.pending.extend_from_slice(data);
        let mut told = String::new();
        while let Some(end) = self.pending.windows(2).position(|pair| pair == b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..end + 2).collect();
            told.push_str(&self.retell(&String::from_utf8_lossy(&event)));
        }
        Bytes::from(told)
    }

    /// One event of the API's (`event:` and `data:` lines) as the page's. A keep-alive comment
    /// stays a comment, so the connection still shows signs of life.
    fn retell(&self, event: &str) -> String {
        let mut name = "";
        let mut data = String::new();
        for line in event.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                name = value.trim();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        let ticket = serde_json::from_str::<QueueTicket>(&data);
        match (name, ticket) {
            ("position" | "admitted", Ok(ticket)) => {
                let text = serde_json::json!({ "text": ticket.place_text(self.opens) });
                format!("event: {name}\ndata: {text}\n\n")
            }
            _ => ":\n\n".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_events_are_retold_as_sentences_without_the_admission() {
        let mut retelling = Retelling::new(None);
        let position = concat!(
            "event: position\n",
            "data: {\"concert_id\":\"00000000-0000-0000-0000-000000000000\",\"state\":\"waiting\",",
            "\"position\":4,\"estimated_wait_seconds\":240,\"admission\":null,\"admitted_until\":null}\n\n"
        );
        // In two pieces: nothing until the event is whole.
        let (first, second) = position.split_at(30);
        assert!(retelling.feed(first.as_bytes()).is_empty());
        let told = retelling.feed(second.as_bytes());
        assert_eq!(
            told,
            "event: position\ndata: {\"text\":\"You are number 4 in the queue. Estimated wait: \
             about 4 minutes.\"}\n\n"
        );
        let admitted = concat!(
            "event: admitted\n",
            "data: {\"concert_id\":\"00000000-0000-0000-0000-000000000000\",\"state\":\"admitted\",",
            "\"position\":null,\"estimated_wait_seconds\":null,\"admission\":\"secret-token\",",
            "\"admitted_until\":\"2030-01-01T10:00:00Z\"}\n\n",
            ":\n\n"
        );
        let told = String::from_utf8(retelling.feed(admitted.as_bytes()).to_vec()).unwrap();
        assert!(
            told.starts_with("event: admitted\ndata: {\"text\":\"It's your turn"),
            "{told}"
        );
        assert!(!told.contains("secret-token"), "{told}");
        assert!(told.ends_with("\n\n:\n\n"), "the keep-alive stays: {told}");
    }
}
