//! Request extractors whose rejections are problem documents.
//!
//! axum's own `Json` and `Query` answer bad input with plain text. These wrappers keep the same
//! ergonomics but map every rejection onto the contract: malformed JSON is 400 `malformed_body`,
//! JSON of the wrong shape (missing, unknown or mistyped fields) is 422 `validation_failed` with the
//! field named, a body over the limit is 413 `body_too_large`, and a body that is not JSON is 415
//! `unsupported_media_type`.
//!
//! For bodies that change a resource (PATCH), [`present`] and [`present_rfc3339`] tell a field
//! sent as `null` (`Some(None)`: clear it) apart from a field left out (`None`, with
//! `#[serde(default)]`: keep it).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::problem::{ErrorCode, FieldError, Problem};

/// The largest request body boxoffice accepts (API contract: 64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body (or response), with problem+json rejections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// A JSON request body as it was sent, unparsed (for a signature over its exact bytes), with
/// the rejections of [`Json`]: not sent as JSON, or too large.
#[derive(Debug, Clone, Default)]
pub struct JsonBytes(pub Bytes);

impl<S> FromRequest<S> for JsonBytes
where
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(Problem::new(
                ErrorCode::UnsupportedMediaType,
                "the request body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    ErrorCode::BodyTooLarge,
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                Problem::new(ErrorCode::MalformedBody, rejection.body_text())
            }
        })?;
        Ok(JsonBytes(bytes))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Parses a JSON document into `T`, with the contract's error mapping.
///
/// Every request body of the API is a JSON object: serde would also build a struct from an
/// array of its fields (`[null, null]`), which is 422 here. And JSON has one number type: `5.0`
/// is the integer 5 (as JSON Schema, and so the OpenAPI document, count it), so a whole number
/// written with a fraction or an exponent is taken where an integer is expected. Both are looked
/// at only when needed, so a well-formed body is read in one pass.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !object && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(Problem::invalid_field("body", "must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| (error.path().to_string(), error.into_inner()))
        .and_then(|value| match deserializer.end() {
            Ok(()) => Ok(value),
            Err(error) => Err((".".to_owned(), error)),
        });
    match parsed {
        Ok(value) => Ok(value),
        Err((path, error)) => {
            if error.classify() == serde_json::error::Category::Data
                && let Some(value) = with_whole_numbers_as_integers(bytes)
            {
                return Ok(value);
            }
            Err(json_error_to_problem(&path, &error))
        }
    }
}

/// `T` from `bytes` once every whole number written as a float (`5.0`, `1e2`) is an integer;
/// `None` if there is no such number or `T` still does not fit.
fn with_whole_numbers_as_integers<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn integers(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(number) => match number.as_f64() {
                // Within ±2^53 every integer is exact in an f64, so the cast loses nothing.
                Some(float)
                    if number.is_f64()
                        && float.fract() == 0.0
                        && float.abs() <= 9.007_199_254_740_992e15 =>
                {
                    *number = serde_json::Number::from(float as i64);
                    true
                }
                _ => false,
            },
            // Every member is visited (no short circuit): each whole number must be converted.
            serde_json::Value::Array(items) => {
                items.iter_mut().map(integers).filter(|&c| c).count() > 0
            }
            serde_json::Value::Object(members) => {
                members.values_mut().map(integers).filter(|&c| c).count() > 0
            }
            _ => false,
        }
    }
    let mut document: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    match integers(&mut document) {
        true => serde_json::from_value(document).ok(),
        false => None,
    }
}

fn json_error_to_problem(path: &str, error: &serde_json::Error) -> Problem {
    use serde_json::error::Category;
    let message = strip_position(&error.to_string());
    match error.classify() {
        // `1e400` is well-formed JSON (RFC 8259 sets no range on numbers); it is a value out of
        // range for the field, not a malformed body.
        Category::Syntax if message.starts_with("number out of range") => {
            let field = if path == "." { "body" } else { path };
            Problem::validation(vec![FieldError::new(field, "is a number out of range")])
        }
        Category::Syntax | Category::Eof | Category::Io => Problem::new(
            ErrorCode::MalformedBody,
            format!("the request body is not valid JSON: {message}"),
        ),
        Category::Data => {
            // serde reports missing and unknown fields against the enclosing object; name the
            // field itself so a client can point at it.
            let named = backticked(&message);
            let field = match (path, named) {
                (".", Some(name)) if is_field_message(&message) => name.to_owned(),
                (".", _) => "body".to_owned(),
                // serde_path_to_error already names an unknown field in the path.
                (path, Some(name)) if is_field_message(&message) && !path.ends_with(name) => {
                    format!("{path}.{name}")
                }
                (path, _) => path.to_owned(),
            };
            Problem::validation(vec![FieldError::new(field, message)])
        }
    }
}

fn is_field_message(message: &str) -> bool {
    message.starts_with("missing field") || message.starts_with("unknown field")
}

/// The first `quoted` word of a serde message, e.g. the field of "unknown field `x`, expected …".
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// Drops serde_json's " at line 1 column 7" suffix: positions mean little to API clients.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// Whether the request says its body is JSON: `application/json` or any `application/*+json`,
/// with or without parameters.
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The client's address: the TCP peer, or behind a trusted proxy the address the proxy names
/// (the server puts either into axum's `ConnectInfo`). Unspecified (`0.0.0.0`) where a request
/// did not come through a socket, as in in-process tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        Ok(Self(address))
    }
}

/// Query-string parameters, with 422 `validation_failed` rejections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| {
                let message = rejection.body_text();
                let message = message
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&message)
                    .to_owned();
                let field = backticked(&message).unwrap_or("query").to_owned();
                Problem::validation(vec![FieldError::new(field, message)])
            })
    }
}

/// `deserialize_with` for a nullable field of a change: `Some(None)` for `null`, `Some(Some(v))`
/// for a value; with `#[serde(default)]`, `None` when the field is absent.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// [`present`] for an RFC 3339 instant.
pub fn present_rfc3339<'de, D>(
    deserializer: D,
) -> Result<Option<Option<time::OffsetDateTime>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    time::serde::rfc3339::option::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        age: u8,
    }

    #[test]
    fn syntax_errors_are_malformed_body() {
        let problem = parse_json::<Body>(b"{\"email\": ").unwrap_err();
        assert_eq!(problem.code, ErrorCode::MalformedBody);
        let problem = parse_json::<Body>(b"{\"email\": \"a\", \"age\": 1} trailing").unwrap_err();
        assert_eq!(problem.code, ErrorCode::MalformedBody);
    }

    #[test]
    fn numbers_out_of_range_are_validation_errors_of_their_field() {
        let problem = parse_json::<Body>(br#"{"email":"a","age":1e400}"#).unwrap_err();
        assert_eq!(problem.code, ErrorCode::ValidationFailed);
        assert_eq!(problem.errors[0].field, "age");
        let problem = parse_json::<Body>(br#"{"email":"a","age":-1e400}"#).unwrap_err();
        assert_eq!(problem.code, ErrorCode::ValidationFailed);
    }

    #[test]
    fn unknown_missing_and_mistyped_fields_are_named() {
        let problem = parse_json::<Body>(br#"{"email":"a","age":1,"admin":true}"#).unwrap_err();
        assert_eq!(problem.code, ErrorCode::ValidationFailed);
        assert_eq!(problem.errors[0].field, "admin");

        let problem = parse_json::<Body>(br#"{"age":1}"#).unwrap_err();
        assert_eq!(problem.errors[0].field, "email");

        let problem = parse_json::<Body>(br#"{"email":"a","age":"old"}"#).unwrap_err();
        assert_eq!(problem.errors[0].field, "age");
        assert!(!problem.errors[0].message.contains("line"));
    }

    #[test]
    fn a_body_is_an_object() {
        let problem = parse_json::<Body>(br#"["a", 1]"#).unwrap_err();
        assert_eq!(problem.code, ErrorCode::ValidationFailed);
        assert_eq!(problem.errors[0].field, "body");
        let problem = parse_json::<Body>(b"[\"a\", ").unwrap_err();
        assert_eq!(problem.code, ErrorCode::MalformedBody);
    }

    #[test]
    fn whole_numbers_are_integers_however_written() {
        let body = parse_json::<Body>(br#"{"email": "a", "age": 5.0}"#).unwrap();
        assert_eq!(body.age, 5);
        let body = parse_json::<Body>(br#"{"email": "a", "age": 1e2}"#).unwrap();
        assert_eq!(body.age, 100);
        let problem = parse_json::<Body>(br#"{"email": "a", "age": 5.5}"#).unwrap_err();
        assert_eq!(problem.code, ErrorCode::ValidationFailed);
        assert_eq!(problem.errors[0].field, "age");
        let problem = parse_json::<Body>(br#"{"email": "a", "age": 300.0}"#).unwrap_err();
        assert_eq!(problem.errors[0].field, "age");
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_json_content_type(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json_content_type(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/merge-patch+json".parse().unwrap(),
        );
        assert!(is_json_content_type(&headers));
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json_content_type(&headers));
    }
}
