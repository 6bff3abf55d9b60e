//! `waitlist`: a sold-out concert with a waiting list and a stream of cancels (contract,
//! "Waiting list").
//!
//! Not measured: one seat type (default: a seat for half the users) is sold out by the first
//! users; every other user joins its waiting list, one after the other, so that the tool knows
//! the line's order. Measured: half the holders (at most as many as wait) cancel at once, while
//! the users at the back of the line — those no cancel can reach — try to book the seat type
//! as the public would. Verified: every cancel answered 200; every public attempt 409
//! `sold_out` (a freed seat never reached the public); exactly the first fans in line, one per
//! cancel, are `offered` a hold of theirs, everyone behind them still `waiting` at their place;
//! each offered fan pays their hold and has a confirmed booking; and the end state holds
//! exactly the tool's bookings, never more than the capacity.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::outcome::{Outcome, server_error_check, verify_end};
use crate::args::{LoadtestArgs, SeatTypeSpec};
use crate::client::{Call, Conn};
use crate::phase::{Budget, Ctx, Worker};
use crate::report::Check;
use crate::setup::{book_each, prepare};
use crate::verify::{self, Booked};

/// A waiting-list entry as the API shows it.
#[derive(Debug, Clone, Deserialize)]
struct Entry {
    id: String,
    status: String,
    position: Option<u64>,
    hold_id: Option<String>,
}

/// A hold as the API shows it, as far as paying it needs.
#[derive(Debug, Deserialize)]
struct HoldView {
    status: String,
    booking_id: Option<String>,
}

/// One request of the measured phase.
enum Step {
    /// A holder cancels their booking (by index into the ledger's bookings).
    Cancel(usize),
    /// A fan at the back of the line tries to book, as the public.
    Public(usize),
}

/// What one worker saw.
#[derive(Default)]
struct Seen {
    cancelled: Vec<usize>,
    cancel_failures: Vec<String>,
    sold_out: u64,
    public_other: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    steps: Arc<Vec<Step>>,
    calls: Arc<Vec<Call>>,
    next: Arc<AtomicUsize>,
    budget: Arc<Budget>,
}

async fn walk(mut worker: Worker, mut seen: Seen, shared: Shared) -> (Worker, Seen) {
    while shared.budget.take() {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        let (Some(step), Some(call)) = (shared.steps.get(index), shared.calls.get(index)) else {
            break;
        };
        let answer = worker.call(call, false).await;
        match step {
            Step::Cancel(booking) if answer.status() == Some(StatusCode::OK) => {
                seen.cancelled.push(*booking);
            }
            Step::Cancel(_) => seen.cancel_failures.push(format!("{answer:?}")),
            Step::Public(_) if answer.is(StatusCode::CONFLICT, "sold_out") => seen.sold_out += 1,
            Step::Public(user) => seen.public_other.push(format!("user {user}: {answer:?}")),
        }
    }
    (worker, seen)
}

/// The line: each waiting user (by index) and their entry, in the order they joined.
async fn line_up(
    conn: &mut Conn,
    concert_id: &str,
    seat_type_id: &str,
    users: &[verify::User],
    waiting: std::ops::Range<usize>,
) -> anyhow::Result<Vec<(usize, Entry)>> {
    let body = serde_json::to_vec(&json!({ "seat_type_id": seat_type_id }))?;
    let path = format!("/api/v1/concerts/{concert_id}/waitlist");
    let mut line = Vec::with_capacity(waiting.len());
    for user in waiting {
        let call =
            Call::post(&path, Some(body.clone().into()))?.with_auth(users[user].auth.clone());
        let entry: Entry = conn
            .json(&call, StatusCode::CREATED)
            .await
            .context("joining the waiting list")?;
        line.push((user, entry));
    }
    Ok(line)
}

/// Every entry of the line as it stands now.
async fn read_line(
    ctx: &Ctx,
    users: &[verify::User],
    line: &[(usize, Entry)],
) -> anyhow::Result<Vec<Entry>> {
    let items: Vec<(usize, String, HeaderValue)> = line
        .iter()
        .enumerate()
        .map(|(place, (user, entry))| (place, entry.id.clone(), users[*user].auth.clone()))
        .collect();
    let mut read = verify::parallel(
        &ctx.target,
        ctx.concurrency.min(64),
        items,
        |mut conn: Conn, (place, id, auth): (usize, String, HeaderValue)| async move {
            let call = Call::get(&format!("/api/v1/waitlist/{id}"))?.with_auth(auth);
            let entry: Entry = conn.json(&call, StatusCode::OK).await?;
            Ok((conn, (place, entry)))
        },
    )
    .await?;
    read.sort_by_key(|(place, _)| *place);
    Ok(read.into_iter().map(|(_, entry)| entry).collect())
}

/// The first `offers` fans offered, everyone behind them waiting at their place.
fn order_check(entries: &[Entry], offers: usize) -> Check {
    let mut wrong = Vec::new();
    for (place, entry) in entries.iter().enumerate() {
        let fine = if place < offers {
            entry.status == "offered" && entry.hold_id.is_some() && entry.position.is_none()
        } else {
            entry.status == "waiting" && entry.position == Some((place - offers + 1) as u64)
        };
        if !fine {
            wrong.push(format!(
                "place {}: {} at {:?}",
                place + 1,
                entry.status,
                entry.position
            ));
        }
    }
    Check::new(
        "offers in order",
        wrong.is_empty(),
        format!(
            "{} of {} fans in line offered, the first {offers} expected; {}",
            entries
                .iter()
                .filter(|entry| entry.status == "offered")
                .count(),
            entries.len(),
            if wrong.is_empty() {
                "everyone behind waits at their place".to_owned()
            } else {
                wrong.into_iter().take(5).collect::<Vec<_>>().join("; ")
            }
        ),
    )
}

/// Each offered fan pays their hold; returns the bookings made, and the failures.
async fn pay_offers(
    ctx: &Ctx,
    users: &[verify::User],
    line: &[(usize, Entry)],
    entries: &[Entry],
) -> anyhow::Result<(Vec<Booked>, Vec<String>)> {
    let body = serde_json::to_vec(&json!({ "payment_method": "pm_card_visa" }))?;
    let items: Vec<(usize, String, HeaderValue)> = line
        .iter()
        .zip(entries)
        .filter_map(|((user, _), entry)| {
            let hold = entry.hold_id.clone()?;
            (entry.status == "offered").then(|| (*user, hold, users[*user].auth.clone()))
        })
        .collect();
    let paid = verify::parallel(
        &ctx.target,
        ctx.concurrency.min(64),
        items,
        move |mut conn: Conn, (user, hold, auth): (usize, String, HeaderValue)| {
            let body = body.clone();
            async move {
                let call = Call::post(&format!("/api/v1/holds/{hold}/pay"), Some(body.into()))?
                    .with_auth(auth);
                let paid = conn.json::<HoldView>(&call, StatusCode::OK).await;
                Ok((conn, (user, paid)))
            }
        },
    )
    .await?;
    let mut booked = Vec::new();
    let mut failures = Vec::new();
    for (user, paid) in paid {
        match paid {
            Ok(HoldView {
                status,
                booking_id: Some(id),
            }) if status == "completed" => booked.push(Booked {
                id,
                user,
                seat_type: 0,
            }),
            other => failures.push(format!("user {user}: {other:?}")),
        }
    }
    Ok((booked, failures))
}

/// The one seat type the scenario sells (half the users' worth unless `--seat-types` says), and
/// its capacity, which must leave users to wait in line.
fn seat_type(args: &LoadtestArgs) -> anyhow::Result<(Vec<SeatTypeSpec>, usize)> {
    let default = [SeatTypeSpec {
        name: "Waitlisted".to_owned(),
        capacity: (args.users() as u64 / 2).max(1),
    }];
    let specs = args.seat_types_or(&default);
    anyhow::ensure!(
        specs.len() == 1,
        "the waitlist scenario sells one seat type (--seat-types NAME:CAPACITY)"
    );
    let capacity = specs[0].capacity as usize;
    anyhow::ensure!(
        args.users() > capacity + 1,
        "the waitlist scenario needs more --users than seats: the rest wait in line"
    );
    Ok((specs, capacity))
}

/// A sold-out seat type, its waiting list, and a stream of cancels; offers in line order, never
/// a seat to the public while anyone waits.
pub(super) async fn run(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (specs, capacity) = seat_type(args)?;
    let (admin, stage, users, _) = prepare(ctx, args, &specs, args.users()).await?;
    args.note(&format!("{capacity} holders sell the seat type out…"));
    let (mut ledger, failures) = book_each(
        ctx,
        &stage,
        &users,
        (0..capacity).map(|user| (user, 0)).collect(),
    )
    .await?;
    anyhow::ensure!(
        ledger.confirmed.len() == capacity && ledger.unsure_users.is_empty(),
        "the holders did not sell the seat type out: {}",
        failures.first().map_or("", String::as_str)
    );
    let waiting = capacity..users.len();
    args.note(&format!("{} fans join the waiting list…", waiting.len()));
    let mut conn = Conn::new(ctx.target.clone());
    let seat_type_id = stage.seat_types[0].id.clone();
    let line = line_up(&mut conn, &stage.concert_id, &seat_type_id, &users, waiting).await?;
    let cancels = (capacity / 2).max(1).min(line.len() - 1);
    let setup = started.elapsed();

    // The phase: the cancels, each followed by a try of the public (the back of the line).
    let public: Vec<usize> = line[cancels..].iter().map(|(user, _)| *user).collect();
    let (steps, calls) = schedule(&ledger, &users, &stage, &public, cancels)?;
    let total = steps.len() as u64;
    let shared = Shared {
        steps: Arc::new(steps),
        calls: Arc::new(calls),
        next: Arc::new(AtomicUsize::new(0)),
        budget: Arc::new(Budget::new(None, None)),
    };
    args.note(&format!(
        "{cancels} holders cancel while the public tries to book…"
    ));
    let (phase, seen) = ctx
        .phase(
            "waitlist",
            Some(total),
            (0..ctx.concurrency).map(|_| Seen::default()).collect(),
            move |worker, seen| walk(worker, seen, shared.clone()),
        )
        .await?;

    args.note("verifying…");
    let mut cancelled: Vec<usize> = seen.iter().flat_map(|s| s.cancelled.clone()).collect();
    let cancel_failures: Vec<String> = seen
        .iter()
        .flat_map(|s| s.cancel_failures.clone())
        .collect();
    let public_other: Vec<String> = seen.iter().flat_map(|s| s.public_other.clone()).collect();
    let sold_out: u64 = seen.iter().map(|s| s.sold_out).sum();
    let entries = read_line(ctx, &users, &line).await?;
    let order = order_check(&entries, cancelled.len());
    let (paid, pay_failures) = pay_offers(ctx, &users, &line, &entries).await?;
    cancelled.sort_unstable();
    for booking in cancelled.iter().rev() {
        let booked = ledger.confirmed.remove(*booking);
        ledger.cancelled.push(booked);
    }
    let offers = paid.len();
    ledger.confirmed.extend(paid);
    let (mut booking_checks, sold) = verify_end(ctx, &admin, &stage, &users, &ledger).await?;
    let mut checks = vec![
        server_error_check(&phase),
        Check::new(
            "cancels",
            cancel_failures.is_empty(),
            format!(
                "{} of {cancels} cancels answered 200{}",
                cancelled.len(),
                first(&cancel_failures, "other")
            ),
        ),
        Check::new(
            "no freed seat reached the public",
            public_other.is_empty(),
            format!(
                "{sold_out} of {} public attempts answered 409 sold_out{}",
                sold_out + public_other.len() as u64,
                first(&public_other, "other")
            ),
        ),
        order,
        Check::new(
            "offers paid",
            pay_failures.is_empty() && offers == cancelled.len(),
            format!(
                "{offers} offered fans paid their holds and hold a booking{}",
                first(&pay_failures, "failure")
            ),
        ),
    ];
    checks.append(&mut booking_checks);
    let expectation = format!(
        "{capacity} seats sold out; {} fans wait; {cancels} holders cancel: the first {cancels} \
         fans in line are offered the seats and pay, the public gets none",
        line.len()
    );
    let mut stage = stage;
    stage.seat_types[0].expected = Some(capacity as u64);
    Ok(Outcome {
        chosen: Some(vec![users.len() as u64]),
        confirmed: Some(sold),
        checks,
        ..Outcome::new(Some(stage), users.len(), setup, expectation, phase)
    })
}

/// The phase's steps and their calls: each of the first `cancels` holders cancels, and a fan from
/// the back of the line (`public`) tries to book right after.
fn schedule(
    ledger: &verify::Ledger,
    users: &[verify::User],
    stage: &crate::setup::Stage,
    public: &[usize],
    cancels: usize,
) -> anyhow::Result<(Vec<Step>, Vec<Call>)> {
    let mut steps = Vec::new();
    let mut calls = Vec::new();
    for booking in 0..cancels {
        let booked = &ledger.confirmed[booking];
        steps.push(Step::Cancel(booking));
        calls.push(
            Call::post(&format!("/api/v1/bookings/{}/cancel", booked.id), None)?
                .with_auth(users[booked.user].auth.clone()),
        );
        let fan = public[booking % public.len()];
        steps.push(Step::Public(fan));
        calls.push(stage.book[0].clone().with_auth(users[fan].auth.clone()));
    }
    Ok((steps, calls))
}

/// "; first WHAT: …" naming the first of `failures`, or nothing when there is none.
fn first(failures: &[String], what: &str) -> String {
    failures
        .first()
        .map_or(String::new(), |first| format!("; first {what}: {first}"))
}
