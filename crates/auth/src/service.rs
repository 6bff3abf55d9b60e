//! The Auth service's rules, composed from its parts. Handlers parse input into domain types and
//! call these methods; nothing here knows about HTTP.

use std::net::IpAddr;
use std::sync::Arc;

use boxoffice_shared::FieldError;
use boxoffice_shared::clients::RevokedSession;
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::token::{
    AuthUser, Authenticator, REVOCATION_MARGIN, RevokedSessions, Role, forget_revoked_after,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::AuthConfig;
use crate::domain::{Email, FullName, Login, Password, Phone};
use crate::error::AuthError;
use crate::limits::SharedCounters;
use crate::password::Passwords;
use crate::store::{AuthStore, NewUser, RefreshOutcome, UserFilter, UserRecord};
use crate::throttles::Throttles;
use crate::tokens::{TokenIssuer, hash_refresh_token, new_refresh_token};

/// The tokens handed out by register, login and refresh.
#[derive(Debug)]
pub struct IssuedTokens {
    pub user: UserRecord,
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// A validated registration.
#[derive(Debug)]
pub struct Registration {
    pub email: Email,
    pub password: Password,
    pub full_name: FullName,
    pub phone: Option<Phone>,
}

/// A validated profile change; `phone: Some(None)` removes the phone number.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub full_name: Option<FullName>,
    pub phone: Option<Option<Phone>>,
}

struct Inner {
    config: AuthConfig,
    store: AuthStore,
    passwords: Passwords,
    issuer: TokenIssuer,
    authenticator: Authenticator,
    throttles: Option<Throttles>,
}

/// The Auth service. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

impl AuthService {
    pub fn new(
        config: AuthConfig,
        store: AuthStore,
        issuer: TokenIssuer,
        authenticator: Authenticator,
    ) -> anyhow::Result<Self> {
        let passwords = Passwords::new(config.password)?;
        let shared = match (&config.rate_limit, &config.shared_throttles) {
            (Some(_), Some(shared)) => Some(
                SharedCounters::connect(&shared.url, &shared.prefix)
                    .map_err(|error| anyhow::anyhow!("--redis-url: {error}"))?,
            ),
            _ => None,
        };
        let throttles = config
            .rate_limit
            .map(|limits| Throttles::new(limits, shared));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                passwords,
                issuer,
                authenticator,
                throttles,
            }),
        })
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.authenticator
    }

    pub fn store(&self) -> &AuthStore {
        &self.inner.store
    }

    fn clock(&self) -> &SharedClock {
        &self.inner.authenticator.clock
    }

    fn revoked(&self) -> &RevokedSessions {
        &self.inner.authenticator.revoked
    }

    /// Waits (at most `timeout`) for the connection to the Redis server that shares the
    /// throttles' counts, so that a starting instance counts with the others from its first
    /// request; `false` if it is not there yet (counting goes on per process until it is).
    /// `true` at once when the counts are not shared.
    pub async fn wait_for_shared_throttles(&self, timeout: std::time::Duration) -> bool {
        let Some(shared) = self.inner.throttles.as_ref().and_then(Throttles::shared) else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        while !shared.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }

    /// Loads the sessions revoked recently enough that their access tokens may still be valid, so
    /// that a restart does not bring logged-out tokens back to life.
    pub async fn load_revocations(&self) -> Result<usize, AuthError> {
        let sessions = self.recently_revoked().await?;
        let now = self.clock().now().unix_timestamp();
        for session in &sessions {
            self.revoked()
                .revoke(session.session_id, session.forget_after, now);
        }
        Ok(sessions.len())
    }

    /// The sessions revoked recently enough that their access tokens may still be valid, each
    /// with the moment it may be forgotten — the same rule as a revocation made by this process
    /// ([`forget_revoked_after`]).
    async fn recently_revoked(&self) -> Result<Vec<RevokedSession>, AuthError> {
        let now = self.clock().now();
        let access_ttl = self.inner.config.access_ttl;
        let remembered = time::Duration::try_from(access_ttl.saturating_add(REVOCATION_MARGIN))
            .unwrap_or(time::Duration::MINUTE * 16);
        let sessions = self
            .inner
            .store
            .sessions_revoked_since(now - remembered)
            .await?;
        Ok(sessions
            .into_iter()
            .map(|(session_id, revoked_at)| RevokedSession {
                session_id,
                forget_after: forget_revoked_after(revoked_at.unix_timestamp(), access_ttl),
            })
            .collect())
    }

    /// Creates a customer account and logs it in.
    pub async fn register(
        &self,
        registration: Registration,
        client: IpAddr,
    ) -> Result<IssuedTokens, AuthError> {
        if let Some(throttles) = &self.inner.throttles {
            throttles.admit_registration(client).await?;
        }
        let hash = self
            .inner
            .passwords
            .hash(registration.password.expose())
            .await?;
        let user = self
            .inner
            .store
            .insert_user(
                &NewUser {
                    id: Uuid::now_v7(),
                    email: registration.email.as_str(),
                    phone: registration.phone.as_ref().map(Phone::as_str),
                    full_name: registration.full_name.as_str(),
                    password_hash: &hash,
                    role: Role::Customer,
                },
                self.clock().now(),
            )
            .await?;
        metrics::counter!("auth_registrations_total").increment(1);
        self.start_session(user).await
    }

    /// Logs in by email or phone. Unknown logins and wrong passwords get the same answer, after
    /// the same amount of work. Throttled per client (see [`crate::throttles`]): a client that
    /// keeps failing is refused, not the account it fails on.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<IssuedTokens, AuthError> {
        let login = Login::parse(login);
        if let Some(throttles) = &self.inner.throttles {
            throttles.admit_client(client).await?;
        }
        let user = match &login {
            Some(Login::Email(email)) => self.inner.store.user_by_email(email.as_str()).await?,
            Some(Login::Phone(phone)) => self.inner.store.user_by_phone(phone.as_str()).await?,
            None => None,
        };
        // Failures count against the account, whichever identifier (email or phone) names it;
        // a login that names no account counts under what was typed, so that its answers look
        // like those for an account.
        let account_key = match (&user, &login) {
            (Some(user), _) => Some(format!("account:{}", user.id)),
            (None, Some(login)) => Some(login.throttle_key()),
            (None, None) => None,
        };
        if let (Some(throttles), Some(key)) = (&self.inner.throttles, &account_key) {
            throttles.admit_attempt(key, client).await?;
        }
        let verified = match &user {
            Some(user) => {
                self.inner
                    .passwords
                    .verify(password, &user.password_hash)
                    .await?
            }
            None => self.inner.passwords.verify_nothing(password).await?,
        };
        match (user, verified) {
            (Some(user), true) => {
                if let (Some(throttles), Some(key)) = (&self.inner.throttles, &account_key) {
                    throttles.login_succeeded(key, client).await;
                }
                metrics::counter!("auth_logins_total", "outcome" => "success").increment(1);
                self.start_session(user).await
            }
            _ => {
                if let Some(throttles) = &self.inner.throttles {
                    throttles.login_failed(account_key.as_deref(), client).await;
                }
                metrics::counter!("auth_logins_total", "outcome" => "failure").increment(1);
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// Exchanges a refresh token for new tokens (rotation). Reuse of a spent token revokes the
    /// session: whoever holds either copy must log in again.
    pub async fn refresh(&self, presented: &str) -> Result<IssuedTokens, AuthError> {
        let now = self.clock().now();
        let (successor, successor_hash) = new_refresh_token();
        let (outcome, session_id) = self
            .inner
            .store
            .rotate_refresh_token(
                &hash_refresh_token(presented),
                &successor_hash,
                now,
                now + self.refresh_ttl(),
            )
            .await?;
        match outcome {
            RefreshOutcome::Rotated { user_id, role } => {
                let user = self
                    .inner
                    .store
                    .user_by_id(user_id)
                    .await?
                    .ok_or(AuthError::InvalidRefreshToken)?;
                let user = UserRecord { role, ..user };
                let access_token = self.access_token(&user, session_id, now)?;
                Ok(IssuedTokens {
                    user,
                    access_token,
                    refresh_token: successor,
                    expires_in: self.inner.config.access_ttl.as_secs(),
                })
            }
            RefreshOutcome::Reused { session_id } => {
                tracing::warn!(%session_id, "refresh token reused; session revoked");
                metrics::counter!("auth_refresh_reuse_total").increment(1);
                self.remember_revoked(session_id, now);
                Err(AuthError::InvalidRefreshToken)
            }
            RefreshOutcome::Invalid => Err(AuthError::InvalidRefreshToken),
        }
    }

    /// Ends a session: its access and refresh tokens stop working at once.
    pub async fn logout(&self, session_id: Uuid) -> Result<(), AuthError> {
        let now = self.clock().now();
        self.inner.store.revoke_session(session_id, now).await?;
        self.remember_revoked(session_id, now);
        Ok(())
    }

    pub async fn me(&self, user_id: Uuid) -> Result<UserRecord, AuthError> {
        self.inner
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::AccountGone)
    }

    /// Any user, by id (for an admin): 404 `user_not_found` for none.
    pub async fn user(&self, user_id: Uuid) -> Result<UserRecord, AuthError> {
        self.inner
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::UserNotFound)
    }

    pub async fn update_me(
        &self,
        user_id: Uuid,
        change: ProfileChange,
    ) -> Result<UserRecord, AuthError> {
        let phone = change
            .phone
            .as_ref()
            .map(|phone| phone.as_ref().map(Phone::as_str));
        self.inner
            .store
            .update_profile(
                user_id,
                change.full_name.as_ref().map(FullName::as_str),
                phone,
                self.clock().now(),
            )
            .await?
            .ok_or(AuthError::AccountGone)
    }

    /// Makes sure an account with these credentials exists with `role`: creates it, or updates the
    /// password and role of the account that has this email.
    pub async fn ensure_account(
        &self,
        email: &Email,
        password: &Password,
        full_name: &FullName,
        role: Role,
    ) -> Result<UserRecord, AuthError> {
        let hash = self.inner.passwords.hash(password.expose()).await?;
        self.inner
            .store
            .upsert_account(
                &NewUser {
                    id: Uuid::now_v7(),
                    email: email.as_str(),
                    phone: None,
                    full_name: full_name.as_str(),
                    password_hash: &hash,
                    role,
                },
                self.clock().now(),
            )
            .await
    }

    /// Whether the bulk load-test account route is switched on.
    pub fn load_test_accounts_enabled(&self) -> bool {
        self.inner.config.load_test_accounts
    }

    /// Creates `count` customer accounts named `<prefix>-<id>@loadtest.invalid`, each with a
    /// session and an access token, without per-account password hashing (their one shared hash
    /// is of a random password, so nobody can log in as them). For load tests only: the route
    /// that calls this is off unless configured.
    pub async fn create_load_test_accounts(
        &self,
        prefix: &str,
        count: u32,
    ) -> Result<Vec<IssuedTokens>, AuthError> {
        let (secret, _) = new_refresh_token();
        let hash = self.inner.passwords.hash(&secret).await?;
        let now = self.clock().now();
        let accounts: Vec<(Uuid, String, Uuid)> = (0..count)
            .map(|_| {
                let id = Uuid::now_v7();
                (
                    id,
                    format!("{prefix}-{}@loadtest.invalid", id.simple()),
                    Uuid::now_v7(),
                )
            })
            .collect();
        self.inner
            .store
            .insert_load_test_accounts(&accounts, &hash, now)
            .await?;
        accounts
            .into_iter()
            .map(|(id, email, session)| {
                let user = UserRecord {
                    id,
                    email,
                    phone: None,
                    full_name: "Load Test".to_owned(),
                    password_hash: String::new(),
                    role: Role::Customer,
                    created_at: now,
                };
                let access_token = self.access_token(&user, session, now)?;
                Ok(IssuedTokens {
                    user,
                    access_token,
                    refresh_token: String::new(),
                    expires_in: self.inner.config.access_ttl.as_secs(),
                })
            })
            .collect()
    }

    async fn start_session(&self, user: UserRecord) -> Result<IssuedTokens, AuthError> {
        let now = self.clock().now();
        let session_id = Uuid::now_v7();
        let (refresh_token, refresh_hash) = new_refresh_token();
        self.inner
            .store
            .create_session(
                session_id,
                user.id,
                &refresh_hash,
                now,
                now + self.refresh_ttl(),
            )
            .await?;
        let access_token = self.access_token(&user, session_id, now)?;
        Ok(IssuedTokens {
            user,
            access_token,
            refresh_token,
            expires_in: self.inner.config.access_ttl.as_secs(),
        })
    }

    fn access_token(
        &self,
        user: &UserRecord,
        session_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<String, AuthError> {
        Ok(self.inner.issuer.access_token(
            user.id,
            session_id,
            user.role,
            now,
            self.inner.config.access_ttl,
        )?)
    }

    fn refresh_ttl(&self) -> time::Duration {
        time::Duration::try_from(self.inner.config.refresh_ttl).unwrap_or(time::Duration::days(30))
    }

    /// Follows the revocations every instance on this PostgreSQL database announces (see
    /// [`boxoffice_shared::revocation`]) until `stop` resolves.
    pub async fn follow_revocations(self, pool: sqlx::PgPool, stop: impl Future<Output = ()>) {
        self.revocation_follower().follow(pool, stop).await
    }

    /// A follower of revocations that reads the full list from this service.
    pub fn revocation_follower(&self) -> boxoffice_shared::revocation::Follower {
        boxoffice_shared::revocation::Follower::new(
            std::sync::Arc::new(self.clone()),
            self.revoked().clone(),
            self.clock().clone(),
            self.inner.config.access_ttl,
        )
    }

    /// Users for the admins' list, newest first: at most `limit` after `before`.
    pub async fn list_users(
        &self,
        filter: &UserFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, AuthError> {
        self.inner.store.list_users(filter, before, limit).await
    }

    /// Gives `user_id` the role `role` (an admin's decision). A demotion (admin to staff or
    /// customer, staff to customer) ends every session of the user in the same transaction, so
    /// that no token keeps the rights they lost, here and — through the revocation list — in
    /// every process; a promotion shows in their next access token. An admin cannot give up
    /// their own admin role, so that a deployment never loses its last admin by accident.
    pub async fn set_role(
        &self,
        caller: &AuthUser,
        user_id: Uuid,
        role: Role,
    ) -> Result<UserRecord, AuthError> {
        if caller.user_id == user_id && role != Role::Admin {
            return Err(AuthError::Validation(vec![FieldError::new(
                "role",
                "an admin cannot remove their own admin role",
            )]));
        }
        let now = self.clock().now();
        let demoted = |old: Role| rank(old) > rank(role);
        let (user, revoked) = self
            .inner
            .store
            .set_role(user_id, role, demoted, now)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        for session in revoked {
            self.remember_revoked(session, now);
        }
        tracing::info!(user = %user_id, role = role.as_str(), by = %caller.user_id, "role changed");
        Ok(user)
    }

    fn remember_revoked(&self, session_id: Uuid, now: OffsetDateTime) {
        self.revoked().revoke_now(
            session_id,
            now.unix_timestamp(),
            self.inner.config.access_ttl,
        );
    }
}

/// The in-process answer to "where do I email this user?" for the notifications worker.
#[async_trait::async_trait]
impl boxoffice_shared::clients::UserDirectory for AuthService {
    async fn contact(
        &self,
        user_id: Uuid,
    ) -> Result<Option<boxoffice_shared::clients::Contact>, boxoffice_shared::clients::ClientError>
    {
        match self.inner.store.user_by_id(user_id).await {
            Ok(user) => Ok(user.map(|user| boxoffice_shared::clients::Contact {
                email: user.email,
                full_name: user.full_name,
            })),
            Err(error) => Err(boxoffice_shared::clients::ClientError::Unavailable(
                error.to_string(),
            )),
        }
    }
}

/// The in-process answer to "which sessions are revoked?", for [`boxoffice_shared::revocation`].
#[async_trait::async_trait]
impl boxoffice_shared::clients::RevocationSource for AuthService {
    async fn revoked_sessions(
        &self,
    ) -> Result<Vec<RevokedSession>, boxoffice_shared::clients::ClientError> {
        self.recently_revoked()
            .await
            .map_err(|error| boxoffice_shared::clients::ClientError::Unavailable(error.to_string()))
    }
}

/// How much a role may do: a change to a lower rank is a demotion.
fn rank(role: Role) -> u8 {
    match role {
        Role::Customer => 0,
        Role::Staff => 1,
        Role::Admin => 2,
    }
}
