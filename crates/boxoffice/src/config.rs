//! What `serve` is told: the parsed configuration ([`Config`]), which services this process
//! runs ([`Roles`]), where the others are ([`Peers`]) and where the data lives ([`Storage`]),
//! with the checks that refuse combinations that cannot work.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use boxoffice_auth::AuthConfig;
use boxoffice_auth::write_limits::WriteLimitConfig;
use boxoffice_booking::payments::Checkout;
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::db::Durability;
pub use boxoffice_shared::db::{Storage, redact};
use boxoffice_shared::remote::ServiceCredential;
use reqwest::Url;
use secrecy::SecretString;

use crate::server::ConnectionLimits;

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
    /// The shop's public address, for the links in emails (`BOXOFFICE_PUBLIC_URL`); `None`: no
    /// links.
    pub public_url: Option<String>,
    pub auth: AuthConfig,
    pub clock: SharedClock,
    /// The services this process runs.
    pub roles: Roles,
    /// The services it calls.
    pub peers: Peers,
    /// Where the other Booking instances reach this one (`BOXOFFICE_ADVERTISE_URL`): with it, a
    /// split Booking instance on PostgreSQL shares the concerts' sales by owner.
    pub advertise_url: Option<Url>,
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
    /// How long holds last and who takes the money (the simulated provider by default).
    pub checkout: Checkout,
    /// The Ed25519 key that signs ticket codes; `None`: one generated into `data_dir`.
    pub ticket_key_file: Option<PathBuf>,
    /// How webhooks are delivered: the forgery guard's switch and the retry schedule.
    pub webhooks: boxoffice_booking::webhook::Settings,
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
            public_url: None,
            auth: AuthConfig::default(),
            clock: boxoffice_shared::clock::system(),
            roles: Roles::ALL_IN_ONE,
            peers: Peers::default(),
            advertise_url: None,
            service_credential: None,
            trusted_proxies: Vec::new(),
            connections: ConnectionLimits::default(),
            write_limits: Some(WriteLimitConfig::default()),
            checkout: Checkout::default(),
            ticket_key_file: None,
            webhooks: boxoffice_booking::webhook::Settings::default(),
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
