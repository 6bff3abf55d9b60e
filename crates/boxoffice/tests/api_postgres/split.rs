//! The split deployment, black-box: the real binary started as separate processes — auth,
//! catalog, notifications, two booking instances and the gateway — on one PostgreSQL database,
//! exactly as `deploy/local-cluster.sh` starts them, and every request sent through the gateway.
//! Tokens are signed by auth alone; the other services hold the public key only.
//!
//! - the booking guarantees hold across the two booking instances: a capacity race, a same-user
//!   burst and a cancel race, with one email per booking; a logout is refused by both instances
//!   at once; internal routes are not reachable through the gateway;
//! - the availability stream, held by one booking instance, follows the other's commits;
//! - the gateway serves the whole deployment's OpenAPI document and `/docs`;
//! - a booking instance killed with SIGKILL mid-storm loses no acknowledged booking, and the
//!   other instance carries on;
//! - `boxoffice loadtest --scenario onsale` against the gateway passes its verdict;
//! - a waiting room through the gateway: places taken on either instance are one queue, a
//!   booking instance killed after the joins loses no place and no admission, admissions given
//!   by one instance are taken by the other; `--scenario waitingroom` passes its verdict.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_loadtest::{self as loadtest, LoadtestArgs, Verdict};
use clap::Parser;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::Child;
use tokio::sync::Barrier;

use crate::admin::boxoffice_command;
use crate::concerts::EventStream;
use crate::crash::storm_with_kill;
use crate::emails::{mails, mails_of};
use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, concert_body, database_url, free_port, id_of,
    poll_until, rfc3339_in,
};

const SERVICE_TOKEN: &str = "split-test-service-token-0123456789abcdef";

/// One process of the deployment.
pub struct Process {
    pub name: &'static str,
    pub child: Child,
    pub base: String,
}

/// A split deployment on this test's database, in a temporary directory.
pub struct Cluster {
    dir: TempDir,
    processes: Vec<Process>,
    /// The gateway's root: the only address clients use.
    pub base: String,
    pub client: reqwest::Client,
}

impl Cluster {
    /// Starts the deployment and waits until every process is ready; `None` (the test is skipped,
    /// as `database_url` has said) without a PostgreSQL server.
    pub async fn start() -> Option<Cluster> {
        database_url()?;
        let dir = tempfile::tempdir().unwrap();
        let private_key = dir.path().join("jwt.pem");
        let public_key = dir.path().join("jwt.pub.pem");
        boxoffice_shared::keys::write_key_pair(&private_key, &public_key).unwrap();
        let ticket_key = dir.path().join("ticket.pem");
        boxoffice_shared::keys::write_key_pair(&ticket_key, &dir.path().join("ticket.pub.pem"))
            .unwrap();
        let tickets = format!("--ticket-key-file={}", ticket_key.display());
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let ports: HashMap<&str, u16> = [
            "auth",
            "booking-1",
            "booking-2",
            "catalog",
            "notifications",
            "gateway",
        ]
        .into_iter()
        .map(|name| (name, free_port()))
        .collect();
        let auth_url = url(ports["auth"]);
        let booking_urls = format!("{},{}", url(ports["booking-1"]), url(ports["booking-2"]));
        let public = public_key.to_str().unwrap().to_owned();
        let plan: Vec<(&'static str, Vec<String>)> = vec![
            (
                "auth",
                vec![
                    "--service=auth".into(),
                    format!("--jwt-key-file={}", private_key.display()),
                    "--trusted-proxies=127.0.0.1".into(),
                    "--load-test-accounts=on".into(),
                ],
            ),
            (
                "booking-1",
                vec![
                    "--service=booking".into(),
                    format!("--jwt-public-key-file={public}"),
                    format!("--auth-url={auth_url}"),
                    format!("--advertise-url={}", url(ports["booking-1"])),
                    tickets.clone(),
                ],
            ),
            (
                "booking-2",
                vec![
                    "--service=booking".into(),
                    format!("--jwt-public-key-file={public}"),
                    format!("--auth-url={auth_url}"),
                    format!("--advertise-url={}", url(ports["booking-2"])),
                    tickets,
                ],
            ),
            (
                "catalog",
                vec![
                    "--service=catalog".into(),
                    format!("--jwt-public-key-file={public}"),
                    format!("--auth-url={auth_url}"),
                    format!("--booking-url={booking_urls}"),
                ],
            ),
            (
                "notifications",
                vec![
                    "--service=notifications".into(),
                    format!("--auth-url={auth_url}"),
                    format!("--booking-url={booking_urls}"),
                    format!("--mail-dir={}", dir.path().join("mail").display()),
                ],
            ),
            (
                "gateway",
                vec![
                    "--service=gateway".into(),
                    format!("--jwt-public-key-file={public}"),
                    format!("--auth-url={auth_url}"),
                    format!("--catalog-url={}", url(ports["catalog"])),
                    format!("--booking-url={booking_urls}"),
                ],
            ),
        ];
        let client = reqwest::Client::new();
        let mut processes = Vec::new();
        for (name, args) in plan {
            let process = spawn(name, dir.path(), ports[name], &args);
            processes.push(process);
        }
        let mut cluster = Cluster {
            base: url(ports["gateway"]),
            dir,
            processes,
            client,
        };
        for index in 0..cluster.processes.len() {
            cluster.wait_ready(index).await;
        }
        Some(cluster)
    }

    /// Waits until the process answers `/readyz` with 200 (every check passed: its store, and
    /// for a service without auth, the revoked sessions read from auth).
    async fn wait_ready(&mut self, index: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let process = &mut self.processes[index];
        loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!("{} exited early with {status}", process.name);
            }
            let ready = self
                .client
                .get(format!("{}/readyz", process.base))
                .send()
                .await;
            if ready.is_ok_and(|response| response.status() == StatusCode::OK) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not become ready at {}",
                process.name,
                process.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn process(&mut self, name: &str) -> &mut Process {
        self.processes
            .iter_mut()
            .find(|process| process.name == name)
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_token(&self) -> String {
        let login = json!({"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
        let (status, body) = self.post("/api/v1/auth/login", None, &login).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// `count` new users: (user id, access token).
    pub async fn register(&self, prefix: &str, count: usize) -> Vec<(String, String)> {
        let mut registrations = tokio::task::JoinSet::new();
        for i in 0..count {
            let (client, url) = (self.client.clone(), self.url("/api/v1/auth/register"));
            let body = json!({"email": format!("{prefix}{i}@example.com"), "password": PASSWORD, "full_name": "Fan"});
            registrations.spawn(async move {
                let response = client.post(url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                let session: Value = response.json().await.unwrap();
                (
                    session["user"]["id"].as_str().unwrap().to_owned(),
                    session["access_token"].as_str().unwrap().to_owned(),
                )
            });
        }
        registrations.join_all().await
    }

    /// A concert through the gateway: (concert id, seat type id).
    pub async fn concert(&self, admin: &str, name: &str, capacity: u64) -> (String, String) {
        let (status, concert) = self
            .post(
                "/api/v1/concerts",
                Some(admin),
                &concert_body(name, 86_400, capacity),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{concert}");
        (id_of(&concert), id_of(&concert["seat_types"][0]))
    }

    /// `sold + remaining == capacity` and `sold == confirmed`, per the sales report, and the
    /// public availability agrees; returns `sold`.
    pub async fn assert_counts(&self, admin: &str, concert: &str, capacity: u64) -> u64 {
        let (status, sales) = self
            .get(&format!("/api/v1/concerts/{concert}/sales"), Some(admin))
            .await;
        assert_eq!(status, StatusCode::OK, "{sales}");
        let line = &sales["seat_types"][0];
        let (sold, remaining) = (
            line["sold"].as_u64().unwrap(),
            line["remaining"].as_u64().unwrap(),
        );
        assert_eq!(sold + remaining, capacity, "{sales}");
        assert_eq!(sales["bookings_confirmed"], sold, "{sales}");
        // Both booking instances answer the availability read (round-robin): both must agree,
        // once each has followed the other's last commits (within ~25 ms).
        let path = format!("/api/v1/concerts/{concert}/availability");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut agreeing = 0;
        while agreeing < 4 {
            let (_, availability) = self.get(&path, None).await;
            match availability["seat_types"][0]["remaining"] == remaining {
                true => agreeing += 1,
                false => agreeing = 0,
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{availability}: remaining {remaining}"
            );
        }
        sold
    }
}

impl Cluster {
    /// After a storm: every acknowledged booking (user id, booking) reads back confirmed, no
    /// user in `users` (id, token) holds two, and the counts agree with what they hold; returns
    /// the confirmed bookings.
    pub async fn assert_storm_kept(
        &self,
        admin: &str,
        concert: &str,
        capacity: u64,
        users: &[(String, String)],
        acknowledged: &[(String, Value)],
    ) -> u64 {
        let tokens: HashMap<&String, &String> =
            users.iter().map(|(id, token)| (id, token)).collect();
        for (user_id, booking) in acknowledged {
            let (status, stored) = self
                .get(
                    &format!("/api/v1/bookings/{}", id_of(booking)),
                    Some(tokens[user_id]),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "acknowledged {booking}");
            assert_eq!(stored["status"], "confirmed", "{stored}");
        }
        let mut confirmed = 0u64;
        for (user_id, token) in users {
            let (status, page) = self
                .get("/api/v1/bookings?status=confirmed&limit=100", Some(token))
                .await;
            assert_eq!(status, StatusCode::OK);
            let held = page["items"].as_array().unwrap().len();
            assert!(held <= 1, "user {user_id} holds {held} bookings");
            confirmed += held as u64;
        }
        assert!(confirmed >= acknowledged.len() as u64);
        assert_eq!(
            self.assert_counts(admin, concert, capacity).await,
            confirmed
        );
        confirmed
    }
}

/// `boxoffice serve` with `args`, listening on `port`, keeping its data in `<dir>/<name>`.
fn spawn(name: &'static str, dir: &Path, port: u16, args: &[String]) -> Process {
    let child = boxoffice_command()
        .arg("serve")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--data-dir={}", dir.join(name).display()))
        .arg("--rate-limit=off")
        .args(args)
        .env("BOXOFFICE_SERVICE_TOKEN", SERVICE_TOKEN)
        .env("BOXOFFICE_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("BOXOFFICE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Process {
        name,
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

pub async fn book(
    cluster: &Cluster,
    token: &str,
    concert: &str,
    seat_type: &str,
) -> (StatusCode, Value) {
    let body = json!({"concert_id": concert, "seat_type_id": seat_type});
    cluster.post("/api/v1/bookings", Some(token), &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_booking_guarantees_hold_across_two_booking_instances_behind_the_gateway() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let cluster = Arc::new(cluster);
    let admin = cluster.admin_token().await;

    // The race: 120 users, 10 seats, all at once, spread over both instances by the gateway.
    let (concert, seat_type) = cluster.concert(&admin, "Two doors", 10).await;
    let users = cluster.register("racer", 120).await;
    let barrier = Arc::new(Barrier::new(users.len()));
    let mut racers = Vec::new();
    for (_, token) in users.clone() {
        let (cluster, barrier) = (cluster.clone(), barrier.clone());
        let (concert, seat_type) = (concert.clone(), seat_type.clone());
        racers.push(tokio::spawn(async move {
            barrier.wait().await;
            book(&cluster, &token, &concert, &seat_type).await
        }));
    }
    let mut created = Vec::new();
    for racer in racers {
        let (status, body) = racer.await.unwrap();
        match status {
            StatusCode::CREATED => created.push(id_of(&body)),
            StatusCode::CONFLICT => assert_eq!(body["code"], "sold_out", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created.len(), 10, "exactly the capacity is sold");
    assert_eq!(cluster.assert_counts(&admin, &concert, 10).await, 10);

    // The same-user burst: one user, 20 simultaneous attempts, exactly one booking.
    let (burst_concert, burst_seat) = cluster.concert(&admin, "One each", 50).await;
    let (_, burster) = users[0].clone();
    let barrier = Arc::new(Barrier::new(20));
    let mut attempts = Vec::new();
    for _ in 0..20 {
        let (cluster, barrier, token) = (cluster.clone(), barrier.clone(), burster.clone());
        let (concert, seat_type) = (burst_concert.clone(), burst_seat.clone());
        attempts.push(tokio::spawn(async move {
            barrier.wait().await;
            book(&cluster, &token, &concert, &seat_type).await
        }));
    }
    let mut statuses = Vec::new();
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        if status == StatusCode::CONFLICT {
            assert_eq!(body["code"], "already_booked", "{body}");
        }
        statuses.push(status);
    }
    let booked = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(booked, 1, "{statuses:?}");
    assert_eq!(cluster.assert_counts(&admin, &burst_concert, 50).await, 1);

    // The cancel race: one booking cancelled 10 times at once, through both instances. One
    // cancel wins, the seat comes back exactly once.
    let (_, holder) = users[1].clone();
    let (status, booking) = book(&cluster, &holder, &burst_concert, &burst_seat).await;
    assert_eq!(status, StatusCode::CREATED, "{booking}");
    let cancel = format!("/api/v1/bookings/{}/cancel", id_of(&booking));
    let barrier = Arc::new(Barrier::new(10));
    let mut cancels = Vec::new();
    for _ in 0..10 {
        let (cluster, barrier, token, cancel) = (
            cluster.clone(),
            barrier.clone(),
            holder.clone(),
            cancel.clone(),
        );
        cancels.push(tokio::spawn(async move {
            barrier.wait().await;
            cluster.post(&cancel, Some(&token), &json!({})).await
        }));
    }
    let mut cancelled = 0;
    for cancel in cancels {
        let (status, body) = cancel.await.unwrap();
        match status {
            StatusCode::OK => cancelled += 1,
            StatusCode::CONFLICT => assert_eq!(body["code"], "already_cancelled", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(cancelled, 1);
    assert_eq!(cluster.assert_counts(&admin, &burst_concert, 50).await, 1);

    // A logout through the gateway is refused at once by every booking instance (the gateway
    // alternates between them).
    let (_, leaver) = users[2].clone();
    let (status, _) = cluster.get("/api/v1/bookings", Some(&leaver)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = cluster
        .post("/api/v1/auth/logout", Some(&leaver), &json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The notice travels through PostgreSQL as the logout commits; allow it a moment to land.
    poll_until(10, "both booking instances to refuse the token", || async {
        let mut refused = 0;
        for _ in 0..4 {
            let (status, _) = cluster.get("/api/v1/bookings", Some(&leaver)).await;
            refused += usize::from(status == StatusCode::UNAUTHORIZED);
        }
        (refused == 4).then_some(())
    })
    .await;
    let (status, _) = cluster.get("/api/v1/bookings", Some(&users[3].1)).await;
    assert_eq!(status, StatusCode::OK, "other sessions are untouched");

    // The internal routes exist on the services, but not through the gateway.
    let internal = format!("/internal/v1/users/{}/contact", users[0].0);
    let (status, body) = cluster.get(&internal, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let direct = cluster
        .client
        .get(format!("{}{internal}", cluster.processes[0].base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        direct.status(),
        StatusCode::UNAUTHORIZED,
        "guarded by the service token"
    );

    // One confirmation email per booking, one cancellation email for the cancelled one, sent by
    // the notifications process through whichever booking instance it reached.
    let mut confirmed = created.clone();
    confirmed.push(id_of(&booking));
    let mail_dir = cluster.mail_dir();
    poll_until(20, "the confirmation emails", || async {
        let all = mails(&mail_dir);
        (confirmed
            .iter()
            .all(|id| !mails_of(&all, id, "booking_confirmed").is_empty())
            && !mails_of(&all, &id_of(&booking), "booking_cancelled").is_empty())
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = mails(&mail_dir);
    for id in &confirmed {
        assert_eq!(mails_of(&all, id, "booking_confirmed").len(), 1, "{id}");
    }
    assert_eq!(
        mails_of(&all, &id_of(&booking), "booking_cancelled").len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_the_whole_deployments_openapi_document_and_docs() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // API contract, "Operations": the document and the API page, at the one public address.
    let (status, document) = cluster.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK, "{document}");
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/me", "patch"),
        ("/api/v1/concerts", "get"),
        ("/api/v1/concerts/{id}/availability/stream", "get"),
        ("/api/v1/bookings", "post"),
        ("/api/v1/bookings/{id}/cancel", "post"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    assert!(paths.keys().all(|path| !path.starts_with("/internal")));
    assert!(document["components"]["schemas"]["Problem"].is_object());
    let docs = cluster
        .client
        .get(cluster.url("/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_the_shop_whose_pages_reach_every_service() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let admin = cluster.admin_token().await;
    let (concert, _) = cluster.concert(&admin, "Split Shop", 3).await;
    let page = |path: &str| {
        let (client, url) = (cluster.client.clone(), cluster.url(path));
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    // The list (Catalog), the concert with its counts (Catalog and Booking), sign-in (Auth).
    let (status, home) = page("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("Split Shop"), "{home}");
    let (status, concert_page) = page(&format!("/concerts/{concert}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(concert_page.contains(">3</span> of 3"), "{concert_page}");
    let (status, signin) = page("/signin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(signin.contains("name=\"csrf\""));
    // A page for admins, without a session: sent to the sign-in page.
    let response = cluster
        .client
        .get(cluster.url("/organiser"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.url().path(), "/signin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_availability_stream_through_the_gateway_sees_both_instances_commits() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let admin = cluster.admin_token().await;
    let (concert, seat_type) = cluster.concert(&admin, "Live", 10).await;
    let users = cluster.register("watcher", 4).await;
    // The stream is held by one booking instance; the gateway sends the bookings to both in
    // turn, so the stream must learn of the other instance's commits through the database.
    let mut stream = EventStream::open(&cluster.client, &cluster.base, &concert).await;
    let (name, data) = stream.next(5).await;
    assert_eq!(name, "availability");
    let first: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(first["seat_types"][0]["remaining"], 10, "{first}");
    for (_, token) in &users {
        let (status, body) = book(&cluster, token, &concert, &seat_type).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut remaining = 10;
    while remaining != 6 {
        let (name, data) = stream.next(5).await;
        assert_eq!(name, "availability");
        let event: Value = serde_json::from_str(&data).unwrap();
        remaining = event["seat_types"][0]["remaining"].as_u64().unwrap();
        assert!((6..10).contains(&remaining), "{event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_instance_killed_mid_storm_loses_no_acknowledged_booking() {
    const CAPACITY: u64 = 150;
    const USERS: usize = 200;
    const KILL_AFTER: usize = 30;
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let admin = cluster.admin_token().await;
    let (concert, seat_type) = cluster.concert(&admin, "Storm", CAPACITY).await;
    let users = cluster.register("storm", USERS).await;

    let body = json!({"concert_id": concert, "seat_type_id": seat_type});
    let (client, url) = (cluster.client.clone(), cluster.url("/api/v1/bookings"));
    let mut acknowledged = storm_with_kill(&client, &url, &users, &body, KILL_AFTER, async || {
        cluster.process("booking-1").child.kill().await.unwrap();
    })
    .await;
    eprintln!(
        "split kill test: {} bookings acknowledged, booking-1 killed after {KILL_AFTER}",
        acknowledged.len()
    );
    assert!(acknowledged.len() >= KILL_AFTER);

    // booking-2 alone now: the storm's users who got no answer can still book.
    let answered: HashSet<&String> = acknowledged.iter().map(|(user, _)| user).collect();
    let retry = users
        .iter()
        .find(|(user, _)| !answered.contains(user))
        .cloned();
    if let Some((user, token)) = retry {
        let (status, body) = book(&cluster, &token, &concert, &seat_type).await;
        assert!(
            [StatusCode::CREATED, StatusCode::CONFLICT].contains(&status),
            "{status}: {body}"
        );
        if status == StatusCode::CREATED {
            acknowledged.push((user, body));
        }
    }

    let confirmed = cluster
        .assert_storm_kept(&admin, &concert, CAPACITY, &users, &acknowledged)
        .await;
    assert!(confirmed <= CAPACITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_passes_its_onsale_verdict_against_the_split_deployment() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let argv = [
        "loadtest",
        "--target",
        &cluster.base,
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password",
        ADMIN_PASSWORD,
        "--json",
        "--scenario",
        "onsale",
        "--users",
        "2000",
        "--concurrency",
        "32",
        "--seat-types",
        "VIP:40,Regular:60",
    ];
    let report = loadtest::run(LoadtestArgs::try_parse_from(argv).unwrap())
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_text());
    assert_eq!(report.users, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_room_through_the_gateway_is_one_queue_across_both_booking_instances() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let admin = cluster.admin_token().await;
    let mut body = concert_body("Queued twice", 86_400, 10);
    body["sales_open_at"] = json!(rfc3339_in(4));
    body["waiting_room"] = json!({"admit_per_minute": 600, "admission_ttl_seconds": 600});
    let (status, concert) = cluster.post("/api/v1/concerts", Some(&admin), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{concert}");
    let (concert, seat_type) = (id_of(&concert), id_of(&concert["seat_types"][0]));
    let queue = format!("/api/v1/concerts/{concert}/queue");
    let users = cluster.register("queued", 6).await;

    // Each joins twice: the gateway takes the two joins to different instances, and the second
    // finds the place the first took.
    for (_, token) in &users {
        let (status, ticket) = cluster.post(&queue, Some(token), &json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        let (status, again) = cluster.post(&queue, Some(token), &json!({})).await;
        assert_eq!(status, StatusCode::OK, "{again}");
    }
    let (status, refused) = book(&cluster, &users[0].1, &concert, &seat_type).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["code"], "admission_required");

    // One instance dies before the opening: the other shuffles, admits and sells the room.
    cluster.process("booking-1").child.kill().await.unwrap();
    let mut admissions = Vec::new();
    for (_, token) in &users {
        let admission = poll_until(60, "an admission through the gateway", || async {
            let (status, ticket) = cluster.get(&queue, Some(token)).await;
            (status == StatusCode::OK && ticket["state"] == "admitted")
                .then(|| ticket["admission"].as_str().unwrap().to_owned())
        })
        .await;
        admissions.push(admission);
    }
    let path = cluster.url("/api/v1/bookings");
    let booking = json!({"concert_id": concert, "seat_type_id": seat_type});
    let post = |token: &str, admission: &str| {
        cluster
            .client
            .post(&path)
            .bearer_auth(token)
            .header("Boxoffice-Admission", admission)
            .json(&booking)
            .send()
    };
    // Another user's admission is refused; each fan's own books once.
    let response = post(&users[0].1, &admissions[1]).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    for ((_, token), admission) in users.iter().zip(&admissions) {
        let response = post(token, admission).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert_eq!(cluster.assert_counts(&admin, &concert, 10).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_passes_its_waitingroom_verdict_against_the_split_deployment() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let argv = [
        "loadtest",
        "--target",
        &cluster.base,
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password",
        ADMIN_PASSWORD,
        "--json",
        "--scenario",
        "waitingroom",
        "--users",
        "200",
        "--concurrency",
        "32",
        "--admit-per-minute",
        "6000",
        "--seat-types",
        "GA:150",
    ];
    let report = loadtest::run(LoadtestArgs::try_parse_from(argv).unwrap())
        .await
        .unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_text());
    assert_eq!(report.users, 200);
}
