//! The statements of the concert leases (`booking_instances`, `concert_owners`), every time on
//! the database's clock (`clock_timestamp()`), so that instances whose clocks differ still agree
//! on when a lease ran out.

use std::collections::HashMap;
use std::time::Duration;

use boxoffice_shared::component::Url;
use sqlx::{PgPool, Row as _};
use uuid::Uuid;

/// An instance, as a concert's owner or as a live instance: who, and where it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub instance: Uuid,
    pub url: Url,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The lease read from a row's `instance_id` and `url`; a URL that does not parse (written by
/// hand) makes the row's owner unreachable rather than failing every read.
fn lease(instance: Uuid, url: &str) -> Option<Lease> {
    match Url::parse(url) {
        Ok(url) => Some(Lease { instance, url }),
        Err(error) => {
            tracing::warn!(%instance, url, %error, "a booking instance's URL does not parse");
            None
        }
    }
}

/// Takes `concert` for `me` if nobody holds a live lease on it (or `me` already does); returns
/// the owner after the statement either way.
pub async fn claim(
    pool: &PgPool,
    concert: Uuid,
    me: Uuid,
    url: &Url,
    lasting: Duration,
) -> Result<Lease, sqlx::Error> {
    let row = sqlx::query(
        "WITH taken AS (
             INSERT INTO concert_owners (concert_id, instance_id, url, owned_until)
             VALUES ($1, $2, $3, clock_timestamp() + $4 * interval '1 millisecond')
             ON CONFLICT (concert_id) DO UPDATE
                 SET instance_id = excluded.instance_id, url = excluded.url,
                     owned_until = excluded.owned_until
                 WHERE concert_owners.owned_until < clock_timestamp()
                    OR concert_owners.instance_id = excluded.instance_id
             RETURNING instance_id, url
         )
         SELECT instance_id, url FROM taken
         UNION ALL
         SELECT instance_id, url FROM concert_owners
         WHERE concert_id = $1 AND NOT EXISTS (SELECT 1 FROM taken)",
    )
    .bind(concert)
    .bind(me)
    .bind(url.as_str())
    .bind(millis(lasting))
    .fetch_optional(pool)
    .await?;
    // Nothing when another instance's claim committed while this one waited on it: the
    // statement's snapshot predates that row, a new statement sees it.
    let row = match row {
        Some(row) => row,
        None => {
            sqlx::query("SELECT instance_id, url FROM concert_owners WHERE concert_id = $1")
                .bind(concert)
                .fetch_one(pool)
                .await?
        }
    };
    let instance: Uuid = row.try_get("instance_id")?;
    let owner_url: String = row.try_get("url")?;
    Ok(lease(instance, &owner_url).unwrap_or(Lease {
        instance,
        url: url.clone(),
    }))
}

/// Marks `me` alive at `url` for `lasting`, renews its leases on `keep` and gives up those on
/// `release`, in one transaction.
pub async fn renew(
    pool: &PgPool,
    me: Uuid,
    url: &Url,
    keep: &[Uuid],
    release: &[Uuid],
    lasting: Duration,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO booking_instances (id, url, alive_until)
         VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, alive_until = excluded.alive_until",
    )
    .bind(me)
    .bind(url.as_str())
    .bind(millis(lasting))
    .execute(&mut *tx)
    .await?;
    if !keep.is_empty() {
        // Only leases still held: one that ran out and was taken over stays with its new owner.
        sqlx::query(
            "UPDATE concert_owners
             SET owned_until = clock_timestamp() + $3 * interval '1 millisecond'
             WHERE instance_id = $1 AND concert_id = ANY($2)",
        )
        .bind(me)
        .bind(keep)
        .bind(millis(lasting))
        .execute(&mut *tx)
        .await?;
    }
    if !release.is_empty() {
        sqlx::query("DELETE FROM concert_owners WHERE instance_id = $1 AND concert_id = ANY($2)")
            .bind(me)
            .bind(release)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// The instances alive now, by id.
pub async fn live_instances(pool: &PgPool) -> Result<Vec<Lease>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, url FROM booking_instances WHERE alive_until > clock_timestamp() ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let mut live = Vec::with_capacity(rows.len());
    for row in rows {
        let url: String = row.try_get("url")?;
        live.extend(lease(row.try_get("id")?, &url));
    }
    Ok(live)
}

/// Every concert with a live owner, and the owner.
pub async fn owners(pool: &PgPool) -> Result<HashMap<Uuid, Lease>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT concert_id, instance_id, url FROM concert_owners
         WHERE owned_until > clock_timestamp()",
    )
    .fetch_all(pool)
    .await?;
    let mut owners = HashMap::with_capacity(rows.len());
    for row in rows {
        let url: String = row.try_get("url")?;
        if let Some(owner) = lease(row.try_get("instance_id")?, &url) {
            owners.insert(row.try_get("concert_id")?, owner);
        }
    }
    Ok(owners)
}

/// `me` stops: its leases and its place among the live instances go at once, so the others
/// take its concerts over without waiting for them to run out.
pub async fn leave(pool: &PgPool, me: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM concert_owners WHERE instance_id = $1")
        .bind(me)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM booking_instances WHERE id = $1")
        .bind(me)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
