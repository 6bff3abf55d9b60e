//! The throttles' counts shared through a real Redis server (`BOXOFFICE_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), as two Auth instances share them; and the fallback to per-process
//! counts when Redis does not answer. Without a Redis server these tests say they skipped;
//! `BOXOFFICE_REQUIRE_REDIS=1` (set by CI) makes that a failure.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use boxoffice_auth::limits::{SharedCounters, Throttle};
use boxoffice_shared::redistest;

/// Counters under a prefix of this test's own, once connected.
async fn connected(url: &str) -> SharedCounters {
    let prefix = format!("boxoffice-test:{}", uuid::Uuid::now_v7());
    let shared = SharedCounters::connect(url, &prefix).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !shared.is_connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared
}

#[tokio::test]
async fn two_instances_count_failures_together() {
    let Some(url) = redistest::server("two_instances_count_failures_together") else {
        return;
    };
    let shared = connected(&url).await;
    let window = Duration::from_secs(60);
    // The same throttle in two processes: each keeps its own local count, Redis the shared one.
    let a = Throttle::new("failures", 3, window, Some(shared.clone()));
    let b = Throttle::new("failures", 3, window, Some(shared));
    a.record("account:1").await;
    b.record("account:1").await;
    assert_eq!(a.check("account:1").await, Ok(()));
    a.record("account:1").await;
    // Three failures in all, though neither instance saw three itself.
    let retry = b.check("account:1").await.unwrap_err();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(a.check("account:1").await.is_err());
    assert_eq!(
        b.check("account:2").await,
        Ok(()),
        "other subjects are untouched"
    );

    // A success on one instance forgives on both.
    b.clear("account:1").await;
    assert_eq!(a.check("account:1").await, Ok(()));
}

#[tokio::test]
async fn the_shared_window_runs_out() {
    let Some(url) = redistest::server("the_shared_window_runs_out") else {
        return;
    };
    let shared = connected(&url).await;
    let throttle = Throttle::new("short", 1, Duration::from_millis(300), Some(shared.clone()));
    throttle.record("address:192.0.2.1").await;
    assert_eq!(throttle.check("address:192.0.2.1").await, Err(1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The local window has also run out: the answer is the shared one, and it is open again.
    let other = Throttle::new("short", 1, Duration::from_millis(300), Some(shared));
    assert_eq!(other.check("address:192.0.2.1").await, Ok(()));
    assert_eq!(throttle.check("address:192.0.2.1").await, Ok(()));
}

#[tokio::test]
async fn without_an_answer_from_redis_each_process_counts_on_its_own() {
    // A port nobody listens on: the connection never comes, the throttle still works.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let shared =
        SharedCounters::connect(&format!("redis://127.0.0.1:{port}"), "unreachable").unwrap();
    let throttle = Throttle::new("failures", 2, Duration::from_secs(60), Some(shared.clone()));
    throttle.record("account:1").await;
    assert_eq!(throttle.check("account:1").await, Ok(()));
    throttle.record("account:1").await;
    assert!(throttle.check("account:1").await.is_err());
    assert!(!shared.is_connected());
}

#[tokio::test]
async fn a_ration_is_shared_between_instances() {
    let Some(url) = redistest::server("a_ration_is_shared_between_instances") else {
        return;
    };
    let shared = connected(&url).await;
    let interval = Duration::from_secs(30);
    // One check per interval for a braked account, whichever instance the request reaches.
    let a = Throttle::new("checks", 1, interval, Some(shared.clone()));
    let b = Throttle::new("checks", 1, interval, Some(shared));
    assert_eq!(a.take("account:1").await, Ok(()));
    let retry = b.take("account:1").await.unwrap_err();
    assert!((1..=30).contains(&retry), "{retry}");
    assert!(a.take("account:1").await.is_err());
    assert_eq!(
        b.take("account:2").await,
        Ok(()),
        "other subjects have their own"
    );
}
