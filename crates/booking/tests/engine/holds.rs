//! Holds under concurrency, against a real store: a storm of holds expiring at one instant
//! returns every seat exactly once; a payment that arrives after its hold ended books a free
//! seat or is queued for a refund, never both and never neither, and the refund is handed to
//! the provider until it takes it; concurrent pays of one hold make one booking; two instances
//! share one hold's expiry.

use boxoffice_booking::command::Made;
use boxoffice_booking::hold::{Hold, HoldStatus, Paid, PaymentStatus};

use boxoffice_booking::hold::Provider;
use boxoffice_booking::payments::{
    Charge, PaymentError, PaymentProvider, ProviderEvent, Refund, Simulated,
};

use crate::*;

/// A checkout whose holds last `seconds`.
fn holds_for(seconds: u64) -> Checkout {
    Checkout {
        hold_ttl: Duration::from_secs(seconds),
        ..Checkout::default()
    }
}

async fn hold(engine: &Engine, user: AuthUser, concert_id: Uuid, seat: Uuid) -> Hold {
    match engine.service.hold(user, concert_id, seat, None).await {
        Ok(Made::Created(hold)) => hold,
        other => panic!("expected a hold, got {other:?}"),
    }
}

/// How many holds of the seat type are stored with `status`.
async fn holds_with(engine: &Engine, seat_type_id: Uuid, status: &str) -> i64 {
    let query =
        format!("SELECT count(*) FROM holds WHERE seat_type_id = $1 AND status = '{status}'");
    count_of(engine, &query, seat_type_id).await
}

/// How many refunds of the hold the provider has confirmed.
async fn refunded(engine: &Engine, hold_id: Uuid) -> i64 {
    let query = "SELECT count(*) FROM refunds WHERE hold_id = $1 AND refunded_at IS NOT NULL";
    count_of(engine, query, hold_id).await
}

/// Waits until the refund worker has handed the hold's refund over and the hold says so.
async fn until_refunded(engine: &Engine, user: AuthUser, hold_id: Uuid) {
    for _ in 0..400 {
        let hold = engine.service.get_hold(user, hold_id).await.unwrap();
        if refunded(engine, hold_id).await == 1 && hold.payment.status == PaymentStatus::Refunded {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let hold = engine.service.get_hold(user, hold_id).await.unwrap();
    panic!(
        "the refund of hold {hold_id} was not handed over: {} refunded, payment {:?}",
        refunded(engine, hold_id).await,
        hold.payment.status
    );
}

/// How many refunds are queued for the hold.
async fn refunds_of(engine: &Engine, hold_id: Uuid) -> i64 {
    count_of(
        engine,
        "SELECT count(*) FROM refunds WHERE hold_id = $1",
        hold_id,
    )
    .await
}

fn paid(hold: &Hold, user: AuthUser) -> Paid {
    Paid {
        hold_id: hold.id,
        user_id: Some(user.user_id),
        // The simulated provider's name for the hold's charge, as `pay` would have been told.
        reference: Some(format!("sim_ch_{}", hold.id.simple())),
        event: None,
    }
}

on_every_backend! {
    async fn a_storm_of_holds_expiring_at_one_instant_returns_every_seat_once(backend: Backend) {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let engine = engine_with(&backend, clock.clone(), holds_for(60)).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[300]).await;
        let seat = seats[0];
        let mut racers = Vec::new();
        for _ in 0..300 {
            let service = engine.service.clone();
            racers.push(tokio::spawn(async move {
                service.hold(customer(), concert_id, seat, None).await
            }));
        }
        for racer in racers {
            assert!(matches!(racer.await.unwrap(), Ok(Made::Created(_))));
        }
        assert_eq!(counts(&engine, seats[0]).await, (300, 0, 0));
        let refused = engine.service.book(customer(), concert_id, seats[0], None).await;
        assert!(matches!(refused, Err(BookingError::SoldOut)), "{refused:?}");

        // At `expires_at` exactly, every held seat is free to the next requests.
        clock.advance(time::Duration::seconds(60));
        let mut racers = Vec::new();
        for _ in 0..300 {
            let service = engine.service.clone();
            racers.push(tokio::spawn(async move {
                service.book(customer(), concert_id, seat, None).await
            }));
        }
        for racer in racers {
            let outcome = racer.await.unwrap();
            assert!(matches!(outcome, Ok(BookOutcome::Created(_))), "{outcome:?}");
        }
        let over = engine.service.book(customer(), concert_id, seats[0], None).await;
        assert!(matches!(over, Err(BookingError::SoldOut)), "{over:?}");
        assert_eq!(counts(&engine, seats[0]).await, (300, 0, 300));
        assert_eq!(holds_with(&engine, seats[0], "expired").await, 300);
        assert_eq!(holds_with(&engine, seats[0], "active").await, 0);
        assert_eq!(duplicates(&engine).await, 0);
    }
}

on_every_backend! {
    async fn a_payment_after_its_hold_ended_books_a_free_seat_or_is_refunded(backend: Backend) {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let engine = engine_with(&backend, clock.clone(), holds_for(60)).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[2]).await;

        // Late, with a seat free: the payment books it.
        let late = customer();
        let late_hold = hold(&engine, late, concert_id, seats[0]).await;
        clock.advance(time::Duration::seconds(61));
        let completed = engine.service.record_payment(paid(&late_hold, late)).await.unwrap();
        assert_eq!(completed.status, HoldStatus::Completed);
        let booking = engine
            .service
            .get(late, completed.booking_id.unwrap())
            .await
            .unwrap();
        assert_eq!(booking.status, BookingStatus::Confirmed);
        assert_eq!(counts(&engine, seats[0]).await, (2, 1, 1));
        assert_eq!(refunds_of(&engine, late_hold.id).await, 0);

        // Late, and the seat went to someone else meanwhile: refunded.
        let slow = customer();
        let slow_hold = hold(&engine, slow, concert_id, seats[0]).await;
        clock.advance(time::Duration::seconds(61));
        created(engine.service.book(customer(), concert_id, seats[0], None).await.unwrap());
        let refused = engine.service.record_payment(paid(&slow_hold, slow)).await;
        assert!(matches!(refused, Err(BookingError::HoldExpired)), "{refused:?}");
        assert_eq!(refunds_of(&engine, slow_hold.id).await, 1);
        until_refunded(&engine, slow, slow_hold.id).await;
        assert_eq!(
            engine.service.get_hold(slow, slow_hold.id).await.unwrap().status,
            HoldStatus::Expired
        );
        assert_eq!(counts(&engine, seats[0]).await, (2, 0, 2));

        // Released, then paid (the payment raced the release): refunded, once however often.
        let (other_concert, other_seats) = concert(&engine, in_a_day(), &[1]).await;
        let fickle = customer();
        let fickle_hold = hold(&engine, fickle, other_concert, other_seats[0]).await;
        engine.service.release(fickle, fickle_hold.id).await.unwrap();
        for _ in 0..2 {
            let refused = engine.service.record_payment(paid(&fickle_hold, fickle)).await;
            assert!(matches!(refused, Err(BookingError::HoldNotActive)), "{refused:?}");
        }
        assert_eq!(refunds_of(&engine, fickle_hold.id).await, 1);
        until_refunded(&engine, fickle, fickle_hold.id).await;
        assert_eq!(counts(&engine, other_seats[0]).await, (1, 1, 0));
    }
}

on_every_backend! {
    async fn concurrent_pays_of_one_hold_make_one_booking(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[3]).await;
        let user = customer();
        let held = hold(&engine, user, concert_id, seats[0]).await;
        let mut payers = Vec::new();
        for _ in 0..20 {
            let service = engine.service.clone();
            payers.push(tokio::spawn(async move {
                service.pay(user, held.id, Some("pm_card_visa".into())).await
            }));
        }
        let mut bookings = HashSet::new();
        for payer in payers {
            let hold = payer.await.unwrap().unwrap();
            assert_eq!(hold.status, HoldStatus::Completed);
            bookings.insert(hold.booking_id.unwrap());
        }
        assert_eq!(bookings.len(), 1);
        assert_eq!(counts(&engine, seats[0]).await, (3, 2, 1));
        assert_eq!(refunds_of(&engine, held.id).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_taken_through_one_instance_expire_for_the_other() {
    let Some(database) =
        TestDatabase::create("engine::holds_taken_through_one_instance_expire_for_the_other").await
    else {
        return;
    };
    let backend = Backend::Postgres(Arc::new(database));
    let clock = boxoffice_shared::clock::system();
    let a = engine_with(&backend, clock.clone(), holds_for(1)).await;
    let b = engine_with(&backend, clock, holds_for(1)).await;
    let (concert_id, seats) = concert(&a, in_a_day(), &[5]).await;
    for _ in 0..5 {
        hold(&a, customer(), concert_id, seats[0]).await;
    }
    views_agree([&a, &b], concert_id, seats[0], 0).await;
    // Nobody pays: the seats come back in both views, by the timers, without any request.
    views_agree([&a, &b], concert_id, seats[0], 5).await;
    for _ in 0..5 {
        created(
            b.service
                .book(customer(), concert_id, seats[0], None)
                .await
                .unwrap(),
        );
    }
    assert_eq!(counts(&a, seats[0]).await, (5, 0, 5));
    assert_eq!(holds_with(&a, seats[0], "expired").await, 5);
}

/// A provider that turns the first `failures` refunds away, then takes them.
struct Unreliable {
    failures: std::sync::atomic::AtomicU32,
    refunds: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl PaymentProvider for Unreliable {
    fn kind(&self) -> Provider {
        Provider::Simulated
    }

    async fn charge(&self, charge: &Charge) -> Result<String, PaymentError> {
        Simulated.charge(charge).await
    }

    async fn refund(&self, refund: &Refund) -> Result<(), PaymentError> {
        use std::sync::atomic::Ordering;
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(PaymentError::Unavailable("try again".into()));
        }
        self.refunds.fetch_add(1, Ordering::SeqCst);
        Simulated.refund(refund).await
    }
}

on_every_backend! {
    async fn a_refund_the_provider_turns_away_is_retried_until_it_is_taken(backend: Backend) {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let provider = Arc::new(Unreliable {
            failures: 1.into(),
            refunds: 0.into(),
        });
        let checkout = Checkout {
            hold_ttl: Duration::from_secs(60),
            payments: provider.clone(),
            ..Checkout::default()
        };
        let engine = engine_with(&backend, clock.clone(), checkout).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[1]).await;
        let user = customer();
        let held = hold(&engine, user, concert_id, seats[0]).await;
        engine.service.release(user, held.id).await.unwrap();
        let refused = engine.service.record_payment(paid(&held, user)).await;
        assert!(matches!(refused, Err(BookingError::HoldNotActive)), "{refused:?}");
        // Turned away once: due again two seconds later by the store's clock.
        for _ in 0..400 {
            if provider.failures.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(refunded(&engine, held.id).await, 0);
        // Time passes by the store's clock until the retry is due and the worker looks again.
        for _ in 0..40 {
            if refunded(&engine, held.id).await == 1 {
                break;
            }
            clock.advance(time::Duration::seconds(3));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        until_refunded(&engine, user, held.id).await;
        assert_eq!(provider.refunds.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}

/// How many of a provider's events about the hold are recorded.
async fn events_of(engine: &Engine, hold_id: Uuid) -> i64 {
    count_of(
        engine,
        "SELECT count(*) FROM payment_events WHERE hold_id = $1",
        hold_id,
    )
    .await
}

fn succeeded(event: &str, hold: &Hold) -> ProviderEvent {
    ProviderEvent::Succeeded {
        id: event.to_owned(),
        hold_id: hold.id,
        reference: format!("sim_ch_{}", hold.id.simple()),
    }
}

on_every_backend! {
    async fn a_provider_event_delivered_many_times_at_once_is_applied_once(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[3]).await;
        let user = customer();
        let held = hold(&engine, user, concert_id, seats[0]).await;

        // A declined attempt first: the hold stays active, its payment failed.
        let failed = ProviderEvent::Failed { id: "evt_failed".into(), hold_id: held.id };
        for _ in 0..2 {
            engine.service.apply_payment_event(failed.clone()).await.unwrap();
        }
        let after_failure = engine.service.get_hold(user, held.id).await.unwrap();
        assert_eq!(after_failure.status, HoldStatus::Active);
        assert_eq!(after_failure.payment.status, PaymentStatus::Failed);

        // Then the same success, delivered by twenty deliveries at once.
        let mut deliveries = Vec::new();
        for _ in 0..20 {
            let service = engine.service.clone();
            let event = succeeded("evt_paid", &held);
            deliveries.push(tokio::spawn(async move { service.apply_payment_event(event).await }));
        }
        for delivery in deliveries {
            delivery.await.unwrap().unwrap();
        }
        let completed = engine.service.get_hold(user, held.id).await.unwrap();
        assert_eq!(completed.status, HoldStatus::Completed);
        assert_eq!(completed.payment.status, PaymentStatus::Succeeded);
        assert_eq!(counts(&engine, seats[0]).await, (3, 2, 1));
        assert_eq!(events_of(&engine, held.id).await, 2, "one row per event id");
        assert_eq!(refunds_of(&engine, held.id).await, 0);

        // A late failure report leaves the completed hold alone; an event about a hold this
        // deployment does not have is settled without effect.
        let late = ProviderEvent::Failed { id: "evt_late".into(), hold_id: held.id };
        engine.service.apply_payment_event(late).await.unwrap();
        let still = engine.service.get_hold(user, held.id).await.unwrap();
        assert_eq!(still.payment.status, PaymentStatus::Succeeded);
        let stranger = ProviderEvent::Succeeded {
            id: "evt_stranger".into(),
            hold_id: Uuid::now_v7(),
            reference: "pi_elsewhere".into(),
        };
        engine.service.apply_payment_event(stranger).await.unwrap();
        assert_eq!(counts(&engine, seats[0]).await, (3, 2, 1));
    }
}

on_every_backend! {
    async fn a_provider_event_for_a_released_hold_is_refunded_once(backend: Backend) {
        let engine = engine(&backend).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[1]).await;
        let user = customer();
        let held = hold(&engine, user, concert_id, seats[0]).await;
        engine.service.release(user, held.id).await.unwrap();
        for _ in 0..3 {
            engine.service.apply_payment_event(succeeded("evt_after_release", &held)).await.unwrap();
        }
        assert_eq!(refunds_of(&engine, held.id).await, 1);
        assert_eq!(events_of(&engine, held.id).await, 1);
        until_refunded(&engine, user, held.id).await;
        assert_eq!(counts(&engine, seats[0]).await, (1, 1, 0));
    }
}

on_every_backend! {
    async fn payments_racing_expiry_end_in_a_booking_or_a_refund_never_both_never_neither(
        backend: Backend
    ) {
        const SEATS: usize = 20;
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let engine = engine_with(&backend, clock.clone(), holds_for(60)).await;
        let (concert_id, seats) = concert(&engine, in_a_day(), &[SEATS as i64]).await;
        let mut holds = Vec::new();
        for _ in 0..SEATS {
            let user = customer();
            holds.push((user, hold(&engine, user, concert_id, seats[0]).await));
        }

        // The payments, the instant of expiry, and others wanting the seats, all at once.
        let mut racers = tokio::task::JoinSet::new();
        // Payments spread over 8 ms; the hold time ends 3 ms in; from then on others try to
        // book the seats that come back, each a few times.
        let spread = |index: usize| Duration::from_micros((index as u64 * 397) % 8_000);
        for (index, (user, held)) in holds.iter().enumerate() {
            let (service, paid) = (engine.service.clone(), paid(held, *user));
            racers.spawn(async move {
                tokio::time::sleep(spread(index)).await;
                let _ = service.record_payment(paid).await;
            });
        }
        let ticker = clock.clone();
        racers.spawn(async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            ticker.advance(time::Duration::seconds(60));
        });
        for index in 0..SEATS {
            let (service, seat) = (engine.service.clone(), seats[0]);
            racers.spawn(async move {
                tokio::time::sleep(Duration::from_millis(3) + spread(index) / 2).await;
                let fan = customer();
                for _ in 0..5 {
                    if service.book(fan, concert_id, seat, None).await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
            });
        }
        racers.join_all().await;

        let mut completed = 0;
        for (user, held) in &holds {
            let stored = engine.service.get_hold(*user, held.id).await.unwrap();
            let refunds = refunds_of(&engine, held.id).await;
            match stored.status {
                HoldStatus::Completed => {
                    assert_eq!(refunds, 0, "a booking and a refund for {}", held.id);
                    let booking = engine.service.get(*user, stored.booking_id.unwrap()).await;
                    assert_eq!(booking.unwrap().status, BookingStatus::Confirmed);
                    completed += 1;
                }
                HoldStatus::Expired => {
                    assert_eq!(refunds, 1, "neither a booking nor a refund for {}", held.id);
                }
                other => panic!("hold {} ended {other:?}", held.id),
            }
        }
        let (capacity, remaining, confirmed) = counts(&engine, seats[0]).await;
        assert_eq!(capacity, SEATS as i64);
        assert!(confirmed <= capacity, "oversold: {confirmed}");
        assert_eq!(remaining, capacity - confirmed);
        assert!(confirmed >= completed, "{confirmed} bookings, {completed} completed holds");
        assert_eq!(duplicates(&engine).await, 0);
        eprintln!("{completed} paid holds booked, {} refunded, {} seats to others",
            SEATS as i64 - completed, confirmed - completed);
    }
}
