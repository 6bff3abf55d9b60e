//! API contract, "Webhooks (v1.1)", across a crash: events are queued in the transaction that
//! causes them, so a `kill -9` while deliveries hang at the receiver loses none. After the
//! restart, with the receiver answering, every confirmed booking arrives (at least once).

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::crash::{ADMIN_EMAIL, ADMIN_PASSWORD, post, serve, wait_until_healthy};
use crate::helpers::{PASSWORD, concert_body, free_port, id_of, poll_until};
use crate::webhooks::{Mode, Receiver};

const BOOKINGS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_with_undelivered_events_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let flags = ["--webhooks-allow-private"];
    let mut server = serve(dir.path(), port, &flags);
    wait_until_healthy(&mut server, &client, &base).await;

    let receiver = Receiver::start(Mode::Hang).await;
    let login = json!({"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    let admin = post(&client, format!("{base}/api/v1/auth/login"), None, &login).await;
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    let subscription = json!({"url": receiver.url, "events": ["booking.confirmed"]});
    let webhook = post(
        &client,
        format!("{base}/api/v1/webhooks"),
        Some(&admin),
        &subscription,
    )
    .await;
    receiver.trust(webhook["secret"].as_str().unwrap());
    let body = concert_body("Hooked crash", 86_400, 100);
    let concert = post(
        &client,
        format!("{base}/api/v1/concerts"),
        Some(&admin),
        &body,
    )
    .await;
    let seat =
        json!({"concert_id": id_of(&concert), "seat_type_id": id_of(&concert["seat_types"][0])});

    let mut booked = HashSet::new();
    for i in 0..BOOKINGS {
        let user = json!({"email": format!("hook{i}@example.com"), "password": PASSWORD, "full_name": "Fan"});
        let session = post(&client, format!("{base}/api/v1/auth/register"), None, &user).await;
        let token = session["access_token"].as_str().unwrap();
        let booking: Value = post(
            &client,
            format!("{base}/api/v1/bookings"),
            Some(token),
            &seat,
        )
        .await;
        booked.insert(id_of(&booking));
    }
    // Some deliveries are in flight, hanging; the rest wait for a free slot.
    poll_until(20, "deliveries hanging at the receiver", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    server.0.kill().await.unwrap();

    receiver.set_mode(Mode::Ok);
    let mut server = serve(dir.path(), port, &flags);
    wait_until_healthy(&mut server, &client, &base).await;
    poll_until(30, "every confirmed booking delivered", || async {
        let ok: HashSet<String> = (receiver.received().into_iter())
            .filter(|got| got.body["type"] == "booking.confirmed")
            .filter_map(|got| got.body["data"]["id"].as_str().map(str::to_owned))
            .collect();
        booked.is_subset(&ok).then_some(())
    })
    .await;
    drop(server);
}
