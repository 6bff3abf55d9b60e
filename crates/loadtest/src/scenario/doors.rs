//! `doors`: a sold concert checked in by several doors at once (contract, "Tickets and
//! check-in").
//!
//! Not measured: every prepared user books one seat (seat types in turn, as long as they have
//! seats) and reads their ticket's `code`; `--doors` accounts are registered and made `staff`
//! by the admin. Measured: the scans. Every ticket is scanned 1, 2 or 3 times (about a third
//! each, spread by the golden-ratio sequence), its repeats close together in time and at
//! different doors ([`scan_plan`]), and a share of first scans (`--retry-share`) is sent again
//! with the same nonce once answered, as a scanner does after a lost answer. Verified
//! ([`crate::checkins`]): exactly one scan per ticket answers 201, every other one 409
//! `already_checked_in` with that 201's `checked_in_at`, a re-sent scan gets the same answer,
//! the check-in counts are the tickets let in and the bookings, and altered, truncated or
//! made-up codes and a customer's scan are refused. Reported: scans per second, and their
//! ratio to `/healthz` with `--baseline` (target ≥ [`TARGET_RATIO`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode};

use super::outcome::{Outcome, server_error_check, verify_end};
use super::spread::spot;
use crate::args::{LoadtestArgs, SeatTypeSpec};
use crate::checkins::{self, Got, Scanned, Ticket};
use crate::client::{Answer, Call, Conn};
use crate::phase::{Budget, Ctx, Worker};
use crate::report::{Check, PhaseStats, Rate};
use crate::setup::{Stage, book_each, prepare, prepare_doors};
use crate::verify::{Ledger, User};

/// The target: scans per second ≥ this share of `/healthz` requests per second.
const TARGET_RATIO: f64 = 0.4;

/// The seat type of each ticket holder: seat types in turn, skipping those without a seat
/// left, for at most `holders` holders (fewer when the seats run out first).
fn seats_in_turn(capacities: &[u64], holders: usize) -> Vec<usize> {
    let mut left = capacities.to_vec();
    let mut seats = Vec::with_capacity(holders);
    let mut turn = 0;
    while seats.len() < holders && left.iter().any(|&left| left > 0) {
        let seat = turn % left.len();
        if left[seat] > 0 {
            left[seat] -= 1;
            seats.push(seat);
        }
        turn += 1;
    }
    seats
}

/// One scan of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    /// Index of the ticket in the run's list.
    ticket: usize,
    /// 0 for the ticket's first scan, 1 and 2 for its repeats.
    round: usize,
    /// The door that scans it (its token goes with the scan).
    door: usize,
    /// Sent again with the same nonce as soon as it is answered: a scanner's retry.
    retry: bool,
}

/// How many times ticket `ticket` is scanned: 1, 2 or 3, about a third each in every prefix.
fn times_scanned(ticket: usize) -> usize {
    1 + ((spot(ticket) * 3.0) as usize).min(2)
}

/// The scans of `tickets` tickets by `doors` doors, in the order they are sent. Tickets go in
/// windows of `window`: the first scans of a window's tickets, then their second scans, then
/// their third, so that a ticket's scans are fewer than `3 × window` scans apart and, with a
/// window of half the connections (two scans a ticket on average), mostly in flight at the
/// same time. Scan `round` of ticket `t` is made at door `(t + round) mod doors`: a ticket's
/// scans are at different doors (with three or more) and every door gets its share. First
/// scans are re-sent at `retry_share`, spread over the tickets scanned once, twice and three
/// times alike.
fn scan_plan(tickets: usize, doors: usize, window: usize, retry_share: f64) -> Vec<Scan> {
    let (doors, window) = (doors.max(1), window.max(1));
    // Tickets of each scan count so far: the retries are spread within each count.
    let mut seen = [0usize; 3];
    let mut plan = Vec::with_capacity(tickets * 2);
    for start in (0..tickets).step_by(window) {
        let chunk = start..tickets.min(start + window);
        for round in 0..3 {
            for ticket in chunk.clone() {
                let times = times_scanned(ticket);
                if round >= times {
                    continue;
                }
                let retry = round == 0 && {
                    let rank = seen[times - 1];
                    seen[times - 1] += 1;
                    spot(rank) < retry_share
                };
                plan.push(Scan {
                    ticket,
                    round,
                    door: (ticket + round) % doors,
                    retry,
                });
            }
        }
    }
    plan
}

/// What the run prepared before the doors open.
struct Venue {
    admin: HeaderValue,
    stage: Stage,
    /// The ticket holders.
    users: Vec<User>,
    /// Each holder's seat type.
    seats: Vec<usize>,
    /// The holders' bookings.
    ledger: Ledger,
    /// A line per booking that did not answer 201.
    booking_failures: Vec<String>,
    /// The ticket of each booking of the ledger, in its order.
    tickets: Vec<Ticket>,
    doors: Vec<User>,
    setup: Duration,
}

impl Venue {
    /// Per seat type: the bookings the holders were answered 201 for, and how many more a
    /// lost answer may have made.
    fn bookings_per_seat(&self) -> Vec<(u64, u64)> {
        let mut per = vec![(0, 0); self.stage.seat_types.len()];
        for booked in &self.ledger.confirmed {
            per[booked.seat_type].0 += 1;
        }
        for &user in &self.ledger.unsure_users {
            per[self.seats[user]].1 += 1;
        }
        per
    }
}

/// The concert, its holders' bookings and tickets, and the doors.
async fn open_venue(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Venue> {
    let started = Instant::now();
    let specs = args.seat_types_or(&SeatTypeSpec::onsale_default());
    let capacities: Vec<u64> = specs.iter().map(|spec| spec.capacity).collect();
    let seats = seats_in_turn(&capacities, args.users());
    if seats.len() < args.users() {
        args.note(&format!(
            "the concert has {} seats: {} ticket holders, not --users {}",
            seats.len(),
            seats.len(),
            args.users()
        ));
    }
    let (admin, stage, users, _) = prepare(ctx, args, &specs, seats.len()).await?;
    args.note(&format!("{} holders book a seat each…", users.len()));
    let who = seats.iter().copied().enumerate().collect();
    let (ledger, booking_failures) = book_each(ctx, &stage, &users, who).await?;
    anyhow::ensure!(
        !ledger.confirmed.is_empty(),
        "no holder got a ticket: {}",
        booking_failures.first().map_or("", String::as_str)
    );
    let tickets = checkins::read_tickets(
        &ctx.target,
        &users,
        &ledger.confirmed,
        ctx.concurrency.min(64),
    )
    .await?;
    args.note(&format!("{} doors…", args.doors()));
    let doors = prepare_doors(ctx, &admin, args.doors(), &args.prefix).await?;
    let mut venue = Venue {
        admin,
        stage,
        users,
        seats,
        ledger,
        booking_failures,
        tickets,
        doors,
        setup: started.elapsed(),
    };
    if venue.ledger.unsure_users.is_empty() {
        let per = venue.bookings_per_seat();
        for (seat, (booked, _)) in venue.stage.seat_types.iter_mut().zip(per) {
            seat.expected = Some(booked);
        }
    }
    Ok(venue)
}

/// What every worker shares: the plan, one ready call per scan, the next scan to send.
#[derive(Clone)]
struct Shared {
    plan: Arc<Vec<Scan>>,
    /// `POST /concerts/{id}/checkins` of each scan, with its nonce and its door's token.
    calls: Arc<Vec<Call>>,
    next: Arc<AtomicUsize>,
    budget: Arc<Budget>,
}

/// Sends one scan and reads what it got.
async fn send(worker: &mut Worker, call: &Call) -> Got {
    let (answer, body) = worker.call_keeping_body(call).await;
    Got::of(&answer, body.as_ref())
}

/// One worker's share of the phase: the next scan of the plan (and its re-send, if planned)
/// until every scan is sent or the budget is spent.
async fn walk(
    mut worker: Worker,
    mut scanned: Vec<Scanned>,
    shared: Shared,
) -> (Worker, Vec<Scanned>) {
    while shared.budget.take() {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        let (Some(scan), Some(call)) = (shared.plan.get(index), shared.calls.get(index)) else {
            break;
        };
        let got = send(&mut worker, call).await;
        let retry = if scan.retry && shared.budget.take() {
            Some(send(&mut worker, call).await)
        } else {
            None
        };
        scanned.push(Scanned {
            ticket: scan.ticket,
            got,
            retry,
        });
    }
    (worker, scanned)
}

/// The measured phase: the plan's scans on `--concurrency` connections.
async fn scan_all(
    ctx: &Ctx,
    args: &LoadtestArgs,
    venue: &Venue,
    plan: Vec<Scan>,
) -> anyhow::Result<(PhaseStats, Vec<Scanned>)> {
    let calls = plan
        .iter()
        .map(|scan| {
            let nonce = uuid::Uuid::new_v4().to_string();
            let code = &venue.tickets[scan.ticket].view.code;
            let call = checkins::scan_call(&venue.stage.concert_id, code, &nonce)?;
            Ok(call.with_auth(venue.doors[scan.door].auth.clone()))
        })
        .collect::<anyhow::Result<Vec<Call>>>()?;
    let sends = (plan.len() + plan.iter().filter(|scan| scan.retry).count()) as u64;
    let total = args.requests.map_or(sends, |cap| cap.min(sends));
    let shared = Shared {
        plan: Arc::new(plan),
        calls: Arc::new(calls),
        next: Arc::new(AtomicUsize::new(0)),
        budget: Arc::new(Budget::new(args.duration, args.requests)),
    };
    let (phase, scanned) = ctx
        .phase(
            "doors",
            Some(total),
            (0..ctx.concurrency).map(|_| Vec::new()).collect(),
            move |worker, scanned| walk(worker, scanned, shared.clone()),
        )
        .await?;
    Ok((phase, scanned.into_iter().flatten().collect()))
}

/// A sold concert checked in by several doors at once; every ticket let in exactly once.
pub(super) async fn run(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
    let venue = open_venue(ctx, args).await?;
    settle_outbox(ctx, args, venue.tickets.len()).await;
    let tickets = &venue.tickets;
    let window = ctx.concurrency.div_ceil(2);
    let plan = scan_plan(tickets.len(), venue.doors.len(), window, args.retry_share);
    args.note(&format!(
        "{} doors scan {} tickets: {} scans…",
        venue.doors.len(),
        tickets.len(),
        plan.len()
    ));
    let (phase, scanned) = scan_all(ctx, args, &venue, plan).await?;

    args.note("verifying…");
    let concert_id = &venue.stage.concert_id;
    let door = &venue.doors[0].auth;
    let mut conn = Conn::new(ctx.target.clone());
    let counts = checkins::read_counts(&mut conn, door, concert_id).await;
    let first = &tickets[0];
    let holder = &venue.users[first.booked.user].auth;
    let probes = probe(&mut conn, concert_id, door, holder, &first.view.code).await?;
    let (mut booking_checks, sold) =
        verify_end(ctx, &venue.admin, &venue.stage, &venue.users, &venue.ledger).await?;
    let seat_types = &venue.stage.seat_types;
    let mut checks = vec![
        server_error_check(&phase),
        bookings_check(&venue),
        checkins::tickets_check(concert_id, seat_types, tickets),
        checkins::answers_check(tickets.len(), &scanned),
        checkins::one_success_check(tickets, &scanned),
        checkins::admissions_check(tickets, &scanned),
        checkins::conflicts_check(tickets, &scanned),
        checkins::retries_check(&scanned),
        checkins::counts_check(
            concert_id,
            seat_types,
            &venue.bookings_per_seat(),
            tickets,
            &scanned,
            &counts,
        ),
        probes_check(&probes),
    ];
    checks.append(&mut booking_checks);
    let mut chosen = vec![0; seat_types.len()];
    for &seat in &venue.seats {
        chosen[seat] += 1;
    }
    let rate = Rate {
        name: "check-in scans",
        counted: "scans answered 201 or 409 already_checked_in (re-sends included)",
        short: "scans",
        count: checkins::answered(&scanned),
        target: TARGET_RATIO,
    };
    let expectation = expectation(&venue, args);
    let users = venue.users.len() + venue.doors.len();
    Ok(Outcome {
        chosen: Some(chosen),
        confirmed: Some(sold),
        checks,
        rate: Some(rate),
        ..Outcome::new(Some(venue.stage), users, venue.setup, expectation, phase)
    })
}

/// Waits, for up to two minutes, until the server has sent a confirmation email for every
/// booking of the setup (`emails_sent_total{kind="booking_confirmed"}` on `/metrics`): doors
/// open long after the sale's emails went out, so the backlog the setup queued is not measured
/// with the scans. A server without `/metrics` (behind a gateway) is not waited for.
async fn settle_outbox(ctx: &Ctx, args: &LoadtestArgs, bookings: usize) {
    let Ok(call) = Call::get("/metrics") else {
        return;
    };
    let mut conn = Conn::new(ctx.target.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    args.note("waiting for the setup's confirmation emails to go out…");
    while Instant::now() < deadline {
        let (answer, body) = conn.send_keeping_body(&call).await;
        if answer.status() != Some(StatusCode::OK) {
            return;
        }
        let sent: f64 = body
            .as_deref()
            .and_then(|body| std::str::from_utf8(body).ok())
            .map(|text| {
                text.lines()
                    .filter(|line| {
                        line.starts_with("emails_sent_total{")
                            && line.contains("kind=\"booking_confirmed\"")
                    })
                    .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            })
            .unwrap_or(0.0);
        if sent >= bookings as f64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    args.note("not every confirmation email went out within two minutes; scanning anyway");
}

fn expectation(venue: &Venue, args: &LoadtestArgs) -> String {
    format!(
        "each of {} holders books one seat (seat types in turn while they have seats) and reads \
         their ticket; {} doors scan every ticket 1 to 3 times (about a third each), a ticket's \
         scans close together at different doors, {:.0}% of first scans re-sent with their \
         nonce; exactly one scan per ticket answers 201, every other one 409 \
         already_checked_in with that scan's checked_in_at, a re-sent scan gets the same \
         answer; the check-in counts are the tickets let in and the bookings; altered, \
         truncated and made-up codes answer 422 invalid_ticket, a customer's scan 403 forbidden",
        venue.users.len(),
        venue.doors.len(),
        args.retry_share * 100.0
    )
}

/// Every holder got their booking before the doors opened.
fn bookings_check(venue: &Venue) -> Check {
    Check::of_problems(
        "every holder booked a seat",
        &venue.booking_failures,
        format!(
            "{} bookings of {} holders answered 201",
            venue.ledger.confirmed.len(),
            venue.users.len()
        ),
    )
}

/// A scan that must be refused, and what it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Probe {
    /// What was sent, in words.
    what: &'static str,
    answer: Answer,
    status: StatusCode,
    code: &'static str,
}

/// `code` with its middle character changed: a signature-carrying code must no longer verify.
/// The middle, because the last characters of an unpadded base64 text may carry unused bits.
fn altered(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    if let Some(middle) = chars.get_mut(code.chars().count() / 2) {
        *middle = if *middle == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
}

/// The first half of `code`: a scan that read only part of it.
fn truncated(code: &str) -> String {
    code.chars().take(code.chars().count() / 2).collect()
}

/// The scans that must be refused, sent once each (not timed): an altered, a truncated and a
/// made-up code by `door` (422 `invalid_ticket`), and the real `code` by `customer` (403
/// `forbidden`).
async fn probe(
    conn: &mut Conn,
    concert_id: &str,
    door: &HeaderValue,
    customer: &HeaderValue,
    code: &str,
) -> anyhow::Result<Vec<Probe>> {
    const INVALID: (StatusCode, &str) = (StatusCode::UNPROCESSABLE_ENTITY, "invalid_ticket");
    let garbage = format!("not-a-ticket-{}", uuid::Uuid::new_v4().simple());
    let sent = [
        ("an altered code", altered(code), door, INVALID),
        ("a truncated code", truncated(code), door, INVALID),
        ("a made-up code", garbage, door, INVALID),
        (
            "a customer scanning a real code",
            code.to_owned(),
            customer,
            (StatusCode::FORBIDDEN, "forbidden"),
        ),
    ];
    let mut probes = Vec::new();
    for (what, code, auth, (status, expected)) in sent {
        let nonce = uuid::Uuid::new_v4().to_string();
        let call = checkins::scan_call(concert_id, &code, &nonce)?.with_auth(auth.clone());
        let answer = conn.send(&call, false).await;
        probes.push(Probe {
            what,
            answer,
            status,
            code: expected,
        });
    }
    Ok(probes)
}

/// Each probe got the refusal it must get.
fn probes_check(probes: &[Probe]) -> Check {
    let problems: Vec<String> = probes
        .iter()
        .filter(|probe| !probe.answer.is(probe.status, probe.code))
        .map(|probe| {
            format!(
                "{} answered {} {} (not {} {})",
                probe.what,
                probe.answer.status().map_or(0, |status| status.as_u16()),
                probe.answer.code().unwrap_or("-"),
                probe.status.as_u16(),
                probe.code
            )
        })
        .collect();
    Check::of_problems(
        "bad codes answer 422 invalid_ticket, a customer 403 forbidden",
        &problems,
        probes
            .iter()
            .map(|probe| format!("{}: {} {}", probe.what, probe.status.as_u16(), probe.code))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn holders_take_the_seat_types_in_turn_while_they_have_seats() {
        assert_eq!(seats_in_turn(&[2, 5], 5), [0, 1, 0, 1, 1]);
        assert_eq!(seats_in_turn(&[1, 1], 5), [0, 1]);
        assert_eq!(seats_in_turn(&[3], 2), [0, 0]);
        assert!(seats_in_turn(&[3], 0).is_empty());
    }

    #[test]
    fn tickets_are_scanned_one_to_three_times_about_a_third_each() {
        for tickets in [10, 100, 1000, 20_000] {
            let times: Vec<usize> = (0..tickets).map(times_scanned).collect();
            for n in 1..=3 {
                let count = times.iter().filter(|&&t| t == n).count() as f64;
                // The golden-ratio sequence keeps every share within a couple of tickets.
                assert!(
                    (count - tickets as f64 / 3.0).abs() <= 2.0,
                    "{tickets}: {n}"
                );
            }
        }
    }

    #[test]
    fn the_plan_scans_every_ticket_its_times_close_together_at_different_doors() {
        let (tickets, doors, window) = (1000, 8, 32);
        let plan = scan_plan(tickets, doors, window, 0.05);
        let mut at: HashMap<usize, Vec<(usize, Scan)>> = HashMap::new();
        for (position, scan) in plan.iter().enumerate() {
            at.entry(scan.ticket).or_default().push((position, *scan));
        }
        assert_eq!(at.len(), tickets);
        for (ticket, scans) in &at {
            let rounds: Vec<usize> = scans.iter().map(|(_, scan)| scan.round).collect();
            assert_eq!(rounds, (0..times_scanned(*ticket)).collect::<Vec<_>>());
            let mut doors_used: Vec<usize> = scans.iter().map(|(_, scan)| scan.door).collect();
            doors_used.sort_unstable();
            doors_used.dedup();
            assert_eq!(doors_used.len(), scans.len(), "ticket {ticket}: {scans:?}");
            let spread = scans[scans.len() - 1].0 - scans[0].0;
            assert!(spread < 3 * window, "ticket {ticket}: {scans:?}");
        }
        assert_eq!(plan.len(), (0..tickets).map(times_scanned).sum::<usize>());
        // Every door gets its share of the scans.
        for door in 0..doors {
            let share = plan.iter().filter(|scan| scan.door == door).count();
            assert!(share.abs_diff(plan.len() / doors) <= 10, "{door}: {share}");
        }
    }

    #[test]
    fn only_first_scans_are_re_sent_at_their_share() {
        for tickets in [100, 1000, 20_000] {
            let plan = scan_plan(tickets, 8, 32, 0.05);
            assert!(plan.iter().all(|scan| !scan.retry || scan.round == 0));
            let retries: Vec<&Scan> = plan.iter().filter(|scan| scan.retry).collect();
            // Within a couple of tickets per scan count.
            let expected = 0.05 * tickets as f64;
            assert!(
                (retries.len() as f64 - expected).abs() <= 6.0,
                "{tickets}: {}",
                retries.len()
            );
            // Tickets scanned once, twice and three times are re-sent alike.
            for n in 1..=3 {
                let of_n = retries
                    .iter()
                    .filter(|scan| times_scanned(scan.ticket) == n)
                    .count() as f64;
                assert!(
                    (of_n - expected / 3.0).abs() <= 2.5,
                    "{tickets}: {n}: {of_n}"
                );
            }
        }
        assert!(scan_plan(100, 8, 32, 0.0).iter().all(|scan| !scan.retry));
        let all = scan_plan(100, 8, 32, 1.0);
        assert!(all.iter().all(|scan| scan.retry == (scan.round == 0)));
    }

    #[test]
    fn one_door_or_one_connection_still_scans_everything() {
        let plan = scan_plan(10, 1, 1, 0.5);
        assert!(plan.iter().all(|scan| scan.door == 0));
        assert_eq!(plan.len(), (0..10).map(times_scanned).sum::<usize>());
        // With a window of one ticket, a ticket's scans follow each other.
        for pair in plan.windows(2) {
            assert!(pair[1].ticket >= pair[0].ticket);
        }
        assert!(scan_plan(0, 8, 32, 0.05).is_empty());
    }

    #[test]
    fn bad_codes_differ_from_the_real_one_and_must_be_refused() {
        let code = "eyJiIjoiYjAifQ.c2lnbmF0dXJl";
        let changed = altered(code);
        assert_eq!(changed.len(), code.len());
        assert_ne!(changed, code);
        assert_eq!(
            code.chars()
                .zip(changed.chars())
                .filter(|(a, b)| a != b)
                .count(),
            1
        );
        assert_eq!(altered("AAAA"), "AABA");
        assert_eq!(truncated(code), &code[..code.len() / 2]);
        let refused = |status, code| Probe {
            what: "x",
            answer: Answer::Http {
                status,
                code: Some(Arc::from(code)),
                id: None,
            },
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_ticket",
        };
        assert!(
            probes_check(&[refused(StatusCode::UNPROCESSABLE_ENTITY, "invalid_ticket")]).passed
        );
        assert!(!probes_check(&[refused(StatusCode::CONFLICT, "already_checked_in")]).passed);
    }
}
