//! The service contracts of [`crate::clients`] over HTTP, for a split deployment.
//!
//! In one process, Catalog holds Booking itself as its [`Inventory`]. When services run apart,
//! the owning service mounts one of the routers below and the calling service holds the matching
//! client instead; neither side changes, because both speak the same trait.
//!
//! | trait (caller → owner)                     | owner mounts         | caller holds        |
//! | ------------------------------------------ | -------------------- | ------------------- |
//! | [`Inventory`] (Catalog → Booking)          | [`inventory_routes`] | [`RemoteInventory`] |
//! | [`OutboxSource`] (Notifications → Booking) | [`outbox_routes`]    | [`RemoteOutbox`]    |
//! | [`UserDirectory`] (Notifications → Auth)   | [`directory_routes`] | [`RemoteDirectory`] |
//! | [`RevocationSource`] (any service → Auth)  | [`directory_routes`] | [`RemoteRevocations`] |
//!
//! Booking usually runs as several instances on one database, any of which can answer Catalog
//! and Notifications; [`Failover`] holds one client per instance and moves on to the next when
//! one is [`ClientError::Unavailable`].
//!
//! **What crosses** is exactly the DTOs of [`crate::clients`] as JSON, each trait method one
//! route under `/internal/v1`; commands answer `204 No Content`. A refusal travels as the usual
//! `application/problem+json` document and comes back out of the client as
//! [`ClientError::Rejected`] with the same [`ErrorCode`], so a caller cannot tell a remote
//! refusal from an in-process one. Anything that says "the peer is not working" (no connection,
//! a timeout, a 5xx, an answer that is not the contract's) comes out as
//! [`ClientError::Unavailable`], which every caller already treats as "retry later". So does a
//! 401/403: a refused service credential is the deployment's fault, not the end user's, and must
//! not reach them as *their* `unauthenticated`. The clients never retry on their own.
//!
//! **Authentication**: every internal route wants `Authorization: Bearer <service credential>`,
//! a shared secret of at least 32 bytes ([`ServiceCredential`]) compared in constant time; a
//! missing or wrong one is 401 `unauthenticated` before the request body is even read.
//!
//! **Exposure**: these routes are for the private network between services. The gateway forwards
//! `/api/v1/...` only and never `/internal/...`, so end users cannot reach them; the credential
//! is a second fence, not the only one. The routers carry no fallback, so they merge into a
//! service's router, whose own 404/405 fallbacks then apply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::{constant_time, digest};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Router, extract::Path};
use reqwest::{Method, RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clients::{
    Availability, ClientError, ConcertInventory, Contact, Inventory, OutboxMessage, OutboxSource,
    RevocationSource, RevokedSession, UserDirectory,
};
use crate::extract::Json;
use crate::problem::{ErrorChain, ErrorCode, Problem};
use crate::token::bearer_token;

/// How long a client waits for a whole exchange (connect, send, read the answer) by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared secret services present to each other. Never printed (`Debug` redacts it).
#[derive(Clone)]
pub struct ServiceCredential(SecretString);

/// Why a string cannot be a [`ServiceCredential`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCredential {
    #[error(
        "the service credential must be at least {min} bytes, got {0}; generate one with `openssl rand -hex 32`",
        min = ServiceCredential::MIN_LEN
    )]
    TooShort(usize),
    /// It must travel as-is in an `Authorization` header.
    #[error("the service credential may only contain visible ASCII characters (no spaces)")]
    NotVisibleAscii,
}

impl ServiceCredential {
    /// The shortest secret accepted: 32 bytes, so that guessing is hopeless.
    pub const MIN_LEN: usize = 32;

    pub fn parse(secret: impl Into<String>) -> Result<Self, InvalidCredential> {
        let secret = SecretString::from(secret.into());
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < Self::MIN_LEN {
            return Err(InvalidCredential::TooShort(bytes.len()));
        }
        if !bytes.iter().all(u8::is_ascii_graphic) {
            return Err(InvalidCredential::NotVisibleAscii);
        }
        Ok(Self(secret))
    }

    /// Presents this credential on a call to a peer.
    pub fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        request.bearer_auth(self.0.expose_secret())
    }

    /// Compares digests rather than the strings so that neither the content nor the length of
    /// the secret leaks through timing.
    fn matches(&self, presented: &str) -> bool {
        let expected = digest::digest(&digest::SHA256, self.0.expose_secret().as_bytes());
        let presented = digest::digest(&digest::SHA256, presented.as_bytes());
        constant_time::verify_slices_are_equal(expected.as_ref(), presented.as_ref()).is_ok()
    }
}

impl std::fmt::Debug for ServiceCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceCredential([redacted])")
    }
}

// ----- server side -----

/// The routes through which Booking serves [`Inventory`] to Catalog.
pub fn inventory_routes(inner: Arc<dyn Inventory>, credential: ServiceCredential) -> Router {
    let routes = Router::new()
        .route("/internal/v1/inventory/concerts/{id}", put(put_concert))
        .route(
            "/internal/v1/inventory/concerts/{id}/cancel",
            post(cancel_concert),
        )
        .route(
            "/internal/v1/inventory/seat-types/{id}/capacity",
            put(put_capacity),
        )
        // POST, not GET with a query: a catalog page may ask about many concerts at once.
        .route(
            "/internal/v1/inventory/availability",
            post(read_availability),
        )
        .with_state(inner);
    guarded(routes, credential)
}

/// The routes through which Booking serves its outbox ([`OutboxSource`]) to Notifications.
pub fn outbox_routes(inner: Arc<dyn OutboxSource>, credential: ServiceCredential) -> Router {
    let routes = Router::new()
        .route("/internal/v1/outbox/claim", post(claim_messages))
        .route("/internal/v1/outbox/depth", get(get_depth))
        .route("/internal/v1/outbox/ack", post(acknowledge_messages))
        // One message at a time: what workers of the previous release call; kept so that a
        // rolling upgrade does not make them send every email again.
        .route("/internal/v1/outbox/{id}/ack", post(acknowledge_message))
        .route("/internal/v1/outbox/{id}/retry", post(retry_message))
        .with_state(inner);
    guarded(routes, credential)
}

/// The routes through which Auth serves its [`UserDirectory`] to Notifications and its
/// [`RevocationSource`] to every service that verifies tokens.
pub fn directory_routes<T>(inner: Arc<T>, credential: ServiceCredential) -> Router
where
    T: UserDirectory + RevocationSource + 'static,
{
    let users: Arc<dyn UserDirectory> = inner.clone();
    let sessions: Arc<dyn RevocationSource> = inner;
    let routes = Router::new()
        .route("/internal/v1/users/{id}/contact", get(get_contact))
        .with_state(users)
        .merge(
            Router::new()
                .route("/internal/v1/sessions/revoked", get(get_revoked_sessions))
                .with_state(sessions),
        );
    guarded(routes, credential)
}

/// `routes`, answered only to callers that present `credential` (the deployment's other
/// processes); anyone else gets 401.
pub fn guarded(routes: Router, credential: ServiceCredential) -> Router {
    routes.route_layer(middleware::from_fn_with_state(
        credential,
        require_credential,
    ))
}

/// Lets a request through only with the service credential. It runs before the handler's
/// extractors, so an unauthenticated caller learns nothing, not even whether its body was valid.
async fn require_credential(
    State(credential): State<ServiceCredential>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match bearer_token(&parts) {
        Ok(token) if credential.matches(token) => next.run(Request::from_parts(parts, body)).await,
        outcome => {
            tracing::warn!(path = %parts.uri.path(), "internal call without a valid service credential");
            let detail = match outcome {
                Ok(_) => "the service credential is not valid".to_owned(),
                Err(problem) => problem.detail,
            };
            Problem::new(ErrorCode::Unauthenticated, detail).into_response()
        }
    }
}

/// A UUID path segment; anything else names no resource (404 `not_found`, as problem+json).
struct Id(Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || Problem::new(ErrorCode::NotFound, "no resource has this id");
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        raw.parse().map(Id).map_err(|_| not_found())
    }
}

#[derive(Serialize, Deserialize)]
struct CapacityBody {
    capacity: i64,
}

#[derive(Serialize, Deserialize)]
struct AvailabilityRequest {
    concert_ids: Vec<Uuid>,
}

/// Concerts Booking does not know are left out, as in [`Inventory::availability`].
#[derive(Serialize, Deserialize)]
struct AvailabilityBody {
    concerts: Vec<Availability>,
}

#[derive(Serialize, Deserialize)]
struct ClaimRequest {
    limit: u32,
    lease_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct ClaimBody {
    messages: Vec<OutboxMessage>,
}

#[derive(Serialize, Deserialize)]
struct AcknowledgeRequest {
    message_ids: Vec<Uuid>,
}

/// The most message ids one acknowledgement may carry (a worker sends one claim's worth).
pub const MAX_ACKNOWLEDGED: usize = 1000;

#[derive(Serialize, Deserialize)]
struct RetryRequest {
    #[serde(with = "time::serde::rfc3339")]
    retry_at: OffsetDateTime,
    error: String,
}

#[derive(Serialize, Deserialize)]
struct DepthBody {
    depth: u64,
}

type InventoryState = State<Arc<dyn Inventory>>;
type OutboxState = State<Arc<dyn OutboxSource>>;

async fn put_concert(
    State(inner): InventoryState,
    Id(id): Id,
    Json(concert): Json<ConcertInventory>,
) -> Result<StatusCode, Problem> {
    if concert.concert_id != id {
        return Err(Problem::invalid_field(
            "concert_id",
            "must be the concert id of the path",
        ));
    }
    inner.provision(&concert).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_capacity(
    State(inner): InventoryState,
    Id(id): Id,
    Json(body): Json<CapacityBody>,
) -> Result<StatusCode, Problem> {
    inner.set_capacity(id, body.capacity).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn cancel_concert(State(inner): InventoryState, Id(id): Id) -> Result<StatusCode, Problem> {
    inner.cancel_concert(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn read_availability(
    State(inner): InventoryState,
    Json(body): Json<AvailabilityRequest>,
) -> Result<Json<AvailabilityBody>, Problem> {
    let found = inner.availability(&body.concert_ids).await?;
    Ok(Json(AvailabilityBody {
        concerts: found.into_values().collect(),
    }))
}

async fn claim_messages(
    State(inner): OutboxState,
    Json(body): Json<ClaimRequest>,
) -> Result<Json<ClaimBody>, Problem> {
    let lease = Duration::from_millis(body.lease_ms);
    let messages = inner.claim(body.limit, lease).await?;
    Ok(Json(ClaimBody { messages }))
}

async fn acknowledge_messages(
    State(inner): OutboxState,
    Json(body): Json<AcknowledgeRequest>,
) -> Result<StatusCode, Problem> {
    if body.message_ids.len() > MAX_ACKNOWLEDGED {
        return Err(Problem::invalid_field(
            "message_ids",
            format!("at most {MAX_ACKNOWLEDGED} per acknowledgement"),
        ));
    }
    inner.acknowledge(&body.message_ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn acknowledge_message(State(inner): OutboxState, Id(id): Id) -> Result<StatusCode, Problem> {
    inner.acknowledge(&[id]).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn retry_message(
    State(inner): OutboxState,
    Id(id): Id,
    Json(body): Json<RetryRequest>,
) -> Result<StatusCode, Problem> {
    inner.retry_later(id, body.retry_at, &body.error).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_depth(State(inner): OutboxState) -> Result<Json<DepthBody>, Problem> {
    Ok(Json(DepthBody {
        depth: inner.depth().await?,
    }))
}

/// An unknown user is `200 null`, not a 404: a 404 from whatever else answers at a misrouted
/// address must never read as "this user is gone" (which would drop their email).
async fn get_contact(
    State(inner): State<Arc<dyn UserDirectory>>,
    Id(id): Id,
) -> Result<Json<Option<Contact>>, Problem> {
    Ok(Json(inner.contact(id).await?))
}

#[derive(Serialize, Deserialize)]
struct RevokedBody {
    sessions: Vec<RevokedSession>,
}

async fn get_revoked_sessions(
    State(inner): State<Arc<dyn RevocationSource>>,
) -> Result<Json<RevokedBody>, Problem> {
    Ok(Json(RevokedBody {
        sessions: inner.revoked_sessions().await?,
    }))
}

// ----- client side -----

/// What every client shares: where the peer is, how to prove who we are, how long to wait.
#[derive(Debug, Clone)]
struct Peer {
    /// The peer's root, e.g. `http://booking:8080` (a path prefix is kept).
    base: Url,
    credential: ServiceCredential,
    http: reqwest::Client,
    /// Per request, so that one hung peer cannot stall a worker for ever.
    timeout: Duration,
}

impl Peer {
    fn new(base: Url, credential: ServiceCredential, http: reqwest::Client) -> Self {
        Self {
            base,
            credential,
            http,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        // Only fails for URLs that cannot have a path (`mailto:`); reqwest refuses those anyway.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["internal", "v1"])
                .extend(segments);
        }
        let request = self.http.request(method, url).timeout(self.timeout);
        self.credential.authorize(request)
    }

    /// Sends the request; a success is returned, anything else becomes the [`ClientError`].
    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(unavailable)?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(refusal(response).await)
        }
    }

    async fn read<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        self.send(request).await?.json().await.map_err(unavailable)
    }
}

fn unavailable(error: reqwest::Error) -> ClientError {
    ClientError::Unavailable(ErrorChain(&error).to_string())
}

/// The problem document of a refusal, as far as the client needs it.
#[derive(Deserialize)]
struct WireProblem {
    code: String,
    #[serde(default)]
    detail: String,
}

async fn refusal(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let url = response.url().clone();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/problem+json"));
    let problem = match is_problem {
        true => response.json::<WireProblem>().await.ok(),
        false => None,
    };
    let code = problem.as_ref().and_then(|p| ErrorCode::parse(&p.code));
    match (code, problem) {
        (Some(code), Some(problem))
            if status.is_client_error()
                && status != StatusCode::UNAUTHORIZED
                && status != StatusCode::FORBIDDEN =>
        {
            ClientError::Rejected {
                code,
                detail: problem.detail,
            }
        }
        (_, Some(problem)) => ClientError::Unavailable(format!(
            "{url} answered {status} ({}): {}",
            problem.code, problem.detail
        )),
        (_, None) => ClientError::Unavailable(format!(
            "{url} answered {status} without a problem document"
        )),
    }
}

macro_rules! remote_client {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(Peer);

        impl $name {
            /// A client of the service at `base_url` (its root; the `/internal/v1/...` paths
            /// are appended), presenting `credential`, with a [`DEFAULT_TIMEOUT`] per request.
            pub fn new(base_url: Url, credential: ServiceCredential, http: reqwest::Client) -> Self {
                Self(Peer::new(base_url, credential, http))
            }

            /// Replaces the per-request timeout.
            pub fn with_timeout(mut self, timeout: Duration) -> Self {
                self.0.timeout = timeout;
                self
            }
        }
    };
}

remote_client!(
    /// [`Inventory`] over HTTP: Catalog's handle on a Booking service elsewhere.
    RemoteInventory
);
remote_client!(
    /// [`OutboxSource`] over HTTP: the notifications worker's handle on Booking's outbox.
    RemoteOutbox
);
remote_client!(
    /// [`UserDirectory`] over HTTP: the notifications worker's handle on Auth.
    RemoteDirectory
);

remote_client!(
    /// [`RevocationSource`] over HTTP: a verifying service's handle on Auth's revoked sessions.
    RemoteRevocations
);

#[async_trait]
impl Inventory for RemoteInventory {
    async fn provision(&self, concert: &ConcertInventory) -> Result<(), ClientError> {
        let id = concert.concert_id.to_string();
        let request = self.0.request(Method::PUT, &["inventory", "concerts", &id]);
        self.0.send(request.json(concert)).await.map(drop)
    }

    async fn set_capacity(&self, seat_type_id: Uuid, capacity: i64) -> Result<(), ClientError> {
        let id = seat_type_id.to_string();
        let request = self
            .0
            .request(Method::PUT, &["inventory", "seat-types", &id, "capacity"]);
        self.0
            .send(request.json(&CapacityBody { capacity }))
            .await
            .map(drop)
    }

    async fn cancel_concert(&self, concert_id: Uuid) -> Result<(), ClientError> {
        let id = concert_id.to_string();
        let request = self
            .0
            .request(Method::POST, &["inventory", "concerts", &id, "cancel"]);
        self.0.send(request).await.map(drop)
    }

    async fn availability(
        &self,
        concert_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Availability>, ClientError> {
        let body = AvailabilityRequest {
            concert_ids: concert_ids.to_vec(),
        };
        let request = self.0.request(Method::POST, &["inventory", "availability"]);
        let answer: AvailabilityBody = self.0.read(request.json(&body)).await?;
        Ok(answer
            .concerts
            .into_iter()
            .map(|availability| (availability.concert_id, availability))
            .collect())
    }
}

#[async_trait]
impl OutboxSource for RemoteOutbox {
    async fn claim(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxMessage>, ClientError> {
        let body = ClaimRequest {
            limit,
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        };
        let request = self.0.request(Method::POST, &["outbox", "claim"]);
        let answer: ClaimBody = self.0.read(request.json(&body)).await?;
        Ok(answer.messages)
    }

    async fn acknowledge(&self, message_ids: &[Uuid]) -> Result<(), ClientError> {
        for chunk in message_ids.chunks(MAX_ACKNOWLEDGED) {
            let body = AcknowledgeRequest {
                message_ids: chunk.to_vec(),
            };
            let request = self.0.request(Method::POST, &["outbox", "ack"]);
            self.0.send(request.json(&body)).await?;
        }
        Ok(())
    }

    async fn retry_later(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), ClientError> {
        let id = message_id.to_string();
        let body = RetryRequest {
            retry_at,
            error: error.to_owned(),
        };
        let request = self.0.request(Method::POST, &["outbox", &id, "retry"]);
        self.0.send(request.json(&body)).await.map(drop)
    }

    async fn depth(&self) -> Result<u64, ClientError> {
        let request = self.0.request(Method::GET, &["outbox", "depth"]);
        let answer: DepthBody = self.0.read(request).await?;
        Ok(answer.depth)
    }
}

#[async_trait]
impl UserDirectory for RemoteDirectory {
    async fn contact(&self, user_id: Uuid) -> Result<Option<Contact>, ClientError> {
        let id = user_id.to_string();
        let request = self.0.request(Method::GET, &["users", &id, "contact"]);
        self.0.read(request).await
    }
}

#[async_trait]
impl RevocationSource for RemoteRevocations {
    async fn revoked_sessions(&self) -> Result<Vec<RevokedSession>, ClientError> {
        let request = self.0.request(Method::GET, &["sessions", "revoked"]);
        let answer: RevokedBody = self.0.read(request).await?;
        Ok(answer.sessions)
    }
}

/// One client per instance of a service that runs as several (Booking, maybe Auth), used in
/// turn: each call starts at the next instance and moves on while the answer is
/// [`ClientError::Unavailable`]. A refusal ([`ClientError::Rejected`]) is an answer and ends the
/// call. When every instance fails, the last failure is returned.
///
/// Resending a call to another instance is safe for every contract routed through it: the
/// inventory commands are idempotent (`PUT`s and a cancel), an availability read has no effect,
/// and an outbox claim whose answer was lost only leases its messages until the lease runs out.
#[derive(Debug)]
pub struct Failover<T> {
    peers: Vec<T>,
    next: std::sync::atomic::AtomicUsize,
}

impl<T> Failover<T> {
    /// Panics without peers: a configuration with none is refused before this is built.
    pub fn new(peers: Vec<T>) -> Self {
        assert!(!peers.is_empty(), "Failover needs at least one peer");
        Self {
            peers,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The peers in the order this call tries them.
    fn order(&self) -> impl Iterator<Item = &T> {
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let count = self.peers.len();
        (0..count).map(move |offset| &self.peers[(start + offset) % count])
    }
}

/// Runs `$call` on each peer in turn until one answers (anything but `Unavailable`).
macro_rules! first_answer {
    ($failover:expr, |$peer:ident| $call:expr) => {{
        let mut failure = None;
        for $peer in $failover.order() {
            match $call.await {
                Err(ClientError::Unavailable(reason)) => failure = Some(reason),
                answer => return answer,
            }
        }
        Err(ClientError::Unavailable(
            failure.unwrap_or_else(|| "no instance configured".to_owned()),
        ))
    }};
}

#[async_trait]
impl<T: Inventory> Inventory for Failover<T> {
    async fn provision(&self, concert: &ConcertInventory) -> Result<(), ClientError> {
        first_answer!(self, |peer| peer.provision(concert))
    }

    async fn set_capacity(&self, seat_type_id: Uuid, capacity: i64) -> Result<(), ClientError> {
        first_answer!(self, |peer| peer.set_capacity(seat_type_id, capacity))
    }

    async fn cancel_concert(&self, concert_id: Uuid) -> Result<(), ClientError> {
        first_answer!(self, |peer| peer.cancel_concert(concert_id))
    }

    async fn availability(
        &self,
        concert_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Availability>, ClientError> {
        first_answer!(self, |peer| peer.availability(concert_ids))
    }
}

#[async_trait]
impl<T: OutboxSource> OutboxSource for Failover<T> {
    async fn claim(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxMessage>, ClientError> {
        first_answer!(self, |peer| peer.claim(limit, lease))
    }

    async fn acknowledge(&self, message_ids: &[Uuid]) -> Result<(), ClientError> {
        first_answer!(self, |peer| peer.acknowledge(message_ids))
    }

    async fn retry_later(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), ClientError> {
        first_answer!(self, |peer| peer.retry_later(message_id, retry_at, error))
    }

    async fn depth(&self) -> Result<u64, ClientError> {
        first_answer!(self, |peer| peer.depth())
    }
}

#[async_trait]
impl<T: UserDirectory> UserDirectory for Failover<T> {
    async fn contact(&self, user_id: Uuid) -> Result<Option<Contact>, ClientError> {
        first_answer!(self, |peer| peer.contact(user_id))
    }
}

#[async_trait]
impl<T: RevocationSource> RevocationSource for Failover<T> {
    async fn revoked_sessions(&self) -> Result<Vec<RevokedSession>, ClientError> {
        first_answer!(self, |peer| peer.revoked_sessions())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn credentials_are_long_printable_and_never_shown() {
        assert_eq!(
            ServiceCredential::parse("short").unwrap_err(),
            InvalidCredential::TooShort(5)
        );
        assert_eq!(
            ServiceCredential::parse(format!("{} x", "a".repeat(32))).unwrap_err(),
            InvalidCredential::NotVisibleAscii
        );
        let secret = "s3cret-".repeat(5);
        let credential = ServiceCredential::parse(secret.clone()).unwrap();
        assert!(!format!("{credential:?}").contains("s3cret"));
        assert!(credential.matches(&secret));
        assert!(!credential.matches(&secret[1..]));
        assert!(!credential.matches(""));
    }

    #[test]
    fn request_urls_keep_the_base_path() {
        let credential = ServiceCredential::parse("k".repeat(32)).unwrap();
        let http = reqwest::Client::new();
        for base in ["http://booking:8080", "http://booking:8080/"] {
            let peer = Peer::new(base.parse().unwrap(), credential.clone(), http.clone());
            let request = peer
                .request(Method::GET, &["outbox", "depth"])
                .build()
                .unwrap();
            assert_eq!(
                request.url().as_str(),
                "http://booking:8080/internal/v1/outbox/depth"
            );
        }
        let peer = Peer::new("http://lb/booking/".parse().unwrap(), credential, http);
        let request = peer
            .request(Method::GET, &["outbox", "depth"])
            .build()
            .unwrap();
        assert_eq!(
            request.url().as_str(),
            "http://lb/booking/internal/v1/outbox/depth"
        );
    }
}
