//! API contract, "On-sale time": a concert with `sales_open_at` is `scheduled` and refuses
//! bookings with `sales_not_open` until that instant, opens by itself (the stream says `opened`),
//! and the on-sale time is validated, changed and cleared like the concert's other details.
//! "Waiting room for on-sales": the concert's `waiting_room` setting is set on creation, shown
//! in every concert, set, changed and removed by PATCH, validated field by field, and admin-only.

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

// ----- waiting room settings (API contract, "Waiting room for on-sales") -----

/// A concert body with a waiting room of these settings.
fn waiting_room_body(name: &str, admit_per_minute: i64, admission_ttl_seconds: i64) -> Value {
    let mut body = concert_body(name, 3600, 5);
    body["waiting_room"] = json!({
        "admit_per_minute": admit_per_minute,
        "admission_ttl_seconds": admission_ttl_seconds,
    });
    body
}

#[tokio::test]
async fn a_waiting_room_set_at_creation_is_in_every_concert_response() {
    let (app, admin) = spawn_admin_app().await;
    let room = json!({"admit_per_minute": 1000, "admission_ttl_seconds": 600});
    let concert = app
        .create_concert(&admin, &waiting_room_body("Big On-Sale", 1000, 600))
        .await;
    assert_eq!(concert["waiting_room"], room, "{concert}");
    let id = id_of(&concert);
    assert_eq!(app.concert(&id).await["waiting_room"], room);
    let listed: Value = app.get("/api/v1/concerts").await.json().await.unwrap();
    assert_eq!(listed["items"][0]["waiting_room"], room, "{listed}");

    // Without one, or with `null`: `null`, never left out.
    let plain = app
        .create_concert(&admin, &concert_body("Small Show", 3600, 5))
        .await;
    assert_eq!(plain["waiting_room"], Value::Null);
    assert!(plain.as_object().unwrap().contains_key("waiting_room"));
    let mut none = concert_body("No Room", 3600, 5);
    none["waiting_room"] = Value::Null;
    assert_eq!(
        app.create_concert(&admin, &none).await["waiting_room"],
        Value::Null
    );
    // At the edges of the ranges.
    let edges = app
        .create_concert(&admin, &waiting_room_body("Edges", 1_000_000, 86_400))
        .await;
    assert_eq!(
        edges["waiting_room"],
        json!({"admit_per_minute": 1_000_000, "admission_ttl_seconds": 86_400})
    );
    let edges = app
        .create_concert(&admin, &waiting_room_body("Other Edges", 1, 60))
        .await;
    assert_eq!(
        edges["waiting_room"],
        json!({"admit_per_minute": 1, "admission_ttl_seconds": 60})
    );
}

#[tokio::test]
async fn patch_sets_changes_keeps_and_removes_a_waiting_room() {
    let (app, admin) = spawn_admin_app().await;
    let concert = app
        .create_concert(&admin, &concert_body("Growing Show", 3600, 5))
        .await;
    let id = id_of(&concert);
    let path = format!("/api/v1/concerts/{id}");
    let patch = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move {
            let response = app.patch_json_with_token(path, admin, &body).await;
            assert_eq!(response.status(), StatusCode::OK, "PATCH {body}");
            response.json::<Value>().await.unwrap()
        }
    };

    let room = json!({"admit_per_minute": 200, "admission_ttl_seconds": 300});
    let set = patch(json!({ "waiting_room": room })).await;
    assert_eq!(set["waiting_room"], room, "{set}");
    assert_eq!(app.concert(&id).await["waiting_room"], room);

    let faster = json!({"admit_per_minute": 5000, "admission_ttl_seconds": 120});
    let changed = patch(json!({ "waiting_room": faster })).await;
    assert_eq!(changed["waiting_room"], faster, "{changed}");

    // A change that does not name it keeps it.
    let renamed = patch(json!({ "name": "Renamed Show" })).await;
    assert_eq!(renamed["waiting_room"], faster, "{renamed}");

    // `null` removes it.
    let removed = patch(json!({ "waiting_room": null })).await;
    assert_eq!(removed["waiting_room"], Value::Null, "{removed}");
    assert_eq!(app.concert(&id).await["waiting_room"], Value::Null);
    assert_eq!(app.concert(&id).await["name"], "Renamed Show");
}

#[tokio::test]
async fn waiting_room_settings_out_of_range_are_refused_naming_the_field() {
    let (app, admin) = spawn_admin_app().await;
    let refused = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move {
            let response = app
                .post_json_with_token("/api/v1/concerts", admin, &body)
                .await;
            let problem = assert_problem(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            )
            .await;
            error_fields(&problem)
        }
    };
    let admit = "waiting_room.admit_per_minute";
    let ttl = "waiting_room.admission_ttl_seconds";
    assert_eq!(refused(waiting_room_body("Zero", 0, 600)).await, [admit]);
    assert_eq!(
        refused(waiting_room_body("Negative", -5, 600)).await,
        [admit]
    );
    assert_eq!(
        refused(waiting_room_body("Flood", 1_000_001, 600)).await,
        [admit]
    );
    assert_eq!(refused(waiting_room_body("Blink", 100, 59)).await, [ttl]);
    assert_eq!(
        refused(waiting_room_body("Forever", 100, 86_401)).await,
        [ttl]
    );
    assert_eq!(refused(waiting_room_body("Both", 0, 0)).await, [admit, ttl]);
    let mut half = concert_body("Half", 3600, 5);
    half["waiting_room"] = json!({"admit_per_minute": 100});
    assert_eq!(refused(half).await, [ttl]);
    // Nothing was created.
    let listed: Value = app
        .get("/api/v1/concerts?status=all")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]), "{listed}");

    // PATCH checks the same, and changes nothing when it refuses.
    let concert = app
        .create_concert(&admin, &waiting_room_body("Kept", 100, 600))
        .await;
    let path = format!("/api/v1/concerts/{}", id_of(&concert));
    for (room, field) in [
        (
            json!({"admit_per_minute": 0, "admission_ttl_seconds": 600}),
            admit,
        ),
        (
            json!({"admit_per_minute": 100, "admission_ttl_seconds": 86_401}),
            ttl,
        ),
    ] {
        let response = app
            .patch_json_with_token(&path, &admin, &json!({ "waiting_room": room }))
            .await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error_fields(&problem), [field]);
    }
    assert_eq!(
        app.concert(&id_of(&concert)).await["waiting_room"],
        json!({"admit_per_minute": 100, "admission_ttl_seconds": 600})
    );
}

#[tokio::test]
async fn customers_cannot_set_or_remove_a_waiting_room() {
    let (app, admin) = spawn_admin_app().await;
    let customer = app.register_user("fan@example.com").await;
    let response = app
        .post_json_with_token(
            "/api/v1/concerts",
            &customer.access_token,
            &waiting_room_body("Sneaky", 100, 600),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    let concert = app
        .create_concert(&admin, &waiting_room_body("Guarded", 100, 600))
        .await;
    let id = id_of(&concert);
    let path = format!("/api/v1/concerts/{id}");
    for body in [
        json!({"waiting_room": null}),
        json!({"waiting_room": {"admit_per_minute": 1_000_000, "admission_ttl_seconds": 60}}),
    ] {
        let response = app
            .patch_json_with_token(&path, &customer.access_token, &body)
            .await;
        assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    assert_eq!(
        app.concert(&id).await["waiting_room"],
        json!({"admit_per_minute": 100, "admission_ttl_seconds": 600})
    );
}
