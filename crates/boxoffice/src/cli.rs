//! The command line. Every flag of `serve` doubles as a `BOXOFFICE_*` environment variable
//! (API contract, "Running it"); secrets are taken from the environment only, so that they do
//! not show up in process listings.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use boxoffice_auth::AuthConfig;
use boxoffice_auth::config::{PasswordParams, RateLimitConfig, SharedThrottles};
use boxoffice_booking::payments::stripe::{Stripe, StripeConfig};
use boxoffice_shared::remote::ServiceCredential;
use boxoffice_shared::telemetry::LogFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::Url;
use secrecy::SecretString;

use crate::config::{AccountSpec, Config, Peers, Roles, Storage};

/// boxoffice: concert ticket booking that does not oversell.
#[derive(Debug, Parser)]
#[command(name = "boxoffice", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "BOXOFFICE_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Pretty)]
    pub log_format: LogFormatArg,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service in one process, or some of them (`--service`) as part of a split
    /// deployment.
    Serve(Box<ServeArgs>),
    /// Write a new Ed25519 key pair for signing tokens: the private key for Auth
    /// (`--jwt-key-file`), the public key for every other service (`--jwt-public-key-file`).
    Keygen(KeygenArgs),
    /// Manage accounts from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Load-test a deployment and verify nothing was oversold, duplicated or lost.
    Loadtest(boxoffice_loadtest::LoadtestArgs),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin account, or make the existing account with this email an admin with this
    /// password.
    Create(AdminCreateArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Pretty,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(value: LogFormatArg) -> Self {
        match value {
            LogFormatArg::Pretty => LogFormat::Pretty,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    Full,
    Normal,
}

/// Who takes the money for priced seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PaymentsArg {
    /// Stripe's test payment-method names decide the outcome; nothing leaves the process.
    Simulated,
    /// Stripe, through its API (`--stripe-api-url`) with the keys from the environment.
    Stripe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Where data lives; shared by `serve` and `admin`.
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// Directory for the embedded SQLite files, the mail directory and a generated signing key.
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Where the stores live: `sqlite://DIR` (one SQLite file per service in DIR) or
    /// `postgres://USER@HOST/DB` (one schema per service in an existing database). Default: SQLite
    /// files in the data directory.
    #[arg(long, env = "BOXOFFICE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// HMAC secret (at least 32 bytes) to sign tokens with, instead of an Ed25519 key.
    #[arg(
        long = "jwt-secret",
        env = "BOXOFFICE_JWT_SECRET",
        hide_env_values = true,
        hide = true
    )]
    pub jwt_secret: Option<String>,
    /// Ed25519 private key (PKCS#8 PEM) to sign tokens with.
    #[arg(long, env = "BOXOFFICE_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,
    /// Ed25519 public key (SPKI PEM) to verify tokens with, for services that run without Auth.
    #[arg(long, env = "BOXOFFICE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Where emails go: `smtp://user:pass@host:port` or `smtps://…`; default: the mail directory.
    #[arg(long, env = "BOXOFFICE_MAIL_URL", hide_env_values = true)]
    pub mail_url: Option<String>,
    /// The mail directory (RFC 5322 `.eml` files); default `<data-dir>/mail`.
    #[arg(long, env = "BOXOFFICE_MAIL_DIR")]
    pub mail_dir: Option<PathBuf>,
    /// The sender of emails, e.g. `Aurora Hall Box Office <tickets@example.com>`; default
    /// `boxoffice <tickets@boxoffice.localhost>`.
    #[arg(long, env = "BOXOFFICE_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// The shop's address as fans reach it (`https://tickets.example.com`), for the links in
    /// emails; default: the listen address when it is a specific one with a fixed port.
    #[arg(long, env = "BOXOFFICE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// argon2id memory cost in KiB (default: OWASP's 19456). Lower only for tests.
    #[arg(long, env = "BOXOFFICE_ARGON2_MEMORY_KIB", default_value_t = PasswordParams::OWASP.memory_kib)]
    pub argon2_memory_kib: u32,
    /// argon2id passes (default: OWASP's 2).
    #[arg(long, env = "BOXOFFICE_ARGON2_ITERATIONS", default_value_t = PasswordParams::OWASP.iterations)]
    pub argon2_iterations: u32,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: `IP:PORT` or `HOST:PORT` (e.g. `localhost:8090`).
    #[arg(long, env = "BOXOFFICE_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Load demo accounts and print how to log in.
    #[arg(long)]
    pub demo: bool,
    /// Login and registration throttles; `off` only for load tests on a trusted network.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT", value_enum, default_value_t = Switch::On)]
    pub rate_limit: Switch,
    /// Redis (`redis://HOST:PORT`) where several Auth instances share the throttles' counts;
    /// without it (or while it does not answer) each process counts on its own.
    #[arg(long, env = "BOXOFFICE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// `full`: a 201 means the booking is on disk (SQLite `synchronous=FULL`). `normal`: it
    /// survives a crash of the process but maybe not a power loss; faster on slow disks.
    #[arg(long, env = "BOXOFFICE_DURABILITY", value_enum, default_value_t = DurabilityArg::Full)]
    pub durability: DurabilityArg,
    /// Lets admins create load-test accounts in bulk (`POST /api/v1/admin/load-test-accounts`);
    /// only for load tests, never on a deployment that real people use.
    #[arg(long, env = "BOXOFFICE_LOAD_TEST_ACCOUNTS", value_enum, default_value_t = Switch::Off)]
    pub load_test_accounts: Switch,
    /// Email of an admin account to create (or promote) at start-up.
    #[arg(long, env = "BOXOFFICE_ADMIN_EMAIL", requires = "admin_password")]
    pub admin_email: Option<String>,
    /// Password of that admin account (environment only).
    #[arg(
        long,
        env = "BOXOFFICE_ADMIN_PASSWORD",
        hide_env_values = true,
        hide = true,
        requires = "admin_email"
    )]
    pub admin_password: Option<String>,
    /// Bookings and cancels one user may make within 10 seconds (with `--rate-limit on`).
    #[arg(long, env = "BOXOFFICE_WRITES_PER_USER", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub writes_per_user: u32,
    /// Bookings and cancels from one client address within 10 seconds, whatever the users.
    #[arg(long, env = "BOXOFFICE_WRITES_PER_ADDRESS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub writes_per_address: u32,
    /// Ed25519 private key (PKCS#8 PEM) that signs ticket codes; every Booking instance of a
    /// split deployment needs the same one. Default: a key generated into the data directory.
    #[arg(long, env = "BOXOFFICE_TICKET_KEY_FILE")]
    pub ticket_key_file: Option<PathBuf>,
    /// Lets webhooks reach private, loopback and link-local addresses (`on`): for tests and
    /// closed networks only; by default such URLs are refused (server-side request forgery).
    #[arg(long = "webhooks-allow-private", env = "BOXOFFICE_WEBHOOKS_ALLOW_PRIVATE", value_enum, default_value_t = Switch::Off, num_args = 0..=1, default_missing_value = "on")]
    pub webhooks_allow_private: Switch,
    /// The pause before each retry of a failed webhook delivery, in seconds, comma-separated;
    /// after the last a delivery is given up. Default: the contract's 5 s, 5 min, 30 min, 2 h,
    /// 5 h, 10 h, 10 h (retried for 27.6 hours). Shorter schedules are for tests.
    #[arg(long, env = "BOXOFFICE_WEBHOOKS_RETRY_SCHEDULE", value_delimiter = ',')]
    pub webhooks_retry_schedule: Vec<u64>,
    /// Seconds a hold keeps its seat while the fan pays; at `expires_at` the seat returns.
    #[arg(long, env = "BOXOFFICE_HOLD_TTL", default_value_t = 600, value_parser = clap::value_parser!(u64).range(30..=3600))]
    pub hold_ttl: u64,
    /// Seconds a waiting-list offer keeps its seat for the fan it was offered to.
    #[arg(long, env = "BOXOFFICE_OFFER_TTL", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(30..=86400))]
    pub offer_ttl: u64,
    /// Who takes the money for priced seats: `simulated`, or `stripe` (needs
    /// BOXOFFICE_STRIPE_SECRET_KEY and BOXOFFICE_STRIPE_WEBHOOK_SECRET).
    #[arg(long, env = "BOXOFFICE_PAYMENTS", value_enum, default_value_t = PaymentsArg::Simulated)]
    pub payments: PaymentsArg,
    /// Stripe's API address; a local Stripe-compatible server for tests.
    #[arg(long, env = "BOXOFFICE_STRIPE_API_URL", default_value = boxoffice_booking::payments::stripe::STRIPE_API_URL)]
    pub stripe_api_url: String,
    /// Stripe's secret API key (environment only).
    #[arg(
        long,
        env = "BOXOFFICE_STRIPE_SECRET_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub stripe_secret_key: Option<String>,
    /// The signing secret of Stripe's webhook endpoint (environment only).
    #[arg(
        long,
        env = "BOXOFFICE_STRIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        hide = true
    )]
    pub stripe_webhook_secret: Option<String>,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection is kept open.
    #[arg(long, env = "BOXOFFICE_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Seconds a client has to send a whole request body.
    #[arg(long, env = "BOXOFFICE_BODY_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,
    /// Connections served at once; one more is answered 503 and closed. Default: 10 000, or
    /// 256 below the process's open-files limit when that is lower.
    #[arg(long, env = "BOXOFFICE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,
    #[command(flatten)]
    pub split: SplitArgs,
}

/// `--listen`: an `IP:PORT`, or a `HOST:PORT` whose name resolves (to its first IPv4 address,
/// else its first address).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    if !text.contains(':') {
        return Err(format!(
            "`{text}` has no port: give HOST:PORT, e.g. 127.0.0.1:8080"
        ));
    }
    let addresses: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|error| format!("`{text}` does not resolve: {error}"))?
        .collect();
    // `localhost` often resolves to ::1 and 127.0.0.1: listen where clients look first.
    addresses
        .iter()
        .find(|address| address.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// A service `serve --service` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceArg {
    Auth,
    Catalog,
    Booking,
    Notifications,
    Gateway,
}

/// Where split services find each other, and how they prove who they are.
#[derive(Debug, Args)]
pub struct SplitArgs {
    /// The services to run, comma-separated: auth, catalog, booking, notifications, gateway.
    /// Default: all but the gateway, in this one process.
    #[arg(
        long = "service",
        env = "BOXOFFICE_SERVICES",
        value_enum,
        value_delimiter = ','
    )]
    pub services: Vec<ServiceArg>,
    /// Root URL(s) of the Auth service, comma-separated (e.g. `http://10.0.0.2:8080`).
    #[arg(long, env = "BOXOFFICE_AUTH_URL", value_delimiter = ',')]
    pub auth_url: Vec<Url>,
    /// Root URL(s) of the Catalog service (the gateway's upstreams).
    #[arg(long, env = "BOXOFFICE_CATALOG_URL", value_delimiter = ',')]
    pub catalog_url: Vec<Url>,
    /// Root URL(s) of the Booking instances.
    #[arg(long, env = "BOXOFFICE_BOOKING_URL", value_delimiter = ',')]
    pub booking_url: Vec<Url>,
    /// This Booking instance's own root URL, as the other Booking instances reach it (e.g.
    /// `http://10.0.0.5:8080`). In a split deployment on PostgreSQL it gives each concert one
    /// owner instance at a time, which makes its new bookings and holds; the others forward them.
    #[arg(long, env = "BOXOFFICE_ADVERTISE_URL")]
    pub advertise_url: Option<Url>,
    /// The shared secret of `/internal/v1` calls between services (environment only).
    #[arg(
        long = "service-token",
        env = "BOXOFFICE_SERVICE_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub service_token: Option<String>,
    /// Addresses of proxies (the gateway) whose `X-Forwarded-For` names the client, for the
    /// login and registration throttles; comma-separated.
    #[arg(long, env = "BOXOFFICE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long)]
    pub private_key: PathBuf,
    /// Where to write the public key (SPKI PEM).
    #[arg(long)]
    pub public_key: PathBuf,
}

#[derive(Debug, Args)]
pub struct AdminCreateArgs {
    #[arg(long)]
    pub email: String,
    /// The password; `BOXOFFICE_ADMIN_PASSWORD` keeps it out of the shell history.
    #[arg(long, env = "BOXOFFICE_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: String,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// The shop's public address: as given (an `http` or `https` URL), or the listen address when
/// that is one a browser can reach (a specific address, a fixed port).
fn public_url(given: Option<&str>, listen: SocketAddr) -> anyhow::Result<Option<String>> {
    match given.map(str::trim).filter(|url| !url.is_empty()) {
        Some(url) => {
            let uri: http::Uri = url
                .parse()
                .map_err(|_| anyhow::anyhow!("--public-url {url:?} is not a URL"))?;
            anyhow::ensure!(
                matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some(),
                "--public-url {url:?} must be an http:// or https:// address"
            );
            Ok(Some(url.trim_end_matches('/').to_owned()))
        }
        None if listen.ip().is_unspecified() || listen.port() == 0 => Ok(None),
        None => Ok(Some(format!("http://{listen}"))),
    }
}

impl StorageArgs {
    /// The configuration these flags describe, listening on `listen`.
    pub fn into_config(self, listen: SocketAddr) -> anyhow::Result<Config> {
        let storage = Storage::from_url(self.database_url.as_deref(), &self.data_dir)?;
        let mut config = Config::new(listen, self.data_dir);
        config.storage = storage;
        config.jwt_secret = self.jwt_secret.map(SecretString::from);
        config.jwt_key_file = self.jwt_key_file;
        config.jwt_public_key_file = self.jwt_public_key_file;
        config.mail_url = self.mail_url;
        config.mail_dir = self.mail_dir;
        config.mail_from = self.mail_from;
        config.public_url = public_url(self.public_url.as_deref(), listen)?;
        config.auth = AuthConfig {
            password: PasswordParams {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
                parallelism: 1,
            },
            ..AuthConfig::default()
        };
        Ok(config)
    }
}

impl ServeArgs {
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut config = self.storage.into_config(self.listen)?;
        config.demo = self.demo;
        config.auth.rate_limit = match self.rate_limit {
            Switch::On => Some(RateLimitConfig::default()),
            Switch::Off => None,
        };
        config.write_limits = match self.rate_limit {
            Switch::On => Some(boxoffice_auth::write_limits::WriteLimitConfig {
                per_user: self.writes_per_user,
                per_address: self.writes_per_address,
                ..Default::default()
            }),
            Switch::Off => None,
        };
        config.auth.load_test_accounts = self.load_test_accounts == Switch::On;
        config.auth.shared_throttles = self.redis_url.map(|url| SharedThrottles {
            url,
            prefix: SharedThrottles::DEFAULT_PREFIX.to_owned(),
        });
        config.durability = match self.durability {
            DurabilityArg::Full => boxoffice_shared::db::Durability::Full,
            DurabilityArg::Normal => boxoffice_shared::db::Durability::Normal,
        };
        config.admin = match (self.admin_email, self.admin_password) {
            (Some(email), Some(password)) => Some(AccountSpec {
                email,
                password: SecretString::from(password),
            }),
            _ => None,
        };
        config.ticket_key_file = self.ticket_key_file;
        config.checkout.hold_ttl = std::time::Duration::from_secs(self.hold_ttl);
        config.checkout.offer_ttl = std::time::Duration::from_secs(self.offer_ttl);
        config.webhooks.allow_private = self.webhooks_allow_private == Switch::On;
        if !self.webhooks_retry_schedule.is_empty() {
            config.webhooks.retry_schedule = (self.webhooks_retry_schedule.iter())
                .map(|seconds| std::time::Duration::from_secs(*seconds))
                .collect();
        }
        if self.payments == PaymentsArg::Stripe {
            let (Some(secret_key), Some(webhook_secret)) =
                (self.stripe_secret_key, self.stripe_webhook_secret)
            else {
                anyhow::bail!(
                    "--payments stripe needs BOXOFFICE_STRIPE_SECRET_KEY and \
                     BOXOFFICE_STRIPE_WEBHOOK_SECRET"
                );
            };
            let stripe = Stripe::new(StripeConfig {
                secret_key: SecretString::from(secret_key),
                webhook_secret: SecretString::from(webhook_secret),
                api_url: self.stripe_api_url,
            })?;
            config.checkout.payments = std::sync::Arc::new(stripe);
        }
        config.connections.header_read = std::time::Duration::from_secs(self.header_timeout);
        config.connections.body_read = std::time::Duration::from_secs(self.body_timeout);
        if let Some(max) = self.max_connections {
            config.connections.max_connections = max as usize;
        }
        self.split.apply(&mut config)?;
        Ok(config)
    }
}

impl SplitArgs {
    fn apply(self, config: &mut Config) -> anyhow::Result<()> {
        if !self.services.is_empty() {
            let mut roles = Roles::NONE;
            for service in self.services {
                match service {
                    ServiceArg::Auth => roles.auth = true,
                    ServiceArg::Catalog => roles.catalog = true,
                    ServiceArg::Booking => roles.booking = true,
                    ServiceArg::Notifications => roles.notifications = true,
                    ServiceArg::Gateway => roles.gateway = true,
                }
            }
            config.roles = roles;
        }
        config.peers = Peers {
            auth: self.auth_url,
            catalog: self.catalog_url,
            booking: self.booking_url,
        };
        config.advertise_url = self.advertise_url;
        config.service_credential = self
            .service_token
            .map(|token| {
                ServiceCredential::parse(token)
                    .map_err(|error| anyhow::anyhow!("BOXOFFICE_SERVICE_TOKEN: {error}"))
            })
            .transpose()?;
        config.trusted_proxies = self.trusted_proxies;
        Ok(())
    }
}
