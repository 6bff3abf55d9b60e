//! `soldout`: sell a tiny seat type out, then hammer it with everyone else; every later
//! answer must be 409 `sold_out`: the loser path.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::outcome::{Outcome, server_error_check, verify_end};
use crate::args::{LoadtestArgs, SeatTypeSpec};
use crate::phase::{Budget, Ctx};
use crate::report::Check;
use crate::setup::{book_each, prepare};

/// Sells a tiny seat type out, then hammers it: the loser path.
pub(super) async fn run(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
    let specs = args.seat_types_or(&[SeatTypeSpec {
        name: "Tiny".to_owned(),
        capacity: 5,
    }]);
    anyhow::ensure!(
        specs.len() == 1 || args.concert_id.is_some(),
        "the soldout scenario uses one seat type (e.g. --seat-types Tiny:5)"
    );
    let capacity = usize::try_from(specs[0].capacity)?;
    anyhow::ensure!(
        args.users() > capacity,
        "the soldout scenario needs more users (--users {}) than seats ({capacity})",
        args.users()
    );
    let (admin, mut stage, users, setup) = prepare(ctx, args, &specs[..1], args.users()).await?;
    let users = Arc::new(users);
    let capacity = usize::try_from(stage.seat_types[0].capacity)?;
    anyhow::ensure!(
        args.users() > capacity,
        "the seat type has more seats than --users"
    );

    // Sell out: the first `capacity` users, one booking each.
    let (ledger, sell_out_failures) = book_each(
        ctx,
        &stage,
        &users,
        (0..capacity).map(|user| (user, 0)).collect(),
    )
    .await?;
    stage.seat_types[0].expected = Some(capacity as u64);

    // Hammer: everyone else, over and over, until the budget is spent.
    let losers = users.len() - capacity;
    let next = Arc::new(AtomicUsize::new(0));
    let budget = Arc::new(Budget::new(args.phase_duration(), args.requests));
    let book = stage.book[0].clone();
    let (phase, _) = ctx
        .phase("soldout", args.requests, vec![(); ctx.concurrency], {
            let users = users.clone();
            move |mut worker, ()| {
                let (users, next, budget, book) =
                    (users.clone(), next.clone(), budget.clone(), book.clone());
                async move {
                    while budget.take() {
                        let user = capacity + next.fetch_add(1, Ordering::Relaxed) % losers;
                        let Some(found) = users.get(user) else { break };
                        worker
                            .call(&book.clone().with_auth(found.auth.clone()), false)
                            .await;
                    }
                    (worker, ())
                }
            }
        })
        .await?;
    args.note("verifying…");
    let (mut checks, sold) = verify_end(ctx, &admin, &stage, &users, &ledger).await?;
    let sold_out = phase.count(409, Some("sold_out"));
    checks.insert(0, server_error_check(&phase));
    checks.insert(
        1,
        Check::new(
            "sell-out: the first users got every seat",
            sell_out_failures.is_empty(),
            if sell_out_failures.is_empty() {
                format!("{capacity} bookings of {capacity} seats answered 201")
            } else {
                sell_out_failures.join("; ")
            },
        ),
    );
    checks.insert(
        2,
        Check::new(
            "every later answer is 409 sold_out",
            sold_out == phase.requests && phase.requests > 0,
            format!("{sold_out} of {} answers were 409 sold_out", phase.requests),
        ),
    );
    Ok(Outcome {
        users: users.len(),
        setup,
        expectation: format!(
            "the first {capacity} users book the {capacity} seats (201 each); every later \
             booking by the other {losers} users answers 409 sold_out"
        ),
        phase,
        chosen: None,
        confirmed: Some(sold),
        checks,
        stage: Some(stage),
        parts: Vec::new(),
        figures: Vec::new(),
        rate: None,
    })
}
