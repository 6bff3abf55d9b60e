//! API contract, "Operations": health, readiness, metrics, the OpenAPI document and `/docs`.

use reqwest::{StatusCode, header};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

#[tokio::test]
async fn healthz_is_200() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_is_200_and_lists_its_checks() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let checks = body["checks"].as_object().expect("a `checks` object");
    assert!(!checks.is_empty(), "at least one store is checked: {body}");
    for (name, outcome) in checks {
        assert_eq!(outcome, "ok", "check {name}");
    }
}

/// The sum of `http_requests_total` over the series whose labels include every one of `labels`.
fn requests_total(metrics: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("http_requests_total{"))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .map(|line| {
            let value = line.rsplit(' ').next().unwrap();
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("a number: {line}"))
        })
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain"),
        "Prometheus text format, got {content_type}"
    );
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.get("/healthz").await;
    let before = scrape(&app).await;
    assert!(before.contains("http_requests_total"), "{before}");
    assert!(
        before.contains("# TYPE http_requests_total counter"),
        "{before}"
    );
    assert!(
        before.contains("# HELP http_requests_total HTTP requests answered"),
        "every series explains itself: {before}"
    );

    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    }
    assert_eq!(app.get("/nope").await.status(), StatusCode::NOT_FOUND);

    // The recorder is process-wide and other tests run alongside, so compare increments.
    let after = scrape(&app).await;
    let healthz = [r#"route="/healthz""#, r#"status="200""#, r#"method="GET""#];
    let grew = requests_total(&after, &healthz) - requests_total(&before, &healthz);
    assert!(grew >= 3.0, "GET /healthz 200 grew by {grew}:\n{after}");
    let not_found = [r#"status="404""#];
    assert!(
        requests_total(&after, &not_found) >= requests_total(&before, &not_found) + 1.0,
        "404s are counted:\n{after}"
    );
    // Routes are labelled by template, not by raw path (bounded cardinality).
    assert!(!after.contains(r#"route="/nope""#), "{after}");
    // Likewise methods: a made-up one is `other`, not a series of its own.
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    let response = app
        .client
        .request(brew, app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let after = scrape(&app).await;
    assert!(!after.contains("BREW"), "{after}");
    let other = [
        r#"route="/healthz""#,
        r#"method="other""#,
        r#"status="405""#,
    ];
    assert!(requests_total(&after, &other) >= 1.0, "{after}");
    assert!(after.contains("http_request_duration_seconds"), "{after}");
}

/// Every route of the contract that exists so far, with its methods.
const ROUTES: [(&str, &[&str]); 8] = [
    ("/api/v1/auth/register", &["post"]),
    ("/api/v1/auth/login", &["post"]),
    ("/api/v1/auth/refresh", &["post"]),
    ("/api/v1/auth/logout", &["post"]),
    ("/api/v1/me", &["get", "patch"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
];

/// Follows a local `$ref` (`#/components/...`) in `doc`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("a local reference: {reference}"));
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} resolves"))
        }
        None => value,
    }
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1, got {}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());

    let problem_schema = &doc["components"]["schemas"]["Problem"];
    let properties = problem_schema["properties"]
        .as_object()
        .expect("the Problem schema has properties");
    for member in ["type", "title", "status", "detail", "code"] {
        assert!(properties.contains_key(member), "Problem.{member}");
    }

    for (path, methods) in ROUTES {
        let item = &doc["paths"][path];
        assert!(item.is_object(), "{path} is documented");
        for method in methods {
            let operation = &item[*method];
            assert!(operation.is_object(), "{method} {path} is documented");
            let responses = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} lists responses"));
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path} documents its success"
            );
            for (status, response) in responses {
                if !status.starts_with('4') {
                    continue;
                }
                let response = resolve(&doc, response);
                let schema = &response["content"]["application/problem+json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/Problem",
                    "{method} {path} {status} is a Problem: {response}"
                );
            }
        }
    }

    // Operations with a body describe it.
    for (path, method) in [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/me", "patch"),
    ] {
        let body = resolve(&doc, &doc["paths"][path][method]["requestBody"]);
        let schema = resolve(&doc, &body["content"]["application/json"]["schema"]);
        assert!(
            schema["properties"].is_object(),
            "{method} {path} has a request schema: {body}"
        );
    }
    let register = resolve(
        &doc,
        &doc["paths"]["/api/v1/auth/register"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    let mut required: Vec<&str> = register["required"]
        .as_array()
        .expect("register lists required fields")
        .iter()
        .map(|field| field.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["email", "full_name", "password"]);

    // Error answers every client will meet are documented where they happen.
    let documented = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status].is_object()
    };
    assert!(documented("/api/v1/auth/register", "post", "201"));
    assert!(documented("/api/v1/auth/register", "post", "409"));
    assert!(documented("/api/v1/auth/register", "post", "422"));
    assert!(documented("/api/v1/auth/login", "post", "401"));
    assert!(documented("/api/v1/auth/login", "post", "429"));
    assert!(documented("/api/v1/auth/refresh", "post", "401"));
    for (path, method) in [
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me", "patch"),
    ] {
        assert!(
            documented(path, method, "401"),
            "{method} {path} documents 401"
        );
        let security = doc["paths"][path][method]["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} declares its security"));
        assert!(
            security.iter().any(|s| s.get("bearer").is_some()),
            "{method} {path} needs the bearer scheme"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn docs_page_is_self_contained_html() {
    let app = spawn_app().await;
    let response = app.get("/docs/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = response.text().await.unwrap();
    assert!(html.to_lowercase().contains("<html"), "{html}");

    // Every script comes from this server, not a CDN.
    let sources = script_sources(&html);
    assert!(!sources.is_empty(), "the page loads its scripts: {html}");
    for source in &sources {
        let lower = source.to_lowercase();
        assert!(
            !lower.starts_with("http://")
                && !lower.starts_with("https://")
                && !lower.starts_with("//"),
            "external script {source}"
        );
        let url = if source.starts_with('/') {
            app.url(source)
        } else {
            app.url(&format!("/docs/{}", source.trim_start_matches("./")))
        };
        let response = app.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url} is served");
        let script = response.text().await.unwrap();
        assert!(!script.is_empty(), "{url} has content");
    }

    // `/docs` without the slash reaches the same page.
    let response = app.get("/docs").await;
    let status = response.status();
    if status.is_redirection() {
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        assert!(
            location.ends_with("/docs/"),
            "redirects to /docs/: {location}"
        );
    } else {
        assert_eq!(status, StatusCode::OK);
    }
}

/// The `src` of every `<script>` tag in `html`.
fn script_sources(html: &str) -> Vec<String> {
    let lower = html.to_lowercase();
    let mut sources = Vec::new();
    let mut rest = 0;
    while let Some(start) = lower[rest..].find("<script") {
        let tag_start = rest + start;
        let tag_end = tag_start + lower[tag_start..].find('>').expect("a closed tag");
        let tag = &html[tag_start..tag_end];
        let tag_lower = &lower[tag_start..tag_end];
        if let Some(src) = tag_lower.find("src=") {
            let value = &tag[src + 4..];
            let quote = value.chars().next().unwrap();
            let value = if quote == '"' || quote == '\'' {
                value[1..].split(quote).next().unwrap()
            } else {
                value.split_whitespace().next().unwrap()
            };
            sources.push(value.to_owned());
        }
        rest = tag_end;
    }
    sources
}

#[tokio::test]
async fn a_browser_at_the_root_finds_the_shop_which_points_to_the_api() {
    let app = spawn_app().await;
    let response = app.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("<h1>Concerts</h1>"), "the shop: {page}");
    assert!(
        page.contains("href=\"/docs\""),
        "the page links the API's: {page}"
    );
}
