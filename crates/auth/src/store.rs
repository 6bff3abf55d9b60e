//! The Auth store on SQLite: users, sessions and refresh tokens.
//!
//! Writes go through the store's single writer connection, and every multi-statement change is
//! one transaction whose first statement is a write, so SQLite takes the write lock up front and
//! never has to upgrade a read lock (which could fail with `SQLITE_BUSY`).

use boxoffice_shared::clock::{from_millis, to_millis};
use boxoffice_shared::db::{SqliteStore, is_unique_violation};
use boxoffice_shared::token::Role;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

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

/// The Auth service's SQLite store.
#[derive(Debug, Clone)]
pub struct AuthStore {
    db: SqliteStore,
}

/// The columns `user_from_row` reads, as a literal so that queries stay `&'static str`.
macro_rules! user_columns {
    () => {
        "id, email, phone, full_name, password_hash, role, created_at"
    };
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<UserRecord, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(UserRecord {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        full_name: row.try_get("full_name")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::parse(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role}").into()))?,
        created_at: from_millis(row.try_get("created_at")?),
    })
}

/// Maps a unique violation on `users` to the contract's conflict.
fn conflict(error: sqlx::Error) -> AuthError {
    if is_unique_violation(&error, "users.email") {
        AuthError::EmailTaken
    } else if is_unique_violation(&error, "users.phone") {
        AuthError::PhoneTaken
    } else {
        AuthError::Store(error)
    }
}

impl AuthStore {
    pub fn new(db: SqliteStore) -> Self {
        Self { db }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        crate::SQLITE_MIGRATIONS.run(&self.db.write).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.db.ping().await
    }

    pub async fn close(&self) {
        self.db.close().await;
    }

    pub async fn insert_user(
        &self,
        user: &NewUser<'_>,
        now: OffsetDateTime,
    ) -> Result<UserRecord, AuthError> {
        let millis = to_millis(now);
        sqlx::query(
            "INSERT INTO users (id, email, phone, full_name, password_hash, role, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(user.id)
        .bind(user.email)
        .bind(user.phone)
        .bind(user.full_name)
        .bind(user.password_hash)
        .bind(user.role.as_str())
        .bind(millis)
        .bind(millis)
        .execute(&self.db.write)
        .await
        .map_err(conflict)?;
        Ok(UserRecord {
            id: user.id,
            email: user.email.to_owned(),
            phone: user.phone.map(str::to_owned),
            full_name: user.full_name.to_owned(),
            password_hash: user.password_hash.to_owned(),
            role: user.role,
            created_at: from_millis(millis),
        })
    }

    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, AuthError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.db.read)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, AuthError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email = ?"
        ))
        .bind(email)
        .fetch_optional(&self.db.read)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub async fn user_by_phone(&self, phone: &str) -> Result<Option<UserRecord>, AuthError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE phone = ?"
        ))
        .bind(phone)
        .fetch_optional(&self.db.read)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// Updates the name and/or phone; `phone: Some(None)` removes the phone number.
    pub async fn update_profile(
        &self,
        id: Uuid,
        full_name: Option<&str>,
        phone: Option<Option<&str>>,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, AuthError> {
        let row = sqlx::query(concat!(
            "UPDATE users SET
                full_name = coalesce(?, full_name),
                phone = CASE WHEN ? THEN ? ELSE phone END,
                updated_at = ?
             WHERE id = ?
             RETURNING ",
            user_columns!()
        ))
        .bind(full_name)
        .bind(phone.is_some())
        .bind(phone.flatten())
        .bind(to_millis(now))
        .bind(id)
        .fetch_optional(&self.db.write)
        .await
        .map_err(conflict)?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// Makes sure an account with this email exists with this password hash and role: creates it,
    /// or updates the existing one. Used for the admin bootstrap and demo accounts.
    pub async fn upsert_account(
        &self,
        user: &NewUser<'_>,
        now: OffsetDateTime,
    ) -> Result<UserRecord, AuthError> {
        let millis = to_millis(now);
        let row = sqlx::query(concat!(
            "INSERT INTO users (id, email, phone, full_name, password_hash, role, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (email) DO UPDATE SET
                password_hash = excluded.password_hash,
                role = excluded.role,
                updated_at = excluded.updated_at
             RETURNING ",
            user_columns!()
        ))
        .bind(user.id)
        .bind(user.email)
        .bind(user.phone)
        .bind(user.full_name)
        .bind(user.password_hash)
        .bind(user.role.as_str())
        .bind(millis)
        .bind(millis)
        .fetch_one(&self.db.write)
        .await
        .map_err(conflict)?;
        Ok(user_from_row(&row)?)
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
        let mut tx = self.db.write.begin().await?;
        sqlx::query("INSERT INTO sessions (id, user_id, created_at) VALUES (?, ?, ?)")
            .bind(session_id)
            .bind(user_id)
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&refresh_hash[..])
        .bind(session_id)
        .bind(to_millis(now))
        .bind(to_millis(refresh_expires))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Exchanges a refresh token: spends it and stores its successor, in one transaction.
    /// A token that was already spent revokes its session (reuse detection).
    pub async fn rotate_refresh_token(
        &self,
        presented: &[u8; 32],
        successor: &[u8; 32],
        now: OffsetDateTime,
        successor_expires: OffsetDateTime,
    ) -> Result<(RefreshOutcome, Uuid), AuthError> {
        let now_ms = to_millis(now);
        let mut tx = self.db.write.begin().await?;
        // The first statement writes, so the transaction holds the write lock from here on.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = ?
             WHERE token_hash = ? AND spent_at IS NULL AND expires_at > ?
             RETURNING session_id",
        )
        .bind(now_ms)
        .bind(&presented[..])
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;

        let Some(spent) = spent else {
            let previous =
                sqlx::query("SELECT session_id, spent_at FROM refresh_tokens WHERE token_hash = ?")
                    .bind(&presented[..])
                    .fetch_optional(&mut *tx)
                    .await?;
            let outcome = match previous {
                Some(row) if row.try_get::<Option<i64>, _>("spent_at")?.is_some() => {
                    let session_id: Uuid = row.try_get("session_id")?;
                    sqlx::query(
                        "UPDATE sessions SET revoked_at = ?, revoke_reason = 'refresh_token_reuse'
                         WHERE id = ? AND revoked_at IS NULL",
                    )
                    .bind(now_ms)
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
                    (RefreshOutcome::Reused { session_id }, session_id)
                }
                Some(row) => (RefreshOutcome::Invalid, row.try_get("session_id")?),
                None => (RefreshOutcome::Invalid, Uuid::nil()),
            };
            tx.commit().await?;
            return Ok(outcome);
        };

        let session_id: Uuid = spent.try_get("session_id")?;
        let session = sqlx::query(
            "SELECT s.revoked_at, u.id AS user_id, u.role
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id = ?",
        )
        .bind(session_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(session) = session else {
            tx.rollback().await?;
            return Ok((RefreshOutcome::Invalid, session_id));
        };
        if session.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
            // Leave the token unspent: the session is over either way.
            tx.rollback().await?;
            return Ok((RefreshOutcome::Invalid, session_id));
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&successor[..])
        .bind(session_id)
        .bind(now_ms)
        .bind(to_millis(successor_expires))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let role: String = session.try_get("role")?;
        let role = Role::parse(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role}").into()))?;
        Ok((
            RefreshOutcome::Rotated {
                user_id: session.try_get("user_id")?,
                role,
            },
            session_id,
        ))
    }

    /// Revokes a session (logout). Idempotent.
    pub async fn revoke_session(
        &self,
        session_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = ?, revoke_reason = 'logout' WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(to_millis(now))
        .bind(session_id)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Sessions revoked at or after `since`: whose access tokens may still be unexpired.
    pub async fn sessions_revoked_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<(Uuid, OffsetDateTime)>, AuthError> {
        let rows = sqlx::query("SELECT id, revoked_at FROM sessions WHERE revoked_at >= ?")
            .bind(to_millis(since))
            .fetch_all(&self.db.read)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, from_millis(row.try_get("revoked_at")?))))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AuthError::from)
    }
}

impl AuthStore {
    /// Inserts load-test accounts and one session each, in one transaction. They share one
    /// password hash (of a random password nobody knows), so nobody can log in as them.
    pub async fn insert_load_test_accounts(
        &self,
        accounts: &[(Uuid, String, Uuid)],
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let millis = to_millis(now);
        let mut tx = self.db.write.begin().await?;
        // SQLite binds at most 32766 parameters per statement.
        for chunk in accounts.chunks(1000) {
            let mut users = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO users (id, email, full_name, password_hash, role, created_at, updated_at) ",
            );
            users.push_values(chunk, |mut row, (id, email, _)| {
                row.push_bind(*id)
                    .push_bind(email.as_str())
                    .push_bind("Load Test")
                    .push_bind(password_hash)
                    .push_bind(Role::Customer.as_str())
                    .push_bind(millis)
                    .push_bind(millis);
            });
            users.build().execute(&mut *tx).await.map_err(conflict)?;
            let mut sessions = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO sessions (id, user_id, created_at) ",
            );
            sessions.push_values(chunk, |mut row, (id, _, session)| {
                row.push_bind(*session).push_bind(*id).push_bind(millis);
            });
            sessions.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
