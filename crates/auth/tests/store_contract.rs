//! The Auth store's contract, run against every engine.
//!
//! Each test below is a plain `async fn(&AuthStore)`; the [`contract!`] macro turns it into two
//! `#[tokio::test]`s, `sqlite::name` (a fresh file in a temporary directory) and `postgres::name`
//! (a fresh database from [`TestDatabase`], working in the `auth` schema). The PostgreSQL variant
//! passes without running when no server answers, after saying SKIPPED on stderr.
//! One more test, PostgreSQL only, checks that everything lands in the `auth` schema.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use boxoffice_auth::AuthError;
use boxoffice_auth::store::{AuthStore, NewUser, RefreshOutcome, UserFilter};
use boxoffice_shared::db::{PgStore, SqliteStore, Store};
use boxoffice_shared::pgtest::TestDatabase;
use boxoffice_shared::token::Role;
use sqlx::Connection;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Runs each named test against both engines.
macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let dir = tempfile::tempdir().expect("a temporary directory");
                    let db = super::SqliteStore::open(&dir.path().join("auth.db"), 4)
                        .await
                        .expect("the SQLite store opens");
                    super::run(db, super::$test).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some(test_db) = super::TestDatabase::create(stringify!($test)).await else {
                        return;
                    };
                    let db = super::PgStore::connect(&test_db.url, "auth", 5)
                        .await
                        .expect("the PostgreSQL store connects");
                    super::run(db, super::$test).await;
                    // The pool is closed by `run` before the database is dropped.
                    drop(test_db);
                }
            )*
        }
    };
}

contract!(
    users_are_found_by_id_email_and_phone,
    instants_read_back_to_the_millisecond,
    a_taken_email_or_phone_is_a_conflict,
    profiles_change_and_phones_can_be_removed,
    a_phone_taken_by_someone_else_is_a_conflict_on_update,
    upsert_creates_then_updates,
    a_live_token_rotates_and_its_successor_works,
    a_spent_token_is_reuse_and_revokes_the_session,
    unknown_expired_and_revoked_tokens_are_invalid,
    concurrent_exchanges_of_one_token_rotate_once,
    logout_revokes_and_is_listed_since,
    load_test_accounts_are_inserted_with_sessions,
    emails_stored_before_the_current_normal_form_are_rewritten_in_it,
    roles_change_and_a_demotion_revokes_every_live_session,
    users_are_listed_newest_first_by_search_and_role,
);

/// Migrates a store on `db`, runs `test` on it, and closes it.
async fn run<F>(db: impl Into<Store>, test: F)
where
    F: AsyncFnOnce(&AuthStore),
{
    let store = AuthStore::new(db);
    store.migrate().await.expect("migrations run");
    // Running them again is a no-op (every start migrates).
    store.migrate().await.expect("migrations run twice");
    test(&store).await;
    store.close().await;
}

const T0: OffsetDateTime = datetime!(2027-03-01 10:00:00.123 UTC);

fn new_user<'a>(email: &'a str, phone: Option<&'a str>) -> NewUser<'a> {
    NewUser {
        id: Uuid::now_v7(),
        email,
        phone,
        full_name: "Ada Lovelace",
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        role: Role::Customer,
    }
}

/// A random stand-in for the SHA-256 of a refresh token.
fn token_hash() -> [u8; 32] {
    let mut hash = [0; 32];
    hash[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    hash[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    hash
}

/// A user with a session whose first refresh token (returned) expires an hour after `T0`.
async fn user_with_session(store: &AuthStore, email: &str) -> (Uuid, Uuid, [u8; 32]) {
    let user = store
        .insert_user(&new_user(email, None), T0)
        .await
        .expect("the user is inserted");
    let session = Uuid::now_v7();
    let token = token_hash();
    store
        .create_session(session, user.id, &token, T0, T0 + Duration::hours(1))
        .await
        .expect("the session is created");
    (user.id, session, token)
}

async fn session_is_revoked(store: &AuthStore, session: Uuid) -> bool {
    store
        .sessions_revoked_since(OffsetDateTime::UNIX_EPOCH)
        .await
        .expect("revoked sessions are listed")
        .iter()
        .any(|(id, _)| *id == session)
}

async fn users_are_found_by_id_email_and_phone(store: &AuthStore) {
    let new = new_user("ada@example.com", Some("+84901234567"));
    let inserted = store.insert_user(&new, T0).await.expect("inserted");
    assert_eq!(inserted.id, new.id);

    for found in [
        store.user_by_id(new.id).await.expect("by id"),
        store
            .user_by_email("ada@example.com")
            .await
            .expect("by email"),
        store.user_by_phone("+84901234567").await.expect("by phone"),
    ] {
        let found = found.expect("the user is found");
        assert_eq!(found.id, new.id);
        assert_eq!(found.email, "ada@example.com");
        assert_eq!(found.phone.as_deref(), Some("+84901234567"));
        assert_eq!(found.full_name, "Ada Lovelace");
        assert_eq!(found.password_hash, new.password_hash);
        assert_eq!(found.role, Role::Customer);
        assert_eq!(found.created_at, T0);
    }

    assert!(
        store
            .user_by_id(Uuid::now_v7())
            .await
            .expect("by id")
            .is_none()
    );
    assert!(
        store
            .user_by_email("bob@example.com")
            .await
            .expect("by email")
            .is_none()
    );
    assert!(
        store
            .user_by_phone("+84900000000")
            .await
            .expect("by phone")
            .is_none()
    );
}

async fn instants_read_back_to_the_millisecond(store: &AuthStore) {
    let now = datetime!(2027-03-01 10:00:00.123_456_789 UTC);
    let inserted = store
        .insert_user(&new_user("ada@example.com", None), now)
        .await
        .expect("inserted");
    let expected = datetime!(2027-03-01 10:00:00.123 UTC);
    assert_eq!(inserted.created_at, expected);
    let found = store
        .user_by_id(inserted.id)
        .await
        .expect("by id")
        .expect("found");
    assert_eq!(found.created_at, expected);
    assert_eq!(found.created_at.offset(), time::UtcOffset::UTC);
}

async fn a_taken_email_or_phone_is_a_conflict(store: &AuthStore) {
    store
        .insert_user(&new_user("ada@example.com", Some("+84901234567")), T0)
        .await
        .expect("inserted");

    let same_email = store
        .insert_user(&new_user("ada@example.com", Some("+84907654321")), T0)
        .await;
    assert!(
        matches!(same_email, Err(AuthError::EmailTaken)),
        "{same_email:?}"
    );

    let same_phone = store
        .insert_user(&new_user("bob@example.com", Some("+84901234567")), T0)
        .await;
    assert!(
        matches!(same_phone, Err(AuthError::PhoneTaken)),
        "{same_phone:?}"
    );

    // Several accounts without a phone are fine: NULLs are distinct.
    store
        .insert_user(&new_user("bob@example.com", None), T0)
        .await
        .expect("no phone");
    store
        .insert_user(&new_user("eve@example.com", None), T0)
        .await
        .expect("no phone either");
}

async fn profiles_change_and_phones_can_be_removed(store: &AuthStore) {
    let user = store
        .insert_user(&new_user("ada@example.com", None), T0)
        .await
        .expect("inserted");
    let later = T0 + Duration::minutes(5);

    let renamed = store
        .update_profile(user.id, Some("Ada King"), None, later)
        .await
        .expect("updated")
        .expect("the user exists");
    assert_eq!(renamed.full_name, "Ada King");
    assert_eq!(renamed.phone, None);
    assert_eq!(renamed.created_at, T0);

    let with_phone = store
        .update_profile(user.id, None, Some(Some("+84901234567")), later)
        .await
        .expect("updated")
        .expect("the user exists");
    assert_eq!(with_phone.full_name, "Ada King", "the name is kept");
    assert_eq!(with_phone.phone.as_deref(), Some("+84901234567"));
    assert!(
        store
            .user_by_phone("+84901234567")
            .await
            .expect("by phone")
            .is_some()
    );

    let without_phone = store
        .update_profile(user.id, None, Some(None), later)
        .await
        .expect("updated")
        .expect("the user exists");
    assert_eq!(without_phone.phone, None);
    assert!(
        store
            .user_by_phone("+84901234567")
            .await
            .expect("by phone")
            .is_none()
    );

    let nobody = store
        .update_profile(Uuid::now_v7(), Some("Nobody"), None, later)
        .await
        .expect("no error");
    assert!(nobody.is_none());
}

async fn a_phone_taken_by_someone_else_is_a_conflict_on_update(store: &AuthStore) {
    store
        .insert_user(&new_user("ada@example.com", Some("+84901234567")), T0)
        .await
        .expect("inserted");
    let bob = store
        .insert_user(&new_user("bob@example.com", None), T0)
        .await
        .expect("inserted");
    let taken = store
        .update_profile(bob.id, None, Some(Some("+84901234567")), T0)
        .await;
    assert!(matches!(taken, Err(AuthError::PhoneTaken)), "{taken:?}");
    let bob = store
        .user_by_id(bob.id)
        .await
        .expect("by id")
        .expect("found");
    assert_eq!(bob.phone, None, "the failed update changed nothing");
}

async fn upsert_creates_then_updates(store: &AuthStore) {
    let first = NewUser {
        role: Role::Admin,
        ..new_user("admin@example.com", None)
    };
    let created = store.upsert_account(&first, T0).await.expect("created");
    assert_eq!(created.id, first.id);
    assert_eq!(created.role, Role::Admin);
    assert_eq!(created.created_at, T0);

    let second = NewUser {
        password_hash: "$argon2id$other",
        role: Role::Customer,
        full_name: "Another Name",
        ..new_user("admin@example.com", None)
    };
    let updated = store
        .upsert_account(&second, T0 + Duration::days(1))
        .await
        .expect("updated");
    assert_eq!(updated.id, first.id, "the existing account is kept");
    assert_eq!(updated.password_hash, "$argon2id$other");
    assert_eq!(updated.role, Role::Customer);
    assert_eq!(
        updated.full_name, "Ada Lovelace",
        "only hash and role change"
    );
    assert_eq!(updated.created_at, T0);
    let found = store
        .user_by_email("admin@example.com")
        .await
        .expect("by email")
        .expect("found");
    assert_eq!(found.password_hash, "$argon2id$other");
}

async fn a_live_token_rotates_and_its_successor_works(store: &AuthStore) {
    let (user_id, session, token) = user_with_session(store, "ada@example.com").await;
    let successor = token_hash();
    let now = T0 + Duration::minutes(10);

    let (outcome, from) = store
        .rotate_refresh_token(&token, &successor, now, now + Duration::hours(1))
        .await
        .expect("rotated");
    assert!(
        matches!(outcome, RefreshOutcome::Rotated { user_id: u, role: Role::Customer } if u == user_id),
        "{outcome:?}"
    );
    assert_eq!(from, session);

    let third = token_hash();
    let (outcome, from) = store
        .rotate_refresh_token(&successor, &third, now, now + Duration::hours(1))
        .await
        .expect("rotated");
    assert!(
        matches!(outcome, RefreshOutcome::Rotated { .. }),
        "{outcome:?}"
    );
    assert_eq!(from, session);
    assert!(!session_is_revoked(store, session).await);
}

async fn a_spent_token_is_reuse_and_revokes_the_session(store: &AuthStore) {
    let (_, session, token) = user_with_session(store, "ada@example.com").await;
    let successor = token_hash();
    let now = T0 + Duration::minutes(10);
    store
        .rotate_refresh_token(&token, &successor, now, now + Duration::hours(1))
        .await
        .expect("rotated");

    let (outcome, from) = store
        .rotate_refresh_token(&token, &token_hash(), now, now + Duration::hours(1))
        .await
        .expect("no error");
    assert!(
        matches!(outcome, RefreshOutcome::Reused { session_id } if session_id == session),
        "{outcome:?}"
    );
    assert_eq!(from, session);
    let revoked = store
        .sessions_revoked_since(T0)
        .await
        .expect("revoked sessions");
    assert_eq!(revoked, vec![(session, now)]);

    // The successor dies with its session.
    let (outcome, _) = store
        .rotate_refresh_token(&successor, &token_hash(), now, now + Duration::hours(1))
        .await
        .expect("no error");
    assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
}

async fn unknown_expired_and_revoked_tokens_are_invalid(store: &AuthStore) {
    let now = T0 + Duration::minutes(10);
    let (outcome, from) = store
        .rotate_refresh_token(&token_hash(), &token_hash(), now, now + Duration::hours(1))
        .await
        .expect("no error");
    assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
    assert_eq!(from, Uuid::nil());

    // Expired: the token lived until T0 + 1h.
    let (_, session, token) = user_with_session(store, "ada@example.com").await;
    let late = T0 + Duration::hours(1);
    let (outcome, from) = store
        .rotate_refresh_token(&token, &token_hash(), late, late + Duration::hours(1))
        .await
        .expect("no error");
    assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
    assert_eq!(from, session);
    assert!(
        !session_is_revoked(store, session).await,
        "expiry is not reuse"
    );

    // Revoked by logout: invalid, and the token is not spent (so it never counts as reuse).
    let (_, session, token) = user_with_session(store, "bob@example.com").await;
    store.revoke_session(session, now).await.expect("revoked");
    for _ in 0..2 {
        let (outcome, from) = store
            .rotate_refresh_token(&token, &token_hash(), now, now + Duration::hours(1))
            .await
            .expect("no error");
        assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
        assert_eq!(from, session);
    }
}

async fn concurrent_exchanges_of_one_token_rotate_once(store: &AuthStore) {
    let (_, session, token) = user_with_session(store, "ada@example.com").await;
    let now = T0 + Duration::minutes(10);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .rotate_refresh_token(&token, &token_hash(), now, now + Duration::hours(1))
                    .await
            })
        })
        .collect();
    let mut rotated = 0;
    let mut reused = 0;
    for task in tasks {
        let (outcome, from) = task.await.expect("the task ran").expect("no error");
        assert_eq!(from, session);
        match outcome {
            RefreshOutcome::Rotated { .. } => rotated += 1,
            RefreshOutcome::Reused { session_id } => {
                assert_eq!(session_id, session);
                reused += 1;
            }
            RefreshOutcome::Invalid => {}
        }
    }
    assert_eq!(rotated, 1, "exactly one exchange rotates");
    // Every later exchange found the token spent: that is reuse, and the session is over.
    assert_eq!(reused, 9);
    assert!(session_is_revoked(store, session).await);
}

async fn logout_revokes_and_is_listed_since(store: &AuthStore) {
    let (_, early, _) = user_with_session(store, "ada@example.com").await;
    let (_, late, late_token) = user_with_session(store, "bob@example.com").await;
    let (_, live, _) = user_with_session(store, "eve@example.com").await;

    let t1 = T0 + Duration::minutes(1);
    let t2 = datetime!(2027-03-01 10:05:00.456_789 UTC);
    store.revoke_session(early, t1).await.expect("revoked");
    store.revoke_session(late, t2).await.expect("revoked");
    // Idempotent: a second logout keeps the first instant.
    store
        .revoke_session(late, t2 + Duration::minutes(1))
        .await
        .expect("revoked again");
    // Unknown sessions are fine too.
    store
        .revoke_session(Uuid::now_v7(), t2)
        .await
        .expect("nothing to revoke");

    let t2_ms = datetime!(2027-03-01 10:05:00.456 UTC);
    let mut all = store.sessions_revoked_since(T0).await.expect("listed");
    all.sort();
    let mut expected = vec![(early, t1), (late, t2_ms)];
    expected.sort();
    assert_eq!(all, expected);
    assert!(!all.iter().any(|(id, _)| *id == live));

    // `since` is inclusive.
    let recent = store.sessions_revoked_since(t2_ms).await.expect("listed");
    assert_eq!(recent, vec![(late, t2_ms)]);
    let none = store
        .sessions_revoked_since(t2_ms + Duration::milliseconds(1))
        .await
        .expect("listed");
    assert!(none.is_empty());

    let (outcome, _) = store
        .rotate_refresh_token(&late_token, &token_hash(), t2, t2 + Duration::hours(1))
        .await
        .expect("no error");
    assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
}

async fn emails_stored_before_the_current_normal_form_are_rewritten_in_it(store: &AuthStore) {
    // Spellings the earlier rules (trim and lower-case only) stored as they came.
    let legacy = [
        ("ada@b\u{fc}cher.example", "ada@xn--bcher-kva.example"), // Unicode domain
        ("jose\u{301}@example.com", "jos\u{e9}@example.com"),     // NFD
        ("\u{ff4b}im@example.com", "kim@example.com"),            // fullwidth
    ];
    let mut ids = Vec::new();
    for (stored, _) in legacy {
        ids.push(
            store
                .insert_user(&new_user(stored, None), T0)
                .await
                .unwrap()
                .id,
        );
    }
    // ASCII: untouched. NFC already, but a Unicode domain: rewritten.
    let ascii = store
        .insert_user(&new_user("plain@example.com", None), T0)
        .await
        .unwrap();
    let nfc = new_user("jos\u{e9}@b\u{fc}cher.example", None);
    let normal = store.insert_user(&nfc, T0).await.unwrap();
    // Two legacy spellings of one address: the second cannot take the first's normal form.
    let twin = store
        .insert_user(&new_user("k\u{ff49}m@example.com", None), T0)
        .await
        .unwrap();
    // Refused by today's rules (a zero-width space): kept, as nothing better can be chosen.
    let invisible = "zw\u{200b}@example.com";
    let refused = store
        .insert_user(&new_user(invisible, None), T0)
        .await
        .unwrap();

    let rewritten = store
        .renormalize_emails(T0 + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(
        rewritten, 4,
        "the three legacy spellings and the NFC one with a Unicode domain"
    );
    for ((_, normal_form), id) in legacy.iter().zip(&ids) {
        let found = store.user_by_email(normal_form).await.unwrap();
        assert_eq!(found.map(|user| user.id), Some(*id), "{normal_form}");
    }
    let found = store
        .user_by_email("plain@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, ascii.id);
    let found = store
        .user_by_email("jos\u{e9}@xn--bcher-kva.example")
        .await
        .unwrap();
    assert_eq!(found.map(|user| user.id), Some(normal.id));
    let found = store.user_by_id(twin.id).await.unwrap().unwrap();
    assert_eq!(found.email, "k\u{ff49}m@example.com");
    let found = store.user_by_id(refused.id).await.unwrap().unwrap();
    assert_eq!(found.email, invisible);
    // Every start runs it: the second run finds nothing left to do.
    assert_eq!(store.renormalize_emails(T0).await.unwrap(), 0);
}

async fn load_test_accounts_are_inserted_with_sessions(store: &AuthStore) {
    // More than one SQLite chunk of 1000.
    let accounts: Vec<(Uuid, String, Uuid)> = (0..10_000)
        .map(|i| {
            (
                Uuid::now_v7(),
                format!("load-{i}@loadtest.invalid"),
                Uuid::now_v7(),
            )
        })
        .collect();
    store
        .insert_load_test_accounts(&accounts, "$argon2id$shared", T0)
        .await
        .expect("inserted");

    for (id, email, session) in [&accounts[0], &accounts[4_321], &accounts[9_999]] {
        let user = store
            .user_by_email(email)
            .await
            .expect("by email")
            .expect("found");
        assert_eq!(user.id, *id);
        assert_eq!(user.full_name, "Load Test");
        assert_eq!(user.password_hash, "$argon2id$shared");
        assert_eq!(user.role, Role::Customer);
        assert_eq!(user.phone, None);
        assert_eq!(user.created_at, T0);
        // The session exists: logging it out lists it.
        store.revoke_session(*session, T0).await.expect("revoked");
        assert!(session_is_revoked(store, *session).await);
    }
    let revoked: HashSet<Uuid> = store
        .sessions_revoked_since(T0)
        .await
        .expect("listed")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(revoked.len(), 3);

    // The batch is one transaction: a clash leaves nothing behind.
    let clash = vec![
        (
            Uuid::now_v7(),
            "fresh@loadtest.invalid".to_owned(),
            Uuid::now_v7(),
        ),
        (Uuid::now_v7(), accounts[0].1.clone(), Uuid::now_v7()),
    ];
    let result = store
        .insert_load_test_accounts(&clash, "$argon2id$shared", T0)
        .await;
    assert!(matches!(result, Err(AuthError::EmailTaken)), "{result:?}");
    assert!(
        store
            .user_by_email("fresh@loadtest.invalid")
            .await
            .expect("by email")
            .is_none()
    );
}

async fn roles_change_and_a_demotion_revokes_every_live_session(store: &AuthStore) {
    let (user, first, first_token) = user_with_session(store, "ada@example.com").await;
    let second = Uuid::now_v7();
    let second_token = token_hash();
    store
        .create_session(second, user, &second_token, T0, T0 + Duration::hours(1))
        .await
        .unwrap();
    let (other, other_session, _) = user_with_session(store, "bob@example.com").await;
    let t1 = T0 + Duration::minutes(1);

    // A promotion revokes nothing when told not to.
    let (promoted, revoked) = store
        .set_role(user, Role::Staff, |old| old != Role::Customer, t1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(promoted.role, Role::Staff);
    assert!(revoked.is_empty());
    assert_eq!(
        store.user_by_id(user).await.unwrap().unwrap().role,
        Role::Staff
    );
    // The refresh token's exchange carries the new role.
    let successor = token_hash();
    let (outcome, _) = store
        .rotate_refresh_token(&first_token, &successor, t1, t1 + Duration::hours(1))
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            RefreshOutcome::Rotated {
                role: Role::Staff,
                ..
            }
        ),
        "{outcome:?}"
    );

    // A demotion revokes both live sessions of the user, and no one else's.
    let t2 = T0 + Duration::minutes(2);
    let (demoted, mut revoked) = store
        .set_role(user, Role::Customer, |old| old == Role::Staff, t2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(demoted.role, Role::Customer);
    revoked.sort();
    let mut both = vec![first, second];
    both.sort();
    assert_eq!(revoked, both);
    assert!(session_is_revoked(store, first).await);
    assert!(session_is_revoked(store, second).await);
    assert!(!session_is_revoked(store, other_session).await);
    let (outcome, _) = store
        .rotate_refresh_token(&second_token, &token_hash(), t2, t2 + Duration::hours(1))
        .await
        .unwrap();
    assert!(matches!(outcome, RefreshOutcome::Invalid), "{outcome:?}");
    assert_eq!(
        store.user_by_id(other).await.unwrap().unwrap().role,
        Role::Customer
    );

    // An unknown user is not found, and nothing changes.
    assert!(
        store
            .set_role(Uuid::now_v7(), Role::Admin, |_| true, t2)
            .await
            .unwrap()
            .is_none()
    );
}

async fn users_are_listed_newest_first_by_search_and_role(store: &AuthStore) {
    let mut ids = Vec::new();
    for (email, name) in [
        ("ada@example.com", "Ada Lovelace"),
        ("grace@example.com", "Grace Hopper"),
        ("100%@example.com", "Percent Person"),
        ("alan@example.org", "Alan Turing"),
    ] {
        let mut user = new_user(email, None);
        user.full_name = name;
        ids.push(store.insert_user(&user, T0).await.unwrap().id);
    }
    store
        .set_role(ids[1], Role::Staff, |_| false, T0)
        .await
        .unwrap();
    let emails = async |filter: UserFilter, before: Option<Uuid>, limit: u32| -> Vec<String> {
        store
            .list_users(&filter, before, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|user| user.email)
            .collect()
    };
    let all = UserFilter::default();
    assert_eq!(
        emails(all.clone(), None, 10).await,
        [
            "alan@example.org",
            "100%@example.com",
            "grace@example.com",
            "ada@example.com"
        ]
    );
    // Pages: after the second user of the first page.
    assert_eq!(
        emails(all.clone(), Some(ids[2]), 10).await,
        ["grace@example.com", "ada@example.com"]
    );
    assert_eq!(emails(all.clone(), None, 1).await, ["alan@example.org"]);
    // A part of the email or the name, lower-cased by the caller; wildcards are literal.
    let search = |text: &str| UserFilter {
        search: Some(text.to_owned()),
        role: None,
    };
    assert_eq!(
        emails(search("hopper"), None, 10).await,
        ["grace@example.com"]
    );
    assert_eq!(
        emails(search("example.org"), None, 10).await,
        ["alan@example.org"]
    );
    assert_eq!(emails(search("%"), None, 10).await, ["100%@example.com"]);
    assert_eq!(emails(search("a_a"), None, 10).await, Vec::<String>::new());
    let staff = UserFilter {
        search: None,
        role: Some(Role::Staff),
    };
    assert_eq!(emails(staff, None, 10).await, ["grace@example.com"]);
}

/// SQLite only: a store of the first release (users, sessions and refresh tokens, before the
/// `staff` role) keeps every row through the migration that rebuilds `users` and `sessions`,
/// whose foreign keys would otherwise cascade the drop of `users` onto every session.
#[tokio::test]
async fn sqlite_sessions_survive_the_migration_that_adds_staff() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.db");
    let db = SqliteStore::open(&path, 2).await.unwrap();
    let first = tempfile::tempdir().unwrap();
    std::fs::write(
        first.path().join("0001_auth.sql"),
        include_str!("../migrations/sqlite/0001_auth.sql"),
    )
    .unwrap();
    sqlx::migrate::Migrator::new(first.path())
        .await
        .unwrap()
        .run(&db.write)
        .await
        .unwrap();
    let store = AuthStore::new(db);
    let (user, session, token) = user_with_session(&store, "ada@example.com").await;
    store.close().await;

    let db = SqliteStore::open(&path, 2).await.unwrap();
    let store = AuthStore::new(db.clone());
    store.migrate().await.unwrap();
    assert_eq!(
        store.user_by_id(user).await.unwrap().unwrap().email,
        "ada@example.com"
    );
    let (outcome, from) = store
        .rotate_refresh_token(&token, &token_hash(), T0, T0 + Duration::hours(1))
        .await
        .unwrap();
    assert!(
        matches!(outcome, RefreshOutcome::Rotated { .. }),
        "{outcome:?}"
    );
    assert_eq!(from, session);
    let (staff, _) = store
        .set_role(user, Role::Staff, |_| false, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(staff.role, Role::Staff);
    // Foreign keys are enforced again after the migration.
    let orphan = sqlx::query("INSERT INTO sessions (id, user_id, created_at) VALUES (?, ?, 0)")
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .execute(&db.write)
        .await;
    assert!(orphan.is_err(), "a session of no user is refused");
    store.close().await;
}

/// PostgreSQL only: the tables and the migration history live in the `auth` schema, so that the
/// services' schemas can share one database without seeing each other's tables or migrations.
#[tokio::test]
async fn postgres_tables_and_migrations_live_in_the_auth_schema() {
    let Some(test_db) =
        TestDatabase::create("postgres_tables_and_migrations_live_in_the_auth_schema").await
    else {
        return;
    };
    let db = PgStore::connect(&test_db.url, "auth", 2)
        .await
        .expect("the PostgreSQL store connects");
    let pool = db.pool.clone();
    run(db, async |_: &AuthStore| {}).await;

    let mut check = sqlx::PgConnection::connect(&test_db.url)
        .await
        .expect("a plain connection");
    let mut tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&mut check)
    .await
    .expect("tables are listed");
    tables.sort();
    let expected: Vec<(String, String)> =
        ["_sqlx_migrations", "refresh_tokens", "sessions", "users"]
            .into_iter()
            .map(|table| ("auth".to_owned(), table.to_owned()))
            .collect();
    assert_eq!(tables, expected);
    check.close().await.expect("closed");
    assert!(pool.is_closed(), "closing the store closes its pool");
    drop(test_db);
}
