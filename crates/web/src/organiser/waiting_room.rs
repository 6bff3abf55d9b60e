//! A concert's waiting room in the back office (API v1.1, "Waiting room for on-sales"): put one
//! in front of its sales, change its rate or how long a fan's turn lasts, or take it away —
//! each a `PATCH` of the concert's `waiting_room`, whose refusals are the API's to say.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::change_then_dashboard;
use crate::api::Api;
use crate::format::WaitingRoom;
use crate::page::{CsrfForm, PageError, encode};
use crate::session::Visitor;

/// What the form offers for a concert without a waiting room.
const DEFAULT: WaitingRoom = WaitingRoom {
    admit_per_minute: 1000,
    admission_ttl_seconds: 600,
};

/// The form's fields, as the edit page fills them: the concert's room, or the default one.
pub(super) fn fields(room: Option<WaitingRoom>) -> (String, String) {
    let room = room.unwrap_or(DEFAULT);
    (room.admit_per_minute.to_string(), room.turn_minutes())
}

#[derive(Debug, Deserialize)]
pub(super) struct WaitingRoomForm {
    csrf: String,
    #[serde(default)]
    admit_per_minute: String,
    /// How long a turn lasts, in minutes (`10`, `1.5`).
    #[serde(default)]
    turn_minutes: String,
}

/// Sets the concert's waiting room (a new one, or new settings for the one it has).
pub(super) async fn set(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<WaitingRoomForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require_admin(&format!("/organiser/concerts/{id}/edit"))?;
    let body = json!({ "waiting_room": room_body(&form.admit_per_minute, &form.turn_minutes) });
    patch(&api, visitor, &id, &body).await
}

/// Takes the waiting room away: fans buy directly again.
pub(super) async fn remove(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require_admin(&format!("/organiser/concerts/{id}/edit"))?;
    patch(&api, visitor, &id, &json!({ "waiting_room": null })).await
}

async fn patch(api: &Api, visitor: Visitor, id: &str, body: &Value) -> Result<Response, PageError> {
    let path = format!("/api/v1/concerts/{}", encode(id));
    change_then_dashboard(api, visitor, id, Method::PATCH, &path, Some(body)).await
}

/// The API's `waiting_room` for the form: a turn's minutes as seconds; what does not read as a
/// number goes to the API as typed, for it to refuse by name.
fn room_body(admit_per_minute: &str, turn_minutes: &str) -> Value {
    let admit_per_minute = admit_per_minute.trim();
    let turn_minutes = turn_minutes.trim();
    json!({
        "admit_per_minute": admit_per_minute
            .parse::<i64>()
            .map_or(json!(admit_per_minute), |n| json!(n)),
        "admission_ttl_seconds": seconds(turn_minutes)
            .map_or(json!(turn_minutes), |n| json!(n)),
    })
}

/// `10` or `1.5` minutes as seconds (600, 90); `None` for anything else.
fn seconds(minutes: &str) -> Option<i64> {
    let minutes: f64 = minutes.parse().ok()?;
    if !(0.0..=1e9).contains(&minutes) {
        return None;
    }
    Some((minutes * 60.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_reads_as_the_apis_waiting_room() {
        assert_eq!(
            room_body("600", "10"),
            json!({ "admit_per_minute": 600, "admission_ttl_seconds": 600 })
        );
        assert_eq!(
            room_body(" 5 ", "1.5"),
            json!({ "admit_per_minute": 5, "admission_ttl_seconds": 90 })
        );
        assert_eq!(
            room_body("many", "soon"),
            json!({ "admit_per_minute": "many", "admission_ttl_seconds": "soon" })
        );
        assert_eq!(seconds("-1"), None);
        assert_eq!(seconds("NaN"), None);
        assert_eq!(fields(None), ("1000".to_owned(), "10".to_owned()));
    }
}
