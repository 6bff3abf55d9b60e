//! `expiry`: a storm of holds that fall due together, and what it does to everyone else.
//!
//! The concert has two seat types: `Held`, with exactly `--users` seats, and `Gone`, one seat
//! that one more user books first. Every holder holds one `Held` seat, all at once and as fast
//! as the server takes them: the hold time is the deployment's (`--hold-ttl`), so the holds
//! fall due within the same spread as they were made in, the shortest the server allows. From
//! `--duration` (default 5 s) before the first `expires_at`, `--concurrency` other users book
//! `Gone` over and over — every answer must be 409 `sold_out` — while the availability read is
//! polled every 10 ms ([`seats_back`](super::seats_back)) until every `Held` seat is back, and
//! one second more.
//!
//! Measured: how long after the `expires_at`s the seats came back (target: every seat within
//! 1 s), and the p99 of the others' sold-out answers during the expiry against before it
//! (target: within 2×). Verified: every holder got a hold, no seat came back before its
//! `expires_at`, every seat came back, every hold reads expired without a booking, and at the
//! end `Held` is whole again (remaining == capacity, nothing sold or held).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode};
use time::OffsetDateTime;

use super::outcome::{Outcome, verify_end};
use super::seats_back::{Returns, Sent, Watch, Watched, windows};
use crate::args::{LoadtestArgs, SeatTypeSpec};
use crate::client::{Answer, Call, Conn};
use crate::holds::{self, HoldLedger, HoldView, UnpaidHold};
use crate::phase::{Budget, Ctx};
use crate::report::{Check, Figure, PhaseStats};
use crate::setup::{PRICE_CENTS, Stage, prepare};
use crate::verify::{Booked, Ledger, User};

/// How long the sold-out answers are measured before the first hold falls due, by default.
const BEFORE: Duration = Duration::from_secs(5);
/// How long they are measured after every seat is back.
const AFTER: Duration = Duration::from_secs(1);
/// How long after the last `expires_at` the run waits for every seat before giving up.
const GRACE: time::Duration = time::Duration::seconds(30);
/// The targets: every seat back within this of its `expires_at`; the sold-out p99 during the
/// expiry within this multiple of the p99 before it.
const BACK_WITHIN_MS: f64 = 1000.0;
const P99_WITHIN: f64 = 2.0;

/// The users of a run by their part: `0..holders` hold, `holders` books `Gone`, the rest are
/// the others who book `Gone` again and again.
struct Cast {
    users: Arc<Vec<User>>,
    holders: usize,
}

impl Cast {
    fn seller(&self) -> usize {
        self.holders
    }

    fn other(&self, worker: usize) -> &User {
        let others = self.users.len() - self.holders - 1;
        &self.users[self.holders + 1 + worker % others]
    }
}

/// The one `Gone` seat booked by the seller; the ledger holds the booking.
async fn sell_out_gone(conn: &mut Conn, stage: &Stage, cast: &Cast) -> (Ledger, Check) {
    let seller = cast.seller();
    let call = stage.book[1]
        .clone()
        .with_auth(cast.users[seller].auth.clone());
    let mut ledger = Ledger::default();
    let answer = conn.send(&call, true).await;
    let sold = match &answer {
        Answer::Http {
            status: StatusCode::CREATED,
            id: Some(id),
            ..
        } => {
            ledger.confirmed.push(Booked {
                id: id.clone(),
                user: seller,
                seat_type: 1,
            });
            true
        }
        answer => {
            if answer.is_server_error() {
                ledger.unsure_users.push(seller);
            }
            false
        }
    };
    let check = Check::new(
        "Gone sold out before the run",
        sold,
        if sold {
            "its one seat booked (201)".to_owned()
        } else {
            format!("booking its one seat answered {answer:?}")
        },
    );
    (ledger, check)
}

/// Every holder holds one `Held` seat, `--concurrency` at a time. Returns the phase, the holds
/// (as unpaid: they must all expire) and the holders who got no hold, as lines.
async fn hold_all(
    ctx: &Ctx,
    cast: &Cast,
    hold: Call,
) -> anyhow::Result<(PhaseStats, HoldLedger, Vec<String>)> {
    type Got = Vec<(usize, Result<HoldView, Answer>)>;
    let (users, holders) = (cast.users.clone(), cast.holders);
    let next = Arc::new(AtomicUsize::new(0));
    let hold = Arc::new(hold);
    let (phase, got) = ctx
        .phase(
            "holds",
            Some(holders as u64),
            (0..ctx.concurrency).map(|_| Got::new()).collect(),
            move |mut worker, mut got: Got| {
                let (users, next, hold) = (users.clone(), next.clone(), hold.clone());
                async move {
                    loop {
                        let user = next.fetch_add(1, Ordering::Relaxed);
                        let Some(found) = users.get(user).filter(|_| user < holders) else {
                            break;
                        };
                        let call = hold.as_ref().clone().with_auth(found.auth.clone());
                        let (answer, body) = worker.call_keeping_body(&call).await;
                        let view = (answer.status() == Some(StatusCode::CREATED))
                            .then(|| HoldView::parse(body.as_ref()))
                            .flatten();
                        got.push((user, view.ok_or(answer)));
                    }
                    (worker, got)
                }
            },
        )
        .await?;
    let mut ledger = HoldLedger::default();
    let mut failures = Vec::new();
    for (user, got) in got.into_iter().flatten() {
        match got {
            Ok(hold) => ledger.unpaid.push(UnpaidHold {
                hold_id: hold.id,
                user,
                seat_type: 0,
                expires_at: hold.expires_at,
            }),
            Err(answer) => {
                if answer.is_server_error() {
                    ledger.unsure_users.push(user);
                }
                failures.push(format!("holder {user}: {answer:?}"));
            }
        }
    }
    Ok((phase, ledger, failures))
}

/// What the others' phase found.
struct Storm {
    phase: PhaseStats,
    watched: Watched,
    /// When the others started and stopped booking.
    started: OffsetDateTime,
    ended: OffsetDateTime,
    sent: Vec<Vec<Sent>>,
}

/// From `before` ahead of the first `expires_at` the others book `Gone` while the watcher
/// polls the availability, until every seat is back and [`AFTER`] more, or [`GRACE`] after the
/// last `expires_at`.
async fn storm(
    ctx: &Ctx,
    stage: &Stage,
    cast: &Cast,
    expiries: &[OffsetDateTime],
    before: Duration,
) -> anyhow::Result<Storm> {
    let (Some(&first), Some(&last)) = (expiries.first(), expiries.last()) else {
        anyhow::bail!("no hold to watch expire");
    };
    if let Ok(wait) = Duration::try_from(first - before - OffsetDateTime::now_utc()) {
        tokio::time::sleep(wait).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let held = &stage.seat_types[0];
    let watch = Watch {
        target: ctx.target.clone(),
        concert_id: stage.concert_id.clone(),
        seat_type_id: held.id.clone(),
        capacity: held.capacity as i64,
        deadline: last + GRACE,
        after: AFTER,
    };
    let watcher = tokio::spawn(watch.run(stop.clone()));
    // A bound of its own, should the watcher fail to raise `stop`.
    let longest = Duration::try_from(last + GRACE - OffsetDateTime::now_utc()).unwrap_or_default();
    let budget = Arc::new(Budget::new(Some(longest + AFTER * 5), None));
    let states: Vec<(Call, Vec<Sent>)> = (0..ctx.concurrency)
        .map(|worker| {
            let auth = cast.other(worker).auth.clone();
            (stage.book[1].clone().with_auth(auth), Vec::new())
        })
        .collect();
    let started = OffsetDateTime::now_utc();
    let (phase, states) = ctx
        .phase(
            "expiry",
            None,
            states,
            move |mut worker, (call, mut sent)| {
                let (stop, budget) = (stop.clone(), budget.clone());
                async move {
                    while !stop.load(Ordering::Relaxed) && budget.take() {
                        let at = OffsetDateTime::now_utc();
                        let clock = Instant::now();
                        let answer = worker.call(&call, false).await;
                        sent.push(Sent {
                            at,
                            took: clock.elapsed(),
                            answer,
                        });
                    }
                    (worker, (call, sent))
                }
            },
        )
        .await?;
    let ended = OffsetDateTime::now_utc();
    let watched = watcher.await?;
    Ok(Storm {
        phase,
        watched,
        started,
        ended,
        sent: states.into_iter().map(|(_, sent)| sent).collect(),
    })
}

/// Holds that fall due together; the others' sold-out answers meanwhile; every seat back.
pub(super) async fn run(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        args.concert_id.is_none() && args.seat_types.is_none() && args.requests.is_none(),
        "the expiry scenario makes its own concert (a seat type of --users seats and a sold-out \
         one) and runs until every seat is back: no --concert-id, --seat-types or --requests"
    );
    let holders = args.users();
    let specs = [
        SeatTypeSpec {
            name: "Held".to_owned(),
            capacity: holders as u64,
        },
        SeatTypeSpec {
            name: "Gone".to_owned(),
            capacity: 1,
        },
    ];
    let total = holders + 1 + ctx.concurrency;
    let (admin, mut stage, users, setup) = prepare(ctx, args, &specs, total).await?;
    let cast = Cast {
        users: Arc::new(users),
        holders,
    };
    let hold_call = holds::hold_calls(&stage.book)?.remove(0);
    let mut conn = Conn::new(ctx.target.clone());
    let ttl = holds::probe_hold_time(&mut conn, &admin, &hold_call).await?;
    let (gone, gone_check) = sell_out_gone(&mut conn, &stage, &cast).await;

    args.note(&format!(
        "{holders} users hold a seat each (holds last {} s)…",
        ttl.as_secs()
    ));
    let (holding, ledger, failures) = hold_all(ctx, &cast, hold_call).await?;
    let mut expiries: Vec<OffsetDateTime> = ledger.unpaid.iter().map(|h| h.expires_at).collect();
    expiries.sort();
    anyhow::ensure!(
        !expiries.is_empty(),
        "no holder got a hold: {}",
        failures.first().map_or("", String::as_str)
    );
    args.note("waiting for the holds to fall due…");
    let before = args.duration.unwrap_or(BEFORE);
    let storm = storm(ctx, &stage, &cast, &expiries, before).await?;
    let base = stage.seat_types[0].capacity as i64 - expiries.len() as i64;
    let returns = Returns::of(&expiries, base, &storm.watched.samples);
    let parts = windows(
        &storm.sent,
        storm.started,
        expiries[0],
        storm.watched.all_back_at,
        storm.ended,
    );

    stage.seat_types[0].expected = Some(0);
    stage.seat_types[1].expected = Some(gone.confirmed.len() as u64);
    args.note("verifying…");
    let end = End {
        admin: &admin,
        stage: &stage,
        cast: &cast,
        gone: &gone,
        ledger: &ledger,
    };
    let (mut checks, sold) = end.verify(ctx, &mut conn).await?;
    let mut first = vec![
        errors_check(&holding, &storm.phase),
        gone_check,
        holders_check(holders, &ledger, &failures),
        answers_check(&storm.phase),
        early_check(&returns, &storm.watched),
        all_back_check(&expiries, &storm.watched),
    ];
    first.append(&mut checks);
    let figures = figures(&holding, &expiries, &returns, &parts);
    let [ahead, during, after] = parts;
    Ok(Outcome {
        confirmed: Some(sold),
        checks: first,
        parts: vec![holding, ahead, during, after],
        figures,
        ..Outcome::new(
            Some(stage),
            cast.users.len(),
            setup,
            format!(
                "{holders} users each hold one Held seat, all at once; from {} s before the \
                 first expires_at until every seat is back, {} other users book the sold-out \
                 Gone seat type and get 409 sold_out; no seat comes back before its \
                 expires_at, every seat comes back, and at the end Held is whole (remaining == \
                 capacity, nothing sold or held) and every hold reads expired without a booking",
                before.as_secs_f64(),
                ctx.concurrency
            ),
            storm.phase,
        )
    })
}

/// What the end-of-run verification reads.
struct End<'a> {
    admin: &'a HeaderValue,
    stage: &'a Stage,
    cast: &'a Cast,
    gone: &'a Ledger,
    ledger: &'a HoldLedger,
}

impl End<'_> {
    /// The bookings (only `Gone`'s), every hold by id, and the sales report.
    async fn verify(&self, ctx: &Ctx, conn: &mut Conn) -> anyhow::Result<(Vec<Check>, Vec<u64>)> {
        let (mut checks, sold) =
            verify_end(ctx, self.admin, self.stage, &self.cast.users, self.gone).await?;
        let views = holds::observe(
            &ctx.target,
            self.admin,
            self.ledger,
            ctx.concurrency.min(64),
        )
        .await?;
        checks.push(holds::unpaid_check(self.ledger, &views));
        let sales = holds::read_sales(conn, self.admin, &self.stage.concert_id).await?;
        checks.push(holds::end_sales_check(
            &self.stage.seat_types,
            &[0, self.gone.confirmed.len() as u64],
            PRICE_CENTS,
            &sales,
        ));
        Ok((checks, sold))
    }
}

fn errors_check(holding: &PhaseStats, storm: &PhaseStats) -> Check {
    let (a, b) = (holding.server_errors, storm.server_errors);
    Check::new(
        "no server errors",
        a.total() + b.total() == 0,
        format!(
            "holds: 5xx {}, transport {}; sold-out bookings: 5xx {}, transport {}",
            a.http_5xx, a.transport, b.http_5xx, b.transport
        ),
    )
}

fn holders_check(holders: usize, ledger: &HoldLedger, failures: &[String]) -> Check {
    Check::new(
        "every holder got a hold",
        failures.is_empty() && ledger.unpaid.len() == holders,
        if failures.is_empty() {
            format!("{holders} holds of {holders} seats answered 201")
        } else {
            format!(
                "{} of {holders} got none, e.g. {}",
                failures.len(),
                failures[..failures.len().min(3)].join("; ")
            )
        },
    )
}

fn answers_check(storm: &PhaseStats) -> Check {
    let sold_out = storm.count(409, Some("sold_out"));
    Check::new(
        "every booking of the sold-out seat type answered 409 sold_out",
        sold_out == storm.requests && storm.requests > 0,
        format!("{sold_out} of {} answers were 409 sold_out", storm.requests),
    )
}

fn early_check(returns: &Returns, watched: &Watched) -> Check {
    Check::new(
        "no seat came back before its expires_at",
        returns.early.is_empty() && !watched.samples.is_empty(),
        if returns.early.is_empty() {
            format!(
                "{} availability reads, none showed more seats than holds had fallen due \
                 ({} reads failed)",
                watched.samples.len(),
                watched.failures
            )
        } else {
            format!(
                "{} reads showed seats back early, e.g. {}",
                returns.early.len(),
                returns.early[0]
            )
        },
    )
}

fn all_back_check(expiries: &[OffsetDateTime], watched: &Watched) -> Check {
    Check::new(
        "every seat came back",
        watched.all_back_at.is_some(),
        match watched.all_back_at {
            Some(at) => format!("all {} seats available again at {at}", expiries.len()),
            None => format!(
                "not every seat was back {} s after the last expires_at",
                GRACE.whole_seconds()
            ),
        },
    )
}

/// The figures of the run, with the targets.
fn figures(
    holding: &PhaseStats,
    expiries: &[OffsetDateTime],
    returns: &Returns,
    [before, during, _]: &[PhaseStats; 3],
) -> Vec<Figure> {
    let made = holding.count(201, None);
    let spread = match (expiries.first(), expiries.last()) {
        (Some(first), Some(last)) => Some((*last - *first).as_seconds_f64() * 1000.0),
        _ => None,
    };
    let p99 = |phase: &PhaseStats| phase.latency.as_ref().map(|latency| latency.p99_ms);
    let ratio = p99(before)
        .zip(p99(during))
        .map(|(before, during)| during / before);
    let within = |ms: f64| ms <= BACK_WITHIN_MS;
    let target = format!("≤ {BACK_WITHIN_MS} ms");
    vec![
        Figure::new(
            "holds made per second",
            (holding.seconds > 0.0).then(|| made as f64 / holding.seconds),
            "/s",
            format!("{made} holds in {:.2} s", holding.seconds),
        ),
        Figure::new(
            "spread of the expires_at",
            spread,
            "ms",
            "from the first hold's expires_at to the last one's: the time it took to make them",
        ),
        Figure::new(
            "first seat back, after the first expires_at",
            returns.first_back_ms,
            "ms",
            "availability polled every 10 ms; each time is when the answer arrived",
        ),
        Figure::new(
            "every seat back, after the last expires_at",
            returns.all_back_ms,
            "ms",
            "the first availability read showing remaining == capacity",
        )
        .with_target(&target, within),
        Figure::new(
            "longest a seat took to come back",
            returns.worst_lag.map(|(ms, _)| ms),
            "ms",
            match returns.worst_lag {
                Some((_, k)) => format!(
                    "over every k: from the k-th expires_at until k seats were seen back; the \
                     longest was k = {k}"
                ),
                None => "not every seat came back".to_owned(),
            },
        )
        .with_target(&target, within),
        Figure::new(
            "sold-out p99 during the expiry ÷ before it",
            ratio,
            "×",
            format!(
                "p99 {} ms over {} answers during, {} ms over {} before",
                p99(during).map_or("n/a".to_owned(), |ms| format!("{ms:.3}")),
                during.requests,
                p99(before).map_or("n/a".to_owned(), |ms| format!("{ms:.3}")),
                before.requests
            ),
        )
        .with_target(&format!("≤ {P99_WITHIN}×"), |ratio| ratio <= P99_WITHIN),
    ]
}
