//! Building and running the whole system in one process, or one part of a split deployment:
//! [`Services::open`] sequences the openings in [`crate::compose`] and merges what they return;
//! [`Application`] binds the listener and runs until a shutdown signal.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use boxoffice_auth::AuthService;
use boxoffice_auth::domain::{Email, FullName, Password};
use boxoffice_booking::BookingService;
use boxoffice_catalog::CatalogService;
use boxoffice_notifications::WorkerWaker;
use boxoffice_shared::db::Store;
use boxoffice_shared::extract::MAX_BODY_BYTES;
use boxoffice_shared::token::Role;
use reqwest::Url;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::compose::{self, Component};
use crate::ops::{self, ReadyCheck};
use crate::server::ConnectionLimits;

pub use crate::compose::auth::open_auth;
pub use crate::config::{AccountSpec, Config, Peers, Roles, Storage, instance_id, redact};

/// The services this process runs, wired and ready to serve.
pub struct Services {
    pub auth: Option<AuthService>,
    pub catalog: Option<CatalogService>,
    pub booking: Option<BookingService>,
    /// What `/readyz` asks.
    checks: Vec<Arc<dyn ReadyCheck>>,
    /// The `/internal/v1` routes this process serves to its peers (none in one process).
    internal: Router,
    stores: Vec<Store>,
}

impl Services {
    /// Opens the stores of the services this process runs (running migrations), loads keys,
    /// builds the services and connects them to each other — in process, or over HTTP to the
    /// peers. Background tasks are spawned on `tasks` and stop when `stop` is cancelled.
    pub async fn open(
        config: &Config,
        tasks: &TaskTracker,
        stop: &CancellationToken,
    ) -> anyhow::Result<Self> {
        config.check()?;
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        let context = compose::Context::new(config, tasks, stop)?;
        let mut parts = Component::default();

        let auth = compose::auth::open(&context).await?;
        parts.merge(auth.component);
        let email_waker = WorkerWaker::new();
        let (booking, component) =
            compose::booking::open(&context, &auth.authenticator, &email_waker).await?;
        parts.merge(component);
        parts.merge(
            compose::notifications::open(
                &context,
                booking.as_ref(),
                auth.auth.as_ref(),
                email_waker,
            )
            .await?,
        );
        let (catalog, component) =
            compose::catalog::open(&context, &auth.authenticator, booking.as_ref()).await?;
        parts.merge(component);
        parts.merge(compose::auth::follow_revocations(
            &context,
            &auth.authenticator,
            &parts.stores,
        )?);

        Ok(Self {
            auth: auth.auth,
            catalog,
            booking,
            checks: parts.checks,
            internal: parts.internal,
            stores: parts.stores,
        })
    }

    /// Creates the admin account, or makes the existing account with that email an admin with
    /// that password. Only where Auth runs.
    pub async fn ensure_admin(&self, spec: &AccountSpec) -> anyhow::Result<()> {
        match &self.auth {
            Some(auth) => ensure_admin(auth, spec).await,
            None => Ok(()),
        }
    }

    /// The stores, to close once every task has finished.
    fn into_stores(self) -> Vec<Store> {
        self.stores
    }
}

/// Creates the admin account, or makes the existing account with that email an admin with that
/// password.
pub async fn ensure_admin(auth: &AuthService, spec: &AccountSpec) -> anyhow::Result<()> {
    let email = Email::parse(&spec.email)
        .map_err(|message| anyhow::anyhow!("BOXOFFICE_ADMIN_EMAIL {message}"))?;
    let password = Password::parse(spec.password.expose_secret())
        .map_err(|message| anyhow::anyhow!("BOXOFFICE_ADMIN_PASSWORD {message}"))?;
    let name = FullName::parse("Administrator").map_err(anyhow::Error::msg)?;
    let user = auth
        .ensure_account(&email, &password, &name, Role::Admin)
        .await?;
    tracing::info!(email = %user.email, "admin account ready");
    Ok(())
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    connections: ConnectionLimits,
    /// `None` for the gateway, which runs no service.
    services: Option<Services>,
    address: SocketAddr,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Application {
    /// Opens the stores, bootstraps accounts and binds the listener. Nothing is served until
    /// [`Application::run_until_stopped`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check()?;
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let (router, services) = if config.roles.gateway {
            (build_gateway(&config, &tasks, &stop)?, None)
        } else {
            let services = Services::open(&config, &tasks, &stop).await?;
            if let Some(admin) = &config.admin {
                services.ensure_admin(admin).await?;
            }
            if config.demo
                && let (Some(auth), Some(catalog)) = (&services.auth, &services.catalog)
            {
                crate::demo::load(auth, catalog, config.clock.now()).await?;
            }
            (
                build_router(&services, &config.trusted_proxies),
                Some(services),
            )
        };
        if !config.roles.is_all_in_one() {
            tracing::info!(services = ?config.roles.names(), "running part of a split deployment");
        }

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let address = listener.local_addr()?;
        Ok(Self {
            listener,
            router,
            connections: config.connections,
            services,
            address,
            tasks,
            stop,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `signal` resolves. Then: stop accepting, end the SSE streams and tell the
    /// workers to stop after their current job, let in-flight requests finish, let the booking
    /// writer commit what is queued, and close the stores.
    pub async fn run_until_stopped(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            connections,
            services,
            address,
            tasks,
            stop,
        } = self;
        tracing::info!(%address, "boxoffice is listening");
        let on_signal = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = signal => on_signal.cancel(),
                () = on_signal.cancelled() => {}
            }
        });
        let stopping = stop.clone();
        crate::server::serve(listener, router, connections, async move {
            stopping.cancelled().await
        })
        .await;
        stop.cancel();
        // Dropping the services drops the last senders to the booking writer, which then drains
        // its queue and ends; the tracker tells when every task has.
        let stores = services.map(Services::into_stores).unwrap_or_default();
        tasks.close();
        tasks.wait().await;
        for store in stores {
            store.close().await;
        }
        tracing::info!("boxoffice stopped");
        Ok(())
    }
}

/// Every route of the services this process runs, their internal routes, and the shared layers.
fn build_router(services: &Services, trusted_proxies: &[IpAddr]) -> Router {
    let mut api = utoipa_axum::router::OpenApiRouter::new();
    if let Some(auth) = &services.auth {
        api = api.merge(boxoffice_auth::router(auth.clone()));
    }
    if let Some(catalog) = &services.catalog {
        api = api.merge(boxoffice_catalog::router(catalog.clone()));
    }
    if let Some(booking) = &services.booking {
        api = api.merge(boxoffice_booking::router(booking.clone()));
    }
    ops::with_operations(
        api,
        services.internal.clone(),
        services.checks.clone(),
        trusted_proxies,
    )
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The gateway process: the public routes forwarded to the services, and its own operations
/// routes. Its health checks run on `tasks` until `stop`.
fn build_gateway(
    config: &Config,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> anyhow::Result<Router> {
    let urls = |list: &[Url]| list.iter().map(|url| url.as_str().to_owned()).collect();
    let gateway = boxoffice_gateway::Gateway::new(boxoffice_gateway::GatewayConfig::new(
        urls(&config.peers.auth),
        urls(&config.peers.catalog),
        urls(&config.peers.booking),
    ))?;
    let stop = stop.clone();
    tasks.spawn(gateway.health_checks(async move { stop.cancelled().await }));
    let checks: Vec<Arc<dyn ReadyCheck>> = vec![Arc::new(ops::GatewayCheck(gateway.clone()))];
    let docs = ops::UpstreamDocs {
        services: vec![
            config.peers.auth.clone(),
            config.peers.catalog.clone(),
            config.peers.booking.clone(),
        ],
        http: reqwest::Client::new(),
    };
    Ok(ops::gateway_with_operations(gateway.router(), checks, docs))
}
