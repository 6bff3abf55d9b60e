//! The waiting rooms' store on both engines: its rules as a property test (random joins and
//! ticks against the rules of `boxoffice_booking::queue`), and the shuffle's fairness. Time is
//! the test's: every call is given its `now`.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use boxoffice_booking::queue::store::QueueStore;
use boxoffice_booking::queue::{Head, Place, RoomJoins};
use boxoffice_shared::db::{Durability, PgStore, SqliteStore, Store};
use boxoffice_shared::pgtest::TestDatabase;
use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

const T0: OffsetDateTime = datetime!(2027-03-01 09:59:50 UTC);
/// Sales open ten seconds into every case.
const OPENS: OffsetDateTime = datetime!(2027-03-01 10:00:00 UTC);

#[derive(Debug, Clone)]
enum Op {
    /// Some of the users join in one batch, after `wait_ms`.
    Join { users: Vec<usize>, wait_ms: u32 },
    /// The ticker runs, after `wait_ms`.
    Tick { wait_ms: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (proptest::collection::vec(0..30usize, 1..6), 0..4000u32)
            .prop_map(|(users, wait_ms)| Op::Join { users, wait_ms }),
        2 => (0..4000u32).prop_map(|wait_ms| Op::Tick { wait_ms }),
    ]
}

/// What the test knows of a room, to hold the store to the rules.
#[derive(Default)]
struct Model {
    /// Each user's place as first given, and whether they joined before the opening.
    places: HashMap<Uuid, (Place, bool)>,
    /// Users who joined after the opening, in the order they did.
    arrivals: Vec<Uuid>,
    /// (instant, admitted) after every tick.
    ticks: Vec<(OffsetDateTime, i64)>,
}

async fn rules_hold(store: &QueueStore, ops: Vec<Op>, per_minute: u32) {
    let concert_id = Uuid::now_v7();
    let users: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
    let mut model = Model::default();
    let mut now = T0;
    let mut last = Head::default();
    for op in ops {
        match op {
            Op::Join {
                users: chosen,
                wait_ms,
            } => {
                now += time::Duration::milliseconds(i64::from(wait_ms));
                let joining: Vec<Uuid> = chosen.iter().map(|&at| users[at]).collect();
                let room = RoomJoins {
                    concert_id,
                    opens_at: Some(OPENS),
                    users: joining.clone(),
                };
                let joined = store.join(vec![room], now).await.unwrap().remove(0);
                assert_eq!(joined.places.len(), joining.len());
                for (user, (place, new)) in joining.iter().zip(&joined.places) {
                    match model.places.get(user) {
                        // One place per user: joining again finds the same place.
                        Some((first, _)) => {
                            assert!(!new, "a second join is not a new place");
                            assert_eq!(first.joined_at, place.joined_at);
                            if first.rank.is_some() {
                                assert_eq!(first.rank, place.rank, "a rank never changes");
                            }
                        }
                        None => {
                            assert!(new);
                            let early = now < OPENS;
                            assert_eq!(place.rank.is_none(), early, "ranked iff after the opening");
                            model.places.insert(*user, (*place, early));
                            if !early {
                                model.arrivals.push(*user);
                            }
                        }
                    }
                }
                last = joined.head;
            }
            Op::Tick { wait_ms } => {
                now += time::Duration::milliseconds(i64::from(wait_ms));
                let head = store
                    .tick(concert_id, Some(OPENS), per_minute, now)
                    .await
                    .unwrap();
                assert!(head.admitted >= last.admitted, "admissions never go back");
                let exists = !model.places.is_empty();
                assert_eq!(head.shuffled, last.shuffled || (exists && now >= OPENS));
                model.ticks.push((now, head.admitted));
                last = head;
            }
        }
        let head = store.head(concert_id).await.unwrap();
        assert!(head.admitted <= head.ranked);
        assert_eq!(head.shuffled, last.shuffled);
    }
    check_ranks(store, concert_id, &model, last).await;
    check_rate(&model, per_minute);
}

/// Once shuffled: ranks 1..=ranked, each once; the pre-queue first; arrivals in their order.
async fn check_ranks(store: &QueueStore, concert_id: Uuid, model: &Model, head: Head) {
    if !head.shuffled {
        return;
    }
    let mut ranks = Vec::new();
    for (user, (_, early)) in &model.places {
        let place = store.place(concert_id, *user).await.unwrap().unwrap();
        ranks.push((place.rank.unwrap(), *early, *user));
    }
    ranks.sort();
    let expected: Vec<i64> = (1..=head.ranked).collect();
    assert_eq!(ranks.iter().map(|r| r.0).collect::<Vec<_>>(), expected);
    let early = ranks.iter().filter(|r| r.1).count();
    assert!(
        ranks[..early].iter().all(|r| r.1),
        "the pre-queue comes first"
    );
    let arrivals: Vec<Uuid> = ranks[early..].iter().map(|r| r.2).collect();
    assert_eq!(arrivals, model.arrivals, "arrival order after the opening");
    // Admission times: a rank admitted has one, no earlier than any smaller rank's.
    let mut previous = None;
    for rank in 1..=head.admitted {
        let at = store.admitted_at(concert_id, rank).await.unwrap().unwrap();
        assert!(previous.is_none_or(|before| before <= at));
        previous = Some(at);
    }
    assert!(
        store
            .admitted_at(concert_id, head.admitted + 1)
            .await
            .unwrap()
            .is_none()
    );
}

/// Between any two ticks, no more admitted than the rate earned in between, plus one carried
/// fraction.
fn check_rate(model: &Model, per_minute: u32) {
    for (at, (since, before)) in model.ticks.iter().enumerate() {
        for (until, after) in &model.ticks[at + 1..] {
            let seconds = (*until - (*since).max(OPENS)).as_seconds_f64().max(0.0);
            let earned = seconds * f64::from(per_minute) / 60.0;
            assert!(
                (*after - *before) as f64 <= earned + 1.0,
                "{} admitted in {seconds} s at {per_minute}/min",
                after - before
            );
        }
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn sqlite_rooms(dir: &tempfile::TempDir) -> QueueStore {
    let store = SqliteStore::open(&dir.path().join("queue.db"), 2)
        .await
        .unwrap();
    QueueStore::open(Store::from(store), Durability::Normal)
        .await
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_rooms_rules_hold_on_sqlite(
        ops in proptest::collection::vec(op(), 1..40),
        per_minute in 1..600u32,
    ) {
        let runtime = current_thread();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = sqlite_rooms(&dir).await;
            rules_hold(&store, ops, per_minute).await;
            store.close().await;
        });
    }
}

/// The same property on PostgreSQL: one database for the run, a room per case.
#[test]
fn the_rooms_rules_hold_on_postgres() {
    let runtime = current_thread();
    let Some(database) = runtime.block_on(TestDatabase::create(
        "queue::the_rooms_rules_hold_on_postgres",
    )) else {
        return;
    };
    let store = runtime.block_on(async {
        let db = PgStore::connect(&database.url, "queue", 4).await.unwrap();
        QueueStore::open(Store::from(db), Durability::Full)
            .await
            .unwrap()
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    let strategy = (proptest::collection::vec(op(), 1..40), 1..600u32);
    let result = runner.run(&strategy, |(ops, per_minute)| {
        runtime.block_on(rules_hold(&store, ops, per_minute));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}\n{runner}");
    }
}

/// 300 fans join before the opening, one at a time: the shuffle ranks them in an order that is
/// not the order they came in (by chance with probability 1/300!), and puts the first comer
/// anywhere.
#[test]
fn the_shuffle_does_not_follow_the_order_of_joining() {
    let runtime = current_thread();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_rooms(&dir).await;
        let concert_id = Uuid::now_v7();
        let users: Vec<Uuid> = (0..300).map(|_| Uuid::now_v7()).collect();
        for (at, user) in users.iter().enumerate() {
            let room = RoomJoins {
                concert_id,
                opens_at: Some(OPENS),
                users: vec![*user],
            };
            let now = T0 + time::Duration::milliseconds(at as i64);
            store.join(vec![room], now).await.unwrap();
        }
        let head = store
            .tick(concert_id, Some(OPENS), 60, OPENS)
            .await
            .unwrap();
        assert!(head.shuffled);
        assert_eq!(head.ranked, 300);
        let mut ranks = Vec::new();
        for user in &users {
            ranks.push(
                store
                    .place(concert_id, *user)
                    .await
                    .unwrap()
                    .unwrap()
                    .rank
                    .unwrap(),
            );
        }
        let in_order: Vec<i64> = (1..=300).collect();
        assert_ne!(ranks, in_order, "the shuffle kept the order of joining");
        let mut sorted = ranks.clone();
        sorted.sort();
        assert_eq!(sorted, in_order, "a permutation of 1..=300");
        // A rough check of the spread: the first 30 to come are not all among the first 150.
        assert!(
            ranks[..30].iter().any(|rank| *rank > 150),
            "{:?}",
            &ranks[..30]
        );
        store.close().await;
    });
}
