//! The store's contract: one suite, run against every engine.
//!
//! Each contract test is an `async fn(&CatalogStore)`; [`contract!`] turns it into one
//! `#[tokio::test]` per engine: `sqlite::…`, `postgres::…`, and `postgres_without_pg_trgm::…`,
//! whose role may not create extensions, so the migration has to do without the trigram index.
//! The PostgreSQL variants need a server ([`boxoffice_shared::pgtest`]); without one they print
//! that they were skipped and pass. The tests after the suite compare the engines directly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use boxoffice_shared::clients::WaitingRoom;
use boxoffice_shared::db::{PgStore, SqliteStore, pg_options};
use boxoffice_shared::pgtest::TestDatabase;
use time::Duration;

use super::postgres::{MAX_MILLIS, MIN_MILLIS, pg_instant, pg_millis};
use super::*;
use crate::domain::{Category, Description, FutureStart, TimeZoneName, Title};
use crate::testing::{START, new_concert, new_seat_type};

/// Which engine, and how it is set up.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Sqlite,
    Postgres,
    /// PostgreSQL for a role without `CREATE` on the database, as on many managed servers: it
    /// may not create extensions, so there is no pg_trgm.
    PostgresWithoutPgTrgm,
}

/// A migrated, empty store on one engine, and what keeps it alive.
struct Backend {
    store: CatalogStore,
    /// The role [`Kind::PostgresWithoutPgTrgm`] works as; roles outlive databases, so
    /// [`Backend::finish`] drops it.
    role: Option<String>,
    database: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// `None` when `kind` needs PostgreSQL and there is none (the test then passes untested).
    async fn new(kind: Kind, test: &str) -> Option<Self> {
        let backend = match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let db = SqliteStore::open(&dir.path().join("catalog.db"), 4)
                    .await
                    .unwrap();
                Self {
                    store: CatalogStore::new(db),
                    role: None,
                    database: None,
                    _dir: Some(dir),
                }
            }
            Kind::Postgres => {
                let database = TestDatabase::create(test).await?;
                let db = PgStore::connect(&database.url, "catalog", 5).await.unwrap();
                Self {
                    store: CatalogStore::new(db),
                    role: None,
                    database: Some(database),
                    _dir: None,
                }
            }
            Kind::PostgresWithoutPgTrgm => {
                let database = TestDatabase::create(test).await?;
                // A role that cannot log in: if the test fails before `finish`, what is left on
                // the server is harmless. The pool logs in as the administrator and switches to
                // it for the whole session.
                let role = format!("boxoffice_test_{}", Uuid::new_v4().simple());
                admin_execute(
                    &database,
                    &format!(
                        "CREATE ROLE {role} NOLOGIN; CREATE SCHEMA catalog AUTHORIZATION {role}"
                    ),
                )
                .await;
                let options = pg_options(&database.url, "catalog")
                    .unwrap()
                    .options([("role", role.as_str())]);
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(5)
                    .connect_with(options)
                    .await
                    .unwrap();
                // Not `PgStore::connect`: its `CREATE SCHEMA IF NOT EXISTS` needs the `CREATE`
                // privilege this role lacks, even though the schema exists.
                let db = PgStore {
                    pool,
                    schema: "catalog",
                };
                Self {
                    store: CatalogStore::new(db),
                    role: Some(role),
                    database: Some(database),
                    _dir: None,
                }
            }
        };
        backend.store.migrate().await.unwrap();
        Some(backend)
    }

    /// Whether the migration created the trigram index (PostgreSQL only).
    async fn has_trigram_index(&self) -> bool {
        let Store::Postgres(db) = &self.store.db else {
            panic!("not a PostgreSQL store")
        };
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_indexes
                            WHERE schemaname = 'catalog' AND indexname = 'concerts_text_trgm')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    }

    /// Closes the store, then drops what the test created on the server.
    async fn finish(self) {
        self.store.close().await;
        if let (Some(role), Some(database)) = (&self.role, &self.database) {
            admin_execute(database, &format!("DROP OWNED BY {role}; DROP ROLE {role}")).await;
        }
    }
}

/// Runs `sql` on `database` as the server's administrator.
async fn admin_execute(database: &TestDatabase, sql: &str) {
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// One `#[tokio::test]` per engine for each contract test named.
macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        contract!(@engine sqlite, Sqlite, $($test),*);
        contract!(@engine postgres, Postgres, $($test),*);
        contract!(@engine postgres_without_pg_trgm, PostgresWithoutPgTrgm, $($test),*);
    };
    (@engine $module:ident, $kind:ident, $($test:ident),*) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $test() {
                    let kind = super::Kind::$kind;
                    let name = concat!("store::tests::", stringify!($module), "::", stringify!($test));
                    let Some(backend) = super::Backend::new(kind, name).await else {
                        return;
                    };
                    super::$test(&backend.store).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

contract!(
    inserts_and_reads_a_concert_with_its_seat_types,
    instants_are_kept_to_the_millisecond,
    updates_change_only_what_is_given_and_bump_the_version,
    on_sale_times_are_set_cleared_and_kept_before_the_start,
    waiting_rooms_are_set_changed_removed_and_kept,
    guarded_changes_refuse_started_cancelled_and_unknown_concerts,
    seat_type_names_are_unique_per_concert_ignoring_case,
    seat_types_are_added_in_order_up_to_the_limit,
    capacity_changes_do_not_bump_the_version,
    cancelling_is_idempotent,
    unsynced_concerts_come_oldest_first_until_marked_synced,
    filters_on_status_category_and_time_and_hides_unsynced_concerts,
    text_search_is_a_case_insensitive_substring_of_name_artist_or_venue,
    text_search_takes_wildcards_and_syntax_literally,
    keyset_pages_cover_every_concert_once_even_with_equal_start_times,
    forged_cursors_outside_the_calendar_still_page,
);

async fn insert(store: &CatalogStore, concert: &NewConcert) -> ConcertRecord {
    let id = Uuid::now_v7();
    let seat_ids: Vec<Uuid> = concert.seat_types.iter().map(|_| Uuid::now_v7()).collect();
    store
        .insert_concert(id, concert, &seat_ids, START)
        .await
        .unwrap()
}

/// Inserts `concert` and records Booking's acknowledgement, as a listed concert has it.
async fn insert_synced(store: &CatalogStore, concert: &NewConcert) -> ConcertRecord {
    let record = insert(store, concert).await;
    assert!(store.mark_synced(record.id, record.version).await.unwrap());
    store.concert(record.id).await.unwrap().unwrap()
}

fn filter(status: ListStatus) -> ListFilter {
    ListFilter {
        status,
        now: START,
        search: None,
        category: None,
        from: None,
        to: None,
    }
}

async fn ids(store: &CatalogStore, filter: &ListFilter) -> Vec<Uuid> {
    store
        .list(filter, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

async fn search(store: &CatalogStore, text: &str) -> Vec<String> {
    let filter = ListFilter {
        search: SearchText::parse(text).unwrap(),
        ..filter(ListStatus::All)
    };
    store
        .list(&filter, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

fn seat_names(record: &ConcertRecord) -> Vec<&str> {
    record.seat_types.iter().map(|s| s.name.as_str()).collect()
}

fn validation_field(error: CatalogError) -> String {
    let CatalogError::Validation(errors) = error else {
        panic!("expected a validation error, got {error:?}");
    };
    assert_eq!(errors.len(), 1);
    errors[0].field.clone()
}

async fn inserts_and_reads_a_concert_with_its_seat_types(store: &CatalogStore) {
    let mut concert = new_concert(
        "Aurora World Tour",
        "Aurora",
        "Royal Albert Hall",
        3,
        &[("VIP", 50), ("Balcony", 200)],
    );
    concert.description = Description::parse("Line one\nline two").unwrap();
    concert.category = Category::parse("Pop").unwrap();
    concert.time_zone = TimeZoneName::parse("Europe/London").unwrap();
    concert.sales_open_at = Some(START + Duration::hours(1));
    concert.waiting_room = Some(WaitingRoom {
        admit_per_minute: 1_000_000,
        admission_ttl_seconds: 86_400,
    });
    let id = Uuid::now_v7();
    let seat_ids = [Uuid::now_v7(), Uuid::now_v7()];
    let record = store
        .insert_concert(id, &concert, &seat_ids, START)
        .await
        .unwrap();

    let seat_type = |id: Uuid, name: &str, capacity: i64| SeatTypeRecord {
        id,
        name: name.to_owned(),
        price_cents: 1000,
        currency: "USD".to_owned(),
        capacity,
    };
    let expected = ConcertRecord {
        id,
        name: "Aurora World Tour".to_owned(),
        artist: "Aurora".to_owned(),
        venue: "Royal Albert Hall".to_owned(),
        description: "Line one\nline two".to_owned(),
        category: "Pop".to_owned(),
        starts_at: START + Duration::hours(3),
        time_zone: "Europe/London".to_owned(),
        sales_open_at: Some(START + Duration::hours(1)),
        waiting_room: Some(WaitingRoom {
            admit_per_minute: 1_000_000,
            admission_ttl_seconds: 86_400,
        }),
        cancelled_at: None,
        created_at: START,
        updated_at: START,
        version: 1,
        synced_version: 0,
        seat_types: vec![
            seat_type(seat_ids[0], "VIP", 50),
            seat_type(seat_ids[1], "Balcony", 200),
        ],
    };
    assert_eq!(record, expected);
    assert!(!record.is_synced());
    assert_eq!(store.concert(id).await.unwrap(), Some(expected));
    assert_eq!(store.concert(Uuid::now_v7()).await.unwrap(), None);
}

async fn on_sale_times_are_set_cleared_and_kept_before_the_start(store: &CatalogStore) {
    let record = insert_synced(store, &new_concert("Show", "A", "V", 5, &[("GA", 5)])).await;
    assert_eq!(record.sales_open_at, None);
    let set = |at: Option<OffsetDateTime>| ConcertChange {
        sales_open_at: Some(at),
        ..ConcertChange::default()
    };
    let opens = START + Duration::hours(2);
    let Guarded::Done(scheduled) = store
        .update_concert(record.id, &set(Some(opens)), START)
        .await
        .unwrap()
    else {
        panic!("update refused");
    };
    assert_eq!(scheduled.sales_open_at, Some(opens));
    assert_eq!(scheduled.version, record.version + 1);
    // A change that does not name it keeps it.
    let rename = ConcertChange {
        name: Some(Title::parse("Renamed").unwrap()),
        ..ConcertChange::default()
    };
    let Guarded::Done(renamed) = store
        .update_concert(record.id, &rename, START)
        .await
        .unwrap()
    else {
        panic!("update refused");
    };
    assert_eq!(renamed.sales_open_at, Some(opens));
    // Not at or after the start (5 hours after START), whether it moves or the start does.
    let late = store
        .update_concert(record.id, &set(Some(START + Duration::hours(5))), START)
        .await
        .unwrap_err();
    assert_eq!(validation_field(late), "sales_open_at");
    let early_start = ConcertChange {
        starts_at: Some(FutureStart::parse(START + Duration::hours(1), START).unwrap()),
        ..ConcertChange::default()
    };
    let moved = store
        .update_concert(record.id, &early_start, START)
        .await
        .unwrap_err();
    assert_eq!(validation_field(moved), "sales_open_at");
    assert_eq!(
        store
            .concert(record.id)
            .await
            .unwrap()
            .unwrap()
            .sales_open_at,
        Some(opens)
    );
    // `null` clears it.
    let Guarded::Done(cleared) = store
        .update_concert(record.id, &set(None), START)
        .await
        .unwrap()
    else {
        panic!("update refused");
    };
    assert_eq!(cleared.sales_open_at, None);
}

async fn waiting_rooms_are_set_changed_removed_and_kept(store: &CatalogStore) {
    let record = insert_synced(store, &new_concert("Show", "A", "V", 5, &[("GA", 5)])).await;
    assert_eq!(record.waiting_room, None);
    let set = |room: Option<WaitingRoom>| ConcertChange {
        waiting_room: Some(room),
        ..ConcertChange::default()
    };
    let id = record.id;
    let update = |change: ConcertChange| async move {
        match store.update_concert(id, &change, START).await {
            Ok(Guarded::Done(updated)) => updated,
            other => panic!("update refused: {other:?}"),
        }
    };
    let room = WaitingRoom {
        admit_per_minute: 1,
        admission_ttl_seconds: 60,
    };
    let with_room = update(set(Some(room))).await;
    assert_eq!(with_room.waiting_room, Some(room));
    assert_eq!(with_room.version, record.version + 1);
    assert!(!with_room.is_synced());
    let slower = WaitingRoom {
        admission_ttl_seconds: 900,
        ..room
    };
    assert_eq!(update(set(Some(slower))).await.waiting_room, Some(slower));
    // A change that does not name it keeps it.
    let rename = ConcertChange {
        name: Some(Title::parse("Renamed").unwrap()),
        ..ConcertChange::default()
    };
    assert_eq!(update(rename).await.waiting_room, Some(slower));
    // `null` removes it.
    let removed = update(set(None)).await;
    assert_eq!(removed.waiting_room, None);
    assert_eq!(store.concert(id).await.unwrap().unwrap().waiting_room, None);
}

async fn instants_are_kept_to_the_millisecond(store: &CatalogStore) {
    let now = START + Duration::nanoseconds(7_654_321);
    let mut concert = new_concert("Show", "A", "V", 1, &[("GA", 5)]);
    concert.starts_at = FutureStart::parse(
        START + Duration::hours(1) + Duration::microseconds(1_999),
        now,
    )
    .unwrap();
    let record = store
        .insert_concert(Uuid::now_v7(), &concert, &[Uuid::now_v7()], now)
        .await
        .unwrap();
    let millis = START + Duration::milliseconds(7);
    assert_eq!(record.created_at, millis);
    assert_eq!(record.updated_at, millis);
    assert_eq!(
        record.starts_at,
        START + Duration::hours(1) + Duration::milliseconds(1)
    );
    assert_eq!(
        record.cursor().starts_at_millis,
        to_millis(START) + 3_600_001
    );
    let Guarded::Done(cancelled) = store.cancel(record.id, now).await.unwrap() else {
        panic!("cancel refused");
    };
    assert_eq!(cancelled.cancelled_at, Some(millis));
}

async fn updates_change_only_what_is_given_and_bump_the_version(store: &CatalogStore) {
    let record = insert_synced(store, &new_concert("Show", "A", "V", 5, &[("GA", 5)])).await;
    let later = START + Duration::minutes(10);
    let change = ConcertChange {
        name: Some(Title::parse("Renamed").unwrap()),
        category: Some(Category::parse("Jazz").unwrap()),
        starts_at: Some(FutureStart::parse(START + Duration::hours(6), later).unwrap()),
        time_zone: Some(TimeZoneName::parse("America/New_York").unwrap()),
        ..ConcertChange::default()
    };
    let Guarded::Done(updated) = store
        .update_concert(record.id, &change, later)
        .await
        .unwrap()
    else {
        panic!("update refused");
    };
    assert_eq!(
        updated,
        ConcertRecord {
            name: "Renamed".to_owned(),
            category: "Jazz".to_owned(),
            starts_at: START + Duration::hours(6),
            time_zone: "America/New_York".to_owned(),
            updated_at: later,
            version: 2,
            ..record.clone()
        }
    );
    assert!(!updated.is_synced());
    assert_eq!(store.unsynced(10).await.unwrap(), [record.id]);

    // An empty change changes nothing, not even the version or the time of the last change.
    let Guarded::Done(same) = store
        .update_concert(
            record.id,
            &ConcertChange::default(),
            later + Duration::hours(1),
        )
        .await
        .unwrap()
    else {
        panic!("no-op refused");
    };
    assert_eq!(same, updated);
    assert_eq!(
        store.concert(record.id).await.unwrap().as_ref(),
        Some(&updated)
    );
}

async fn guarded_changes_refuse_started_cancelled_and_unknown_concerts(store: &CatalogStore) {
    let record = insert_synced(store, &new_concert("Show", "A", "V", 1, &[("GA", 5)])).await;
    let after_start = START + Duration::hours(1);
    let change = ConcertChange {
        name: Some(Title::parse("New").unwrap()),
        ..ConcertChange::default()
    };
    assert!(matches!(
        store
            .update_concert(record.id, &change, after_start)
            .await
            .unwrap(),
        Guarded::Refused(Refusal::Started)
    ));
    assert!(matches!(
        store.cancel(record.id, after_start).await.unwrap(),
        Guarded::Refused(Refusal::Started)
    ));
    assert!(matches!(
        store
            .add_seat_type(
                record.id,
                Uuid::now_v7(),
                &new_seat_type("VIP", 2),
                after_start
            )
            .await
            .unwrap(),
        Guarded::Refused(Refusal::Started)
    ));
    assert!(matches!(
        store.cancel(Uuid::now_v7(), START).await.unwrap(),
        Guarded::Refused(Refusal::NotFound)
    ));
    assert!(matches!(
        store
            .update_concert(Uuid::now_v7(), &change, START)
            .await
            .unwrap(),
        Guarded::Refused(Refusal::NotFound)
    ));
    assert!(matches!(
        store
            .add_seat_type(
                Uuid::now_v7(),
                Uuid::now_v7(),
                &new_seat_type("VIP", 2),
                START
            )
            .await
            .unwrap(),
        Guarded::Refused(Refusal::NotFound)
    ));
    // The refusals changed nothing.
    assert_eq!(store.concert(record.id).await.unwrap().unwrap().version, 1);

    let Guarded::Done(updated) = store
        .update_concert(record.id, &change, START)
        .await
        .unwrap()
    else {
        panic!("update refused");
    };
    assert_eq!(updated.name, "New");
    assert_eq!(updated.version, 2);
    let Guarded::Done(cancelled) = store.cancel(record.id, START).await.unwrap() else {
        panic!("cancel refused");
    };
    assert!(matches!(
        store
            .update_concert(record.id, &change, START)
            .await
            .unwrap(),
        Guarded::Refused(Refusal::Cancelled)
    ));
    assert!(matches!(
        store
            .add_seat_type(record.id, Uuid::now_v7(), &new_seat_type("VIP", 2), START)
            .await
            .unwrap(),
        Guarded::Refused(Refusal::Cancelled)
    ));
    assert_eq!(
        store.concert(record.id).await.unwrap().as_ref(),
        Some(&cancelled)
    );
}

async fn seat_type_names_are_unique_per_concert_ignoring_case(store: &CatalogStore) {
    // Within one new concert: nothing of it is stored.
    let twice = new_concert("Twice", "A", "V", 1, &[("VIP", 5), ("GA", 5), ("vip", 5)]);
    let id = Uuid::now_v7();
    let seat_ids: Vec<Uuid> = twice.seat_types.iter().map(|_| Uuid::now_v7()).collect();
    let error = store
        .insert_concert(id, &twice, &seat_ids, START)
        .await
        .unwrap_err();
    assert_eq!(validation_field(error), "seat_types[2].name");
    assert_eq!(store.concert(id).await.unwrap(), None);
    assert!(store.unsynced(10).await.unwrap().is_empty());

    // Added later: refused, and the version stays.
    let record = insert_synced(store, &new_concert("Show", "A", "V", 1, &[("VIP", 5)])).await;
    let error = store
        .add_seat_type(record.id, Uuid::now_v7(), &new_seat_type("vIp", 2), START)
        .await
        .unwrap_err();
    assert_eq!(validation_field(error), "name");
    assert_eq!(
        store.concert(record.id).await.unwrap(),
        Some(record.clone())
    );

    let Guarded::Done(record) = store
        .add_seat_type(
            record.id,
            Uuid::now_v7(),
            &new_seat_type("Balcony", 2),
            START,
        )
        .await
        .unwrap()
    else {
        panic!("add refused");
    };
    assert_eq!(seat_names(&record), ["VIP", "Balcony"]);
    // Another concert may reuse the name.
    insert_synced(store, &new_concert("Other", "A", "V", 1, &[("VIP", 5)])).await;
}

async fn seat_types_are_added_in_order_up_to_the_limit(store: &CatalogStore) {
    let record = insert_synced(store, &new_concert("Show", "A", "V", 1, &[("GA", 5)])).await;
    let later = START + Duration::minutes(1);
    let seat_id = Uuid::now_v7();
    let Guarded::Done(added) = store
        .add_seat_type(record.id, seat_id, &new_seat_type("VIP", 7), later)
        .await
        .unwrap()
    else {
        panic!("add refused");
    };
    assert_eq!(added.version, 2);
    assert_eq!(added.updated_at, later);
    assert!(!added.is_synced());
    assert_eq!(seat_names(&added), ["GA", "VIP"]);
    assert_eq!(
        added.seat_types[1],
        SeatTypeRecord {
            id: seat_id,
            name: "VIP".to_owned(),
            price_cents: 1000,
            currency: "USD".to_owned(),
            capacity: 7,
        }
    );

    let mut last = added;
    while last.seat_types.len() < NewConcert::MAX_SEAT_TYPES {
        let name = format!("Row {}", last.seat_types.len());
        let Guarded::Done(next) = store
            .add_seat_type(record.id, Uuid::now_v7(), &new_seat_type(&name, 1), START)
            .await
            .unwrap()
        else {
            panic!("add refused");
        };
        assert_eq!(next.seat_types.last().unwrap().name, name);
        last = next;
    }
    let error = store
        .add_seat_type(
            record.id,
            Uuid::now_v7(),
            &new_seat_type("One too many", 1),
            START,
        )
        .await
        .unwrap_err();
    assert_eq!(validation_field(error), "name");
    assert_eq!(store.concert(record.id).await.unwrap(), Some(last));
}

async fn capacity_changes_do_not_bump_the_version(store: &CatalogStore) {
    let record = insert_synced(
        store,
        &new_concert("Show", "A", "V", 1, &[("GA", 5), ("VIP", 2)]),
    )
    .await;
    store
        .set_capacity(record.seat_types[1].id, 40)
        .await
        .unwrap();
    let after = store.concert(record.id).await.unwrap().unwrap();
    assert_eq!(after.seat_types[0].capacity, 5);
    assert_eq!(after.seat_types[1].capacity, 40);
    assert_eq!(after.version, 1);
    assert!(after.is_synced());
    // An unknown seat type is nothing to change.
    store.set_capacity(Uuid::now_v7(), 40).await.unwrap();
}

async fn cancelling_is_idempotent(store: &CatalogStore) {
    let record = insert_synced(store, &new_concert("Show", "A", "V", 2, &[("GA", 5)])).await;
    let later = START + Duration::minutes(30);
    let Guarded::Done(once) = store.cancel(record.id, later).await.unwrap() else {
        panic!("cancel refused");
    };
    assert_eq!(once.cancelled_at, Some(later));
    assert_eq!(once.updated_at, later);
    assert_eq!(once.version, 2);
    assert!(once.is_cancelled());
    let Guarded::Done(twice) = store
        .cancel(record.id, later + Duration::minutes(1))
        .await
        .unwrap()
    else {
        panic!("second cancel refused");
    };
    assert_eq!(twice, once);
}

async fn unsynced_concerts_come_oldest_first_until_marked_synced(store: &CatalogStore) {
    // Inserted in the reverse of id order: "oldest" is the order of insertion.
    let mut ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    ids.reverse();
    for id in &ids {
        let concert = new_concert("Show", "A", "V", 1, &[("GA", 5)]);
        store
            .insert_concert(*id, &concert, &[Uuid::now_v7()], START)
            .await
            .unwrap();
    }
    assert_eq!(store.unsynced(10).await.unwrap(), ids);
    assert_eq!(store.unsynced(2).await.unwrap(), ids[..2]);

    // Synced only for the version that was pushed, and never backwards.
    assert!(!store.mark_synced(ids[1], 2).await.unwrap());
    assert!(store.mark_synced(ids[1], 1).await.unwrap());
    assert!(!store.mark_synced(ids[1], 1).await.unwrap());
    assert!(!store.mark_synced(Uuid::now_v7(), 1).await.unwrap());
    assert_eq!(store.unsynced(10).await.unwrap(), [ids[0], ids[2]]);
    let synced = store.concert(ids[1]).await.unwrap().unwrap();
    assert_eq!((synced.version, synced.synced_version), (1, 1));
    assert!(synced.is_synced());

    // A change makes it unsynced again, in its old place.
    let change = ConcertChange {
        venue: Some(Title::parse("Elsewhere").unwrap()),
        ..ConcertChange::default()
    };
    store.update_concert(ids[1], &change, START).await.unwrap();
    assert_eq!(store.unsynced(10).await.unwrap(), ids);
    // Booking saw version 1 only: version 2 still has to be pushed.
    assert!(!store.mark_synced(ids[1], 1).await.unwrap());
    assert!(store.mark_synced(ids[1], 2).await.unwrap());
    assert_eq!(store.unsynced(10).await.unwrap(), [ids[0], ids[2]]);
}

async fn filters_on_status_category_and_time_and_hides_unsynced_concerts(store: &CatalogStore) {
    let soon = insert_synced(store, &new_concert("Soon", "A", "V", 1, &[("GA", 5)])).await;
    let mut festival = new_concert("Fest", "A", "V", 48, &[("GA", 5)]);
    festival.category = Category::parse("Festival").unwrap();
    let festival = insert_synced(store, &festival).await;
    let cancelled = insert_synced(store, &new_concert("Off", "A", "V", 5, &[("GA", 5)])).await;
    let Guarded::Done(off) = store.cancel(cancelled.id, START).await.unwrap() else {
        panic!("cancel refused");
    };
    assert!(off.is_cancelled());
    // Never synced: invisible to every listing.
    insert(store, &new_concert("Hidden", "A", "V", 2, &[("GA", 5)])).await;

    assert_eq!(
        ids(store, &filter(ListStatus::Available)).await,
        [soon.id, festival.id]
    );
    assert_eq!(
        ids(store, &filter(ListStatus::OnSale)).await,
        [soon.id, festival.id]
    );
    assert_eq!(
        ids(store, &filter(ListStatus::All)).await,
        [soon.id, cancelled.id, festival.id]
    );
    // Later on, the first concert has started: only `all` still lists it.
    let later = ListFilter {
        now: START + Duration::hours(1),
        ..filter(ListStatus::Available)
    };
    assert_eq!(ids(store, &later).await, [festival.id]);

    let category = ListFilter {
        category: Some("FESTIVAL".to_owned()),
        ..filter(ListStatus::All)
    };
    assert_eq!(ids(store, &category).await, [festival.id]);
    let no_category = ListFilter {
        category: Some("fest".to_owned()),
        ..filter(ListStatus::All)
    };
    assert!(ids(store, &no_category).await.is_empty());

    // Both ends of the window are inclusive.
    let window = ListFilter {
        from: Some(START + Duration::hours(1)),
        to: Some(START + Duration::hours(5)),
        ..filter(ListStatus::All)
    };
    assert_eq!(ids(store, &window).await, [soon.id, cancelled.id]);
    let open_ended = ListFilter {
        from: Some(START + Duration::hours(5) + Duration::milliseconds(1)),
        ..filter(ListStatus::All)
    };
    assert_eq!(ids(store, &open_ended).await, [festival.id]);
    let everything = ListFilter {
        status: ListStatus::Available,
        category: Some("festival".to_owned()),
        from: Some(START),
        to: Some(START + Duration::hours(48)),
        search: SearchText::parse("FES").unwrap(),
        now: START,
    };
    assert_eq!(ids(store, &everything).await, [festival.id]);
}

async fn text_search_is_a_case_insensitive_substring_of_name_artist_or_venue(store: &CatalogStore) {
    let aurora = insert_synced(
        store,
        &new_concert(
            "Aurora World Tour",
            "Aurora",
            "Royal Albert Hall",
            1,
            &[("GA", 5)],
        ),
    )
    .await;
    insert_synced(
        store,
        &new_concert("Midnight Jazz", "The Quartet", "Blue Note", 2, &[("GA", 5)]),
    )
    .await;
    insert_synced(
        store,
        &new_concert("Rock Night", "Ünïcode Band", "Arena 100%", 3, &[("GA", 5)]),
    )
    .await;

    assert_eq!(search(store, "ROYAL").await, ["Aurora World Tour"]);
    assert_eq!(search(store, "bert h").await, ["Aurora World Tour"]);
    assert_eq!(search(store, "quART").await, ["Midnight Jazz"]);
    assert_eq!(
        search(store, "night").await,
        ["Midnight Jazz", "Rock Night"]
    );
    assert_eq!(search(store, "ünï").await, ["Rock Night"]);
    // Under three characters SQLite's trigram index cannot answer: LIKE does.
    assert_eq!(search(store, "zz").await, ["Midnight Jazz"]);
    assert_eq!(search(store, "NO").await, ["Midnight Jazz"]);
    assert_eq!(search(store, "a").await.len(), 3);
    assert!(search(store, "absent").await.is_empty());

    // The search follows renames.
    let change = ConcertChange {
        name: Some(Title::parse("Borealis").unwrap()),
        ..ConcertChange::default()
    };
    store
        .update_concert(aurora.id, &change, START)
        .await
        .unwrap();
    assert_eq!(search(store, "REALIS").await, ["Borealis"]);
    assert!(search(store, "world tour").await.is_empty());
    // The artist is unchanged and still found.
    assert_eq!(search(store, "aurora").await, ["Borealis"]);
}

async fn text_search_takes_wildcards_and_syntax_literally(store: &CatalogStore) {
    insert_synced(
        store,
        &new_concert("100% Live", "Band_One", "Hall_A", 1, &[("GA", 5)]),
    )
    .await;
    insert_synced(
        store,
        &new_concert("Back\\slash", "C:\\Music", "HallBA", 2, &[("GA", 5)]),
    )
    .await;
    insert_synced(
        store,
        &new_concert(
            "Plain \"quoted\" OR show*",
            "Anyone",
            "Hall",
            3,
            &[("GA", 5)],
        ),
    )
    .await;

    // `%` and `_` are characters, not wildcards, short or long.
    assert_eq!(search(store, "%").await, ["100% Live"]);
    assert_eq!(search(store, "0%").await, ["100% Live"]);
    assert_eq!(search(store, "100% l").await, ["100% Live"]);
    assert_eq!(search(store, "_").await, ["100% Live"]);
    assert_eq!(search(store, "L_A").await, ["100% Live"]);
    assert_eq!(search(store, "d_o").await, ["100% Live"]);
    assert!(search(store, "%%").await.is_empty());
    assert!(search(store, "1_0").await.is_empty());
    assert!(search(store, "h%a").await.is_empty());
    // So is the escape character.
    assert_eq!(search(store, "\\").await, ["Back\\slash"]);
    assert_eq!(search(store, "K\\S").await, ["Back\\slash"]);
    assert_eq!(search(store, ":\\m").await, ["Back\\slash"]);
    assert!(search(store, "\\%").await.is_empty());
    assert!(search(store, "\\_").await.is_empty());
    // And FTS or regular-expression syntax.
    assert_eq!(
        search(store, "\"quoted\" or").await,
        ["Plain \"quoted\" OR show*"]
    );
    assert_eq!(search(store, "w*").await, ["Plain \"quoted\" OR show*"]);
    assert!(search(store, "\"a OR b*").await.is_empty());
    assert!(search(store, "h.ll").await.is_empty());
    assert!(search(store, "Hall$").await.is_empty());
}

async fn keyset_pages_cover_every_concert_once_even_with_equal_start_times(store: &CatalogStore) {
    let mut expected = Vec::new();
    for i in 0..23 {
        // Only four distinct start times: ties are broken by id.
        let concert = new_concert(&format!("Show {i}"), "A", "V", 1 + i % 4, &[("GA", 10)]);
        expected.push(insert_synced(store, &concert).await);
    }
    // Rust orders UUIDs by their bytes, as both engines do.
    expected.sort_by_key(|record| (record.starts_at, record.id));

    let mut after = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store
            .list(&filter(ListStatus::Available), after, 5)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        pages += 1;
        for concert in &page {
            assert_eq!(concert.seat_types.len(), 1);
            seen.push(concert.id);
        }
    }
    assert_eq!(pages, 5);
    let all: Vec<Uuid> = expected.iter().map(|record| record.id).collect();
    assert_eq!(seen, all);

    // Pages of a filtered listing hold together too, with the cursor as clients carry it.
    let shows_1x = ListFilter {
        search: SearchText::parse("show 1").unwrap(),
        ..filter(ListStatus::All)
    };
    let first = store.list(&shows_1x, None, 6).await.unwrap();
    let cursor = Cursor::decode(&first.last().unwrap().cursor().encode()).unwrap();
    let rest = store.list(&shows_1x, Some(cursor), 6).await.unwrap();
    assert_eq!(first.len() + rest.len(), 11);
    let seen: Vec<Uuid> = first.iter().chain(&rest).map(|c| c.id).collect();
    let shows: Vec<Uuid> = expected
        .iter()
        .filter(|record| record.name.starts_with("Show 1"))
        .map(|record| record.id)
        .collect();
    assert_eq!(seen, shows);
}

async fn forged_cursors_outside_the_calendar_still_page(store: &CatalogStore) {
    let a = insert_synced(store, &new_concert("A", "A", "V", 1, &[("GA", 5)])).await;
    let b = insert_synced(store, &new_concert("B", "A", "V", 2, &[("GA", 5)])).await;
    let cursor = |starts_at_millis| {
        Some(Cursor {
            starts_at_millis,
            id: Uuid::nil(),
        })
    };
    let page = |after| async move {
        store
            .list(&filter(ListStatus::All), after, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(cursor(i64::MIN)).await, [a.id, b.id]);
    assert_eq!(page(cursor(-1)).await, [a.id, b.id]);
    assert_eq!(
        page(cursor(a.cursor().starts_at_millis)).await,
        [a.id, b.id]
    );
    assert_eq!(page(Some(a.cursor())).await, [b.id]);
    assert!(page(cursor(i64::MAX)).await.is_empty());
}

/// The two engines, given the same calls, hand back the same records and the same cursors, so
/// a deployment could move from one to the other without breaking a client's cursor.
#[tokio::test]
async fn both_engines_return_identical_records_and_cursors() {
    let Some(postgres) = Backend::new(
        Kind::Postgres,
        "store::tests::both_engines_return_identical_records_and_cursors",
    )
    .await
    else {
        return;
    };
    let sqlite = Backend::new(Kind::Sqlite, "").await.unwrap();
    let stores = [&sqlite.store, &postgres.store];

    for i in 0..17_i64 {
        let mut concert = new_concert(
            &format!("Show {i}"),
            "Artist",
            if i % 2 == 0 { "Hall" } else { "Arena" },
            1 + i % 3,
            &[("GA", 10), ("VIP", 2)],
        );
        // Sub-millisecond parts, which both engines must drop the same way.
        concert.starts_at = FutureStart::parse(
            concert.starts_at.get() + Duration::microseconds(i * 1_234),
            START,
        )
        .unwrap();
        let id = Uuid::now_v7();
        let seat_ids = [Uuid::now_v7(), Uuid::now_v7()];
        let now = START + Duration::nanoseconds(i * 987_654);
        let mut records = Vec::new();
        for store in stores {
            let record = store
                .insert_concert(id, &concert, &seat_ids, now)
                .await
                .unwrap();
            if i % 5 != 0 {
                assert!(store.mark_synced(id, 1).await.unwrap());
            }
            records.push(record);
        }
        assert_eq!(records[0], records[1]);
    }

    let arena = ListFilter {
        search: SearchText::parse("aRe").unwrap(),
        ..filter(ListStatus::All)
    };
    for filter in [filter(ListStatus::Available), arena] {
        let mut cursors = [None, None];
        loop {
            let mut pages = Vec::new();
            for (store, after) in stores.iter().zip(cursors) {
                pages.push(store.list(&filter, after, 4).await.unwrap());
            }
            assert_eq!(pages[0], pages[1]);
            let Some(last) = pages[0].last() else { break };
            // Each engine continues from its own cursor, which is also the other's.
            cursors = [
                Some(last.cursor()),
                pages[1].last().map(ConcertRecord::cursor),
            ];
            assert_eq!(cursors[0], cursors[1]);
        }
    }
    assert_eq!(
        sqlite.store.unsynced(100).await.unwrap(),
        postgres.store.unsynced(100).await.unwrap()
    );
    sqlite.finish().await;
    postgres.finish().await;
}

#[tokio::test]
async fn the_trigram_index_exists_only_where_pg_trgm_could_be_created() {
    let test = "store::tests::the_trigram_index_exists_only_where_pg_trgm_could_be_created";
    let Some(with) = Backend::new(Kind::Postgres, test).await else {
        return;
    };
    assert!(with.has_trigram_index().await);
    with.finish().await;
    let without = Backend::new(Kind::PostgresWithoutPgTrgm, test)
        .await
        .unwrap();
    assert!(!without.has_trigram_index().await);
    without.finish().await;
}

/// The trigram index matches the shape of the search condition, so PostgreSQL can use it.
#[tokio::test]
async fn postgres_answers_text_search_from_the_trigram_index() {
    let Some(backend) = Backend::new(
        Kind::Postgres,
        "store::tests::postgres_answers_text_search_from_the_trigram_index",
    )
    .await
    else {
        return;
    };
    let Store::Postgres(db) = &backend.store.db else {
        unreachable!()
    };
    let filter = ListFilter {
        search: SearchText::parse("albert").unwrap(),
        ..filter(ListStatus::All)
    };
    let sql = format!(
        "EXPLAIN {}",
        list_query::<sqlx::Postgres>(&filter, None, 20)
            .sql()
            .as_str()
    );
    let pattern = "%albert%";
    let mut conn = db.pool.acquire().await.unwrap();
    // An empty table is best scanned: forbid that, and walking the listing-order index.
    sqlx::raw_sql("SET enable_seqscan = off; SET enable_indexscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(pattern)
        .bind(pattern)
        .bind(pattern)
        .bind(20_i64)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("concerts_text_trgm"), "{plan}");
    drop(conn);
    backend.finish().await;
}

#[test]
fn postgres_binds_milliseconds_within_the_calendar() {
    use time::macros::datetime;
    assert_eq!(pg_millis(MIN_MILLIS), datetime!(0000-01-01 0:00 UTC));
    assert_eq!(pg_millis(i64::MIN), datetime!(0000-01-01 0:00 UTC));
    assert_eq!(
        pg_millis(MAX_MILLIS),
        datetime!(9999-12-31 23:59:59.999 UTC)
    );
    assert_eq!(pg_millis(i64::MAX), datetime!(9999-12-31 23:59:59.999 UTC));
    let at = datetime!(2030-05-01 19:30:00.123_456 UTC);
    assert_eq!(pg_instant(at), datetime!(2030-05-01 19:30:00.123 UTC));
}
