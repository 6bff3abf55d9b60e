//! API contract, "Waiting list": fans wait for a sold-out seat type, and a seat that comes free
//! is offered to the first of them as a hold, announced by email, never to the public.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::emails::{mails, mails_of};
use crate::helpers::{TestApp, assert_problem, concert_body, id_of, poll_until, spawn_admin_app};
use crate::webhooks::{Mode, Receiver};

impl TestApp {
    /// `POST /api/v1/concerts/{id}/waitlist` for `seat_type_id`.
    pub async fn join_waitlist(
        &self,
        token: &str,
        concert_id: &str,
        seat_type_id: &str,
    ) -> Response {
        self.post_json_with_token(
            &format!("/api/v1/concerts/{concert_id}/waitlist"),
            token,
            &json!({ "seat_type_id": seat_type_id }),
        )
        .await
    }

    /// `GET /api/v1/waitlist/{id}`; panics unless the answer is 200.
    pub async fn waitlist_entry(&self, token: &str, entry_id: &str) -> Value {
        let response = self
            .get_with_token(&format!("/api/v1/waitlist/{entry_id}"), token)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "entry {entry_id}");
        response.json().await.unwrap()
    }

    /// `DELETE /api/v1/waitlist/{id}`.
    pub async fn leave_waitlist(&self, token: &str, entry_id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/api/v1/waitlist/{entry_id}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }
}

#[tokio::test]
async fn a_freed_seat_is_offered_to_the_first_fan_waiting_who_pays_for_it() {
    let (app, admin) = spawn_admin_app().await;
    let concert = app
        .create_concert(&admin, &concert_body("Waited for", 86_400, 1))
        .await;
    let (concert_id, seat) = (id_of(&concert), id_of(&concert["seat_types"][0]));
    let holder = app.register_user("holder@example.com").await;
    let first = app.register_user("first@example.com").await;
    let second = app.register_user("second@example.com").await;

    // Not sold out yet: book instead.
    let early = app
        .join_waitlist(&first.access_token, &concert_id, &seat)
        .await;
    assert_problem(early, StatusCode::CONFLICT, "seats_available").await;
    let booking = app.book_ok(&holder.access_token, &concert_id, &seat).await;

    let joined = app
        .join_waitlist(&first.access_token, &concert_id, &seat)
        .await;
    assert_eq!(joined.status(), StatusCode::CREATED);
    let location = joined.headers()["location"].to_str().unwrap().to_owned();
    let entry: Value = joined.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/waitlist/{}", id_of(&entry)));
    assert_eq!(entry["status"], "waiting");
    assert_eq!(entry["position"], 1);
    assert_eq!(entry["hold_id"], Value::Null);
    assert_eq!(entry["concert_id"], concert_id.as_str());
    assert_eq!(entry["user_id"], first.user_id());
    let behind: Value = app
        .join_waitlist(&second.access_token, &concert_id, &seat)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(behind["position"], 2);

    // Refusals: twice, with a seat, unknown concert or seat type, a bad body, no token.
    let twice = app
        .join_waitlist(&first.access_token, &concert_id, &seat)
        .await;
    assert_problem(twice, StatusCode::CONFLICT, "already_waitlisted").await;
    let seated = app
        .join_waitlist(&holder.access_token, &concert_id, &seat)
        .await;
    assert_problem(seated, StatusCode::CONFLICT, "already_booked").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let response = app
        .join_waitlist(&first.access_token, &unknown, &seat)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "concert_not_found").await;
    let response = app
        .join_waitlist(&first.access_token, &concert_id, &unknown)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "seat_type_not_found").await;
    let response = app
        .post_json_with_token(
            &format!("/api/v1/concerts/{concert_id}/waitlist"),
            &first.access_token,
            &json!({ "seat_type_id": "nope" }),
        )
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let response = app
        .post_json(
            &format!("/api/v1/concerts/{concert_id}/waitlist"),
            &json!({ "seat_type_id": seat }),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // Reading: one's own entries only.
    let listed: Value = app
        .get_with_token("/api/v1/waitlist", &first.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["next_cursor"], Value::Null);
    let foreign = app.get_with_token(&location, &second.access_token).await;
    assert_problem(foreign, StatusCode::NOT_FOUND, "waitlist_entry_not_found").await;
    let garbage = app
        .get_with_token("/api/v1/waitlist/not-a-uuid", &first.access_token)
        .await;
    assert_problem(garbage, StatusCode::NOT_FOUND, "waitlist_entry_not_found").await;

    // The holder cancels: the seat goes to the first fan, not to the public.
    let cancelled = app
        .cancel_booking(&holder.access_token, &id_of(&booking))
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let offered = app
        .waitlist_entry(&first.access_token, &id_of(&entry))
        .await;
    assert_eq!(offered["status"], "offered");
    assert_eq!(offered["position"], Value::Null);
    let hold_id = offered["hold_id"].as_str().unwrap().to_owned();
    assert_eq!(app.remaining(&concert_id, &seat).await, 0);
    let public = app.book(&holder.access_token, &concert_id, &seat).await;
    assert_problem(public, StatusCode::CONFLICT, "sold_out").await;
    assert_eq!(
        app.waitlist_entry(&second.access_token, &id_of(&behind))
            .await["position"],
        1
    );
    let hold: Value = app
        .get_with_token(&format!("/api/v1/holds/{hold_id}"), &first.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hold["status"], "active");
    let expires_at = hold["expires_at"].as_str().unwrap().to_owned();

    // The offer email says until when.
    let mail_dir = app.data_dir().join("mail");
    let mail = poll_until(10, "the offer email", || async {
        mails_of(&mails(&mail_dir), &hold_id, "waitlist_offered")
            .into_iter()
            .next()
    })
    .await;
    assert!(mail.text.contains("is yours until"), "{}", mail.text);
    assert!(mail.text.contains(&hold_id), "{}", mail.text);
    assert!(!expires_at.is_empty());

    // The fan pays the offer: a booking, and the entry is completed.
    let paid = app
        .post_json_with_token(
            &format!("/api/v1/holds/{hold_id}/pay"),
            &first.access_token,
            &json!({ "payment_method": "pm_card_visa" }),
        )
        .await;
    assert_eq!(paid.status(), StatusCode::OK);
    let paid: Value = paid.json().await.unwrap();
    assert_eq!(paid["status"], "completed");
    let completed = app
        .waitlist_entry(&first.access_token, &id_of(&entry))
        .await;
    assert_eq!(completed["status"], "completed");

    // The second fan leaves; leaving again changes nothing; nobody else may.
    let response = app
        .leave_waitlist(&first.access_token, &id_of(&behind))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "waitlist_entry_not_found").await;
    for _ in 0..2 {
        let left = app
            .leave_waitlist(&second.access_token, &id_of(&behind))
            .await;
        assert_eq!(left.status(), StatusCode::NO_CONTENT);
    }
    let left = app
        .waitlist_entry(&second.access_token, &id_of(&behind))
        .await;
    assert_eq!(left["status"], "left");
    // An admin may read any entry.
    let read = app.waitlist_entry(&admin, &id_of(&behind)).await;
    assert_eq!(read["status"], "left");
}

#[tokio::test]
async fn leaving_while_offered_hands_the_seat_to_the_next_fan() {
    let (app, admin) = spawn_admin_app().await;
    let concert = app
        .create_concert(&admin, &concert_body("Handed on", 86_400, 1))
        .await;
    let (concert_id, seat) = (id_of(&concert), id_of(&concert["seat_types"][0]));
    let holder = app.register_user("holder@example.com").await;
    let booking = app.book_ok(&holder.access_token, &concert_id, &seat).await;
    let mut line = Vec::new();
    for email in ["a@example.com", "b@example.com"] {
        let fan = app.register_user(email).await;
        let entry: Value = app
            .join_waitlist(&fan.access_token, &concert_id, &seat)
            .await
            .json()
            .await
            .unwrap();
        line.push((fan, id_of(&entry)));
    }
    app.cancel_booking(&holder.access_token, &id_of(&booking))
        .await;
    let offered = app
        .waitlist_entry(&line[0].0.access_token, &line[0].1)
        .await;
    assert_eq!(offered["status"], "offered");
    let left = app
        .leave_waitlist(&line[0].0.access_token, &line[0].1)
        .await;
    assert_eq!(left.status(), StatusCode::NO_CONTENT);

    let first = app
        .waitlist_entry(&line[0].0.access_token, &line[0].1)
        .await;
    assert_eq!(first["status"], "left");
    let hold: Value = app
        .get_with_token(
            &format!("/api/v1/holds/{}", offered["hold_id"].as_str().unwrap()),
            &line[0].0.access_token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hold["status"], "released");
    let next = app
        .waitlist_entry(&line[1].0.access_token, &line[1].1)
        .await;
    assert_eq!(next["status"], "offered");
    assert_eq!(app.remaining(&concert_id, &seat).await, 0);
}

#[tokio::test]
async fn an_offer_is_announced_to_webhooks_as_waitlist_offered() {
    let (app, admin) = crate::helpers::spawn_admin_app_with(|config| {
        config.webhooks.allow_private = true;
    })
    .await;
    let receiver = Receiver::start(Mode::Ok).await;
    let body = json!({"url": receiver.url, "events": ["waitlist.offered"]});
    let created: Value = app
        .post_json_with_token("/api/v1/webhooks", &admin, &body)
        .await
        .json()
        .await
        .unwrap();
    receiver.trust(created["secret"].as_str().unwrap());
    let concert = app
        .create_concert(&admin, &concert_body("Announced", 86_400, 1))
        .await;
    let (concert_id, seat) = (id_of(&concert), id_of(&concert["seat_types"][0]));
    let holder = app.register_user("holder@example.com").await;
    let booking = app.book_ok(&holder.access_token, &concert_id, &seat).await;
    let fan = app.register_user("fan@example.com").await;
    let entry: Value = app
        .join_waitlist(&fan.access_token, &concert_id, &seat)
        .await
        .json()
        .await
        .unwrap();
    app.cancel_booking(&holder.access_token, &id_of(&booking))
        .await;
    let offered = app.waitlist_entry(&fan.access_token, &id_of(&entry)).await;
    let hold_id = offered["hold_id"].as_str().unwrap().to_owned();
    let got = poll_until(20, "waitlist.offered delivered", || async {
        receiver
            .about("waitlist.offered", &hold_id)
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(got.body["data"]["user_id"], fan.user_id());
    assert_eq!(got.body["data"]["status"], "active");
    assert_eq!(got.body["data"]["seat_type_id"], seat.as_str());
}
