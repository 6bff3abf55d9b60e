//! Opening Auth: its store and keys where it runs; where it does not, the verifier of Auth's
//! tokens and the follower of Auth's revocations.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_auth::AuthService;
use boxoffice_auth::store::AuthStore;
use boxoffice_auth::tokens::TokenIssuer;
use boxoffice_shared::clients::RevocationSource;
use boxoffice_shared::db::{Durability, Store};
use boxoffice_shared::keys::{KeyMaterial, KeyOrigin};
use boxoffice_shared::remote::RemoteRevocations;
use boxoffice_shared::token::{Authenticator, RevokedSessions, TokenVerifier};

use super::{Component, Context};
use crate::config::Config;
use crate::ops;

/// What opening Auth gives the rest of the process.
pub struct Opened {
    /// The service, where this process runs it.
    pub auth: Option<AuthService>,
    /// How this process checks tokens: Auth's own keys, or the verifier of a process without Auth.
    pub authenticator: Authenticator,
    pub component: Component,
}

/// Opens Auth where this process runs it: its store, keys, the follower of revocations made by
/// other instances, and the directory routes its peers call. Elsewhere, only the verifier of
/// its tokens (the follower comes later, see [`follow_revocations`]).
pub async fn open(context: &Context<'_>) -> anyhow::Result<Opened> {
    let config = context.config;
    let roles = config.roles;
    let mut component = Component::default();
    if !roles.auth {
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
        return Ok(Opened {
            auth: None,
            authenticator,
            component,
        });
    }
    let (auth, authenticator, auth_db) = open_auth(config).await?;
    if let Store::Postgres(db) = &auth_db {
        context.tasks.spawn(
            auth.clone()
                .follow_revocations(db.pool.clone(), context.stopped()),
        );
    }
    if context.split {
        component.internal = component
            .internal
            .merge(boxoffice_shared::remote::directory_routes(
                Arc::new(auth.clone()),
                context.peer_credential()?,
            ));
    }
    component.checks.push(Arc::new(ops::StoreCheck::new(
        "auth_store",
        auth_db.clone(),
    )));
    component.stores.push(auth_db);
    Ok(Opened {
        auth: Some(auth),
        authenticator,
        component,
    })
}

/// A process that verifies tokens without running Auth follows Auth's revocations: on the
/// shared database's notification channel (found among `stores`), and from Auth's list after
/// every (re)connection. It is not ready until it has read that list once. Nothing to do where
/// Auth runs, or where no token is verified.
pub fn follow_revocations(
    context: &Context<'_>,
    authenticator: &Authenticator,
    stores: &[Store],
) -> anyhow::Result<Component> {
    let roles = context.config.roles;
    let mut component = Component::default();
    if roles.auth || !(roles.booking || roles.catalog) {
        return Ok(component);
    }
    let pool = stores.iter().find_map(|store| match store {
        Store::Postgres(db) => Some(db.pool.clone()),
        Store::Sqlite(_) => None,
    });
    let pool = pool.context("following revocations needs the PostgreSQL database")?;
    let source: Arc<dyn RevocationSource> =
        context.failover(&context.config.peers.auth, RemoteRevocations::new)?;
    let follower = boxoffice_shared::revocation::Follower::new(
        source,
        authenticator.revoked.clone(),
        context.config.clock.clone(),
        context.config.auth.access_ttl,
    );
    component
        .checks
        .push(Arc::new(ops::RevocationCheck(follower.clone())));
    context
        .tasks
        .spawn(follower.follow(pool, context.stopped()));
    Ok(component)
}

/// Opens the Auth store (running its migrations) and loads the keys: all that account
/// management needs, and the first step of [`open`].
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
