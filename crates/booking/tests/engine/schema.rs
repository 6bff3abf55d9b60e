//! The schema alone refuses what the engine never attempts: raw SQL on a connection of its
//! own cannot oversell, book twice, book late or book early.

use crate::*;

on_every_backend! {
    /// Raw SQL on a connection of its own, past the engine: the schema alone refuses what the
    /// engine never attempts.
    async fn the_database_itself_refuses_an_oversell_a_duplicate_a_late_and_an_early_booking(
        backend: Backend
    ) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[1, 2]).await;
        let user = customer();
        created(
            engine
                .service
                .book(user, concert_id, seats[0], None)
                .await
                .unwrap(),
        );
        match &backend {
            Backend::Sqlite => refused_by_sqlite(&engine, concert_id, &seats, user).await,
            Backend::Postgres(database) => {
                refused_by_postgres(&engine, &database.url, concert_id, &seats, user).await;
            }
        }
        assert_eq!(counts(&engine, seats[0]).await, (1, 0, 1));
    }
}

async fn refused_by_sqlite(engine: &Engine, concert_id: Uuid, seats: &[Uuid], user: AuthUser) {
    let Store::Sqlite(db) = &engine.store else {
        unreachable!("a SQLite engine")
    };
    let insert = "INSERT INTO bookings (id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at)
                  VALUES (?, ?, ?, ?, 'confirmed', 0, 'USD', ?)";
    let now = boxoffice_shared::clock::to_millis(OffsetDateTime::now_utc());
    // The read pool is read-only; open a writer of our own to try the raw SQL.
    let oversell = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&db.read)
        .await;
    assert!(oversell.is_err());
    let mut conn = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&db.path),
    )
    .await
    .unwrap();
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut conn)
        .await
        .unwrap();
    let oversell = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        oversell.to_string().contains("remaining_within_capacity"),
        "{oversell}"
    );
    let duplicate = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(user.user_id)
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        duplicate.to_string().contains("UNIQUE") || duplicate.to_string().contains("remaining"),
        "{duplicate}"
    );
    let late = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[0])
        .bind(boxoffice_shared::clock::to_millis(
            in_a_day() + time::Duration::days(1),
        ))
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(late.to_string().contains("booking_closed"), "{late}");
    sqlx::query("UPDATE sales SET sales_open_at = ? WHERE concert_id = ?")
        .bind(now + 60_000)
        .bind(concert_id)
        .execute(&mut conn)
        .await
        .unwrap();
    let early = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[1])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(early.to_string().contains("sales_not_open"), "{early}");
}

async fn refused_by_postgres(
    engine: &Engine,
    url: &str,
    concert_id: Uuid,
    seats: &[Uuid],
    user: AuthUser,
) {
    let options = boxoffice_shared::db::pg_options(url, "booking").unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let insert = "INSERT INTO bookings (id, user_id, concert_id, seat_type_id, status, price_cents, currency, created_at)
                  VALUES ($1, $2, $3, $4, 'confirmed', 0, 'USD', $5)";
    let now = OffsetDateTime::now_utc();
    let oversell = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        oversell.to_string().contains("remaining_within_capacity"),
        "{oversell}"
    );
    let duplicate = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(user.user_id)
        .bind(concert_id)
        .bind(seats[0])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        duplicate
            .to_string()
            .contains("one_confirmed_booking_per_user_and_concert"),
        "{duplicate}"
    );
    let late = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[1])
        .bind(in_a_day() + time::Duration::days(1))
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(late.to_string().contains("booking_closed"), "{late}");
    let on_sale = "UPDATE sales SET sales_open_at = $1 WHERE concert_id = $2";
    sqlx::query(on_sale)
        .bind(now + time::Duration::minutes(1))
        .bind(concert_id)
        .execute(&mut conn)
        .await
        .unwrap();
    let early = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(concert_id)
        .bind(seats[1])
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(early.to_string().contains("sales_not_open"), "{early}");
    sqlx::query(on_sale)
        .bind(None::<OffsetDateTime>)
        .bind(concert_id)
        .execute(&mut conn)
        .await
        .unwrap();

    // Bookings are cancelled, never deleted, and a cancellation is final.
    let other = customer();
    let booking = created(
        engine
            .service
            .book(other, concert_id, seats[1], None)
            .await
            .unwrap(),
    );
    engine.service.cancel(other, booking.id).await.unwrap();
    assert_eq!(counts(engine, seats[1]).await, (2, 2, 0));
    let deleted = sqlx::query("DELETE FROM bookings WHERE id = $1")
        .bind(booking.id)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(deleted.to_string().contains("never deleted"), "{deleted}");
    // CASCADE: the outbox's reference to bookings would refuse a plain TRUNCATE on its own.
    // TRUNCATE locks every table the cascade reaches before the trigger can refuse, so it can
    // deadlock with the engine's own outbox relay or refund worker; PostgreSQL then rolls it
    // back, which truncates nothing either, and the statement is asked again.
    let truncated = loop {
        let refused = sqlx::query("TRUNCATE bookings CASCADE")
            .execute(&mut conn)
            .await
            .unwrap_err();
        if !refused.to_string().contains("deadlock detected") {
            break refused;
        }
    };
    assert!(
        truncated.to_string().contains("never deleted"),
        "{truncated}"
    );
    let revived =
        sqlx::query("UPDATE bookings SET status = 'confirmed', cancelled_at = NULL WHERE id = $1")
            .bind(booking.id)
            .execute(&mut conn)
            .await
            .unwrap_err();
    assert!(
        revived.to_string().contains("already_cancelled"),
        "{revived}"
    );
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(bookings, 2, "nothing was deleted");
    assert_eq!(counts(engine, seats[1]).await, (2, 2, 0));
    conn.close().await.unwrap();
}
