//! Scale-out: two Booking instances (two pools, two writers, two views) on one PostgreSQL
//! database, selling the same seats: exact sales, one booking per user, one seat back per
//! cancel, views that follow each other, Idempotency-Key retries and a concert cancelled during a
//! storm. PostgreSQL only; each test is skipped when no PostgreSQL answers.

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sell_five_seats_to_exactly_five_of_hundreds() {
    let Some((a, b)) =
        two_instances("engine::two_instances_sell_five_seats_to_exactly_five_of_hundreds").await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[5]).await;
    // The second instance learns of the new concert from the first one's notification.
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let mut racers = Vec::new();
    for index in 0..400 {
        let service = [&a, &b][index % 2].service.clone();
        let seat = seats[0];
        racers.push(tokio::spawn(async move {
            service.book(customer(), concert_id, seat, None).await
        }));
    }
    let mut won = 0;
    let mut sold_out = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(BookOutcome::Created(_)) => won += 1,
            Err(BookingError::SoldOut) => sold_out += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((won, sold_out), (5, 395));
    assert_eq!(counts(&a, seats[0]).await, (5, 0, 5));
    assert_eq!(duplicates(&a).await, 0);
    views_agree([&a, &b], concert_id, seats[0], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_bookings_spread_over_two_instances_yield_exactly_one() {
    let Some((a, b)) =
        two_instances("engine::one_users_bookings_spread_over_two_instances_yield_exactly_one")
            .await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[100, 100]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let user = customer();
    let mut attempts = Vec::new();
    for index in 0..40 {
        // Every pairing of instance and seat type: the same user racing on two seat types
        // through two writers is what only the database's unique index can settle.
        let service = [&a, &b][(index / 2) % 2].service.clone();
        let seat = seats[index % 2];
        attempts.push(tokio::spawn(async move {
            service.book(user, concert_id, seat, None).await
        }));
    }
    let mut won = 0;
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(BookOutcome::Created(_)) => won += 1,
            Err(BookingError::AlreadyBooked) => refused += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((won, refused), (1, 39));
    let (first, second) = (counts(&a, seats[0]).await, counts(&a, seats[1]).await);
    assert_eq!(first.2 + second.2, 1);
    assert_eq!(first.1 + second.1, 199);
    assert_eq!(duplicates(&a).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cancels_through_two_instances_return_one_seat() {
    let Some((a, b)) =
        two_instances("engine::concurrent_cancels_through_two_instances_return_one_seat").await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[3]).await;
    let user = customer();
    let booking = created(
        a.service
            .book(user, concert_id, seats[0], None)
            .await
            .unwrap(),
    );
    let mut cancels = Vec::new();
    for index in 0..30 {
        let service = [&a, &b][index % 2].service.clone();
        cancels.push(tokio::spawn(async move {
            service.cancel(user, booking.id).await
        }));
    }
    let mut ok = 0;
    let mut already = 0;
    for cancel in cancels {
        match cancel.await.unwrap() {
            Ok(cancelled) => {
                assert_eq!(cancelled.status, BookingStatus::Cancelled);
                ok += 1;
            }
            Err(BookingError::AlreadyCancelled) => already += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((ok, already), (1, 29));
    assert_eq!(counts(&a, seats[0]).await, (3, 3, 0));
    views_agree([&a, &b], concert_id, seats[0], 3).await;
    // Exactly one cancellation email went out with the one confirmation.
    assert_eq!(a.service.depth().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_through_two_instances_keeps_remaining_equal_to_capacity_minus_confirmed() {
    let Some((a, b)) = two_instances(
        "engine::a_storm_through_two_instances_keeps_remaining_equal_to_capacity_minus_confirmed",
    )
    .await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[20, 7]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let mut workers = Vec::new();
    for index in 0..60 {
        let services = [a.service.clone(), b.service.clone()];
        let seats = seats.clone();
        let user = customer();
        workers.push(tokio::spawn(async move {
            let mut created = 0u32;
            for round in 0..15 {
                let seat = seats[(index + round) % 2];
                // Book through one instance and cancel through the other.
                let through = (index + round / 2) % 2;
                if let Ok(BookOutcome::Created(booking)) =
                    services[through].book(user, concert_id, seat, None).await
                {
                    created += 1;
                    if (index + round) % 3 != 0 {
                        tokio::task::yield_now().await;
                        services[1 - through]
                            .cancel(user, booking.id)
                            .await
                            .expect("cancel own booking");
                    }
                }
            }
            created
        }));
    }
    let mut total_created = 0;
    for worker in workers {
        total_created += worker.await.unwrap();
    }
    assert!(
        total_created > 27,
        "the storm booked too little to mean anything: {total_created}"
    );
    for seat in &seats {
        let (capacity, remaining, confirmed) = counts(&a, *seat).await;
        assert_eq!(remaining, capacity - confirmed, "seat type {seat}");
        views_agree([&a, &b], concert_id, *seat, remaining).await;
    }
    assert_eq!(duplicates(&a).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_instance_shows_in_the_other_instances_view() {
    let Some((a, b)) =
        two_instances("engine::a_change_through_one_instance_shows_in_the_other_instances_view")
            .await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[10]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    assert_eq!(remaining_in_view(&b, concert_id, seats[0]), 10);

    let user = customer();
    let booking = created(
        a.service
            .book(user, concert_id, seats[0], None)
            .await
            .unwrap(),
    );
    assert_eq!(remaining_in_view(&a, concert_id, seats[0]), 9);
    eventually("a booking through the first shows in the second", || {
        remaining_in_view(&b, concert_id, seats[0]) == 9
    })
    .await;

    b.service.cancel(user, booking.id).await.unwrap();
    assert_eq!(remaining_in_view(&b, concert_id, seats[0]), 10);
    eventually(
        "a cancellation through the second shows in the first",
        || remaining_in_view(&a, concert_id, seats[0]) == 10,
    )
    .await;

    b.service.set_capacity(seats[0], 4).await.unwrap();
    eventually(
        "a capacity change through the second shows in the first",
        || {
            let seat = &a.service.availability_of(concert_id).unwrap().seat_types[0];
            (seat.capacity, seat.remaining) == (4, 4)
        },
    )
    .await;

    a.service.cancel_concert(concert_id).await.unwrap();
    eventually(
        "a concert cancelled through the first shows in the second",
        || {
            let availability = b.service.availability_of(concert_id).unwrap();
            availability.cancelled && !availability.booking_open
        },
    )
    .await;
    let refused = b.service.book(customer(), concert_id, seats[0], None).await;
    assert!(
        matches!(refused, Err(BookingError::BookingClosed)),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concert_provisioned_through_one_instance_sells_through_the_other_at_once() {
    let Some((a, b)) = two_instances(
        "engine::a_concert_provisioned_through_one_instance_sells_through_the_other_at_once",
    )
    .await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[10]).await;
    // No waiting for the second instance's view: the writer decides from the store what the
    // view does not know yet.
    let booked = b.service.book(customer(), concert_id, seats[0], None).await;
    assert!(matches!(booked, Ok(BookOutcome::Created(_))), "{booked:?}");
    let unknown = b
        .service
        .book(customer(), Uuid::new_v4(), seats[0], None)
        .await;
    assert!(
        matches!(unknown, Err(BookingError::ConcertNotFound)),
        "{unknown:?}"
    );
    let other_seat = b
        .service
        .book(customer(), concert_id, Uuid::new_v4(), None)
        .await;
    assert!(
        matches!(other_seat, Err(BookingError::SeatTypeNotFound)),
        "{other_seat:?}"
    );
    assert_eq!(counts(&a, seats[0]).await, (10, 9, 1));
    views_agree([&a, &b], concert_id, seats[0], 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_one_key_through_two_instances_make_one_booking() {
    let Some((a, b)) =
        two_instances("engine::retries_with_one_key_through_two_instances_make_one_booking").await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[50, 50]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let user = customer();
    let mut retries = Vec::new();
    for index in 0..40 {
        let service = [&a, &b][index % 2].service.clone();
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
        match retry.await.unwrap() {
            Ok(outcome) => ids.insert(booking_id_of(outcome)),
            Err(error) => panic!("a retry must replay the original booking, got {error:?}"),
        };
    }
    assert_eq!(ids.len(), 1, "every retry saw the same booking");
    assert_eq!(counts(&a, seats[0]).await, (50, 49, 1));

    // The same key with another body, through both instances at once: one booking, and every
    // other answer is a replay or idempotency_key_reused, never a second booking.
    let other = customer();
    let mut attempts = Vec::new();
    for index in 0..20 {
        let service = [&a, &b][index % 2].service.clone();
        let seat = seats[(index / 2) % 2];
        attempts.push(tokio::spawn(async move {
            service
                .book(
                    other,
                    concert_id,
                    seat,
                    Some(IdempotencyKey::parse("other").unwrap()),
                )
                .await
        }));
    }
    let mut ids = HashSet::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(outcome) => {
                ids.insert(booking_id_of(outcome));
            }
            Err(BookingError::IdempotencyKeyReused) => {}
            Err(error) => panic!("unexpected outcome {error:?}"),
        }
    }
    assert_eq!(ids.len(), 1, "one booking for one key");
    assert_eq!(duplicates(&a).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concert_cancelled_through_one_instance_during_a_storm_on_the_other_frees_every_seat() {
    let Some((a, b)) = two_instances(
        "engine::a_concert_cancelled_through_one_instance_during_a_storm_on_the_other",
    )
    .await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[30, 30]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let mut workers = Vec::new();
    for index in 0..40 {
        let service = b.service.clone();
        let seats = seats.clone();
        let user = customer();
        workers.push(tokio::spawn(async move {
            for round in 0..20 {
                match service
                    .book(user, concert_id, seats[(index + round) % 2], None)
                    .await
                {
                    Ok(BookOutcome::Created(booking)) => {
                        match service.cancel(user, booking.id).await {
                            Ok(_) | Err(BookingError::AlreadyCancelled) => {}
                            Err(BookingError::BookingClosed) => return,
                            Err(error) => panic!("cancel: unexpected {error:?}"),
                        }
                    }
                    Err(BookingError::BookingClosed) => return,
                    Err(BookingError::SoldOut) => {}
                    other => panic!("book: unexpected {other:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.service.cancel_concert(concert_id).await.unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    for seat in &seats {
        assert_eq!(counts(&a, *seat).await, (30, 30, 0), "seat type {seat}");
        views_agree([&a, &b], concert_id, *seat, 30).await;
    }
}
