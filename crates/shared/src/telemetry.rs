//! Logs and metrics.
//!
//! Logs go through `tracing`: human-readable by default, one JSON object per line with
//! `--log-format json`. Metrics go to a process-wide Prometheus recorder that `/metrics` renders;
//! [`track_http`] records a count and a latency histogram per route, method and status.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// Installs the global tracing subscriber. `RUST_LOG` overrides the default filter
/// (`info` for boxoffice, `warn` for libraries). Calling it twice is harmless.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "warn,boxoffice=info,boxoffice_shared=info,boxoffice_auth=info,tower_http=warn",
        )
    });
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        // Colour codes only for a terminal: redirected to a file or a log collector they are
        // noise.
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
            .try_init(),
    };
    // A second call (tests start many servers in one process) finds a subscriber installed.
    let _ = result;
}

/// Latency buckets (seconds) for request histograms: fine-grained below 25 ms, where bookings live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".to_owned()),
                    LATENCY_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            describe_metrics();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// The `# HELP` text of every series boxoffice records, in one place so that `/metrics` explains
/// itself. A series recorded without a description here still renders, without help.
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a request's head to its response's head, by route template, method and status"
    );
    describe_counter!(
        "http_connections_shed_total",
        "Connections answered 503 and closed because the server held its maximum of connections"
    );
    describe_counter!("auth_logins_total", "Login attempts, by outcome");
    describe_counter!("auth_registrations_total", "Registrations, by outcome");
    describe_counter!(
        "auth_refresh_reuse_total",
        "Refresh tokens presented a second time (the session is revoked)"
    );
    describe_counter!(
        "auth_throttle_redis_errors_total",
        "Throttle decisions taken on the local count because Redis did not answer"
    );
    describe_counter!("bookings_total", "Booking requests, by outcome");
    describe_counter!("bookings_cancelled_total", "Bookings cancelled");
    describe_histogram!(
        "booking_writer_batch_size",
        "Bookings and cancels committed together in one transaction by the booking writer"
    );
    describe_counter!("catalog_concerts_created_total", "Concerts created");
    describe_counter!(
        "emails_sent_total",
        "Emails handed to the mail transport, by kind"
    );
    describe_counter!(
        "email_failures_total",
        "Email sends that failed and will be retried, by reason"
    );
    describe_gauge!(
        "outbox_depth",
        "Emails queued in the outbox and not yet sent"
    );
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The recorder keeps every histogram sample until it is folded into its buckets, which
/// `render` (a scrape of `/metrics`) or `run_upkeep` does. A server nobody scrapes would keep
/// every request's sample forever (about 24 bytes of memory per request, measured); a thread of its own folds them every [`UPKEEP_INTERVAL`],
/// whatever runtime (or none) the process has.
fn spawn_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "no metrics upkeep thread: histograms are folded only on scrape");
    }
}

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// The request counter and latency histogram of one (method, status) of a route.
type Handles = (metrics::Counter, metrics::Histogram);

/// A route's [`Handles`] by method label and status code.
type ByOutcome = HashMap<(&'static str, u16), Handles>;

thread_local! {
    /// Each worker thread's handles to the series it has recorded into, by route template, then
    /// method and status: a request looks them up by reference instead of building three label
    /// strings and asking the recorder's registry twice. The handles point at the recorder's
    /// shared series, so every thread counts into the same numbers. Bounded: route templates,
    /// the methods of [`method_label`] and status codes are all finite sets.
    static ROUTE_METRICS: RefCell<HashMap<Box<str>, ByOutcome>> =
        RefCell::new(HashMap::new());
}

/// The method as a label. Any method outside the standard ones is `other`: a client may send
/// any token as a method, and each would otherwise become a series of its own.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Middleware: counts requests and records their latency by route template, method and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    ROUTE_METRICS.with_borrow_mut(|routes| {
        if !routes.contains_key(route) {
            routes.insert(route.into(), HashMap::new());
        }
        let Some(by_outcome) = routes.get_mut(route) else {
            return;
        };
        let (requests, latency) = by_outcome.entry((method, status)).or_insert_with(|| {
            let labels = [
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ];
            (
                metrics::counter!("http_requests_total", &labels),
                metrics::histogram!("http_request_duration_seconds", &labels),
            )
        });
        requests.increment(1);
        latency.record(elapsed);
    });
    response
}
