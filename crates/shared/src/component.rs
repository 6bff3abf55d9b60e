//! What opening a service gives the process that runs it, and what every opening shares.
//!
//! Each service crate has an `open` module that builds the service for one process — in process
//! with its peers, or as one process of a split deployment — and returns it with a
//! [`Component`]: the `/internal/v1` routes it serves to its peers, what `/readyz` asks of it
//! ([`ReadyCheck`]s), and the stores to close at the end; its background tasks run on the
//! [`Wiring`]'s tracker. The server binary only decides which services a process runs and merges
//! their components.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
pub use reqwest::Url;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::db::Store;
use crate::remote::{Failover, ServiceCredential};
use crate::revocation::Follower;

/// Something `/readyz` asks.
pub trait ReadyCheck: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// What one service adds to the process beside its public routes.
pub struct Component {
    /// The `/internal/v1` routes it serves to its peers (none in one process).
    pub internal: Router,
    /// What `/readyz` asks of it, in the order they are listed.
    pub checks: Vec<Arc<dyn ReadyCheck>>,
    /// Its stores, to close once every task has finished.
    pub stores: Vec<Store>,
}

impl Default for Component {
    fn default() -> Self {
        Self {
            internal: Router::new(),
            checks: Vec::new(),
            stores: Vec::new(),
        }
    }
}

impl Component {
    /// Adds `other`'s routes, checks (after this one's) and stores.
    pub fn merge(&mut self, other: Component) {
        self.internal = std::mem::take(&mut self.internal).merge(other.internal);
        self.checks.extend(other.checks);
        self.stores.extend(other.stores);
    }

    /// Serves `routes` to the peers.
    pub fn serve(&mut self, routes: Router) {
        self.internal = std::mem::take(&mut self.internal).merge(routes);
    }

    /// Asks `check` at `/readyz`.
    pub fn check(&mut self, check: impl ReadyCheck + 'static) {
        self.checks.push(Arc::new(check));
    }

    /// A store of this component: `/readyz` pings it as `name`, and it is closed at the end.
    pub fn store(&mut self, name: &'static str, store: Store) {
        self.check(StoreCheck::new(name, store.clone()));
        self.stores.push(store);
    }
}

/// Where a peer service is: in this process, or behind these URLs (tried in turn).
pub enum Peer<'a, T> {
    InProcess(T),
    Remote(&'a [Url]),
}

/// What every opening shares: where background tasks run and when they stop, and how to reach
/// the peers this process calls.
pub struct Wiring<'a> {
    /// Background tasks are spawned here…
    pub tasks: &'a TaskTracker,
    /// …and stop when this is cancelled.
    pub stop: &'a CancellationToken,
    /// Whether this process is part of a split deployment (and so serves `/internal/v1`).
    pub split: bool,
    /// The secret that guards `/internal/v1`, on both sides of a peer call.
    credential: Option<ServiceCredential>,
    /// The HTTP client for peer calls.
    http: reqwest::Client,
}

impl<'a> Wiring<'a> {
    /// The wiring of one process, with one HTTP client for every peer call.
    pub fn new(
        tasks: &'a TaskTracker,
        stop: &'a CancellationToken,
        split: bool,
        credential: Option<ServiceCredential>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            // Below the peers' idle timeout (`--header-timeout`, 10 s by default): this side
            // drops an idle connection first, never reusing one as the peer closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client for peer services")?;
        Ok(Self {
            tasks,
            stop,
            split,
            credential,
            http,
        })
    }

    /// The secret that guards `/internal/v1`.
    pub fn peer_credential(&self) -> anyhow::Result<ServiceCredential> {
        self.credential
            .clone()
            .context("peer calls need BOXOFFICE_SERVICE_TOKEN")
    }

    /// The HTTP client for peer calls (keep-alive connections pooled per peer).
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// One client per peer URL, tried in turn. `client` is a `Remote*::new`.
    pub fn failover<T>(
        &self,
        urls: &[Url],
        client: impl Fn(Url, ServiceCredential, reqwest::Client) -> T,
    ) -> anyhow::Result<Arc<Failover<T>>> {
        let credential = self.peer_credential()?;
        let clients = urls
            .iter()
            .map(|url| client(url.clone(), credential.clone(), self.http.clone()));
        Ok(Arc::new(Failover::new(clients.collect())))
    }

    /// A future that resolves when the process stops, for a task to end on.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let stop = self.stop.clone();
        async move { stop.cancelled().await }
    }
}

/// Readiness of one service's store.
pub struct StoreCheck {
    name: &'static str,
    store: Store,
}

impl StoreCheck {
    pub fn new(name: &'static str, store: Store) -> Self {
        Self { name, store }
    }
}

impl ReadyCheck for StoreCheck {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move { self.store.ping().await.map_err(|error| error.to_string()) })
    }
}

/// Readiness of a service that verifies tokens without running Auth: it has read Auth's list of
/// revoked sessions at least once.
pub struct RevocationCheck(pub Follower);

impl ReadyCheck for RevocationCheck {
    fn name(&self) -> &'static str {
        "revoked_sessions"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let ready = self.0.is_ready();
        Box::pin(async move {
            match ready {
                true => Ok(()),
                false => Err("not yet read from auth".to_owned()),
            }
        })
    }
}
