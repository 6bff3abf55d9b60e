//! `browse`: catalog reads (the list, one concert's details and its availability, in turn);
//! every read must answer 200.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use http::StatusCode;

use super::outcome::{Outcome, server_error_check};
use crate::args::{LoadtestArgs, SeatTypeSpec};
use crate::client::{Call, Conn};
use crate::phase::{Budget, Ctx};
use crate::report::Check;
use crate::setup::{Concert, ConcertPage, admin_login, stage, stage_of};

/// Catalog reads: the list, one concert's details and its availability, in turn.
pub(super) async fn run(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut conn = Conn::new(ctx.target.clone());
    let concert_id = match (&args.concert_id, &args.admin_email) {
        (Some(id), _) => id.clone(),
        (None, Some(_)) => {
            let admin = admin_login(&mut conn, args).await?;
            let specs = args.seat_types_or(&SeatTypeSpec::onsale_default());
            stage(&mut conn, &admin, args, &specs).await?.concert_id
        }
        (None, None) => {
            let page: ConcertPage = conn
                .json(&Call::get("/api/v1/concerts?limit=1")?, StatusCode::OK)
                .await?;
            page.items
                .into_iter()
                .next()
                .map(|concert| concert.id)
                .context("no concert to browse: pass --concert-id or admin credentials")?
        }
    };
    let concert: Concert = conn
        .json(
            &Call::get(&format!("/api/v1/concerts/{concert_id}"))?,
            StatusCode::OK,
        )
        .await?;
    let stage = stage_of(concert, None)?;
    let setup = started.elapsed();
    let calls = Arc::new(vec![
        Call::get("/api/v1/concerts?limit=20")?,
        Call::get(&format!("/api/v1/concerts/{concert_id}"))?,
        Call::get(&format!("/api/v1/concerts/{concert_id}/availability"))?,
    ]);
    let budget = Arc::new(Budget::new(args.phase_duration(), args.requests));
    let (phase, _) = ctx
        .phase(
            "browse",
            args.requests,
            (0..ctx.concurrency).collect(),
            move |mut worker, start: usize| {
                let (calls, budget) = (calls.clone(), budget.clone());
                async move {
                    let mut turn = start;
                    while budget.take() {
                        worker.call(&calls[turn % calls.len()], false).await;
                        turn += 1;
                    }
                    (worker, start)
                }
            },
        )
        .await?;
    let not_ok = phase.requests - phase.count(200, None);
    let checks = vec![
        server_error_check(&phase),
        Check::new(
            "every read answers 200",
            not_ok == 0 && phase.requests > 0,
            format!("{} of {} reads were not 200", not_ok, phase.requests),
        ),
    ];
    Ok(Outcome {
        users: 0,
        setup,
        expectation: "every read (list, details, availability in turn) answers 200".to_owned(),
        phase,
        chosen: None,
        confirmed: None,
        checks,
        stage: Some(stage),
        parts: Vec::new(),
        figures: Vec::new(),
        rate: None,
    })
}
