//! API contract, "Checkout: holds and payment": a hold takes a seat at once, is paid into a
//! confirmed booking (the simulated provider decides by Stripe's test names), is released or
//! expires at `expires_at` (checked against the transaction's clock), and every v1 guarantee
//! holds with holds counted: one booking or hold per user and concert, never over capacity.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::helpers::{
    TestApp, assert_problem, concert_body, error_fields, id_of, poll_until, spawn_admin_app,
    spawn_admin_app_with,
};

impl TestApp {
    /// `POST /api/v1/holds` for one seat of `seat_type_id`.
    pub async fn hold(&self, token: &str, concert_id: &str, seat_type_id: &str) -> Response {
        self.post_json_with_token(
            "/api/v1/holds",
            token,
            &json!({ "concert_id": concert_id, "seat_type_id": seat_type_id }),
        )
        .await
    }

    /// Holds one seat; panics unless the answer is 201.
    pub async fn hold_ok(&self, token: &str, concert_id: &str, seat_type_id: &str) -> Value {
        let response = self.hold(token, concert_id, seat_type_id).await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert_eq!(status, StatusCode::CREATED, "hold: {text}");
        serde_json::from_str(&text).expect("a JSON body")
    }

    /// `POST /api/v1/holds/{id}/pay` with `payment_method`.
    pub async fn pay(&self, token: &str, hold_id: &str, method: &str) -> Response {
        self.post_json_with_token(
            &format!("/api/v1/holds/{hold_id}/pay"),
            token,
            &json!({ "payment_method": method }),
        )
        .await
    }

    /// `GET /api/v1/holds/{id}`; panics unless the answer is 200.
    pub async fn hold_of(&self, token: &str, hold_id: &str) -> Value {
        let response = self
            .get_with_token(&format!("/api/v1/holds/{hold_id}"), token)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "GET hold {hold_id}");
        response.json().await.expect("a JSON body")
    }
}

/// A concert on sale with one seat type of `capacity`, and the ids of both.
async fn on_sale(app: &TestApp, admin: &str, name: &str, capacity: u64) -> (String, String) {
    let concert = app
        .create_concert(admin, &concert_body(name, 3600, capacity))
        .await;
    (id_of(&concert), id_of(&concert["seat_types"][0]))
}

#[tokio::test]
async fn a_hold_takes_a_seat_and_paying_it_books_the_ticket() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = on_sale(&app, &admin, "Checkout", 3).await;
    let fan = app.register_user("payer@example.com").await;

    let response = app.hold(&fan.access_token, &concert, &seat_type).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let hold: Value = response.json().await.unwrap();
    let hold_id = id_of(&hold);
    assert_eq!(location, format!("/api/v1/holds/{hold_id}"));
    assert_eq!(hold["status"], "active");
    assert_eq!(hold["price_cents"], 25000);
    assert_eq!(hold["currency"], "USD");
    assert_eq!(hold["booking_id"], Value::Null);
    assert_eq!(
        hold["payment"],
        json!({"provider": "simulated", "status": "requires_payment", "client_secret": null})
    );
    let created = time::OffsetDateTime::parse(
        hold["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        hold["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires - created, time::Duration::seconds(600), "{hold}");
    assert_eq!(app.remaining(&concert, &seat_type).await, 2);
    assert_eq!(app.hold_of(&fan.access_token, &hold_id).await, hold);

    let list = app.get_with_token("/api/v1/holds", &fan.access_token).await;
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["items"], json!([hold]));
    assert_eq!(list["next_cursor"], Value::Null);

    let paid = app.pay(&fan.access_token, &hold_id, "pm_card_visa").await;
    assert_eq!(paid.status(), StatusCode::OK);
    let paid: Value = paid.json().await.unwrap();
    assert_eq!(paid["status"], "completed", "{paid}");
    assert_eq!(paid["payment"]["status"], "succeeded");
    let booking_id = paid["booking_id"]
        .as_str()
        .expect("a booking id")
        .to_owned();
    let booking = app
        .get_with_token(&format!("/api/v1/bookings/{booking_id}"), &fan.access_token)
        .await;
    let booking: Value = booking.json().await.unwrap();
    assert_eq!(booking["status"], "confirmed");
    assert_eq!(booking["seat_type_id"], seat_type);
    assert_eq!(booking["price_cents"], 25000);
    // The hold's seat became the booking's: no second seat taken.
    assert_eq!(app.remaining(&concert, &seat_type).await, 2);

    // Paying again answers the same and charges nothing.
    let again = app.pay(&fan.access_token, &hold_id, "pm_card_visa").await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap(), paid);
    let completed = app
        .get_with_token("/api/v1/holds?status=completed", &fan.access_token)
        .await;
    assert_eq!(completed.json::<Value>().await.unwrap()["items"][0], paid);
    let active = app
        .get_with_token("/api/v1/holds?status=active", &fan.access_token)
        .await;
    assert_eq!(active.json::<Value>().await.unwrap()["items"], json!([]));
}

#[tokio::test]
async fn a_declined_card_leaves_the_hold_active_to_try_again() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = on_sale(&app, &admin, "Declined", 1).await;
    let fan = app.register_user("declined@example.com").await;
    let hold = app.hold_ok(&fan.access_token, &concert, &seat_type).await;
    let hold_id = id_of(&hold);

    let declined = app
        .pay(&fan.access_token, &hold_id, "pm_card_visa_chargeDeclined")
        .await;
    assert_problem(declined, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
    assert_eq!(
        app.hold_of(&fan.access_token, &hold_id).await["status"],
        "active"
    );
    assert_eq!(app.remaining(&concert, &seat_type).await, 0);

    let unknown = app.pay(&fan.access_token, &hold_id, "pm_not_a_card").await;
    let problem = assert_problem(
        unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["payment_method"]);
    let missing = app
        .post_json_with_token(
            &format!("/api/v1/holds/{hold_id}/pay"),
            &fan.access_token,
            &json!({}),
        )
        .await;
    let problem = assert_problem(
        missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["payment_method"]);

    let paid = app
        .pay(&fan.access_token, &hold_id, "pm_card_mastercard")
        .await;
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(paid.json::<Value>().await.unwrap()["status"], "completed");
}

#[tokio::test]
async fn a_released_hold_gives_its_seat_back_once() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = on_sale(&app, &admin, "Release", 1).await;
    let fan = app.register_user("releaser@example.com").await;
    let other = app.register_user("waiting@example.com").await;
    let hold_id = id_of(&app.hold_ok(&fan.access_token, &concert, &seat_type).await);
    let sold_out = app.hold(&other.access_token, &concert, &seat_type).await;
    assert_problem(sold_out, StatusCode::CONFLICT, "sold_out").await;

    let release = format!("/api/v1/holds/{hold_id}/release");
    let released = app.post_with_token(&release, &fan.access_token).await;
    assert_eq!(released.status(), StatusCode::OK);
    assert_eq!(
        released.json::<Value>().await.unwrap()["status"],
        "released"
    );
    assert_eq!(app.remaining(&concert, &seat_type).await, 1);
    let again = app.post_with_token(&release, &fan.access_token).await;
    assert_problem(again, StatusCode::CONFLICT, "hold_not_active").await;
    let pay = app.pay(&fan.access_token, &hold_id, "pm_card_visa").await;
    assert_problem(pay, StatusCode::CONFLICT, "hold_not_active").await;
    assert_eq!(app.remaining(&concert, &seat_type).await, 1);
    app.book_ok(&other.access_token, &concert, &seat_type).await;
    assert_eq!(app.remaining(&concert, &seat_type).await, 0);
}

#[tokio::test]
async fn a_hold_expires_at_its_instant_and_its_seat_is_free_from_then() {
    let (app, admin) = spawn_admin_app_with(|config| {
        config.checkout.hold_ttl = Duration::from_secs(2);
    })
    .await;
    let (concert, seat_type) = on_sale(&app, &admin, "Expiry", 1).await;
    let fan = app.register_user("slow@example.com").await;
    let other = app.register_user("quick@example.com").await;
    let hold = app.hold_ok(&fan.access_token, &concert, &seat_type).await;
    let hold_id = id_of(&hold);
    let refused = app.book(&other.access_token, &concert, &seat_type).await;
    assert_problem(refused, StatusCode::CONFLICT, "sold_out").await;

    // From `expires_at` on, the hold reads expired and its seat is anyone's.
    let expires_at = time::OffsetDateTime::parse(
        hold["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let wait = expires_at - time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    app.book_ok(&other.access_token, &concert, &seat_type).await;
    assert_eq!(
        app.hold_of(&fan.access_token, &hold_id).await["status"],
        "expired"
    );
    let late = app.pay(&fan.access_token, &hold_id, "pm_card_visa").await;
    assert_problem(late, StatusCode::CONFLICT, "hold_expired").await;
    let release = app
        .post_with_token(
            &format!("/api/v1/holds/{hold_id}/release"),
            &fan.access_token,
        )
        .await;
    assert_problem(release, StatusCode::CONFLICT, "hold_not_active").await;
    assert_eq!(app.remaining(&concert, &seat_type).await, 0);
    let expired = app
        .get_with_token("/api/v1/holds?status=expired", &fan.access_token)
        .await;
    assert_eq!(
        expired.json::<Value>().await.unwrap()["items"][0]["id"],
        hold_id
    );
}

#[tokio::test]
async fn an_unpaid_hold_returns_its_seat_by_itself() {
    let (app, admin) = spawn_admin_app_with(|config| {
        config.checkout.hold_ttl = Duration::from_secs(1);
    })
    .await;
    let (concert, seat_type) = on_sale(&app, &admin, "Comes back", 3).await;
    for index in 0..3 {
        let fan = app.register_user(&format!("gone{index}@example.com")).await;
        app.hold_ok(&fan.access_token, &concert, &seat_type).await;
    }
    assert_eq!(app.remaining(&concert, &seat_type).await, 0);
    // Nobody books or pays: the sales timer has the writer expire them, and the view shows it.
    poll_until(10, "the expired holds' seats to come back", || async {
        (app.remaining(&concert, &seat_type).await == 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn one_booking_or_hold_per_user_and_concert() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = on_sale(&app, &admin, "One each", 10).await;
    let fan = app.register_user("one@example.com").await;
    app.hold_ok(&fan.access_token, &concert, &seat_type).await;
    let second_hold = app.hold(&fan.access_token, &concert, &seat_type).await;
    assert_problem(second_hold, StatusCode::CONFLICT, "already_booked").await;
    let booking = app.book(&fan.access_token, &concert, &seat_type).await;
    assert_problem(booking, StatusCode::CONFLICT, "already_booked").await;

    let booker = app.register_user("booker@example.com").await;
    app.book_ok(&booker.access_token, &concert, &seat_type)
        .await;
    let hold = app.hold(&booker.access_token, &concert, &seat_type).await;
    assert_problem(hold, StatusCode::CONFLICT, "already_booked").await;
    assert_eq!(app.remaining(&concert, &seat_type).await, 8);
}

#[tokio::test]
async fn holds_are_refused_like_bookings() {
    let (app, admin) = spawn_admin_app().await;
    let fan = app.register_user("refused@example.com").await;
    let (concert, seat_type) = on_sale(&app, &admin, "Refusals", 1).await;
    let unknown = app
        .hold(
            &fan.access_token,
            &uuid::Uuid::now_v7().to_string(),
            &seat_type,
        )
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "concert_not_found").await;
    let wrong_seat = app
        .hold(
            &fan.access_token,
            &concert,
            &uuid::Uuid::now_v7().to_string(),
        )
        .await;
    assert_problem(wrong_seat, StatusCode::NOT_FOUND, "seat_type_not_found").await;
    let mut later = concert_body("Later", 3600, 5);
    later["sales_open_at"] = json!(crate::helpers::rfc3339_in(600));
    let later = app.create_concert(&admin, &later).await;
    let early = app
        .hold(
            &fan.access_token,
            &id_of(&later),
            &id_of(&later["seat_types"][0]),
        )
        .await;
    assert_problem(early, StatusCode::CONFLICT, "sales_not_open").await;
    let anonymous = app
        .post_json(
            "/api/v1/holds",
            &json!({"concert_id": concert, "seat_type_id": seat_type}),
        )
        .await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let extra = app
        .post_json_with_token(
            "/api/v1/holds",
            &fan.access_token,
            &json!({"concert_id": concert, "seat_type_id": seat_type, "seats": 2}),
        )
        .await;
    assert_problem(extra, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // Someone else's hold, or no hold at all, is not found.
    let hold_id = id_of(&app.hold_ok(&fan.access_token, &concert, &seat_type).await);
    let stranger = app.register_user("stranger@example.com").await;
    for path in [
        format!("/api/v1/holds/{hold_id}"),
        "/api/v1/holds/not-a-uuid".to_owned(),
    ] {
        let response = app.get_with_token(&path, &stranger.access_token).await;
        assert_problem(response, StatusCode::NOT_FOUND, "hold_not_found").await;
    }
    let pay = app
        .pay(&stranger.access_token, &hold_id, "pm_card_visa")
        .await;
    assert_problem(pay, StatusCode::NOT_FOUND, "hold_not_found").await;
    let release = app
        .post_with_token(
            &format!("/api/v1/holds/{hold_id}/release"),
            &stranger.access_token,
        )
        .await;
    assert_problem(release, StatusCode::NOT_FOUND, "hold_not_found").await;
    // Admins may read any hold.
    assert_eq!(app.hold_of(&admin, &hold_id).await["status"], "active");
    let sold_out = app.hold(&stranger.access_token, &concert, &seat_type).await;
    assert_problem(sold_out, StatusCode::CONFLICT, "sold_out").await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_hold() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = on_sale(&app, &admin, "Replay", 5).await;
    let fan = app.register_user("retry@example.com").await;
    let send = |path: &'static str| {
        app.client
            .post(app.url(path))
            .bearer_auth(&fan.access_token)
            .header("Idempotency-Key", "checkout-1")
            .json(&json!({"concert_id": concert, "seat_type_id": seat_type}))
            .send()
    };
    let first = send("/api/v1/holds").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = send("/api/v1/holds").await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.remaining(&concert, &seat_type).await, 4);
    // The same key for a booking is another request.
    let booking = send("/api/v1/bookings").await.unwrap();
    assert_problem(booking, StatusCode::CONFLICT, "idempotency_key_reused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_racing_holds_for_few_seats_hold_exactly_that_many() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = on_sale(&app, &admin, "Race", 5).await;
    let fans = app.register_users("racer", 40).await;
    let app = Arc::new(app);
    let barrier = Arc::new(Barrier::new(fans.len()));
    let mut racers = Vec::new();
    for fan in fans {
        let (app, barrier, concert, seat_type) = (
            app.clone(),
            barrier.clone(),
            concert.clone(),
            seat_type.clone(),
        );
        racers.push(tokio::spawn(async move {
            barrier.wait().await;
            let response = app.hold(&fan.access_token, &concert, &seat_type).await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body, fan)
        }));
    }
    let mut held = Vec::new();
    for racer in racers {
        let (status, body, fan) = racer.await.unwrap();
        match status {
            StatusCode::CREATED => held.push((id_of(&body), fan)),
            StatusCode::CONFLICT => assert_eq!(body["code"], "sold_out", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(held.len(), 5);
    assert_eq!(app.remaining(&concert, &seat_type).await, 0);
    // Two pay, two let go: two seats come back, exactly.
    for (hold_id, fan) in &held[..2] {
        let paid = app.pay(&fan.access_token, hold_id, "pm_card_visa").await;
        assert_eq!(paid.status(), StatusCode::OK);
    }
    for (hold_id, fan) in &held[2..4] {
        let path = format!("/api/v1/holds/{hold_id}/release");
        let released = app.post_with_token(&path, &fan.access_token).await;
        assert_eq!(released.status(), StatusCode::OK);
    }
    assert_eq!(app.remaining(&concert, &seat_type).await, 2);
    let sales = app.sales(&admin, &concert).await;
    assert_eq!(sales["bookings_confirmed"], 2, "{sales}");
    let seats = &sales["seat_types"][0];
    assert_eq!(
        (&seats["sold"], &seats["held"], &seats["remaining"]),
        (&json!(2), &json!(1), &json!(2)),
        "{sales}"
    );
    assert_eq!(seats["revenue_cents"], 50000);
}

#[tokio::test]
async fn cancelling_a_concert_ends_its_holds() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = on_sale(&app, &admin, "Called off", 2).await;
    let fan = app.register_user("holding@example.com").await;
    let hold_id = id_of(&app.hold_ok(&fan.access_token, &concert, &seat_type).await);
    let cancelled = app
        .post_with_token(&format!("/api/v1/concerts/{concert}/cancel"), &admin)
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(
        app.hold_of(&fan.access_token, &hold_id).await["status"],
        "released"
    );
    let pay = app.pay(&fan.access_token, &hold_id, "pm_card_visa").await;
    assert_problem(pay, StatusCode::CONFLICT, "hold_not_active").await;
    assert_eq!(app.remaining(&concert, &seat_type).await, 2);
}

/// `GET /api/v1/bookings/{id}` as `token`.
async fn booking_of(app: &TestApp, token: &str, booking_id: &str) -> Value {
    let response = app
        .get_with_token(&format!("/api/v1/bookings/{booking_id}"), token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_paid_booking_cancelled_is_refunded_in_full() {
    let (app, admin) = spawn_admin_app().await;
    let (concert, seat_type) = on_sale(&app, &admin, "Refunds", 5).await;

    // Paid in one step (the simulated provider), then cancelled by its holder.
    let fan = app.register_user("one-step@example.com").await;
    let booking = app.book_ok(&fan.access_token, &concert, &seat_type).await;
    assert_eq!(
        booking["payment"],
        json!({"provider": "simulated", "amount_cents": 25000, "status": "succeeded"})
    );
    let booking_id = id_of(&booking);
    let cancelled = app.cancel_booking(&fan.access_token, &booking_id).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    poll_until(15, "the one-step booking's refund", || async {
        let booking = booking_of(&app, &fan.access_token, &booking_id).await;
        (booking["payment"]["status"] == "refunded").then_some(())
    })
    .await;

    // Paid through a hold, then cancelled: the booking and the hold both say refunded.
    let payer = app.register_user("two-step@example.com").await;
    let hold_id = id_of(&app.hold_ok(&payer.access_token, &concert, &seat_type).await);
    let paid = app.pay(&payer.access_token, &hold_id, "pm_card_visa").await;
    let paid: Value = paid.json().await.unwrap();
    let booking_id = paid["booking_id"].as_str().unwrap().to_owned();
    assert_eq!(
        booking_of(&app, &payer.access_token, &booking_id).await["payment"],
        json!({"provider": "simulated", "amount_cents": 25000, "status": "succeeded"})
    );
    let cancelled = app.cancel_booking(&payer.access_token, &booking_id).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    poll_until(15, "the paid hold's refund", || async {
        let booking = booking_of(&app, &payer.access_token, &booking_id).await;
        let hold = app.hold_of(&payer.access_token, &hold_id).await;
        (booking["payment"]["status"] == "refunded" && hold["payment"]["status"] == "refunded")
            .then_some(())
    })
    .await;

    // A concert called off refunds every paid booking.
    let last = app.register_user("called-off@example.com").await;
    let booking_id = id_of(&app.book_ok(&last.access_token, &concert, &seat_type).await);
    let called_off = app
        .post_with_token(&format!("/api/v1/concerts/{concert}/cancel"), &admin)
        .await;
    assert_eq!(called_off.status(), StatusCode::OK);
    poll_until(15, "the called-off concert's refund", || async {
        let booking = booking_of(&app, &last.access_token, &booking_id).await;
        (booking["payment"]["status"] == "refunded").then_some(())
    })
    .await;
    let sales = app.sales(&admin, &concert).await;
    assert_eq!(sales["seat_types"][0]["refunded_cents"], 75000, "{sales}");
    assert_eq!(sales["seat_types"][0]["revenue_cents"], 0, "{sales}");
}

#[tokio::test]
async fn a_free_seat_has_no_payment() {
    let (app, admin) = spawn_admin_app().await;
    let mut body = concert_body("Free", 3600, 5);
    body["seat_types"][0]["price_cents"] = json!(0);
    let concert = app.create_concert(&admin, &body).await;
    let (concert, seat_type) = (id_of(&concert), id_of(&concert["seat_types"][0]));
    let fan = app.register_user("free@example.com").await;
    let booking = app.book_ok(&fan.access_token, &concert, &seat_type).await;
    assert_eq!(booking["payment"], Value::Null);
    let other = app.register_user("free-hold@example.com").await;
    let hold_id = id_of(&app.hold_ok(&other.access_token, &concert, &seat_type).await);
    let paid = app
        .post_json_with_token(
            &format!("/api/v1/holds/{hold_id}/pay"),
            &other.access_token,
            &json!({}),
        )
        .await;
    assert_eq!(paid.status(), StatusCode::OK);
    let paid: Value = paid.json().await.unwrap();
    assert_eq!(paid["status"], "completed");
    let booking_id = paid["booking_id"].as_str().unwrap();
    assert_eq!(
        booking_of(&app, &other.access_token, booking_id).await["payment"],
        Value::Null
    );
}
