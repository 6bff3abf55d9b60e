//! API contract, "On-sale time": a concert with `sales_open_at` is `scheduled` and refuses
//! bookings with `sales_not_open` until that instant, opens by itself (the stream says `opened`),
//! and the on-sale time is validated, changed and cleared like the concert's other details.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::concerts::EventStream;
use crate::helpers::{
    assert_problem, concert_body, error_fields, id_of, rfc3339_in, spawn_admin_app,
};

/// A concert body whose sales open `opens_in` seconds from now.
fn scheduled_body(name: &str, opens_in: i64) -> Value {
    let mut body = concert_body(name, 3600, 5);
    body["sales_open_at"] = json!(rfc3339_in(opens_in));
    body
}

fn seat_type_of(concert: &Value) -> String {
    id_of(&concert["seat_types"][0])
}

#[tokio::test]
async fn sales_open_by_themselves_at_the_on_sale_time() {
    let (app, admin) = spawn_admin_app().await;
    let concert = app
        .create_concert(&admin, &scheduled_body("Presale", 3))
        .await;
    let id = id_of(&concert);
    let seat_type = seat_type_of(&concert);
    assert_eq!(concert["status"], "scheduled", "{concert}");
    assert_eq!(concert["booking_open"], false);
    assert!(concert["sales_open_at"].is_string(), "{concert}");
    assert_eq!(app.concert(&id).await["status"], "scheduled");
    assert_eq!(app.availability(&id).await["booking_open"], false);

    let fan = app.register_user("early@example.com").await;
    let early = app.book(&fan.access_token, &id, &seat_type).await;
    assert_problem(early, StatusCode::CONFLICT, "sales_not_open").await;
    assert_eq!(app.remaining(&id, &seat_type).await, 5);

    let mut stream = EventStream::open(&app.client, &app.base, &id).await;
    let (name, data) = stream.next(5).await;
    assert_eq!(name, "availability");
    let first: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(first["booking_open"], false);
    let mut names = Vec::new();
    loop {
        let (name, data) = stream.next(8).await;
        names.push(name.clone());
        if name == "opened" {
            let body: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(body["concert_id"], id);
            break;
        }
        assert!(names.len() < 10, "no `opened` event among {names:?}");
    }
    // The snapshot sent with it already shows sales open.
    assert!(names.contains(&"availability".to_owned()), "{names:?}");

    app.book_ok(&fan.access_token, &id, &seat_type).await;
    let opened = app.concert(&id).await;
    assert_eq!(opened["status"], "on_sale", "{opened}");
    assert_eq!(opened["booking_open"], true);
}

#[tokio::test]
async fn on_sale_times_are_validated_changed_and_cleared() {
    let (app, admin) = spawn_admin_app().await;
    // Not at or after the start.
    let mut late = concert_body("Late", 3600, 5);
    late["sales_open_at"] = json!(rfc3339_in(3600));
    let refused = app
        .post_json_with_token("/api/v1/concerts", &admin, &late)
        .await;
    let problem = assert_problem(
        refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["sales_open_at"]);
    let mut garbage = concert_body("Garbage", 3600, 5);
    garbage["sales_open_at"] = json!("next tuesday");
    let refused = app
        .post_json_with_token("/api/v1/concerts", &admin, &garbage)
        .await;
    assert_problem(
        refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    // In the past: on sale at once. `null`: the same.
    let mut past = concert_body("Past", 3600, 5);
    past["sales_open_at"] = json!(rfc3339_in(-60));
    let concert = app.create_concert(&admin, &past).await;
    assert_eq!(concert["status"], "on_sale", "{concert}");
    let mut none = concert_body("None", 3600, 5);
    none["sales_open_at"] = Value::Null;
    let concert = app.create_concert(&admin, &none).await;
    assert_eq!(concert["status"], "on_sale");
    assert_eq!(concert["sales_open_at"], Value::Null);

    // PATCH moves it into the future (scheduled), past the start (refused), and clears it.
    let id = id_of(&concert);
    let path = format!("/api/v1/concerts/{id}");
    let opens = rfc3339_in(600);
    let patched = app
        .patch_json_with_token(&path, &admin, &json!({ "sales_open_at": opens }))
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["status"], "scheduled", "{patched}");
    assert_eq!(patched["sales_open_at"], opens);
    // Booking learns it: the writer refuses now.
    let fan = app.register_user("fan@example.com").await;
    let seat_type = seat_type_of(&patched);
    let refused = app.book(&fan.access_token, &id, &seat_type).await;
    assert_problem(refused, StatusCode::CONFLICT, "sales_not_open").await;
    let after_start = app
        .patch_json_with_token(&path, &admin, &json!({ "sales_open_at": rfc3339_in(7200) }))
        .await;
    let problem = assert_problem(
        after_start,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["sales_open_at"]);
    // Another change keeps it.
    let renamed = app
        .patch_json_with_token(&path, &admin, &json!({ "name": "Renamed" }))
        .await;
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["sales_open_at"], opens);
    // Clearing it opens sales at once, and the stream says so.
    let mut stream = EventStream::open(&app.client, &app.base, &id).await;
    assert_eq!(stream.next(5).await.0, "availability");
    let cleared = app
        .patch_json_with_token(&path, &admin, &json!({ "sales_open_at": null }))
        .await;
    let cleared: Value = cleared.json().await.unwrap();
    assert_eq!(cleared["status"], "on_sale", "{cleared}");
    assert_eq!(cleared["sales_open_at"], Value::Null);
    let mut names = Vec::new();
    while !names.contains(&"opened".to_owned()) {
        names.push(stream.next(5).await.0);
        assert!(names.len() < 10, "no `opened` event among {names:?}");
    }
    app.book_ok(&fan.access_token, &id, &seat_type).await;
}

#[tokio::test]
async fn listings_show_scheduled_concerts_as_available_but_not_on_sale() {
    let (app, admin) = spawn_admin_app().await;
    app.create_concert(&admin, &scheduled_body("Scheduled Show", 600))
        .await;
    app.create_concert(&admin, &concert_body("Open Show", 3600, 5))
        .await;
    let names = |body: Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let available: Value = app.get("/api/v1/concerts").await.json().await.unwrap();
    assert_eq!(names(available), ["Scheduled Show", "Open Show"]);
    let on_sale: Value = app
        .get("/api/v1/concerts?status=on_sale")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(on_sale), ["Open Show"]);
}
