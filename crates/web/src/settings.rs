//! The organiser's settings (admins): people and their roles, and the webhooks that tell the
//! organiser's own systems what happens.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::Api;
use crate::format::{Page, User, iso, parse_iso, when};
use crate::page::{Chrome, CsrfForm, PageError, encode, render, see_other};
use crate::session::Visitor;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/organiser/users", get(users))
        .route("/organiser/users/{id}/role", post(set_role))
        .route("/organiser/webhooks", get(webhooks).post(add_webhook))
        .route("/organiser/webhooks/{id}", get(deliveries))
        .route("/organiser/webhooks/{id}/delete", post(delete_webhook))
}

#[derive(Template)]
#[template(path = "organiser_users.html")]
struct UsersPage {
    chrome: Chrome,
    q: String,
    users: Vec<User>,
    roles: [(&'static str, &'static str); 3],
}

/// The roles an admin can give, as the page names them.
const ROLES: [(&str, &str); 3] = [
    ("customer", "Customer"),
    ("staff", "Door staff"),
    ("admin", "Admin"),
];

#[derive(Debug, Default, Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
}

async fn users(
    State(api): State<Api>,
    visitor: Visitor,
    Query(search): Query<Search>,
) -> Result<Response, PageError> {
    visitor.require_admin("/organiser/users")?;
    users_page(&api, visitor, search.q, StatusCode::OK, None).await
}

async fn users_page(
    api: &Api,
    visitor: Visitor,
    q: String,
    status: StatusCode,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let path = format!("/api/v1/admin/users?limit=50&q={}", encode(q.trim()));
    let page: Page<User> = api.get(&visitor.caller, &path).await?;
    let chrome = Chrome::of(&visitor).with_notice(notice);
    let template = UsersPage {
        chrome,
        q,
        users: page.items,
        roles: ROLES,
    };
    Ok(render(visitor, status, &template))
}

#[derive(Debug, Deserialize)]
struct RoleForm {
    csrf: String,
    role: String,
}

/// Gives a user a role; a demotion takes effect at once (the API's rule).
async fn set_role(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require_admin("/organiser/users")?;
    let path = format!("/api/v1/admin/users/{}", encode(&id));
    let body = json!({ "role": form.role });
    match api
        .call::<Value>(&visitor.caller, Method::PATCH, &path, Some(&body))
        .await
    {
        Ok(_) => Ok(see_other(visitor, "/organiser/users")),
        Err(refusal) => {
            let sentence = refusal.sentence();
            users_page(&api, visitor, String::new(), refusal.status, Some(sentence)).await
        }
    }
}

/// A webhook endpoint as the API answers it.
#[derive(Debug, Deserialize)]
struct Endpoint {
    id: uuid::Uuid,
    url: String,
    events: Vec<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    disabled_at: Option<time::OffsetDateTime>,
}

impl Endpoint {
    fn events_text(&self) -> String {
        self.events.join(", ")
    }

    fn active(&self) -> bool {
        self.disabled_at.is_none()
    }
}

/// The event types, as the API names them.
const EVENTS: [&str; 6] = [
    "booking.confirmed",
    "booking.cancelled",
    "hold.expired",
    "checkin.created",
    "concert.sold_out",
    "waitlist.offered",
];

#[derive(Template)]
#[template(path = "organiser_webhooks.html")]
struct WebhooksPage {
    chrome: Chrome,
    endpoints: Vec<Endpoint>,
    events: [&'static str; 6],
    /// A new endpoint's secret, shown once.
    secret: Option<String>,
    url: String,
}

async fn webhooks(State(api): State<Api>, visitor: Visitor) -> Result<Response, PageError> {
    visitor.require_admin("/organiser/webhooks")?;
    webhooks_page(&api, visitor, StatusCode::OK, None, None, String::new()).await
}

async fn webhooks_page(
    api: &Api,
    visitor: Visitor,
    status: StatusCode,
    notice: Option<String>,
    secret: Option<String>,
    url: String,
) -> Result<Response, PageError> {
    let page: Page<Endpoint> = api
        .get(&visitor.caller, "/api/v1/webhooks?limit=100")
        .await?;
    let chrome = Chrome::of(&visitor).with_notice(notice);
    let template = WebhooksPage {
        chrome,
        endpoints: page.items,
        events: EVENTS,
        secret,
        url,
    };
    Ok(render(visitor, status, &template))
}

/// Registers an endpoint; the page then shows its secret, once.
async fn add_webhook(
    State(api): State<Api>,
    visitor: Visitor,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    #[derive(Debug, Deserialize)]
    struct AddForm {
        csrf: String,
        url: String,
        #[serde(default)]
        events: Vec<String>,
    }
    let form: AddForm = serde_html_form::from_bytes(&body).map_err(|_| PageError::BadForm)?;
    visitor.check_csrf(&form.csrf)?;
    visitor.require_admin("/organiser/webhooks")?;
    let body = json!({ "url": form.url.trim(), "events": form.events });
    match api
        .call::<Value>(
            &visitor.caller,
            Method::POST,
            "/api/v1/webhooks",
            Some(&body),
        )
        .await
    {
        Ok(created) => {
            let secret = created["secret"].as_str().map(str::to_owned);
            webhooks_page(
                &api,
                visitor,
                StatusCode::CREATED,
                None,
                secret,
                String::new(),
            )
            .await
        }
        Err(refusal) => {
            let sentence = refusal.sentence();
            webhooks_page(
                &api,
                visitor,
                refusal.status,
                Some(sentence),
                None,
                form.url,
            )
            .await
        }
    }
}

/// Deletes an endpoint: nothing is sent to it afterwards.
async fn delete_webhook(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require_admin("/organiser/webhooks")?;
    let path = format!("/api/v1/webhooks/{}", encode(&id));
    api.call::<Value>(&visitor.caller, Method::DELETE, &path, None)
        .await?;
    Ok(see_other(visitor, "/organiser/webhooks"))
}

/// One delivery of the log.
struct DeliveryLine {
    event: String,
    attempts: i64,
    last_status: String,
    delivered: String,
    next_attempt: String,
}

#[derive(Template)]
#[template(path = "organiser_deliveries.html")]
struct DeliveriesPage {
    chrome: Chrome,
    url: String,
    lines: Vec<DeliveryLine>,
}

/// An endpoint's delivery log, newest first.
async fn deliveries(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    visitor.require_admin(&format!("/organiser/webhooks/{id}"))?;
    let id = encode(&id);
    let endpoint: Endpoint = api
        .get(&visitor.caller, &format!("/api/v1/webhooks/{id}"))
        .await?;
    let page: Page<Value> = api
        .get(
            &visitor.caller,
            &format!("/api/v1/webhooks/{id}/deliveries?limit=100"),
        )
        .await?;
    let at = |value: &Value| {
        value
            .as_str()
            .and_then(parse_iso)
            .map(|at| format!("{} ({})", when(at), iso(at)))
            .unwrap_or_else(|| "—".into())
    };
    let lines = page
        .items
        .iter()
        .map(|delivery| DeliveryLine {
            event: delivery["event"].as_str().unwrap_or_default().to_owned(),
            attempts: delivery["attempts"].as_i64().unwrap_or_default(),
            last_status: delivery["last_status"]
                .as_i64()
                .map_or_else(|| "—".into(), |status| status.to_string()),
            delivered: at(&delivery["delivered_at"]),
            next_attempt: at(&delivery["next_attempt_at"]),
        })
        .collect();
    let template = DeliveriesPage {
        chrome: Chrome::of(&visitor),
        url: endpoint.url,
        lines,
    };
    Ok(render(visitor, StatusCode::OK, &template))
}
