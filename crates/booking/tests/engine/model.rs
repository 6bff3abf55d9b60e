//! The property test: random sequences of bookings, holds, payments, releases, cancellations,
//! check-ins at the door, the waiting list and the passing of time behave exactly like a model
//! of the booking rules, on both stores.

use boxoffice_booking::command::Made;
use boxoffice_booking::hold::HoldStatus;
use boxoffice_booking::waitlist::WaitlistStatus;

use crate::*;

/// How long a hold lasts in the model: a minute and a half, so that a hold taken just before a
/// tick is still active after it and expired after the next.
const HOLD_SECONDS: i64 = 90;

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    Book {
        user: usize,
        seat: usize,
    },
    Hold {
        user: usize,
        seat: usize,
    },
    Pay {
        user: usize,
    },
    Release {
        user: usize,
    },
    Cancel {
        user: usize,
    },
    /// A door scans the user's ticket (their booking, or the one they cancelled last) with one of
    /// a few nonces, so that some scans are a scanner's retries of others.
    Scan {
        user: usize,
        nonce: u8,
    },
    /// The user joins the waiting list of a seat type.
    Join {
        user: usize,
        seat: usize,
    },
    /// The user leaves the waiting list (their latest entry), letting an offered seat go.
    Leave {
        user: usize,
    },
    /// A minute passes: sales open after the first, the concert starts after the fourth. The
    /// sales timer then expires the holds that fell due, as it does at their `expires_at`.
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..4usize, 0..2usize).prop_map(|(user, seat)| Op::Book { user, seat }),
        4 => (0..4usize, 0..2usize).prop_map(|(user, seat)| Op::Hold { user, seat }),
        3 => (0..4usize).prop_map(|user| Op::Pay { user }),
        2 => (0..4usize).prop_map(|user| Op::Release { user }),
        3 => (0..4usize).prop_map(|user| Op::Cancel { user }),
        6 => (0..4usize, 0..3u8).prop_map(|(user, nonce)| Op::Scan { user, nonce }),
        4 => (0..4usize, 0..2usize).prop_map(|(user, seat)| Op::Join { user, seat }),
        1 => (0..4usize).prop_map(|user| Op::Leave { user }),
        2 => Just(Op::Tick),
    ]
}

/// What a user has, in the model.
#[derive(Debug, Clone, Copy)]
enum Has {
    Booking {
        id: Uuid,
        seat: usize,
    },
    /// Active until `expires` (seconds since the test began), expired from then on. `offer`: a
    /// waiting-list offer (its id is learnt from the store once made).
    Hold {
        id: Uuid,
        seat: usize,
        expires: i64,
        offer: bool,
    },
}

/// The model: what each user has, and the seats; the bookings users cancelled last, and the
/// tickets checked in (with the nonce of the scan that did it).
struct Model {
    capacity: [i64; 2],
    has: HashMap<usize, Has>,
    cancelled: HashMap<usize, Uuid>,
    checked_in: HashMap<Uuid, u8>,
    /// The users waiting, in the order they joined, with the seat type they wait for.
    line: Vec<(usize, usize)>,
    /// Each user's latest waiting-list entry and where it stands.
    entries: HashMap<usize, (Uuid, WaitlistStatus)>,
}

impl Model {
    fn active_hold(&self, user: usize, now: i64) -> bool {
        matches!(self.has.get(&user), Some(Has::Hold { expires, .. }) if now < *expires)
    }

    fn taken(&self, seat: usize, now: i64) -> (i64, i64) {
        let mut booked = 0;
        let mut held = 0;
        for has in self.has.values() {
            match *has {
                Has::Booking { seat: s, .. } if s == seat => booked += 1,
                Has::Hold {
                    seat: s, expires, ..
                } if s == seat && now < expires => held += 1,
                _ => {}
            }
        }
        (booked, held)
    }

    fn remaining(&self, seat: usize, now: i64) -> i64 {
        let (booked, held) = self.taken(seat, now);
        self.capacity[seat] - booked - held
    }

    fn claims(&self, user: usize, now: i64) -> bool {
        matches!(self.has.get(&user), Some(Has::Booking { .. })) || self.active_hold(user, now)
    }

    fn set_entry(&mut self, user: usize, status: WaitlistStatus) {
        if let Some(entry) = self.entries.get_mut(&user) {
            entry.1 = status;
        }
    }

    /// A seat of type `seat` came free: while sales are open, the first fans waiting are offered
    /// the free seats; a fan whose turn comes while they hold a seat of the concert leaves the
    /// line instead.
    fn hand_on(&mut self, seat: usize, now: i64, minutes: i64) {
        if !(1..4).contains(&minutes) {
            return;
        }
        while self.remaining(seat, now) > 0 {
            let Some(place) = self.line.iter().position(|(_, wanted)| *wanted == seat) else {
                break;
            };
            let (user, _) = self.line.remove(place);
            if self.claims(user, now) {
                self.set_entry(user, WaitlistStatus::Left);
                continue;
            }
            let expires = now + HOLD_SECONDS;
            let id = Uuid::nil();
            let offer = true;
            self.has.insert(
                user,
                Has::Hold {
                    id,
                    seat,
                    expires,
                    offer,
                },
            );
            self.set_entry(user, WaitlistStatus::Offered);
        }
    }

    /// What joining the waiting list must come to at `now`.
    fn expect_join(&self, user: usize, seat: usize, now: i64, minutes: i64) -> &'static str {
        let waiting = matches!(
            self.entries.get(&user),
            Some((_, WaitlistStatus::Waiting | WaitlistStatus::Offered))
        );
        if minutes >= 4 {
            "closed"
        } else if self.remaining(seat, now) > 0 {
            "seats_available"
        } else if self.claims(user, now) {
            "already_booked"
        } else if waiting {
            "already_waitlisted"
        } else {
            "created"
        }
    }

    /// What a booking or a hold request must come to at `now`.
    fn expect_seat(&self, user: usize, seat: usize, now: i64, minutes: i64) -> &'static str {
        let claims =
            matches!(self.has.get(&user), Some(Has::Booking { .. })) || self.active_hold(user, now);
        if minutes >= 4 {
            "closed"
        } else if minutes < 1 {
            "not_open"
        } else if self.remaining(seat, now) == 0 {
            "sold_out"
        } else if claims {
            "already_booked"
        } else {
            "created"
        }
    }
}

fn refusal(expected: &str, error: &BookingError) -> bool {
    matches!(
        (expected, error),
        ("closed", BookingError::BookingClosed)
            | ("not_open", BookingError::SalesNotOpen)
            | ("sold_out", BookingError::SoldOut)
            | ("already_booked", BookingError::AlreadyBooked)
            | ("seats_available", BookingError::SeatsAvailable)
            | ("already_waitlisted", BookingError::AlreadyWaitlisted)
    )
}

/// Holds of the seat type still active at `now` (stored `active` and not yet past expiry).
async fn live_holds(engine: &Engine, seat_type_id: Uuid, now: OffsetDateTime) -> i64 {
    let query = "SELECT count(*) FROM holds
                 WHERE seat_type_id = $1 AND status = 'active' AND expires_at > $2";
    match &engine.store {
        Store::Sqlite(db) => sqlx::query_scalar(query)
            .bind(seat_type_id)
            .bind(boxoffice_shared::clock::to_millis(now))
            .fetch_one(&db.read)
            .await
            .unwrap(),
        Store::Postgres(db) => sqlx::query_scalar(query)
            .bind(seat_type_id)
            .bind(now)
            .fetch_one(&db.pool)
            .await
            .unwrap(),
    }
}

/// Holds of the seat type stored `active`, due or not: their seats are out of `remaining`.
async fn stored_active_holds(engine: &Engine, seat_type_id: Uuid) -> i64 {
    let query = "SELECT count(*) FROM holds WHERE seat_type_id = $1 AND status = 'active'";
    count_of(engine, query, seat_type_id).await
}

/// Random sequences over four users and two small seat types behave exactly like the model: a
/// seat is taken (booked or held) only if one is left and sales are open (from the on-sale
/// instant to the start); a user has at most one booking or active hold; a hold is active until
/// its expiry and its seat is free from then; a paid active hold becomes the user's booking
/// without taking a second seat; a release or a cancel returns exactly one seat; a door admits
/// a confirmed ticket once, admits the same scan (nonce) again, and refuses every other scan of
/// it and every scan of a cancelled ticket. After every
/// step the store agrees: `remaining == capacity − confirmed − holds stored active`, and the
/// model's counts are the store's with due holds counted free.
async fn booking_rules_match_the_model(backend: Backend, ops: Vec<Op>) {
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::hours(1);
    let opens = start - time::Duration::minutes(3);
    let began = opens - time::Duration::minutes(1);
    let clock = Arc::new(ManualClock::new(began));
    let checkout = Checkout {
        hold_ttl: Duration::from_secs(HOLD_SECONDS as u64),
        offer_ttl: Duration::from_secs(HOLD_SECONDS as u64),
        ..Checkout::default()
    };
    let engine = engine_with(&backend, clock.clone(), checkout).await;
    let (concert_id, seats) = concert_opening(&engine, Some(opens), start, &[2, 1]).await;
    let users: Vec<AuthUser> = (0..4).map(|_| customer()).collect();
    let mut model = Model {
        capacity: [2, 1],
        has: HashMap::new(),
        cancelled: HashMap::new(),
        checked_in: HashMap::new(),
        line: Vec::new(),
        entries: HashMap::new(),
    };
    let door = AuthUser {
        role: boxoffice_shared::token::Role::Staff,
        ..customer()
    };
    let mut minutes = 0;
    for op in ops {
        let now = minutes * 60;
        match op {
            Op::Book { user, seat } => {
                let expected = model.expect_seat(user, seat, now, minutes);
                let outcome = engine
                    .service
                    .book(users[user], concert_id, seats[seat], None)
                    .await;
                match outcome {
                    Ok(BookOutcome::Created(booking)) if expected == "created" => {
                        model.has.insert(
                            user,
                            Has::Booking {
                                id: booking.id,
                                seat,
                            },
                        );
                    }
                    Err(error) if refusal(expected, &error) => {}
                    other => panic!("book: expected {expected}, got {other:?}"),
                }
            }
            Op::Hold { user, seat } => {
                let expected = model.expect_seat(user, seat, now, minutes);
                let outcome = engine
                    .service
                    .hold(users[user], concert_id, seats[seat], None)
                    .await;
                match outcome {
                    Ok(Made::Created(hold)) if expected == "created" => {
                        let expires = now + HOLD_SECONDS;
                        model.has.insert(
                            user,
                            Has::Hold {
                                id: hold.id,
                                seat,
                                expires,
                                offer: false,
                            },
                        );
                    }
                    Err(error) if refusal(expected, &error) => {}
                    other => panic!("hold: expected {expected}, got {other:?}"),
                }
            }
            Op::Pay { user } => {
                let Some(Has::Hold {
                    id,
                    seat,
                    expires,
                    offer,
                }) = model.has.get(&user).copied()
                else {
                    continue;
                };
                let outcome = engine
                    .service
                    .pay(users[user], id, Some("pm_card_visa".into()))
                    .await;
                match outcome {
                    Ok(hold) if now < expires && minutes < 4 => {
                        assert_eq!(hold.status, HoldStatus::Completed);
                        let booking = hold.booking_id.unwrap();
                        model.has.insert(user, Has::Booking { id: booking, seat });
                        if offer {
                            model.set_entry(user, WaitlistStatus::Completed);
                        }
                    }
                    Err(BookingError::BookingClosed) if now < expires && minutes >= 4 => {}
                    Err(BookingError::HoldExpired) if now >= expires => {}
                    other => panic!("pay at {now} s of a hold until {expires} s: {other:?}"),
                }
            }
            Op::Release { user } => {
                let Some(Has::Hold {
                    id,
                    seat,
                    expires,
                    offer,
                }) = model.has.get(&user).copied()
                else {
                    continue;
                };
                let outcome = engine.service.release(users[user], id).await;
                match outcome {
                    Ok(hold) if now < expires => {
                        assert_eq!(hold.status, HoldStatus::Released);
                        model.has.remove(&user);
                        if offer {
                            model.set_entry(user, WaitlistStatus::Left);
                        }
                        model.hand_on(seat, now, minutes);
                    }
                    Err(BookingError::HoldNotActive) if now >= expires => {}
                    other => panic!("release at {now} s of a hold until {expires} s: {other:?}"),
                }
                model.has.remove(&user);
            }
            Op::Cancel { user } => {
                let Some(Has::Booking { id, seat }) = model.has.get(&user).copied() else {
                    continue;
                };
                let outcome = engine.service.cancel(users[user], id).await;
                if minutes >= 4 {
                    assert!(
                        matches!(outcome, Err(BookingError::BookingClosed)),
                        "{outcome:?}"
                    );
                } else {
                    assert_eq!(outcome.unwrap().status, BookingStatus::Cancelled);
                    model.has.remove(&user);
                    model.cancelled.insert(user, id);
                    model.hand_on(seat, now, minutes);
                }
            }
            Op::Scan { user, nonce } => {
                let (booking, confirmed) = match model.has.get(&user) {
                    Some(Has::Booking { id, .. }) => (*id, true),
                    _ => match model.cancelled.get(&user) {
                        Some(id) => (*id, false),
                        None => continue,
                    },
                };
                let code = engine.service.ticket_code(booking, concert_id);
                let outcome = engine
                    .service
                    .check_in(door, concert_id, &code, Some(format!("scan-{nonce}")))
                    .await;
                let first = model.checked_in.get(&booking).copied();
                // The door's rule: the scan that checked it in, sent again, is admitted again;
                // a cancelled ticket is refused; a ticket checked in is refused; else admitted.
                let expected = match first {
                    Some(first) if first == nonce => "again",
                    _ if !confirmed => "cancelled",
                    Some(_) => "already",
                    None => "admitted",
                };
                match (expected, outcome) {
                    ("again" | "admitted", Ok(admitted)) => {
                        assert_eq!(admitted.checked_in.booking_id, booking);
                        model.checked_in.insert(booking, nonce);
                    }
                    ("cancelled", Err(BookingError::TicketCancelled))
                    | ("already", Err(BookingError::AlreadyCheckedIn(_))) => {}
                    (expected, other) => panic!(
                        "scan {nonce} of a {} ticket checked in by {first:?}: expected \
                         {expected}, got {other:?}",
                        if confirmed { "confirmed" } else { "cancelled" }
                    ),
                }
            }
            Op::Join { user, seat } => {
                join(
                    &engine,
                    &mut model,
                    users[user],
                    (user, seat),
                    concert_id,
                    &seats,
                    minutes,
                )
                .await;
            }
            Op::Leave { user } => leave(&engine, &mut model, users[user], user, minutes).await,
            Op::Tick => {
                clock.advance(time::Duration::minutes(1));
                minutes += 1;
                engine.service.expire_holds().await.unwrap();
                model.expire(minutes);
            }
        }
        check_the_line(&engine, &mut model, &users, &seats, minutes).await;
        let now = minutes * 60;
        let at = began + time::Duration::seconds(now);
        for (index, seat) in seats.iter().enumerate() {
            let (capacity, stored, confirmed) = counts(&engine, *seat).await;
            let (booked, held) = model.taken(index, now);
            assert_eq!(confirmed, booked, "confirmed bookings of seat type {index}");
            assert_eq!(live_holds(&engine, *seat, at).await, held, "live holds");
            assert_eq!(
                stored,
                capacity - confirmed - stored_active_holds(&engine, *seat).await,
                "the stored count of seat type {index}"
            );
        }
    }
    assert_eq!(duplicates(&engine).await, 0);
    // One check-in per ticket admitted, and no other (the schema's primary key and trigger).
    let sql = "SELECT count(*) FROM checkins c JOIN bookings b ON b.id = c.booking_id
               WHERE b.concert_id = $1";
    assert_eq!(
        count_of(&engine, sql, concert_id).await,
        model.checked_in.len() as i64
    );
}

/// Joining: refused as the model says, or the user's new entry, waiting at the end of the line.
async fn join(
    engine: &Engine,
    model: &mut Model,
    fan: AuthUser,
    (user, seat): (usize, usize),
    concert_id: Uuid,
    seats: &[Uuid],
    minutes: i64,
) {
    let expected = model.expect_join(user, seat, minutes * 60, minutes);
    match engine
        .service
        .join_waitlist(fan, concert_id, seats[seat])
        .await
    {
        Ok(entry) if expected == "created" => {
            assert_eq!(entry.status, WaitlistStatus::Waiting);
            model.line.push((user, seat));
            model
                .entries
                .insert(user, (entry.id, WaitlistStatus::Waiting));
        }
        Err(error) if refusal(expected, &error) => {}
        other => panic!("join: expected {expected}, got {other:?}"),
    }
}

/// Leaving: a waiting entry is left; an offered one lets its seat go to the next fan; an ended
/// one stays as it is.
async fn leave(engine: &Engine, model: &mut Model, fan: AuthUser, user: usize, minutes: i64) {
    let Some((entry_id, status)) = model.entries.get(&user).copied() else {
        return;
    };
    engine.service.leave_waitlist(fan, entry_id).await.unwrap();
    match status {
        WaitlistStatus::Waiting => {
            model.line.retain(|(waiting, _)| *waiting != user);
            model.set_entry(user, WaitlistStatus::Left);
        }
        WaitlistStatus::Offered => {
            let Some(Has::Hold { seat, .. }) = model.has.remove(&user) else {
                panic!("an offered entry without its hold in the model");
            };
            model.set_entry(user, WaitlistStatus::Left);
            model.hand_on(seat, minutes * 60, minutes);
        }
        _ => {}
    }
}

impl Model {
    /// The holds that fell due in the minute just passed are expired (the sales timer): an
    /// offer's entry with its hold, and their seats go to the waiting lists.
    fn expire(&mut self, minutes: i64) {
        let now = minutes * 60;
        let mut freed = Vec::new();
        let due: Vec<(usize, usize, bool)> = self
            .has
            .iter()
            .filter_map(|(user, has)| match *has {
                Has::Hold {
                    seat,
                    expires,
                    offer,
                    ..
                } if expires <= now && expires > now - 60 => Some((*user, seat, offer)),
                _ => None,
            })
            .collect();
        for (user, seat, offer) in due {
            if offer {
                self.set_entry(user, WaitlistStatus::Expired);
            }
            freed.push(seat);
        }
        freed.sort_unstable();
        freed.dedup();
        for seat in freed {
            self.hand_on(seat, now, minutes);
        }
    }
}

/// After every step: each user's entry stands where the model says (a waiting one at its place
/// in line), the model learns the ids of the holds offered, and while sales are open no seat
/// is free to the public while anyone waits for its type.
async fn check_the_line(
    engine: &Engine,
    model: &mut Model,
    users: &[AuthUser],
    seats: &[Uuid],
    minutes: i64,
) {
    let entries: Vec<(usize, Uuid, WaitlistStatus)> = model
        .entries
        .iter()
        .map(|(user, (id, status))| (*user, *id, *status))
        .collect();
    for (user, id, status) in entries {
        let stored = engine
            .service
            .waitlist_entry(users[user], id)
            .await
            .unwrap();
        assert_eq!(stored.status, status, "entry of user {user}");
        let place = model.line.iter().position(|(waiting, _)| *waiting == user);
        let position = place.map(|place| {
            let seat = model.line[place].1;
            model.line[..=place]
                .iter()
                .filter(|(_, s)| *s == seat)
                .count() as i64
        });
        assert_eq!(stored.position, position, "place of user {user}");
        if let Some(Has::Hold {
            id, offer: true, ..
        }) = model.has.get_mut(&user)
            && id.is_nil()
        {
            *id = stored.hold_id.unwrap();
        }
    }
    if (1..4).contains(&minutes) {
        for (index, seat) in seats.iter().enumerate() {
            if model.line.iter().any(|(_, wanted)| *wanted == index) {
                assert_eq!(
                    counts(engine, *seat).await.1,
                    0,
                    "a free seat while fans wait"
                );
            }
        }
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn booking_rules_match_the_model_on_sqlite(ops in proptest::collection::vec(op(), 1..40)) {
        current_thread().block_on(booking_rules_match_the_model(Backend::Sqlite, ops));
    }
}

/// The same property on PostgreSQL. Every case starts an engine of its own (its own clock) on one
/// database created for the whole run: a database per case would cost more than the cases
/// themselves, and a case only looks at its own concert, seat types and users.
#[test]
fn booking_rules_match_the_model_on_postgres() {
    let runtime = current_thread();
    let Some(database) = runtime.block_on(TestDatabase::create(
        "engine::booking_rules_match_the_model_on_postgres",
    )) else {
        return;
    };
    let backend = Backend::Postgres(Arc::new(database));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        runtime.block_on(booking_rules_match_the_model(backend.clone(), ops));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}\n{runner}");
    }
}
