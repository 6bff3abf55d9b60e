//! The waiting rooms on SQLite: `queue.db`, written through one connection of its own (never
//! the booking writer's), read through the store's async pool.
//!
//! Writes run on the blocking pool, one at a time (the connection's lock); a batch of joins is
//! one immediate transaction and one fsync however many joins it holds.

use std::sync::{Arc, Mutex, PoisonError};

use boxoffice_shared::clock::{from_millis, to_millis};
use boxoffice_shared::db::{Durability, SqliteStore};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Credit, Head, Joined, Place, RoomJoins, RoomRow, draw_key, opened, plan_tick};
use crate::error::BookingError;

pub struct SqliteQueue {
    db: SqliteStore,
    writer: Arc<Mutex<Connection>>,
}

impl SqliteQueue {
    pub fn open(db: SqliteStore, durability: Durability) -> anyhow::Result<Self> {
        let conn = crate::sqlite::statements::open(&db.path, durability)?;
        Ok(Self {
            db,
            writer: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `work` in an immediate transaction on the write connection, off the async threads.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, BookingError> + Send + 'static,
    ) -> Result<T, BookingError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let done = work(&tx)?;
            tx.commit()?;
            Ok(done)
        })
        .await
        .map_err(|error| BookingError::Corrupt(format!("the queue's writer panicked: {error}")))?
    }

    pub async fn join(
        &self,
        rooms: Vec<RoomJoins>,
        now: OffsetDateTime,
    ) -> Result<Vec<Joined>, BookingError> {
        self.write(move |tx| rooms.iter().map(|room| join_room(tx, room, now)).collect())
            .await
    }

    pub async fn tick(
        &self,
        concert_id: Uuid,
        opens_at: Option<OffsetDateTime>,
        per_minute: u32,
        now: OffsetDateTime,
    ) -> Result<Head, BookingError> {
        self.write(move |tx| {
            let Some(mut row) = room(tx, concert_id)? else {
                return Ok(Head::default());
            };
            if !row.head.shuffled {
                if !opened(opens_at, now) {
                    return Ok(row.head);
                }
                row.head = shuffle(tx, concert_id, row.head)?;
            }
            let Some(advance) = plan_tick(row, opens_at, per_minute, now) else {
                return Ok(row.head);
            };
            if advance.admitted > row.head.admitted {
                tx.prepare_cached(
                    "INSERT INTO admissions (concert_id, upto_rank, admitted_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![concert_id, advance.admitted, to_millis(now)])?;
            }
            tx.prepare_cached(
                "UPDATE rooms SET admitted = ?2, credit = ?3, ticked_at = ?4 WHERE concert_id = ?1",
            )?
            .execute(params![concert_id, advance.admitted, advance.credit, to_millis(now)])?;
            row.head.admitted = advance.admitted;
            Ok(row.head)
        })
        .await
    }

    /// The pool the rooms' reads ([`super::reads`]) run on.
    pub fn read_pool(&self) -> &sqlx::SqlitePool {
        &self.db.read
    }

    pub async fn ping(&self) -> Result<(), BookingError> {
        Ok(self.db.ping().await?)
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// One room's joins inside the batch's transaction.
fn join_room(
    tx: &rusqlite::Transaction<'_>,
    room: &RoomJoins,
    now: OffsetDateTime,
) -> Result<Joined, BookingError> {
    tx.prepare_cached("INSERT INTO rooms (concert_id) VALUES (?1) ON CONFLICT DO NOTHING")?
        .execute(params![room.concert_id])?;
    let mut head = room_head(tx, room.concert_id)?;
    if !head.shuffled && opened(room.opens_at, now) {
        head = shuffle(tx, room.concert_id, head)?;
    }
    let mut places = Vec::with_capacity(room.users.len());
    for &user in &room.users {
        // A new place in one statement; only a user who has one already (a second join, also
        // within this batch) is read back.
        let rank = head.shuffled.then(|| head.ranked + 1);
        let inserted = tx
            .prepare_cached(
                "INSERT INTO places (concert_id, user_id, draw, rank, joined_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (concert_id, user_id) DO NOTHING",
            )?
            .execute(params![
                room.concert_id,
                user,
                draw_key(),
                rank,
                to_millis(now)
            ])?;
        if inserted == 1 {
            if let Some(rank) = rank {
                head.ranked = rank;
            }
            places.push((
                Place {
                    rank,
                    joined_at: now,
                },
                true,
            ));
            continue;
        }
        let place = tx
            .prepare_cached(
                "SELECT rank, joined_at FROM places WHERE concert_id = ?1 AND user_id = ?2",
            )?
            .query_row(params![room.concert_id, user], |row| {
                Ok(Place {
                    rank: row.get(0)?,
                    joined_at: from_millis(row.get(1)?),
                })
            })?;
        places.push((place, false));
    }
    // Into a room where nobody waited, the ticker's credit starts now: none is earned while
    // nobody waits (the right-hand sides read the row as it was).
    tx.prepare_cached(
        "UPDATE rooms SET ranked = ?2,
             ticked_at = CASE WHEN admitted = ranked THEN ?3 ELSE ticked_at END,
             credit = CASE WHEN admitted = ranked THEN 0 ELSE credit END
         WHERE concert_id = ?1 AND ranked <> ?2",
    )?
    .execute(params![room.concert_id, head.ranked, to_millis(now)])?;
    Ok(Joined { head, places })
}

/// Ranks the room's pre-queue in the order of its secret keys: the shuffle, once.
fn shuffle(
    tx: &rusqlite::Transaction<'_>,
    concert_id: Uuid,
    head: Head,
) -> Result<Head, BookingError> {
    let ranked = tx
        .prepare_cached(
            "UPDATE places SET rank = drawn.n + ?2
             FROM (SELECT user_id, row_number() OVER (ORDER BY draw, user_id) AS n
                   FROM places WHERE concert_id = ?1 AND rank IS NULL
                   ORDER BY user_id) AS drawn
             WHERE places.concert_id = ?1 AND places.user_id = drawn.user_id",
        )?
        .execute(params![concert_id, head.ranked])?;
    let ranked = head.ranked + i64::try_from(ranked).unwrap_or(i64::MAX);
    tx.prepare_cached("UPDATE rooms SET shuffled = 1, ranked = ?2 WHERE concert_id = ?1")?
        .execute(params![concert_id, ranked])?;
    Ok(Head {
        shuffled: true,
        ranked,
        admitted: head.admitted,
    })
}

fn room_head(tx: &rusqlite::Transaction<'_>, concert_id: Uuid) -> Result<Head, BookingError> {
    Ok(room(tx, concert_id)?
        .map(|row| row.head)
        .unwrap_or_default())
}

fn room(tx: &rusqlite::Transaction<'_>, concert_id: Uuid) -> Result<Option<RoomRow>, BookingError> {
    Ok(tx
        .prepare_cached(
            "SELECT shuffled, ranked, admitted, credit, ticked_at FROM rooms WHERE concert_id = ?1",
        )?
        .query_row(params![concert_id], |row| {
            Ok(RoomRow {
                head: Head {
                    shuffled: row.get(0)?,
                    ranked: row.get(1)?,
                    admitted: row.get(2)?,
                },
                credit: Credit {
                    credit: row.get(3)?,
                    ticked_at: row.get::<_, Option<i64>>(4)?.map(from_millis),
                },
            })
        })
        .optional()?)
}
