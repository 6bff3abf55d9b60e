//! A concert's ticket types in the back office: adding one, and changing one's capacity (it may
//! grow, and shrink only down to what is sold or held — the API's rule, said back as a sentence).

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::change_then_dashboard;
use crate::api::Api;
use crate::page::{PageError, encode};
use crate::session::Visitor;

#[derive(Debug, Deserialize)]
pub(super) struct SeatTypeForm {
    csrf: String,
    name: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    capacity: String,
}

/// Adds a ticket type to a concert.
pub(super) async fn add(
    State(api): State<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<SeatTypeForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require_admin(&format!("/organiser/concerts/{id}/edit"))?;
    let path = format!("/api/v1/concerts/{}/seat-types", encode(&id));
    let body = seat_body(&form.name, &form.price, &form.capacity);
    change_then_dashboard(&api, visitor, &id, Method::POST, &path, Some(&body)).await
}

/// `12.5` or `12.50` as 1250 cents.
fn cents(price: &str) -> Option<i64> {
    let price = price.trim();
    let (units, fraction) = price.split_once('.').unwrap_or((price, ""));
    if fraction.len() > 2 || units.is_empty() && fraction.is_empty() {
        return None;
    }
    let units: i64 = if units.is_empty() {
        0
    } else {
        units.parse().ok()?
    };
    let fraction: i64 = format!("{fraction:0<2}").parse().ok()?;
    units.checked_mul(100)?.checked_add(fraction)
}

#[derive(Debug, Deserialize)]
pub(super) struct CapacityForm {
    csrf: String,
    #[serde(default)]
    capacity: String,
}

/// Changes a ticket type's capacity.
pub(super) async fn set_capacity(
    State(api): State<Api>,
    visitor: Visitor,
    Path((id, seat_type_id)): Path<(String, String)>,
    Form(form): Form<CapacityForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require_admin(&format!("/organiser/concerts/{id}/edit"))?;
    let path = format!(
        "/api/v1/concerts/{}/seat-types/{}",
        encode(&id),
        encode(&seat_type_id)
    );
    let capacity = form.capacity.trim();
    let body = json!({
        "capacity": capacity.parse::<i64>().map_or(json!(capacity), |n| json!(n)),
    });
    change_then_dashboard(&api, visitor, &id, Method::PATCH, &path, Some(&body)).await
}

/// A ticket type as typed: a price in the currency's units (`12.50`); what does not read as a
/// number goes to the API as typed, for it to refuse by name.
pub(super) fn seat_body(name: &str, price: &str, capacity: &str) -> Value {
    json!({
        "name": name.trim(),
        "price_cents": cents(price).map_or(json!(price), |cents| json!(cents)),
        "capacity": capacity.trim().parse::<i64>().map_or(json!(capacity), |n| json!(n)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_as_cents() {
        assert_eq!(cents("12.50"), Some(1250));
        assert_eq!(cents("12.5"), Some(1250));
        assert_eq!(cents("12"), Some(1200));
        assert_eq!(cents("0"), Some(0));
        assert_eq!(cents(".5"), Some(50));
        assert_eq!(cents("1.234"), None);
        assert_eq!(cents("abc"), None);
        assert_eq!(cents(""), None);
    }
}
