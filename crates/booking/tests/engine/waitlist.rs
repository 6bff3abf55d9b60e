//! The waiting list against a real store, on both engines: freed seats go to the fans waiting,
//! first come first served, in the transaction that frees them — under concurrent cancels, when
//! an offer runs out while another seat comes free, when a fan leaves while offered, when the
//! capacity grows — and the public never sees an offered seat.

use boxoffice_booking::command::Made;
use boxoffice_booking::hold::{HoldStatus, Paid};
use boxoffice_booking::waitlist::{WaitlistEntry, WaitlistStatus};

use crate::*;

/// A checkout whose waiting-list offers last `seconds`.
fn offers_for(seconds: u64) -> Checkout {
    Checkout {
        offer_ttl: Duration::from_secs(seconds),
        ..Checkout::default()
    }
}

/// Sells every seat of the seat type; returns the bookings.
async fn sell_out(engine: &Engine, concert_id: Uuid, seat: Uuid, count: usize) -> Vec<Booking> {
    let mut sold = Vec::new();
    for _ in 0..count {
        let booking = engine
            .service
            .book(customer(), concert_id, seat, None)
            .await;
        sold.push(created(booking.unwrap()));
    }
    sold
}

/// `count` fans join the seat type's list, one after the other (their order is the list's).
async fn line_up(
    engine: &Engine,
    concert_id: Uuid,
    seat: Uuid,
    count: usize,
) -> Vec<(AuthUser, WaitlistEntry)> {
    let mut line = Vec::new();
    for place in 1..=count {
        let fan = customer();
        let entry = engine
            .service
            .join_waitlist(fan, concert_id, seat)
            .await
            .unwrap();
        assert_eq!(entry.status, WaitlistStatus::Waiting);
        assert_eq!(entry.position, Some(place as i64));
        line.push((fan, entry));
    }
    line
}

async fn entry(engine: &Engine, fan: AuthUser, entry: &WaitlistEntry) -> WaitlistEntry {
    engine.service.waitlist_entry(fan, entry.id).await.unwrap()
}

async fn statuses(engine: &Engine, line: &[(AuthUser, WaitlistEntry)]) -> Vec<WaitlistStatus> {
    let mut statuses = Vec::new();
    for (fan, waiting) in line {
        statuses.push(entry(engine, *fan, waiting).await.status);
    }
    statuses
}

fn admin() -> AuthUser {
    AuthUser {
        role: boxoffice_shared::token::Role::Admin,
        ..customer()
    }
}

on_every_backend! {
    async fn freed_seats_go_to_the_first_fans_in_line_under_concurrent_cancels(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[6]).await;
        let sold = sell_out(&engine, concert_id, seats[0], 6).await;
        let line = line_up(&engine, concert_id, seats[0], 6).await;

        // Four cancels at once, while the public tries to book the seats they free.
        let mut racers = Vec::new();
        for booking in sold.iter().take(4) {
            let service = engine.service.clone();
            let id = booking.id;
            racers.push(tokio::spawn(async move {
                service.cancel(admin(), id).await.map(|_| ())
            }));
        }
        let mut public = Vec::new();
        for _ in 0..20 {
            let service = engine.service.clone();
            let seat = seats[0];
            public.push(tokio::spawn(async move {
                service.book(customer(), concert_id, seat, None).await
            }));
        }
        for racer in racers {
            racer.await.unwrap().unwrap();
        }
        for attempt in public {
            let outcome = attempt.await.unwrap();
            assert!(matches!(outcome, Err(BookingError::SoldOut)), "{outcome:?}");
        }
        use WaitlistStatus::{Offered, Waiting};
        assert_eq!(
            statuses(&engine, &line).await,
            [Offered, Offered, Offered, Offered, Waiting, Waiting]
        );
        let fifth = entry(&engine, line[4].0, &line[4].1).await;
        assert_eq!(fifth.position, Some(1), "the first still waiting is first");
        // Each offer is a hold in the fan's name; the seats never came back to the public.
        for (fan, waiting) in &line[..4] {
            let offered = entry(&engine, *fan, waiting).await;
            let hold = engine.service.get_hold(*fan, offered.hold_id.unwrap()).await.unwrap();
            assert_eq!(hold.status, HoldStatus::Active);
            assert_eq!(hold.user_id, fan.user_id);
        }
        assert_eq!(counts(&engine, seats[0]).await, (6, 0, 2));
        assert_eq!(remaining_in_view(&engine, concert_id, seats[0]), 0);
        let offers = engine.service.claim(20, Duration::from_secs(30)).await.unwrap();
        let offered: Vec<_> = offers
            .iter()
            .filter(|message| message.kind == EmailKind::WaitlistOffered)
            .collect();
        assert_eq!(offered.len(), 4, "one offer email per offer");
    }
}

on_every_backend! {
    async fn an_offer_that_runs_out_while_another_seat_frees_goes_to_the_next_two(backend: Backend) {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let engine = engine_with(&backend, clock.clone(), offers_for(120)).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[2]).await;
        let sold = sell_out(&engine, concert_id, seats[0], 2).await;
        let line = line_up(&engine, concert_id, seats[0], 4).await;
        engine.service.cancel(admin(), sold[0].id).await.unwrap();
        let first = entry(&engine, line[0].0, &line[0].1).await;
        assert_eq!(first.status, WaitlistStatus::Offered);
        let hold = engine.service.get_hold(line[0].0, first.hold_id.unwrap()).await.unwrap();
        assert_eq!(hold.expires_at, now + time::Duration::seconds(120));

        // At the offer's end, the other booking is cancelled: both seats go on, in order.
        clock.advance(time::Duration::seconds(120));
        let (expired, cancelled) = tokio::join!(
            engine.service.expire_holds(),
            engine.service.cancel(admin(), sold[1].id)
        );
        expired.unwrap();
        cancelled.unwrap();
        use WaitlistStatus::{Expired, Offered, Waiting};
        assert_eq!(statuses(&engine, &line).await, [Expired, Offered, Offered, Waiting]);
        assert_eq!(counts(&engine, seats[0]).await, (2, 0, 0));
        assert_eq!(remaining_in_view(&engine, concert_id, seats[0]), 0);
        // The fan whose offer ran out cannot pay it any more.
        let late = engine
            .service
            .pay(line[0].0, first.hold_id.unwrap(), Some("pm_card_visa".into()))
            .await;
        assert!(matches!(late, Err(BookingError::HoldExpired)), "{late:?}");
    }
}

on_every_backend! {
    async fn leaving_while_offered_hands_the_seat_to_the_next_fan(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[1]).await;
        let sold = sell_out(&engine, concert_id, seats[0], 1).await;
        let line = line_up(&engine, concert_id, seats[0], 3).await;
        // The second fan leaves while waiting; the first is offered the seat, then leaves too.
        engine.service.leave_waitlist(line[1].0, line[1].1.id).await.unwrap();
        assert_eq!(entry(&engine, line[2].0, &line[2].1).await.position, Some(2));
        engine.service.cancel(admin(), sold[0].id).await.unwrap();
        let offered = entry(&engine, line[0].0, &line[0].1).await;
        assert_eq!(offered.status, WaitlistStatus::Offered);
        engine.service.leave_waitlist(line[0].0, line[0].1.id).await.unwrap();

        use WaitlistStatus::{Left, Offered};
        assert_eq!(statuses(&engine, &line).await, [Left, Left, Offered]);
        let hold = engine.service.get_hold(line[0].0, offered.hold_id.unwrap()).await.unwrap();
        assert_eq!(hold.status, HoldStatus::Released);
        assert_eq!(counts(&engine, seats[0]).await, (1, 0, 0));
        // Leaving again changes nothing; someone else's entry is not found.
        engine.service.leave_waitlist(line[0].0, line[0].1.id).await.unwrap();
        let foreign = engine.service.leave_waitlist(customer(), line[2].1.id).await;
        assert!(matches!(foreign, Err(BookingError::WaitlistEntryNotFound)), "{foreign:?}");

        // The last fan pays their offer: a booking, and the entry is completed.
        let third = entry(&engine, line[2].0, &line[2].1).await;
        let paid = engine
            .service
            .pay(line[2].0, third.hold_id.unwrap(), Some("pm_card_visa".into()))
            .await
            .unwrap();
        assert_eq!(paid.status, HoldStatus::Completed);
        assert_eq!(entry(&engine, line[2].0, &line[2].1).await.status, WaitlistStatus::Completed);
        assert_eq!(counts(&engine, seats[0]).await, (1, 0, 1));
    }
}

on_every_backend! {
    async fn joining_is_refused_while_seats_are_left_twice_or_with_a_seat(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[1, 1]).await;
        let fan = customer();
        let early = engine.service.join_waitlist(fan, concert_id, seats[0]).await;
        assert!(matches!(early, Err(BookingError::SeatsAvailable)), "{early:?}");
        sell_out(&engine, concert_id, seats[0], 1).await;
        let holder = customer();
        match engine.service.hold(holder, concert_id, seats[1], None).await {
            Ok(Made::Created(_)) => {}
            other => panic!("expected a hold, got {other:?}"),
        }
        let held = engine.service.join_waitlist(holder, concert_id, seats[0]).await;
        assert!(matches!(held, Err(BookingError::AlreadyBooked)), "{held:?}");
        engine.service.join_waitlist(fan, concert_id, seats[0]).await.unwrap();
        let twice = engine.service.join_waitlist(fan, concert_id, seats[1]).await;
        assert!(matches!(twice, Err(BookingError::AlreadyWaitlisted)), "{twice:?}");
        let unknown = engine.service.join_waitlist(fan, concert_id, Uuid::now_v7()).await;
        assert!(matches!(unknown, Err(BookingError::SeatTypeNotFound)), "{unknown:?}");
        let listed = engine.service.list_waitlist(fan, None, 10).await.unwrap();
        assert_eq!(listed.len(), 1);
    }
}

on_every_backend! {
    async fn a_larger_capacity_goes_to_the_waiting_list_first(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[2]).await;
        sell_out(&engine, concert_id, seats[0], 2).await;
        let line = line_up(&engine, concert_id, seats[0], 2).await;
        engine.service.set_capacity(seats[0], 5).await.unwrap();
        assert_eq!(remaining_in_view(&engine, concert_id, seats[0]), 1, "two of three offered");
        use WaitlistStatus::Offered;
        assert_eq!(statuses(&engine, &line).await, [Offered, Offered]);
        assert_eq!(counts(&engine, seats[0]).await, (5, 1, 2));
        // A fan whose offer is a hold may not also book the concert.
        let again = engine.service.book(line[0].0, concert_id, seats[0], None).await;
        assert!(matches!(again, Err(BookingError::AlreadyBooked)), "{again:?}");
        // A paid offer arrives as a payment for a hold like any other.
        let offered = entry(&engine, line[1].0, &line[1].1).await;
        engine
            .service
            .record_payment(Paid {
                hold_id: offered.hold_id.unwrap(),
                user_id: Some(line[1].0.user_id),
                reference: Some("sim_ch_offer".into()),
                event: None,
            })
            .await
            .unwrap();
        assert_eq!(entry(&engine, line[1].0, &line[1].1).await.status, WaitlistStatus::Completed);
    }
}

/// Two instances on one database: fans join through both while holders cancel through both and
/// the public books through both; every freed seat goes to the first fans in line, none to the
/// public, whatever instance each request went to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_hand_seats_on_in_line_order() {
    let Some((a, b)) =
        two_instances("engine::waitlist::two_instances_hand_seats_on_in_line_order").await
    else {
        return;
    };
    let (concert_id, seats) = concert(&a, in_a_day(), &[8]).await;
    eventually("the second instance sees the new concert", || {
        b.service.availability_of(concert_id).is_some()
    })
    .await;
    let sold = sell_out(&a, concert_id, seats[0], 8).await;
    let mut line = Vec::new();
    for place in 0..12 {
        let fan = customer();
        let instance = [&a, &b][place % 2];
        let entry = instance
            .service
            .join_waitlist(fan, concert_id, seats[0])
            .await
            .unwrap();
        line.push((fan, entry));
    }
    let mut racers = Vec::new();
    for (index, booking) in sold.iter().take(6).enumerate() {
        let service = [&a, &b][index % 2].service.clone();
        let id = booking.id;
        racers.push(tokio::spawn(async move {
            service.cancel(admin(), id).await.map(|_| ())
        }));
    }
    for index in 0..20 {
        let service = [&a, &b][index % 2].service.clone();
        let seat = seats[0];
        racers.push(tokio::spawn(async move {
            match service.book(customer(), concert_id, seat, None).await {
                Err(BookingError::SoldOut) => Ok(()),
                other => panic!("the public got {other:?}"),
            }
        }));
    }
    for racer in racers {
        racer.await.unwrap().unwrap();
    }
    let statuses = statuses(&a, &line).await;
    let offered = statuses
        .iter()
        .take_while(|status| **status == WaitlistStatus::Offered)
        .count();
    assert_eq!(offered, 6, "{statuses:?}");
    assert!(
        statuses[6..]
            .iter()
            .all(|status| *status == WaitlistStatus::Waiting),
        "{statuses:?}"
    );
    assert_eq!(counts(&a, seats[0]).await, (8, 0, 2));
    views_agree([&a, &b], concert_id, seats[0], 0).await;
}
