//! API contract, "Bookings": booking and reading bookings, the 404/409 answers, cancelling,
//! `Idempotency-Key`, sales closing at the start instant, and the booking guarantees under
//! concurrent HTTP requests (capacity never exceeded, one booking per user, one cancel wins).

use std::sync::Arc;

use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::helpers::{TestApp, assert_problem, concert_body, id_of, poll_until, spawn_admin_app};

/// A concert with one seat type of `capacity` (25000 USD cents), and that seat type's id.
async fn concert_with(
    app: &TestApp,
    admin: &str,
    starts_in: i64,
    capacity: u64,
) -> (String, String) {
    let concert = app
        .create_concert(admin, &concert_body("Bookable", starts_in, capacity))
        .await;
    (id_of(&concert), id_of(&concert["seat_types"][0]))
}

/// `GET path` as `token`, 200 JSON body.
async fn get_ok(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get_with_token(path, token).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// `POST /api/v1/bookings` with an `Idempotency-Key`.
async fn book_with_key(app: &TestApp, token: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/bookings"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_booking_is_201_with_location_and_the_seat_type_price() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = concert_with(&app, &admin, 3600, 5).await;
    let fan = app.register_user("fan@example.com").await;

    let response = app.book(&fan.access_token, &concert, &seat_type).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response
        .headers()
        .get(header::LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_owned();
    let booking: Value = response.json().await.unwrap();
    let id = id_of(&booking);
    uuid::Uuid::parse_str(&id).unwrap();
    assert!(
        location.ends_with(&format!("/api/v1/bookings/{id}")),
        "{location}"
    );
    assert_eq!(booking["user_id"], fan.user_id());
    assert_eq!(booking["concert_id"], concert);
    assert_eq!(booking["seat_type_id"], seat_type);
    assert_eq!(booking["status"], "confirmed");
    assert_eq!(booking["price_cents"], 25000);
    assert_eq!(booking["currency"], "USD");
    assert!(booking["created_at"].is_string());
    assert!(booking["cancelled_at"].is_null());
    assert_eq!(app.remaining(&concert, &seat_type).await, 4);

    // Reading it back: the owner and an admin see it; anyone else gets 404.
    let path = format!("/api/v1/bookings/{id}");
    assert_eq!(get_ok(&app, &path, &fan.access_token).await, booking);
    assert_eq!(get_ok(&app, &path, &admin).await, booking);
    let other = app.register_user("other@example.com").await;
    let response = app.get_with_token(&path, &other.access_token).await;
    assert_problem(response, StatusCode::NOT_FOUND, "booking_not_found").await;
    let response = app.get(&path).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let response = app
        .get_with_token(
            &format!("/api/v1/bookings/{}", uuid::Uuid::now_v7()),
            &fan.access_token,
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "booking_not_found").await;

    // Booking needs a token.
    let response = app
        .post_json(
            "/api/v1/bookings",
            &json!({"concert_id": concert, "seat_type_id": seat_type}),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert_eq!(app.remaining(&concert, &seat_type).await, 4);
}

#[tokio::test]
async fn unknown_concerts_and_seat_types_are_404() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = concert_with(&app, &admin, 3600, 5).await;
    let (other_concert, other_seat_type) = concert_with(&app, &admin, 3600, 5).await;
    let fan = app.register_user("fan@example.com").await;
    let unknown = uuid::Uuid::now_v7().to_string();

    let response = app.book(&fan.access_token, &unknown, &seat_type).await;
    assert_problem(response, StatusCode::NOT_FOUND, "concert_not_found").await;
    let response = app.book(&fan.access_token, &concert, &unknown).await;
    assert_problem(response, StatusCode::NOT_FOUND, "seat_type_not_found").await;
    let response = app
        .book(&fan.access_token, &concert, &other_seat_type)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "seat_type_not_found").await;

    assert_eq!(app.remaining(&concert, &seat_type).await, 5);
    assert_eq!(app.remaining(&other_concert, &other_seat_type).await, 5);
    let list = get_ok(&app, "/api/v1/bookings", &fan.access_token).await;
    assert!(list["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_second_booking_for_the_same_concert_is_409_already_booked() {
    let (app, admin) = spawn_admin_app().await;
    let mut body = concert_body("Two kinds", 3600, 5);
    body["seat_types"] = json!([
        {"name": "A", "price_cents": 100, "capacity": 5},
        {"name": "B", "price_cents": 200, "capacity": 5},
    ]);
    let concert = app.create_concert(&admin, &body).await;
    let id = id_of(&concert);
    let a = id_of(&concert["seat_types"][0]);
    let b = id_of(&concert["seat_types"][1]);
    let fan = app.register_user("fan@example.com").await;
    app.book_ok(&fan.access_token, &id, &a).await;
    let response = app.book(&fan.access_token, &id, &a).await;
    assert_problem(response, StatusCode::CONFLICT, "already_booked").await;
    let response = app.book(&fan.access_token, &id, &b).await;
    assert_problem(response, StatusCode::CONFLICT, "already_booked").await;
    assert_eq!(app.remaining(&id, &a).await, 4);
    assert_eq!(app.remaining(&id, &b).await, 5);
}

#[tokio::test]
async fn the_last_seat_goes_then_sold_out() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = concert_with(&app, &admin, 3600, 2).await;
    let users = app.register_users("fan", 3).await;
    app.book_ok(&users[0].access_token, &concert, &seat_type)
        .await;
    assert_eq!(app.concert(&concert).await["status"], "on_sale");
    app.book_ok(&users[1].access_token, &concert, &seat_type)
        .await;
    let response = app.book(&users[2].access_token, &concert, &seat_type).await;
    assert_problem(response, StatusCode::CONFLICT, "sold_out").await;
    assert_eq!(app.remaining(&concert, &seat_type).await, 0);
    let fetched = app.concert(&concert).await;
    assert_eq!(fetched["status"], "sold_out");
    assert_eq!(fetched["booking_open"], false);
    assert_eq!(fetched["seat_types"][0]["remaining"], 0);
    let sales = app.sales(&admin, &concert).await;
    assert_eq!(sales["seat_types"][0]["sold"], 2);
    assert_eq!(sales["bookings_confirmed"], 2);
    // Sales over time: both on the (UTC) day the bookings say they were made.
    let created = mine_created_day(&app, &users[0].access_token).await;
    assert_eq!(sales["by_day"], json!([{"day": created, "sold": 2}]));

    // A cancellation puts it back on sale.
    let mine = get_ok(&app, "/api/v1/bookings", &users[0].access_token).await;
    let booking = id_of(&mine["items"][0]);
    let response = app.cancel_booking(&users[0].access_token, &booking).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.concert(&concert).await["status"], "on_sale");
    app.book_ok(&users[2].access_token, &concert, &seat_type)
        .await;
}

#[tokio::test]
async fn a_concert_with_one_sold_out_seat_type_is_still_on_sale() {
    let (app, admin) = spawn_admin_app().await;
    let mut body = concert_body("Mixed", 3600, 1);
    body["seat_types"] = json!([
        {"name": "A", "price_cents": 100, "capacity": 1},
        {"name": "B", "price_cents": 200, "capacity": 1},
    ]);
    let concert = app.create_concert(&admin, &body).await;
    let id = id_of(&concert);
    let users = app.register_users("fan", 2).await;
    app.book_ok(
        &users[0].access_token,
        &id,
        &id_of(&concert["seat_types"][0]),
    )
    .await;
    assert_eq!(app.concert(&id).await["status"], "on_sale");
    app.book_ok(
        &users[1].access_token,
        &id,
        &id_of(&concert["seat_types"][1]),
    )
    .await;
    assert_eq!(app.concert(&id).await["status"], "sold_out");
}

#[tokio::test]
async fn cancelling_returns_the_seat_and_allows_booking_again() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = concert_with(&app, &admin, 3600, 3).await;
    let fan = app.register_user("fan@example.com").await;
    let other = app.register_user("other@example.com").await;
    let booking = app.book_ok(&fan.access_token, &concert, &seat_type).await;
    let id = id_of(&booking);
    assert_eq!(app.remaining(&concert, &seat_type).await, 2);

    let response = app.cancel_booking(&other.access_token, &id).await;
    assert_problem(response, StatusCode::NOT_FOUND, "booking_not_found").await;
    let response = app
        .cancel_booking(&fan.access_token, &uuid::Uuid::now_v7().to_string())
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "booking_not_found").await;
    assert_eq!(app.remaining(&concert, &seat_type).await, 2);

    let response = app.cancel_booking(&fan.access_token, &id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["id"], booking["id"]);
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled_at"].is_string(), "{cancelled}");
    assert_eq!(cancelled["price_cents"], booking["price_cents"]);
    assert_eq!(app.remaining(&concert, &seat_type).await, 3);
    let fetched = get_ok(&app, &format!("/api/v1/bookings/{id}"), &fan.access_token).await;
    assert_eq!(fetched["status"], "cancelled");

    let response = app.cancel_booking(&fan.access_token, &id).await;
    assert_problem(response, StatusCode::CONFLICT, "already_cancelled").await;
    assert_eq!(app.remaining(&concert, &seat_type).await, 3);

    let again = app.book_ok(&fan.access_token, &concert, &seat_type).await;
    assert_ne!(again["id"], booking["id"]);
    assert_eq!(app.remaining(&concert, &seat_type).await, 2);
}

#[tokio::test]
async fn my_bookings_are_listed_newest_first_with_a_status_filter_and_pages() {
    let (app, admin) = spawn_admin_app().await;
    let fan = app.register_user("fan@example.com").await;
    let other = app.register_user("other@example.com").await;
    let mut booked = Vec::new();
    for _ in 0..5 {
        let (concert, seat_type) = concert_with(&app, &admin, 3600, 5).await;
        booked.push(app.book_ok(&fan.access_token, &concert, &seat_type).await);
        app.book_ok(&other.access_token, &concert, &seat_type).await;
    }
    for booking in [&booked[1], &booked[3]] {
        let response = app.cancel_booking(&fan.access_token, &id_of(booking)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let newest_first: Vec<String> = booked.iter().rev().map(id_of).collect();

    let list = get_ok(&app, "/api/v1/bookings", &fan.access_token).await;
    let ids: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, newest_first);
    assert!(list["next_cursor"].is_null());
    for item in list["items"].as_array().unwrap() {
        assert_eq!(item["user_id"], fan.user_id());
    }

    let confirmed = get_ok(&app, "/api/v1/bookings?status=confirmed", &fan.access_token).await;
    let ids: Vec<String> = confirmed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(
        ids,
        vec![id_of(&booked[4]), id_of(&booked[2]), id_of(&booked[0])]
    );
    let cancelled = get_ok(&app, "/api/v1/bookings?status=cancelled", &fan.access_token).await;
    let ids: Vec<String> = cancelled["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, vec![id_of(&booked[3]), id_of(&booked[1])]);

    // Pages of two.
    let mut walked = Vec::new();
    let mut path = "/api/v1/bookings?limit=2".to_owned();
    for _ in 0..5 {
        let page = get_ok(&app, &path, &fan.access_token).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        walked.extend(items.iter().map(id_of));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!(
                    "/api/v1/bookings?limit=2&cursor={}",
                    crate::concerts::percent_encode(cursor)
                );
            }
            None => break,
        }
    }
    assert_eq!(walked, newest_first, "pages: no duplicates, no gaps");

    let response = app
        .get_with_token("/api/v1/bookings?limit=0", &fan.access_token)
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let response = app
        .get_with_token("/api/v1/bookings?status=pending", &fan.access_token)
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let response = app.get("/api/v1/bookings").await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_original_booking() {
    let (app, admin) = spawn_admin_app().await;
    let mut body = concert_body("Retry", 3600, 5);
    body["seat_types"] = json!([
        {"name": "A", "price_cents": 100, "capacity": 5},
        {"name": "B", "price_cents": 200, "capacity": 5},
    ]);
    let concert = app.create_concert(&admin, &body).await;
    let id = id_of(&concert);
    let a = id_of(&concert["seat_types"][0]);
    let b = id_of(&concert["seat_types"][1]);
    let fan = app.register_user("fan@example.com").await;
    let body = json!({"concert_id": id, "seat_type_id": a});

    let first = book_with_key(&app, &fan.access_token, "key-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    for _ in 0..2 {
        let again = book_with_key(&app, &fan.access_token, "key-1", &body).await;
        assert_eq!(again.status(), StatusCode::CREATED);
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["id"], first["id"], "the original booking");
    }
    assert_eq!(app.remaining(&id, &a).await, 4, "no second seat taken");
    let list = get_ok(&app, "/api/v1/bookings", &fan.access_token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let other_body = json!({"concert_id": id, "seat_type_id": b});
    let response = book_with_key(&app, &fan.access_token, "key-1", &other_body).await;
    assert_problem(response, StatusCode::CONFLICT, "idempotency_key_reused").await;
    assert_eq!(app.remaining(&id, &b).await, 5);

    let long_key = "k".repeat(256);
    let response = book_with_key(&app, &fan.access_token, &long_key, &body).await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let response = book_with_key(&app, &fan.access_token, "", &body).await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    // A 255-character key is fine; a new key for the same body is a new request.
    let max_key = "m".repeat(255);
    let response = book_with_key(&app, &fan.access_token, &max_key, &body).await;
    assert_problem(response, StatusCode::CONFLICT, "already_booked").await;
    assert_eq!(app.remaining(&id, &a).await, 4);
}

#[tokio::test]
async fn idempotency_keys_belong_to_one_user() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = concert_with(&app, &admin, 3600, 5).await;
    let users = app.register_users("fan", 2).await;
    let body = json!({"concert_id": concert, "seat_type_id": seat_type});
    let first = book_with_key(&app, &users[0].access_token, "shared", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let second = book_with_key(&app, &users[1].access_token, "shared", &body).await;
    assert_eq!(second.status(), StatusCode::CREATED);
    let second: Value = second.json().await.unwrap();
    assert_ne!(first["id"], second["id"]);
    assert_eq!(second["user_id"], users[1].user_id());
    assert_eq!(app.remaining(&concert, &seat_type).await, 3);
}

#[tokio::test]
async fn sales_close_at_the_start_instant() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = concert_with(&app, &admin, 2, 5).await;
    let users = app.register_users("fan", 2).await;
    let booking = app
        .book_ok(&users[0].access_token, &concert, &seat_type)
        .await;

    poll_until(5, "the concert to start", || async {
        (app.concert(&concert).await["status"] == "closed").then_some(())
    })
    .await;
    let response = app.book(&users[1].access_token, &concert, &seat_type).await;
    assert_problem(response, StatusCode::CONFLICT, "booking_closed").await;
    let response = app
        .cancel_booking(&users[0].access_token, &id_of(&booking))
        .await;
    assert_problem(response, StatusCode::CONFLICT, "booking_closed").await;

    let fetched = get_ok(
        &app,
        &format!("/api/v1/bookings/{}", id_of(&booking)),
        &users[0].access_token,
    )
    .await;
    assert_eq!(fetched["status"], "confirmed");
    assert_eq!(app.remaining(&concert, &seat_type).await, 4);
    assert_eq!(app.availability(&concert).await["booking_open"], false);
    let response = app
        .patch_json_with_token(
            &format!("/api/v1/concerts/{concert}"),
            &admin,
            &json!({"name": "Too late"}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT, "booking_closed").await;
}

/// The outcome of one booking request: status and problem code (if any).
async fn outcome(response: reqwest::Response) -> (StatusCode, Option<String>) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["code"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_users_race_for_ten_seats() {
    const USERS: usize = 200;
    const CAPACITY: u64 = 10;
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = concert_with(&app, &admin, 3600, CAPACITY).await;
    let users = app.register_users("racer", USERS).await;

    let barrier = Arc::new(Barrier::new(USERS));
    let mut tasks = tokio::task::JoinSet::new();
    for user in users {
        let client = app.client.clone();
        let url = app.url("/api/v1/bookings");
        let body = json!({"concert_id": concert, "seat_type_id": seat_type});
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let response = client
                .post(url)
                .bearer_auth(&user.access_token)
                .json(&body)
                .send()
                .await
                .unwrap();
            outcome(response).await
        });
    }
    let outcomes = tasks.join_all().await;
    let created = outcomes
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    let sold_out = outcomes
        .iter()
        .filter(|(status, code)| {
            *status == StatusCode::CONFLICT && code.as_deref() == Some("sold_out")
        })
        .count();
    assert_eq!(created, 10, "outcomes: {outcomes:?}");
    assert_eq!(sold_out, USERS - 10, "outcomes: {outcomes:?}");
    assert_eq!(app.remaining(&concert, &seat_type).await, 0);
    let sales = app.sales(&admin, &concert).await;
    assert_eq!(sales["seat_types"][0]["sold"], 10);
    assert_eq!(sales["seat_types"][0]["remaining"], 0);
    assert_eq!(sales["bookings_confirmed"], 10);
    assert_eq!(app.concert(&concert).await["status"], "sold_out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_simultaneous_bookings_by_one_user_make_one_booking() {
    const REQUESTS: usize = 20;
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = concert_with(&app, &admin, 3600, 50).await;
    let fan = app.register_user("eager@example.com").await;

    let barrier = Arc::new(Barrier::new(REQUESTS));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let client = app.client.clone();
        let url = app.url("/api/v1/bookings");
        let token = fan.access_token.clone();
        let body = json!({"concert_id": concert, "seat_type_id": seat_type});
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let response = client
                .post(url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            outcome(response).await
        });
    }
    let outcomes = tasks.join_all().await;
    let created = outcomes
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    let already = outcomes
        .iter()
        .filter(|(status, code)| {
            *status == StatusCode::CONFLICT && code.as_deref() == Some("already_booked")
        })
        .count();
    assert_eq!(created, 1, "outcomes: {outcomes:?}");
    assert_eq!(already, REQUESTS - 1, "outcomes: {outcomes:?}");
    assert_eq!(app.remaining(&concert, &seat_type).await, 49);
    let list = get_ok(&app, "/api/v1/bookings", &fan.access_token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_simultaneous_cancels_cancel_once() {
    const REQUESTS: usize = 20;
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = concert_with(&app, &admin, 3600, 5).await;
    let users = app.register_users("fan", 2).await;
    app.book_ok(&users[1].access_token, &concert, &seat_type)
        .await;
    let booking = app
        .book_ok(&users[0].access_token, &concert, &seat_type)
        .await;
    assert_eq!(app.remaining(&concert, &seat_type).await, 3);

    let barrier = Arc::new(Barrier::new(REQUESTS));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/bookings/{}/cancel", id_of(&booking)));
        let token = users[0].access_token.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let response = client.post(url).bearer_auth(&token).send().await.unwrap();
            outcome(response).await
        });
    }
    let outcomes = tasks.join_all().await;
    let ok = outcomes
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    let already = outcomes
        .iter()
        .filter(|(status, code)| {
            *status == StatusCode::CONFLICT && code.as_deref() == Some("already_cancelled")
        })
        .count();
    assert_eq!(ok, 1, "outcomes: {outcomes:?}");
    assert_eq!(already, REQUESTS - 1, "outcomes: {outcomes:?}");
    assert_eq!(
        app.remaining(&concert, &seat_type).await,
        4,
        "exactly one seat back"
    );
    let sales = app.sales(&admin, &concert).await;
    assert_eq!(sales["bookings_confirmed"], 1);
    assert_eq!(sales["bookings_cancelled"], 1);
}

/// The UTC day of the caller's newest booking, as its `created_at` says.
async fn mine_created_day(app: &TestApp, token: &str) -> String {
    let mine = get_ok(app, "/api/v1/bookings", token).await;
    mine["items"][0]["created_at"].as_str().unwrap()[..10].to_owned()
}

#[tokio::test]
async fn an_admin_lists_a_concerts_bookings_newest_first_and_nobody_else_may() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = concert_with(&app, &admin, 86_400, 10).await;
    let (other, other_seat) = concert_with(&app, &admin, 86_400, 10).await;
    let users = app.register_users("lister", 3).await;
    let mut ids = Vec::new();
    for user in &users {
        ids.push(id_of(
            &app.book_ok(&user.access_token, &concert, &seat_type).await,
        ));
    }
    app.book_ok(&users[0].access_token, &other, &other_seat)
        .await;
    app.cancel_booking(&users[1].access_token, &ids[1]).await;

    let path = format!("/api/v1/concerts/{concert}/bookings");
    let page = get_ok(&app, &format!("{path}?limit=2"), &admin).await;
    let listed: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(
        listed,
        [ids[2].clone(), ids[1].clone()],
        "newest first, of this concert only"
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = get_ok(&app, &format!("{path}?limit=2&cursor={cursor}"), &admin).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(id_of(&rest["items"][0]), ids[0]);
    assert!(rest["next_cursor"].is_null());
    let cancelled = get_ok(&app, &format!("{path}?status=cancelled"), &admin).await;
    assert_eq!(cancelled["items"].as_array().unwrap().len(), 1);
    assert_eq!(id_of(&cancelled["items"][0]), ids[1]);

    let response = app.get_with_token(&path, &users[0].access_token).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.get(&path).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let unknown = "/api/v1/concerts/01900000-0000-7000-8000-000000000000/bookings";
    let response = app.get_with_token(unknown, &admin).await;
    assert_problem(response, StatusCode::NOT_FOUND, "concert_not_found").await;
}
