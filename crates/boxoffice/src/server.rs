//! The HTTP server loop: hyper connections with the timeouts and bounds that keep slow, idle or
//! too many clients from holding the box office hostage.
//!
//! `axum::serve` waits for ever: a client that opens a connection and never finishes its
//! headers, sends a body one byte a minute, or just keeps an idle keep-alive connection open,
//! holds a socket and a file descriptor until the process runs out of them, and then nobody can
//! connect. This loop serves the same router with hyper's own settings instead:
//! - [`ConnectionLimits::header_read`]: a request's head (request line and headers) must arrive
//!   within this time of the server starting to wait for it. hyper starts that wait when a
//!   connection opens *and* whenever a keep-alive connection goes back to idle, so the same
//!   setting is the idle timeout.
//! - [`ConnectionLimits::body_read`]: a request body must be read whole within this time of its
//!   head (tower-http's [`DeadlineBody`]: one deadline, not one per chunk, so a trickle of bytes
//!   cannot stretch it).
//! - [`ConnectionLimits::max_connections`]: at most this many connections are served at once;
//!   one more is answered `503` `unavailable` with `Retry-After` and closed straight away, so
//!   the process never meets its descriptor limit and `/healthz` keeps answering whenever
//!   there is room.
//!
//! A declared body over the contract's limit is refused before it is read (see
//! `ops::refuse_oversized_body`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::timeout::DeadlineBody;

/// How long and how many connections a client may hold. The defaults are in the README
/// ("Connections and timeouts").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to send a request's head, and the longest an idle keep-alive connection is kept.
    pub header_read: Duration,
    /// Time to send a request's whole body, counted from its head.
    pub body_read: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(10),
            max_connections: default_max_connections(),
        }
    }
}

/// The most connections served at once when nothing is configured: 10 000, or fewer when the
/// process may open fewer files, leaving 256 descriptors for the databases, the mail directory
/// and the connections this process opens itself.
fn default_max_connections() -> usize {
    const WANTED: usize = 10_000;
    const RESERVED: usize = 256;
    match open_files_limit() {
        Some(limit) => WANTED.min(limit.saturating_sub(RESERVED as u64).max(64) as usize),
        None => WANTED,
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` elsewhere or when
/// unlimited.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// What a connection over the limit is told before it is closed: written raw because no
/// hyper connection is spent on it.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/problem+json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 160\r\n\r\n\
{\"type\":\"https://boxoffice.dev/problems/unavailable\",\"title\":\"Service unavailable\",\"status\":503,\"detail\":\"too many connections; try again\",\"code\":\"unavailable\"}";

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    // HTTP/2 over cleartext (prior knowledge) is rare but served; its idle connections are
    // closed by keep-alive pings that go unanswered.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read)
        .keep_alive_timeout(limits.header_read);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tracing::info!(
        header_read_s = limits.header_read.as_secs_f64(),
        body_read_s = limits.body_read.as_secs_f64(),
        max_connections = limits.max_connections,
        "connection limits"
    );

    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or memory: the connection waits in the backlog; try
                    // again shortly rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shed(stream);
            continue;
        };
        // One write per response already; without this a small response can wait for the
        // client's delayed ACK.
        let _ = stream.set_nodelay(true);
        // The client's address as axum's `ConnectInfo`, and the body deadline around each
        // request body.
        let router = router.clone();
        let body_read = limits.body_read;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| Body::new(DeadlineBody::new(body_read, body)));
            request.extensions_mut().insert(ConnectInfo(remote));
            if let Some(uri) = decodable_uri(request.uri()) {
                *request.uri_mut() = uri;
            }
            router.clone().oneshot(request)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%remote, error = %error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A path segment whose percent-decoding is not UTF-8 (`/concerts/%ff%fe`) can name nothing
/// boxoffice serves, but axum's router answers it with a plain-text 400 before any handler (and
/// its problem+json) is reached. Such a segment is re-encoded with U+FFFD in place of the bad
/// bytes, so the route's own handler sees an id that does not parse and answers the resource's
/// 404 (`concert_not_found`, …). `None` when the path decodes as it is (nearly always).
fn decodable_uri(uri: &hyper::Uri) -> Option<hyper::Uri> {
    use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
    let path = uri.path();
    if !path.contains('%')
        || path
            .split('/')
            .all(|segment| percent_decode_str(segment).decode_utf8().is_ok())
    {
        return None;
    }
    let path: Vec<String> = path
        .split('/')
        .map(|segment| match percent_decode_str(segment).decode_utf8() {
            Ok(_) => segment.to_owned(),
            Err(_) => {
                let lossy = percent_decode_str(segment).decode_utf8_lossy();
                utf8_percent_encode(&lossy, NON_ALPHANUMERIC).to_string()
            }
        })
        .collect();
    let mut path_and_query = path.join("/");
    if let Some(query) = uri.query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    hyper::Uri::from_parts(parts).ok()
}

/// Answers a connection over the limit without waiting on it: one non-blocking write (the
/// socket's buffer takes it whole), then close.
fn shed(stream: TcpStream) {
    metrics::counter!("http_connections_shed_total").increment(1);
    let _ = stream.try_write(OVER_CAPACITY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_answer_declares_its_own_length() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        assert_eq!(declared, body.len());
        let problem: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(problem["code"], "unavailable");
        assert_eq!(problem["status"], 503);
    }

    #[test]
    fn undecodable_segments_become_replacement_characters() {
        let uri: hyper::Uri = "/api/v1/concerts/%ff%fe/availability?x=%ff"
            .parse()
            .unwrap_or_default();
        let fixed = decodable_uri(&uri).map(|uri| uri.to_string());
        assert_eq!(
            fixed.as_deref(),
            Some("/api/v1/concerts/%EF%BF%BD%EF%BF%BD/availability?x=%ff")
        );
        for fine in [
            "/api/v1/concerts",
            "/api/v1/concerts/caf%C3%A9",
            "/%20?q=%ff",
        ] {
            let uri: hyper::Uri = fine.parse().unwrap_or_default();
            assert_eq!(decodable_uri(&uri), None, "{fine}");
        }
    }

    #[test]
    fn the_default_bound_leaves_room_below_the_descriptor_limit() {
        let bound = default_max_connections();
        assert!(bound >= 64);
        if let Some(limit) = open_files_limit() {
            assert!((bound as u64) < limit);
        }
    }
}
