//! Idempotency keys: a retry replays the original booking, another body under the same key is
//! refused, and concurrent retries with one key make one booking.

use crate::*;

on_every_backend! {
    async fn an_idempotency_key_replays_the_original_booking_and_refuses_another_body(
        backend: Backend
    ) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[1, 5]).await;
        let user = customer();
        let key = IdempotencyKey::parse("order-1").unwrap();
        let first = created(
            engine
                .service
                .book(user, concert_id, seats[0], Some(key.clone()))
                .await
                .unwrap(),
        );
        // The seat type is now sold out, yet the retry gets the original answer.
        match engine
            .service
            .book(user, concert_id, seats[0], Some(key.clone()))
            .await
            .unwrap()
        {
            BookOutcome::Replayed { status, body } => {
                assert_eq!(status, 201);
                let replayed: Booking = serde_json::from_str(&body).unwrap();
                assert_eq!(replayed, first);
            }
            other => panic!("expected a replay, got {other:?}"),
        }
        let reused = engine
            .service
            .book(user, concert_id, seats[1], Some(key))
            .await;
        assert!(
            matches!(reused, Err(BookingError::IdempotencyKeyReused)),
            "{reused:?}"
        );
        // Keys are per user: another user's identical key is a new request.
        let other = engine
            .service
            .book(
                customer(),
                concert_id,
                seats[1],
                Some(IdempotencyKey::parse("order-1").unwrap()),
            )
            .await
            .unwrap();
        assert!(matches!(other, BookOutcome::Created(_)));
        assert_eq!(counts(&engine, seats[0]).await, (1, 0, 1));
    }
}

on_every_backend! {
    async fn concurrent_retries_with_one_key_make_one_booking(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[50]).await;
        let user = customer();
        let mut retries = Vec::new();
        for _ in 0..20 {
            let service = engine.service.clone();
            let seat = seats[0];
            retries.push(tokio::spawn(async move {
                service
                    .book(
                        user,
                        concert_id,
                        seat,
                        Some(IdempotencyKey::parse("same").unwrap()),
                    )
                    .await
            }));
        }
        let mut ids = HashSet::new();
        for retry in retries {
            ids.insert(booking_id_of(retry.await.unwrap().unwrap()));
        }
        assert_eq!(ids.len(), 1, "every retry saw the same booking");
        assert_eq!(counts(&engine, seats[0]).await, (50, 49, 1));
    }
}
