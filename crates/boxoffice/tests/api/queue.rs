//! API v1.1, "Waiting room for on-sales": fans join a concert's queue, the pre-queue is shuffled
//! when sales open, later arrivals queue behind it, people are admitted at the room's rate, and
//! bookings and holds need an admission of their own, for that concert, unused.

use std::collections::HashSet;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::concerts::EventStream;
use crate::helpers::{
    Session, TestApp, assert_problem, concert_body, id_of, poll_until, rfc3339_in, spawn_admin_app,
};

impl TestApp {
    /// `POST /api/v1/concerts/{id}/queue`.
    pub async fn join_queue(&self, token: &str, concert_id: &str) -> Response {
        self.post_with_token(&format!("/api/v1/concerts/{concert_id}/queue"), token)
            .await
    }

    /// `GET /api/v1/concerts/{id}/queue`; panics unless the answer is 200.
    pub async fn queue_ticket(&self, token: &str, concert_id: &str) -> Value {
        let response = self
            .get_with_token(&format!("/api/v1/concerts/{concert_id}/queue"), token)
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// `POST /api/v1/{path}` (bookings or holds) of one seat with an admission header.
    pub async fn post_admitted(
        &self,
        path: &str,
        token: &str,
        admission: &str,
        concert_id: &str,
        seat_type_id: &str,
    ) -> Response {
        self.client
            .post(self.url(&format!("/api/v1/{path}")))
            .bearer_auth(token)
            .header("Boxoffice-Admission", admission)
            .json(&json!({ "concert_id": concert_id, "seat_type_id": seat_type_id }))
            .send()
            .await
            .expect("request sent")
    }
}

/// A concert whose sales open in `opens_in` seconds behind a waiting room admitting
/// `per_minute`.
async fn room_concert(
    app: &TestApp,
    admin: &str,
    opens_in: i64,
    per_minute: u32,
) -> (String, String) {
    let mut body = concert_body("Queued", 3600, 50);
    body["sales_open_at"] = json!(rfc3339_in(opens_in));
    body["waiting_room"] = json!({ "admit_per_minute": per_minute, "admission_ttl_seconds": 600 });
    let concert = app.create_concert(admin, &body).await;
    (id_of(&concert), id_of(&concert["seat_types"][0]))
}

/// Waits until `fan` is admitted and returns the admitted ticket.
async fn admitted(app: &TestApp, fan: &Session, concert_id: &str) -> Value {
    poll_until(60, "an admission", || async {
        let ticket = app.queue_ticket(&fan.access_token, concert_id).await;
        (ticket["state"] == "admitted").then_some(ticket)
    })
    .await
}

#[tokio::test]
async fn the_pre_queue_is_shuffled_at_the_opening_and_later_arrivals_queue_behind_it() {
    let (app, admin) = spawn_admin_app().await;
    let (concert_id, seat) = room_concert(&app, &admin, 3, 120).await;
    let early = app.register_users("early", 6).await;
    for fan in &early {
        let joined = app.join_queue(&fan.access_token, &concert_id).await;
        assert_eq!(joined.status(), StatusCode::CREATED);
        let ticket: Value = joined.json().await.unwrap();
        assert_eq!(ticket["concert_id"], concert_id.as_str());
        assert_eq!(ticket["state"], "waiting");
        assert_eq!(
            ticket["position"],
            Value::Null,
            "no order before the shuffle"
        );
        assert_eq!(ticket["estimated_wait_seconds"], Value::Null);
        assert_eq!(ticket["admission"], Value::Null);
    }
    // Joining again is the same place.
    let again = app.join_queue(&early[0].access_token, &concert_id).await;
    assert_eq!(again.status(), StatusCode::OK);

    // Nobody books or holds without an admission, before or after the opening.
    let refused = app.book(&early[0].access_token, &concert_id, &seat).await;
    assert_problem(refused, StatusCode::FORBIDDEN, "admission_required").await;

    // At the opening the pre-queue is ranked; later arrivals queue behind it in the order they
    // came.
    poll_until(10, "the shuffle", || async {
        let ticket = app.queue_ticket(&early[0].access_token, &concert_id).await;
        (ticket["state"] == "admitted" || ticket["position"].is_i64()).then_some(())
    })
    .await;
    let late = app.register_users("late", 2).await;
    let mut late_positions = Vec::new();
    for fan in &late {
        let ticket: Value = app
            .join_queue(&fan.access_token, &concert_id)
            .await
            .json()
            .await
            .unwrap();
        late_positions.push(ticket["position"].as_i64().expect("ranked at once"));
    }
    assert!(late_positions[0] < late_positions[1], "{late_positions:?}");

    // Admission order: every early fan before any late one, the late ones in arrival order.
    let mut admitted_at = Vec::new();
    for fan in early.iter().chain(&late) {
        let ticket = admitted(&app, fan, &concert_id).await;
        assert_eq!(ticket["position"], Value::Null);
        assert!(ticket["admission"].is_string(), "{ticket}");
        let until = ticket["admitted_until"].as_str().unwrap();
        admitted_at.push(OffsetDateTime::parse(until, &Rfc3339).unwrap());
    }
    let last_early = admitted_at[..6].iter().max().unwrap();
    assert!(last_early <= &admitted_at[6], "{admitted_at:?}");
    assert!(admitted_at[6] <= admitted_at[7], "{admitted_at:?}");
}

#[tokio::test]
async fn an_admission_lets_its_own_user_book_once() {
    let (app, admin) = spawn_admin_app().await;
    let (concert_id, seat) = room_concert(&app, &admin, 2, 600).await;
    let fans = app.register_users("fan", 2).await;
    for fan in &fans {
        app.join_queue(&fan.access_token, &concert_id).await;
    }
    let ticket = admitted(&app, &fans[0], &concert_id).await;
    let token = ticket["admission"].as_str().unwrap().to_owned();
    let other = admitted(&app, &fans[1], &concert_id).await;
    let other_token = other["admission"].as_str().unwrap().to_owned();

    // Another user's admission, a forged one, and none are refused.
    for (admission, who) in [
        (other_token.as_str(), "another user's"),
        ("not-a-token", "garbage"),
        (&token[..token.len() - 2], "altered"),
    ] {
        let refused = app
            .post_admitted(
                "bookings",
                &fans[0].access_token,
                admission,
                &concert_id,
                &seat,
            )
            .await;
        let problem = assert_problem(refused, StatusCode::FORBIDDEN, "admission_required").await;
        assert!(problem["detail"].is_string(), "{who}: {problem}");
    }

    // Its own admission books, once: after a cancel the same admission is used up.
    let booked = app
        .post_admitted(
            "bookings",
            &fans[0].access_token,
            &token,
            &concert_id,
            &seat,
        )
        .await;
    assert_eq!(booked.status(), StatusCode::CREATED);
    let booking: Value = booked.json().await.unwrap();
    let cancelled = app
        .cancel_booking(&fans[0].access_token, &id_of(&booking))
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let reused = app
        .post_admitted(
            "bookings",
            &fans[0].access_token,
            &token,
            &concert_id,
            &seat,
        )
        .await;
    assert_problem(reused, StatusCode::FORBIDDEN, "admission_required").await;

    // A hold uses one up the same way.
    let held = app
        .post_admitted(
            "holds",
            &fans[1].access_token,
            &other_token,
            &concert_id,
            &seat,
        )
        .await;
    assert_eq!(held.status(), StatusCode::CREATED);
    let hold: Value = held.json().await.unwrap();
    let released = app
        .post_with_token(
            &format!("/api/v1/holds/{}/release", id_of(&hold)),
            &fans[1].access_token,
        )
        .await;
    assert!(released.status().is_success(), "{}", released.status());
    let again = app
        .post_admitted(
            "holds",
            &fans[1].access_token,
            &other_token,
            &concert_id,
            &seat,
        )
        .await;
    assert_problem(again, StatusCode::FORBIDDEN, "admission_required").await;
}

#[tokio::test]
async fn the_stream_follows_a_place_until_it_is_admitted() {
    let (app, admin) = spawn_admin_app().await;
    let (concert_id, _) = room_concert(&app, &admin, 2, 60).await;
    let fans = app.register_users("streamer", 3).await;
    for fan in &fans {
        app.join_queue(&fan.access_token, &concert_id).await;
    }
    let last = &fans[2];
    let response = app
        .client
        .get(app.url(&format!("/api/v1/concerts/{concert_id}/queue/stream")))
        .bearer_auth(&last.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = EventStream::from_response(response);
    let (name, data) = stream.next(10).await;
    assert_eq!(name, "position");
    let first: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(first["state"], "waiting");
    let mut seen = HashSet::new();
    loop {
        let (name, data) = stream.next(30).await;
        let ticket: Value = serde_json::from_str(&data).unwrap();
        if name == "admitted" {
            assert_eq!(ticket["state"], "admitted");
            assert!(ticket["admission"].is_string(), "{ticket}");
            break;
        }
        assert_eq!(name, "position");
        let position = ticket["position"]
            .as_i64()
            .expect("a position once shuffled");
        assert!(seen.insert(position), "each position once: {position}");
        assert!(ticket["estimated_wait_seconds"].as_i64().unwrap() >= position - 1);
    }
}

#[tokio::test]
async fn a_queue_is_only_where_a_waiting_room_is() {
    let (app, admin) = spawn_admin_app().await;
    let fan = app.register_user("nowhere@example.com").await;
    let plain = app
        .create_concert(&admin, &concert_body("No room", 3600, 5))
        .await;
    let none = app.join_queue(&fan.access_token, &id_of(&plain)).await;
    assert_problem(none, StatusCode::NOT_FOUND, "not_found").await;
    let unknown = app
        .join_queue(&fan.access_token, "00000000-0000-7000-8000-000000000000")
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "concert_not_found").await;
    let malformed = app.join_queue(&fan.access_token, "nope").await;
    assert_problem(malformed, StatusCode::NOT_FOUND, "concert_not_found").await;

    let (concert_id, _) = room_concert(&app, &admin, 1800, 60).await;
    let not_joined = app
        .get_with_token(
            &format!("/api/v1/concerts/{concert_id}/queue"),
            &fan.access_token,
        )
        .await;
    assert_problem(not_joined, StatusCode::NOT_FOUND, "not_found").await;
    let anonymous = app
        .post_json(&format!("/api/v1/concerts/{concert_id}/queue"), &json!({}))
        .await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}
