//! Each concert's sales on one owner, in the split deployment (two booking instances behind the
//! gateway, each with `--advertise-url`): which instance owns what is read from each instance's
//! `/metrics` (`booking_concerts_owned`, `booking_forwards_total`).
//!
//! - two concerts on sale at once end up owned by different instances, a booking sent straight
//!   to the instance that does not own its concert is forwarded to the owner and names it, the
//!   gateway sends writes straight to their owners, and both sales stay exact;
//! - the owner killed with SIGKILL mid-storm: nothing acknowledged is lost, nothing oversold or
//!   booked twice, and the other instance takes the concert over and sells it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::crash::storm_with_kill;
use crate::helpers::id_of;
use crate::split::{Cluster, book};

const BOOKINGS: [&str; 2] = ["booking-1", "booking-2"];

/// A metric's value on the process at `base` (the sum over its label sets that contain every
/// one of `labels`); 0 when it has none.
pub async fn metric(client: &reqwest::Client, base: &str, name: &str, labels: &[&str]) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
                && labels.iter().all(|label| line.contains(label))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many concerts each booking instance owns now.
async fn owned(cluster: &mut Cluster) -> [u64; 2] {
    let mut counts = [0; 2];
    for (count, name) in counts.iter_mut().zip(BOOKINGS) {
        let base = cluster.process(name).base.clone();
        *count = metric(&cluster.client, &base, "booking_concerts_owned", &[]).await as u64;
    }
    counts
}

/// Everyone in `users` books (`concert`, `seat_type`) for every pair in `sales` at the same
/// time; every answer is 201 or 409. Returns the 201s per sale.
async fn storm(
    cluster: &Cluster,
    users: &[(String, String)],
    sales: &[(String, String)],
) -> Vec<usize> {
    let mut requests = tokio::task::JoinSet::new();
    for (index, (concert, seat_type)) in sales.iter().enumerate() {
        for (_, token) in users {
            let body = json!({"concert_id": concert, "seat_type_id": seat_type});
            let request = cluster
                .client
                .post(cluster.url("/api/v1/bookings"))
                .bearer_auth(token)
                .json(&body);
            requests.spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                assert!(
                    [StatusCode::CREATED, StatusCode::CONFLICT].contains(&status),
                    "{status}: {body}"
                );
                (index, status == StatusCode::CREATED)
            });
        }
    }
    let mut created = vec![0; sales.len()];
    for (index, made) in requests.join_all().await {
        created[index] += usize::from(made);
    }
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concerts_on_sale_at_once_are_owned_by_different_instances() {
    const CAPACITY: u64 = 120;
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let admin = cluster.admin_token().await;
    let sales = vec![
        cluster.concert(&admin, "Owned A", CAPACITY).await,
        cluster.concert(&admin, "Owned B", CAPACITY).await,
    ];
    let users = cluster.register("owned", 160).await;

    // The first writes claim the concerts; an instance that took both lets one go at its next
    // renewal, and the next write for that one is claimed by the other instance.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut warm_up = users.iter();
    loop {
        let (_, token) = warm_up.next().expect("enough users to spread the concerts");
        for (concert, seat_type) in &sales {
            let (status, body) = book(&cluster, token, concert, seat_type).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        if owned(&mut cluster).await == [1, 1] {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", owned(&mut cluster).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut warmed = users.len() - warm_up.len();

    // Straight to the instance that does not own the first concert (not through the gateway):
    // it forwards the booking to the owner, and the answer names the owner.
    let (concert, seat_type) = &sales[0];
    let bases = BOOKINGS.map(|name| cluster.process(name).base.clone());
    let client = cluster.client.clone();
    let direct = async |base: &str, token: &str| {
        let response = (client.post(format!("{base}/api/v1/bookings")))
            .bearer_auth(token)
            .json(&json!({"concert_id": concert, "seat_type_id": seat_type}))
            .send()
            .await
            .unwrap();
        let header = |name: &str| {
            let value = response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap());
            value.unwrap_or_default().to_owned()
        };
        let (owner, location) = (header("boxoffice-owner"), header("location"));
        let content_type = header("content-type");
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        let owner = owner.trim_end_matches('/').to_owned();
        (status, owner, location, content_type, body)
    };
    let (status, owner, _, _, body) = direct(&bases[0], &users[warmed].1).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let other = match owner == bases[0] {
        true => &bases[1],
        false => &bases[0],
    };
    let relayed_before = relayed(&client, other).await;
    let (status, named, location, content_type, body) = direct(other, &users[warmed + 1].1).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(named, owner, "both instances name the same owner");
    assert_eq!(location, format!("/api/v1/bookings/{}", id_of(&body)));
    assert_eq!(content_type, "application/json");
    assert_eq!(body["status"], "confirmed", "{body}");
    // A refusal the owner makes comes back as it made it.
    let (status, _, _, content_type, problem) = direct(other, &users[warmed + 1].1).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "already_booked");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(relayed(&client, other).await, relayed_before + 2.0);
    warmed += 2;

    let created = storm(&cluster, &users[warmed..], &sales).await;
    eprintln!("owners test: {warmed} users before the storm, then {created:?} created in it");
    for ((concert, _), created) in sales.iter().zip(&created) {
        let sold = cluster.assert_counts(&admin, concert, CAPACITY).await;
        assert_eq!(sold, CAPACITY, "demand exceeded every seat");
        let before = warmed as u64 - if *concert == sales[0].0 { 0 } else { 2 };
        assert_eq!(*created as u64, CAPACITY - before);
    }
    // The gateway learnt the owners from the answers and sent writes straight to them.
    let to_owner = metric(
        &cluster.client,
        &cluster.base,
        "gateway_owned_writes_total",
        &["owner"],
    )
    .await;
    assert!(to_owner > 0.0, "the gateway sent no write to its owner");
    assert_eq!(owned(&mut cluster).await, [1, 1]);
}

/// How many writes the instance at `base` forwarded to an owner and relayed the answer of.
async fn relayed(client: &reqwest::Client, base: &str) -> f64 {
    metric(client, base, "booking_forwards_total", &["relayed"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_killed_mid_storm_is_replaced_and_nothing_is_lost() {
    const CAPACITY: u64 = 400;
    const STORM: usize = 200;
    const KILL_AFTER: usize = 30;
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let admin = cluster.admin_token().await;
    let (concert, seat_type) = cluster.concert(&admin, "Owner storm", CAPACITY).await;
    let users = cluster.register("owner", STORM + 40).await;
    let (storm_users, later) = users.split_at(STORM);

    let (status, first) = book(&cluster, &storm_users[0].1, &concert, &seat_type).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let owner = loop {
        match owned(&mut cluster).await {
            [1, 0] => break 0,
            [0, 1] => break 1,
            counts => assert!(Instant::now() < deadline, "{counts:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let survivor = BOOKINGS[1 - owner];

    let body = json!({"concert_id": concert, "seat_type_id": seat_type});
    let (client, url) = (cluster.client.clone(), cluster.url("/api/v1/bookings"));
    let mut killed_at = None;
    let mut acknowledged = storm_with_kill(
        &client,
        &url,
        &storm_users[1..],
        &body,
        KILL_AFTER,
        async || {
            cluster.process(BOOKINGS[owner]).child.kill().await.unwrap();
            killed_at = Some(Instant::now());
        },
    )
    .await;
    acknowledged.push((storm_users[0].0.clone(), first));
    let killed_at = killed_at.expect("the owner was killed");
    assert!(acknowledged.len() > KILL_AFTER);

    // The survivor sells at once (a forward that cannot connect is made where it arrived) and
    // owns the concert once the dead owner's lease has run out.
    let survivor_base = cluster.process(survivor).base.clone();
    let mut later = later.iter();
    let taken_over = loop {
        let (user, token) = later.next().expect("enough users to see the takeover");
        let (status, booking) = book(&cluster, token, &concert, &seat_type).await;
        assert_eq!(status, StatusCode::CREATED, "{booking}");
        acknowledged.push((user.clone(), booking));
        if metric(&client, &survivor_base, "booking_concerts_owned", &[]).await == 1.0 {
            break killed_at.elapsed();
        }
        assert!(killed_at.elapsed() < Duration::from_secs(30), "no takeover");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "owner kill test: {} acknowledged; {survivor} owns the concert {taken_over:?} after the kill",
        acknowledged.len()
    );

    let mut seen = HashSet::new();
    for (user_id, _) in &acknowledged {
        assert!(seen.insert(user_id), "{user_id} acknowledged twice");
    }
    cluster
        .assert_storm_kept(&admin, &concert, CAPACITY, &users, &acknowledged)
        .await;
}
