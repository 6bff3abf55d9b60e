//! The Auth store's SQL for PostgreSQL.
//!
//! Instants are `timestamptz`, bound already cut to the millisecond by [`super::AuthStore`]. The
//! pool's connections work in the `auth` schema, so the SQL never names it. Unlike SQLite's single
//! writer, nothing here serializes transactions, and several processes may share the database: a
//! read that decides a write must not be overtaken. The refresh-token exchange therefore claims
//! its row with a conditional `UPDATE ... RETURNING`, which waits for a concurrent writer of the
//! same row and then re-checks its condition.

use boxoffice_shared::token::Role;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{NewUser, RefreshOutcome, UserFilter, UserRecord, conflict, parse_role, user_columns};
use crate::error::AuthError;

fn user_from_row(row: &sqlx::postgres::PgRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        full_name: row.try_get("full_name")?,
        password_hash: row.try_get("password_hash")?,
        role: parse_role(row.try_get("role")?)?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) async fn insert_user(
    pool: &PgPool,
    user: &NewUser<'_>,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    sqlx::query(
        "INSERT INTO users (id, email, phone, full_name, password_hash, role, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(user.id)
    .bind(user.email)
    .bind(user.phone)
    .bind(user.full_name)
    .bind(user.password_hash)
    .bind(user.role.as_str())
    .bind(now)
    .execute(pool)
    .await
    .map_err(conflict)?;
    Ok(())
}

pub(super) async fn user_by_id(pool: &PgPool, id: Uuid) -> Result<Option<UserRecord>, AuthError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn user_by_email(
    pool: &PgPool,
    email: &str,
) -> Result<Option<UserRecord>, AuthError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE email = $1"
    ))
    .bind(email)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn user_by_phone(
    pool: &PgPool,
    phone: &str,
) -> Result<Option<UserRecord>, AuthError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE phone = $1"
    ))
    .bind(phone)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn update_profile(
    pool: &PgPool,
    id: Uuid,
    full_name: Option<&str>,
    phone: Option<Option<&str>>,
    now: OffsetDateTime,
) -> Result<Option<UserRecord>, AuthError> {
    let row = sqlx::query(concat!(
        "UPDATE users SET
            full_name = coalesce($1, full_name),
            phone = CASE WHEN $2 THEN $3 ELSE phone END,
            updated_at = $4
         WHERE id = $5
         RETURNING ",
        user_columns!()
    ))
    .bind(full_name)
    .bind(phone.is_some())
    .bind(phone.flatten())
    .bind(now)
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(conflict)?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn upsert_account(
    pool: &PgPool,
    user: &NewUser<'_>,
    now: OffsetDateTime,
) -> Result<UserRecord, AuthError> {
    let row = sqlx::query(concat!(
        "INSERT INTO users (id, email, phone, full_name, password_hash, role, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
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
    .bind(now)
    .fetch_one(pool)
    .await
    .map_err(conflict)?;
    Ok(user_from_row(&row)?)
}

pub(super) async fn create_session(
    pool: &PgPool,
    session_id: Uuid,
    user_id: Uuid,
    refresh_hash: &[u8; 32],
    now: OffsetDateTime,
    refresh_expires: OffsetDateTime,
) -> Result<(), AuthError> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO sessions (id, user_id, created_at) VALUES ($1, $2, $3)")
        .bind(session_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&refresh_hash[..])
    .bind(session_id)
    .bind(now)
    .bind(refresh_expires)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn rotate_refresh_token(
    pool: &PgPool,
    presented: &[u8; 32],
    successor: &[u8; 32],
    now: OffsetDateTime,
    successor_expires: OffsetDateTime,
) -> Result<(RefreshOutcome, Uuid), AuthError> {
    let mut tx = pool.begin().await?;
    // The conditional update is the claim. A concurrent exchange of the same token blocks on this
    // row until we commit or roll back, then re-checks `spent_at IS NULL` against the row as we
    // left it: of any number of racing exchanges, across processes too, exactly one spends it.
    let spent: Option<Uuid> = sqlx::query_scalar(
        "UPDATE refresh_tokens SET spent_at = $2
         WHERE token_hash = $1 AND spent_at IS NULL AND expires_at > $2
         RETURNING session_id",
    )
    .bind(&presented[..])
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;

    let Some(session_id) = spent else {
        // Once spent, a token stays spent, so this plain read cannot be overtaken.
        let previous: Option<(Uuid, Option<OffsetDateTime>)> =
            sqlx::query_as("SELECT session_id, spent_at FROM refresh_tokens WHERE token_hash = $1")
                .bind(&presented[..])
                .fetch_optional(&mut *tx)
                .await?;
        let outcome = match previous {
            Some((session_id, Some(_spent_at))) => {
                sqlx::query(
                    "UPDATE sessions SET revoked_at = $1, revoke_reason = 'refresh_token_reuse'
                     WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(session_id)
                .execute(&mut *tx)
                .await?;
                (RefreshOutcome::Reused { session_id }, session_id)
            }
            Some((session_id, None)) => (RefreshOutcome::Invalid, session_id),
            None => (RefreshOutcome::Invalid, Uuid::nil()),
        };
        tx.commit().await?;
        return Ok(outcome);
    };

    // No lock on the session: a logout racing this exchange either commits first (and we see it)
    // or revokes the session, successor included, right after we commit.
    let session = sqlx::query(
        "SELECT s.revoked_at, u.id AS user_id, u.role
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id = $1",
    )
    .bind(session_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(session) = session else {
        tx.rollback().await?;
        return Ok((RefreshOutcome::Invalid, session_id));
    };
    if session
        .try_get::<Option<OffsetDateTime>, _>("revoked_at")?
        .is_some()
    {
        // Leave the token unspent: the session is over either way.
        tx.rollback().await?;
        return Ok((RefreshOutcome::Invalid, session_id));
    }
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&successor[..])
    .bind(session_id)
    .bind(now)
    .bind(successor_expires)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        RefreshOutcome::Rotated {
            user_id: session.try_get("user_id")?,
            role: parse_role(session.try_get("role")?)?,
        },
        session_id,
    ))
}

pub(super) async fn revoke_session(
    pool: &PgPool,
    session_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoke_reason = 'logout'
         WHERE id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(session_id)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn sessions_revoked_since(
    pool: &PgPool,
    since: OffsetDateTime,
) -> Result<Vec<(Uuid, OffsetDateTime)>, AuthError> {
    let rows = sqlx::query_as("SELECT id, revoked_at FROM sessions WHERE revoked_at >= $1")
        .bind(since)
        .fetch_all(pool)
        .await?;
    Ok(rows)
}

pub(super) async fn insert_load_test_accounts(
    pool: &PgPool,
    accounts: &[(Uuid, String, Uuid)],
    password_hash: &str,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    // One statement per table whatever the count: the rows travel as three arrays and UNNEST
    // turns them back into rows on the server.
    let ids: Vec<Uuid> = accounts.iter().map(|(id, _, _)| *id).collect();
    let emails: Vec<&str> = accounts
        .iter()
        .map(|(_, email, _)| email.as_str())
        .collect();
    let sessions: Vec<Uuid> = accounts.iter().map(|(_, _, session)| *session).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO users (id, email, full_name, password_hash, role, created_at, updated_at)
         SELECT id, email, 'Load Test', $3, $4, $5, $5
         FROM UNNEST($1::uuid[], $2::text[]) AS account (id, email)",
    )
    .bind(&ids)
    .bind(&emails)
    .bind(password_hash)
    .bind(Role::Customer.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(conflict)?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at)
         SELECT id, user_id, $3
         FROM UNNEST($1::uuid[], $2::uuid[]) AS session (id, user_id)",
    )
    .bind(&sessions)
    .bind(&ids)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Accounts whose email holds a character outside ASCII (its byte length exceeds its length in
/// characters): the only ones a change of the email normal form can concern.
pub(super) async fn non_ascii_emails(pool: &PgPool) -> Result<Vec<(Uuid, String)>, AuthError> {
    let rows = sqlx::query(
        "SELECT id, email FROM users WHERE octet_length(email) <> char_length(email) ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("email")?)))
        .collect::<Result<_, sqlx::Error>>()?)
}

pub(super) async fn set_email(
    pool: &PgPool,
    id: Uuid,
    email: &str,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    sqlx::query("UPDATE users SET email = $1, updated_at = $2 WHERE id = $3")
        .bind(email)
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map_err(conflict)?;
    Ok(())
}

pub(super) async fn list_users(
    pool: &PgPool,
    filter: &UserFilter,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<UserRecord>, AuthError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users
         WHERE ($1::uuid IS NULL OR id < $1)
           AND ($2::text IS NULL OR email LIKE $2 ESCAPE '\\' OR lower(full_name) LIKE $2 ESCAPE '\\')
           AND ($3::text IS NULL OR role = $3)
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(before)
    .bind(filter.like_pattern())
    .bind(filter.role.map(Role::as_str))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(user_from_row)
        .collect::<Result<_, sqlx::Error>>()?)
}

pub(super) async fn set_role(
    pool: &PgPool,
    user_id: Uuid,
    role: Role,
    revoke: impl FnOnce(Role) -> bool + Send,
    now: OffsetDateTime,
) -> Result<Option<(UserRecord, Vec<Uuid>)>, AuthError> {
    let mut tx = pool.begin().await?;
    let Some(old) =
        sqlx::query_scalar::<_, String>("SELECT role FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(None);
    };
    let row = sqlx::query(concat!(
        "UPDATE users SET role = $1, updated_at = $2 WHERE id = $3 RETURNING ",
        user_columns!()
    ))
    .bind(role.as_str())
    .bind(now)
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?;
    let user = user_from_row(&row)?;
    // Each revoked session is announced to every instance by the table's trigger at commit.
    let revoked = match revoke(parse_role(&old)?) {
        true => {
            sqlx::query_scalar(
                "UPDATE sessions SET revoked_at = $1, revoke_reason = 'role_changed'
                 WHERE user_id = $2 AND revoked_at IS NULL RETURNING id",
            )
            .bind(now)
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?
        }
        false => Vec::new(),
    };
    tx.commit().await?;
    Ok(Some((user, revoked)))
}
