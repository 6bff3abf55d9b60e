//! API contract, "Tickets and check-in": every confirmed booking is a ticket whose code carries
//! its own Ed25519 signature (checked here offline, with nothing but the published public key),
//! and door staff check a ticket in exactly once, however many doors scan it at the same moment.

use std::sync::Arc;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::emails::{mails, mails_of};
use crate::helpers::{
    PASSWORD, Session, TestApp, assert_problem, concert_body, error_fields, id_of, poll_until,
    spawn_admin_app,
};

impl TestApp {
    /// `GET /api/v1/bookings/{id}/ticket`; panics unless the answer is 200.
    pub async fn ticket(&self, token: &str, booking_id: &str) -> Value {
        let response = self
            .get_with_token(&format!("/api/v1/bookings/{booking_id}/ticket"), token)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "ticket of {booking_id}");
        response.json().await.unwrap()
    }

    /// `POST /api/v1/concerts/{id}/checkins` with `code` and, when given, `nonce`.
    pub async fn scan(
        &self,
        token: &str,
        concert_id: &str,
        code: &str,
        nonce: Option<&str>,
    ) -> Response {
        let mut body = json!({ "code": code });
        if let Some(nonce) = nonce {
            body["nonce"] = json!(nonce);
        }
        self.post_json_with_token(
            &format!("/api/v1/concerts/{concert_id}/checkins"),
            token,
            &body,
        )
        .await
    }

    /// A user promoted to door staff by `admin`, signed in again so that the token says so.
    pub async fn door_staff(&self, admin: &str, email: &str) -> Session {
        let user = self.register_user(email).await;
        let response = self
            .patch_json_with_token(
                &format!("/api/v1/admin/users/{}", user.user_id()),
                admin,
                &json!({ "role": "staff" }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        self.login_session(email, PASSWORD).await
    }
}

/// A concert on sale with one seat type of `capacity`, and the ids of both.
async fn concert(app: &TestApp, admin: &str, name: &str, capacity: u64) -> (String, String) {
    let concert = app
        .create_concert(admin, &concert_body(name, 86_400, capacity))
        .await;
    (id_of(&concert), id_of(&concert["seat_types"][0]))
}

/// What a scanner holding only the public key can tell from a code: the booking and concert it
/// names, if the signature verifies.
fn verify_offline(public_key_pem: &str, code: &str) -> Option<(uuid::Uuid, uuid::Uuid)> {
    let body: String = public_key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let spki = STANDARD.decode(body).ok()?;
    // An Ed25519 SubjectPublicKeyInfo is a 12-byte header and the 32-byte key.
    let key = spki.get(12..).filter(|key| key.len() == 32)?;
    let bytes = URL_SAFE_NO_PAD.decode(code).ok()?;
    // Version 2: the signed 33 bytes, their 64-byte signature, then the deployment's own tag.
    if bytes.len() != 113 || bytes[0] != 2 {
        return None;
    }
    let (signed, rest) = bytes.split_at(33);
    let signature = &rest[..64];
    UnparsedPublicKey::new(&ED25519, key)
        .verify(signed, signature)
        .ok()?;
    Some((
        uuid::Uuid::from_slice(&signed[1..17]).ok()?,
        uuid::Uuid::from_slice(&signed[17..33]).ok()?,
    ))
}

#[tokio::test]
async fn a_booking_is_a_ticket_with_a_signed_code_its_qr_code_and_an_email_that_shows_them() {
    let (app, admin) = spawn_admin_app().await;
    let (concert_id, seat_type_id) = concert(&app, &admin, "Ticketed", 5).await;
    let fan = app.register_user("holder@example.com").await;
    let booking = app
        .book_ok(&fan.access_token, &concert_id, &seat_type_id)
        .await;
    let booking_id = id_of(&booking);

    let ticket = app.ticket(&fan.access_token, &booking_id).await;
    assert_eq!(ticket["booking_id"], booking_id.as_str());
    assert_eq!(ticket["concert_id"], concert_id.as_str());
    assert_eq!(ticket["seat_type_id"], seat_type_id.as_str());
    assert_eq!(ticket["holder_name"], fan.user["full_name"]);
    assert_eq!(ticket["status"], "valid");
    let code = ticket["code"].as_str().unwrap().to_owned();
    assert!(code.len() <= 256 && !code.is_empty());
    assert!(
        code.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    // The same code every time, for the holder and for an admin.
    let again = app.ticket(&admin, &booking_id).await;
    assert_eq!(again["code"], code.as_str());

    // Verifiable offline with the published key, and by nothing else.
    let key: Value = app.get("/api/v1/tickets/key").await.json().await.unwrap();
    assert_eq!(key["alg"], "EdDSA");
    let pem = key["public_key_pem"].as_str().unwrap();
    let named = verify_offline(pem, &code).expect("a genuine code verifies offline");
    assert_eq!(named.0.to_string(), booking_id);
    assert_eq!(named.1.to_string(), concert_id);
    let mut altered = code.clone().into_bytes();
    altered[40] = if altered[40] == b'A' { b'B' } else { b'A' };
    assert!(verify_offline(pem, &String::from_utf8(altered).unwrap()).is_none());

    // The QR code.
    let svg = app
        .get_with_token(
            &format!("/api/v1/bookings/{booking_id}/ticket.svg"),
            &fan.access_token,
        )
        .await;
    assert_eq!(svg.status(), StatusCode::OK);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await.unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");

    // Nobody else sees it; without a token nobody at all.
    let other = app.register_user("other@example.com").await;
    for path in ["ticket", "ticket.svg"] {
        let path = format!("/api/v1/bookings/{booking_id}/{path}");
        let response = app.get_with_token(&path, &other.access_token).await;
        assert_problem(response, StatusCode::NOT_FOUND, "booking_not_found").await;
        let response = app.get(&path).await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    let response = app
        .get_with_token("/api/v1/bookings/not-a-uuid/ticket", &fan.access_token)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "booking_not_found").await;

    // The confirmation email carries the code and the QR code.
    let mail_dir = app.data_dir().join("mail");
    let mail = poll_until(10, "the confirmation email", || async {
        mails_of(&mails(&mail_dir), &booking_id, "booking_confirmed")
            .into_iter()
            .next()
    })
    .await;
    assert!(mail.text.contains(&code), "{}", mail.text);
    assert!(mail.text.contains("image/svg+xml"), "{}", mail.text);

    // A cancelled booking's ticket says so.
    let cancelled = app.cancel_booking(&fan.access_token, &booking_id).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let ticket = app.ticket(&fan.access_token, &booking_id).await;
    assert_eq!(ticket["status"], "cancelled");
    assert_eq!(ticket["code"], code.as_str());
}

#[tokio::test]
async fn door_staff_check_a_ticket_in_once_and_refuse_what_is_not_a_ticket_of_this_concert() {
    let (app, admin) = spawn_admin_app().await;
    let (concert_id, seat_type_id) = concert(&app, &admin, "Doors", 5).await;
    let (other_concert, other_seat) = concert(&app, &admin, "Elsewhere", 5).await;
    let door = app.door_staff(&admin, "door@example.com").await;
    let fan = app.register_user("guest@example.com").await;
    let booking = id_of(
        &app.book_ok(&fan.access_token, &concert_id, &seat_type_id)
            .await,
    );
    let code = app.ticket(&fan.access_token, &booking).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = door.access_token.as_str();

    // Customers may not scan, nor read the counts; nobody without a token.
    let response = app.scan(&fan.access_token, &concert_id, &code, None).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let counts = format!("/api/v1/concerts/{concert_id}/checkins");
    let response = app.get_with_token(&counts, &fan.access_token).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.get(&counts).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // The first scan admits; a scanner's retry (same nonce) is admitted with the same answer;
    // any other scan is refused with the time of the first.
    let first = app.scan(token, &concert_id, &code, Some("scan-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["booking_id"], booking.as_str());
    assert_eq!(first["seat_type_id"], seat_type_id.as_str());
    assert_eq!(first["holder_name"], fan.user["full_name"]);
    let retry = app.scan(token, &concert_id, &code, Some("scan-1")).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    for nonce in [Some("scan-2"), None] {
        let again = app.scan(token, &concert_id, &code, nonce).await;
        let problem = assert_problem(again, StatusCode::CONFLICT, "already_checked_in").await;
        assert_eq!(problem["checked_in_at"], first["checked_in_at"]);
    }
    // An admin may scan too, and is refused the same way.
    let response = app.scan(&admin, &concert_id, &code, None).await;
    assert_problem(response, StatusCode::CONFLICT, "already_checked_in").await;
    assert_eq!(
        app.ticket(&fan.access_token, &booking).await["status"],
        "checked_in"
    );

    // Garbage, altered, truncated, extended, and another concert's ticket.
    let other_fan = app.register_user("elsewhere@example.com").await;
    let other_booking = id_of(
        &app.book_ok(&other_fan.access_token, &other_concert, &other_seat)
            .await,
    );
    let other_code = app.ticket(&other_fan.access_token, &other_booking).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut altered = code.clone().into_bytes();
    altered[20] = if altered[20] == b'x' { b'y' } else { b'x' };
    let altered = String::from_utf8(altered).unwrap();
    for bad in [
        "garbage".to_owned(),
        "".to_owned(),
        altered,
        code[..code.len() - 4].to_owned(),
        format!("{code}AA"),
        other_code.clone(),
        "x".repeat(130),
    ] {
        let response = app.scan(token, &concert_id, &bad, None).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_ticket").await;
    }
    // The other concert's door takes it.
    let response = app.scan(token, &other_concert, &other_code, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // A cancelled booking's ticket is refused at the door.
    let late = app.register_user("late@example.com").await;
    let late_booking = id_of(
        &app.book_ok(&late.access_token, &concert_id, &seat_type_id)
            .await,
    );
    let late_code = app.ticket(&late.access_token, &late_booking).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    app.cancel_booking(&late.access_token, &late_booking).await;
    let response = app.scan(token, &concert_id, &late_code, None).await;
    assert_problem(response, StatusCode::CONFLICT, "ticket_cancelled").await;

    // Bad requests.
    let response = app
        .scan(token, "01900000-0000-7000-8000-000000000000", &code, None)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "concert_not_found").await;
    let response = app
        .scan(token, &concert_id, &code, Some(&"n".repeat(129)))
        .await;
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["nonce"]);
    let response = app
        .post_json_with_token(&counts, token, &json!({ "nonce": "x" }))
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    // The counts: two confirmed (one cancelled is not), one checked in.
    let response = app.get_with_token(&counts, token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let counts: Value = response.json().await.unwrap();
    assert_eq!(counts["concert_id"], concert_id.as_str());
    assert_eq!(
        counts["seat_types"],
        json!([{"id": seat_type_id, "name": "General", "confirmed": 1, "checked_in": 1}])
    );

    // A ticket cancelled after its check-in is refused as cancelled from then on (its scan's
    // retry still gets its answer), whether its booking or its concert was cancelled.
    app.cancel_booking(&fan.access_token, &booking).await;
    let response = app.scan(token, &concert_id, &code, Some("scan-3")).await;
    assert_problem(response, StatusCode::CONFLICT, "ticket_cancelled").await;
    let retry = app.scan(token, &concert_id, &code, Some("scan-1")).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    let response = app
        .post_with_token(&format!("/api/v1/concerts/{other_concert}/cancel"), &admin)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app.scan(token, &other_concert, &other_code, None).await;
    assert_problem(response, StatusCode::CONFLICT, "ticket_cancelled").await;
}

#[tokio::test]
async fn twenty_doors_scanning_one_ticket_at_once_admit_it_exactly_once() {
    let (app, admin) = spawn_admin_app().await;
    let (concert_id, seat_type_id) = concert(&app, &admin, "Rush", 5).await;
    let door = app.door_staff(&admin, "doors@example.com").await;
    let fan = app.register_user("rushed@example.com").await;
    let booking = id_of(
        &app.book_ok(&fan.access_token, &concert_id, &seat_type_id)
            .await,
    );
    let code = app.ticket(&fan.access_token, &booking).await["code"]
        .as_str()
        .unwrap()
        .to_owned();

    let app = Arc::new(app);
    let start = Arc::new(Barrier::new(20));
    let scans: Vec<_> = (0..20)
        .map(|door_number| {
            let (app, start) = (app.clone(), start.clone());
            let (token, concert_id, code) =
                (door.access_token.clone(), concert_id.clone(), code.clone());
            tokio::spawn(async move {
                start.wait().await;
                let nonce = format!("door-{door_number}");
                let response = app.scan(&token, &concert_id, &code, Some(&nonce)).await;
                let status = response.status();
                (status, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for scan in scans {
        let (status, body) = scan.await.unwrap();
        match status {
            StatusCode::CREATED => admitted.push(body),
            StatusCode::CONFLICT => {
                assert_eq!(body["code"], "already_checked_in", "{body}");
                refused.push(body);
            }
            other => panic!("a scan answered {other}: {body}"),
        }
    }
    assert_eq!(admitted.len(), 1, "exactly one door admits: {admitted:?}");
    assert_eq!(refused.len(), 19);
    for problem in &refused {
        assert_eq!(problem["checked_in_at"], admitted[0]["checked_in_at"]);
    }
}
