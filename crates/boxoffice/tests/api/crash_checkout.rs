//! API contract, "Checkout: holds and payment", across a crash: the real binary is killed with
//! SIGKILL while fans pay their holds, and restarted on the same data. Every acknowledged
//! payment is still a completed hold with its confirmed booking, and once the unpaid holds'
//! `expires_at` has passed no seat is held by any of them: the counts add up to the capacity.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::crash::{ADMIN_EMAIL, ADMIN_PASSWORD, post, serve, wait_until_healthy};
use crate::helpers::{PASSWORD, concert_body, free_port, id_of, poll_until};

const CAPACITY: u64 = 60;
const USERS: usize = 90;
/// How many paid holds to wait for before pulling the plug.
const KILL_AFTER: usize = 12;
/// The shortest hold time there is, so that the unpaid holds expire within the test.
const HOLD_TTL: &str = "30";

/// A user's id and access token.
type User = (String, String);

async fn register(client: &reqwest::Client, base: &str) -> Vec<User> {
    let mut registrations = tokio::task::JoinSet::new();
    for i in 0..USERS {
        let client = client.clone();
        let url = format!("{base}/api/v1/auth/register");
        registrations.spawn(async move {
            let body = json!({"email": format!("payer{i}@example.com"), "password": PASSWORD, "full_name": "Fan"});
            let session = post(&client, url, None, &body).await;
            (
                session["user"]["id"].as_str().unwrap().to_owned(),
                session["access_token"].as_str().unwrap().to_owned(),
            )
        });
    }
    registrations.join_all().await
}

/// Every user asks for a hold at once; the holds made, by user.
async fn hold_storm(
    client: &reqwest::Client,
    base: &str,
    users: &[User],
    body: &Value,
) -> Vec<(User, Value)> {
    let mut storm = tokio::task::JoinSet::new();
    for user in users.iter().cloned() {
        let (client, url, body) = (client.clone(), format!("{base}/api/v1/holds"), body.clone());
        storm.spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(&user.1)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let answer: Value = response.json().await.unwrap();
            match status {
                StatusCode::CREATED => Some((user, answer)),
                StatusCode::CONFLICT => {
                    assert_eq!(answer["code"], "sold_out", "{answer}");
                    None
                }
                other => panic!("hold answered {other}: {answer}"),
            }
        });
    }
    storm.join_all().await.into_iter().flatten().collect()
}

/// Two holders in three pay at once (the third never does); after `KILL_AFTER` payments are
/// acknowledged the server is killed. Returns every acknowledged payment: (user, paid hold).
async fn pay_storm_with_kill(
    client: &reqwest::Client,
    base: &str,
    holds: &[(User, Value)],
    kill: impl AsyncFnOnce(),
) -> Vec<(User, Value)> {
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let mut storm = tokio::task::JoinSet::new();
    for (user, hold) in holds.iter().filter(|(_, hold)| pays(hold)).cloned() {
        let url = format!("{base}/api/v1/holds/{}/pay", id_of(&hold));
        let (client, acks_tx) = (client.clone(), acks_tx.clone());
        storm.spawn(async move {
            let body = json!({"payment_method": "pm_card_visa"});
            let Ok(response) = client
                .post(url)
                .bearer_auth(&user.1)
                .json(&body)
                .send()
                .await
            else {
                return;
            };
            if response.status() == StatusCode::OK
                && let Ok(paid) = response.json::<Value>().await
            {
                let _ = acks_tx.send((user, paid));
            }
        });
    }
    drop(acks_tx);
    let mut acknowledged = Vec::new();
    let mut kill = Some(kill);
    while let Some(ack) = acks.recv().await {
        acknowledged.push(ack);
        if acknowledged.len() == KILL_AFTER
            && let Some(kill) = kill.take()
        {
            kill().await;
        }
    }
    storm.join_all().await;
    acknowledged
}

/// Whether the storm pays this hold: two in three, chosen by the hold's id.
fn pays(hold: &Value) -> bool {
    let id = uuid::Uuid::parse_str(&id_of(hold)).unwrap();
    !id.as_u128().is_multiple_of(3)
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> Value {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_while_fans_pay_loses_no_paid_hold_and_leaves_no_seat_held_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let flags = ["--hold-ttl", HOLD_TTL];
    let mut server = serve(dir.path(), port, &flags);
    wait_until_healthy(&mut server, &client, &base).await;

    let login = json!({"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    let admin = post(&client, format!("{base}/api/v1/auth/login"), None, &login).await;
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    let body = concert_body("Checkout storm", 86_400, CAPACITY);
    let concert = post(
        &client,
        format!("{base}/api/v1/concerts"),
        Some(&admin),
        &body,
    )
    .await;
    let concert_id = id_of(&concert);
    let seat = json!({"concert_id": concert_id, "seat_type_id": id_of(&concert["seat_types"][0])});

    let users = register(&client, &base).await;
    let holds = hold_storm(&client, &base, &users, &seat).await;
    assert_eq!(holds.len() as u64, CAPACITY, "every seat held, none twice");
    let paid = pay_storm_with_kill(&client, &base, &holds, async || {
        server.0.kill().await.unwrap();
    })
    .await;
    eprintln!(
        "checkout crash test: {} payments acknowledged before the kill",
        paid.len()
    );
    assert!(paid.len() >= KILL_AFTER);

    let mut server = serve(dir.path(), port, &flags);
    wait_until_healthy(&mut server, &client, &base).await;
    for ((_, token), hold) in &paid {
        assert_eq!(hold["status"], "completed", "{hold}");
        let stored = get(
            &client,
            format!("{base}/api/v1/holds/{}", id_of(hold)),
            token,
        )
        .await;
        assert_eq!(stored["status"], "completed", "acknowledged {hold}");
        assert_eq!(stored["booking_id"], hold["booking_id"]);
        let booking_id = hold["booking_id"].as_str().unwrap();
        let booking = get(
            &client,
            format!("{base}/api/v1/bookings/{booking_id}"),
            token,
        )
        .await;
        assert_eq!(booking["status"], "confirmed", "{booking}");
        assert_eq!(booking["payment"]["status"], "succeeded", "{booking}");
    }

    // Once every unpaid hold's expires_at has passed, nothing is held: each hold is either
    // completed (one booking) or expired (its seat back), and the counts add up.
    let last_expiry = holds
        .iter()
        .map(|(_, hold)| {
            OffsetDateTime::parse(hold["expires_at"].as_str().unwrap(), &Rfc3339).unwrap()
        })
        .max()
        .unwrap();
    let wait = last_expiry - OffsetDateTime::now_utc() + time::Duration::milliseconds(200);
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for ((_, token), hold) in &holds {
        let stored = get(
            &client,
            format!("{base}/api/v1/holds/{}", id_of(hold)),
            token,
        )
        .await;
        let status = stored["status"].as_str().unwrap().to_owned();
        assert!(status == "completed" || status == "expired", "{stored}");
        *statuses.entry(status).or_default() += 1;
    }
    let completed = statuses.get("completed").copied().unwrap_or(0) as u64;
    assert!(completed >= paid.len() as u64);
    let sales = poll_until(10, "the expired holds' seats back", || async {
        let url = format!("{base}/api/v1/concerts/{concert_id}/sales");
        let sales = get(&client, url, &admin).await;
        (sales["seat_types"][0]["held"] == 0).then_some(sales)
    })
    .await;
    let line = &sales["seat_types"][0];
    assert_eq!(line["sold"], completed, "{sales}");
    assert_eq!(line["remaining"], CAPACITY - completed, "{sales}");
    assert_eq!(sales["bookings_confirmed"], completed, "{sales}");
    let availability = client
        .get(format!("{base}/api/v1/concerts/{concert_id}/availability"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        availability["seat_types"][0]["remaining"],
        CAPACITY - completed
    );
    eprintln!("checkout crash test: {statuses:?} after the restart and expiry");
    server.0.kill().await.unwrap();
}
