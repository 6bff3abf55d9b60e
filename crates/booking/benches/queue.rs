//! The waiting rooms' store at a world-tour scale: `--people N` (default 1 000 000) join one
//! room before its opening, in batches as the join task commits them; then the room is shuffled.
//! Prints the store's joins per second, how long the shuffle took and what the process's
//! resident memory grew by — the cost of holding N people waiting in the process that serves
//! them (on SQLite the places are in the file; the process keeps its page cache).
//!
//! `cargo bench -p boxoffice-booking --bench queue -- [--people N] [--postgres URL]`

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use boxoffice_booking::queue::RoomJoins;
use boxoffice_booking::queue::store::QueueStore;
use boxoffice_shared::db::{Durability, PgStore, SqliteStore, Store};
use time::OffsetDateTime;
use uuid::Uuid;

/// As the join task batches them.
const BATCH: usize = 1024;

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|at| args.get(at + 1))
            .cloned()
    };
    let people: usize = value("--people").map_or(1_000_000, |n| n.parse().unwrap());
    let postgres = value("--postgres");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let store: Store = match &postgres {
            Some(url) => PgStore::connect(url, "queue_bench", 4).await.unwrap().into(),
            None => SqliteStore::open(&dir.path().join("queue.db"), 2)
                .await
                .unwrap()
                .into(),
        };
        let rooms = QueueStore::open(store, Durability::Full).await.unwrap();
        let concert_id = Uuid::now_v7();
        let opens_at = OffsetDateTime::now_utc() + time::Duration::days(1);
        let before = resident_kib();
        let started = Instant::now();
        let mut joined = 0;
        while joined < people {
            let users: Vec<Uuid> = (0..BATCH.min(people - joined))
                .map(|_| Uuid::now_v7())
                .collect();
            joined += users.len();
            let room = RoomJoins {
                concert_id,
                opens_at: Some(opens_at),
                users,
            };
            rooms
                .join(vec![room], OffsetDateTime::now_utc())
                .await
                .unwrap();
        }
        let joining = started.elapsed();
        let after_joins = resident_kib();
        let started = Instant::now();
        let head = rooms
            .tick(concert_id, Some(opens_at), 1000, opens_at)
            .await
            .unwrap();
        let shuffle = started.elapsed();
        let after_shuffle = resident_kib();
        assert_eq!(head.ranked, people as i64);
        let engine = if postgres.is_some() { "postgres" } else { "sqlite" };
        println!(
            "queue store ({engine}): {people} joins in {:.1} s = {:.0} joins/s (batches of {BATCH}); \
             shuffle {:.2} s; resident memory +{} MiB after the joins, +{} MiB after the shuffle",
            joining.as_secs_f64(),
            people as f64 / joining.as_secs_f64(),
            shuffle.as_secs_f64(),
            after_joins.saturating_sub(before) / 1024,
            after_shuffle.saturating_sub(before) / 1024,
        );
        rooms.close().await;
    });
}
