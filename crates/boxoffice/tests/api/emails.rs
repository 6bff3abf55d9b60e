//! API contract, "Email" (and "Bookings"): a booking and its cancellation each leave exactly one
//! `.eml` file in `<data-dir>/mail/`, addressed to the holder and naming the concert, seat type,
//! price and booking id; cancelling a concert emails every holder.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{id_of, mail_header, poll_until, read_mail_dir, spawn_admin_app};

/// One email found in the mail directory.
#[derive(Debug, Clone)]
pub struct Mail {
    pub file: String,
    pub message_id: String,
    pub booking_id: String,
    pub kind: String,
    pub to: String,
    /// The whole message with quoted-printable soft line breaks removed.
    pub text: String,
}

/// Every email in `mail_dir`, parsed enough to check it.
pub fn mails(mail_dir: &Path) -> Vec<Mail> {
    read_mail_dir(mail_dir)
        .into_iter()
        .map(|(path, text)| Mail {
            file: path.file_name().unwrap().to_string_lossy().into_owned(),
            message_id: mail_header(&text, "Message-ID").unwrap_or_default(),
            booking_id: mail_header(&text, "X-Boxoffice-Booking-Id").unwrap_or_default(),
            kind: mail_header(&text, "X-Boxoffice-Kind").unwrap_or_default(),
            to: mail_header(&text, "To").unwrap_or_default(),
            text: text.replace("=\r\n", "").replace("=\n", ""),
        })
        .collect()
}

/// The emails of `booking_id`, of `kind`.
pub fn mails_of(all: &[Mail], booking_id: &str, kind: &str) -> Vec<Mail> {
    all.iter()
        .filter(|mail| mail.booking_id == booking_id && mail.kind == kind)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_booking_and_its_cancellation_each_send_one_email() {
    let (app, admin) = spawn_admin_app().await;
    let mut body = crate::helpers::concert_body("Starlight Gala", 86_400, 5);
    body["seat_types"] = json!([
        {"name": "Golden Circle", "price_cents": 25000, "currency": "USD", "capacity": 5}
    ]);
    let concert = app.create_concert(&admin, &body).await;
    let fan = app.register_user("fan.mail@example.com").await;
    let booking = app
        .book_ok(
            &fan.access_token,
            &id_of(&concert),
            &id_of(&concert["seat_types"][0]),
        )
        .await;
    let booking_id = id_of(&booking);
    let mail_dir = app.data_dir().join("mail");

    let confirmed = poll_until(5, "the confirmation email", || async {
        let found = mails_of(&mails(&mail_dir), &booking_id, "booking_confirmed");
        (!found.is_empty()).then_some(found)
    })
    .await;
    let response = app.cancel_booking(&fan.access_token, &booking_id).await;
    assert_eq!(response.status(), StatusCode::OK);
    poll_until(5, "the cancellation email", || async {
        let found = mails_of(&mails(&mail_dir), &booking_id, "booking_cancelled");
        (!found.is_empty()).then_some(())
    })
    .await;
    // Give a duplicate a moment to show up, if the worker were to send one.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let all = mails(&mail_dir);
    assert_eq!(all.len(), 2, "one email each: {all:#?}");
    let confirmed_now = mails_of(&all, &booking_id, "booking_confirmed");
    let cancelled = mails_of(&all, &booking_id, "booking_cancelled");
    assert_eq!(confirmed_now.len(), 1);
    assert_eq!(cancelled.len(), 1);
    assert_eq!(confirmed_now[0].message_id, confirmed[0].message_id);
    for mail in [&confirmed_now[0], &cancelled[0]] {
        assert!(mail.to.contains("fan.mail@example.com"), "To: {}", mail.to);
        for needle in [
            "Starlight Gala",
            "Golden Circle",
            "250.00 USD",
            booking_id.as_str(),
        ] {
            assert!(mail.text.contains(needle), "{needle:?} in {}", mail.text);
        }
        let id = mail
            .message_id
            .strip_prefix('<')
            .and_then(|m| m.strip_suffix("@boxoffice>"))
            .unwrap_or_else(|| panic!("Message-ID {}", mail.message_id));
        uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(mail.file, format!("{id}.eml"), "named by Message-ID");
    }
    assert_ne!(confirmed_now[0].message_id, cancelled[0].message_id);
    // The seat was paid (the simulated provider), and its cancellation refunds it.
    assert!(
        confirmed_now[0].text.contains("Paid:") && confirmed_now[0].text.contains("simulated"),
        "{}",
        confirmed_now[0].text
    );
    assert!(
        cancelled[0].text.contains("Refund:"),
        "{}",
        cancelled[0].text
    );
}

#[tokio::test]
async fn emails_name_the_artist_and_give_the_start_on_the_venues_clocks() {
    let (app, admin) = spawn_admin_app().await;
    let mut body = crate::helpers::concert_body("Fourth of July", 86_400, 5);
    body["artist"] = json!("Brass & Stripes");
    body["time_zone"] = json!("America/New_York");
    // 23:00 UTC is 19:00 in New York, on summer time (EDT).
    body["starts_at"] = json!("2030-07-04T23:00:00Z");
    let concert = app.create_concert(&admin, &body).await;
    assert_eq!(concert["time_zone"], "America/New_York");
    let fan = app.register_user("fan.zone@example.com").await;
    let booking = app
        .book_ok(
            &fan.access_token,
            &id_of(&concert),
            &id_of(&concert["seat_types"][0]),
        )
        .await;
    let booking_id = id_of(&booking);
    let mail_dir = app.data_dir().join("mail");
    let mail = poll_until(5, "the confirmation email", || async {
        mails_of(&mails(&mail_dir), &booking_id, "booking_confirmed")
            .into_iter()
            .next()
    })
    .await;
    for needle in [
        "Artist:            Brass & Stripes",
        "Starts at:         Thursday 4 July 2030, 19:00 EDT (America/New_York)",
        // The calendar file keeps the exact instant, in UTC.
        "DTSTART:20300704T230000Z",
    ] {
        assert!(mail.text.contains(needle), "{needle:?} in {}", mail.text);
    }
}

#[tokio::test]
async fn cancelling_a_concert_emails_every_holder() {
    let (app, admin) = spawn_admin_app().await;
    let concert = app
        .create_concert(
            &admin,
            &crate::helpers::concert_body("Rained Out", 86_400, 10),
        )
        .await;
    let id = id_of(&concert);
    let seat_type = id_of(&concert["seat_types"][0]);
    let users = app.register_users("holder", 3).await;
    let mut bookings = Vec::new();
    for user in &users {
        bookings.push(id_of(
            &app.book_ok(&user.access_token, &id, &seat_type).await,
        ));
    }
    let response = app
        .post_with_token(&format!("/api/v1/concerts/{id}/cancel"), &admin)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mail_dir = app.data_dir().join("mail");

    poll_until(5, "a cancellation email for every holder", || async {
        let all = mails(&mail_dir);
        bookings
            .iter()
            .all(|booking| !mails_of(&all, booking, "booking_cancelled").is_empty())
            .then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let all = mails(&mail_dir);
    for (i, booking) in bookings.iter().enumerate() {
        let cancelled = mails_of(&all, booking, "booking_cancelled");
        assert_eq!(cancelled.len(), 1, "one cancellation for {booking}");
        assert!(
            cancelled[0].to.contains(&format!("holder{i}@example.com")),
            "To: {}",
            cancelled[0].to
        );
        assert!(cancelled[0].text.contains("Rained Out"));
        assert_eq!(mails_of(&all, booking, "booking_confirmed").len(), 1);
    }
    assert_eq!(all.len(), 6, "three confirmations and three cancellations");
}
