//! The Auth store's SQL for SQLite.
//!
//! Instants are INTEGER milliseconds. Writes go through the store's single writer connection,
//! and every multi-statement change is one transaction whose first statement is a write, so
//! SQLite takes the write lock up front and never has to upgrade a read lock (which could fail
//! with `SQLITE_BUSY`). That one writer also serializes concurrent refresh-token exchanges.

use boxoffice_shared::clock::{from_millis, to_millis};
use boxoffice_shared::db::SqliteStore;
use boxoffice_shared::token::Role;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{NewUser, RefreshOutcome, UserFilter, UserRecord, conflict, parse_role, user_columns};
use crate::error::AuthError;

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        full_name: row.try_get("full_name")?,
        password_hash: row.try_get("password_hash")?,
        role: parse_role(row.try_get("role")?)?,
        created_at: from_millis(row.try_get("created_at")?),
    })
}

pub(super) async fn insert_user(
    db: &SqliteStore,
    user: &NewUser<'_>,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
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
    .execute(&db.write)
    .await
    .map_err(conflict)?;
    Ok(())
}

pub(super) async fn user_by_id(
    db: &SqliteStore,
    id: Uuid,
) -> Result<Option<UserRecord>, AuthError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(&db.read)
    .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn user_by_email(
    db: &SqliteStore,
    email: &str,
) -> Result<Option<UserRecord>, AuthError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE email = ?"
    ))
    .bind(email)
    .fetch_optional(&db.read)
    .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn user_by_phone(
    db: &SqliteStore,
    phone: &str,
) -> Result<Option<UserRecord>, AuthError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE phone = ?"
    ))
    .bind(phone)
    .fetch_optional(&db.read)
    .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn update_profile(
    db: &SqliteStore,
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
    .fetch_optional(&db.write)
    .await
    .map_err(conflict)?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn upsert_account(
    db: &SqliteStore,
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
    .fetch_one(&db.write)
    .await
    .map_err(conflict)?;
    Ok(user_from_row(&row)?)
}

pub(super) async fn create_session(
    db: &SqliteStore,
    session_id: Uuid,
    user_id: Uuid,
    refresh_hash: &[u8; 32],
    now: OffsetDateTime,
    refresh_expires: OffsetDateTime,
) -> Result<(), AuthError> {
    let mut tx = db.write.begin().await?;
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

pub(super) async fn rotate_refresh_token(
    db: &SqliteStore,
    presented: &[u8; 32],
    successor: &[u8; 32],
    now: OffsetDateTime,
    successor_expires: OffsetDateTime,
) -> Result<(RefreshOutcome, Uuid), AuthError> {
    let now_ms = to_millis(now);
    let mut tx = db.write.begin().await?;
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
    Ok((
        RefreshOutcome::Rotated {
            user_id: session.try_get("user_id")?,
            role: parse_role(session.try_get("role")?)?,
        },
        session_id,
    ))
}

pub(super) async fn revoke_session(
    db: &SqliteStore,
    session_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = ?, revoke_reason = 'logout' WHERE id = ? AND revoked_at IS NULL",
    )
    .bind(to_millis(now))
    .bind(session_id)
    .execute(&db.write)
    .await?;
    Ok(())
}

pub(super) async fn sessions_revoked_since(
    db: &SqliteStore,
    since: OffsetDateTime,
) -> Result<Vec<(Uuid, OffsetDateTime)>, AuthError> {
    let rows = sqlx::query("SELECT id, revoked_at FROM sessions WHERE revoked_at >= ?")
        .bind(to_millis(since))
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, from_millis(row.try_get("revoked_at")?))))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(AuthError::from)
}

pub(super) async fn insert_load_test_accounts(
    db: &SqliteStore,
    accounts: &[(Uuid, String, Uuid)],
    password_hash: &str,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    let millis = to_millis(now);
    let mut tx = db.write.begin().await?;
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

/// Accounts whose email holds a character outside ASCII (its byte length exceeds its length in
/// characters): the only ones a change of the email normal form can concern.
pub(super) async fn non_ascii_emails(db: &SqliteStore) -> Result<Vec<(Uuid, String)>, AuthError> {
    let rows = sqlx::query(
        "SELECT id, email FROM users WHERE length(CAST(email AS BLOB)) <> length(email) ORDER BY created_at, id",
    )
    .fetch_all(&db.read)
    .await?;
    Ok(rows
        .iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("email")?)))
        .collect::<Result<_, sqlx::Error>>()?)
}

pub(super) async fn set_email(
    db: &SqliteStore,
    id: Uuid,
    email: &str,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    sqlx::query("UPDATE users SET email = ?, updated_at = ? WHERE id = ?")
        .bind(email)
        .bind(to_millis(now))
        .bind(id)
        .execute(&db.write)
        .await
        .map_err(conflict)?;
    Ok(())
}

pub(super) async fn list_users(
    db: &SqliteStore,
    filter: &UserFilter,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<UserRecord>, AuthError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users
         WHERE (?1 IS NULL OR id < ?1)
           AND (?2 IS NULL OR email LIKE ?2 ESCAPE '\\' OR lower(full_name) LIKE ?2 ESCAPE '\\')
           AND (?3 IS NULL OR role = ?3)
         ORDER BY id DESC LIMIT ?4"
    ))
    .bind(before)
    .bind(filter.like_pattern())
    .bind(filter.role.map(Role::as_str))
    .bind(i64::from(limit))
    .fetch_all(&db.read)
    .await?;
    Ok(rows
        .iter()
        .map(user_from_row)
        .collect::<Result<_, sqlx::Error>>()?)
}

pub(super) async fn set_role(
    db: &SqliteStore,
    user_id: Uuid,
    role: Role,
    revoke: impl FnOnce(Role) -> bool + Send,
    now: OffsetDateTime,
) -> Result<Option<(UserRecord, Vec<Uuid>)>, AuthError> {
    // IMMEDIATE: the write lock up front, as every multi-statement change here takes it.
    let mut tx = db.write.begin_with("BEGIN IMMEDIATE").await?;
    let Some(old) = sqlx::query_scalar::<_, String>("SELECT role FROM users WHERE id = ?")
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let row = sqlx::query(concat!(
        "UPDATE users SET role = ?, updated_at = ? WHERE id = ? RETURNING ",
        user_columns!()
    ))
    .bind(role.as_str())
    .bind(to_millis(now))
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?;
    let user = user_from_row(&row)?;
    let revoked = match revoke(parse_role(&old)?) {
        true => {
            sqlx::query_scalar(
                "UPDATE sessions SET revoked_at = ?, revoke_reason = 'role_changed'
                 WHERE user_id = ? AND revoked_at IS NULL RETURNING id",
            )
            .bind(to_millis(now))
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?
        }
        false => Vec::new(),
    };
    tx.commit().await?;
    Ok(Some((user, revoked)))
}
