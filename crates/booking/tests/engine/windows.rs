//! Sale windows decided inside the transaction (closing at the start instant, opening at the
//! on-sale instant), and a provisioned waiting room in the view, loaded again at start-up.

use crate::*;

on_every_backend! {
    async fn sales_close_at_the_start_instant_inside_the_transaction(backend: Backend) {
        let start =
            OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::hours(1);
        let clock = Arc::new(ManualClock::new(start - time::Duration::minutes(5)));
        let engine = engine_with_clock(&backend, clock.clone()).await;
        let (concert_id, seats) = concert(&engine, start, &[10]).await;
        let early = customer();
        let booking = created(
            engine
                .service
                .book(early, concert_id, seats[0], None)
                .await
                .unwrap(),
        );

        clock.advance(time::Duration::minutes(5) - time::Duration::milliseconds(1));
        assert!(
            engine
                .service
                .availability_of(concert_id)
                .unwrap()
                .booking_open
        );
        clock.advance(time::Duration::milliseconds(1));
        assert_eq!(clock.now(), start);
        let late = engine
            .service
            .book(customer(), concert_id, seats[0], None)
            .await;
        assert!(matches!(late, Err(BookingError::BookingClosed)), "{late:?}");
        let cancel = engine.service.cancel(early, booking.id).await;
        assert!(
            matches!(cancel, Err(BookingError::BookingClosed)),
            "{cancel:?}"
        );
        assert!(
            !engine
                .service
                .availability_of(concert_id)
                .unwrap()
                .booking_open
        );
        assert_eq!(counts(&engine, seats[0]).await, (10, 9, 1));
    }
}

on_every_backend! {
    async fn sales_open_at_the_on_sale_instant_inside_the_transaction(backend: Backend) {
        let opens =
            OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::hours(1);
        let clock = Arc::new(ManualClock::new(opens - time::Duration::minutes(5)));
        let engine = engine_with_clock(&backend, clock.clone()).await;
        let (concert_id, seats) =
            concert_opening(&engine, Some(opens), opens + time::Duration::days(1), &[10]).await;
        let early = engine
            .service
            .book(customer(), concert_id, seats[0], None)
            .await;
        assert!(matches!(early, Err(BookingError::SalesNotOpen)), "{early:?}");
        clock.advance(time::Duration::minutes(5) - time::Duration::milliseconds(1));
        let availability = engine.service.availability_of(concert_id).unwrap();
        assert!(!availability.booking_open);
        let almost = engine
            .service
            .book(customer(), concert_id, seats[0], None)
            .await;
        assert!(matches!(almost, Err(BookingError::SalesNotOpen)), "{almost:?}");

        clock.advance(time::Duration::milliseconds(1));
        assert_eq!(clock.now(), opens);
        created(
            engine
                .service
                .book(customer(), concert_id, seats[0], None)
                .await
                .unwrap(),
        );
        assert!(
            engine
                .service
                .availability_of(concert_id)
                .unwrap()
                .booking_open
        );
        assert_eq!(counts(&engine, seats[0]).await, (10, 9, 1));
    }
}

/// The waiting room of a concert as the engine's in-memory view has it.
fn waiting_room_in_view(engine: &Engine, concert_id: Uuid) -> Option<WaitingRoom> {
    engine
        .service
        .view()
        .read()
        .concerts
        .get(&concert_id)
        .unwrap_or_else(|| panic!("the view does not know {concert_id}"))
        .waiting_room
}

on_every_backend! {
    /// The waiting room Catalog provisions is in the view as soon as provisioning answers, each
    /// provision replaces or removes it, and a restart reads it back from the store.
    async fn a_provisioned_waiting_room_reaches_the_view_and_is_loaded_at_start_up(
        backend: Backend
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = reopen(&backend, &dir).await;
        let room = WaitingRoom {
            admit_per_minute: 1_000,
            admission_ttl_seconds: 600,
        };
        let mut show = ConcertInventory {
            waiting_room: Some(room),
            ..inventory(in_a_day(), &[10])
        };
        let id = show.concert_id;
        engine.service.provision(&show).await.unwrap();
        assert_eq!(waiting_room_in_view(&engine, id), Some(room));
        let faster = WaitingRoom {
            admit_per_minute: 5_000,
            ..room
        };
        show.waiting_room = Some(faster);
        engine.service.provision(&show).await.unwrap();
        assert_eq!(waiting_room_in_view(&engine, id), Some(faster));
        drop(engine);

        let restarted = reopen(&backend, &dir).await;
        assert_eq!(waiting_room_in_view(&restarted, id), Some(faster));
        show.waiting_room = None;
        restarted.service.provision(&show).await.unwrap();
        assert_eq!(waiting_room_in_view(&restarted, id), None);
        // Out of range: refused, and nothing changes.
        show.waiting_room = Some(WaitingRoom {
            admission_ttl_seconds: WaitingRoom::MIN_ADMISSION_TTL_SECONDS - 1,
            ..room
        });
        let refused = restarted.service.provision(&show).await;
        assert!(
            matches!(
                &refused,
                Err(ClientError::Rejected { code: ErrorCode::ValidationFailed, .. })
            ),
            "{refused:?}"
        );
        assert_eq!(waiting_room_in_view(&restarted, id), None);
        drop(restarted);

        let again = reopen(&backend, &dir).await;
        assert_eq!(waiting_room_in_view(&again, id), None);
        assert_eq!(counts(&again, show.seat_types[0].seat_type_id).await, (10, 10, 0));
    }
}
