//! Black-box tests of the gateway: a real gateway on `127.0.0.1:0` in front of small axum
//! upstreams that echo what reached them (which instance, method, path, query, headers, body).
//!
//! Time is never asserted: a test waits for a state (an instance marked down, an event arrived)
//! by polling, and the SSE test drives the upstream's events itself, so "the first event arrived
//! before the last one was sent" holds by construction.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use boxoffice_gateway::{Gateway, GatewayConfig, Service, UpstreamStatus};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------------------------

/// One request as an upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct UpstreamState {
    name: &'static str,
    ready: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// When set, the availability stream route serves these events, one per message, and stays
    /// open until the sender is dropped.
    events: Arc<Mutex<Option<mpsc::UnboundedReceiver<String>>>>,
}

/// A small axum server standing in for one service instance.
struct Upstream {
    state: UpstreamState,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Upstream {
    async fn spawn(name: &'static str) -> Self {
        let state = UpstreamState {
            name,
            ready: Arc::new(AtomicBool::new(true)),
            seen: Arc::default(),
            events: Arc::default(),
        };
        let app = Router::new()
            .route("/readyz", get(readyz))
            .route(
                "/api/v1/concerts/{id}/availability/stream",
                get(availability_stream),
            )
            .fallback(echo)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("upstream serve");
        });
        Self {
            state,
            url,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops accepting, closes every connection and drops the listener: from now on a connection
    /// to this address is refused.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("upstream stopped");
        }
    }

    fn set_ready(&self, ready: bool) {
        self.state.ready.store(ready, Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// Serves the availability stream from the returned sender's messages.
    fn stream_events(&self) -> mpsc::UnboundedSender<String> {
        let (events, receiver) = mpsc::unbounded_channel();
        *self.state.events.lock().expect("lock") = Some(receiver);
        events
    }
}

async fn readyz(State(state): State<UpstreamState>) -> StatusCode {
    if state.ready.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Records the request and answers with what it saw; `?raw=1` answers with the body itself.
/// The response carries hop-by-hop headers of its own, which the gateway must not pass on.
async fn echo(State(state): State<UpstreamState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("request body");
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    state.seen.lock().expect("lock").push(seen.clone());
    let hop_by_hop = [
        ("x-instance", state.name),
        ("keep-alive", "timeout=5"),
        ("proxy-authenticate", "Basic"),
    ];
    if seen.query.as_deref() == Some("raw=1") {
        return (hop_by_hop, seen.body).into_response();
    }
    let echo = json!({
        "instance": state.name,
        "method": seen.method,
        "path": seen.path,
        "query": seen.query,
        "body_len": seen.body.len(),
    });
    (hop_by_hop, axum::Json(echo)).into_response()
}

async fn availability_stream(State(state): State<UpstreamState>, request: Request) -> Response {
    let Some(events) = state.events.lock().expect("lock").take() else {
        return echo(State(state), request).await;
    };
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(event), events))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// An address where nothing listens: connections to it are refused.
async fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    url
}

/// An instance that reads a whole request and then closes the connection without answering —
/// the request reached it, and may have been processed.
struct BlackHole {
    url: String,
    received: Arc<AtomicUsize>,
}

impl BlackHole {
    async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    if read_request(&mut socket).await {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    // Dropping the socket closes the connection with no response.
                });
            }
        });
        Self { url, received }
    }
}

/// Reads one HTTP/1.1 request with a `Content-Length` body (or none); false on EOF first.
async fn read_request(socket: &mut TcpStream) -> bool {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                return true;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

// ---------------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------------

struct TestGateway {
    gateway: Gateway,
    addr: SocketAddr,
    url: String,
    client: reqwest::Client,
    /// Dropping it stops the health checks.
    _stop_health_checks: Option<oneshot::Sender<()>>,
}

fn config(auth: &[&str], catalog: &[&str], booking: &[&str]) -> GatewayConfig {
    let urls = |urls: &[&str]| urls.iter().map(|url| (*url).to_owned()).collect();
    GatewayConfig {
        health_interval: Duration::from_millis(100),
        health_timeout: Duration::from_millis(500),
        ..GatewayConfig::new(urls(auth), urls(catalog), urls(booking))
    }
}

impl TestGateway {
    /// A gateway on `127.0.0.1:0`; `health_checks: false` leaves every instance healthy until a
    /// connection to it fails, to test passive detection alone.
    async fn spawn(config: GatewayConfig, health_checks: bool) -> Self {
        let gateway = Gateway::new(config).expect("valid config");
        let stop = health_checks.then(|| {
            let (stop, stopped) = oneshot::channel::<()>();
            tokio::spawn(gateway.health_checks(async move {
                let _ = stopped.await;
            }));
            stop
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = gateway
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.expect("gateway serve") });
        Self {
            gateway,
            addr,
            url: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            _stop_health_checks: stop,
        }
    }

    /// Three upstreams, one per service, named after it.
    async fn with_one_of_each() -> (Self, [Upstream; 3]) {
        let auth = Upstream::spawn("auth").await;
        let catalog = Upstream::spawn("catalog").await;
        let booking = Upstream::spawn("booking").await;
        let gateway =
            Self::spawn(config(&[&auth.url], &[&catalog.url], &[&booking.url]), true).await;
        (gateway, [auth, catalog, booking])
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("request")
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    fn status_of(&self, service: Service, url: &str) -> UpstreamStatus {
        self.gateway
            .upstream_status()
            .into_iter()
            .find(|status| status.service == service && status.url == url)
            .expect("configured upstream")
    }

    async fn wait_for_health(&self, service: Service, url: &str, healthy: bool) {
        wait_until(&format!("{url} healthy={healthy}"), || {
            self.status_of(service, url).healthy == healthy
        })
        .await;
    }
}

/// Polls `condition` until it holds; fails the test after a generous bound.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn with_deadline<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn instance_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-instance")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("<none>")
        .to_owned()
}

async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> HeaderMap {
    assert_eq!(response.status().as_u16(), status);
    let headers = response.headers().clone();
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/problem+json",
        "a problem document"
    );
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(
        body["type"],
        format!("https://boxoffice.dev/problems/{code}")
    );
    headers
}

/// Sends `request` as raw bytes (with `Connection: close`) and returns the status, the response
/// headers (lowercase names) and the body.
async fn raw_exchange(addr: SocketAddr, request: &str) -> (u16, HashMap<String, String>, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    with_deadline("raw response", socket.read_to_end(&mut response))
        .await
        .expect("read response");
    let end = find(&response, b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, response[end + 4..].to_vec())
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_route_family_reaches_its_service_with_method_path_and_query_intact() {
    let (gateway, [auth, catalog, booking]) = TestGateway::with_one_of_each().await;
    use reqwest::Method;
    let table = [
        (Method::POST, "/api/v1/auth/register", "auth"),
        (Method::POST, "/api/v1/auth/login", "auth"),
        (Method::POST, "/api/v1/auth/logout", "auth"),
        (Method::GET, "/api/v1/me", "auth"),
        (Method::PATCH, "/api/v1/me", "auth"),
        (Method::POST, "/api/v1/admin/load-test-accounts", "auth"),
        (
            Method::GET,
            "/api/v1/bookings?status=confirmed&limit=5",
            "booking",
        ),
        (Method::POST, "/api/v1/bookings", "booking"),
        (Method::GET, "/api/v1/bookings/b-1", "booking"),
        (Method::POST, "/api/v1/bookings/b-1/cancel", "booking"),
        (Method::GET, "/api/v1/concerts/c-1/availability", "booking"),
        (
            Method::GET,
            "/api/v1/concerts/c-1/availability/stream",
            "booking",
        ),
        (Method::GET, "/api/v1/concerts/c-1/sales", "booking"),
        (
            Method::GET,
            "/api/v1/concerts?q=jazz%20trio&limit=2",
            "catalog",
        ),
        (Method::POST, "/api/v1/concerts", "catalog"),
        (Method::GET, "/api/v1/concerts/c-1", "catalog"),
        (Method::PATCH, "/api/v1/concerts/c-1", "catalog"),
        (Method::POST, "/api/v1/concerts/c-1/seat-types", "catalog"),
        (Method::POST, "/api/v1/concerts/c-1/cancel", "catalog"),
    ];
    for (method, path_and_query, owner) in table {
        let response = gateway
            .request(method.clone(), path_and_query)
            .body("{}")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{method} {path_and_query}");
        assert_eq!(instance_of(&response), owner, "{method} {path_and_query}");
        let echo: Value = response.json().await.expect("echo");
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Value::from(query)),
            None => (path_and_query, Value::Null),
        };
        assert_eq!(echo["method"], method.as_str());
        assert_eq!(echo["path"], path);
        assert_eq!(echo["query"], query);
        assert_eq!(echo["body_len"], 2);
    }

    // HEAD goes through too, answered without a body.
    let response = gateway
        .request(Method::HEAD, "/api/v1/concerts")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(instance_of(&response), "catalog");

    let count = |upstream: &Upstream| upstream.seen().len();
    assert_eq!(
        (count(&auth), count(&catalog), count(&booking)),
        (6, 7, 7),
        "each request reached exactly one upstream"
    );
}

#[tokio::test]
async fn internal_and_unknown_paths_are_not_found_and_never_forwarded() {
    let (gateway, upstreams) = TestGateway::with_one_of_each().await;
    for path in [
        "/internal/x",
        "/internal/inventory/c-1",
        "/internal",
        "/",
        "/api/v1",
        "/api/v1/internal/x",
        "/api/v1/unknown",
        "/api/v1/meh",
        "/api/v1/auth",
        "/api/v1/bookingsx",
        "/api/v2/concerts",
        "/readyz",
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let response = gateway
                .request(method.clone(), path)
                .body("{}")
                .send()
                .await
                .expect("request");
            assert_problem(response, 404, "not_found").await;
        }
    }

    // Dot segments are refused even when a client sends them unnormalised.
    for path in [
        "/api/v1/bookings/../../internal/x",
        "/api/v1/bookings/%2e%2e/%2E%2E/internal/x",
    ] {
        let (status, headers, body) = raw_exchange(
            gateway.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(headers["content-type"], "application/problem+json");
        let body: Value = serde_json::from_slice(&body).expect("problem json");
        assert_eq!(body["code"], "not_found");
    }

    for upstream in &upstreams {
        assert!(
            upstream.seen().is_empty(),
            "{} saw {:?}",
            upstream.state.name,
            upstream.seen()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Balancing and health
// ---------------------------------------------------------------------------------------------

async fn booking_pair() -> (Upstream, Upstream, Upstream, Upstream) {
    (
        Upstream::spawn("auth").await,
        Upstream::spawn("catalog").await,
        Upstream::spawn("booking-1").await,
        Upstream::spawn("booking-2").await,
    )
}

#[tokio::test]
async fn requests_alternate_between_booking_instances() {
    let (auth, catalog, one, two) = booking_pair().await;
    let gateway = TestGateway::spawn(
        config(&[&auth.url], &[&catalog.url], &[&one.url, &two.url]),
        true,
    )
    .await;
    let mut answered = Vec::new();
    for _ in 0..10 {
        let response = gateway.get("/api/v1/bookings").await;
        assert_eq!(response.status(), 200);
        answered.push(instance_of(&response));
    }
    assert!(
        answered.windows(2).all(|pair| pair[0] != pair[1]),
        "round-robin: {answered:?}"
    );
    assert_eq!((one.seen().len(), two.seen().len()), (5, 5));
}

#[tokio::test]
async fn an_instance_that_is_not_ready_gets_no_traffic_until_it_is_ready_again() {
    let (auth, catalog, one, two) = booking_pair().await;
    let gateway = TestGateway::spawn(
        config(&[&auth.url], &[&catalog.url], &[&one.url, &two.url]),
        true,
    )
    .await;

    two.set_ready(false);
    gateway
        .wait_for_health(Service::Booking, &two.url, false)
        .await;
    for _ in 0..6 {
        let response = gateway.get("/api/v1/bookings").await;
        assert_eq!(instance_of(&response), "booking-1");
    }
    let before = two.seen().len();

    two.set_ready(true);
    gateway
        .wait_for_health(Service::Booking, &two.url, true)
        .await;
    let mut answered = Vec::new();
    for _ in 0..4 {
        answered.push(instance_of(&gateway.get("/api/v1/bookings").await));
    }
    assert_eq!(
        answered.iter().filter(|name| *name == "booking-2").count(),
        2,
        "{answered:?}"
    );
    assert_eq!(two.seen().len(), before + 2);
    assert_eq!(gateway.gateway.ready(), Ok(()));
}

#[tokio::test]
async fn a_stopped_instance_is_taken_out_and_gets_retried_requests_elsewhere() {
    let (auth, catalog, one, mut two) = booking_pair().await;
    // No health checks: the failed connections alone must take the instance out.
    let gateway = TestGateway::spawn(
        config(&[&auth.url], &[&catalog.url], &[&one.url, &two.url]),
        false,
    )
    .await;
    for _ in 0..2 {
        assert_eq!(gateway.get("/api/v1/bookings").await.status(), 200);
    }
    assert_eq!(
        two.seen().len(),
        1,
        "both instances had a pooled connection"
    );

    two.stop().await;
    for i in 0..6 {
        let response = gateway.get(&format!("/api/v1/bookings/{i}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(instance_of(&response), "booking-1");
    }
    assert!(!gateway.status_of(Service::Booking, &two.url).healthy);
    assert_eq!(one.seen().len(), 7);
}

#[tokio::test]
async fn a_post_whose_connection_is_refused_is_sent_to_another_instance() {
    let (auth, catalog, live, _unused) = booking_pair().await;
    let dead = dead_address().await;
    let gateway = TestGateway::spawn(
        config(&[&auth.url], &[&catalog.url], &[&dead, &live.url]),
        false,
    )
    .await;
    let bodies: Vec<String> = (0..4).map(|i| format!(r#"{{"attempt":{i}}}"#)).collect();
    for body in &bodies {
        let response = gateway.post("/api/v1/bookings", body.clone()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(instance_of(&response), "booking-1");
    }
    assert!(
        !gateway.status_of(Service::Booking, &dead).healthy,
        "the dead instance was tried and marked down"
    );
    let received: Vec<Bytes> = live.seen().into_iter().map(|seen| seen.body).collect();
    assert_eq!(
        received,
        bodies.into_iter().map(Bytes::from).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_post_that_may_have_reached_an_instance_is_never_resent() {
    // With a body (a booking) and without one (a cancellation): an empty body must not make a
    // POST look safe to resend.
    for with_body in [true, false] {
        let (auth, catalog, live, _unused) = booking_pair().await;
        let hole = BlackHole::spawn().await;
        let gateway = TestGateway::spawn(
            config(&[&auth.url], &[&catalog.url], &[&hole.url, &live.url]),
            false,
        )
        .await;

        let mut answered = Vec::new();
        for i in 0..4 {
            let (path, body) = if with_body {
                (
                    "/api/v1/bookings".to_owned(),
                    format!(r#"{{"attempt":{i}}}"#),
                )
            } else {
                (format!("/api/v1/bookings/b-{i}/cancel"), String::new())
            };
            let response = gateway.post(&path, body).await;
            if response.status() == 200 {
                answered.push(path);
            } else {
                let headers = assert_problem(response, 503, "unavailable").await;
                assert_eq!(headers[header::RETRY_AFTER], "1");
            }
        }
        let lost = 4 - answered.len();
        assert!(lost >= 1, "round-robin sent a POST to the black hole");
        assert_eq!(hole.received.load(Ordering::SeqCst), lost);
        let received: Vec<String> = live.seen().into_iter().map(|seen| seen.path).collect();
        assert_eq!(received, answered, "no POST reached two instances");
    }
}

#[tokio::test]
async fn a_get_whose_connection_breaks_is_retried_on_another_instance() {
    let (auth, catalog, live, _unused) = booking_pair().await;
    let hole = BlackHole::spawn().await;
    let gateway = TestGateway::spawn(
        config(&[&auth.url], &[&catalog.url], &[&hole.url, &live.url]),
        false,
    )
    .await;
    for _ in 0..4 {
        let response = gateway.get("/api/v1/bookings").await;
        assert_eq!(response.status(), 200);
        assert_eq!(instance_of(&response), "booking-1");
    }
    assert_eq!(hole.received.load(Ordering::SeqCst), 1);
    assert_eq!(live.seen().len(), 4);
}

#[tokio::test]
async fn with_every_instance_down_the_gateway_answers_unavailable() {
    let (auth, catalog, _one, _two) = booking_pair().await;
    let dead = [dead_address().await, dead_address().await];
    let gateway = TestGateway::spawn(
        config(&[&auth.url], &[&catalog.url], &[&dead[0], &dead[1]]),
        true,
    )
    .await;
    for url in &dead {
        gateway.wait_for_health(Service::Booking, url, false).await;
    }
    for response in [
        gateway.get("/api/v1/bookings").await,
        gateway.post("/api/v1/bookings", "{}").await,
        gateway.get("/api/v1/concerts/c-1/availability").await,
    ] {
        let headers = assert_problem(response, 503, "unavailable").await;
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }
    assert_eq!(
        gateway.gateway.ready(),
        Err("no healthy instance of booking".to_owned())
    );

    // The other services are not affected.
    let response = gateway.get("/api/v1/concerts").await;
    assert_eq!(instance_of(&response), "catalog");
}

#[tokio::test]
async fn without_health_checks_running_a_request_to_dead_instances_fails_cleanly() {
    let (auth, catalog, _one, _two) = booking_pair().await;
    let dead = [dead_address().await, dead_address().await];
    let gateway = TestGateway::spawn(
        config(&[&auth.url], &[&catalog.url], &[&dead[0], &dead[1]]),
        false,
    )
    .await;
    // The first request tries one instance, then the other; the next finds none healthy.
    for _ in 0..2 {
        let response = gateway.post("/api/v1/bookings", "{}").await;
        assert_problem(response, 503, "unavailable").await;
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies and headers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_availability_stream_arrives_event_by_event_and_stays_open() {
    let (gateway, [_auth, _catalog, booking]) = TestGateway::with_one_of_each().await;
    let events = booking.stream_events();
    let streaming = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut response = streaming
        .get(format!(
            "{}/api/v1/concerts/c-1/availability/stream",
            gateway.url
        ))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );

    let mut received = String::new();
    for n in 1..=3 {
        let event = format!("event: availability\ndata: {{\"remaining\":{n}}}\n\n");
        // The next event is sent only once the previous one came through the gateway.
        events.send(event.clone()).expect("upstream stream open");
        while !received.ends_with(&event) {
            let chunk = with_deadline(&format!("event {n}"), response.chunk())
                .await
                .expect("stream chunk")
                .expect("stream still open");
            received.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
        assert_eq!(received.matches("event: availability").count(), n);
    }

    // Nothing more to say, but the stream stays open...
    let idle = tokio::time::timeout(Duration::from_millis(200), response.chunk()).await;
    assert!(idle.is_err(), "the stream stayed open: {idle:?}");
    // ...until the upstream ends it.
    drop(events);
    let end = with_deadline("end of stream", response.chunk())
        .await
        .expect("clean end");
    assert_eq!(end, None);
}

#[tokio::test]
async fn a_one_mebibyte_body_arrives_intact_both_ways() {
    let (gateway, [_auth, _catalog, booking]) = TestGateway::with_one_of_each().await;
    let body: Vec<u8> = (0..1024 * 1024_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let response = gateway.post("/api/v1/bookings?raw=1", body.clone()).await;
    assert_eq!(response.status(), 200);
    let echoed = response.bytes().await.expect("body");
    assert!(echoed == body, "the response body came back intact");
    let seen = booking.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].body == body, "the upstream got the body intact");
    assert_eq!(seen[0].headers[header::CONTENT_LENGTH], "1048576");
}

#[tokio::test]
async fn hop_by_hop_headers_stay_behind_and_the_client_is_forwarded() {
    let (gateway, [auth, _catalog, _booking]) = TestGateway::with_one_of_each().await;
    let request = "GET /api/v1/me?x=1 HTTP/1.1\r\n\
                   Host: tickets.example\r\n\
                   Connection: close, X-Hop\r\n\
                   Keep-Alive: timeout=5\r\n\
                   TE: trailers\r\n\
                   Trailer: X-Checksum\r\n\
                   Upgrade: websocket\r\n\
                   Proxy-Authorization: Basic eDp5\r\n\
                   Proxy-Connection: keep-alive\r\n\
                   X-Hop: only-for-the-gateway\r\n\
                   X-Request-Id: req-123\r\n\
                   X-Forwarded-For: 203.0.113.7\r\n\
                   Authorization: Bearer token\r\n\
                   X-Custom: kept\r\n\
                   \r\n";
    let (status, response_headers, _) = raw_exchange(gateway.addr, request).await;
    assert_eq!(status, 200);

    let seen = auth.seen();
    assert_eq!(seen.len(), 1);
    let headers = &seen[0].headers;
    for dropped in [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "x-hop",
    ] {
        assert!(
            headers.get(dropped).is_none(),
            "{dropped} was forwarded: {headers:?}"
        );
    }
    assert_eq!(headers["x-request-id"], "req-123");
    assert_eq!(headers["authorization"], "Bearer token");
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(headers["x-forwarded-host"], "tickets.example");
    assert_eq!(
        headers[header::HOST],
        auth.url.trim_start_matches("http://"),
        "the upstream is addressed by its own authority"
    );

    // The upstream's own hop-by-hop headers do not reach the client either.
    assert_eq!(response_headers["x-instance"], "auth");
    assert!(
        !response_headers.contains_key("keep-alive"),
        "{response_headers:?}"
    );
    assert!(
        !response_headers.contains_key("proxy-authenticate"),
        "{response_headers:?}"
    );
}

#[tokio::test]
async fn a_client_without_connect_info_is_served_without_x_forwarded_for() {
    let auth = Upstream::spawn("auth").await;
    let catalog = Upstream::spawn("catalog").await;
    let booking = Upstream::spawn("booking").await;
    let gateway =
        Gateway::new(config(&[&auth.url], &[&catalog.url], &[&booking.url])).expect("config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, gateway.router())
            .await
            .expect("serve")
    });
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://{addr}/api/v1/me"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert!(auth.seen()[0].headers.get("x-forwarded-for").is_none());
}

#[test]
fn a_configuration_without_upstreams_or_with_bad_urls_is_refused() {
    let error = Gateway::new(config(
        &["http://127.0.0.1:1"],
        &[],
        &["http://127.0.0.1:2"],
    ))
    .expect_err("no catalog");
    assert!(error.to_string().contains("no catalog upstream"), "{error}");

    let error = Gateway::new(config(
        &["http://127.0.0.1:1"],
        &["http://127.0.0.1:2"],
        &["https://127.0.0.1:3"],
    ))
    .expect_err("https");
    assert!(error.to_string().contains("only http://"), "{error}");

    let error = Gateway::new(config(
        &["http://127.0.0.1:1"],
        &["http://127.0.0.1:2"],
        &["http://127.0.0.1:3", "http://127.0.0.1:3/"],
    ))
    .expect_err("duplicate");
    assert!(error.to_string().contains("listed twice"), "{error}");
}
