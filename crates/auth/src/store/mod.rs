//! The Auth store: users, sessions and refresh tokens, on SQLite or PostgreSQL.
//!
//! [`AuthStore`] is the one API the service uses; each method hands over to the engine's module,
//! which holds that engine's SQL:
//! - [`sqlite`]: the embedded default, one writer connection.
//! - [`postgres`]: the `auth` schema of a shared PostgreSQL database, safe to use from several
//!   processes at once.
//!
//! Both engines keep the same tables and constraints (`migrations/sqlite`, `migrations/postgres`)
//! and must behave alike: `tests/store_contract.rs` runs one suite against both. Instants are
//! stored to the whole millisecond on both, so that a value reads back the same on either.

mod postgres;
mod sqlite;

use boxoffice_shared::clock::{from_millis, to_millis};
use boxoffice_shared::db::{Store, is_pg_unique_violation, is_unique_violation};
use boxoffice_shared::token::Role;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::Email;
use crate::error::AuthError;

/// A user as stored, including the password hash (which never leaves this service).
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: Uuid,
    pub email: String,
    pub phone: Option<String>,
    pub full_name: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

/// A new account to insert.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub phone: Option<&'a str>,
    pub full_name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
}

impl NewUser<'_> {
    /// The record this account becomes once inserted at `created_at`.
    fn record(&self, created_at: OffsetDateTime) -> UserRecord {
        UserRecord {
            id: self.id,
            email: self.email.to_owned(),
            phone: self.phone.map(str::to_owned),
            full_name: self.full_name.to_owned(),
            password_hash: self.password_hash.to_owned(),
            role: self.role,
            created_at,
        }
    }
}

/// Which users a listing shows.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// A substring of the email or the full name, lower-cased.
    pub search: Option<String>,
    pub role: Option<Role>,
}

impl UserFilter {
    /// `search` as a `LIKE` pattern that takes `%`, `_` and `\` literally (escape `\`).
    fn like_pattern(&self) -> Option<String> {
        self.search.as_ref().map(|search| {
            let escaped = search
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        })
    }
}

/// What exchanging a refresh token found.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// The token was live and is now spent; the new one is stored. The session's user follows.
    Rotated { user_id: Uuid, role: Role },
    /// The token had already been spent: the session is now revoked.
    Reused { session_id: Uuid },
    /// Unknown, expired, or its session was revoked.
    Invalid,
}

/// The Auth service's store, on whichever engine it was opened with.
#[derive(Debug, Clone)]
pub struct AuthStore {
    db: Store,
}

/// The columns the engines' `user_from_row` read, as a literal so that queries stay `&'static str`.
macro_rules! user_columns {
    () => {
        "id, email, phone, full_name, password_hash, role, created_at"
    };
}
use user_columns;

fn parse_role(role: &str) -> Result<Role, sqlx::Error> {
    Role::parse(role).ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role}").into()))
}

/// `at` truncated to the whole millisecond: the precision both engines store (SQLite keeps
/// integer milliseconds; PostgreSQL's microseconds are cut to match).
fn whole_millis(at: OffsetDateTime) -> OffsetDateTime {
    from_millis(to_millis(at))
}

/// Maps a unique violation on `users` to the contract's conflict. SQLite names the column in its
/// message (`users.email`); PostgreSQL names the constraint (`users_email_key`).
fn conflict(error: sqlx::Error) -> AuthError {
    if is_unique_violation(&error, "users.email") || is_pg_unique_violation(&error, "users_email") {
        AuthError::EmailTaken
    } else if is_unique_violation(&error, "users.phone")
        || is_pg_unique_violation(&error, "users_phone")
    {
        AuthError::PhoneTaken
    } else {
        AuthError::Store(error)
    }
}

impl AuthStore {
    /// A store on `db`: a [`boxoffice_shared::db::SqliteStore`] or a
    /// [`boxoffice_shared::db::PgStore`] (working in the `auth` schema).
    pub fn new(db: impl Into<Store>) -> Self {
        Self { db: db.into() }
    }

    /// Brings the schema up to date with the engine's migrations, then the stored emails with
    /// [`Email::parse`] (see [`Self::renormalize_emails`]).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.db
            .migrate(&crate::SQLITE_MIGRATIONS, &crate::POSTGRES_MIGRATIONS)
            .await?;
        self.renormalize_emails(OffsetDateTime::now_utc()).await?;
        Ok(())
    }

    /// Rewrites every stored email that [`Email::parse`] would now spell differently, so that a
    /// login, which looks the account up by the parsed form, still finds it. Only non-ASCII
    /// emails can differ (an ASCII address parses to itself, trimmed and lower-cased as stored),
    /// so this reads only those and is cheap to run at every start. SQL cannot compute NFKC or
    /// punycode, which is why this is code and not a file under `migrations/`.
    ///
    /// An email whose normal form another account already holds, or that is now refused, is
    /// kept as it is and logged: merging accounts is a decision for a person. Returns how many
    /// were rewritten.
    pub async fn renormalize_emails(&self, now: OffsetDateTime) -> Result<usize, AuthError> {
        let now = whole_millis(now);
        let stored = match &self.db {
            Store::Sqlite(db) => sqlite::non_ascii_emails(db).await?,
            Store::Postgres(db) => postgres::non_ascii_emails(&db.pool).await?,
        };
        let mut rewritten = 0;
        for (id, email) in stored {
            let normal = match Email::parse(&email) {
                Ok(normal) if normal.as_str() == email => continue,
                Ok(normal) => normal,
                Err(reason) => {
                    tracing::warn!(%id, reason, "a stored email is refused by the current rules; kept as it is");
                    continue;
                }
            };
            let done = match &self.db {
                Store::Sqlite(db) => sqlite::set_email(db, id, normal.as_str(), now).await,
                Store::Postgres(db) => {
                    postgres::set_email(&db.pool, id, normal.as_str(), now).await
                }
            };
            match done {
                Ok(()) => rewritten += 1,
                Err(AuthError::EmailTaken) => {
                    tracing::warn!(%id, "a stored email is another account's in normal form; kept as it is");
                }
                Err(error) => return Err(error),
            }
        }
        if rewritten > 0 {
            tracing::info!(rewritten, "stored emails rewritten in their normal form");
        }
        Ok(rewritten)
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.db.ping().await
    }

    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Inserts a new account; an email or phone already registered is
    /// [`AuthError::EmailTaken`] / [`AuthError::PhoneTaken`].
    pub async fn insert_user(
        &self,
        user: &NewUser<'_>,
        now: OffsetDateTime,
    ) -> Result<UserRecord, AuthError> {
        let now = whole_millis(now);
        match &self.db {
            Store::Sqlite(db) => sqlite::insert_user(db, user, now).await?,
            Store::Postgres(db) => postgres::insert_user(&db.pool, user, now).await?,
        }
        Ok(user.record(now))
    }

    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, AuthError> {
        match &self.db {
            Store::Sqlite(db) => sqlite::user_by_id(db, id).await,
            Store::Postgres(db) => postgres::user_by_id(&db.pool, id).await,
        }
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, AuthError> {
        match &self.db {
            Store::Sqlite(db) => sqlite::user_by_email(db, email).await,
            Store::Postgres(db) => postgres::user_by_email(&db.pool, email).await,
        }
    }

    pub async fn user_by_phone(&self, phone: &str) -> Result<Option<UserRecord>, AuthError> {
        match &self.db {
            Store::Sqlite(db) => sqlite::user_by_phone(db, phone).await,
            Store::Postgres(db) => postgres::user_by_phone(&db.pool, phone).await,
        }
    }

    /// Updates the name and/or phone; `phone: Some(None)` removes the phone number.
    pub async fn update_profile(
        &self,
        id: Uuid,
        full_name: Option<&str>,
        phone: Option<Option<&str>>,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, AuthError> {
        let now = whole_millis(now);
        match &self.db {
            Store::Sqlite(db) => sqlite::update_profile(db, id, full_name, phone, now).await,
            Store::Postgres(db) => {
                postgres::update_profile(&db.pool, id, full_name, phone, now).await
            }
        }
    }

    /// Makes sure an account with this email exists with this password hash and role: creates it,
    /// or updates the existing one. Used for the admin bootstrap and demo accounts.
    pub async fn upsert_account(
        &self,
        user: &NewUser<'_>,
        now: OffsetDateTime,
    ) -> Result<UserRecord, AuthError> {
        let now = whole_millis(now);
        match &self.db {
            Store::Sqlite(db) => sqlite::upsert_account(db, user, now).await,
            Store::Postgres(db) => postgres::upsert_account(&db.pool, user, now).await,
        }
    }

    /// Starts a session for `user` with its first refresh token.
    pub async fn create_session(
        &self,
        session_id: Uuid,
        user_id: Uuid,
        refresh_hash: &[u8; 32],
        now: OffsetDateTime,
        refresh_expires: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let (now, refresh_expires) = (whole_millis(now), whole_millis(refresh_expires));
        match &self.db {
            Store::Sqlite(db) => {
                sqlite::create_session(db, session_id, user_id, refresh_hash, now, refresh_expires)
                    .await
            }
            Store::Postgres(db) => {
                postgres::create_session(
                    &db.pool,
                    session_id,
                    user_id,
                    refresh_hash,
                    now,
                    refresh_expires,
                )
                .await
            }
        }
    }

    /// Exchanges a refresh token: spends it and stores its successor, in one transaction.
    /// A token that was already spent revokes its session (reuse detection). Of several
    /// concurrent exchanges of one token, even from several processes, exactly one rotates.
    ///
    /// Also returns the token's session (nil when the token is unknown).
    pub async fn rotate_refresh_token(
        &self,
        presented: &[u8; 32],
        successor: &[u8; 32],
        now: OffsetDateTime,
        successor_expires: OffsetDateTime,
    ) -> Result<(RefreshOutcome, Uuid), AuthError> {
        let (now, successor_expires) = (whole_millis(now), whole_millis(successor_expires));
        match &self.db {
            Store::Sqlite(db) => {
                sqlite::rotate_refresh_token(db, presented, successor, now, successor_expires).await
            }
            Store::Postgres(db) => {
                postgres::rotate_refresh_token(
                    &db.pool,
                    presented,
                    successor,
                    now,
                    successor_expires,
                )
                .await
            }
        }
    }

    /// Revokes a session (logout). Idempotent.
    pub async fn revoke_session(
        &self,
        session_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let now = whole_millis(now);
        match &self.db {
            Store::Sqlite(db) => sqlite::revoke_session(db, session_id, now).await,
            Store::Postgres(db) => postgres::revoke_session(&db.pool, session_id, now).await,
        }
    }

    /// Users, newest first, after the user `before` (a page's last), at most `limit`, whose email
    /// or name contains `search` (already lower-cased), of `role` if given.
    pub async fn list_users(
        &self,
        filter: &UserFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, AuthError> {
        match &self.db {
            Store::Sqlite(db) => sqlite::list_users(db, filter, before, limit).await,
            Store::Postgres(db) => postgres::list_users(&db.pool, filter, before, limit).await,
        }
    }

    /// Gives a user `role`, in one transaction with revoking every live session of theirs when
    /// `revoke` says so for the role they had (a demotion: no token with the old rights may
    /// survive). Returns the user as changed and the sessions revoked; `None` for an unknown id.
    pub async fn set_role(
        &self,
        user_id: Uuid,
        role: Role,
        revoke: impl FnOnce(Role) -> bool + Send,
        now: OffsetDateTime,
    ) -> Result<Option<(UserRecord, Vec<Uuid>)>, AuthError> {
        let now = whole_millis(now);
        match &self.db {
            Store::Sqlite(db) => sqlite::set_role(db, user_id, role, revoke, now).await,
            Store::Postgres(db) => postgres::set_role(&db.pool, user_id, role, revoke, now).await,
        }
    }

    /// Sessions revoked at or after `since`: whose access tokens may still be unexpired.
    pub async fn sessions_revoked_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<(Uuid, OffsetDateTime)>, AuthError> {
        let since = whole_millis(since);
        match &self.db {
            Store::Sqlite(db) => sqlite::sessions_revoked_since(db, since).await,
            Store::Postgres(db) => postgres::sessions_revoked_since(&db.pool, since).await,
        }
    }

    /// Inserts load-test accounts and one session each, in one transaction. They share one
    /// password hash (of a random password nobody knows), so nobody can log in as them.
    pub async fn insert_load_test_accounts(
        &self,
        accounts: &[(Uuid, String, Uuid)],
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let now = whole_millis(now);
        match &self.db {
            Store::Sqlite(db) => {
                sqlite::insert_load_test_accounts(db, accounts, password_hash, now).await
            }
            Store::Postgres(db) => {
                postgres::insert_load_test_accounts(&db.pool, accounts, password_hash, now).await
            }
        }
    }
}
