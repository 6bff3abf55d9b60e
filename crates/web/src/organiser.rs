//! The organiser's back office (admins): every concert, a new concert with its ticket types and
//! on-sale time, a concert's waiting room ([`waiting_room`]), and a concert's sales dashboard —
//! sold, held and remaining per ticket type, drawn as a bar chart on the server (SVG) — where
//! the concert can be called off.

use std::collections::{HashMap, HashSet};

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::Api;
use crate::format::{Booking, Concert, Page, User, amount};
use crate::page::{Chrome, CsrfForm, PageError, encode, render, see_other};
use crate::session::Visitor;

mod seat_types;
mod waiting_room;

use seat_types::seat_body;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/organiser", get(concerts))
        .route("/organiser/concerts", post(create))
        .route("/organiser/concerts/new", get(new_concert))
        .route("/organiser/concerts/{id}", get(dashboard))
        .route("/organiser/concerts/{id}/cancel", post(cancel))
        .route(
            "/organiser/concerts/{id}/edit",
            get(edit_concert).post(save_concert),
        )
        .route("/organiser/concerts/{id}/seat-types", post(seat_types::add))
        .route(
            "/organiser/concerts/{id}/seat-types/{seat_type_id}",
            post(seat_types::set_capacity),
        )
        .route("/organiser/concerts/{id}/bookings", get(bookings))
        .route(
            "/organiser/concerts/{id}/waiting-room",
            post(waiting_room::set),
        )
        .route(
            "/organiser/concerts/{id}/waiting-room/remove",
            post(waiting_room::remove),
        )
}

#[derive(Template)]
#[template(path = "organiser_concerts.html")]
struct ConcertsPage {
    chrome: Chrome,
    concerts: Vec<Concert>,
}

async fn concerts(State(api): State<Api>, visitor: Visitor) -> Result<Response, PageError> {
    visitor.require_admin("/organiser")?;
    let page: Page<Concert> = api
        .get(&visitor.caller, "/api/v1/concerts?status=all&limit=100")
        .await?;
    let template = ConcertsPage {
        chrome: Chrome::of(&visitor),
        concerts: page.items,
    };
    Ok(render(visitor, StatusCode::OK, &template))
}

/// The new-concert form, as typed (empty at first).
#[derive(Debug, Default, Deserialize)]
struct ConcertForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    artist: String,
    #[serde(default)]
    venue: String,
    #[serde(default)]
    description: String,
    /// `YYYY-MM-DDTHH:MM`, UTC (an `<input type="datetime-local">`).
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    sales_open_at: String,
    #[serde(default)]
    seat_name: Vec<String>,
    #[serde(default)]
    seat_price: Vec<String>,
    #[serde(default)]
    seat_capacity: Vec<String>,
}

/// How many ticket-type rows the form offers.
const SEAT_ROWS: usize = 3;

#[derive(Template)]
#[template(path = "organiser_new.html")]
struct NewConcertPage {
    chrome: Chrome,
    form: ConcertForm,
}

impl NewConcertPage {
    /// Row `i` of the ticket types as typed: name, price, capacity.
    fn seat(&self, i: &usize) -> (String, String, String) {
        let at = |list: &Vec<String>| list.get(*i).cloned().unwrap_or_default();
        (
            at(&self.form.seat_name),
            at(&self.form.seat_price),
            at(&self.form.seat_capacity),
        )
    }

    fn rows(&self) -> std::ops::Range<usize> {
        0..SEAT_ROWS
    }
}

async fn new_concert(visitor: Visitor) -> Result<Response, PageError> {
    visitor.require_admin("/organiser/concerts/new")?;
    let page = NewConcertPage {
        chrome: Chrome::of(&visitor),
        form: ConcertForm::default(),
    };
    Ok(render(visitor, StatusCode::OK, &page))
}

async fn create(
    State(api): State<Api>,
    visitor: Visitor,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    // Repeated fields (one per ticket-type row) need the list-aware form decoder.
    let form: ConcertForm = serde_html_form::from_bytes(&body).map_err(|_| PageError::BadForm)?;
    visitor.check_csrf(&form.csrf)?;
    visitor.require_admin("/organiser/concerts/new")?;
    let body = concert_body(&form);
    match api
        .call::<Concert>(
            &visitor.caller,
            Method::POST,
            "/api/v1/concerts",
            Some(&body),
        )
        .await
    {
        Ok(concert) => Ok(see_other(
            visitor,
            &format!("/organiser/concerts/{}", concert.id),
        )),
        Err(refusal) => {
            let chrome = Chrome::of(&visitor).with_notice(refusal.sentence());
            let page = NewConcertPage { chrome, form };
            Ok(render(visitor, refusal.status, &page))
        }
    }
}

/// The API's body for the form: times are UTC; a price is in the currency's units (`12.50`);
/// empty ticket-type rows are left out. What is wrong is the API's to say.
fn concert_body(form: &ConcertForm) -> Value {
    let seats: Vec<Value> = (0..form.seat_name.len())
        .filter(|&i| !form.seat_name[i].trim().is_empty())
        .map(|i| {
            seat_body(
                &form.seat_name[i],
                form.seat_price.get(i).map(String::as_str).unwrap_or("0"),
                form.seat_capacity.get(i).map(String::as_str).unwrap_or(""),
            )
        })
        .collect();
    let mut body = details_body(form);
    body["seat_types"] = json!(seats);
    if body["sales_open_at"].is_null() {
        // Left empty on a new concert: open at once (the API's default).
        if let Some(fields) = body.as_object_mut() {
            fields.remove("sales_open_at");
        }
    }
    body
}

/// A concert's details as the form has them (a `PATCH` body): an empty on-sale time is `null`,
/// "open now".
fn details_body(form: &ConcertForm) -> Value {
    json!({
        "name": form.name.trim(),
        "artist": form.artist.trim(),
        "venue": form.venue.trim(),
        "description": form.description.trim(),
        "starts_at": utc(&form.starts_at),
        "sales_open_at": utc(&form.sales_open_at),
    })
}

/// An `<input type="datetime-local">` value read as UTC, RFC 3339; `null` when empty.
fn utc(text: &str) -> Value {
    let text = text.trim();
    match text.len() {
        0 => Value::Null,
        16 => json!(format!("{text}:00Z")),
        _ => json!(format!("{text}Z")),
    }
}

/// `YYYY-MM-DDTHH:MM` in UTC, as a `datetime-local` field shows it.
fn local_input(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "organiser_edit.html")]
struct EditPage {
    chrome: Chrome,
    concert: Concert,
    form: ConcertForm,
    /// The waiting room's fields: fans let through a minute, and a turn's minutes.
    room: (String, String),
}

impl EditPage {
    fn new(chrome: Chrome, concert: Concert, form: ConcertForm) -> Self {
        let room = waiting_room::fields(concert.waiting_room);
        Self {
            chrome,
            concert,
            form,
            room,
        }
    }
}

async fn edit_concert(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    visitor.require_admin(&format!("/organiser/concerts/{id}/edit"))?;
    let concert: Concert = api
        .get(
            &visitor.caller,
            &format!("/api/v1/concerts/{}", encode(&id)),
        )
        .await?;
    let form = ConcertForm {
        name: concert.name.clone(),
        artist: concert.artist.clone(),
        venue: concert.venue.clone(),
        description: concert.description.clone(),
        starts_at: local_input(concert.starts_at),
        sales_open_at: concert.sales_open_at.map(local_input).unwrap_or_default(),
        ..ConcertForm::default()
    };
    let page = EditPage::new(Chrome::of(&visitor), concert, form);
    Ok(render(visitor, StatusCode::OK, &page))
}

/// Saves a concert's details and on-sale time; a refusal shows the form again as typed.
async fn save_concert(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<ConcertForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require_admin(&format!("/organiser/concerts/{id}/edit"))?;
    let path = format!("/api/v1/concerts/{}", encode(&id));
    match api
        .call::<Concert>(
            &visitor.caller,
            Method::PATCH,
            &path,
            Some(&details_body(&form)),
        )
        .await
    {
        Ok(concert) => Ok(see_other(
            visitor,
            &format!("/organiser/concerts/{}", concert.id),
        )),
        Err(refusal) => {
            let concert: Concert = api.get(&visitor.caller, &path).await?;
            let chrome = Chrome::of(&visitor).with_notice(refusal.sentence());
            let page = EditPage::new(chrome, concert, form);
            Ok(render(visitor, refusal.status, &page))
        }
    }
}

/// One ticket type's sales, as the dashboard shows them.
struct SeatSales {
    name: String,
    capacity: i64,
    sold: i64,
    held: i64,
    remaining: i64,
    revenue: String,
}

#[derive(Template)]
#[template(path = "organiser_dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    concert: Concert,
    seats: Vec<SeatSales>,
    confirmed: i64,
    cancelled: i64,
    chart: String,
    /// Sales over time: tickets sold per day, as SVG.
    days_chart: String,
}

async fn dashboard(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    visitor.require_admin(&format!("/organiser/concerts/{id}"))?;
    dashboard_page(&api, visitor, &id, StatusCode::OK, None).await
}

async fn dashboard_page(
    api: &Api,
    visitor: Visitor,
    id: &str,
    status: StatusCode,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let id = encode(id);
    let concert: Concert = api
        .get(&visitor.caller, &format!("/api/v1/concerts/{id}"))
        .await?;
    let sales: Value = api
        .get(&visitor.caller, &format!("/api/v1/concerts/{id}/sales"))
        .await?;
    let number = |value: &Value, key: &str| value[key].as_i64().unwrap_or_default();
    let seats: Vec<SeatSales> = sales["seat_types"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|seat| SeatSales {
            name: seat["name"].as_str().unwrap_or_default().to_owned(),
            capacity: number(seat, "capacity"),
            sold: number(seat, "sold"),
            held: number(seat, "held"),
            remaining: number(seat, "remaining"),
            revenue: amount(
                number(seat, "revenue_cents"),
                seat["currency"].as_str().unwrap_or_default(),
            ),
        })
        .collect();
    let days: Vec<(String, i64)> = sales["by_day"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|day| {
            (
                day["day"].as_str().unwrap_or_default().to_owned(),
                number(day, "sold"),
            )
        })
        .collect();
    let chrome = Chrome::of(&visitor).with_notice(notice);
    let page = DashboardPage {
        chrome,
        chart: chart(&seats),
        days_chart: days_chart(&days),
        concert,
        confirmed: number(&sales, "bookings_confirmed"),
        cancelled: number(&sales, "bookings_cancelled"),
        seats,
    };
    Ok(render(visitor, status, &page))
}

/// A horizontal bar per ticket type — sold, held, remaining — as SVG, with a text alternative.
fn chart(seats: &[SeatSales]) -> String {
    const WIDTH: f64 = 600.0;
    const BAR: usize = 28;
    const LABEL: f64 = 140.0;
    let height = seats.len() * (BAR + 12) + 12;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
         role=\"img\" aria-labelledby=\"chart-title\" class=\"chart\">\
         <title id=\"chart-title\">Sold, held and remaining tickets per type</title>"
    );
    for (i, seat) in seats.iter().enumerate() {
        let y = 12 + i * (BAR + 12);
        let scale = (WIDTH - LABEL - 10.0) / (seat.capacity.max(1) as f64);
        let mut x = LABEL;
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\" class=\"label\">{}</text>",
            y + BAR / 2 + 5,
            escape(&seat.name)
        ));
        for (count, class) in [
            (seat.sold, "sold"),
            (seat.held, "held"),
            (seat.remaining, "remaining"),
        ] {
            let width = count as f64 * scale;
            svg.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{width:.1}\" height=\"{BAR}\" class=\"{class}\">\
                 <title>{count} {class}</title></rect>"
            ));
            x += width;
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A column per day with sales (the last 60), its height the tickets sold that day, as SVG.
fn days_chart(days: &[(String, i64)]) -> String {
    const HEIGHT: f64 = 160.0;
    const COLUMN: f64 = 24.0;
    let days = &days[days.len().saturating_sub(60)..];
    let most = days.iter().map(|(_, sold)| *sold).max().unwrap_or(0).max(1) as f64;
    let width = (days.len() as f64 * COLUMN).max(COLUMN) + 40.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\" aria-labelledby=\"days-title\" \
         class=\"chart days\"><title id=\"days-title\">Tickets sold per day</title>",
        height = HEIGHT + 40.0
    );
    for (i, (day, sold)) in days.iter().enumerate() {
        let height = *sold as f64 / most * HEIGHT;
        let x = 20.0 + i as f64 * COLUMN;
        svg.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" class=\"sold\">\
             <title>{}: {sold} sold</title></rect>",
            10.0 + HEIGHT - height,
            COLUMN - 4.0,
            escape(day)
        ));
        if i == 0 || i + 1 == days.len() {
            svg.push_str(&format!(
                "<text x=\"{x:.1}\" y=\"{}\" class=\"label\">{}</text>",
                HEIGHT + 30.0,
                escape(day.get(5..).unwrap_or(day))
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// `text` escaped for HTML (and the SVG inside it), as the templates escape.
fn escape(text: &str) -> String {
    askama::filters::escape(text, askama::filters::Html)
        .map(|safe| safe.to_string())
        .unwrap_or_default()
}

/// Calls the concert off: every ticket cancelled and refunded, by the API.
async fn cancel(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require_admin(&format!("/organiser/concerts/{id}"))?;
    let path = format!("/api/v1/concerts/{}/cancel", encode(&id));
    change_then_dashboard(&api, visitor, &id, Method::POST, &path, None).await
}

/// Asks the API for a change to concert `id`, then shows its dashboard: after a redirect when
/// the change is made, at once with the refusal as a sentence when it is not.
async fn change_then_dashboard(
    api: &Api,
    visitor: Visitor,
    id: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, PageError> {
    match api.call::<Value>(&visitor.caller, method, path, body).await {
        Ok(_) => Ok(see_other(visitor, &format!("/organiser/concerts/{id}"))),
        Err(refusal) => {
            let sentence = refusal.sentence();
            dashboard_page(api, visitor, id, refusal.status, Some(sentence)).await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Cursor {
    #[serde(default)]
    cursor: String,
}

#[derive(Template)]
#[template(path = "organiser_bookings.html")]
struct BookingsPage {
    chrome: Chrome,
    concert: Concert,
    bookings: Vec<Booking>,
    /// The holders of `bookings` that could be named.
    customers: HashMap<Uuid, User>,
    next: Option<String>,
}

/// A concert's bookings, newest first, 50 a page.
async fn bookings(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(page): Query<Cursor>,
) -> Result<Response, PageError> {
    visitor.require_admin(&format!("/organiser/concerts/{id}/bookings"))?;
    let id = encode(&id);
    let concert: Concert = api
        .get(&visitor.caller, &format!("/api/v1/concerts/{id}"))
        .await?;
    let mut path = format!("/api/v1/concerts/{id}/bookings?limit=50");
    if !page.cursor.is_empty() {
        path.push_str(&format!("&cursor={}", encode(&page.cursor)));
    }
    let listed: Page<Booking> = api.get(&visitor.caller, &path).await?;
    let customers = customers(&api, &visitor, &listed.items).await;
    let next = listed.next_cursor.map(|cursor| {
        format!(
            "/organiser/concerts/{id}/bookings?cursor={}",
            encode(&cursor)
        )
    });
    let template = BookingsPage {
        chrome: Chrome::of(&visitor),
        concert,
        bookings: listed.items,
        customers,
        next,
    };
    Ok(render(visitor, StatusCode::OK, &template))
}

/// Who holds each of `bookings`, asked of the admins' user API at once for every distinct
/// holder; a holder it cannot name (an account gone, an answer lost) is left out, and the page
/// shows their id instead.
async fn customers(api: &Api, visitor: &Visitor, bookings: &[Booking]) -> HashMap<Uuid, User> {
    let mut asks = tokio::task::JoinSet::new();
    let holders: HashSet<Uuid> = bookings.iter().map(|booking| booking.user_id).collect();
    for holder in holders {
        let (api, caller) = (api.clone(), visitor.caller.clone());
        asks.spawn(async move {
            api.get::<User>(&caller, &format!("/api/v1/admin/users/{holder}"))
                .await
                .ok()
        });
    }
    let mut customers = HashMap::new();
    while let Some(answer) = asks.join_next().await {
        if let Ok(Some(user)) = answer {
            customers.insert(user.id, user);
        }
    }
    customers
}
