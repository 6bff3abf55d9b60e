//! Connection hygiene: slow, idle and surplus clients are cut off by the server's own timeouts
//! and bound, and `/healthz` keeps answering meanwhile. The timeouts are shortened here (the
//! defaults are in the README); each test waits a few seconds beyond its timeout at most.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

const SHORT: Duration = Duration::from_secs(1);
/// How long past its timeout a connection may take to be closed (a loaded test machine).
const SLACK: Duration = Duration::from_secs(5);

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.base.trim_start_matches("http://");
    TcpStream::connect(address).await.expect("connected")
}

/// Reads until the server closes the connection (EOF or reset) and returns what it sent;
/// `None` if it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// `/healthz` on a new connection of its own: the harness's pooled connection may itself have
/// been idle past this test's short timeout.
async fn healthz_answers(app: &TestApp) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(app.url("/healthz")).send(),
    )
    .await
    .expect("/healthz answers within 5 s")
    .expect("/healthz answers");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn half_open_requests_are_closed_after_the_header_timeout_while_healthz_answers() {
    let app = spawn_app_with(|config| config.connections.header_read = SHORT).await;
    let mut streams = Vec::new();
    for _ in 0..200 {
        let mut stream = connect(&app).await;
        // A request line and one header, and never the blank line that ends the head.
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: boxoffice\r\n")
            .await
            .unwrap();
        streams.push(stream);
    }
    healthz_answers(&app).await;
    for stream in &mut streams {
        assert!(
            closed_within(stream, SHORT + SLACK).await.is_some(),
            "a half-open request is still open after its header timeout"
        );
    }
    healthz_answers(&app).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|config| config.connections.header_read = SHORT).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: boxoffice\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut stream, SHORT + SLACK)
        .await
        .expect("the idle connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_that_never_arrives_in_full_is_cut_off_after_the_body_timeout() {
    let app = spawn_app_with(|config| {
        config.connections.header_read = Duration::from_secs(60);
        config.connections.body_read = SHORT;
    })
    .await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nhost: boxoffice\r\n\
              content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"login\":",
        )
        .await
        .unwrap();
    let answer = closed_within(&mut stream, SHORT + SLACK)
        .await
        .expect("the slow request is ended");
    // Either an error answer (problem+json) before closing, or a plain close.
    if !answer.is_empty() {
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
    }
    healthz_answers(&app).await;
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let app = spawn_app_with(|config| {
        config.connections.header_read = Duration::from_secs(60);
        config.connections.body_read = Duration::from_secs(60);
    })
    .await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nhost: boxoffice\r\n\
              content-type: application/json\r\ncontent-length: 999999999\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buffer = vec![0_u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("\"code\":\"body_too_large\""), "{answer}");
}

#[tokio::test]
async fn connections_over_the_bound_are_answered_503_and_closed() {
    let app = spawn_app_with(|config| {
        config.connections.header_read = Duration::from_secs(60);
        config.connections.max_connections = 20;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect(&app).await);
    }
    // Give the server a moment to accept all twenty.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut surplus = connect(&app).await;
    let answer = closed_within(&mut surplus, SLACK)
        .await
        .expect("the surplus connection is closed at once");
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "the surplus connection is told why: {answer}"
    );
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("\"code\":\"unavailable\""), "{answer}");

    drop(held);
    // Slots come back as the server notices the closes.
    let mut answered = false;
    for _ in 0..50 {
        if let Ok(response) = app.client.get(app.url("/healthz")).send().await
            && response.status() == StatusCode::OK
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answered,
        "/healthz answers once the held connections are gone"
    );
}
