//! Emails through the outbox: queued in the transaction that books or cancels, with their
//! text, and claimed by the worker once each; rows queued before the outbox named bookings are
//! still sent.

use crate::*;

on_every_backend! {
    /// Emails queued before the outbox named bookings (each row carried its rendered email)
    /// survive the migration, and are claimed exactly as they were queued.
    async fn emails_queued_with_their_text_before_the_outbox_named_bookings_are_still_sent(
        backend: Backend
    ) {
        // The store as the previous release left it: its migrations only, one email queued.
        let previous = tempfile::tempdir().unwrap();
        let migrations: [(&str, &str); 2] = match backend {
            Backend::Sqlite => [
                (
                    "0001_booking.sql",
                    include_str!("../../migrations/sqlite/0001_booking.sql"),
                ),
                (
                    "0002_outbox_leases.sql",
                    include_str!("../../migrations/sqlite/0002_outbox_leases.sql"),
                ),
            ],
            Backend::Postgres(_) => [
                (
                    "0001_booking.sql",
                    include_str!("../../migrations/postgres/0001_booking.sql"),
                ),
                (
                    "0002_lease_owner.sql",
                    include_str!("../../migrations/postgres/0002_lease_owner.sql"),
                ),
            ],
        };
        for (name, sql) in migrations {
            std::fs::write(previous.path().join(name), sql).unwrap();
        }
        let previous = sqlx::migrate::Migrator::new(previous.path()).await.unwrap();
        let queued = BookingEmail {
            booking_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            concert_id: Uuid::now_v7(),
            concert_name: "Farewell Tour".into(),
            // What a payload queued by an earlier release decodes to: it had neither.
            artist: String::new(),
            venue: "Arena".into(),
            time_zone: "UTC".into(),
            starts_at: in_a_day().replace_nanosecond(0).unwrap(),
            seat_type_name: "VIP".into(),
            price_cents: 12_000,
            currency: "EUR".into(),
            at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
            payment: None,
            ticket_code: None,
        };
        let message_id = Uuid::now_v7();
        let payload = serde_json::to_string(&queued).unwrap();
        let (store, dir, database): (Store, _, _) = match &backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(&dir.path().join("booking.db"), 2)
                    .await
                    .unwrap();
                previous.run(&store.write).await.unwrap();
                sqlx::query(
                    "INSERT INTO outbox (message_id, kind, payload, created_at, available_at)
                     VALUES (?, 'booking_confirmed', ?, 0, 0)",
                )
                .bind(message_id)
                .bind(&payload)
                .execute(&store.write)
                .await
                .unwrap();
                (store.into(), Some(dir), None)
            }
            Backend::Postgres(database) => {
                let store = PgStore::connect(&database.url, "booking", 4).await.unwrap();
                previous.run(&store.pool).await.unwrap();
                sqlx::query(
                    "INSERT INTO outbox (message_id, kind, payload, created_at, available_at)
                     VALUES ($1, 'booking_confirmed', $2, now() - interval '1 second',
                             now() - interval '1 second')",
                )
                .bind(message_id)
                .bind(&payload)
                .execute(&store.pool)
                .await
                .unwrap();
                (store.into(), None, Some(database.clone()))
            }
        };

        // This release opens it: the outbox is migrated, the old message claimed as it was queued.
        let engine = start_engine(
            store,
            boxoffice_shared::clock::system(),
            Checkout::default(),
            dir,
            database,
        ).await;
        let claimed = engine
            .service
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].message_id, message_id);
        assert_eq!(claimed[0].kind, EmailKind::BookingConfirmed);
        assert_eq!(
            claimed[0].booking,
            BookingEmail {
                ticket_code: Some(
                    engine
                        .service
                        .ticket_code(queued.booking_id, queued.concert_id)
                ),
                ..queued
            }
        );
        // New bookings queue their emails by reference beside it.
        let (concert_id, seats) = concert(&engine, in_a_day(), &[5]).await;
        let booking = created(
            engine
                .service
                .book(customer(), concert_id, seats[0], None)
                .await
                .unwrap(),
        );
        let claimed = engine
            .service
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].booking.booking_id, booking.id);
        assert_eq!(engine.service.depth().await.unwrap(), 2);
    }
}

on_every_backend! {
    async fn bookings_and_cancellations_queue_their_emails_in_the_same_transaction(
        backend: Backend
    ) {
        let engine = engine(&backend).await;
        let starts_at = in_a_day().replace_nanosecond(0).unwrap();
        let (concert_id, seats) = concert(&engine, starts_at, &[5]).await;
        let user = customer();
        let booking = created(
            engine
                .service
                .book(user, concert_id, seats[0], None)
                .await
                .unwrap(),
        );
        let cancelled = engine.service.cancel(user, booking.id).await.unwrap();
        let claimed = engine
            .service
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        // What each email says: the booking, its concert and seat type, dated when the booking
        // was made or cancelled.
        let email = |at| BookingEmail {
            booking_id: booking.id,
            user_id: user.user_id,
            concert_id,
            concert_name: "Night Show".into(),
            artist: "Aurora".into(),
            venue: "Hall".into(),
            time_zone: "Europe/Oslo".into(),
            starts_at,
            seat_type_name: "Tier 0".into(),
            price_cents: 5_000,
            currency: "USD".into(),
            at,
            // A priced seat booked in one step is paid through the simulated provider.
            payment: Some(EmailPayment {
                provider: "simulated".into(),
                amount_cents: 5_000,
            }),
            ticket_code: None,
        };
        let of_kind = |kind| {
            claimed
                .iter()
                .find(|message| message.kind == kind)
                .map(|message| message.booking.clone())
        };
        // A confirmation carries the ticket's code; a cancellation does not.
        assert_eq!(
            of_kind(EmailKind::BookingConfirmed),
            Some(BookingEmail {
                ticket_code: Some(engine.service.ticket_code(booking.id, concert_id)),
                ..email(booking.created_at)
            })
        );
        assert_eq!(
            of_kind(EmailKind::BookingCancelled),
            Some(email(cancelled.cancelled_at.unwrap()))
        );
        // Leased: a second claim gets nothing until the lease runs out or a retry is scheduled.
        assert!(
            engine
                .service
                .claim(10, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
        engine
            .service
            .acknowledge(&[claimed[0].message_id])
            .await
            .unwrap();
        engine
            .service
            .retry_later(
                claimed[1].message_id,
                OffsetDateTime::now_utc() - time::Duration::seconds(1),
                "smtp down",
            )
            .await
            .unwrap();
        let again = engine
            .service
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].message_id, claimed[1].message_id);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(engine.service.depth().await.unwrap(), 1);
        // One acknowledgement for several messages; one already acknowledged is skipped.
        engine
            .service
            .acknowledge(&[claimed[0].message_id, again[0].message_id])
            .await
            .unwrap();
        assert_eq!(engine.service.depth().await.unwrap(), 0);
        assert!(
            engine
                .service
                .claim(10, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
