//! `checkout`: every prepared user holds a seat (user `i` chooses seat type `i mod k`) and
//! pays for it — a share of them after a declined card (`--decline-share`), and a share never
//! (`--abandon-share`), so that their holds expire during the run. The measured phase is the
//! checkouts; the run then waits past the last unpaid hold's `expires_at` until the sales
//! report shows no seat held, and verifies the bookings like `onsale` and the holds as
//! [`crate::holds`] does. Reported: completed checkouts (hold + pay) per second, and their
//! ratio to `/healthz` with `--baseline`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use time::OffsetDateTime;

use super::outcome::{Outcome, server_error_check, verify_end};
use super::spread::spot;
use crate::args::{LoadtestArgs, SeatTypeSpec};
use crate::client::{Answer, Call, Conn};
use crate::holds::{
    self, HoldLedger, HoldView, PAY_DECLINED, PAY_OK, PaidHold, SalesMonitor, UnpaidHold,
};
use crate::phase::{Budget, Ctx, Worker};
use crate::report::{Check, Figure, Rate};
use crate::setup::{PRICE_CENTS, prepare};
use crate::verify::User;

/// How long after the last unpaid hold's `expires_at` the run waits for the sales report to
/// show every seat back before it judges that they did not come back.
const EXPIRY_GRACE: time::Duration = time::Duration::seconds(30);

/// How often the sales report is sampled while the checkouts run.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The target: completed checkouts per second ≥ this share of `/healthz` requests per second.
const TARGET_RATIO: f64 = 0.25;

/// What a user does with the hold they get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Pays with a good card.
    Pay,
    /// Pays with a declined card first (402 `payment_declined`), then with a good one.
    DeclinedFirst,
    /// Never pays: the hold expires.
    Abandon,
}

/// The plan of user `user` for these shares, spread by the golden-ratio sequence
/// (`spread::spot`): every prefix of the users and every seat type's users get close to the
/// shares.
pub fn plan_of(user: usize, decline: f64, abandon: f64) -> Plan {
    let spot = spot(user);
    if spot < abandon {
        Plan::Abandon
    } else if spot < abandon + decline {
        Plan::DeclinedFirst
    } else {
        Plan::Pay
    }
}

/// Completed checkouts per second, and their ratio to `/healthz` against [`TARGET_RATIO`].
fn checkout_rate(checkouts: u64) -> Rate {
    Rate {
        name: "completed checkouts",
        counted: "checkouts (hold + pay) completed",
        short: "checkouts",
        count: checkouts,
        target: TARGET_RATIO,
    }
}

/// How one user's checkout ended.
#[derive(Debug)]
enum Fate {
    /// 409 `sold_out` on the hold.
    SoldOut,
    /// Paid: the hold became `booking_id`; `declined` when a declined card came first.
    Paid {
        hold: HoldView,
        booking_id: String,
        declined: bool,
    },
    /// Left unpaid on purpose, or (`late`) paid after it expired: 409 `hold_expired`.
    Unpaid { hold: HoldView, late: bool },
    /// A 5xx or no answer somewhere: what the user holds is read back at the end.
    Unsure,
    /// Any other answer, as `"STEP STATUS CODE"`.
    Unexpected(String),
}

fn unexpected(step: &str, answer: &Answer) -> Fate {
    if answer.is_server_error() {
        return Fate::Unsure;
    }
    Fate::Unexpected(format!(
        "{step} {} {}",
        answer.status().map_or(0, |status| status.as_u16()),
        answer.code().unwrap_or("-")
    ))
}

/// One user's checkout (`auth` is theirs): hold, then pay as `plan` says.
async fn check_out(worker: &mut Worker, hold: &Call, auth: &HeaderValue, plan: Plan) -> Fate {
    let (answer, body) = worker
        .call_keeping_body(&hold.clone().with_auth(auth.clone()))
        .await;
    if answer.is(StatusCode::CONFLICT, "sold_out") {
        return Fate::SoldOut;
    }
    let held = (answer.status() == Some(StatusCode::CREATED))
        .then(|| HoldView::parse(body.as_ref()))
        .flatten();
    let Some(view) = held else {
        return unexpected("hold", &answer);
    };
    if plan == Plan::Abandon {
        return Fate::Unpaid {
            hold: view,
            late: false,
        };
    }
    let pay = |body| holds::pay_call(&view.id, body).map(|call| call.with_auth(auth.clone()));
    let (Ok(declined_call), Ok(pay_call)) = (pay(PAY_DECLINED), pay(PAY_OK)) else {
        return Fate::Unexpected(format!("hold id {:?} makes no path", view.id));
    };
    let declined = plan == Plan::DeclinedFirst;
    if declined {
        let answer = worker.call(&declined_call, false).await;
        if !answer.is(StatusCode::PAYMENT_REQUIRED, "payment_declined") {
            return unexpected("declined payment", &answer);
        }
    }
    let (answer, body) = worker.call_keeping_body(&pay_call).await;
    if answer.is(StatusCode::CONFLICT, "hold_expired") {
        return Fate::Unpaid {
            hold: view,
            late: true,
        };
    }
    let paid = (answer.status() == Some(StatusCode::OK))
        .then(|| HoldView::parse(body.as_ref()))
        .flatten()
        .filter(|paid| paid.status == "completed");
    match paid.and_then(|paid| paid.booking_id) {
        Some(booking_id) => Fate::Paid {
            hold: view,
            booking_id,
            declined,
        },
        None => unexpected("payment", &answer),
    }
}

/// What every worker shares.
#[derive(Clone)]
struct Shared {
    users: Arc<Vec<User>>,
    next: Arc<AtomicUsize>,
    budget: Arc<Budget>,
    /// `POST /holds`, one per seat type.
    hold: Arc<Vec<Call>>,
    /// Paid holds per seat type answered so far, for the sales monitor.
    paid: Arc<Vec<AtomicU64>>,
    decline: f64,
    abandon: f64,
}

/// One worker's share of the phase: the next user's checkout until every user has tried or
/// the budget is spent.
async fn walk(
    mut worker: Worker,
    mut fates: Vec<(usize, Fate)>,
    shared: Shared,
) -> (Worker, Vec<(usize, Fate)>) {
    while shared.budget.take() {
        let user = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(found) = shared.users.get(user) else {
            break;
        };
        let seat = user % shared.hold.len();
        let plan = plan_of(user, shared.decline, shared.abandon);
        let fate = check_out(&mut worker, &shared.hold[seat], &found.auth, plan).await;
        if matches!(fate, Fate::Paid { .. }) {
            shared.paid[seat].fetch_add(1, Ordering::SeqCst);
        }
        fates.push((user, fate));
    }
    (worker, fates)
}

/// The users' fates sorted out.
#[derive(Default)]
struct Tally {
    ledger: HoldLedger,
    attempted: usize,
    sold_out: usize,
    declined_then_paid: usize,
    late: usize,
    /// `"STEP STATUS CODE ×COUNT"`, sorted.
    unexpected: Vec<String>,
}

fn tally(fates: Vec<Vec<(usize, Fate)>>, k: usize) -> Tally {
    let mut tally = Tally::default();
    let mut unexpected: HashMap<String, u64> = HashMap::new();
    for (user, fate) in fates.into_iter().flatten() {
        tally.attempted += 1;
        let seat_type = user % k;
        match fate {
            Fate::SoldOut => tally.sold_out += 1,
            Fate::Paid {
                hold,
                booking_id,
                declined,
            } => {
                tally.declined_then_paid += usize::from(declined);
                tally.ledger.paid.push(PaidHold {
                    hold_id: hold.id,
                    user,
                    seat_type,
                    booking_id,
                });
            }
            Fate::Unpaid { hold, late } => {
                tally.late += usize::from(late);
                tally.ledger.unpaid.push(UnpaidHold {
                    hold_id: hold.id,
                    user,
                    seat_type,
                    expires_at: hold.expires_at,
                });
            }
            Fate::Unsure => tally.ledger.unsure_users.push(user),
            Fate::Unexpected(what) => {
                *unexpected.entry(what).or_default() += 1;
                // Whatever the user holds is read back from the server.
                tally.ledger.unsure_users.push(user);
            }
        }
    }
    tally.unexpected = unexpected
        .into_iter()
        .map(|(what, count)| format!("{what} ×{count}"))
        .collect();
    tally.unexpected.sort();
    tally
}

/// Every prepared user checks out once; then the unpaid holds are waited out and everything
/// is verified.
pub(super) async fn run(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        args.decline_share + args.abandon_share <= 1.0,
        "--decline-share {} and --abandon-share {} add up to more than every user",
        args.decline_share,
        args.abandon_share
    );
    let specs = args.seat_types_or(&SeatTypeSpec::onsale_default());
    let (admin, mut stage, users, setup) = prepare(ctx, args, &specs, args.users()).await?;
    let users = Arc::new(users);
    let hold_calls = holds::hold_calls(&stage.book)?;
    let mut conn = Conn::new(ctx.target.clone());
    let ttl = holds::probe_hold_time(&mut conn, &admin, &hold_calls[0]).await?;
    args.note(&format!("holds last {} s", ttl.as_secs()));

    let k = stage.seat_types.len();
    let shared = Shared {
        users: users.clone(),
        next: Arc::new(AtomicUsize::new(0)),
        budget: Arc::new(Budget::new(args.duration, args.requests)),
        hold: Arc::new(hold_calls),
        paid: Arc::new((0..k).map(|_| AtomicU64::new(0)).collect()),
        decline: args.decline_share,
        abandon: args.abandon_share,
    };
    let monitor = SalesMonitor::start(
        ctx.target.clone(),
        admin.clone(),
        stage.concert_id.clone(),
        shared.paid.clone(),
        SAMPLE_EVERY,
    );
    let total = args
        .requests
        .map_or(users.len() as u64, |cap| cap.min(users.len() as u64));
    let (phase, fates) = ctx
        .phase(
            "checkout",
            Some(total),
            (0..ctx.concurrency).map(|_| Vec::new()).collect(),
            move |worker, fates| walk(worker, fates, shared.clone()),
        )
        .await?;
    let phase_ended = OffsetDateTime::now_utc();
    let (samples, sample_failures) = monitor.stop().await?;
    let tally = tally(fates, k);
    let ledger = &tally.ledger;

    let read_sent = OffsetDateTime::now_utc();
    let after = holds::read_sales(&mut conn, &admin, &stage.concert_id).await?;
    // Unsure users may hold a seat whose expiry the tool does not know: wait for theirs too.
    let last_expiry = ledger
        .last_expiry()
        .into_iter()
        .chain((!ledger.unsure_users.is_empty()).then(|| phase_ended + ttl))
        .max();
    if let Some(last) = last_expiry {
        args.note(&format!(
            "waiting for {} unpaid holds to expire (the last at {last})…",
            ledger.unpaid.len()
        ));
        if let Ok(wait) = Duration::try_from(last - OffsetDateTime::now_utc()) {
            tokio::time::sleep(wait).await;
        }
    }
    let deadline = last_expiry.unwrap_or(read_sent) + EXPIRY_GRACE;
    let (none_held_at, end_sales) =
        holds::wait_until_none_held(&mut conn, &admin, &stage.concert_id, deadline).await?;

    let paid_per_seat = ledger.paid_per_seat(k);
    if ledger.unsure_users.is_empty() {
        for (seat, paid) in stage.seat_types.iter_mut().zip(&paid_per_seat) {
            seat.expected = Some(*paid);
        }
    }
    args.note("verifying…");
    let (mut checks, sold) = verify_end(ctx, &admin, &stage, &users, &ledger.bookings()).await?;
    let views = holds::observe(&ctx.target, &admin, ledger, ctx.concurrency.min(64)).await?;
    let mut first = vec![
        server_error_check(&phase),
        answers_check(&tally),
        holds::capacity_check(&stage.seat_types, &samples, &sample_failures),
        holds::after_checkouts_check(&stage.seat_types, ledger, &after, read_sent),
        expired_in_time_check(ledger, last_expiry, none_held_at, &end_sales),
    ];
    first.append(&mut checks);
    first.extend([
        holds::paid_check(&stage.seat_types, &users, ledger, &views),
        holds::unpaid_check(ledger, &views),
        holds::end_sales_check(&stage.seat_types, &paid_per_seat, PRICE_CENTS, &end_sales),
    ]);
    let figures = vec![seats_back_figure(last_expiry, none_held_at)];
    let chosen = super::round_robin_expectation(
        &stage
            .seat_types
            .iter()
            .map(|seat| seat.capacity)
            .collect::<Vec<_>>(),
        tally.attempted,
    );
    Ok(Outcome {
        chosen: Some(chosen.iter().map(|(chosen, _)| *chosen).collect()),
        confirmed: Some(sold),
        checks: first,
        figures,
        rate: Some(checkout_rate(ledger.paid.len() as u64)),
        ..Outcome::new(Some(stage), users.len(), setup, expectation(k, args), phase)
    })
}

fn expectation(k: usize, args: &LoadtestArgs) -> String {
    format!(
        "each user holds once (user i chooses seat type i mod {k}) and pays; {:.0}% after a \
         declined card, {:.0}% never pay and their holds expire; every hold answers 201 or 409 \
         sold_out; at the end the confirmed bookings are exactly the paid holds, every unpaid \
         hold has expired and given its seat back (nothing held, remaining == capacity − \
         confirmed)",
        args.decline_share * 100.0,
        args.abandon_share * 100.0
    )
}

/// Only the answers a checkout expects: 201 or 409 `sold_out` for the hold, 402
/// `payment_declined` for a declined card, 200 `completed` for a good one.
fn answers_check(tally: &Tally) -> Check {
    let ledger = &tally.ledger;
    Check::new(
        "only the answers a checkout expects",
        tally.unexpected.is_empty(),
        if tally.unexpected.is_empty() {
            format!(
                "{} users: {} paid ({} after a declined card), {} left their hold unpaid ({} of \
                 them paid after it expired: 409 hold_expired), {} sold out, {} unsure",
                tally.attempted,
                ledger.paid.len(),
                tally.declined_then_paid,
                ledger.unpaid.len(),
                tally.late,
                tally.sold_out,
                ledger.unsure_users.len()
            )
        } else {
            format!("unexpected: {}", tally.unexpected.join(", "))
        },
    )
}

/// Every unpaid hold's seat came back (the sales report shows none held) before the run's
/// deadline.
fn expired_in_time_check(
    ledger: &HoldLedger,
    last_expiry: Option<OffsetDateTime>,
    none_held_at: Option<OffsetDateTime>,
    end: &holds::HoldSales,
) -> Check {
    Check::new(
        "every unpaid hold expired within the run",
        none_held_at.is_some(),
        match (none_held_at, last_expiry) {
            (Some(_), Some(last)) => format!(
                "{} unpaid holds, the last due at {last}; the sales report then showed none held",
                ledger.unpaid.len()
            ),
            (Some(_), None) => "no unpaid hold; none held".to_owned(),
            (None, _) => format!(
                "{} seats still held {} s after the last expires_at",
                end.held(),
                EXPIRY_GRACE.whole_seconds()
            ),
        },
    )
}

/// How long after the last unpaid hold's `expires_at` the sales report showed none held.
fn seats_back_figure(
    last_expiry: Option<OffsetDateTime>,
    none_held_at: Option<OffsetDateTime>,
) -> Figure {
    let after = last_expiry
        .zip(none_held_at)
        .map(|(last, back)| (back - last).as_seconds_f64() * 1000.0);
    Figure::new(
        "unpaid holds' seats all back, after the last expires_at",
        after,
        "ms",
        "the sales report polled every 20 ms from the last expires_at until no seat was held \
         (an upper bound: the moment the first such answer arrived)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_shares_in_every_prefix() {
        for users in [10, 100, 1000, 20_000] {
            let plans: Vec<Plan> = (0..users).map(|user| plan_of(user, 0.1, 0.2)).collect();
            let count = |plan| plans.iter().filter(|&&p| p == plan).count() as f64;
            let n = users as f64;
            // The golden-ratio sequence keeps every share within a couple of users.
            assert!((count(Plan::Abandon) - 0.2 * n).abs() <= 2.0, "{users}");
            assert!(
                (count(Plan::DeclinedFirst) - 0.1 * n).abs() <= 2.0,
                "{users}"
            );
        }
        assert!((0..100).all(|user| plan_of(user, 0.0, 0.0) == Plan::Pay));
        assert!((0..100).all(|user| plan_of(user, 0.0, 1.0) == Plan::Abandon));
        assert!((0..100).all(|user| plan_of(user, 1.0, 0.0) == Plan::DeclinedFirst));
        // Both seat types of a two-type run get their share too.
        let even = (0..1000)
            .step_by(2)
            .filter(|&user| plan_of(user, 0.1, 0.2) == Plan::Abandon)
            .count();
        assert!((95..=105).contains(&even), "{even}");
    }
}
