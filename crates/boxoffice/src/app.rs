//! Building and running the whole system in one process.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use boxoffice_auth::domain::{Email, FullName, Password};
use boxoffice_auth::limits::SharedCounters;
use boxoffice_auth::store::AuthStore;
use boxoffice_auth::tokens::TokenIssuer;
use boxoffice_auth::write_limits::{WriteLimitConfig, WriteLimits};
use boxoffice_auth::{AuthConfig, AuthService};
use boxoffice_booking::{BookingService, LocalWorker};
use boxoffice_catalog::CatalogService;
use boxoffice_notifications::{MailTransport, NotificationsConfig, TransportConfig, WorkerWaker};
use boxoffice_shared::clients::{Inventory, OutboxSource, RevocationSource, UserDirectory};
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::db::{Durability, PgStore, SqliteStore, Store};
use boxoffice_shared::extract::MAX_BODY_BYTES;
use boxoffice_shared::keys::{KeyMaterial, KeyOrigin};
use boxoffice_shared::remote::{
    Failover, RemoteDirectory, RemoteInventory, RemoteOutbox, RemoteRevocations, ServiceCredential,
};
use boxoffice_shared::token::{Authenticator, RevokedSessions, Role, TokenVerifier};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ops::{self, ReadyCheck};
use crate::server::ConnectionLimits;

/// Where the services keep their data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Embedded SQLite: one file per service inside this directory.
    Sqlite { dir: PathBuf },
    /// A PostgreSQL database: one schema per service (`auth`, `catalog`, `booking`).
    Postgres { url: String },
}

impl Storage {
    /// Reads `--database-url`: none means SQLite inside the data directory; `sqlite://DIR` names
    /// the directory for the SQLite files.
    pub fn from_url(url: Option<&str>, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        match url {
            None => Ok(Storage::Sqlite {
                dir: data_dir.to_owned(),
            }),
            Some(url) => {
                if let Some(path) = url.strip_prefix("sqlite://") {
                    let path = path.split('?').next().unwrap_or(path);
                    anyhow::ensure!(
                        !path.is_empty(),
                        "--database-url sqlite://DIR needs a directory"
                    );
                    Ok(Storage::Sqlite {
                        dir: PathBuf::from(path),
                    })
                } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    Ok(Storage::Postgres {
                        url: url.to_owned(),
                    })
                } else {
                    anyhow::bail!(
                        "--database-url must start with sqlite:// or postgres:// (got {:?})",
                        redact(url)
                    )
                }
            }
        }
    }

    /// Opens the store of `service` (`auth`, `catalog` or `booking`): the file `<dir>/<service>.db`,
    /// or the schema `service` of the PostgreSQL database.
    pub async fn open(
        &self,
        service: &'static str,
        durability: Durability,
        connections: u32,
    ) -> anyhow::Result<Store> {
        Ok(match self {
            Storage::Sqlite { dir } => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join(format!("{service}.db"));
                SqliteStore::open_with(&path, 4, durability).await?.into()
            }
            Storage::Postgres { url } => PgStore::connect(url, service, connections).await?.into(),
        })
    }
}

/// This instance's id, kept in `<data_dir>/instance-id` so that it survives restarts: instances
/// sharing a PostgreSQL database tell their outbox leases apart by it.
pub fn instance_id(data_dir: &std::path::Path) -> anyhow::Result<uuid::Uuid> {
    let path = data_dir.join("instance-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold an instance id", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::now_v7();
            let temporary = data_dir.join("instance-id.tmp");
            std::fs::write(&temporary, format!("{id}\n"))
                .and_then(|()| std::fs::rename(&temporary, &path))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// A database URL fit for an error message or a log line: without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// An account to make sure of at start-up (`BOXOFFICE_ADMIN_EMAIL` / `_PASSWORD`).
#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub email: String,
    pub password: SecretString,
}

/// Which services this process runs (`serve --service ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub auth: bool,
    pub catalog: bool,
    pub booking: bool,
    pub notifications: bool,
    pub gateway: bool,
}

impl Roles {
    /// The default: every service in one process, no gateway (there is nothing to route).
    pub const ALL_IN_ONE: Roles = Roles {
        auth: true,
        catalog: true,
        booking: true,
        notifications: true,
        gateway: false,
    };

    pub const NONE: Roles = Roles {
        auth: false,
        catalog: false,
        booking: false,
        notifications: false,
        gateway: false,
    };

    pub fn is_all_in_one(&self) -> bool {
        *self == Self::ALL_IN_ONE
    }

    /// The names of the services this process runs, for logs and errors.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.auth, "auth"),
            (self.catalog, "catalog"),
            (self.booking, "booking"),
            (self.notifications, "notifications"),
            (self.gateway, "gateway"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// Where the services this process does not run can be reached (their roots, e.g.
/// `http://10.0.0.5:8080`). Booking, and Auth if it runs as several instances, may list several:
/// calls go to each in turn and move on past one that does not answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    pub auth: Vec<Url>,
    pub catalog: Vec<Url>,
    pub booking: Vec<Url>,
}

/// Everything `serve` needs, already parsed from flags and environment.
#[derive(Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Holds the SQLite files (by default), the generated signing key and the mail directory.
    pub data_dir: PathBuf,
    pub storage: Storage,
    /// HMAC signing secret; when `None` (and no key file) an Ed25519 key is kept in `data_dir`.
    pub jwt_secret: Option<SecretString>,
    /// An Ed25519 private key (PKCS#8 PEM) to sign tokens with.
    pub jwt_key_file: Option<PathBuf>,
    /// The public half of Auth's Ed25519 key: all a service that only verifies tokens needs.
    pub jwt_public_key_file: Option<PathBuf>,
    /// An admin account to create or promote at start-up.
    pub admin: Option<AccountSpec>,
    /// Load the demo data.
    pub demo: bool,
    /// Whether a booking's commit waits for the disk (`Full`, the default) or only for the OS.
    pub durability: Durability,
    /// Where emails go: `smtp://…`, `smtps://…`, or `None` for the mail directory.
    pub mail_url: Option<String>,
    /// The mail directory (default `<data_dir>/mail`).
    pub mail_dir: Option<PathBuf>,
    /// The sender of emails, `Name <address>` (`BOXOFFICE_MAIL_FROM`); `None` for the default.
    pub mail_from: Option<String>,
    pub auth: AuthConfig,
    pub clock: SharedClock,
    /// The services this process runs.
    pub roles: Roles,
    /// The services it calls.
    pub peers: Peers,
    /// The shared secret that guards `/internal/v1` (`BOXOFFICE_SERVICE_TOKEN`); needed as soon
    /// as the services are split.
    pub service_credential: Option<ServiceCredential>,
    /// Peers whose `X-Forwarded-For` is believed (the gateway's addresses): behind them the
    /// client's address, which login and registration throttles key on, is the last address the
    /// header lists.
    pub trusted_proxies: Vec<IpAddr>,
    /// Timeouts and the bound on connections (see [`crate::server`]).
    pub connections: ConnectionLimits,
    /// Limits on bookings and cancels per user and per client address; `None` when rate limits
    /// are off. Shared through `auth.shared_throttles` (Redis) when that is set.
    pub write_limits: Option<WriteLimitConfig>,
}

impl Config {
    /// A configuration with every default, listening on `listen` and keeping data in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            storage: Storage::Sqlite {
                dir: data_dir.clone(),
            },
            data_dir,
            jwt_secret: None,
            jwt_key_file: None,
            jwt_public_key_file: None,
            admin: None,
            demo: false,
            durability: Durability::Full,
            mail_url: None,
            mail_dir: None,
            mail_from: None,
            auth: AuthConfig::default(),
            clock: boxoffice_shared::clock::system(),
            roles: Roles::ALL_IN_ONE,
            peers: Peers::default(),
            service_credential: None,
            trusted_proxies: Vec::new(),
            connections: ConnectionLimits::default(),
            write_limits: Some(WriteLimitConfig::default()),
        }
    }

    /// Refuses the combinations that cannot work, with a message that says what to add.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.data_dir.exists() || self.data_dir.is_dir(),
            "the data directory {} is a file, not a directory: give --data-dir \
             (BOXOFFICE_DATA_DIR) a directory, or a path that does not exist yet",
            self.data_dir.display()
        );
        let roles = self.roles;
        anyhow::ensure!(roles != Roles::NONE, "--service names no service");
        if roles.gateway {
            anyhow::ensure!(
                roles.names() == ["gateway"],
                "the gateway runs in a process of its own (--service gateway alone)"
            );
            for (list, flag) in [
                (&self.peers.auth, "--auth-url"),
                (&self.peers.catalog, "--catalog-url"),
                (&self.peers.booking, "--booking-url"),
            ] {
                anyhow::ensure!(!list.is_empty(), "the gateway needs {flag}");
            }
            return Ok(());
        }
        if roles.is_all_in_one() {
            return Ok(());
        }
        let names = roles.names().join(",");
        anyhow::ensure!(
            matches!(self.storage, Storage::Postgres { .. })
                || (roles.notifications && names == "notifications"),
            "--service {names}: split services share one PostgreSQL database; give --database-url postgres://…"
        );
        anyhow::ensure!(
            self.service_credential.is_some(),
            "--service {names}: split services prove who they are to each other with \
             BOXOFFICE_SERVICE_TOKEN (at least 32 characters; e.g. `openssl rand -hex 32`)"
        );
        let needs = |wanted: bool, peers: &[Url], flag: &str, why: &str| {
            anyhow::ensure!(
                !wanted || !peers.is_empty(),
                "--service {names}: {why}; give {flag}"
            );
            Ok(())
        };
        needs(
            roles.catalog && !roles.booking,
            &self.peers.booking,
            "--booking-url",
            "catalog keeps Booking's inventory in step",
        )?;
        needs(
            roles.notifications && !roles.booking,
            &self.peers.booking,
            "--booking-url",
            "notifications sends the emails in Booking's outbox",
        )?;
        needs(
            (roles.notifications || roles.catalog || roles.booking) && !roles.auth,
            &self.peers.auth,
            "--auth-url",
            "revoked sessions and email addresses come from Auth",
        )?;
        if self.demo {
            anyhow::ensure!(
                roles.auth && roles.catalog && roles.booking,
                "--demo needs auth, catalog and booking in this process"
            );
        }
        Ok(())
    }
}

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

/// Opens the Auth store (running its migrations) and loads the keys: all that account
/// management needs, and the first step of [`Services::open`].
pub async fn open_auth(config: &Config) -> anyhow::Result<(AuthService, Authenticator, Store)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    anyhow::ensure!(
        config.jwt_public_key_file.is_none(),
        "auth signs tokens: it needs the private key (--jwt-key-file), not --jwt-public-key-file"
    );
    let auth_db = config
        .storage
        .open("auth", Durability::Full, 8)
        .await
        .context("opening the auth store")?;
    let auth_store = AuthStore::new(auth_db.clone());
    auth_store
        .migrate()
        .await
        .context("migrating the auth store")?;
    // The key only after the store opened: a start that fails on its database leaves no new
    // key file behind.
    let keys = KeyMaterial::load(
        config.jwt_secret.as_ref(),
        config.jwt_key_file.as_deref(),
        &config.data_dir,
    )?;
    match &keys.origin {
        KeyOrigin::Generated(path) => {
            tracing::info!(path = %path.display(), "generated a new token signing key")
        }
        KeyOrigin::Loaded(path) | KeyOrigin::KeyFile(path) => {
            tracing::info!(path = %path.display(), "token signing key loaded")
        }
        KeyOrigin::ConfiguredSecret => {
            tracing::info!("tokens signed with the configured HMAC secret")
        }
    }
    let authenticator = Authenticator {
        verifier: Arc::new(keys.verifier()),
        revoked: RevokedSessions::default(),
        clock: config.clock.clone(),
    };

    if config.auth.password.below_recommendation() {
        tracing::warn!(?config.auth.password, "argon2 parameters are below the OWASP recommendation");
    }
    let auth = AuthService::new(
        config.auth.clone(),
        auth_store,
        TokenIssuer::new(keys.algorithm, keys.encoding),
        authenticator.clone(),
    )?;
    if !auth
        .wait_for_shared_throttles(std::time::Duration::from_secs(2))
        .await
    {
        tracing::warn!("Redis does not answer yet: throttles count per process until it does");
    }
    let revoked = auth.load_revocations().await?;
    tracing::debug!(revoked, "loaded recently revoked sessions");
    Ok((auth, authenticator, auth_db))
}

/// The token verifier of a process that verifies tokens without running Auth: preferably from
/// the public key alone.
fn verifier_without_auth(config: &Config) -> anyhow::Result<TokenVerifier> {
    match (
        &config.jwt_public_key_file,
        &config.jwt_key_file,
        &config.jwt_secret,
    ) {
        (Some(path), None, None) => boxoffice_shared::keys::load_public_key(path),
        (None, Some(path), None) => {
            tracing::warn!(
                "this process only verifies tokens but holds the private key; give it the public \
                 half alone (--jwt-public-key-file)"
            );
            Ok(KeyMaterial::load(None, Some(path), &config.data_dir)?.verifier())
        }
        (None, None, Some(secret)) => {
            tracing::warn!(
                "tokens are verified with a shared HMAC secret, so this process could also mint \
                 them; an Ed25519 pair (`boxoffice keygen`) keeps that power with Auth alone"
            );
            Ok(KeyMaterial::from_secret(secret)?.verifier())
        }
        (None, None, None) => anyhow::bail!(
            "--service {}: verifying tokens needs the public half of Auth's key; give \
             --jwt-public-key-file (`boxoffice keygen` writes a key pair)",
            config.roles.names().join(",")
        ),
        _ => anyhow::bail!(
            "give one of --jwt-public-key-file, --jwt-key-file and BOXOFFICE_JWT_SECRET, not several"
        ),
    }
}

/// One client per peer URL, tried in turn. `client` is a `Remote*::new`.
fn failover<T>(
    urls: &[Url],
    credential: &ServiceCredential,
    http: &reqwest::Client,
    client: impl Fn(Url, ServiceCredential, reqwest::Client) -> T,
) -> Arc<Failover<T>> {
    let clients = urls
        .iter()
        .map(|url| client(url.clone(), credential.clone(), http.clone()));
    Arc::new(Failover::new(clients.collect()))
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
        let roles = config.roles;
        let split = !roles.is_all_in_one();
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(2))
            // Below the peers' idle timeout (`--header-timeout`, 10 s by default): this side
            // drops an idle connection first, never reusing one as the peer closes it.
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("building the HTTP client for peer services")?;
        let peer_credential = || {
            config
                .service_credential
                .clone()
                .context("peer calls need BOXOFFICE_SERVICE_TOKEN")
        };
        let mut checks: Vec<Arc<dyn ReadyCheck>> = Vec::new();
        let mut internal = Router::new();
        let mut stores = Vec::new();

        let (auth, authenticator) = if roles.auth {
            let (auth, authenticator, auth_db) = open_auth(config).await?;
            if let Store::Postgres(db) = &auth_db {
                let stop = stop.clone();
                tasks.spawn(
                    auth.clone()
                        .follow_revocations(db.pool.clone(), async move { stop.cancelled().await }),
                );
            }
            if split {
                internal = internal.merge(boxoffice_shared::remote::directory_routes(
                    Arc::new(auth.clone()),
                    peer_credential()?,
                ));
            }
            checks.push(Arc::new(ops::StoreCheck::new(
                "auth_store",
                auth_db.clone(),
            )));
            stores.push(auth_db);
            (Some(auth), authenticator)
        } else {
            // Notifications alone serves no user and verifies no token.
            let verifier = match roles.booking || roles.catalog {
                true => verifier_without_auth(config)?,
                false => TokenVerifier::refusing_all(),
            };
            let authenticator = Authenticator {
                verifier: Arc::new(verifier),
                revoked: RevokedSessions::default(),
                clock: config.clock.clone(),
            };
            (None, authenticator)
        };

        let email_waker = WorkerWaker::new();
        let booking = if roles.booking {
            let booking_db = config
                .storage
                .open("booking", config.durability, 16)
                .await
                .context("opening the booking store")?;
            let worker = match roles.notifications {
                true => Some(LocalWorker {
                    waker: email_waker.notify(),
                    instance: instance_id(&config.data_dir)?,
                }),
                false => None,
            };
            let booking = BookingService::start(
                booking_db.clone(),
                authenticator.clone(),
                config.clock.clone(),
                worker,
                stop.clone(),
                tasks,
            )
            .await
            .context("starting the booking service")?;
            if let Some(limits) = config.write_limits {
                let shared = config
                    .auth
                    .shared_throttles
                    .as_ref()
                    .map(|shared| SharedCounters::connect(&shared.url, &shared.prefix))
                    .transpose()
                    .map_err(|error| anyhow::anyhow!("--redis-url: {error}"))?;
                booking.limit_writes(Arc::new(WriteLimits::new(limits, shared)));
            }
            if split {
                let inventory: Arc<dyn Inventory> = Arc::new(booking.clone());
                let outbox: Arc<dyn OutboxSource> = Arc::new(booking.clone());
                internal = internal
                    .merge(boxoffice_shared::remote::inventory_routes(
                        inventory,
                        peer_credential()?,
                    ))
                    .merge(boxoffice_shared::remote::outbox_routes(
                        outbox,
                        peer_credential()?,
                    ));
            }
            checks.push(Arc::new(ops::BookingCheck(booking.clone())));
            stores.push(booking_db);
            Some(booking)
        } else {
            None
        };

        if roles.notifications {
            let outbox: Arc<dyn OutboxSource> = match &booking {
                Some(booking) => Arc::new(booking.clone()),
                None => failover(
                    &config.peers.booking,
                    &peer_credential()?,
                    &http,
                    RemoteOutbox::new,
                ),
            };
            let users: Arc<dyn UserDirectory> = match &auth {
                Some(auth) => Arc::new(auth.clone()),
                None => failover(
                    &config.peers.auth,
                    &peer_credential()?,
                    &http,
                    RemoteDirectory::new,
                ),
            };
            let mail_dir = config
                .mail_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("mail"));
            let transport_config = TransportConfig::parse(config.mail_url.as_deref(), mail_dir)?;
            tracing::info!(transport = %transport_config, "emails go to the {transport_config}");
            let transport = MailTransport::start(&transport_config)
                .await
                .context("starting the mail transport")?;
            let notifications = NotificationsConfig::new(transport_config)
                .with_from(config.mail_from.as_deref())?;
            tasks.spawn(boxoffice_notifications::run(
                outbox,
                users,
                transport,
                notifications,
                config.clock.clone(),
                email_waker,
                stop.clone(),
            ));
        }

        let catalog = if roles.catalog {
            let catalog_db = config
                .storage
                .open("catalog", Durability::Full, 8)
                .await
                .context("opening the catalog store")?;
            let inventory: Arc<dyn Inventory> = match &booking {
                Some(booking) => Arc::new(booking.clone()),
                None => failover(
                    &config.peers.booking,
                    &peer_credential()?,
                    &http,
                    RemoteInventory::new,
                ),
            };
            let catalog = CatalogService::new(
                catalog_db.clone(),
                inventory,
                authenticator.clone(),
                config.clock.clone(),
            );
            catalog
                .migrate()
                .await
                .context("migrating the catalog store")?;
            tasks.spawn(boxoffice_catalog::run_reconciler(
                catalog.clone(),
                stop.clone(),
            ));
            checks.push(Arc::new(ops::StoreCheck::new(
                "catalog_store",
                catalog_db.clone(),
            )));
            stores.push(catalog_db);
            Some(catalog)
        } else {
            None
        };

        // A process that verifies tokens without running Auth follows Auth's revocations: on
        // the shared database's notification channel, and from Auth's list after every
        // (re)connection. It is not ready until it has read that list once.
        if auth.is_none() && (roles.booking || roles.catalog) {
            let pool = stores.iter().find_map(|store| match store {
                Store::Postgres(db) => Some(db.pool.clone()),
                Store::Sqlite(_) => None,
            });
            let pool = pool.context("following revocations needs the PostgreSQL database")?;
            let source: Arc<dyn RevocationSource> = failover(
                &config.peers.auth,
                &peer_credential()?,
                &http,
                RemoteRevocations::new,
            );
            let follower = boxoffice_shared::revocation::Follower::new(
                source,
                authenticator.revoked.clone(),
                config.clock.clone(),
                config.auth.access_ttl,
            );
            checks.push(Arc::new(ops::RevocationCheck(follower.clone())));
            let stop = stop.clone();
            tasks.spawn(follower.follow(pool, async move { stop.cancelled().await }));
        }

        Ok(Self {
            auth,
            catalog,
            booking,
            checks,
            internal,
            stores,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn split(roles: Roles) -> Config {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), PathBuf::from("./data"));
        config.roles = roles;
        config.storage = Storage::Postgres {
            url: "postgres://postgres@127.0.0.1/boxoffice".into(),
        };
        config.service_credential = Some(ServiceCredential::parse("t".repeat(32)).unwrap());
        config
    }

    fn url(text: &str) -> Url {
        text.parse().unwrap()
    }

    fn refusal(config: &Config) -> String {
        config.check().unwrap_err().to_string()
    }

    #[test]
    fn one_process_needs_nothing_more() {
        assert!(
            Config::new("127.0.0.1:0".parse().unwrap(), "d".into())
                .check()
                .is_ok()
        );
    }

    #[test]
    fn split_services_say_which_peer_or_setting_is_missing() {
        let booking = Roles {
            booking: true,
            ..Roles::NONE
        };
        assert!(refusal(&split(booking)).contains("--auth-url"));
        let mut config = split(booking);
        config.peers.auth = vec![url("http://127.0.0.1:9001")];
        config.check().unwrap();

        config.service_credential = None;
        assert!(refusal(&config).contains("BOXOFFICE_SERVICE_TOKEN"));

        let mut on_sqlite = split(booking);
        on_sqlite.peers.auth = vec![url("http://127.0.0.1:9001")];
        on_sqlite.storage = Storage::Sqlite { dir: "d".into() };
        assert!(refusal(&on_sqlite).contains("PostgreSQL"));

        let catalog = Roles {
            catalog: true,
            ..Roles::NONE
        };
        let mut config = split(catalog);
        config.peers.auth = vec![url("http://127.0.0.1:9001")];
        assert!(refusal(&config).contains("--booking-url"));

        let mut demo = split(Roles {
            auth: true,
            catalog: true,
            ..Roles::NONE
        });
        demo.peers.booking = vec![url("http://127.0.0.1:9003")];
        demo.demo = true;
        assert!(refusal(&demo).contains("--demo"));
    }

    #[test]
    fn the_gateway_runs_alone_and_needs_every_upstream() {
        let gateway = Roles {
            gateway: true,
            ..Roles::NONE
        };
        let mut config = split(gateway);
        assert!(refusal(&config).contains("--auth-url"));
        config.peers = Peers {
            auth: vec![url("http://127.0.0.1:9001")],
            catalog: vec![url("http://127.0.0.1:9002")],
            booking: vec![url("http://127.0.0.1:9003")],
        };
        config.check().unwrap();
        config.roles.booking = true;
        assert!(refusal(&config).contains("process of its own"));
        assert!(refusal(&split(Roles::NONE)).contains("no service"));
    }
}
