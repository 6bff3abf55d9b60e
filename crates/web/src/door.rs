//! The door: staff pick a concert, then type, paste or scan ticket codes and get a big, clear
//! answer, with the counts per ticket type. Each scan form carries a fresh nonce, so a form sent
//! twice (a double tap, a retry after a dropped connection) is the same scan to the API.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Api, Refusal};
use crate::format::{Concert, Page, parse_iso};
use crate::page::{Chrome, PageError, encode, render};
use crate::session::Visitor;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/door", get(concerts))
        .route("/door/{id}", get(door).post(scan))
}

#[derive(Template)]
#[template(path = "door_concerts.html")]
struct ConcertsPage {
    chrome: Chrome,
    concerts: Vec<Concert>,
}

/// The concerts to come, to pick the one at the door.
async fn concerts(State(api): State<Api>, visitor: Visitor) -> Result<Response, PageError> {
    visitor.require_door_staff("/door")?;
    let page: Page<Concert> = api
        .get(
            &visitor.caller,
            "/api/v1/concerts?status=available&limit=50",
        )
        .await?;
    let template = ConcertsPage {
        chrome: Chrome::of(&visitor),
        concerts: page.items,
    };
    Ok(render(visitor, StatusCode::OK, &template))
}

/// What the last scan came to.
pub struct Answer {
    /// `admitted`, `already`, `cancelled` or `invalid`.
    pub kind: &'static str,
    pub headline: String,
    pub detail: String,
}

/// Check-in counts of one ticket type.
pub struct Count {
    pub name: String,
    pub confirmed: i64,
    pub checked_in: i64,
}

#[derive(Template)]
#[template(path = "door.html")]
struct DoorPage {
    chrome: Chrome,
    concert: Concert,
    answer: Option<Answer>,
    counts: Vec<Count>,
    nonce: String,
}

async fn door(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    visitor.require_door_staff(&format!("/door/{id}"))?;
    door_page(&api, visitor, &id, None, StatusCode::OK).await
}

async fn door_page(
    api: &Api,
    visitor: Visitor,
    id: &str,
    answer: Option<Answer>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let id = encode(id);
    let concert: Concert = api
        .get(&visitor.caller, &format!("/api/v1/concerts/{id}"))
        .await?;
    let counts: Value = api
        .get(&visitor.caller, &format!("/api/v1/concerts/{id}/checkins"))
        .await?;
    let counts = counts["seat_types"]
        .as_array()
        .map(|seats| {
            seats
                .iter()
                .map(|seat| Count {
                    name: seat["name"].as_str().unwrap_or_default().to_owned(),
                    confirmed: seat["confirmed"].as_i64().unwrap_or_default(),
                    checked_in: seat["checked_in"].as_i64().unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let template = DoorPage {
        chrome: Chrome::of(&visitor),
        concert,
        answer,
        counts,
        nonce: uuid::Uuid::new_v4().to_string(),
    };
    Ok(render(visitor, status, &template))
}

#[derive(Debug, Deserialize)]
struct ScanForm {
    csrf: String,
    code: String,
    #[serde(default)]
    nonce: String,
}

/// Checks a code in and says what it came to.
async fn scan(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<ScanForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require_door_staff(&format!("/door/{id}"))?;
    let mut body = json!({ "code": form.code.trim() });
    if !form.nonce.is_empty() {
        body["nonce"] = json!(form.nonce);
    }
    let path = format!("/api/v1/concerts/{}/checkins", encode(&id));
    let (answer, status) = match api
        .call::<Value>(&visitor.caller, Method::POST, &path, Some(&body))
        .await
    {
        Ok(admitted) => (
            Answer {
                kind: "admitted",
                headline: "Admitted".into(),
                detail: admitted["holder_name"]
                    .as_str()
                    .filter(|name| !name.is_empty())
                    .map(|name| format!("Welcome, {name}."))
                    .unwrap_or_else(|| "Welcome.".into()),
            },
            StatusCode::OK,
        ),
        Err(refusal) => (refused(&refusal)?, refusal.status),
    };
    door_page(&api, visitor, &id, Some(answer), status).await
}

/// A refused scan as the door shows it; anything but a ticket's refusal is the page's error.
fn refused(refusal: &Refusal) -> Result<Answer, PageError> {
    let answer = match refusal.code.as_str() {
        "already_checked_in" => Answer {
            kind: "already",
            headline: "Already checked in".into(),
            detail: checked_in_at(refusal),
        },
        "ticket_cancelled" => Answer {
            kind: "cancelled",
            headline: "Cancelled ticket".into(),
            detail: "This ticket was cancelled: do not admit.".into(),
        },
        "invalid_ticket" | "validation_failed" => Answer {
            kind: "invalid",
            headline: "Not a valid ticket".into(),
            detail: "Not a ticket for this concert, or the code was mistyped.".into(),
        },
        _ => return Err(PageError::Refused(refusal.clone())),
    };
    Ok(answer)
}

/// "at 19:02 UTC on …" from the problem's `checked_in_at`.
fn checked_in_at(refusal: &Refusal) -> String {
    refusal
        .extra
        .get("checked_in_at")
        .and_then(Value::as_str)
        .and_then(parse_iso)
        .map(|at| format!("This ticket was checked in at {}.", when_seconds(at)))
        .unwrap_or_else(|| "This ticket was checked in before.".into())
}

/// `19:02:05 UTC, Sat 1 May 2027`.
fn when_seconds(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[hour]:[minute]:[second] UTC, [weekday repr:short] [day padding:none] [month repr:short] [year]"
    );
    at.format(&format).unwrap_or_default()
}
