//! What both engines read of the rooms alike through sqlx, written once: a room's head, a
//! place, an admission time. Instants are decoded by [`StoredRow`] as for the booking store's
//! reads ([`crate::rows`]); `$n` placeholders serve both.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Head, Place};
use crate::error::BookingError;
use crate::rows::StoredRow;

/// The room's head as stored; the default for a room nobody joined.
pub async fn head<'c, DB, E>(executor: E, concert_id: Uuid) -> Result<Head, BookingError>
where
    DB: Database,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'r> bool: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    let row =
        sqlx::query::<DB>("SELECT shuffled, ranked, admitted FROM rooms WHERE concert_id = $1")
            .bind(concert_id)
            .fetch_optional(executor)
            .await?;
    Ok(match row {
        Some(row) => Head {
            shuffled: row.try_get(0)?,
            ranked: row.try_get(1)?,
            admitted: row.try_get(2)?,
        },
        None => Head::default(),
    })
}

/// The user's place in the room, if they joined.
pub async fn place<'c, DB, E>(
    executor: E,
    concert_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Place>, BookingError>
where
    DB: Database,
    DB::Row: StoredRow,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    let row = sqlx::query::<DB>(
        "SELECT rank, joined_at FROM places WHERE concert_id = $1 AND user_id = $2",
    )
    .bind(concert_id)
    .bind(user_id)
    .fetch_optional(executor)
    .await?;
    row.map(|row| {
        Ok(Place {
            rank: row.try_get("rank")?,
            joined_at: row
                .instant("joined_at")?
                .ok_or_else(|| BookingError::Corrupt("a place without its join time".into()))?,
        })
    })
    .transpose()
}

/// When the room's admitted rank first reached `rank`; `None` while it has not.
pub async fn admitted_at<'c, DB, E>(
    executor: E,
    concert_id: Uuid,
    rank: i64,
) -> Result<Option<OffsetDateTime>, BookingError>
where
    DB: Database,
    DB::Row: StoredRow,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    let row = sqlx::query::<DB>(
        "SELECT admitted_at FROM admissions WHERE concert_id = $1 AND upto_rank >= $2
         ORDER BY upto_rank LIMIT 1",
    )
    .bind(concert_id)
    .bind(rank)
    .fetch_optional(executor)
    .await?;
    Ok(match row {
        Some(row) => row.instant("admitted_at")?,
        None => None,
    })
}
