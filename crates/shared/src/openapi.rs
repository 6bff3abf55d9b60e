//! OpenAPI descriptions of the problem answers of a route (API contract, "Conventions" and
//! "Error codes").
//!
//! Every route lists the problem codes it can answer with [`problem_responses!`], which makes a
//! type for `#[utoipa::path(responses(...))]`. From those codes it builds one response per status:
//! its description names every code (with the route's own note where it has one), its
//! `application/problem+json` content refers to the `Problem` schema and carries one example per
//! code, so a client reading 401 sees an `unauthenticated` problem and one reading 422 a
//! `validation_failed` problem with its `errors`. A `rate_limited` answer declares its
//! `Retry-After` header as required, an `unavailable` one the same header as optional (not every
//! outage knows when to retry), and an `unauthenticated` one its RFC 6750 `WWW-Authenticate`
//! challenge. Deriving all of this from [`ErrorCode`] keeps the document and the wire from
//! drifting apart: a code's status and title come from the same `match` the server answers with.

use std::collections::BTreeMap;

use serde_json::{Value, json};
pub use utoipa::IntoResponses;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::{Ref, RefOr};

use crate::problem::{ErrorCode, PROBLEM_TYPE_BASE};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Makes a unit struct whose [`IntoResponses`] lists the problem answers of a route:
///
/// ```ignore
/// problem_responses!(
///     /// What `POST /api/v1/bookings` can answer besides 201.
///     pub struct CreateBookingProblems {
///         Unauthenticated,
///         SoldOut: "no seat of this type is left",
///         ValidationFailed,
///     }
/// );
/// #[utoipa::path(post, path = "/api/v1/bookings", responses((status = 201, ...), CreateBookingProblems))]
/// ```
///
/// Each entry is an [`ErrorCode`] variant, optionally with a note that says when this route
/// answers it; without one the contract's general meaning of the code is used.
#[macro_export]
macro_rules! problem_responses {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($code:ident $(: $note:literal)?),+ $(,)? }) => {
        $(#[$meta])*
        $vis struct $name;

        impl $crate::openapi::IntoResponses for $name {
            fn responses() -> ::std::collections::BTreeMap<
                ::std::string::String,
                ::utoipa::openapi::RefOr<::utoipa::openapi::response::Response>,
            > {
                $crate::openapi::problem_responses(&[$((
                    $crate::ErrorCode::$code,
                    {
                        let note: &[&str] = &[$($note)?];
                        note.first().copied()
                    },
                )),+])
            }
        }
    };
}

/// One response per status for `problems` (each a code and, optionally, when this route answers
/// it), in the order given within each status.
pub fn problem_responses(
    problems: &[(ErrorCode, Option<&str>)],
) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<(ErrorCode, &str)>> = BTreeMap::new();
    for &(code, note) in problems {
        by_status
            .entry(code.status().as_u16())
            .or_default()
            .push((code, note.unwrap_or_else(|| meaning(code))));
    }
    by_status
        .into_iter()
        .map(|(status, codes)| (status.to_string(), response(&codes).into()))
        .collect()
}

fn response(codes: &[(ErrorCode, &str)]) -> ResponseBuilder {
    let description = codes
        .iter()
        .map(|(code, note)| format!("`{}`: {note}", code.as_str()))
        .collect::<Vec<_>>()
        .join("; ");
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .examples_from_iter(codes.iter().map(|&(code, note)| {
            (
                code.as_str(),
                ExampleBuilder::new()
                    .summary(code.title())
                    .value(Some(example(code, note))),
            )
        }))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, content);
    let has = |wanted: ErrorCode| codes.iter().any(|(code, _)| *code == wanted);
    if has(ErrorCode::RateLimited) {
        response = response.header("Retry-After", retry_after(true));
    } else if has(ErrorCode::Unavailable) {
        response = response.header("Retry-After", retry_after(false));
    }
    if has(ErrorCode::Unauthenticated) {
        let challenge = HeaderBuilder::new()
            .schema(Some(
                Object::builder()
                    .schema_type(Type::String)
                    .examples([json!("Bearer")]),
            ))
            .description(Some("`Bearer` (RFC 6750 §3)"))
            .build();
        response = response.header("WWW-Authenticate", challenge);
    }
    response
}

/// `Retry-After` in whole seconds (API contract, "Conventions").
fn retry_after(required: bool) -> utoipa::openapi::header::Header {
    let mut header = HeaderBuilder::new()
        .schema(Some(
            Object::builder()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .examples([json!(30)]),
        ))
        .description(Some("Seconds to wait before trying again"))
        .build();
    if required {
        // utoipa 6's `Header` has no `required` member; the OpenAPI Header Object does, and a
        // client (or schemathesis) should be told that a 429 always carries the header.
        header.extensions = Some(Extensions::from_iter([("required", Value::Bool(true))]));
    }
    header
}

/// A problem document as the server sends it for `code`.
fn example(code: ErrorCode, detail: &str) -> Value {
    let mut problem = json!({
        "type": format!("{PROBLEM_TYPE_BASE}{}", code.as_str()),
        "title": code.title(),
        "status": code.status().as_u16(),
        "detail": detail,
        "code": code.as_str(),
    });
    if code == ErrorCode::ValidationFailed {
        problem["detail"] = json!("password: must be at least 8 characters");
        problem["errors"] =
            json!([{"field": "password", "message": "must be at least 8 characters"}]);
    }
    problem
}

/// What a code means anywhere (the "when" column of the contract's table of codes).
pub fn meaning(code: ErrorCode) -> &'static str {
    use ErrorCode::*;
    match code {
        MalformedBody => "the body is not valid JSON",
        Unauthenticated => "missing, malformed, expired or revoked access token",
        InvalidCredentials => "unknown login or wrong password (one answer for both)",
        InvalidRefreshToken => "refresh token unknown, expired, revoked or already used",
        Forbidden => "authenticated but not allowed",
        ConcertNotFound => "no such concert (also for a malformed id)",
        SeatTypeNotFound => "no such seat type in this concert",
        BookingNotFound => "no such booking, or not the caller's",
        NotFound => "nothing at this path",
        MethodNotAllowed => "this path does not support this method",
        EmailTaken => "the email is already registered",
        PhoneTaken => "the phone number is already registered",
        SoldOut => "no seat of this type is left",
        AlreadyBooked => {
            "the user already holds a confirmed booking or an active hold for this concert"
        }
        BookingClosed => "the concert has started or was cancelled",
        SalesNotOpen => "the concert's sales open later (its sales_open_at)",
        AlreadyCancelled => "the booking is already cancelled",
        IdempotencyKeyReused => "the same Idempotency-Key was sent with a different body",
        HoldNotFound => "no such hold, or not the caller's",
        HoldNotActive => "the hold is released, expired or completed",
        HoldExpired => "the hold reached its expires_at before it was paid",
        PaymentDeclined => "the payment method was refused; the hold stays active until it expires",
        PaymentRequired => {
            "a priced seat needs a hold paid through the payment provider (POST /holds)"
        }
        InvalidSignature => "a payment provider's webhook whose signature does not verify",
        AlreadyCheckedIn => "the ticket was already scanned; `checked_in_at` says when",
        TicketCancelled => "the ticket's booking is cancelled",
        InvalidTicket => {
            "not a ticket code of this deployment, forged, altered, or of another concert"
        }
        SeatsAvailable => "the seat type is not sold out: book it instead of waiting",
        AlreadyWaitlisted => "the caller already waits (or holds an offer) for this concert",
        WaitlistEntryNotFound => "no such waiting-list entry, or not the caller's",
        WebhookNotFound => "no such webhook, or a deleted one",
        AdmissionRequired => {
            "the concert's waiting room is on and the request carries no valid admission \
             (Boxoffice-Admission) for this user and concert"
        }
        BodyTooLarge => "the body is larger than 64 KiB",
        UnsupportedMediaType => "the body is not sent as application/json",
        ValidationFailed => {
            "a field is missing, of the wrong type, or out of range; `errors` names each"
        }
        RateLimited => "too many requests; retry after `Retry-After` seconds",
        Internal => "an unexpected error, logged on the server",
        Unavailable => "a dependency is down; safe to retry",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    problem_responses!(
        struct Sample {
            Unauthenticated,
            SoldOut: "none left",
            AlreadyBooked,
            ValidationFailed,
            RateLimited,
        }
    );

    #[test]
    fn codes_are_grouped_by_status_with_one_example_each() {
        let json = serde_json::to_value(Sample::responses()).unwrap();
        let statuses: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(statuses, ["401", "409", "422", "429"]);

        let conflict = &json["409"]["content"][PROBLEM_JSON];
        assert_eq!(conflict["schema"]["$ref"], "#/components/schemas/Problem");
        assert_eq!(
            conflict["examples"]["sold_out"]["value"]["detail"],
            "none left"
        );
        assert_eq!(
            conflict["examples"]["already_booked"]["value"]["status"],
            409
        );
        assert!(
            json["409"]["description"]
                .as_str()
                .unwrap()
                .contains("`already_booked`")
        );

        let unauthenticated = &json["401"]["content"][PROBLEM_JSON]["examples"];
        assert_eq!(
            unauthenticated["unauthenticated"]["value"]["code"],
            "unauthenticated"
        );
        assert!(json["401"]["headers"]["WWW-Authenticate"].is_object());

        let invalid = &json["422"]["content"][PROBLEM_JSON]["examples"]["validation_failed"];
        assert_eq!(invalid["value"]["errors"][0]["field"], "password");

        assert_eq!(json["429"]["headers"]["Retry-After"]["required"], true);
        assert_eq!(
            json["429"]["headers"]["Retry-After"]["schema"]["type"],
            "integer"
        );
    }

    #[test]
    fn an_outage_may_say_when_to_retry() {
        let json =
            serde_json::to_value(problem_responses(&[(ErrorCode::Unavailable, None)])).unwrap();
        let header = &json["503"]["headers"]["Retry-After"];
        assert!(header.is_object());
        assert!(header.get("required").is_none());
    }
}
