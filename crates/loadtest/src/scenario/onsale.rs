//! `onsale`: every prepared user books once, all at the same moment. User `i` chooses seat
//! type `i mod k`, so per seat type exactly `min(capacity, users who chose it)` must be
//! confirmed and every other answer must be 409 `sold_out`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::StatusCode;

use super::outcome::{Outcome, server_error_check, verify_end};
use crate::args::{LoadtestArgs, SeatTypeSpec};
use crate::client::Answer;
use crate::phase::{Budget, Ctx};
use crate::report::Check;
use crate::setup::prepare;
use crate::verify::{Booked, Ledger};

/// Per seat type `min(capacity, users who chose it)` under the round-robin rule (user `i`
/// chooses seat type `i mod k`), for the first `attempted` users.
pub fn round_robin_expectation(capacities: &[u64], attempted: usize) -> Vec<(u64, u64)> {
    let k = capacities.len().max(1);
    capacities
        .iter()
        .enumerate()
        .map(|(j, &capacity)| {
            let chosen = (attempted / k + usize::from(j < attempted % k)) as u64;
            (chosen, capacity.min(chosen))
        })
        .collect()
}

/// The answers of the phase, sorted out.
struct Tally {
    ledger: Ledger,
    /// Users who sent their one request.
    attempted: usize,
    /// Answers that are neither a 201, nor a 409 `sold_out`, nor a server error, as
    /// `"STATUS CODE ×COUNT"`, sorted.
    unexpected: Vec<String>,
}

/// Sorts each user's answer into the ledger; `k` is the number of seat types.
fn tally(results: Vec<Vec<(usize, Answer)>>, k: usize) -> Tally {
    let mut ledger = Ledger::default();
    let mut attempted = 0;
    let mut unexpected: HashMap<String, u64> = HashMap::new();
    for (user, answer) in results.into_iter().flatten() {
        attempted += 1;
        match &answer {
            Answer::Http {
                status: StatusCode::CREATED,
                id: Some(id),
                ..
            } => ledger.confirmed.push(Booked {
                id: id.clone(),
                user,
                seat_type: user % k,
            }),
            answer if answer.is_server_error() => ledger.unsure_users.push(user),
            answer if answer.is(StatusCode::CONFLICT, "sold_out") => {}
            other => {
                *unexpected
                    .entry(format!(
                        "{} {}",
                        other.status().map_or(0, |s| s.as_u16()),
                        other.code().unwrap_or("-")
                    ))
                    .or_default() += 1;
                if other.status() == Some(StatusCode::CREATED) {
                    // A 201 whose id could not be read: judge it by what the user holds.
                    ledger.unsure_users.push(user);
                }
            }
        }
    }
    let mut unexpected: Vec<String> = unexpected
        .into_iter()
        .map(|(what, count)| format!("{what} ×{count}"))
        .collect();
    unexpected.sort();
    Tally {
        ledger,
        attempted,
        unexpected,
    }
}

/// An on-sale that opens during the run (`--opens-in`): users retry `sales_not_open` until
/// their booking is decided, and no booking may be answered before the on-sale instant.
struct Opening {
    at: time::OffsetDateTime,
    /// 409 `sales_not_open` answers, retried.
    early: AtomicUsize,
    /// 201s received before the on-sale instant (on this machine's clock, which the server
    /// shares): bookings the server should have refused.
    before_the_instant: AtomicUsize,
}

impl Opening {
    /// How long after the on-sale instant a `sales_not_open` is still retried: past it, the
    /// answer is kept (and judged unexpected) rather than retried for ever.
    const GRACE: time::Duration = time::Duration::seconds(30);

    fn new(at: time::OffsetDateTime) -> Self {
        Self {
            at,
            early: AtomicUsize::new(0),
            before_the_instant: AtomicUsize::new(0),
        }
    }

    /// One user's booking: sent again while sales have not opened.
    async fn book(&self, worker: &mut crate::phase::Worker, call: &crate::client::Call) -> Answer {
        loop {
            let answer = worker.call(call, true).await;
            let now = time::OffsetDateTime::now_utc();
            if answer.is(StatusCode::CONFLICT, "sales_not_open") && now < self.at + Self::GRACE {
                self.early.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if answer.status() == Some(StatusCode::CREATED) && now < self.at {
                self.before_the_instant.fetch_add(1, Ordering::Relaxed);
            }
            return answer;
        }
    }

    fn check(&self) -> Check {
        let before = self.before_the_instant.load(Ordering::Relaxed);
        Check::new(
            "no booking before the on-sale",
            before == 0,
            format!(
                "{} answers 409 sales_not_open before {} and retried; {before} bookings \
                 answered before it",
                self.early.load(Ordering::Relaxed),
                self.at
            ),
        )
    }
}

/// Every prepared user books once, all at the same moment.
pub(super) async fn run(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
    let specs = args.seat_types_or(&SeatTypeSpec::onsale_default());
    let (admin, mut stage, users, setup) = prepare(ctx, args, &specs, args.users()).await?;
    let users = Arc::new(users);
    let next = Arc::new(AtomicUsize::new(0));
    let budget = Arc::new(Budget::new(args.duration, args.requests));
    let book = Arc::new(stage.book.clone());
    let opening = stage.opens_at.map(|at| Arc::new(Opening::new(at)));
    let (phase, results) = ctx
        .phase(
            "onsale",
            Some(
                args.requests
                    .map_or(users.len() as u64, |cap| cap.min(users.len() as u64)),
            ),
            vec![Vec::new(); ctx.concurrency],
            {
                let users = users.clone();
                let opening = opening.clone();
                move |mut worker, mut answers: Vec<(usize, Answer)>| {
                    let (users, next, budget, book, opening) = (
                        users.clone(),
                        next.clone(),
                        budget.clone(),
                        book.clone(),
                        opening.clone(),
                    );
                    async move {
                        while budget.take() {
                            let user = next.fetch_add(1, Ordering::Relaxed);
                            let Some(found) = users.get(user) else { break };
                            let call = book[user % book.len()]
                                .clone()
                                .with_auth(found.auth.clone());
                            let answer = match &opening {
                                Some(opening) => opening.book(&mut worker, &call).await,
                                None => worker.call(&call, true).await,
                            };
                            answers.push((user, answer));
                        }
                        (worker, answers)
                    }
                }
            },
        )
        .await?;

    let k = stage.seat_types.len();
    let Tally {
        ledger,
        attempted,
        unexpected,
    } = tally(results, k);
    let capacities: Vec<u64> = stage.seat_types.iter().map(|seat| seat.capacity).collect();
    let expectation = round_robin_expectation(&capacities, attempted);
    for (seat, (_, expected)) in stage.seat_types.iter_mut().zip(&expectation) {
        seat.expected = Some(*expected);
    }
    args.note("verifying…");
    let (mut checks, sold) = verify_end(ctx, &admin, &stage, &users, &ledger).await?;
    checks.insert(0, server_error_check(&phase));
    checks.insert(
        1,
        Check::new(
            "every other answer is 409 sold_out",
            unexpected.is_empty(),
            if unexpected.is_empty() {
                format!("{attempted} users tried once each")
            } else {
                format!("unexpected: {}", unexpected.join(", "))
            },
        ),
    );
    if let Some(opening) = &opening {
        checks.push(opening.check());
    }
    if attempted < users.len() {
        checks.push(Check::new(
            "every user tried",
            true,
            format!(
                "{attempted} of {} users tried before --duration/--requests ran out; the \
                 expectation counts only those",
                users.len()
            ),
        ));
    }
    Ok(Outcome {
        users: users.len(),
        setup,
        expectation: format!(
            "each user books once; user i chooses seat type i mod {k} in the order listed; \
             per seat type confirmed == min(capacity, users who chose it); every other answer \
             is 409 sold_out"
        ),
        phase,
        chosen: Some(expectation.iter().map(|(chosen, _)| *chosen).collect()),
        confirmed: Some(sold),
        checks,
        stage: Some(stage),
        parts: Vec::new(),
        figures: Vec::new(),
        rate: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_expectation_is_min_of_capacity_and_choosers() {
        // 2000 users over VIP:50, Regular:500 → 1000 each.
        assert_eq!(
            round_robin_expectation(&[50, 500], 2000),
            [(1000, 50), (1000, 500)]
        );
        // 5 users over three seat types: 2, 2, 1.
        assert_eq!(
            round_robin_expectation(&[1, 10, 10], 5),
            [(2, 1), (2, 2), (1, 1)]
        );
        assert_eq!(round_robin_expectation(&[3], 0), [(0, 0)]);
    }
}
