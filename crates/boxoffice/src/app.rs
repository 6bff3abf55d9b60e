//! Building and running the whole system in one process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use boxoffice_auth::domain::{Email, FullName, Password};
use boxoffice_auth::store::AuthStore;
use boxoffice_auth::tokens::TokenIssuer;
use boxoffice_auth::{AuthConfig, AuthService};
use boxoffice_booking::{BookingService, LocalWorker};
use boxoffice_catalog::CatalogService;
use boxoffice_notifications::{MailTransport, NotificationsConfig, TransportConfig, WorkerWaker};
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::db::{Durability, PgStore, SqliteStore, Store};
use boxoffice_shared::extract::MAX_BODY_BYTES;
use boxoffice_shared::keys::{KeyMaterial, KeyOrigin};
use boxoffice_shared::token::{Authenticator, RevokedSessions, Role};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ops::{self, ReadyCheck};

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
    pub auth: AuthConfig,
    pub clock: SharedClock,
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
            admin: None,
            demo: false,
            durability: Durability::Full,
            mail_url: None,
            mail_dir: None,
            auth: AuthConfig::default(),
            clock: boxoffice_shared::clock::system(),
        }
    }
}

/// The services, wired and ready to serve.
pub struct Services {
    pub auth: AuthService,
    pub catalog: CatalogService,
    pub booking: BookingService,
    pub authenticator: Authenticator,
    stores: Vec<Store>,
}

/// Loads the keys and opens the Auth store (running its migrations): all that account
/// management needs, and the first step of [`Services::open`].
pub async fn open_auth(config: &Config) -> anyhow::Result<(AuthService, Authenticator, Store)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
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

    if config.auth.password.below_recommendation() {
        tracing::warn!(?config.auth.password, "argon2 parameters are below the OWASP recommendation");
    }
    let auth = AuthService::new(
        config.auth.clone(),
        auth_store,
        TokenIssuer::new(keys.algorithm, keys.encoding),
        authenticator.clone(),
    )?;
    let revoked = auth.load_revocations().await?;
    tracing::debug!(revoked, "loaded recently revoked sessions");
    Ok((auth, authenticator, auth_db))
}

impl Services {
    /// Opens every store (running migrations), loads keys, and builds the services. Background
    /// tasks are spawned on `tasks` and stop when `stop` is cancelled.
    pub async fn open(
        config: &Config,
        tasks: &TaskTracker,
        stop: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let (auth, authenticator, auth_db) = open_auth(config).await?;
        if let Store::Postgres(db) = &auth_db {
            let stop = stop.clone();
            tasks.spawn(
                auth.clone()
                    .follow_revocations(db.pool.clone(), async move { stop.cancelled().await }),
            );
        }
        let booking_db = config
            .storage
            .open("booking", config.durability, 16)
            .await
            .context("opening the booking store")?;
        let email_waker = WorkerWaker::new();
        let booking = BookingService::start(
            booking_db.clone(),
            authenticator.clone(),
            config.clock.clone(),
            Some(LocalWorker {
                waker: email_waker.notify(),
                instance: instance_id(&config.data_dir)?,
            }),
            stop.clone(),
            tasks,
        )
        .await
        .context("starting the booking service")?;

        let mail_dir = config
            .mail_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("mail"));
        let transport_config = TransportConfig::parse(config.mail_url.as_deref(), mail_dir)?;
        tracing::info!(transport = %transport_config, "emails go to the {transport_config}");
        let transport = MailTransport::start(&transport_config)
            .await
            .context("starting the mail transport")?;
        let notifications = NotificationsConfig::new(transport_config);
        tasks.spawn(boxoffice_notifications::run(
            Arc::new(booking.clone()),
            Arc::new(auth.clone()),
            transport,
            notifications,
            config.clock.clone(),
            email_waker,
            stop.clone(),
        ));

        let catalog_db = config
            .storage
            .open("catalog", Durability::Full, 8)
            .await
            .context("opening the catalog store")?;
        let catalog = CatalogService::new(
            catalog_db.clone(),
            Arc::new(booking.clone()),
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

        Ok(Self {
            auth,
            catalog,
            booking,
            authenticator,
            stores: vec![auth_db, booking_db, catalog_db],
        })
    }

    /// Creates the admin account, or makes the existing account with that email an admin with
    /// that password.
    pub async fn ensure_admin(&self, spec: &AccountSpec) -> anyhow::Result<()> {
        ensure_admin(&self.auth, spec).await
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
    services: Services,
    address: SocketAddr,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Application {
    /// Opens the stores, bootstraps accounts and binds the listener. Nothing is served until
    /// [`Application::run_until_stopped`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let services = Services::open(&config, &tasks, &stop).await?;
        if let Some(admin) = &config.admin {
            services.ensure_admin(admin).await?;
        }
        if config.demo {
            crate::demo::load(&services, config.clock.now()).await?;
        }

        let checks: Vec<Arc<dyn ReadyCheck>> = vec![
            Arc::new(ops::StoreCheck::new(
                "auth_store",
                services.stores[0].clone(),
            )),
            Arc::new(ops::BookingCheck(services.booking.clone())),
            Arc::new(ops::StoreCheck::new(
                "catalog_store",
                services.stores[2].clone(),
            )),
        ];
        let router = build_router(&services, checks);

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let address = listener.local_addr()?;
        Ok(Self {
            listener,
            router,
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
        let result = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stopping.cancelled().await })
        .await;
        stop.cancel();
        // Dropping the services drops the last senders to the booking writer, which then drains
        // its queue and ends; the tracker tells when every task has.
        let stores = services.into_stores();
        tasks.close();
        tasks.wait().await;
        for store in stores {
            store.close().await;
        }
        tracing::info!("boxoffice stopped");
        result.context("serving HTTP")
    }
}

/// Every route of the one-process deployment, with the shared layers.
fn build_router(services: &Services, checks: Vec<Arc<dyn ReadyCheck>>) -> Router {
    let api = boxoffice_auth::router(services.auth.clone())
        .merge(boxoffice_catalog::router(services.catalog.clone()))
        .merge(boxoffice_booking::router(services.booking.clone()));
    ops::with_operations(api, checks).layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
