//! Two boxoffice instances on one PostgreSQL database, each with its own booking writer, view and
//! email worker: requests spread over both must never oversell or double-book, each instance's
//! view must follow the other's commits, and every confirmation email must go out exactly once.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::emails::mails;
use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, concert_body, database_url, id_of, poll_until,
    spawn_app_with,
};

/// Two servers on this test's database (separate data and mail directories, one ticket key, as
/// a split deployment's Booking instances share it); `None` (the test is skipped, as
/// `database_url` has said) without a PostgreSQL server.
async fn two_instances() -> Option<(TestApp, TestApp, String)> {
    database_url()?;
    let admin = || {
        Some(boxoffice::app::AccountSpec {
            email: ADMIN_EMAIL.to_owned(),
            password: secrecy::SecretString::from(ADMIN_PASSWORD.to_owned()),
        })
    };
    let a = spawn_app_with(|config| config.admin = admin()).await;
    let ticket_key = a
        .data_dir()
        .join(boxoffice_booking::ticket::GENERATED_TICKET_KEY_FILE);
    let b = spawn_app_with(|config| {
        config.admin = admin();
        config.ticket_key_file = Some(ticket_key);
    })
    .await;
    let token = a.admin_token().await;
    Some((a, b, token))
}

async fn book(app: &TestApp, token: &str, concert: &str, seat_type: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/api/v1/bookings"))
        .bearer_auth(token)
        .json(&json!({"concert_id": concert, "seat_type_id": seat_type}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_racing_through_two_instances_get_exactly_the_capacity() {
    let Some((a, b, admin)) = two_instances().await else {
        return;
    };
    let concert = a
        .create_concert(&admin, &concert_body("Two doors", 3600, 10))
        .await;
    let (concert, seat_type) = (id_of(&concert), id_of(&concert["seat_types"][0]));
    let users = a.register_users("racer", 120).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let barrier = Arc::new(Barrier::new(users.len()));
    let mut racers = Vec::new();
    for (index, user) in users.into_iter().enumerate() {
        let app = if index % 2 == 0 { a.clone() } else { b.clone() };
        let (barrier, concert, seat_type) = (barrier.clone(), concert.clone(), seat_type.clone());
        racers.push(tokio::spawn(async move {
            barrier.wait().await;
            book(&app, &user.access_token, &concert, &seat_type).await
        }));
    }
    let mut created = Vec::new();
    let mut refused = 0;
    for racer in racers {
        let (status, body) = racer.await.unwrap();
        match status {
            StatusCode::CREATED => created.push(body["id"].as_str().unwrap().to_owned()),
            StatusCode::CONFLICT => {
                assert_eq!(body["code"], "sold_out", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created.len(), 10, "exactly the capacity is sold");
    assert_eq!(refused, 110);
    for app in [&a, &b] {
        let remaining = poll_until(10, "the view to follow the other instance", || async {
            let left = app.remaining(&concert, &seat_type).await;
            (left == 0).then_some(left)
        })
        .await;
        assert_eq!(remaining, 0);
    }
    // Each confirmation goes out once, by whichever instance's worker claimed it.
    let all = poll_until(20, "ten confirmation emails", || async {
        let mut all = mails(&a.data_dir().join("mail"));
        all.extend(mails(&b.data_dir().join("mail")));
        (all.len() >= 10).then_some(all)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut all_again = mails(&a.data_dir().join("mail"));
    all_again.extend(mails(&b.data_dir().join("mail")));
    assert_eq!(all_again.len(), all.len(), "no email is sent twice");
    let mut booked: Vec<&str> = all.iter().map(|mail| mail.booking_id.as_str()).collect();
    booked.sort_unstable();
    let mut expected: Vec<&str> = created.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(booked, expected, "one email per booking");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_burst_through_two_instances_makes_one_booking() {
    let Some((a, b, admin)) = two_instances().await else {
        return;
    };
    let concert = a
        .create_concert(&admin, &concert_body("Burst", 3600, 50))
        .await;
    let (concert, seat_type) = (id_of(&concert), id_of(&concert["seat_types"][0]));
    let fan = a.register_user("burst@example.com").await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let barrier = Arc::new(Barrier::new(30));
    let mut attempts = Vec::new();
    for index in 0..30 {
        let app = if index % 2 == 0 { a.clone() } else { b.clone() };
        let (barrier, concert, seat_type, token) = (
            barrier.clone(),
            concert.clone(),
            seat_type.clone(),
            fan.access_token.clone(),
        );
        attempts.push(tokio::spawn(async move {
            barrier.wait().await;
            book(&app, &token, &concert, &seat_type).await
        }));
    }
    let mut created = 0;
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert_eq!(body["code"], "already_booked", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 1, "one booking per user and concert");
    for app in [&a, &b] {
        poll_until(10, "both views to show one seat taken", || async {
            (app.remaining(&concert, &seat_type).await == 49).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_cancellation_through_one_instance_frees_the_seat_for_the_other() {
    let Some((a, b, admin)) = two_instances().await else {
        return;
    };
    let concert = a
        .create_concert(&admin, &concert_body("Swap", 3600, 1))
        .await;
    let (concert, seat_type) = (id_of(&concert), id_of(&concert["seat_types"][0]));
    let first = a.register_user("first@example.com").await;
    let second = a.register_user("second@example.com").await;
    let (status, booking) = book(&a, &first.access_token, &concert, &seat_type).await;
    assert_eq!(status, StatusCode::CREATED);
    poll_until(10, "instance b to see the seat taken", || async {
        (b.remaining(&concert, &seat_type).await == 0).then_some(())
    })
    .await;
    let (status, body) = book(&b, &second.access_token, &concert, &seat_type).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "sold_out");

    let response = b
        .cancel_booking(&first.access_token, &id_of(&booking))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    poll_until(10, "instance a to see the seat back", || async {
        (a.remaining(&concert, &seat_type).await == 1).then_some(())
    })
    .await;
    let (status, body) = book(&a, &second.access_token, &concert, &seat_type).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_logout_through_one_instance_is_refused_by_the_other() {
    let Some((a, b, _)) = two_instances().await else {
        return;
    };
    let fan = a.register_user("leaving@example.com").await;
    assert_eq!(b.me(&fan.access_token).await.status(), StatusCode::OK);
    assert_eq!(
        a.logout(&fan.access_token).await.status(),
        StatusCode::NO_CONTENT
    );
    poll_until(10, "instance b to refuse the logged-out token", || async {
        (b.me(&fan.access_token).await.status() == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    let response = b.refresh(&fan.refresh_token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doors_on_two_instances_scanning_one_ticket_at_once_admit_it_exactly_once() {
    let Some((a, b, admin)) = two_instances().await else {
        return;
    };
    let concert = a
        .create_concert(&admin, &concert_body("Two halls", 3600, 10))
        .await;
    let (concert, seat_type) = (id_of(&concert), id_of(&concert["seat_types"][0]));
    let fan = a.register_user("twohalls@example.com").await;
    let booking = id_of(&a.book_ok(&fan.access_token, &concert, &seat_type).await);
    // The ticket reads alike on both instances: one key signs for the deployment.
    let code = a.ticket(&fan.access_token, &booking).await["code"].clone();
    poll_until(5, "the other instance to know the concert", || async {
        let response = b
            .get_with_token(&format!("/api/v1/concerts/{concert}/checkins"), &admin)
            .await;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(b.ticket(&fan.access_token, &booking).await["code"], code);
    let code = code.as_str().unwrap().to_owned();

    let (a, b) = (Arc::new(a), Arc::new(b));
    let start = Arc::new(Barrier::new(20));
    let scans: Vec<_> = (0..20)
        .map(|door| {
            let app = if door % 2 == 0 { a.clone() } else { b.clone() };
            let (start, admin, concert, code) =
                (start.clone(), admin.clone(), concert.clone(), code.clone());
            tokio::spawn(async move {
                start.wait().await;
                let nonce = format!("hall-door-{door}");
                let response = app.scan(&admin, &concert, &code, Some(&nonce)).await;
                (response.status(), response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for scan in scans {
        let (status, body) = scan.await.unwrap();
        match status {
            StatusCode::CREATED => admitted.push(body),
            StatusCode::CONFLICT if body["code"] == "already_checked_in" => refused.push(body),
            other => panic!("a scan answered {other}: {body}"),
        }
    }
    assert_eq!(admitted.len(), 1, "one admission in all: {admitted:?}");
    assert_eq!(refused.len(), 19);
    for problem in &refused {
        assert_eq!(problem["checked_in_at"], admitted[0]["checked_in_at"]);
    }
}
