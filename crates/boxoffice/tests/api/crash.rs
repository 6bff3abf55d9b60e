//! API contract, "Bookings" (a 201 is durable) and "Email" (never lost across restarts): the
//! real binary is killed with SIGKILL in the middle of a booking storm and restarted on the same
//! data directory. Every acknowledged booking must still be there, the counts must add up, no
//! user may hold two bookings, and every confirmed booking gets exactly one confirmation email.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Child;

use crate::admin::boxoffice_command;
use crate::emails::{mails, mails_of};
use crate::helpers::{PASSWORD, concert_body, free_port, id_of, poll_until};

pub const JWT_SECRET: &str = "crash-test-secret-0123456789-abcdefghijk";
pub const ADMIN_EMAIL: &str = "crash.admin@example.com";
pub const ADMIN_PASSWORD: &str = "crash admin password";
const CAPACITY: u64 = 150;
const USERS: usize = 200;
/// How many 201s to wait for before pulling the plug.
const KILL_AFTER: usize = 30;

/// Kills the child when dropped, so a failing test leaves no server behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// `boxoffice serve` on `port` with the data in `data_dir`.
pub fn serve(data_dir: &Path, port: u16, extra: &[&str]) -> ChildGuard {
    let child = boxoffice_command()
        .args(["serve", "--rate-limit", "off", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("BOXOFFICE_JWT_SECRET", JWT_SECRET)
        .env("BOXOFFICE_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("BOXOFFICE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

pub async fn wait_until_healthy(guard: &mut ChildGuard, client: &reqwest::Client, base: &str) {
    // Start-up includes migrations, hence the patience.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            panic!("boxoffice exited early with {status}");
        }
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            assert_eq!(response.status(), StatusCode::OK);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "boxoffice did not answer /healthz at {base}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The storm: every user posts `body` to `url` at the same moment; after `kill_after` 201s,
/// `kill` runs. Returns every 201 received as (user id, booking) — those whose answer had fully
/// arrived after the kill too, for they are acknowledgements as well.
pub async fn storm_with_kill(
    client: &reqwest::Client,
    url: &str,
    users: &[(String, String)],
    body: &Value,
    kill_after: usize,
    kill: impl AsyncFnOnce(),
) -> Vec<(String, Value)> {
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(users.len()));
    let mut storm = tokio::task::JoinSet::new();
    for (user_id, token) in users.iter().cloned() {
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
        let (acks_tx, barrier) = (acks_tx.clone(), barrier.clone());
        storm.spawn(async move {
            barrier.wait().await;
            let Ok(response) = client
                .post(url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
            else {
                return;
            };
            if response.status() == StatusCode::CREATED
                && let Ok(booking) = response.json::<Value>().await
            {
                let _ = acks_tx.send((user_id, booking));
            }
        });
    }
    drop(acks_tx);
    let mut acknowledged: Vec<(String, Value)> = Vec::new();
    let mut kill = Some(kill);
    while let Some(ack) = acks.recv().await {
        acknowledged.push(ack);
        if acknowledged.len() == kill_after
            && let Some(kill) = kill.take()
        {
            kill().await;
        }
    }
    storm.join_all().await;
    acknowledged
}

pub async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: &Value,
) -> Value {
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_a_booking_storm_loses_no_acknowledged_booking_or_email() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = serve(dir.path(), port, &[]);
    wait_until_healthy(&mut server, &client, &base).await;

    let login = json!({"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    let admin = post(&client, format!("{base}/api/v1/auth/login"), None, &login).await;
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    let concert = post(
        &client,
        format!("{base}/api/v1/concerts"),
        Some(&admin),
        &concert_body("Storm", 86_400, CAPACITY),
    )
    .await;
    let concert_id = id_of(&concert);
    let seat_type = id_of(&concert["seat_types"][0]);

    let mut registrations = tokio::task::JoinSet::new();
    for i in 0..USERS {
        let client = client.clone();
        let url = format!("{base}/api/v1/auth/register");
        registrations.spawn(async move {
            let body = json!({"email": format!("storm{i}@example.com"), "password": PASSWORD, "full_name": "Fan"});
            let session = post(&client, url, None, &body).await;
            (
                session["user"]["id"].as_str().unwrap().to_owned(),
                session["access_token"].as_str().unwrap().to_owned(),
            )
        });
    }
    let users: Vec<(String, String)> = registrations.join_all().await;
    let tokens: HashMap<String, String> = users.iter().cloned().collect();

    let body = json!({"concert_id": concert_id, "seat_type_id": seat_type});
    let url = format!("{base}/api/v1/bookings");
    let acknowledged = storm_with_kill(&client, &url, &users, &body, KILL_AFTER, async || {
        server.0.kill().await.unwrap();
    })
    .await;
    eprintln!(
        "crash test: {} bookings acknowledged before the kill",
        acknowledged.len()
    );
    assert!(acknowledged.len() >= KILL_AFTER);

    let mut server = serve(dir.path(), port, &[]);
    wait_until_healthy(&mut server, &client, &base).await;

    for (user_id, booking) in &acknowledged {
        assert_eq!(booking["user_id"], user_id.as_str());
        let response = client
            .get(format!("{base}/api/v1/bookings/{}", id_of(booking)))
            .bearer_auth(&tokens[user_id])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "acknowledged {booking}");
        let stored: Value = response.json().await.unwrap();
        assert_eq!(stored["status"], "confirmed", "{stored}");
        assert_eq!(stored["id"], booking["id"]);
    }

    // Every user's confirmed bookings, as each user sees them.
    let mut confirmed: Vec<String> = Vec::new();
    for (user_id, token) in &users {
        let response = client
            .get(format!("{base}/api/v1/bookings?status=confirmed&limit=100"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(
            items.len() <= 1,
            "user {user_id} holds {} bookings",
            items.len()
        );
        confirmed.extend(items.iter().map(id_of));
    }
    let acknowledged_ids: HashSet<String> = acknowledged
        .iter()
        .map(|(_, booking)| id_of(booking))
        .collect();
    assert!(acknowledged_ids.iter().all(|id| confirmed.contains(id)));
    eprintln!(
        "crash test: {} confirmed bookings after the restart",
        confirmed.len()
    );

    let response = client
        .get(format!("{base}/api/v1/concerts/{concert_id}/sales"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let sales: Value = response.json().await.unwrap();
    let line = &sales["seat_types"][0];
    let sold = line["sold"].as_u64().unwrap();
    let remaining = line["remaining"].as_u64().unwrap();
    assert_eq!(sold + remaining, CAPACITY, "{sales}");
    assert_eq!(sold as usize, confirmed.len(), "{sales}");
    assert_eq!(sales["bookings_confirmed"], confirmed.len(), "{sales}");
    let response = client
        .get(format!("{base}/api/v1/concerts/{concert_id}/availability"))
        .send()
        .await
        .unwrap();
    let availability: Value = response.json().await.unwrap();
    assert_eq!(availability["seat_types"][0]["remaining"], remaining);

    // Exactly one confirmation email per confirmed booking, once the worker has caught up.
    let mail_dir = dir.path().join("mail");
    poll_until(
        15,
        "a confirmation email for every confirmed booking",
        || async {
            let all = mails(&mail_dir);
            confirmed
                .iter()
                .all(|booking| !mails_of(&all, booking, "booking_confirmed").is_empty())
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = mails(&mail_dir);
    let mut per_booking: HashMap<(String, String), usize> = HashMap::new();
    let mut message_ids = HashSet::new();
    for mail in &all {
        assert!(
            !mail.booking_id.is_empty(),
            "a whole email in {}",
            mail.file
        );
        assert!(
            message_ids.insert(mail.message_id.clone()),
            "Message-ID {} twice",
            mail.message_id
        );
        *per_booking
            .entry((mail.booking_id.clone(), mail.kind.clone()))
            .or_default() += 1;
    }
    for ((booking, kind), count) in &per_booking {
        assert_eq!(*count, 1, "{count} `{kind}` emails for booking {booking}");
        assert_eq!(kind, "booking_confirmed", "only confirmations were due");
        assert!(
            confirmed.contains(booking),
            "an email for unconfirmed {booking}"
        );
    }
    assert_eq!(all.len(), confirmed.len());

    server.0.kill().await.unwrap();
}
