//! Building and running the whole system in one process, or one part of a split deployment:
//! [`Services::open`] opens the services this process runs, each through its crate's `open`
//! module, wires each to its peers (in process or over HTTP) and merges what they return;
//! [`Application`] binds the listener and runs until a shutdown signal.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use boxoffice_auth::AuthService;
use boxoffice_auth::domain::{Email, FullName, Password};
use boxoffice_booking::service::Tickets;
use boxoffice_booking::ticket::TicketKeys;
use boxoffice_booking::{BookingService, LocalWorker};
use boxoffice_catalog::CatalogService;
use boxoffice_notifications::WorkerWaker;
use boxoffice_shared::clients::{Inventory, OutboxSource, UserDirectory};
use boxoffice_shared::component::{Component, Peer, ReadyCheck, Wiring};
use boxoffice_shared::db::Store;
use boxoffice_shared::extract::MAX_BODY_BYTES;
use boxoffice_shared::remote::RemoteDirectory;
use boxoffice_shared::token::Authenticator;
use boxoffice_shared::token::Role;
use reqwest::Url;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ops;
use crate::server::ConnectionLimits;

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
        let roles = config.roles;
        let peers = &config.peers;
        let wiring = Wiring::new(
            tasks,
            stop,
            !roles.is_all_in_one(),
            config.service_credential.clone(),
        )?;
        let mut parts = Component::default();

        let (auth, authenticator) = match roles.auth {
            true => {
                let opened = boxoffice_auth::open::open(&wiring, auth_setup(config)).await?;
                parts.merge(opened.component);
                (Some(opened.auth), opened.authenticator)
            }
            false => {
                // Notifications alone serves no user and verifies no token.
                let authenticator = boxoffice_auth::open::authenticator_elsewhere(
                    &auth_keys(config),
                    roles.booking || roles.catalog,
                    config.clock.clone(),
                    &roles.names().join(","),
                )?;
                (None, authenticator)
            }
        };

        let email_waker = WorkerWaker::new();
        let users = auth
            .clone()
            .map(|auth| Arc::new(auth) as Arc<dyn UserDirectory>);
        let booking = match roles.booking {
            true => {
                let holders = match peer(users.clone(), &peers.auth) {
                    Peer::InProcess(users) => users,
                    Peer::Remote(urls) => wiring.failover(urls, RemoteDirectory::new)?,
                };
                let setup = booking_setup(config, &email_waker, holders)?;
                let (booking, component) =
                    boxoffice_booking::open::open(&wiring, setup, &authenticator).await?;
                parts.merge(component);
                Some(booking)
            }
            false => None,
        };

        if roles.notifications {
            let outbox = booking
                .clone()
                .map(|booking| Arc::new(booking) as Arc<dyn OutboxSource>);
            let component = boxoffice_notifications::open::open(
                &wiring,
                mail(config),
                peer(outbox, &peers.booking),
                peer(users, &peers.auth),
                config.clock.clone(),
                email_waker,
            )
            .await?;
            parts.merge(component);
        }

        let catalog = match roles.catalog {
            true => {
                let inventory = booking
                    .clone()
                    .map(|booking| Arc::new(booking) as Arc<dyn Inventory>);
                let (catalog, component) = boxoffice_catalog::open::open(
                    &wiring,
                    &config.storage,
                    peer(inventory, &peers.booking),
                    &authenticator,
                    config.clock.clone(),
                )
                .await?;
                parts.merge(component);
                Some(catalog)
            }
            false => None,
        };

        // A process that verifies tokens without running Auth follows Auth's revocations.
        if !roles.auth && (roles.booking || roles.catalog) {
            parts.merge(boxoffice_auth::open::follow_revocations(
                &wiring,
                &authenticator,
                &parts.stores,
                &peers.auth,
                config.auth.access_ttl,
            )?);
        }

        Ok(Self {
            auth,
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

/// A peer: the service itself where this process runs it, else its instances' URLs.
fn peer<'a, T: ?Sized>(local: Option<Arc<T>>, urls: &'a [Url]) -> Peer<'a, Arc<T>> {
    match local {
        Some(service) => Peer::InProcess(service),
        None => Peer::Remote(urls),
    }
}

/// What Booking is opened with, as configured. Where Notifications runs in the same process,
/// the booking writer wakes its worker through `email_waker` after each commit.
fn booking_setup<'a>(
    config: &'a Config,
    email_waker: &WorkerWaker,
    holders: Arc<dyn UserDirectory>,
) -> anyhow::Result<boxoffice_booking::open::Setup<'a>> {
    let worker = match config.roles.notifications {
        true => Some(LocalWorker {
            waker: email_waker.notify(),
            instance: instance_id(&config.data_dir)?,
        }),
        false => None,
    };
    let write_limiter = config
        .write_limits
        .map(|limits| boxoffice_auth::open::write_limiter(&config.auth, limits))
        .transpose()?;
    Ok(boxoffice_booking::open::Setup {
        storage: &config.storage,
        durability: config.durability,
        clock: config.clock.clone(),
        worker,
        write_limiter,
        checkout: config.checkout.clone(),
        tickets: Tickets::new(
            TicketKeys::load(config.ticket_key_file.as_deref(), &config.data_dir)?,
            holders,
        ),
        webhooks: config.webhooks.clone(),
        instance: instance_id(&config.data_dir)?,
        advertise: config.advertise_url.clone(),
    })
}

/// Where emails go, as configured.
fn mail(config: &Config) -> boxoffice_notifications::open::Mail<'_> {
    boxoffice_notifications::open::Mail {
        url: config.mail_url.as_deref(),
        dir: config
            .mail_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("mail")),
        from: config.mail_from.as_deref(),
        shop: config.public_url.as_deref(),
    }
}

/// Where Auth's token key comes from, as configured.
fn auth_keys(config: &Config) -> boxoffice_auth::open::Keys<'_> {
    boxoffice_auth::open::Keys {
        secret: config.jwt_secret.as_ref(),
        key_file: config.jwt_key_file.as_deref(),
        public_key_file: config.jwt_public_key_file.as_deref(),
        data_dir: &config.data_dir,
    }
}

/// What Auth is opened with, as configured.
fn auth_setup(config: &Config) -> boxoffice_auth::open::Setup<'_> {
    boxoffice_auth::open::Setup {
        storage: &config.storage,
        keys: auth_keys(config),
        config: &config.auth,
        clock: config.clock.clone(),
    }
}

/// Opens the Auth store (running its migrations) and loads the keys: all that account
/// management needs.
pub async fn open_auth(config: &Config) -> anyhow::Result<(AuthService, Authenticator, Store)> {
    boxoffice_auth::open::open_store_and_keys(auth_setup(config)).await
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
            (build_gateway(&config, &tasks, &stop).await?, None)
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
    ops::with_pages(ops::with_operations(
        api,
        services.internal.clone(),
        services.checks.clone(),
        trusted_proxies,
    ))
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The gateway process: the public routes forwarded to the services, and its own operations
/// routes. Its health checks run on `tasks` until `stop`.
async fn build_gateway(
    config: &Config,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> anyhow::Result<Router> {
    let urls = |list: &[Url]| list.iter().map(|url| url.as_str().to_owned()).collect();
    let upstreams = boxoffice_gateway::GatewayConfig::new(
        urls(&config.peers.auth),
        urls(&config.peers.catalog),
        urls(&config.peers.booking),
    );
    let mut checks: Vec<Arc<dyn ReadyCheck>> = Vec::new();
    let gateway = match gateway_answering(config, tasks, stop).await? {
        Some((answering, component)) => {
            checks.extend(component.checks);
            boxoffice_gateway::Gateway::answering(upstreams, answering)?
        }
        None => boxoffice_gateway::Gateway::new(upstreams)?,
    };
    let stop = stop.clone();
    tasks.spawn(gateway.health_checks(async move { stop.cancelled().await }));
    checks.insert(0, Arc::new(ops::GatewayCheck(gateway.clone())));
    let docs = ops::UpstreamDocs {
        services: vec![
            config.peers.auth.clone(),
            config.peers.catalog.clone(),
            config.peers.booking.clone(),
        ],
        http: reqwest::Client::new(),
    };
    Ok(ops::with_pages(ops::gateway_with_operations(
        gateway.router(),
        checks,
        docs,
    )))
}

/// What the gateway needs to repeat Booking's sold-out answers itself
/// ([`boxoffice_gateway::answers`]), when it is given Auth's key: the key, Auth's revocations
/// followed on the PostgreSQL database (the returned component's readiness check says when
/// they have been read), and the limits on writes. `None` without a key: every request is
/// forwarded.
async fn gateway_answering(
    config: &Config,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> anyhow::Result<Option<(boxoffice_gateway::Answering, Component)>> {
    let keys = auth_keys(config);
    if keys.secret.is_none() && keys.key_file.is_none() && keys.public_key_file.is_none() {
        return Ok(None);
    }
    let authenticator = boxoffice_auth::open::authenticator_elsewhere(
        &keys,
        true,
        config.clock.clone(),
        "gateway",
    )?;
    let Storage::Postgres { url } = &config.storage else {
        anyhow::bail!(
            "--service gateway with Auth's key answers sold-out bookings itself and follows \
             revoked sessions on the deployment's PostgreSQL database: give --database-url too \
             (or no key, and the gateway forwards every request)"
        );
    };
    let store = boxoffice_shared::db::PgStore::connect(url, "auth", 2).await?;
    let wiring = Wiring::new(tasks, stop, true, config.service_credential.clone())?;
    let component = boxoffice_auth::open::follow_revocations(
        &wiring,
        &authenticator,
        &[store.into()],
        &config.peers.auth,
        config.auth.access_ttl,
    )?;
    let limiter = config
        .write_limits
        .map(|limits| boxoffice_auth::open::write_limiter(&config.auth, limits))
        .transpose()?;
    let answering = boxoffice_gateway::Answering {
        authenticator,
        limiter,
    };
    Ok(Some((answering, component)))
}
