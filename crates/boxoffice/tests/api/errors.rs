//! API contract, "Conventions" and "Error codes": whatever goes wrong, the answer is an RFC 9457
//! problem document with the right status and `code`, and every response carries a request id.

use reqwest::{StatusCode, header};
use serde_json::json;

use crate::helpers::{PASSWORD, assert_problem, spawn_app};

#[tokio::test]
async fn malformed_json_is_400_malformed_body() {
    let app = spawn_app().await;
    for body in [
        "{\"email\": ",
        "not json at all",
        "{\"email\": \"a@example.com\", \"password\": \"long enough\", \"full_name\": \"A\"} trailing",
        "{\"email\": \"a@example.com\",}",
        "",
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/register"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed_body").await;
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415_unsupported_media_type() {
    let app = spawn_app().await;
    let json_text = json!({
        "email": "typed@example.com",
        "password": PASSWORD,
        "full_name": "Typed",
    })
    .to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .client
            .post(app.url("/api/v1/auth/register"))
            .body(json_text.clone());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = request.send().await.unwrap();
        assert_problem(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    // None of them registered anyone.
    let response = app.login("typed@example.com", PASSWORD).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // The same body with the right type is fine (and `charset` is allowed).
    let response = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(json_text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_body_too_large() {
    let app = spawn_app().await;
    let body = json!({
        "email": "big@example.com",
        "password": PASSWORD,
        "full_name": "x".repeat(64 * 1024),
    })
    .to_string();
    assert!(body.len() > 64 * 1024);
    let response = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;

    // Just under the limit is read (and then judged on its content: the name is too long).
    let name_len = 64 * 1024 - 200;
    let body = json!({
        "email": "big@example.com",
        "password": PASSWORD,
        "full_name": "x".repeat(name_len),
    })
    .to_string();
    assert!(body.len() <= 64 * 1024);
    let response = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn unknown_paths_are_404_not_found() {
    let app = spawn_app().await;
    for path in [
        "/nope",
        "/api/v1/nothing-here",
        "/api/v2/auth/login",
        "/api/v1/me/extra",
    ] {
        let response = app.get(path).await;
        assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let response = app.post_json("/api/v1/unknown", &json!({})).await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_wrong_method_on_a_known_path_is_405_method_not_allowed() {
    let app = spawn_app().await;
    let cases = [
        (reqwest::Method::GET, "/api/v1/auth/register"),
        (reqwest::Method::GET, "/api/v1/auth/login"),
        (reqwest::Method::PUT, "/api/v1/auth/refresh"),
        (reqwest::Method::DELETE, "/api/v1/me"),
        (reqwest::Method::POST, "/healthz"),
    ];
    for (method, path) in cases {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let allow = response.headers().get(header::ALLOW).cloned();
        assert_problem(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
        // RFC 9110 §15.5.6: a 405 lists the methods that are allowed.
        let allow = allow.unwrap_or_else(|| panic!("{method} {path}: an Allow header"));
        assert!(
            !allow.to_str().unwrap().contains(method.as_str()),
            "{method} {path}: Allow {allow:?}"
        );
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let responses = [
        app.get("/healthz").await,
        app.get("/nope").await,
        app.me("garbage").await,
        app.login("nobody@example.com", PASSWORD).await,
    ];
    let mut ids = Vec::new();
    for response in responses {
        let id = response
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("{} has an x-request-id", response.url()))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(!id.is_empty());
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each request gets its own id");

    // A client's own request id is echoed back.
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "client-chosen-id-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-id-123");
}

#[tokio::test]
async fn a_path_that_does_not_decode_is_the_resources_404() {
    let (app, admin) = crate::helpers::spawn_admin_app().await;
    for (path, code) in [
        ("/api/v1/concerts/%ff%fe", "concert_not_found"),
        ("/api/v1/concerts/%ff/availability", "concert_not_found"),
        ("/api/v1/concerts/%c3%28/sales", "concert_not_found"),
        ("/api/v1/bookings/%ff%fe", "booking_not_found"),
        ("/api/v1/nothing-here/%ff", "not_found"),
    ] {
        let response = app.get_with_token(path, &admin).await;
        assert_problem(response, StatusCode::NOT_FOUND, code).await;
    }
}

#[tokio::test]
async fn a_number_out_of_range_is_422_on_its_field_not_a_malformed_body() {
    let (app, admin) = crate::helpers::spawn_admin_app().await;
    let body = r#"{"name":"Huge","artist":"A","venue":"V","starts_at":"2099-01-01T19:30:00Z",
        "seat_types":[{"name":"GA","price_cents":1e400,"currency":"USD","capacity":10}]}"#;
    let response = app
        .client
        .post(app.url("/api/v1/concerts"))
        .bearer_auth(&admin)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let fields = crate::helpers::error_fields(&problem);
    assert!(
        fields.iter().any(|field| field.contains("price_cents")),
        "{fields:?}"
    );
}

#[tokio::test]
async fn a_price_above_one_million_is_refused_so_that_sales_sums_cannot_overflow() {
    let (app, admin) = crate::helpers::spawn_admin_app().await;
    let mut body = crate::helpers::concert_body("Priceless", 3600, 10);
    body["seat_types"][0]["price_cents"] = json!(100_000_001_i64);
    let response = app
        .post_json_with_token("/api/v1/concerts", &admin, &body)
        .await;
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(
        crate::helpers::error_fields(&problem)
            .iter()
            .any(|field| field.contains("price_cents")),
        "{problem}"
    );
    body["seat_types"][0]["price_cents"] = json!(100_000_000_i64);
    let response = app
        .post_json_with_token("/api/v1/concerts", &admin, &body)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_empty_cursor_is_the_first_page_like_an_empty_limit() {
    let app = spawn_app().await;
    let session = app.register_user("pager@example.com").await;
    for query in ["?cursor=", "?limit=", "?cursor=&limit="] {
        let response = app
            .get_with_token(&format!("/api/v1/bookings{query}"), &session.access_token)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        let response = app.get(&format!("/api/v1/concerts{query}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{query}");
    }
}
