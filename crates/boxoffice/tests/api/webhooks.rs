//! API contract, "Webhooks (v1.1)": endpoints managed by admins, deliveries signed with the
//! Standard Webhooks scheme and checked by a real receiver (an axum server on port 0 that
//! verifies every signature with the `standardwebhooks` crate), retries with the same
//! `webhook-id`, `410 Gone`, a receiver that hangs, and the forgery guard.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_problem, concert_body, error_fields, id_of, poll_until, spawn_admin_app_with,
};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// 500 to the first attempt of each message, 200 afterwards.
    FailFirst,
    Gone,
    /// Never answers.
    Hang,
}

/// One request the receiver got, its signature verified.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub body: Value,
}

#[derive(Default)]
struct Inbox {
    mode: Option<Mode>,
    secret: Option<String>,
    received: Vec<Received>,
    /// Requests whose signature did not verify (must stay 0).
    forged: usize,
}

/// A webhook receiver on 127.0.0.1, port 0.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap(), mode).await
    }

    pub async fn start_on(address: SocketAddr, mode: Mode) -> Receiver {
        let inbox = Arc::new(Mutex::new(Inbox {
            mode: Some(mode),
            ..Inbox::default()
        }));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, inbox }
    }

    /// The secret to verify signatures with (the endpoint's, once created).
    pub fn trust(&self, secret: &str) {
        self.inbox.lock().unwrap().secret = Some(secret.to_owned());
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inbox.lock().unwrap().mode = Some(mode);
    }

    pub fn received(&self) -> Vec<Received> {
        let inbox = self.inbox.lock().unwrap();
        assert_eq!(inbox.forged, 0, "a delivery's signature did not verify");
        inbox.received.clone()
    }

    /// The requests received about the subject `id`, of type `event`.
    pub fn about(&self, event: &str, id: &str) -> Vec<Received> {
        (self.received().into_iter())
            .filter(|got| got.body["type"] == event && subject(&got.body) == id)
            .collect()
    }
}

/// The id a delivery's data is about.
fn subject(body: &Value) -> &str {
    let data = &body["data"];
    data["id"]
        .as_str()
        .or(data["booking_id"].as_str())
        .or(data["seat_type_id"].as_str())
        .unwrap_or_default()
}

async fn receive(
    State(inbox): State<Arc<Mutex<Inbox>>>,
    headers: HeaderMap,
    body: Bytes,
) -> AxumStatus {
    let (mode, attempt) = {
        let mut inbox = inbox.lock().unwrap();
        let verified = inbox.secret.as_deref().is_some_and(|secret| {
            standardwebhooks::Webhook::new(secret)
                .is_ok_and(|webhook| webhook.verify(&body, &headers).is_ok())
        });
        if !verified {
            inbox.forged += 1;
            return AxumStatus::BAD_REQUEST;
        }
        let id = headers["webhook-id"].to_str().unwrap().to_owned();
        let attempt = inbox.received.iter().filter(|got| got.id == id).count();
        let body = serde_json::from_slice(&body).unwrap();
        inbox.received.push(Received { id, body });
        (inbox.mode.unwrap_or(Mode::Ok), attempt)
    };
    match mode {
        Mode::Ok => AxumStatus::OK,
        Mode::FailFirst if attempt == 0 => AxumStatus::INTERNAL_SERVER_ERROR,
        Mode::FailFirst => AxumStatus::NO_CONTENT,
        Mode::Gone => AxumStatus::GONE,
        Mode::Hang => std::future::pending().await,
    }
}

async fn spawn_webhook_app() -> (TestApp, String) {
    spawn_admin_app_with(|config| config.webhooks.allow_private = true).await
}

/// Registers `receiver` for `events` and trusts its secret; returns the endpoint.
async fn subscribe(app: &TestApp, admin: &str, receiver: &Receiver, events: &[&str]) -> Value {
    let body = json!({"url": receiver.url, "events": events});
    let response = app
        .post_json_with_token("/api/v1/webhooks", admin, &body)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/webhooks/{}", id_of(&created)));
    receiver.trust(created["secret"].as_str().unwrap());
    created
}

async fn deliveries(app: &TestApp, admin: &str, webhook: &str) -> Vec<Value> {
    let path = format!("/api/v1/webhooks/{webhook}/deliveries");
    let response = app.get_with_token(&path, admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

/// A concert with one seat type of `capacity`, and its concert and seat type ids.
async fn concert(app: &TestApp, admin: &str, capacity: u64) -> (String, String) {
    let concert = app
        .create_concert(admin, &concert_body("Hooked", 86_400, capacity))
        .await;
    (id_of(&concert), id_of(&concert["seat_types"][0]))
}

#[tokio::test]
async fn admins_manage_endpoints_and_nobody_else_does() {
    let (app, admin) = spawn_webhook_app().await;
    let fan = app.register_user("fan@example.com").await.access_token;
    let receiver = Receiver::start(Mode::Ok).await;
    let body = json!({"url": receiver.url, "events": ["booking.confirmed", "hold.expired"]});

    assert_problem(
        app.post_json_with_token("/api/v1/webhooks", &fan, &body)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.post_json("/api/v1/webhooks", &body).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    let created = subscribe(
        &app,
        &admin,
        &receiver,
        &["booking.confirmed", "hold.expired"],
    )
    .await;
    let id = id_of(&created);
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() >= 38,
        "{secret}"
    );
    assert_eq!(created["url"], receiver.url.as_str());
    assert_eq!(
        created["events"],
        json!(["booking.confirmed", "hold.expired"])
    );
    assert!(created["created_at"].is_string());

    let one: Value = app
        .get_with_token(&format!("/api/v1/webhooks/{id}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], id.as_str());
    assert!(
        one.get("secret").is_none(),
        "the secret is shown only at creation"
    );
    assert_eq!(one["disabled_at"], Value::Null);
    let list: Value = app
        .get_with_token("/api/v1/webhooks?limit=1", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert!(list["items"][0].get("secret").is_none());
    assert_eq!(list["next_cursor"], Value::Null);
    assert!(deliveries(&app, &admin, &id).await.is_empty());

    for path in [
        "/api/v1/webhooks".to_owned(),
        format!("/api/v1/webhooks/{id}"),
        format!("/api/v1/webhooks/{id}/deliveries"),
    ] {
        let response = app.get_with_token(&path, &fan).await;
        assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let delete = |token: String, path: String| {
        let request = app.client.delete(app.url(&path)).bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    let path = format!("/api/v1/webhooks/{id}");
    assert_problem(
        delete(fan.clone(), path.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    for missing in ["not-a-uuid".to_owned(), uuid::Uuid::now_v7().to_string()] {
        let path = format!("/api/v1/webhooks/{missing}");
        let response = app.get_with_token(&path, &admin).await;
        assert_problem(response, StatusCode::NOT_FOUND, "webhook_not_found").await;
        let response = app
            .get_with_token(&format!("{path}/deliveries"), &admin)
            .await;
        assert_problem(response, StatusCode::NOT_FOUND, "webhook_not_found").await;
    }

    assert_eq!(
        delete(admin.clone(), path.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    let gone = app.get_with_token(&path, &admin).await;
    assert_problem(gone, StatusCode::NOT_FOUND, "webhook_not_found").await;
    let again = delete(admin.clone(), path.clone()).await;
    assert_problem(again, StatusCode::NOT_FOUND, "webhook_not_found").await;
    let list: Value = app
        .get_with_token("/api/v1/webhooks", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn bad_urls_and_events_are_refused() {
    let (app, admin) = spawn_webhook_app().await;
    let cases = [
        (
            json!({"url": "ftp://example.com/hook", "events": ["booking.confirmed"]}),
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["booking.confirmed"]}),
            "url",
        ),
        (
            json!({"url": "http://127.0.0.1:9/hook", "events": []}),
            "events",
        ),
        (
            json!({"url": "http://127.0.0.1:9/hook", "events": ["booking.created"]}),
            "events",
        ),
    ];
    for (body, field) in cases {
        let response = app
            .post_json_with_token("/api/v1/webhooks", &admin, &body)
            .await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error_fields(&problem), vec![field.to_owned()], "{body}");
    }
    let extra =
        json!({"url": "http://127.0.0.1:9/hook", "events": ["booking.confirmed"], "secret": "x"});
    let response = app
        .post_json_with_token("/api/v1/webhooks", &admin, &extra)
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn private_loopback_and_link_local_urls_are_refused_by_default() {
    let (app, admin) = spawn_admin_app_with(|_| {}).await;
    let receiver = Receiver::start(Mode::Ok).await;
    for url in [
        receiver.url.as_str(),
        "http://localhost/hook",
        "http://LOCALHOST:8080/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
    ] {
        let body = json!({"url": url, "events": ["booking.confirmed"]});
        let response = app
            .post_json_with_token("/api/v1/webhooks", &admin, &body)
            .await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error_fields(&problem), vec!["url".to_owned()], "{url}");
    }
}

#[tokio::test]
async fn deliveries_are_signed_and_a_failed_one_is_retried_with_the_same_id() {
    let (app, admin) = spawn_webhook_app().await;
    let receiver = Receiver::start(Mode::FailFirst).await;
    let events = [
        "booking.confirmed",
        "booking.cancelled",
        "concert.sold_out",
        "checkin.created",
    ];
    let webhook = id_of(&subscribe(&app, &admin, &receiver, &events).await);
    let (concert_id, seat_type_id) = concert(&app, &admin, 1).await;
    let fan = app.register_user("hooked@example.com").await.access_token;
    let booking = app.book_ok(&fan, &concert_id, &seat_type_id).await;
    let booking_id = id_of(&booking);

    // The first attempt is answered 500, the retry (due 5 s later) 200.
    let attempts = poll_until(20, "booking.confirmed delivered after a retry", || async {
        let got = receiver.about("booking.confirmed", &booking_id);
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert_eq!(
        attempts[0].id, attempts[1].id,
        "a retry keeps its webhook-id"
    );
    let body = &attempts[1].body;
    assert_eq!(body["data"]["status"], "confirmed");
    assert_eq!(body["data"]["concert_id"], concert_id.as_str());
    assert_eq!(body["data"]["seat_type_id"], seat_type_id.as_str());
    assert!(body["timestamp"].is_string());
    // The only seat went: the seat type sold out.
    poll_until(20, "concert.sold_out delivered", || async {
        let got = receiver.about("concert.sold_out", &seat_type_id);
        (got.len() >= 2).then_some(())
    })
    .await;
    let sold_out = &receiver.about("concert.sold_out", &seat_type_id)[0].body;
    assert_eq!(sold_out["data"]["concert_id"], concert_id.as_str());
    assert_eq!(sold_out["data"]["concert_sold_out"], true);

    let log = poll_until(10, "the delivery log to show the success", || async {
        let log = deliveries(&app, &admin, &webhook).await;
        log.iter()
            .any(|d| d["event"] == "booking.confirmed" && d["last_status"] == 204)
            .then_some(log)
    })
    .await;
    let confirmed = log
        .iter()
        .find(|d| d["event"] == "booking.confirmed")
        .unwrap();
    assert_eq!(confirmed["id"], attempts[0].id.as_str());
    assert_eq!(confirmed["attempts"], 2);
    assert!(confirmed["delivered_at"].is_string());
    assert_eq!(confirmed["next_attempt_at"], Value::Null);

    // Check-in and cancellation are delivered too.
    let ticket: Value = app
        .get_with_token(&format!("/api/v1/bookings/{booking_id}/ticket"), &fan)
        .await
        .json()
        .await
        .unwrap();
    let scan = json!({"code": ticket["code"]});
    let path = format!("/api/v1/concerts/{concert_id}/checkins");
    let response = app.post_json_with_token(&path, &admin, &scan).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    poll_until(20, "checkin.created delivered", || async {
        (receiver.about("checkin.created", &booking_id).len() >= 2).then_some(())
    })
    .await;
    // Not a new check-in: no event.
    let response = app.post_json_with_token(&path, &admin, &scan).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    receiver.set_mode(Mode::Ok);
    let other = app.register_user("second@example.com").await.access_token;
    let (concert_id, seat_type_id) = concert(&app, &admin, 5).await;
    let second = id_of(&app.book_ok(&other, &concert_id, &seat_type_id).await);
    assert_eq!(
        app.cancel_booking(&other, &second).await.status(),
        StatusCode::OK
    );
    poll_until(20, "booking.cancelled delivered", || async {
        (!receiver.about("booking.cancelled", &second).is_empty()).then_some(())
    })
    .await;
    let cancelled = &receiver.about("booking.cancelled", &second)[0].body;
    assert_eq!(cancelled["data"]["status"], "cancelled");
    let checked_in = receiver.about("checkin.created", &booking_id);
    let ids: std::collections::HashSet<&str> =
        checked_in.iter().map(|got| got.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one check-in, one event");
}

#[tokio::test]
async fn a_410_disables_the_endpoint() {
    let (app, admin) = spawn_webhook_app().await;
    let receiver = Receiver::start(Mode::Gone).await;
    let webhook = id_of(&subscribe(&app, &admin, &receiver, &["booking.confirmed"]).await);
    let (concert_id, seat_type_id) = concert(&app, &admin, 10).await;
    let fan = app.register_user("gone@example.com").await.access_token;
    app.book_ok(&fan, &concert_id, &seat_type_id).await;
    let endpoint = poll_until(20, "the endpoint disabled", || async {
        let endpoint: Value = app
            .get_with_token(&format!("/api/v1/webhooks/{webhook}"), &admin)
            .await
            .json()
            .await
            .unwrap();
        endpoint["disabled_at"].is_string().then_some(endpoint)
    })
    .await;
    assert_eq!(endpoint["id"], webhook.as_str());
    let log = deliveries(&app, &admin, &webhook).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["last_status"], 410);
    assert_eq!(log[0]["delivered_at"], Value::Null);
    assert_eq!(log[0]["next_attempt_at"], Value::Null);

    receiver.set_mode(Mode::Ok);
    let other = app.register_user("after@example.com").await.access_token;
    app.book_ok(&other, &concert_id, &seat_type_id).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing is sent to a disabled endpoint"
    );
    assert_eq!(deliveries(&app, &admin, &webhook).await.len(), 1);
}

#[tokio::test]
async fn a_receiver_that_hangs_does_not_hold_up_bookings() {
    let (app, admin) = spawn_webhook_app().await;
    let receiver = Receiver::start(Mode::Hang).await;
    subscribe(&app, &admin, &receiver, &["booking.confirmed"]).await;
    let (concert_id, seat_type_id) = concert(&app, &admin, 100).await;
    let fans = app.register_users("patient", 40).await;
    let first = app
        .book_ok(&fans[0].access_token, &concert_id, &seat_type_id)
        .await;
    poll_until(20, "a delivery hanging at the receiver", || async {
        (!receiver
            .about("booking.confirmed", &id_of(&first))
            .is_empty())
        .then_some(())
    })
    .await;
    // Every delivery slot fills with a request that never ends; bookings go on regardless,
    // each answered while the deliveries are still hanging.
    let mut booked = HashMap::new();
    for fan in &fans[1..] {
        let booking = app
            .book_ok(&fan.access_token, &concert_id, &seat_type_id)
            .await;
        booked.insert(id_of(&booking), booking);
    }
    assert_eq!(booked.len(), fans.len() - 1);
    assert_eq!(app.remaining(&concert_id, &seat_type_id).await, 60);
    assert!(!receiver.received().is_empty());
}
