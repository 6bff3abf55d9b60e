//! Forwarding one request to an instance of the service that owns it.
//!
//! Bodies stream both ways: the client's body is handed to the upstream frame by frame as it
//! arrives, and the upstream's response body (an availability stream included) reaches the client
//! frame by frame, for as long as it lasts. Nothing is buffered, so the gateway sets no body limit;
//! each service enforces its own.
//!
//! Headers follow RFC 9110 §7.6.1: hop-by-hop headers (and any header the `Connection` header
//! names) describe one connection and are dropped in both directions; everything else, the
//! request id included, is passed on. The client's address is appended to `X-Forwarded-For`.
//!
//! When the connection to the chosen instance fails before a response, the instance is marked
//! down and the request is sent once more to another healthy instance — but only when that cannot
//! do anything twice: the connection was never established (so nothing was sent), or the method
//! is `GET`/`HEAD`. A `POST` that may have reached an instance is never resent; the client gets a
//! 503 and retries with its `Idempotency-Key`.
//!
//! A booking or hold is read whole first (it is small): its concert picks the instance
//! ([`crate::affinity`]), and a sold-out answer Booking gave for its seat type moments ago may
//! answer it here ([`crate::answers`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::uri::{PathAndQuery, Uri};
use axum::http::{Extensions, Method, Version};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::affinity::{self, Owners};
use crate::answers::{Answering, Answers, Asked, KEPT_BODY};
use crate::balance::{Pool, UpstreamStatus};
use crate::config::{BaseUrl, ConfigError, GatewayConfig};
use crate::error::GatewayError;
use crate::routing::{self, Service};

/// The pooled HTTP/1.1 keep-alive client every upstream request goes through.
pub(crate) type UpstreamClient = Client<HttpConnector, Body>;

/// How long to wait, after a failed attempt, for the HTTP client to let go of the request body so
/// it can be sent again. It lets go as the attempt ends, so this is only a safety net.
const RECLAIM_WAIT: Duration = Duration::from_millis(500);

/// The gateway's shared state: one pool per service and the client.
pub(crate) struct Proxy {
    /// Indexed by [`Service::index`].
    pools: [Pool; 3],
    /// Which Booking instance owns which concert, for its writes.
    owners: Owners,
    /// The sold-out answers this gateway repeats itself, when it can check callers.
    answers: Option<Answers>,
    pub client: UpstreamClient,
    pub health_interval: Duration,
    pub health_timeout: Duration,
}

impl Proxy {
    pub fn new(config: GatewayConfig, answering: Option<Answering>) -> Result<Self, ConfigError> {
        config.check_durations()?;
        let pools = Service::ALL.map(|service| parse_pool(&config, service));
        let [auth, catalog, booking] = pools;
        let pools = [auth?, catalog?, booking?];
        let booking_instances = pools[Service::Booking.index()].instances.len();

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        // Small request/response exchanges must not wait for Nagle's algorithm.
        connector.set_nodelay(true);
        // Notices a peer that vanished under a long-lived availability stream.
        connector.set_keepalive(Some(Duration::from_secs(30)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .build(connector);

        Ok(Self {
            pools,
            owners: Owners::new(booking_instances),
            answers: answering.map(Answers::new),
            client,
            health_interval: config.health_interval,
            health_timeout: config.health_timeout,
        })
    }

    pub fn pool(&self, service: Service) -> &Pool {
        &self.pools[service.index()]
    }

    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    pub fn upstream_status(&self) -> Vec<UpstreamStatus> {
        self.pools.iter().flat_map(Pool::status).collect()
    }

    /// Sends `request` to an instance of `service` and returns its response, with one retry on
    /// another instance when that is safe (see the module documentation).
    async fn forward(&self, service: Service, request: Request) -> Result<Response, GatewayError> {
        let pool = self.pool(service);
        let (parts, body) = request.into_parts();
        let idempotent = matches!(parts.method, Method::GET | Method::HEAD);
        // A booking or hold goes to its concert's owner (`affinity`): its body says which.
        let owned = service == Service::Booking
            && affinity::is_owned_write(&parts.method, parts.uri.path());
        let Peeked {
            mut body,
            concert,
            asked,
        } = self.peek(owned, &parts, body).await?;
        if let Some(answer) = self.kept_answer(asked.as_ref(), &parts).await {
            return Ok(answer);
        }
        // A write that may give a seat back (or change what may be sold) ends the sold-out
        // answers kept so far, as it is sent and again once it is answered.
        let gives_back =
            (self.answers.as_ref()).filter(|_| !owned && !idempotent && service != Service::Auth);
        if let Some(answers) = gives_back {
            answers.forget_all();
        }
        let sent = self.answers.as_ref().map_or(0, Answers::now);
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let headers = outbound_headers(&parts.headers, &parts.uri, &parts.extensions);

        let mut failed = None;
        loop {
            // Held until the answer: the write counts towards its owner's load meanwhile.
            let (picked, _owners_write) = match owned {
                true => self.owners.pick(pool, concert, failed),
                false => (pool.pick(failed), None),
            };
            let Some(index) = picked else {
                count(service, "unavailable");
                return Err(GatewayError::NoHealthyInstance { service });
            };
            let instance = &pool.instances[index];

            let (give_back, reclaimed) = oneshot::channel();
            let mut upstream_request = Request::new(Body::new(Reclaimable {
                inner: Some(body),
                sent_frames: false,
                give_back: Some(give_back),
            }));
            *upstream_request.method_mut() = parts.method.clone();
            *upstream_request.uri_mut() = Uri::builder()
                .scheme(instance.url.scheme.clone())
                .authority(instance.url.authority.clone())
                .path_and_query(path_and_query.clone())
                .build()?;
            *upstream_request.version_mut() = Version::HTTP_11;
            *upstream_request.headers_mut() = headers.clone();

            let started = Instant::now();
            let in_flight = instance.start();
            let error = match self.client.request(upstream_request).await {
                Ok(mut response) => {
                    drop(in_flight);
                    if let Some(answers) = gives_back {
                        answers.forget_all();
                    }
                    let mut lasts = None;
                    if owned {
                        let headers = response.headers_mut();
                        self.owners.learn(pool, concert, headers);
                        lasts = Answers::lasts(headers);
                    }
                    metrics::histogram!(
                        "gateway_upstream_duration_seconds",
                        "service" => service.as_str(),
                    )
                    .record(started.elapsed().as_secs_f64());
                    let outcome = if response.status().is_server_error() {
                        "server_error"
                    } else {
                        "success"
                    };
                    count(service, outcome);
                    if let (Some(answers), Some(asked), Some(lasts)) = (&self.answers, asked, lasts)
                    {
                        return keep(answers, asked, sent, lasts, response).await;
                    }
                    return Ok(inbound_response(response));
                }
                Err(error) => error,
            };

            // No connection at all means the request never left the gateway; a broken connection
            // means it may have been received, perhaps even processed.
            let never_sent = error.is_connect();
            count(
                service,
                if never_sent {
                    "connect_error"
                } else {
                    "failed"
                },
            );
            pool.set_health(index, false, &boxoffice_shared::problem::ErrorChain(&error));
            if failed.is_none() && (never_sent || idempotent) {
                // The body can be sent again only if the client let go of it before reading any
                // of it; it does so as the attempt ends.
                if let Ok(Ok(again)) = tokio::time::timeout(RECLAIM_WAIT, reclaimed).await {
                    body = again;
                    failed = Some(index);
                    continue;
                }
            }
            return Err(GatewayError::UpstreamFailed {
                service,
                upstream: instance.label.clone(),
                source: error,
            });
        }
    }
}

/// A request's body on its way upstream, and what a booking's or hold's body says.
struct Peeked {
    body: Body,
    /// The concert of a booking or hold, to send it to the concert's owner.
    concert: Option<Uuid>,
    /// A booking or hold the gateway may answer itself.
    asked: Option<Asked>,
}

impl Proxy {
    /// Reads the body of a booking or hold (`owned`) for its concert and for what it asks, when
    /// it is small; passes any other body on unread.
    async fn peek(&self, owned: bool, parts: &Parts, body: Body) -> Result<Peeked, GatewayError> {
        let unread = |body| Peeked {
            body,
            concert: None,
            asked: None,
        };
        if !owned {
            return Ok(unread(body));
        }
        Ok(match affinity::peek(&parts.headers, body).await? {
            Ok(bytes) => {
                let hold = parts.uri.path() == "/api/v1/holds";
                let asked =
                    (self.answers.as_ref()).and_then(|_| Asked::of(hold, &parts.headers, &bytes));
                // The body is parsed once: a write the gateway may answer names its concert.
                let concert = match &asked {
                    Some(asked) => Some(asked.concert_id),
                    None => affinity::concert_of(&bytes),
                };
                Peeked {
                    concert,
                    body: Body::from(bytes),
                    asked,
                }
            }
            Err(body) => unread(body),
        })
    }

    /// The answer the gateway keeps for `asked`, if one stands for this caller.
    async fn kept_answer(&self, asked: Option<&Asked>, parts: &Parts) -> Option<Response> {
        let (answers, asked) = (self.answers.as_ref()?, asked?);
        let client = (parts.extensions.get::<ConnectInfo<SocketAddr>>())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |client| client.0.ip());
        answers.answer(asked, parts, client).await
    }
}

/// Reads Booking's answer to `asked`, a request sent at `sent`, whole; keeps it for `lasts` and
/// sends it on.
async fn keep(
    answers: &Answers,
    asked: Asked,
    sent: u64,
    lasts: Duration,
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<Response, GatewayError> {
    let (parts, body) = inbound_response(response).into_parts();
    let body = Limited::new(body, KEPT_BODY)
        .collect()
        .await
        .map_err(|_| GatewayError::AnswerUnread)?
        .to_bytes();
    answers.remember(asked, sent, lasts, &parts, &body);
    Ok(Response::from_parts(parts, Body::from(body)))
}

fn parse_pool(config: &GatewayConfig, service: Service) -> Result<Pool, ConfigError> {
    let raw = config.upstreams(service);
    if raw.is_empty() {
        return Err(ConfigError::NoUpstream { service });
    }
    let mut urls: Vec<BaseUrl> = Vec::with_capacity(raw.len());
    for url in raw {
        let url = BaseUrl::parse(service, url)?;
        if urls.contains(&url) {
            return Err(ConfigError::DuplicateUpstream {
                service,
                url: url.to_string(),
            });
        }
        urls.push(url);
    }
    Ok(Pool::new(service, urls))
}

fn count(service: Service, outcome: &'static str) {
    metrics::counter!(
        "gateway_upstream_requests_total",
        "service" => service.as_str(),
        "outcome" => outcome,
    )
    .increment(1);
}

/// The handler of every proxied route.
pub(crate) async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let Some(service) = routing::service_for(request.uri().path()) else {
        return GatewayError::NotFound.into_response();
    };
    match proxy.forward(service, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The router's fallback: unknown paths and `/internal/...`.
pub(crate) async fn not_found() -> GatewayError {
    GatewayError::NotFound
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, RFC 9112 §9.6 and the historical `Keep-Alive` and
/// `Proxy-Connection`). `Proxy-*` headers in general are dropped as well: they are meant for a
/// proxy, and the gateway is the last one.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes the headers that describe one connection rather than the message.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// The headers sent upstream for a client request with `headers`.
pub(crate) fn outbound_headers(
    headers: &HeaderMap,
    uri: &Uri,
    extensions: &Extensions,
) -> HeaderMap {
    let mut out = headers.clone();
    strip_hop_by_hop(&mut out);
    // The client already got its `100 Continue` from the gateway's server when the body was
    // first read; the upstream must not send another one.
    out.remove(header::EXPECT);
    // The client addressed the gateway; the upstream gets its own authority (set by the client
    // from the URI) and the original one in `X-Forwarded-Host`, overwriting any a client made up.
    let host = out.remove(header::HOST).or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    out.remove(X_FORWARDED_HOST);
    if let Some(host) = host {
        out.insert(X_FORWARDED_HOST, host);
    }
    if let Some(ConnectInfo(client)) = extensions.get::<ConnectInfo<SocketAddr>>() {
        append_forwarded_for(&mut out, client);
    }
    out
}

/// Appends the client's address to `X-Forwarded-For`, keeping what earlier proxies (or the
/// client) put there: only the last entry is the gateway's word.
fn append_forwarded_for(headers: &mut HeaderMap, client: &SocketAddr) {
    let client = client.ip().to_canonical().to_string();
    let earlier: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .collect();
    let value = if earlier.is_empty() {
        client
    } else {
        format!("{}, {client}", earlier.join(", "))
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

/// The upstream's response as sent to the client: same status and headers minus hop-by-hop ones,
/// and the body streamed through as it arrives.
fn inbound_response(response: hyper::Response<hyper::body::Incoming>) -> Response {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

/// The client's request body on its way upstream. If the HTTP client drops it before any of it
/// was read — the connection failed, the request was never written — the body goes back through
/// `give_back`, so the request can be sent to another instance with the body intact.
struct Reclaimable {
    inner: Option<Body>,
    /// A frame has been handed to the client: the body can no longer be sent again whole.
    sent_frames: bool,
    give_back: Option<oneshot::Sender<Body>>,
}

impl HttpBody for Reclaimable {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(Some(_))) {
            self.sent_frames = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Reclaimable {
    fn drop(&mut self) {
        if self.sent_frames {
            return;
        }
        if let (Some(body), Some(give_back)) = (self.inner.take(), self.give_back.take()) {
            // Nobody waiting means the request got its answer or will not be retried.
            let _ = give_back.send(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Hop"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-connection", "keep-alive"),
            ("x-hop", "1"),
            ("x-request-id", "r-1"),
            ("content-type", "application/json"),
            ("authorization", "Bearer t"),
        ]);
        strip_hop_by_hop(&mut map);
        let mut left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-type", "x-request-id"]);
    }

    #[test]
    fn outbound_headers_carry_the_client_and_the_original_host() {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 5555))));
        let uri: Uri = "/api/v1/me".parse().expect("uri");
        let out = outbound_headers(
            &headers(&[
                ("host", "tickets.example"),
                ("x-forwarded-host", "spoofed.example"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-for", "198.51.100.1"),
                ("expect", "100-continue"),
            ]),
            &uri,
            &extensions,
        );
        assert_eq!(out.get(header::HOST), None);
        assert_eq!(out.get(header::EXPECT), None);
        assert_eq!(out[X_FORWARDED_HOST], "tickets.example");
        assert_eq!(out[X_FORWARDED_FOR], "203.0.113.9, 198.51.100.1, 10.0.0.7");
    }

    #[test]
    fn ipv4_mapped_clients_are_written_as_ipv4_and_no_connect_info_means_no_header() {
        let mut extensions = Extensions::new();
        let mapped: SocketAddr = "[::ffff:192.0.2.4]:80".parse().expect("addr");
        extensions.insert(ConnectInfo(mapped));
        let uri: Uri = "/".parse().expect("uri");
        let out = outbound_headers(&HeaderMap::new(), &uri, &extensions);
        assert_eq!(out[X_FORWARDED_FOR], "192.0.2.4");
        let out = outbound_headers(&HeaderMap::new(), &uri, &Extensions::new());
        assert_eq!(out.get(X_FORWARDED_FOR), None);
    }

    #[tokio::test]
    async fn an_unread_body_comes_back_and_a_read_one_does_not() {
        let (give_back, reclaimed) = oneshot::channel();
        drop(Reclaimable {
            inner: Some(Body::from("payload")),
            sent_frames: false,
            give_back: Some(give_back),
        });
        let body = reclaimed.await.expect("given back");
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(bytes, "payload");

        let (give_back, reclaimed) = oneshot::channel();
        let mut partly_read = Reclaimable {
            inner: Some(Body::from("payload")),
            sent_frames: false,
            give_back: Some(give_back),
        };
        let frame = partly_read.frame().await;
        assert!(matches!(frame, Some(Ok(_))));
        drop(partly_read);
        assert!(reclaimed.await.is_err());
    }
}
