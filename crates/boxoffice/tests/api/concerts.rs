//! API contract, "Concerts": creating (admin only) and validating concerts, reading and listing
//! them (filters, search, cursor pagination), editing, adding seat types, cancelling a concert
//! with its bookings, the sales report, and the exact availability read and its SSE stream.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_problem, concert_body, error_fields, id_of, poll_until, rfc3339_in,
    spawn_admin_app,
};

/// The id of the first seat type of `concert`.
fn first_seat_type(concert: &Value) -> String {
    id_of(&concert["seat_types"][0])
}

/// `GET path` and the 200 JSON body.
async fn get_ok(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// `/api/v1/concerts` with these query parameters, percent-encoded.
fn list_path(query: &[(&str, &str)]) -> String {
    let encoded: Vec<String> = query
        .iter()
        .map(|(name, value)| format!("{name}={}", percent_encode(value)))
        .collect();
    format!("/api/v1/concerts?{}", encoded.join("&"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The ids of the `items` of a list page.
fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

#[tokio::test]
async fn an_admin_creates_a_concert_with_201_location_and_the_documented_shape() {
    let (app, admin) = spawn_admin_app().await;
    let starts_at = rfc3339_in(86_400);
    let body = json!({
        "name": "Night Owls",
        "artist": "The Testers",
        "venue": "Hall One",
        "description": "Late show",
        "category": "jazz",
        "starts_at": starts_at,
        "seat_types": [
            {"name": "VIP", "price_cents": 25000, "currency": "USD", "capacity": 50},
            {"name": "Floor", "price_cents": 0, "capacity": 1_000_000},
        ],
    });
    let response = app
        .post_json_with_token("/api/v1/concerts", &admin, &body)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response
        .headers()
        .get(header::LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_owned();
    let concert: Value = response.json().await.unwrap();
    let id = id_of(&concert);
    uuid::Uuid::parse_str(&id).expect("the id is a UUID");
    assert!(
        location.ends_with(&format!("/api/v1/concerts/{id}")),
        "Location {location}"
    );
    assert_eq!(concert["name"], "Night Owls");
    assert_eq!(concert["artist"], "The Testers");
    assert_eq!(concert["venue"], "Hall One");
    assert_eq!(concert["description"], "Late show");
    assert_eq!(concert["category"], "jazz");
    let parsed = time::OffsetDateTime::parse(
        concert["starts_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let sent =
        time::OffsetDateTime::parse(&starts_at, &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert_eq!(parsed, sent);
    assert_eq!(concert["status"], "on_sale");
    assert_eq!(concert["booking_open"], true);
    let seat_types = concert["seat_types"].as_array().unwrap();
    assert_eq!(seat_types.len(), 2);
    for seat_type in seat_types {
        uuid::Uuid::parse_str(seat_type["id"].as_str().unwrap()).unwrap();
        assert_eq!(seat_type["remaining"], seat_type["capacity"], "{seat_type}");
    }
    let vip = seat_types.iter().find(|s| s["name"] == "VIP").unwrap();
    assert_eq!(vip["price_cents"], 25000);
    assert_eq!(vip["currency"], "USD");
    assert_eq!(vip["capacity"], 50);
    let floor = seat_types.iter().find(|s| s["name"] == "Floor").unwrap();
    assert_eq!(floor["currency"], "USD", "currency defaults to USD");
    assert_eq!(floor["capacity"], 1_000_000);
    assert_eq!(floor["price_cents"], 0);

    // The default category and time zone, and the GET that follows.
    let plain = app
        .create_concert(&admin, &concert_body("Plain", 3600, 10))
        .await;
    assert_eq!(plain["category"], "concert");
    assert_eq!(plain["time_zone"], "UTC");
    let fetched = app.concert(&id).await;
    assert_eq!(fetched, concert, "GET returns what POST returned");
}

#[tokio::test]
async fn creating_a_concert_needs_an_admin() {
    let (app, _admin) = spawn_admin_app().await;
    let body = concert_body("Nope", 3600, 10);
    let response = app.post_json("/api/v1/concerts", &body).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    let customer = app.register_user("fan@example.com").await;
    let response = app
        .post_json_with_token("/api/v1/concerts", &customer.access_token, &body)
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    let list = get_ok(&app, "/api/v1/concerts?status=all").await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "nothing created"
    );
}

#[tokio::test]
async fn invalid_concerts_are_422_validation_failed() {
    let (app, admin) = spawn_admin_app().await;
    let seat = |name: &str| json!({"name": name, "price_cents": 100, "capacity": 5});
    let with = |patch: &dyn Fn(&mut Value)| {
        let mut body = concert_body("Bad", 3600, 10);
        patch(&mut body);
        body
    };
    let cases: Vec<(&str, Value)> = vec![
        ("no seat types", with(&|b| b["seat_types"] = json!([]))),
        (
            "21 seat types",
            with(&|b| {
                b["seat_types"] = Value::Array((0..21).map(|i| seat(&format!("S{i}"))).collect())
            }),
        ),
        (
            "duplicate seat type names",
            with(&|b| b["seat_types"] = json!([seat("VIP"), seat("VIP")])),
        ),
        (
            "capacity 0",
            with(&|b| b["seat_types"][0]["capacity"] = json!(0)),
        ),
        (
            "capacity 1_000_001",
            with(&|b| b["seat_types"][0]["capacity"] = json!(1_000_001)),
        ),
        (
            "negative price",
            with(&|b| b["seat_types"][0]["price_cents"] = json!(-1)),
        ),
        (
            "starts_at in the past",
            with(&|b| b["starts_at"] = json!(rfc3339_in(-3600))),
        ),
        ("unknown field", with(&|b| b["surprise"] = json!("party"))),
        (
            "unknown time zone",
            with(&|b| b["time_zone"] = json!("Mars/Olympus_Mons")),
        ),
        (
            "a path, not a time zone",
            with(&|b| b["time_zone"] = json!("../../etc/passwd")),
        ),
    ];
    for (what, body) in cases {
        let response = app
            .post_json_with_token("/api/v1/concerts", &admin, &body)
            .await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert!(!error_fields(&problem).is_empty(), "{what}: {problem}");
    }
    // Twenty seat types is still fine.
    let twenty = with(&|b| {
        b["seat_types"] = Value::Array((0..20).map(|i| seat(&format!("S{i}"))).collect())
    });
    let concert = app.create_concert(&admin, &twenty).await;
    assert_eq!(concert["seat_types"].as_array().unwrap().len(), 20);

    let list = get_ok(&app, "/api/v1/concerts?status=all").await;
    assert_eq!(
        ids(&list),
        vec![id_of(&concert)],
        "no invalid concert was stored"
    );
}

#[tokio::test]
async fn an_unknown_or_malformed_concert_id_is_404_concert_not_found() {
    let (app, _admin) = spawn_admin_app().await;
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/api/v1/concerts/{unknown}"),
        "/api/v1/concerts/not-a-uuid".to_owned(),
        format!("/api/v1/concerts/{unknown}/availability"),
    ] {
        let response = app.get(&path).await;
        assert_problem(response, StatusCode::NOT_FOUND, "concert_not_found").await;
    }
}

#[tokio::test]
async fn the_default_list_excludes_started_and_cancelled_concerts_but_keeps_sold_out_ones() {
    let (app, admin) = spawn_admin_app().await;
    let soon = app
        .create_concert(&admin, &concert_body("Soon", 2, 5))
        .await;
    let later = app
        .create_concert(&admin, &concert_body("Later", 7200, 5))
        .await;
    let sold_out = app
        .create_concert(&admin, &concert_body("Tiny", 3600, 1))
        .await;
    let cancelled = app
        .create_concert(&admin, &concert_body("Called off", 5400, 5))
        .await;
    let fan = app.register_user("fan@example.com").await;
    app.book_ok(
        &fan.access_token,
        &id_of(&sold_out),
        &first_seat_type(&sold_out),
    )
    .await;
    let response = app
        .post_with_token(
            &format!("/api/v1/concerts/{}/cancel", id_of(&cancelled)),
            &admin,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let page = get_ok(&app, "/api/v1/concerts").await;
    let listed = ids(&page);
    assert!(listed.contains(&id_of(&sold_out)), "sold-out is listed");
    assert!(!listed.contains(&id_of(&cancelled)), "cancelled is not");
    let tiny = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == sold_out["id"])
        .unwrap();
    assert_eq!(tiny["status"], "sold_out");
    assert_eq!(tiny["booking_open"], false);

    // `on_sale` leaves the sold-out concert out.
    let on_sale = ids(&get_ok(&app, "/api/v1/concerts?status=on_sale").await);
    assert!(!on_sale.contains(&id_of(&sold_out)));
    assert!(on_sale.contains(&id_of(&later)));

    // Once "Soon" has started it leaves the default list but stays in `all`, as `closed`.
    poll_until(
        5,
        "the started concert to leave the default list",
        || async {
            let listed = ids(&get_ok(&app, "/api/v1/concerts").await);
            (!listed.contains(&id_of(&soon))).then_some(())
        },
    )
    .await;
    let listed = ids(&get_ok(&app, "/api/v1/concerts").await);
    assert_eq!(
        listed,
        vec![id_of(&sold_out), id_of(&later)],
        "by starts_at"
    );
    let all = get_ok(&app, "/api/v1/concerts?status=all").await;
    assert_eq!(
        ids(&all),
        vec![
            id_of(&soon),
            id_of(&sold_out),
            id_of(&cancelled),
            id_of(&later)
        ]
    );
    let items = all["items"].as_array().unwrap();
    assert_eq!(items[0]["status"], "closed");
    assert_eq!(items[0]["booking_open"], false);
    assert_eq!(items[2]["status"], "cancelled");
    assert_eq!(app.concert(&id_of(&soon)).await["status"], "closed");
}

#[tokio::test]
async fn the_list_filters_by_text_category_and_time() {
    let (app, admin) = spawn_admin_app().await;
    let mut first = concert_body("Midnight Sun", 3600, 5);
    first["artist"] = json!("Aurora Band");
    first["venue"] = json!("Polar Hall");
    first["category"] = json!("rock");
    let first = app.create_concert(&admin, &first).await;
    let mut second = concert_body("Quiet Evening", 7200, 5);
    second["artist"] = json!("String Quartet");
    second["venue"] = json!("Sunset Theatre");
    second["category"] = json!("classical");
    let second = app.create_concert(&admin, &second).await;
    let mut third = concert_body("Drums", 10_800, 5);
    third["artist"] = json!("Big Beat");
    third["venue"] = json!("Arena");
    third["category"] = json!("rock");
    let third = app.create_concert(&admin, &third).await;

    // `q` is a case-insensitive substring of name, artist or venue.
    let q = |q: &str| {
        let app = &app;
        let path = format!("/api/v1/concerts?q={q}");
        async move { ids(&get_ok(app, &path).await) }
    };
    assert_eq!(q("sUn").await, vec![id_of(&first), id_of(&second)]);
    assert_eq!(q("AURORA").await, vec![id_of(&first)]);
    assert_eq!(q("arena").await, vec![id_of(&third)]);
    assert_eq!(q("quartet").await, vec![id_of(&second)]);
    assert!(q("nothing-like-this").await.is_empty());

    let rock = ids(&get_ok(&app, "/api/v1/concerts?category=rock").await);
    assert_eq!(rock, vec![id_of(&first), id_of(&third)]);

    let from = rfc3339_in(5400);
    let to = rfc3339_in(9000);
    let window = app
        .get(&list_path(&[("from", from.as_str()), ("to", to.as_str())]))
        .await;
    assert_eq!(window.status(), StatusCode::OK);
    assert_eq!(ids(&window.json().await.unwrap()), vec![id_of(&second)]);
    let after = app.get(&list_path(&[("from", from.as_str())])).await;
    assert_eq!(
        ids(&after.json().await.unwrap()),
        vec![id_of(&second), id_of(&third)]
    );
    let before = app.get(&list_path(&[("to", to.as_str())])).await;
    assert_eq!(
        ids(&before.json().await.unwrap()),
        vec![id_of(&first), id_of(&second)]
    );
}

#[tokio::test]
async fn pagination_walks_every_concert_once_in_order() {
    let (app, admin) = spawn_admin_app().await;
    // Some concerts share a start time, so the id breaks ties.
    let mut created = Vec::new();
    for i in 0..23_i64 {
        let concert = app
            .create_concert(
                &admin,
                &concert_body(&format!("C{i}"), 3600 + (i % 7) * 60, 3),
            )
            .await;
        created.push(concert);
    }
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "5")];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.as_str()));
        }
        let response = app.get(&list_path(&query)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 5);
        seen.extend(items.iter().cloned());
        pages += 1;
        assert!(pages <= 10, "pagination does not end");
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(page["next_cursor"].is_null());
                break;
            }
        }
    }
    assert!(pages >= 5, "23 items in pages of 5 take at least 5 pages");
    let seen_ids: Vec<String> = seen.iter().map(id_of).collect();
    let unique: HashSet<&String> = seen_ids.iter().collect();
    assert_eq!(unique.len(), seen_ids.len(), "no duplicates");
    let mut expected: Vec<(String, String)> = created
        .iter()
        .map(|c| (c["starts_at"].as_str().unwrap().to_owned(), id_of(c)))
        .collect();
    expected.sort();
    let expected_ids: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        seen_ids, expected_ids,
        "no gaps, sorted by starts_at then id"
    );

    // The default page size is 20.
    let page = get_ok(&app, "/api/v1/concerts").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 20);
    assert!(page["next_cursor"].is_string());
}

#[tokio::test]
async fn bad_list_parameters_are_422() {
    let (app, _admin) = spawn_admin_app().await;
    for query in [
        "limit=0",
        "limit=101",
        "cursor=garbage",
        "cursor=%%%",
        "limit=abc",
    ] {
        let response = app.get(&format!("/api/v1/concerts?{query}")).await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let page = get_ok(&app, "/api/v1/concerts?limit=100").await;
    assert!(page["next_cursor"].is_null());
    let page = get_ok(&app, "/api/v1/concerts?limit=1").await;
    assert!(page["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_admin_patches_a_concert_and_adds_a_seat_type() {
    let (app, admin) = spawn_admin_app().await;
    let concert = app
        .create_concert(&admin, &concert_body("Old Name", 3600, 5))
        .await;
    let id = id_of(&concert);
    let path = format!("/api/v1/concerts/{id}");
    let customer = app.register_user("fan@example.com").await;
    let response = app
        .patch_json_with_token(&path, &customer.access_token, &json!({"name": "Hijack"}))
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    let new_start = rfc3339_in(7200);
    let response = app
        .patch_json_with_token(
            &path,
            &admin,
            &json!({"name": "New Name", "venue": "Hall Two", "category": "pop", "starts_at": new_start}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["name"], "New Name");
    assert_eq!(patched["venue"], "Hall Two");
    assert_eq!(patched["category"], "pop");
    assert_eq!(patched["artist"], "The Testers", "untouched fields stay");
    assert_eq!(patched["time_zone"], "UTC", "untouched fields stay");
    let fetched = app.concert(&id).await;
    assert_eq!(fetched["name"], "New Name");
    assert_eq!(fetched["starts_at"], patched["starts_at"]);

    let response = app
        .patch_json_with_token(&path, &admin, &json!({"starts_at": rfc3339_in(-60)}))
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(app.concert(&id).await["starts_at"], patched["starts_at"]);

    // The venue's time zone, matched ignoring case and kept as the time-zone database spells it.
    let response = app
        .patch_json_with_token(&path, &admin, &json!({"time_zone": "europe/vienna"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.concert(&id).await["time_zone"], "Europe/Vienna");
    let response = app
        .patch_json_with_token(&path, &admin, &json!({"time_zone": "Europe/Atlantis"}))
        .await;
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), vec!["time_zone".to_owned()]);
    assert_eq!(app.concert(&id).await["time_zone"], "Europe/Vienna");

    // A new seat type.
    let seat_types_path = format!("/api/v1/concerts/{id}/seat-types");
    let body = json!({"name": "Balcony", "price_cents": 9900, "currency": "EUR", "capacity": 7});
    let response = app
        .post_json_with_token(&seat_types_path, &customer.access_token, &body)
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .post_json_with_token(&seat_types_path, &admin, &body)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let seat_type: Value = response.json().await.unwrap();
    assert_eq!(seat_type["name"], "Balcony");
    assert_eq!(seat_type["price_cents"], 9900);
    assert_eq!(seat_type["currency"], "EUR");
    assert_eq!(seat_type["capacity"], 7);
    assert_eq!(seat_type["remaining"], 7);
    let fetched = app.concert(&id).await;
    let listed = fetched["seat_types"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|s| s["id"] == seat_type["id"] && s["remaining"] == 7)
    );
    assert_eq!(app.remaining(&id, &id_of(&seat_type)).await, 7);
    // It can be booked.
    let booking = app
        .book_ok(&customer.access_token, &id, &id_of(&seat_type))
        .await;
    assert_eq!(booking["price_cents"], 9900);
    assert_eq!(booking["currency"], "EUR");
    assert_eq!(app.remaining(&id, &id_of(&seat_type)).await, 6);

    // A duplicate name is refused.
    let response = app
        .post_json_with_token(&seat_types_path, &admin, &body)
        .await;
    assert!(response.status().is_client_error());
    assert_eq!(
        app.concert(&id).await["seat_types"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn cancelling_a_concert_cancels_its_bookings_and_is_idempotent() {
    let (app, admin) = spawn_admin_app().await;
    let concert = app
        .create_concert(&admin, &concert_body("Doomed", 3600, 10))
        .await;
    let id = id_of(&concert);
    let seat_type = first_seat_type(&concert);
    let users = app.register_users("holder", 3).await;
    let mut bookings = Vec::new();
    for user in &users {
        bookings.push(app.book_ok(&user.access_token, &id, &seat_type).await);
    }
    // One booking was already cancelled by its holder.
    let response = app
        .cancel_booking(&users[2].access_token, &id_of(&bookings[2]))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.remaining(&id, &seat_type).await, 8);

    let cancel_path = format!("/api/v1/concerts/{id}/cancel");
    let response = app
        .post_with_token(&cancel_path, &users[0].access_token)
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(app.concert(&id).await["status"], "on_sale");

    for _ in 0..2 {
        let response = app.post_with_token(&cancel_path, &admin).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "cancelled");
        assert_eq!(body["booking_open"], false);
    }
    let fetched = app.concert(&id).await;
    assert_eq!(fetched["status"], "cancelled");
    assert_eq!(fetched["booking_open"], false);

    for (user, booking) in users.iter().zip(&bookings) {
        let response = app
            .get_with_token(
                &format!("/api/v1/bookings/{}", id_of(booking)),
                &user.access_token,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "cancelled", "{body}");
        assert!(body["cancelled_at"].is_string());
    }
    let availability = app.availability(&id).await;
    assert_eq!(availability["booking_open"], false);
    assert_eq!(availability["seat_types"][0]["remaining"], 10, "seats back");
    let sales = app.sales(&admin, &id).await;
    assert_eq!(sales["bookings_confirmed"], 0);
    assert_eq!(sales["bookings_cancelled"], 3);
    assert_eq!(
        sales["by_day"],
        json!([]),
        "cancelled bookings are not sales"
    );
    assert_eq!(sales["seat_types"][0]["sold"], 0);

    // Sales are closed.
    let late = app.register_user("late@example.com").await;
    let response = app.book(&late.access_token, &id, &seat_type).await;
    assert_problem(response, StatusCode::CONFLICT, "booking_closed").await;
}

#[tokio::test]
async fn the_sales_report_and_availability_are_exact() {
    let (app, admin) = spawn_admin_app().await;
    let mut body = concert_body("Numbers", 3600, 5);
    body["seat_types"] = json!([
        {"name": "VIP", "price_cents": 25000, "currency": "USD", "capacity": 5},
        {"name": "Cheap", "price_cents": 1000, "currency": "USD", "capacity": 3},
    ]);
    let concert = app.create_concert(&admin, &body).await;
    let id = id_of(&concert);
    let vip = id_of(&concert["seat_types"][0]);
    let cheap = id_of(&concert["seat_types"][1]);
    let users = app.register_users("buyer", 6).await;
    for user in &users[..3] {
        app.book_ok(&user.access_token, &id, &vip).await;
    }
    let mut cheap_bookings = Vec::new();
    for user in &users[3..] {
        cheap_bookings.push(app.book_ok(&user.access_token, &id, &cheap).await);
    }
    let response = app
        .cancel_booking(&users[5].access_token, &id_of(&cheap_bookings[2]))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let response = app
        .get_with_token(
            &format!("/api/v1/concerts/{id}/sales"),
            &users[0].access_token,
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.get(&format!("/api/v1/concerts/{id}/sales")).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    let sales = app.sales(&admin, &id).await;
    assert_eq!(sales["concert_id"], id);
    assert_eq!(sales["bookings_confirmed"], 5);
    assert_eq!(sales["bookings_cancelled"], 1);
    let seat_types = sales["seat_types"].as_array().unwrap();
    assert_eq!(seat_types.len(), 2);
    for seat_type in seat_types {
        assert_eq!(
            seat_type["sold"].as_i64().unwrap() + seat_type["remaining"].as_i64().unwrap(),
            seat_type["capacity"].as_i64().unwrap(),
            "{seat_type}"
        );
        assert_eq!(seat_type["currency"], "USD");
    }
    let vip_sales = seat_types.iter().find(|s| s["id"] == vip).unwrap();
    assert_eq!(vip_sales["name"], "VIP");
    assert_eq!(vip_sales["sold"], 3);
    assert_eq!(vip_sales["remaining"], 2);
    assert_eq!(vip_sales["revenue_cents"], 75_000);
    let cheap_sales = seat_types.iter().find(|s| s["id"] == cheap).unwrap();
    assert_eq!(cheap_sales["sold"], 2);
    assert_eq!(cheap_sales["remaining"], 1);
    assert_eq!(cheap_sales["revenue_cents"], 2000);

    let availability = app.availability(&id).await;
    assert_eq!(availability["concert_id"], id);
    assert_eq!(availability["booking_open"], true);
    assert_eq!(app.remaining(&id, &vip).await, 2);
    assert_eq!(app.remaining(&id, &cheap).await, 1);
    let fetched = app.concert(&id).await;
    let remaining: Vec<i64> = fetched["seat_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["remaining"].as_i64().unwrap())
        .collect();
    assert_eq!(remaining, vec![2, 1]);
}

/// A reader of a `text/event-stream` response, event by event.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn connect(app: &TestApp, concert_id: &str) -> EventStream {
        Self::open(&app.client, &app.base, concert_id).await
    }

    /// The availability stream of `concert_id` at the server (or gateway) whose root is `base`.
    pub async fn open(client: &reqwest::Client, base: &str, concert_id: &str) -> EventStream {
        let response = client
            .get(format!(
                "{base}/api/v1/concerts/{concert_id}/availability/stream"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self::from_response(response)
    }

    /// The events of a response that is already a stream.
    pub fn from_response(response: reqwest::Response) -> EventStream {
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (name, data), skipping comments and keep-alives; panics after `seconds`.
    pub async fn next(&mut self, seconds: u64) -> (String, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            self.buffer = self.buffer.replace("\r\n", "\n");
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                let mut name = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.trim_start().to_owned());
                    }
                }
                if !data.is_empty() || name != "message" {
                    return (name, data.join("\n"));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event before the deadline")
                .expect("the stream reads")
                .expect("the stream is still open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn the_stream_sends_availability_on_connect_and_after_each_booking() {
    let (app, admin) = spawn_admin_app().await;
    let concert = app
        .create_concert(&admin, &concert_body("Live", 3600, 4))
        .await;
    let id = id_of(&concert);
    let seat_type = first_seat_type(&concert);
    let mut stream = EventStream::connect(&app, &id).await;
    let (name, data) = stream.next(5).await;
    assert_eq!(name, "availability");
    let first: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(first["concert_id"], id);
    assert_eq!(first["booking_open"], true);
    assert_eq!(first["seat_types"][0]["id"], seat_type);
    assert_eq!(first["seat_types"][0]["remaining"], 4);

    let fan = app.register_user("fan@example.com").await;
    app.book_ok(&fan.access_token, &id, &seat_type).await;
    let (name, data) = stream.next(2).await;
    assert_eq!(name, "availability");
    let event: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(event["seat_types"][0]["remaining"], 3, "{event}");
}

#[tokio::test]
async fn the_stream_sends_closed_when_the_concert_starts() {
    let (app, admin) = spawn_admin_app().await;
    let concert = app
        .create_concert(&admin, &concert_body("Imminent", 2, 4))
        .await;
    let id = id_of(&concert);
    let mut stream = EventStream::connect(&app, &id).await;
    let (name, _) = stream.next(5).await;
    assert_eq!(name, "availability");
    let mut names = Vec::new();
    loop {
        let (name, data) = stream.next(6).await;
        names.push(name.clone());
        if name == "closed" {
            if !data.is_empty() {
                let body: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(body["concert_id"], id);
            }
            break;
        }
        assert!(names.len() < 10, "no `closed` event among {names:?}");
    }
    assert_eq!(app.concert(&id).await["status"], "closed");
}
