//! The served OpenAPI document is a true one (issue 15): every `$ref` resolves, and every route
//! declares the problems it can answer, with an example of each code and the headers that go with
//! them. `.ci/schemathesis.sh` then checks the live server against the document; these tests catch
//! a broken document without Python.

use serde_json::Value;

use crate::helpers::spawn_app;

async fn served_document() -> Value {
    let app = spawn_app().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert!(response.status().is_success());
    response.json().await.unwrap()
}

/// Every `$ref` under `value`, with the JSON pointer of the object that holds it.
fn references<'a>(value: &'a Value, at: &str, found: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                match (key.as_str(), member) {
                    ("$ref", Value::String(target)) => found.push((at.to_owned(), target)),
                    _ => references(member, &format!("{at}/{key}"), found),
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                references(item, &format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_reference_in_the_document_resolves() {
    let doc = served_document().await;
    let mut found = Vec::new();
    references(&doc, "", &mut found);
    assert!(
        found.len() > 20,
        "the document refers to its schemas: {found:?}"
    );
    let broken: Vec<&(String, &str)> = found
        .iter()
        .filter(|(_, target)| {
            // Only local references: the document must stand alone (Swagger UI offline, CI).
            target
                .strip_prefix('#')
                .is_none_or(|pointer| doc.pointer(pointer).is_none())
        })
        .collect();
    assert!(broken.is_empty(), "unresolved references: {broken:#?}");
}

/// Each operation of the document: its method, path and object.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            all.push((method.clone(), path.clone(), operation));
        }
    }
    all
}

#[tokio::test]
async fn every_problem_answer_is_declared_with_an_example_of_each_code() {
    let doc = served_document().await;
    for (method, path, operation) in operations(&doc) {
        let route = format!("{method} {path}");
        let responses = operation["responses"].as_object().unwrap();
        let has_body = operation.get("requestBody").is_some();
        let signed_in = operation.get("security").is_some();
        for status in ["400", "413", "415", "422"] {
            assert!(
                !has_body || responses.contains_key(status),
                "{route} takes a JSON body, so it documents {status}"
            );
        }
        assert!(
            !signed_in || responses.contains_key("401"),
            "{route} needs a token, so it documents 401"
        );
        for (status, response) in responses {
            if !status.starts_with(['4', '5']) {
                continue;
            }
            let content = &response["content"]["application/problem+json"];
            assert_eq!(
                content["schema"]["$ref"], "#/components/schemas/Problem",
                "{route} {status}"
            );
            let examples = content["examples"]
                .as_object()
                .unwrap_or_else(|| panic!("{route} {status} shows an example per code"));
            for (code, example) in examples {
                let value = &example["value"];
                assert_eq!(value["code"], code.as_str(), "{route} {status}");
                assert_eq!(value["status"].to_string(), *status, "{route} {code}");
                if code == "validation_failed" {
                    assert!(value["errors"][0]["field"].is_string(), "{route} {code}");
                }
            }
            match status.as_str() {
                "401" if signed_in => assert!(
                    examples.contains_key("unauthenticated"),
                    "{route} 401 shows an unauthenticated problem"
                ),
                "422" => assert!(examples.contains_key("validation_failed"), "{route}"),
                "429" => {
                    let retry_after = &response["headers"]["Retry-After"];
                    assert_eq!(retry_after["required"], true, "{route} 429");
                    assert_eq!(retry_after["schema"]["type"], "integer", "{route} 429");
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn limits_writes_and_streams_are_described() {
    let doc = served_document().await;
    let bookings = &doc["paths"]["/api/v1/bookings"]["post"];
    assert!(
        bookings["responses"]["429"].is_object(),
        "POST /bookings 429"
    );
    assert!(
        doc["paths"]["/api/v1/bookings/{id}/cancel"]["post"]["responses"]["429"].is_object(),
        "POST /bookings/{{id}}/cancel 429"
    );
    let key = bookings["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap();
    assert_eq!(
        (&key["schema"]["minLength"], &key["schema"]["maxLength"]),
        (&Value::from(1), &Value::from(255))
    );

    let schema = |name: &str| &doc["components"]["schemas"][name];
    let register = &schema("RegisterRequest")["properties"]["password"];
    assert_eq!(
        (
            register["minLength"].as_u64(),
            register["maxLength"].as_u64()
        ),
        (Some(8), Some(128))
    );
    let seat_types = &schema("CreateConcertRequest")["properties"]["seat_types"];
    assert_eq!(
        (
            seat_types["minItems"].as_u64(),
            seat_types["maxItems"].as_u64()
        ),
        (Some(1), Some(20))
    );
    let price = &schema("SeatTypeRequest")["properties"]["price_cents"];
    assert_eq!(
        (price["minimum"].as_u64(), price["maximum"].as_u64()),
        (Some(0), Some(100_000_000))
    );

    let limit = doc["paths"]["/api/v1/concerts"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(
        (
            limit["schema"]["minimum"].as_u64(),
            limit["schema"]["maximum"].as_u64()
        ),
        (Some(1), Some(100))
    );

    let stream = &doc["paths"]["/api/v1/concerts/{id}/availability/stream"]["get"]["responses"]["200"]
        ["content"];
    let events = stream["text/event-stream"]["schema"]["$ref"].as_str();
    assert!(
        events.is_some(),
        "the stream's events have a schema: {stream}"
    );
    assert!(stream.get("application/json").is_none(), "{stream}");
}
