//! The Gateway service: the one front door of a split deployment.
//!
//! In the default one-process deployment (`boxoffice serve`) every service is mounted on one
//! router and there is nothing for a gateway to do. When Auth, Catalog and Booking run as separate
//! processes (Booking usually as several instances), the gateway is the only address clients know:
//! it routes each `/api/v1/...` request by path to the service that owns it, balances across that
//! service's healthy instances, and streams request and response bodies through untouched, so the
//! availability stream (`text/event-stream`) works end to end. Service-to-service routes
//! (`/internal/...`) and anything else outside the public contract answer 404 `not_found` here and
//! never reach a service.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use boxoffice_gateway::{Gateway, GatewayConfig};
//!
//! let config = GatewayConfig::new(
//!     vec!["http://127.0.0.1:9001".into()],
//!     vec!["http://127.0.0.1:9002".into()],
//!     vec!["http://127.0.0.1:9003".into(), "http://127.0.0.1:9004".into()],
//! );
//! let gateway = Gateway::new(config)?;
//! let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
//! tokio::spawn(gateway.health_checks(async move { let _ = stop_rx.await; }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // `ConnectInfo` lets the gateway add the client's address to `X-Forwarded-For`.
//! let app = gateway.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
//! axum::serve(listener, app).await?;
//! # drop(stop_tx);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`config`]: [`GatewayConfig`], the upstream base URLs and timings, checked once at start-up.
//! - [`routing`]: which [`Service`] owns a path — the whole routing table in one pure function.
//! - [`balance`]: each service's instances, their health flags, and round-robin over the healthy
//!   ones.
//! - [`proxy`]: forwarding one request: hop-by-hop headers, `X-Forwarded-For`, the single retry
//!   on another instance, and the metrics.
//! - [`affinity`]: each concert's new bookings and holds sent to the instance that owns it.
//! - [`answers`]: sold-out answers repeated by the gateway itself, when it is given Auth's key
//!   ([`Gateway::answering`]).
//! - [`health`]: the background task that asks every instance's `/readyz`.
//! - [`error`]: [`GatewayError`] and its problem codes.
//!
//! # Metrics
//! - `gateway_upstream_requests_total{service, outcome}`: one per attempt at an upstream.
//!   `outcome` is `success` (any status below 500), `server_error` (the upstream answered 5xx),
//!   `connect_error` (no connection; the request never left the gateway), `failed` (the
//!   connection broke before a response) or `unavailable` (no healthy instance, nothing sent).
//! - `gateway_upstream_duration_seconds{service}`: time from sending a request to receiving the
//!   upstream's response head (for a stream, the time to open it, not its lifetime).
//! - `gateway_upstream_healthy{service, upstream}`: 1 or 0, after every health check.
//! - `gateway_answered_total{status}`: requests the gateway answered itself with a kept answer.

pub mod affinity;
pub mod answers;
pub mod balance;
pub mod config;
pub mod error;
pub mod health;
pub mod proxy;
pub mod routing;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::any;

pub use answers::Answering;
pub use balance::UpstreamStatus;
pub use config::{ConfigError, GatewayConfig};
pub use error::GatewayError;
pub use routing::Service;

/// A running gateway: the upstream pools, their health, and the HTTP client. Cheap to clone; every
/// clone shares the same state.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<proxy::Proxy>,
}

impl Gateway {
    /// Checks the configuration and builds the client and the upstream pools. Every instance
    /// starts out healthy, so the gateway serves at once; the first health round (and the first
    /// failed connection) corrects that within moments.
    pub fn new(config: GatewayConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            inner: Arc::new(proxy::Proxy::new(config, None)?),
        })
    }

    /// [`Gateway::new`], and the gateway repeats Booking's sold-out answers itself for callers
    /// it checks with `answering` ([`answers`]).
    pub fn answering(config: GatewayConfig, answering: Answering) -> Result<Self, ConfigError> {
        Ok(Self {
            inner: Arc::new(proxy::Proxy::new(config, Some(answering))?),
        })
    }

    /// The public routes of every service, forwarded to their owners. Everything else — including
    /// `/internal/...` — is a 404 `not_found` problem.
    ///
    /// The proxied families are explicit routes (`/api/v1/concerts/{*rest}`, ...) rather than a
    /// catch-all, so the binary may merge its own routes (`/healthz`, `/readyz`, `/metrics`,
    /// `/api/v1/openapi.json`) into this router, and a per-route metrics layer sees a bounded set
    /// of route labels. The 404 is the router's fallback; a caller that sets its own fallback
    /// replaces it. Serve it with `into_make_service_with_connect_info::<SocketAddr>()` to get
    /// `X-Forwarded-For`.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        for path in routing::ROUTES {
            router = router.route(path, any(proxy::forward));
        }
        router
            .fallback(proxy::not_found)
            .with_state(self.inner.clone())
    }

    /// The health-check loop: every `health_interval`, `GET {upstream}/readyz` on every instance
    /// and mark it up (200) or down (anything else, or no answer within `health_timeout`). Runs
    /// until `stop` resolves — including in the middle of a round — and returns. Spawn it once
    /// per gateway (e.g. on the binary's task tracker, with its cancellation token as `stop`).
    /// Without it an instance marked down after a failed connection is never tried again.
    pub fn health_checks<F>(&self, stop: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        health::run(self.inner.clone(), stop)
    }

    /// Every upstream instance and whether it is currently taken to be healthy.
    pub fn upstream_status(&self) -> Vec<UpstreamStatus> {
        self.inner.upstream_status()
    }

    /// `Ok` when every service has at least one healthy instance; otherwise which ones have none,
    /// in a form fit for a `/readyz` answer.
    pub fn ready(&self) -> Result<(), String> {
        let missing: Vec<&str> = Service::ALL
            .into_iter()
            .filter(|service| !self.inner.pool(*service).any_healthy())
            .map(Service::as_str)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no healthy instance of {}", missing.join(", ")))
        }
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("upstreams", &self.upstream_status())
            .finish()
    }
}
