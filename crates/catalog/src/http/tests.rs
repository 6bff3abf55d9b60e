//! In-process tests of the Catalog routes: status codes, problem codes and the contract's shapes.

#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use boxoffice_shared::token::Role;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::testing::{Harness, START};

struct App {
    harness: Harness,
    router: Router,
    admin: String,
}

impl App {
    async fn new() -> Self {
        let harness = Harness::new().await;
        let (router, _) = router(harness.service.clone()).split_for_parts();
        let admin = harness.token(Role::Admin);
        Self {
            harness,
            router,
            admin,
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, headers, json)
    }

    async fn admin(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, json) = self.send(method, uri, Some(&self.admin), body).await;
        (status, json)
    }

    async fn create(&self) -> Value {
        let (status, json) = self
            .admin(Method::POST, "/api/v1/concerts", Some(concert_body()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json
    }
}

fn concert_body() -> Value {
    json!({
        "name": "Aurora World Tour",
        "artist": "Aurora",
        "venue": "Royal Albert Hall",
        "starts_at": "2030-05-01T19:30:00Z",
        "seat_types": [
            {"name": "VIP", "price_cents": 25000, "currency": "EUR", "capacity": 50},
            {"name": "GA", "price_cents": 5000, "capacity": 500}
        ]
    })
}

fn fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn creating_needs_an_admin_before_the_body_is_looked_at() {
    let app = App::new().await;
    let (status, headers, json) = app
        .send(Method::POST, "/api/v1/concerts", None, Some(concert_body()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["code"], "unauthenticated");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");

    let customer = app.harness.token(Role::Customer);
    let (status, _, json) = app
        .send(
            Method::POST,
            "/api/v1/concerts",
            Some(&customer),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json["code"], "forbidden");
    let (status, _, _) = app
        .send(
            Method::POST,
            "/api/v1/concerts/x/cancel",
            Some(&customer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn create_answers_201_with_location_and_the_contract_shape() {
    let app = App::new().await;
    let (status, headers, json) = app
        .send(
            Method::POST,
            "/api/v1/concerts",
            Some(&app.admin),
            Some(concert_body()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let id = json["id"].as_str().unwrap();
    assert_eq!(headers[header::LOCATION], format!("/api/v1/concerts/{id}"));
    assert_eq!(json["status"], "on_sale");
    assert_eq!(json["booking_open"], true);
    assert_eq!(json["category"], "concert");
    assert_eq!(json["description"], "");
    assert_eq!(json["starts_at"], "2030-05-01T19:30:00Z");
    assert_eq!(
        json["seat_types"][0],
        json!({"id": json["seat_types"][0]["id"], "name": "VIP", "price_cents": 25000,
               "currency": "EUR", "capacity": 50, "remaining": 50})
    );
    assert_eq!(json["seat_types"][1]["currency"], "USD");

    let (status, _, fetched) = app
        .send(Method::GET, &format!("/api/v1/concerts/{id}"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, json);

    let (status, _, list) = app.send(Method::GET, "/api/v1/concerts", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["id"], json["id"]);
    assert_eq!(list["next_cursor"], Value::Null);
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let app = App::new().await;
    let (status, json) = app
        .admin(
            Method::POST,
            "/api/v1/concerts",
            Some(json!({
                "name": " ",
                "artist": "A",
                "venue": "V",
                "category": "",
                "starts_at": "2029-01-01T00:00:00Z",
                "seat_types": [
                    {"name": "VIP", "price_cents": -1, "currency": "usd", "capacity": 10},
                    {"name": "vip", "price_cents": 0, "capacity": 0}
                ]
            })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json["code"], "validation_failed");
    let mut got = fields(&json);
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "category",
            "name",
            "seat_types[0].currency",
            "seat_types[0].price_cents",
            "seat_types[1].capacity",
            "seat_types[1].name",
            "starts_at",
        ]
    );

    let mut too_many = concert_body();
    too_many["seat_types"] = json!(
        (0..21)
            .map(|i| json!({"name": format!("S{i}"), "price_cents": 1, "capacity": 1}))
            .collect::<Vec<_>>()
    );
    let (status, json) = app
        .admin(Method::POST, "/api/v1/concerts", Some(too_many))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&json), ["seat_types"]);

    let mut unknown = concert_body();
    unknown["price"] = json!(3);
    let (status, json) = app
        .admin(Method::POST, "/api/v1/concerts", Some(unknown))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&json), ["price"]);
}

#[tokio::test]
async fn malformed_or_unknown_ids_are_not_found() {
    let app = App::new().await;
    for uri in [
        "/api/v1/concerts/not-a-uuid".to_owned(),
        format!("/api/v1/concerts/{}", Uuid::now_v7()),
    ] {
        let (status, _, json) = app.send(Method::GET, &uri, None, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json["code"], "concert_not_found");
    }
    let (status, json) = app
        .admin(Method::POST, "/api/v1/concerts/42/cancel", None)
        .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("concert_not_found"))
    );
    let concert = app.create().await;
    let (status, json) = app
        .admin(
            Method::PATCH,
            &format!(
                "/api/v1/concerts/{}/seat-types/nope",
                concert["id"].as_str().unwrap()
            ),
            Some(json!({"capacity": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["code"], "seat_type_not_found");
}

#[tokio::test]
async fn bad_list_parameters_are_422_naming_the_parameter() {
    let app = App::new().await;
    for (query, field) in [
        ("cursor=%25%25", "cursor"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("status=soon", "status"),
        ("from=yesterday", "from"),
        ("from=2030-02-01T00:00:00Z&to=2030-01-01T00:00:00Z", "to"),
    ] {
        let (status, _, json) = app
            .send(
                Method::GET,
                &format!("/api/v1/concerts?{query}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(fields(&json), [field], "{query}");
    }
    let (status, _, _) = app
        .send(
            Method::GET,
            "/api/v1/concerts?status=all&limit=100&q=au&category=concert&from=2030-01-01T00:00:00%2B02:00",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn admin_changes_seat_types_cancellation_and_closing() {
    let app = App::new().await;
    let concert = app.create().await;
    let id = concert["id"].as_str().unwrap();

    let (status, json) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/concerts/{id}"),
            Some(json!({"name": "Renamed", "starts_at": "2030-06-01T20:00:00+02:00"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["name"], "Renamed");
    assert_eq!(json["starts_at"], "2030-06-01T18:00:00Z");
    let (status, json) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/concerts/{id}"),
            Some(json!({"starts_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&json), ["starts_at"]);

    let seat_types = format!("/api/v1/concerts/{id}/seat-types");
    let (status, json) = app
        .admin(
            Method::POST,
            &seat_types,
            Some(json!({"name": "Balcony", "price_cents": 100, "capacity": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(json["remaining"], 7);
    let (status, json) = app
        .admin(
            Method::POST,
            &seat_types,
            Some(json!({"name": "BALCONY", "price_cents": 100, "capacity": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&json), ["name"]);

    let seat = concert["seat_types"][0]["id"].as_str().unwrap();
    let (status, json) = app
        .admin(
            Method::PATCH,
            &format!("{seat_types}/{seat}"),
            Some(json!({"capacity": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        (json["capacity"].as_i64(), json["remaining"].as_i64()),
        (Some(60), Some(60))
    );

    for _ in 0..2 {
        let (status, json) = app
            .admin(Method::POST, &format!("/api/v1/concerts/{id}/cancel"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["status"], "cancelled");
        assert_eq!(json["booking_open"], false);
    }
    let (status, json) = app
        .admin(
            Method::POST,
            &seat_types,
            Some(json!({"name": "Late", "price_cents": 100, "capacity": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(json["code"], "booking_closed");

    // Cancelled concerts leave the default listing but stay in `all`.
    let (_, _, list) = app.send(Method::GET, "/api/v1/concerts", None, None).await;
    assert_eq!(list["items"], json!([]));
    let (_, _, list) = app
        .send(Method::GET, "/api/v1/concerts?status=all", None, None)
        .await;
    assert_eq!(list["items"][0]["status"], "cancelled");

    // Once started, a concert is closed to changes.
    let other = app.create().await;
    let other = other["id"].as_str().unwrap();
    app.harness
        .clock
        .advance(time::macros::datetime!(2030-05-01 19:30 UTC) - START);
    let (status, json) = app
        .admin(
            Method::POST,
            &format!("/api/v1/concerts/{other}/cancel"),
            None,
        )
        .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (StatusCode::CONFLICT, Some("booking_closed"))
    );
    let (status, _, json) = app
        .send(
            Method::GET,
            &format!("/api/v1/concerts/{other}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["status"], "closed");
}

#[tokio::test]
async fn booking_outage_is_503_with_retry_after() {
    let app = App::new().await;
    app.harness.inventory.set_down(true);
    let (status, headers, json) = app
        .send(
            Method::POST,
            "/api/v1/concerts",
            Some(&app.admin),
            Some(concert_body()),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["code"], "unavailable");
    assert!(headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn the_openapi_document_lists_every_catalog_route() {
    let harness = Harness::new().await;
    let (_, api) = router(harness.service.clone()).split_for_parts();
    let paths: Vec<&String> = api.paths.paths.keys().collect();
    assert_eq!(
        paths,
        [
            "/api/v1/concerts",
            "/api/v1/concerts/{id}",
            "/api/v1/concerts/{id}/cancel",
            "/api/v1/concerts/{id}/seat-types",
            "/api/v1/concerts/{id}/seat-types/{seat_type_id}",
        ]
    );
    let json = serde_json::to_value(&api).unwrap();
    assert!(json["components"]["schemas"]["Concert"].is_object());
}
