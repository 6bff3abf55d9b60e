//! Opening each service for this process's roles: in process, or as one process of a split
//! deployment.
//!
//! Each service has a module here whose `open` builds the service from the [`Config`], spawns
//! its background tasks and returns it with its [`Component`]: the `/internal/v1` routes it
//! serves to its peers, what `/readyz` asks of it, and the stores to close at the end.
//! [`crate::app`] only sequences these openings and merges their components.
//!
//! # Layout
//! - [`auth`]: the Auth store and keys ([`auth::open_auth`]), the token verifier of a process
//!   without Auth, and the follower of Auth's revocations.
//! - [`booking`]: the Booking store and writer, its write limits, and the inventory and outbox
//!   routes.
//! - [`notifications`]: the mail transport and the worker that sends Booking's outbox.
//! - [`catalog`]: the Catalog store, its migrations and its reconciler.
//!
//! These openings live in the binary crate rather than in each service crate because they read
//! the binary's [`Config`] (storage, roles, peers, keys) and produce [`ReadyCheck`]s for
//! [`crate::ops`]; the service crates keep exposing only their building blocks.

pub mod auth;
pub mod booking;
pub mod catalog;
pub mod notifications;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use boxoffice_shared::db::Store;
use boxoffice_shared::remote::{Failover, ServiceCredential};
use reqwest::Url;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::ops::ReadyCheck;

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
}

/// What every opening shares: the configuration, where background tasks run and when they stop,
/// and the clients of the peers this process calls.
pub struct Context<'a> {
    pub config: &'a Config,
    /// Background tasks are spawned here…
    pub tasks: &'a TaskTracker,
    /// …and stop when this is cancelled.
    pub stop: &'a CancellationToken,
    /// Whether this process is part of a split deployment (and so serves `/internal/v1`).
    pub split: bool,
    /// The HTTP client for peer calls.
    http: reqwest::Client,
}

impl<'a> Context<'a> {
    /// The context of `config`'s services, with one HTTP client for every peer call.
    pub fn new(
        config: &'a Config,
        tasks: &'a TaskTracker,
        stop: &'a CancellationToken,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(2))
            // Below the peers' idle timeout (`--header-timeout`, 10 s by default): this side
            // drops an idle connection first, never reusing one as the peer closes it.
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("building the HTTP client for peer services")?;
        Ok(Self {
            config,
            tasks,
            stop,
            split: !config.roles.is_all_in_one(),
            http,
        })
    }

    /// The secret that guards `/internal/v1`, on both sides of a peer call.
    pub fn peer_credential(&self) -> anyhow::Result<ServiceCredential> {
        self.config
            .service_credential
            .clone()
            .context("peer calls need BOXOFFICE_SERVICE_TOKEN")
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
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let stop = self.stop.clone();
        async move { stop.cancelled().await }
    }
}
