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
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::db::SqliteStore;
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
                    anyhow::bail!(
                        "this build of boxoffice stores data in embedded SQLite only; \
                         leave --database-url unset or use sqlite://DIR"
                    )
                } else {
                    anyhow::bail!("--database-url must start with sqlite:// (got {url:?})")
                }
            }
        }
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
            auth: AuthConfig::default(),
            clock: boxoffice_shared::clock::system(),
        }
    }
}

/// The services, wired and ready to serve.
pub struct Services {
    pub auth: AuthService,
    pub authenticator: Authenticator,
    stores: Vec<SqliteStore>,
}

impl Services {
    /// Opens every store (running migrations), loads keys, and builds the services.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
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

        let Storage::Sqlite { dir } = &config.storage;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let auth_db = SqliteStore::open(&dir.join("auth.db"), 4).await?;
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

        Ok(Self {
            auth,
            authenticator,
            stores: vec![auth_db],
        })
    }

    /// Creates the admin account, or makes the existing account with that email an admin with
    /// that password.
    pub async fn ensure_admin(&self, spec: &AccountSpec) -> anyhow::Result<()> {
        let email = Email::parse(&spec.email)
            .map_err(|message| anyhow::anyhow!("BOXOFFICE_ADMIN_EMAIL {message}"))?;
        let password = Password::parse(spec.password.expose_secret())
            .map_err(|message| anyhow::anyhow!("BOXOFFICE_ADMIN_PASSWORD {message}"))?;
        let name = FullName::parse("Administrator").map_err(anyhow::Error::msg)?;
        let user = self
            .auth
            .ensure_account(&email, &password, &name, Role::Admin)
            .await?;
        tracing::info!(email = %user.email, "admin account ready");
        Ok(())
    }

    async fn close(&self) {
        for store in &self.stores {
            store.close().await;
        }
    }
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
        let services = Services::open(&config).await?;
        if let Some(admin) = &config.admin {
            services.ensure_admin(admin).await?;
        }
        if config.demo {
            crate::demo::load(&services).await?;
        }

        let checks: Vec<Arc<dyn ReadyCheck>> = vec![Arc::new(ops::StoreCheck::new(
            "auth_store",
            services.stores[0].clone(),
        ))];
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
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `signal` resolves, then stops accepting, lets in-flight requests and
    /// background tasks finish, and closes the stores.
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
        let stop_serving = stop.clone();
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = signal => {}
                () = stop_serving.cancelled() => {}
            }
        });
        let result = serve.await;
        stop.cancel();
        tasks.close();
        tasks.wait().await;
        services.close().await;
        tracing::info!("boxoffice stopped");
        result.context("serving HTTP")
    }
}

/// Every route of the one-process deployment, with the shared layers.
fn build_router(services: &Services, checks: Vec<Arc<dyn ReadyCheck>>) -> Router {
    let api = boxoffice_auth::router(services.auth.clone());
    ops::with_operations(api, checks).layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
