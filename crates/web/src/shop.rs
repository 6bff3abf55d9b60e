//! What fans see: the concerts on sale, a concert with its ticket types and live counts,
//! checkout (a hold with its countdown, then payment), their tickets with QR codes, and the
//! waiting list of a sold-out ticket type. A concert behind a waiting room is bought through
//! its queue ([`crate::queue`]).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::api::{Api, Refusal};
use crate::format::{Booking, Concert, Hold, Page, Ticket, WaitlistEntry};
use crate::page::{Chrome, CsrfForm, PageError, encode, render, see_other};
use crate::session::Visitor;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/", get(home))
        .route("/concerts/{id}", get(concert))
        .route("/concerts/{id}/hold", post(hold))
        .route("/concerts/{id}/waitlist", post(join_waitlist))
        .route("/holds/{id}", get(checkout))
        .route("/holds/{id}/pay", post(pay))
        .route("/holds/{id}/release", post(release))
        .route("/tickets", get(tickets))
        .route("/tickets/{id}", get(ticket))
        .route("/tickets/{id}/cancel", post(cancel))
        .route("/waitlist", get(waitlist))
        .route("/waitlist/{id}/leave", post(leave_waitlist))
}

/// The test cards of the simulated payment provider, as the checkout offers them.
pub const TEST_CARDS: [(&str, &str); 2] = [
    ("pm_card_visa", "Test card: Visa, always accepted"),
    (
        "pm_card_visa_chargeDeclined",
        "Test card: Visa, always declined",
    ),
];

#[derive(Debug, Default, Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
    #[serde(default)]
    when: String,
    #[serde(default)]
    category: String,
    /// A day (`YYYY-MM-DD`, as a date field sends it): concerts from its start, in UTC.
    #[serde(default)]
    from: String,
    /// A day: concerts up to its end, in UTC.
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
}

impl Search {
    /// The API's list query for this search (without the cursor), or what is wrong with a day.
    fn query(&self) -> Result<String, String> {
        let status = if self.when == "on_sale" {
            "on_sale"
        } else {
            "available"
        };
        let mut query = format!("status={status}&q={}", encode(self.q.trim()));
        if !self.category.trim().is_empty() {
            query.push_str(&format!("&category={}", encode(self.category.trim())));
        }
        for (name, day, time) in [
            ("from", &self.from, "00:00:00"),
            ("to", &self.to, "23:59:59"),
        ] {
            let day = day.trim();
            if day.is_empty() {
                continue;
            }
            if time::Date::parse(day, DAY).is_err() {
                return Err(format!("“{day}” is not a day: write it as 2027-05-01."));
            }
            query.push_str(&format!("&{name}={day}T{time}Z"));
        }
        Ok(query)
    }

    /// This search's own address, for the link to the next page.
    fn link(&self, cursor: &str) -> String {
        format!(
            "/?q={}&when={}&category={}&from={}&to={}&cursor={}",
            encode(&self.q),
            encode(&self.when),
            encode(&self.category),
            encode(&self.from),
            encode(&self.to),
            encode(cursor)
        )
    }
}

/// How a date field writes a day.
const DAY: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    search: Search,
    /// The categories of the concerts to come, for the filter.
    categories: Vec<String>,
    concerts: Vec<Concert>,
    next: Option<String>,
}

/// The concerts still to come (or only those on sale), searchable by name, artist or venue and
/// filtered by category and by the days they start on.
async fn home(
    State(api): State<Api>,
    visitor: Visitor,
    Query(search): Query<Search>,
) -> Result<Response, PageError> {
    let (concerts, next, notice) = match search.query() {
        Ok(mut query) => {
            if !search.cursor.is_empty() {
                query.push_str(&format!("&cursor={}", encode(&search.cursor)));
            }
            let page: Page<Concert> = api
                .get(
                    &visitor.caller,
                    &format!("/api/v1/concerts?limit=24&{query}"),
                )
                .await?;
            let next = page.next_cursor.map(|cursor| search.link(&cursor));
            (page.items, next, None)
        }
        Err(notice) => (Vec::new(), None, Some(notice)),
    };
    let categories = categories(&api, &visitor).await?;
    let template = HomePage {
        chrome: Chrome::of(&visitor).with_notice(notice),
        search,
        categories,
        concerts,
        next,
    };
    Ok(render(visitor, StatusCode::OK, &template))
}

/// The categories of the next hundred concerts to come, in order of first appearance.
async fn categories(api: &Api, visitor: &Visitor) -> Result<Vec<String>, PageError> {
    let page: Page<Concert> = api
        .get(
            &visitor.caller,
            "/api/v1/concerts?limit=100&status=available",
        )
        .await?;
    let mut categories: Vec<String> = Vec::new();
    for concert in page.items {
        if !concert.category.is_empty() && !categories.contains(&concert.category) {
            categories.push(concert.category);
        }
    }
    Ok(categories)
}

#[derive(Template)]
#[template(path = "concert.html")]
struct ConcertPage {
    chrome: Chrome,
    concert: Concert,
}

async fn concert(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let concert = read_concert(&api, &visitor, &id).await?;
    Ok(concert_page(visitor, StatusCode::OK, concert, None))
}

fn concert_page(
    visitor: Visitor,
    status: StatusCode,
    concert: Concert,
    notice: Option<String>,
) -> Response {
    let chrome = Chrome::of(&visitor).with_notice(notice);
    render(visitor, status, &ConcertPage { chrome, concert })
}

pub(crate) async fn read_concert(
    api: &Api,
    visitor: &Visitor,
    id: &str,
) -> Result<Concert, Refusal> {
    api.get(&visitor.caller, &format!("/api/v1/concerts/{}", encode(id)))
        .await
}

/// A form's fields: the CSRF token, and what the form is about.
#[derive(Debug, Deserialize)]
struct SeatForm {
    csrf: String,
    seat_type_id: String,
}

/// Takes a seat (a hold), then on to checkout; a refusal is said on the concert's page.
async fn hold(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<SeatForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require(&format!("/concerts/{id}"))?;
    let body = json!({ "concert_id": id, "seat_type_id": form.seat_type_id });
    match api
        .call::<Hold>(&visitor.caller, Method::POST, "/api/v1/holds", Some(&body))
        .await
    {
        Ok(hold) => Ok(see_other(visitor, &format!("/holds/{}", hold.id))),
        Err(refusal) => refused_on_concert(api, visitor, &id, refusal).await,
    }
}

/// Joins the waiting list of a sold-out ticket type.
async fn join_waitlist(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<SeatForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require(&format!("/concerts/{id}"))?;
    let path = format!("/api/v1/concerts/{}/waitlist", encode(&id));
    let body = json!({ "seat_type_id": form.seat_type_id });
    match api
        .call::<WaitlistEntry>(&visitor.caller, Method::POST, &path, Some(&body))
        .await
    {
        Ok(_) => Ok(see_other(visitor, "/waitlist")),
        Err(refusal) => refused_on_concert(api, visitor, &id, refusal).await,
    }
}

/// The concert's page again, saying why the API refused.
pub(crate) async fn refused_on_concert(
    api: Api,
    visitor: Visitor,
    id: &str,
    refusal: Refusal,
) -> Result<Response, PageError> {
    if refusal.needs_sign_in() {
        return Err(PageError::SignIn(format!("/concerts/{id}")));
    }
    let concert = read_concert(&api, &visitor, id).await?;
    Ok(concert_page(
        visitor,
        refusal.status,
        concert,
        Some(refusal.sentence()),
    ))
}

#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage {
    chrome: Chrome,
    hold: Hold,
    concert: Concert,
    seat_name: String,
    cards: [(&'static str, &'static str); 2],
}

async fn checkout(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    visitor.require(&format!("/holds/{id}"))?;
    checkout_page(api, visitor, &id, StatusCode::OK, None).await
}

async fn checkout_page(
    api: Api,
    visitor: Visitor,
    id: &str,
    status: StatusCode,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let hold: Hold = api
        .get(&visitor.caller, &format!("/api/v1/holds/{}", encode(id)))
        .await?;
    if let Some(booking) = hold.booking_id {
        return Ok(see_other(visitor, &format!("/tickets/{booking}")));
    }
    let concert = read_concert(&api, &visitor, &hold.concert_id.to_string()).await?;
    let seat_name = concert.seat_name(hold.seat_type_id);
    let chrome = Chrome::of(&visitor).with_notice(notice);
    let page = CheckoutPage {
        chrome,
        hold,
        concert,
        seat_name,
        cards: TEST_CARDS,
    };
    Ok(render(visitor, status, &page))
}

#[derive(Debug, Deserialize)]
struct PayForm {
    csrf: String,
    #[serde(default)]
    payment_method: String,
}

/// Pays for a hold: the ticket's page once paid, else the checkout again with the reason.
async fn pay(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<PayForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require(&format!("/holds/{id}"))?;
    let body = if form.payment_method.is_empty() {
        json!({})
    } else {
        json!({ "payment_method": form.payment_method })
    };
    let path = format!("/api/v1/holds/{}/pay", encode(&id));
    match api
        .call::<Hold>(&visitor.caller, Method::POST, &path, Some(&body))
        .await
    {
        Ok(Hold {
            booking_id: Some(booking),
            ..
        }) => Ok(see_other(visitor, &format!("/tickets/{booking}"))),
        Ok(_) => checkout_page(api, visitor, &id, StatusCode::OK, None).await,
        Err(refusal) if refusal.needs_sign_in() => Err(PageError::SignIn(format!("/holds/{id}"))),
        Err(refusal) => {
            let sentence = refusal.sentence();
            checkout_page(api, visitor, &id, refusal.status, Some(sentence)).await
        }
    }
}

/// Lets a held seat go, back to the concert.
async fn release(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require(&format!("/holds/{id}"))?;
    let path = format!("/api/v1/holds/{}/release", encode(&id));
    let hold: Hold = api.call(&visitor.caller, Method::POST, &path, None).await?;
    Ok(see_other(
        visitor,
        &format!("/concerts/{}", hold.concert_id),
    ))
}

/// Something of a concert — a booking, a place on a waiting list — with the concert as the API
/// has it (`None` if it could not be read: the line still shows).
struct Line<T> {
    item: T,
    concert: Option<Concert>,
    seat_type_id: Uuid,
}

impl<T> Line<T> {
    fn concert_name(&self) -> String {
        self.concert
            .as_ref()
            .map(|concert| concert.name.clone())
            .unwrap_or_else(|| "A concert".into())
    }

    fn when(&self) -> String {
        self.concert.as_ref().map(Concert::when).unwrap_or_default()
    }

    fn seat_name(&self) -> String {
        self.concert
            .as_ref()
            .map(|concert| concert.seat_name(self.seat_type_id))
            .unwrap_or_default()
    }
}

/// `items` as lines, each with its concert (read once per concert).
async fn with_concerts<T>(
    api: &Api,
    visitor: &Visitor,
    items: Vec<T>,
    of: impl Fn(&T) -> (Uuid, Uuid),
) -> Vec<Line<T>> {
    let mut concerts: std::collections::HashMap<Uuid, Option<Concert>> = Default::default();
    let mut lines = Vec::with_capacity(items.len());
    for item in items {
        let (concert_id, seat_type_id) = of(&item);
        if let std::collections::hash_map::Entry::Vacant(entry) = concerts.entry(concert_id) {
            let id = concert_id.to_string();
            entry.insert(read_concert(api, visitor, &id).await.ok());
        }
        let concert = concerts.get(&concert_id).cloned().flatten();
        lines.push(Line {
            item,
            concert,
            seat_type_id,
        });
    }
    lines
}

#[derive(Template)]
#[template(path = "tickets.html")]
struct TicketsPage {
    chrome: Chrome,
    lines: Vec<Line<Booking>>,
}

/// The signed-in fan's bookings, newest first.
async fn tickets(State(api): State<Api>, visitor: Visitor) -> Result<Response, PageError> {
    visitor.require("/tickets")?;
    let page: Page<Booking> = api
        .get(&visitor.caller, "/api/v1/bookings?limit=50")
        .await?;
    let lines = with_concerts(&api, &visitor, page.items, |booking| {
        (booking.concert_id, booking.seat_type_id)
    })
    .await;
    let template = TicketsPage {
        chrome: Chrome::of(&visitor),
        lines,
    };
    Ok(render(visitor, StatusCode::OK, &template))
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    chrome: Chrome,
    booking: Booking,
    ticket: Ticket,
    concert: Concert,
    seat_name: String,
    /// The QR code, as the API draws it (SVG of our own making).
    qr: String,
}

impl TicketPage {
    fn cancellable(&self) -> bool {
        self.booking.status == "confirmed" && self.concert.status != "closed"
    }
}

async fn ticket(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    visitor.require(&format!("/tickets/{id}"))?;
    ticket_page(api, visitor, &id, StatusCode::OK, None).await
}

async fn ticket_page(
    api: Api,
    visitor: Visitor,
    id: &str,
    status: StatusCode,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let id = encode(id);
    let booking: Booking = api
        .get(&visitor.caller, &format!("/api/v1/bookings/{id}"))
        .await?;
    let ticket: Ticket = api
        .get(&visitor.caller, &format!("/api/v1/bookings/{id}/ticket"))
        .await?;
    let qr = api
        .text(
            &visitor.caller,
            &format!("/api/v1/bookings/{id}/ticket.svg"),
        )
        .await?;
    // Inline in HTML: the `<svg>` element without the XML declaration before it.
    let qr = qr
        .find("<svg")
        .map_or(qr.clone(), |start| qr[start..].to_owned());
    let concert = read_concert(&api, &visitor, &booking.concert_id.to_string()).await?;
    let seat_name = concert.seat_name(booking.seat_type_id);
    let chrome = Chrome::of(&visitor).with_notice(notice);
    let page = TicketPage {
        chrome,
        booking,
        ticket,
        concert,
        seat_name,
        qr,
    };
    Ok(render(visitor, status, &page))
}

/// Cancels a ticket (refunded in full when it was paid).
async fn cancel(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require(&format!("/tickets/{id}"))?;
    let path = format!("/api/v1/bookings/{}/cancel", encode(&id));
    match api
        .call::<Booking>(&visitor.caller, Method::POST, &path, None)
        .await
    {
        Ok(_) => Ok(see_other(visitor, &format!("/tickets/{id}"))),
        Err(refusal) => {
            let sentence = refusal.sentence();
            ticket_page(api, visitor, &id, refusal.status, Some(sentence)).await
        }
    }
}

#[derive(Template)]
#[template(path = "waitlist.html")]
struct WaitlistPage {
    chrome: Chrome,
    lines: Vec<Line<WaitlistEntry>>,
}

/// The fan's places on waiting lists; an offer links to its checkout.
async fn waitlist(State(api): State<Api>, visitor: Visitor) -> Result<Response, PageError> {
    visitor.require("/waitlist")?;
    let page: Page<WaitlistEntry> = api
        .get(&visitor.caller, "/api/v1/waitlist?limit=50")
        .await?;
    let lines = with_concerts(&api, &visitor, page.items, |entry| {
        (entry.concert_id, entry.seat_type_id)
    })
    .await;
    let template = WaitlistPage {
        chrome: Chrome::of(&visitor),
        lines,
    };
    Ok(render(visitor, StatusCode::OK, &template))
}

/// Leaves a waiting list; an offered ticket goes to the next fan.
async fn leave_waitlist(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require("/waitlist")?;
    let path = format!("/api/v1/waitlist/{}", encode(&id));
    api.call::<serde_json::Value>(&visitor.caller, Method::DELETE, &path, None)
        .await?;
    Ok(see_other(visitor, "/waitlist"))
}
