//! Operations endpoints and the layers every route shares (API contract, "Operations").
//!
//! - `GET /healthz`: the process is up.
//! - `GET /readyz`: every store answers; 503 `unavailable` otherwise.
//! - `GET /metrics`: Prometheus text.
//! - `GET /api/v1/openapi.json` and `GET /docs`: the OpenAPI document generated from the
//!   handlers' annotations, and Swagger UI served from assets compiled into the binary.
//! - `GET /`: a page for browsers that says where the API and its documentation are.
//! - Fallbacks: unknown paths are 404 `not_found`, known paths with another method are 405
//!   `method_not_allowed`, and a panic in a handler is 500 `internal` — all problem+json.

use std::any::Any;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use boxoffice_shared::component::ReadyCheck;
use boxoffice_shared::extract::MAX_BODY_BYTES;
use boxoffice_shared::telemetry::{metrics_handle, track_http};
use boxoffice_shared::{ErrorCode, FieldError, Problem};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The header that carries a request's id, generated when the client sends none.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Readiness of the gateway: every service has a healthy instance.
pub struct GatewayCheck(pub boxoffice_gateway::Gateway);

impl ReadyCheck for GatewayCheck {
    fn name(&self) -> &'static str {
        "upstreams"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let ready = self.0.ready();
        Box::pin(async move { ready })
    }
}

#[derive(Clone)]
struct OpsState {
    checks: Arc<Vec<Arc<dyn ReadyCheck>>>,
    metrics: PrometheusHandle,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "boxoffice",
        description = "Concert ticket booking that does not oversell. Errors are RFC 9457 \
                       problem documents; clients branch on `code`.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerScheme),
    components(schemas(Problem, FieldError, ErrorCode)),
    tags(
        (name = "auth", description = "Accounts, sessions and tokens"),
        (name = "concerts", description = "Concerts, seat types and their exact availability"),
        (name = "bookings", description = "Booking and cancelling tickets"),
        (name = "checkout", description = "Holding a seat while paying for it"),
        (name = "waitlist", description = "Waiting for a sold-out seat type; freed seats are offered in order"),
        (name = "waiting room", description = "The queue in front of an on-sale: shuffled at the opening, admitted at the organiser's rate"),
        (name = "webhooks", description = "Signed event deliveries to organisers' systems"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Adds the operations routes, the OpenAPI document, `/docs`, the internal routes, the fallbacks
/// and the shared layers to the services' routes.
pub fn with_operations(
    api: OpenApiRouter,
    internal: Router,
    checks: Vec<Arc<dyn ReadyCheck>>,
    trusted_proxies: &[IpAddr],
) -> Router {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api)
        .merge(operations(checks))
        .split_for_parts();
    empty_query_values_are_absent(&mut openapi);

    let router = router
        .merge(SwaggerUi::new("/docs").url(OPENAPI_PATH, openapi))
        .merge(internal)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let router = match trusted_proxies.is_empty() {
        true => router,
        false => {
            let trusted: Arc<[IpAddr]> = trusted_proxies.into();
            router.layer(middleware::from_fn_with_state(trusted, forwarded_client))
        }
    };
    shared_layers(router)
}

/// Every list treats an empty query value (`?cursor=&limit=`, as an HTML form sends blank fields)
/// as the parameter left out. OpenAPI 3.1 says so with `allowEmptyValue`, which utoipa 6 does not
/// model, so it is written as a raw member of each query parameter.
fn empty_query_values_are_absent(openapi: &mut utoipa::openapi::OpenApi) {
    let operations = openapi
        .paths
        .paths
        .values_mut()
        .filter_map(|item| item.get.as_mut());
    for operation in operations {
        for parameter in operation.parameters.iter_mut().flatten() {
            if let utoipa::openapi::RefOr::T(parameter) = parameter
                && parameter.parameter_in == utoipa::openapi::path::ParameterIn::Query
            {
                parameter
                    .extensions
                    .get_or_insert_with(Default::default)
                    .insert("allowEmptyValue".to_owned(), true.into());
            }
        }
    }
}

/// The gateway's router (the forwarded public routes and its own 404 fallback) with the
/// operations routes, the whole deployment's OpenAPI document and `/docs`, and the shared layers.
pub fn gateway_with_operations(
    gateway: Router,
    checks: Vec<Arc<dyn ReadyCheck>>,
    docs: UpstreamDocs,
) -> Router {
    let (operations, _) = operations(checks).split_for_parts();
    let document = Router::new()
        .route(OPENAPI_PATH, axum::routing::get(merged_openapi))
        .with_state(Arc::new(docs));
    let swagger = SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from(OPENAPI_PATH));
    shared_layers(gateway.merge(operations).merge(document).merge(swagger))
}

/// Where the gateway finds the services' own OpenAPI documents: each service's instances, and
/// the client to ask them with.
pub struct UpstreamDocs {
    pub services: Vec<Vec<reqwest::Url>>,
    pub http: reqwest::Client,
}

impl UpstreamDocs {
    /// The document of one service, from the first of its instances that answers.
    async fn fetch(&self, instances: &[reqwest::Url]) -> Result<utoipa::openapi::OpenApi, String> {
        let mut failure = String::from("no instance configured");
        for base in instances {
            let answer = async {
                let url = base.join(OPENAPI_PATH.trim_start_matches('/'))?;
                let response = self
                    .http
                    .get(url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok::<_, anyhow::Error>(response.json().await?)
            };
            match answer.await {
                Ok(document) => return Ok(document),
                Err(error) => failure = format!("{base}: {error:#}"),
            }
        }
        Err(failure)
    }
}

/// `GET /api/v1/openapi.json` at the gateway: every service documents its own routes, and the
/// gateway serves them merged, read afresh on each request (it is rarely asked for), so the
/// document always matches the services running behind it.
async fn merged_openapi(State(docs): State<Arc<UpstreamDocs>>) -> Response {
    let mut merged: Option<utoipa::openapi::OpenApi> = None;
    for instances in &docs.services {
        let document = match docs.fetch(instances).await {
            Ok(document) => document,
            Err(failure) => {
                tracing::warn!(%failure, "a service's OpenAPI document is unavailable");
                return Problem::new(
                    ErrorCode::Unavailable,
                    "a service behind the gateway does not answer; try again shortly",
                )
                .with_retry_after(1)
                .into_response();
            }
        };
        match &mut merged {
            Some(merged) => merged.merge(document),
            None => merged = Some(document),
        }
    }
    axum::Json(merged.unwrap_or_default()).into_response()
}

fn operations(checks: Vec<Arc<dyn ReadyCheck>>) -> OpenApiRouter {
    let state = OpsState {
        checks: Arc::new(checks),
        metrics: metrics_handle(),
    };
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .with_state(state)
}

/// Metrics, panics as problems, request ids and request spans, for every route.
/// `api` (a router [`with_operations`] or [`gateway_with_operations`] made) with the pages of
/// the web shop beside it, under the same layers; the pages call `api` in process.
pub fn with_pages(api: Router) -> Router {
    shared_layers(boxoffice_web::router(api.clone())).merge(api)
}

fn shared_layers(router: Router) -> Router {
    router
        .layer(middleware::from_fn(refuse_oversized_body))
        .layer(middleware::from_fn(track_http))
        .layer(CatchPanicLayer::custom(panic_to_problem))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        uri = %request.uri().path(),
                        request_id = %request_id,
                    )
                })
                // One line per answered request at info level (the access log), under a target of
                // its own so that `RUST_LOG=…,boxoffice::access=off` silences it alone.
                .on_response(
                    |response: &Response, latency: Duration, _span: &tracing::Span| {
                        tracing::info!(
                            target: "boxoffice::access",
                            status = response.status().as_u16(),
                            latency_ms = latency.as_secs_f64() * 1000.0,
                            "answered"
                        );
                    },
                ),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// A request that declares a body over the contract's 64 KiB is answered 413 `body_too_large`
/// before any of it is read: waiting for (or draining) a body that will be refused anyway would
/// let a client hold the connection with a `Content-Length` it never means to send. Bodies
/// without a length (chunked) are cut off at the limit while they are read.
async fn refuse_oversized_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Problem::new(
            ErrorCode::BodyTooLarge,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Behind a trusted proxy (the gateway), the client is the last address of `X-Forwarded-For`:
/// the one the proxy appended itself. Anything a client wrote into the header comes before it
/// and is ignored, so nobody escapes a throttle by making up addresses. From any other peer the
/// header is ignored altogether.
async fn forwarded_client(
    State(trusted): State<Arc<[IpAddr]>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    if let Some(peer) = peer
        && trusted.contains(&peer.ip())
    {
        let forwarded = request
            .headers()
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .next_back()
            .and_then(|address| address.trim().parse::<IpAddr>().ok());
        if let Some(client) = forwarded {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(client, 0)));
        }
    }
    next.run(request).await
}

#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up", body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    #[schema(example = "ready")]
    status: &'static str,
    /// Each store by name: `ok` or why it failed.
    #[schema(value_type = Object)]
    checks: std::collections::BTreeMap<&'static str, String>,
}

boxoffice_shared::problem_responses!(
    struct NotReady {
        Unavailable: "a store does not answer",
    }
);

/// Every store this process depends on answers.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Every store answers", body = Readiness),
        NotReady,
    )
)]
async fn readyz(State(state): State<OpsState>) -> Response {
    let mut checks = std::collections::BTreeMap::new();
    let mut failed = Vec::new();
    for check in state.checks.iter() {
        let outcome = tokio::time::timeout(Duration::from_secs(2), check.check()).await;
        let status = match outcome {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(error)) => error,
            Err(_) => "timed out".to_owned(),
        };
        if status != "ok" {
            failed.push(format!("{}: {status}", check.name()));
        }
        checks.insert(check.name(), status);
    }
    if failed.is_empty() {
        axum::Json(Readiness {
            status: "ready",
            checks,
        })
        .into_response()
    } else {
        tracing::warn!(?failed, "not ready");
        Problem::new(
            ErrorCode::Unavailable,
            format!("not ready: {}", failed.join("; ")),
        )
        .with_retry_after(1)
        .into_response()
    }
}

/// Prometheus metrics: requests and latencies by route and status, logins, and more.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
async fn metrics(State(state): State<OpsState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Problem {
    Problem::new(ErrorCode::NotFound, "there is nothing at this path")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        ErrorCode::MethodNotAllowed,
        "this path does not support this method",
    )
}

fn panic_to_problem(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    let error = std::io::Error::other(format!("handler panicked: {message}"));
    Problem::internal(&error).into_response()
}
