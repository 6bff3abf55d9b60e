//! Sold-out answers repeated by the gateway itself, in the split deployment (two booking
//! instances with owners, the gateway given Auth's public key): how many it answered is read
//! from its `/metrics` (`gateway_answered_total`).
//!
//! The gateway repeats a sold-out answer only to a caller Booking would refuse the same way (a
//! valid, unrevoked token; no `Idempotency-Key`), never lets one outlive a cancel made through
//! it, and never shows Booking's header that taught it the answer.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{id_of, poll_until};
use crate::owners::metric;
use crate::split::{Cluster, book};

/// How many answers the gateway gave itself so far.
async fn answered(cluster: &Cluster) -> f64 {
    metric(
        &cluster.client,
        &cluster.base,
        "gateway_answered_total",
        &[],
    )
    .await
}

/// A booking of (`concert`, `seat_type`) with `token` and extra `headers`: the status, the
/// problem's code and whether Booking's header reached the client.
async fn attempt(
    cluster: &Cluster,
    token: &str,
    concert: &str,
    seat_type: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, bool) {
    let mut request = (cluster.client.post(cluster.url("/api/v1/bookings")))
        .bearer_auth(token)
        .json(&json!({"concert_id": concert, "seat_type_id": seat_type}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let leaked = response.headers().contains_key("boxoffice-sold-out-lasts");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null), leaked)
}

/// Sold-out attempts by `token` until the gateway has answered one itself (an answer lasts
/// 100 ms, so the next attempt after a refusal Booking made usually finds it).
async fn until_answered_by_the_gateway(cluster: &Cluster, token: &str, sale: &(String, String)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = answered(cluster).await;
    loop {
        for _ in 0..5 {
            let (status, problem, leaked) = attempt(cluster, token, &sale.0, &sale.1, &[]).await;
            assert_eq!(status, StatusCode::CONFLICT, "{problem}");
            assert_eq!(problem["code"], "sold_out", "{problem}");
            assert!(!leaked, "the gateway passed Booking's header on");
        }
        if answered(cluster).await > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never answered itself"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_repeats_sold_out_answers_only_to_callers_booking_would_refuse_alike() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let admin = cluster.admin_token().await;
    let sale = cluster.concert(&admin, "Sold out at the door", 1).await;
    let users = cluster.register("answers", 4).await;
    let (status, booking) = book(&cluster, &users[0].1, &sale.0, &sale.1).await;
    assert_eq!(status, StatusCode::CREATED, "{booking}");

    until_answered_by_the_gateway(&cluster, &users[1].1, &sale).await;
    // While an answer stands: a token the gateway cannot verify is Booking's to refuse (401),
    // and a request with an Idempotency-Key goes on to Booking, which answers it.
    let (status, problem, _) = attempt(&cluster, "not-a-token", &sale.0, &sale.1, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    let before = answered(&cluster).await;
    for key in ["k-1", "k-2", "k-3"] {
        let keyed = [("idempotency-key", key)];
        let (status, problem, _) = attempt(&cluster, &users[1].1, &sale.0, &sale.1, &keyed).await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert_eq!(problem["code"], "sold_out", "{problem}");
    }
    assert_eq!(
        answered(&cluster).await,
        before,
        "a keyed request was answered"
    );

    // A logout reaches the gateway as it reaches every service: its token is refused (401)
    // from then on, never answered 409.
    let (status, _) = cluster
        .post("/api/v1/auth/logout", Some(&users[1].1), &json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    poll_until(10, "the logged-out token to be refused", || async {
        let (status, _, _) = attempt(&cluster, &users[1].1, &sale.0, &sale.1, &[]).await;
        (status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    for _ in 0..20 {
        let (status, problem, _) = attempt(&cluster, &users[1].1, &sale.0, &sale.1, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    }

    // A cancel through the gateway ends its answers at once: once both instances show the seat
    // back, the next booking gets it, although a sold-out answer stood just before the cancel.
    until_answered_by_the_gateway(&cluster, &users[2].1, &sale).await;
    let cancel = format!("/api/v1/bookings/{}/cancel", id_of(&booking));
    let (status, cancelled) = cluster.post(&cancel, Some(&users[0].1), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cluster.assert_counts(&admin, &sale.0, 1).await, 0);
    let (status, rebooked, _) = attempt(&cluster, &users[3].1, &sale.0, &sale.1, &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{rebooked}");
    assert_eq!(cluster.assert_counts(&admin, &sale.0, 1).await, 1);
}
