//! The nine scenarios, one module each, and the [`Report`] a run ends in.
//!
//! Every scenario has the same shape: prepare through the API ([`crate::setup`]), run one
//! measured phase ([`crate::phase`]), then read the end state back and [`verify::judge`] it
//! ([`outcome`]); [`run`] adds the `--baseline` phase and puts the report together. The two
//! checkout scenarios also judge the holds ([`crate::holds`]): `checkout` (hold, pay, let
//! some expire) and `expiry` (a storm of holds falling due, watched by [`seats_back`]);
//! `doors` judges the check-ins ([`crate::checkins`]); `waitlist` the waiting list's offers;
//! `waitingroom` the waiting room's admissions (their order and rate, judged by [`admissions`])
//! and that every booking had one. Shares of users or tickets are spread by [`spread`].
//!
//! [`verify::judge`]: crate::verify::judge

mod admissions;
mod browse;
mod checkout;
mod churn;
mod doors;
mod expiry;
mod onsale;
mod outcome;
mod seats_back;
mod soldout;
mod spread;
mod waitingroom;
mod waitlist;

use std::sync::Arc;

use crate::args::{LoadtestArgs, Scenario};
use crate::client::Target;
use crate::phase::Ctx;
use crate::report::{Ratios, Report, SeatTypeReport};

pub use checkout::{Plan, plan_of};
pub use onsale::round_robin_expectation;

/// Runs the scenario `args` names against `target`.
pub async fn run(target: Arc<Target>, args: &LoadtestArgs) -> anyhow::Result<Report> {
    let ctx = Ctx {
        target: target.clone(),
        concurrency: args.concurrency(),
        show_progress: !args.json,
    };
    anyhow::ensure!(
        args.opens_in.is_none()
            || (matches!(args.scenario, Scenario::Onsale | Scenario::Waitingroom)
                && args.concert_id.is_none()),
        "--opens-in schedules the on-sale of the concert `onsale` or `waitingroom` creates: it \
         needs one of those scenarios and no --concert-id"
    );
    anyhow::ensure!(
        args.admit_per_minute.is_none() || args.scenario == Scenario::Waitingroom,
        "--admit-per-minute is the rate of the waiting room `waitingroom` creates: it needs \
         --scenario waitingroom"
    );
    anyhow::ensure!(
        args.concert_id.is_none()
            || !matches!(args.scenario, Scenario::Checkout | Scenario::Expiry),
        "the checkout and expiry scenarios create their own concert: they need to know its \
         prices and that nobody else holds its seats (no --concert-id)"
    );
    anyhow::ensure!(
        args.concert_id.is_none()
            || !matches!(
                args.scenario,
                Scenario::Doors | Scenario::Waitlist | Scenario::Waitingroom
            ),
        "the doors, waitlist and waitingroom scenarios create their own concert: they judge what \
         only the tool did to it (no --concert-id)"
    );
    let mut outcome = match args.scenario {
        Scenario::Onsale => onsale::run(&ctx, args).await?,
        Scenario::Churn => churn::run(&ctx, args).await?,
        Scenario::Browse => browse::run(&ctx, args).await?,
        Scenario::Soldout => soldout::run(&ctx, args).await?,
        Scenario::Checkout => checkout::run(&ctx, args).await?,
        Scenario::Expiry => expiry::run(&ctx, args).await?,
        Scenario::Doors => doors::run(&ctx, args).await?,
        Scenario::Waitlist => waitlist::run(&ctx, args).await?,
        Scenario::Waitingroom => waitingroom::run(&ctx, args).await?,
    };
    let baseline = if args.baseline {
        Some(ctx.baseline(&outcome.phase, args.phase_duration()).await?)
    } else {
        None
    };
    let ratios = baseline
        .as_ref()
        .and_then(|baseline| Ratios::of(&outcome.phase, baseline));
    if let Some(rate) = &outcome.rate {
        let rates = rate.figures(&outcome.phase, baseline.as_ref());
        outcome.figures.splice(0..0, rates);
    }
    let seat_types = outcome
        .stage
        .as_ref()
        .map(|stage| {
            stage
                .seat_types
                .iter()
                .enumerate()
                .map(|(j, seat)| SeatTypeReport {
                    id: seat.id.clone(),
                    name: seat.name.clone(),
                    capacity: seat.capacity,
                    chosen_by: outcome.chosen.as_ref().and_then(|c| c.get(j).copied()),
                    expected_confirmed: seat.expected,
                    confirmed: outcome.confirmed.as_ref().and_then(|c| c.get(j).copied()),
                })
                .collect()
        })
        .unwrap_or_default();
    let verdict = Report::verdict_of(&outcome.checks);
    Ok(Report {
        scenario: args.scenario.name().to_owned(),
        target: target.base.clone(),
        concurrency: args.concurrency(),
        users: outcome.users,
        concert_id: outcome.stage.as_ref().map(|stage| stage.concert_id.clone()),
        seat_types,
        setup_seconds: outcome.setup.as_secs_f64(),
        expectation: outcome.expectation,
        phase: outcome.phase,
        parts: outcome.parts,
        baseline,
        ratios,
        figures: outcome.figures,
        checks: outcome.checks,
        verdict,
    })
}
