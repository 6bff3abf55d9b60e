//! The waiting rooms on PostgreSQL: the schema `queue`, shared by every Booking instance.
//!
//! A room's row is its lock. Joins before the opening take it `FOR SHARE` (they only add
//! unranked places, side by side), so the shuffle — which takes it `FOR UPDATE` — waits for
//! them and sees every one; ranking joins and ticks take it `FOR UPDATE`, so ranks are given
//! one after another without gaps and admissions move once per tick whichever instance ticks.
//! A batch locks its rooms in the order of their ids, so two instances' batches cannot deadlock.

use std::collections::HashMap;

use boxoffice_shared::db::PgStore;
use sqlx::{PgConnection, Row as _};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    Credit, Head, Joined, Place, RoomJoins, RoomRow, distinct, draw_key, opened, plan_tick,
};
use crate::error::BookingError;

pub struct PgQueue {
    db: PgStore,
}

/// How a batch locks a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// Before the opening: unranked places only.
    Share,
    /// At or after it: ranks are given.
    Update,
}

impl PgQueue {
    pub fn new(db: PgStore) -> Self {
        Self { db }
    }

    pub async fn join(
        &self,
        mut rooms: Vec<RoomJoins>,
        now: OffsetDateTime,
    ) -> Result<Vec<Joined>, BookingError> {
        // Rooms are locked in the order of their ids; answers go back in the order asked.
        let mut order: Vec<usize> = (0..rooms.len()).collect();
        order.sort_by_key(|&at| rooms[at].concert_id);
        let mut answers: Vec<Option<Joined>> = vec![None; rooms.len()];
        // Another instance's clock may have shuffled a room this one thinks unopened: then
        // the batch is run again, ranking.
        for force_update in [false, true] {
            let mut tx = self.db.pool.begin().await?;
            let mut retry = false;
            for &at in &order {
                let room = &mut rooms[at];
                let lock = if force_update || opened(room.opens_at, now) {
                    Lock::Update
                } else {
                    Lock::Share
                };
                match join_room(&mut tx, room, lock, now).await? {
                    Some(joined) => answers[at] = Some(joined),
                    None => {
                        retry = true;
                        break;
                    }
                }
            }
            if !retry {
                tx.commit().await?;
                return answers
                    .into_iter()
                    .map(|joined| {
                        joined.ok_or_else(|| BookingError::Corrupt("a room was not joined".into()))
                    })
                    .collect();
            }
            tx.rollback().await?;
        }
        Err(BookingError::Corrupt(
            "a room stayed shuffled and unopened".into(),
        ))
    }

    pub async fn tick(
        &self,
        concert_id: Uuid,
        opens_at: Option<OffsetDateTime>,
        per_minute: u32,
        now: OffsetDateTime,
    ) -> Result<Head, BookingError> {
        let mut tx = self.db.pool.begin().await?;
        let Some(mut row) = room_row(&mut tx, concert_id, Lock::Update).await? else {
            return Ok(Head::default());
        };
        if !row.head.shuffled {
            if !opened(opens_at, now) {
                return Ok(row.head);
            }
            row.head = shuffle(&mut tx, concert_id, row.head).await?;
        }
        if let Some(advance) = plan_tick(row, opens_at, per_minute, now) {
            if advance.admitted > row.head.admitted {
                sqlx::query(
                    "INSERT INTO admissions (concert_id, upto_rank, admitted_at) VALUES ($1, $2, $3)",
                )
                .bind(concert_id)
                .bind(advance.admitted)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE rooms SET admitted = $2, credit = $3, ticked_at = $4 WHERE concert_id = $1",
            )
            .bind(concert_id)
            .bind(advance.admitted)
            .bind(advance.credit)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            row.head.admitted = advance.admitted;
        }
        tx.commit().await?;
        Ok(row.head)
    }

    /// The pool the rooms' reads ([`super::reads`]) run on.
    pub fn read_pool(&self) -> &sqlx::PgPool {
        &self.db.pool
    }

    pub async fn ping(&self) -> Result<(), BookingError> {
        Ok(self.db.ping().await?)
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// One room's joins inside the batch's transaction; `None` when a room locked for sharing
/// turned out shuffled (the batch must run again, ranking).
async fn join_room(
    tx: &mut PgConnection,
    room: &RoomJoins,
    lock: Lock,
    now: OffsetDateTime,
) -> Result<Option<Joined>, BookingError> {
    sqlx::query("INSERT INTO rooms (concert_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(room.concert_id)
        .execute(&mut *tx)
        .await?;
    let Some(row) = room_row(tx, room.concert_id, lock).await? else {
        return Err(BookingError::Corrupt("a room vanished".into()));
    };
    let mut head = row.head;
    if lock == Lock::Share && head.shuffled {
        return Ok(None);
    }
    if lock == Lock::Update && !head.shuffled {
        head = shuffle(tx, room.concert_id, head).await?;
    }
    let users = distinct(&room.users);
    let mut found = existing(tx, room.concert_id, &users).await?;
    let fresh: Vec<Uuid> = users
        .iter()
        .copied()
        .filter(|user| !found.contains_key(user))
        .collect();
    let ranks: Vec<Option<i64>> = (1..=fresh.len() as i64)
        .map(|n| head.shuffled.then_some(head.ranked + n))
        .collect();
    let draws: Vec<i64> = fresh.iter().map(|_| draw_key()).collect();
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO places (concert_id, user_id, draw, rank, joined_at)
         SELECT $1, user_id, draw, rank, $5
         FROM UNNEST($2::uuid[], $3::bigint[], $4::bigint[]) AS joins (user_id, draw, rank)
         ON CONFLICT DO NOTHING
         RETURNING user_id",
    )
    .bind(room.concert_id)
    .bind(&fresh)
    .bind(&draws)
    .bind(&ranks)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    if head.shuffled && !fresh.is_empty() {
        // Under the room's update lock nobody else inserts into it: every fresh place is in.
        head.ranked += fresh.len() as i64;
        // Into a room where nobody waited, the ticker's credit starts now: none is earned while
        // nobody waits (the right-hand sides read the row as it was).
        sqlx::query(
            "UPDATE rooms SET ranked = $2,
                 ticked_at = CASE WHEN admitted = ranked THEN $3 ELSE ticked_at END,
                 credit = CASE WHEN admitted = ranked THEN 0 ELSE credit END
             WHERE concert_id = $1",
        )
        .bind(room.concert_id)
        .bind(head.ranked)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let new: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
    // Places another instance took at the same moment (before the opening only).
    let raced: Vec<Uuid> = fresh
        .iter()
        .copied()
        .filter(|user| !new.contains(user))
        .collect();
    found.extend(existing(tx, room.concert_id, &raced).await?);
    for (user, rank) in fresh.iter().zip(&ranks) {
        if new.contains(user) {
            let place = Place {
                rank: *rank,
                joined_at: now,
            };
            found.insert(*user, place);
        }
    }
    let mut answered = std::collections::HashSet::new();
    let places = room
        .users
        .iter()
        .map(|user| {
            let place = found
                .get(user)
                .copied()
                .ok_or_else(|| BookingError::Corrupt("a joined place is missing".into()))?;
            Ok((place, new.contains(user) && answered.insert(*user)))
        })
        .collect::<Result<_, BookingError>>()?;
    Ok(Some(Joined { head, places }))
}

/// The places these users already have in the room.
async fn existing(
    tx: &mut PgConnection,
    concert_id: Uuid,
    users: &[Uuid],
) -> Result<HashMap<Uuid, Place>, BookingError> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT user_id, rank, joined_at FROM places WHERE concert_id = $1 AND user_id = ANY($2)",
    )
    .bind(concert_id)
    .bind(users)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                Place {
                    rank: row.try_get(1)?,
                    joined_at: row.try_get(2)?,
                },
            ))
        })
        .collect()
}

/// Ranks the room's pre-queue in the order of its secret keys: the shuffle, once.
async fn shuffle(
    tx: &mut PgConnection,
    concert_id: Uuid,
    head: Head,
) -> Result<Head, BookingError> {
    let done = sqlx::query(
        "UPDATE places SET rank = drawn.n + $2
         FROM (SELECT user_id, row_number() OVER (ORDER BY draw, user_id) AS n
               FROM places WHERE concert_id = $1 AND rank IS NULL) AS drawn
         WHERE places.concert_id = $1 AND places.user_id = drawn.user_id",
    )
    .bind(concert_id)
    .bind(head.ranked)
    .execute(&mut *tx)
    .await?;
    let ranked = head.ranked + i64::try_from(done.rows_affected()).unwrap_or(i64::MAX);
    sqlx::query("UPDATE rooms SET shuffled = true, ranked = $2 WHERE concert_id = $1")
        .bind(concert_id)
        .bind(ranked)
        .execute(&mut *tx)
        .await?;
    Ok(Head {
        shuffled: true,
        ranked,
        admitted: head.admitted,
    })
}

async fn room_row(
    tx: &mut PgConnection,
    concert_id: Uuid,
    lock: Lock,
) -> Result<Option<RoomRow>, BookingError> {
    let query = match lock {
        Lock::Share => {
            "SELECT shuffled, ranked, admitted, credit, ticked_at FROM rooms
             WHERE concert_id = $1 FOR SHARE"
        }
        Lock::Update => {
            "SELECT shuffled, ranked, admitted, credit, ticked_at FROM rooms
             WHERE concert_id = $1 FOR UPDATE"
        }
    };
    let row = sqlx::query(query)
        .bind(concert_id)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|row| {
        Ok(RoomRow {
            head: Head {
                shuffled: row.try_get(0)?,
                ranked: row.try_get(1)?,
                admitted: row.try_get(2)?,
            },
            credit: Credit {
                credit: row.try_get(3)?,
                ticked_at: row.try_get(4)?,
            },
        })
    })
    .transpose()
}
