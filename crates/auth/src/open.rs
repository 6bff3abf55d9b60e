//! Opening Auth for one process. Where Auth runs: its store, keys, the follower of revocations
//! made by other instances, and the directory routes its peers call ([`open`]). Where it does
//! not: the verifier of its tokens ([`authenticator_elsewhere`]) and the follower of its
//! revocations ([`follow_revocations`]). And the limits on writes that Booking counts with
//! ([`write_limiter`]), which share Auth's counters.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_shared::clients::{RevocationSource, WriteLimiter};
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::component::{Component, RevocationCheck, Url, Wiring};
use boxoffice_shared::db::{Durability, Storage, Store};
use boxoffice_shared::keys::{KeyMaterial, KeyOrigin};
use boxoffice_shared::remote::{RemoteRevocations, directory_routes};
use boxoffice_shared::revocation::Follower;
use boxoffice_shared::token::{Authenticator, RevokedSessions, TokenVerifier};
use secrecy::SecretString;

use crate::config::AuthConfig;
use crate::limits::SharedCounters;
use crate::service::AuthService;
use crate::store::AuthStore;
use crate::tokens::TokenIssuer;
use crate::write_limits::{WriteLimitConfig, WriteLimits};

/// Where the token key comes from: at most one of the three is given.
pub struct Keys<'a> {
    /// An HMAC secret (`BOXOFFICE_JWT_SECRET`).
    pub secret: Option<&'a SecretString>,
    /// An Ed25519 private key (`--jwt-key-file`).
    pub key_file: Option<&'a Path>,
    /// The public half of that key (`--jwt-public-key-file`): all a process that only verifies
    /// tokens needs.
    pub public_key_file: Option<&'a Path>,
    /// Where a generated key is kept when none is given.
    pub data_dir: &'a Path,
}

/// What Auth is opened with where it runs.
pub struct Setup<'a> {
    pub storage: &'a Storage,
    pub keys: Keys<'a>,
    pub config: &'a AuthConfig,
    pub clock: SharedClock,
}

/// What opening Auth gives the rest of the process.
pub struct Opened {
    pub auth: AuthService,
    /// How this process checks tokens: with Auth's own keys.
    pub authenticator: Authenticator,
    pub component: Component,
}

/// Opens Auth: its store and keys, the follower of revocations made by other instances (on
/// PostgreSQL), and in a split deployment the directory routes its peers call.
pub async fn open(wiring: &Wiring<'_>, setup: Setup<'_>) -> anyhow::Result<Opened> {
    let (auth, authenticator, store) = open_store_and_keys(setup).await?;
    if let Store::Postgres(db) = &store {
        wiring.tasks.spawn(
            auth.clone()
                .follow_revocations(db.pool.clone(), wiring.stopped()),
        );
    }
    let mut component = Component::default();
    if wiring.split {
        component.serve(directory_routes(
            Arc::new(auth.clone()),
            wiring.peer_credential()?,
        ));
    }
    component.store("auth_store", store);
    Ok(Opened {
        auth,
        authenticator,
        component,
    })
}

/// Opens the Auth store (running its migrations) and loads the keys: all that account
/// management needs, and the first step of [`open`].
pub async fn open_store_and_keys(
    setup: Setup<'_>,
) -> anyhow::Result<(AuthService, Authenticator, Store)> {
    let Setup {
        storage,
        keys,
        config,
        clock,
    } = setup;
    std::fs::create_dir_all(keys.data_dir)
        .with_context(|| format!("creating the data directory {}", keys.data_dir.display()))?;
    anyhow::ensure!(
        keys.public_key_file.is_none(),
        "auth signs tokens: it needs the private key (--jwt-key-file), not --jwt-public-key-file"
    );
    let store = storage
        .open("auth", Durability::Full, 8)
        .await
        .context("opening the auth store")?;
    let auth_store = AuthStore::new(store.clone());
    auth_store
        .migrate()
        .await
        .context("migrating the auth store")?;
    // The key only after the store opened: a start that fails on its database leaves no new
    // key file behind.
    let material = KeyMaterial::load(keys.secret, keys.key_file, keys.data_dir)?;
    match &material.origin {
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
        verifier: Arc::new(material.verifier()),
        revoked: RevokedSessions::default(),
        clock,
    };
    if config.password.below_recommendation() {
        tracing::warn!(?config.password, "argon2 parameters are below the OWASP recommendation");
    }
    let auth = AuthService::new(
        config.clone(),
        auth_store,
        TokenIssuer::new(material.algorithm, material.encoding),
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
    Ok((auth, authenticator, store))
}

/// How a process without Auth checks tokens: with the public half of Auth's key, preferably.
/// A process that verifies no token (`verifies_tokens` false: Notifications alone) refuses
/// them all. `services` names this process's services, for the error message.
pub fn authenticator_elsewhere(
    keys: &Keys<'_>,
    verifies_tokens: bool,
    clock: SharedClock,
    services: &str,
) -> anyhow::Result<Authenticator> {
    let verifier = match verifies_tokens {
        true => verifier_elsewhere(keys, services)?,
        false => TokenVerifier::refusing_all(),
    };
    Ok(Authenticator {
        verifier: Arc::new(verifier),
        revoked: RevokedSessions::default(),
        clock,
    })
}

fn verifier_elsewhere(keys: &Keys<'_>, services: &str) -> anyhow::Result<TokenVerifier> {
    match (keys.public_key_file, keys.key_file, keys.secret) {
        (Some(path), None, None) => boxoffice_shared::keys::load_public_key(path),
        (None, Some(path), None) => {
            tracing::warn!(
                "this process only verifies tokens but holds the private key; give it the public \
                 half alone (--jwt-public-key-file)"
            );
            Ok(KeyMaterial::load(None, Some(path), keys.data_dir)?.verifier())
        }
        (None, None, Some(secret)) => {
            tracing::warn!(
                "tokens are verified with a shared HMAC secret, so this process could also mint \
                 them; an Ed25519 pair (`boxoffice keygen`) keeps that power with Auth alone"
            );
            Ok(KeyMaterial::from_secret(secret)?.verifier())
        }
        (None, None, None) => anyhow::bail!(
            "--service {services}: verifying tokens needs the public half of Auth's key; give \
             --jwt-public-key-file (`boxoffice keygen` writes a key pair)"
        ),
        _ => anyhow::bail!(
            "give one of --jwt-public-key-file, --jwt-key-file and BOXOFFICE_JWT_SECRET, not several"
        ),
    }
}

/// A process that verifies tokens without running Auth follows Auth's revocations: on the
/// shared database's notification channel (found among `stores`), and from Auth's list (at
/// `auth`) after every (re)connection. It is not ready until it has read that list once.
pub fn follow_revocations(
    wiring: &Wiring<'_>,
    authenticator: &Authenticator,
    stores: &[Store],
    auth: &[Url],
    access_ttl: std::time::Duration,
) -> anyhow::Result<Component> {
    let pool = stores.iter().find_map(|store| match store {
        Store::Postgres(db) => Some(db.pool.clone()),
        Store::Sqlite(_) => None,
    });
    let pool = pool.context("following revocations needs the PostgreSQL database")?;
    let source: Arc<dyn RevocationSource> = wiring.failover(auth, RemoteRevocations::new)?;
    let follower = Follower::new(
        source,
        authenticator.revoked.clone(),
        authenticator.clock.clone(),
        access_ttl,
    );
    let mut component = Component::default();
    component.check(RevocationCheck(follower.clone()));
    wiring.tasks.spawn(follower.follow(pool, wiring.stopped()));
    Ok(component)
}

/// The limits on bookings and cancels, counted in Auth's shared counters (Redis) where Auth's
/// throttles are shared, per process otherwise.
pub fn write_limiter(
    config: &AuthConfig,
    limits: WriteLimitConfig,
) -> anyhow::Result<Arc<dyn WriteLimiter>> {
    let shared = config
        .shared_throttles
        .as_ref()
        .map(|shared| SharedCounters::connect(&shared.url, &shared.prefix))
        .transpose()
        .map_err(|error| anyhow::anyhow!("--redis-url: {error}"))?;
    Ok(Arc::new(WriteLimits::new(limits, shared)))
}
