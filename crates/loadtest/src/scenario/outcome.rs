//! What a scenario hands back, and the end-of-run reading and checks they all share.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use http::HeaderValue;

use crate::phase::Ctx;
use crate::report::{Check, Figure, PhaseStats, Rate};
use crate::setup::Stage;
use crate::verify::{self, Ledger, User};

/// What the run did and found, put together.
pub(super) struct Outcome {
    pub(super) stage: Option<Stage>,
    pub(super) users: usize,
    pub(super) setup: Duration,
    pub(super) expectation: String,
    pub(super) phase: PhaseStats,
    pub(super) chosen: Option<Vec<u64>>,
    pub(super) confirmed: Option<Vec<u64>>,
    pub(super) checks: Vec<Check>,
    /// Further phases and windows to report (see [`crate::Report::parts`]).
    pub(super) parts: Vec<PhaseStats>,
    pub(super) figures: Vec<Figure>,
    /// What the phase completed, reported per second and as a ratio to `/healthz` once the
    /// baseline is known (`checkout`: the checkouts).
    pub(super) rate: Option<Rate>,
}

impl Outcome {
    /// What a scenario that reports nothing besides its phase hands back.
    pub(super) fn new(
        stage: Option<Stage>,
        users: usize,
        setup: Duration,
        expectation: String,
        phase: PhaseStats,
    ) -> Self {
        Self {
            stage,
            users,
            setup,
            expectation,
            phase,
            chosen: None,
            confirmed: None,
            checks: Vec::new(),
            parts: Vec::new(),
            figures: Vec::new(),
            rate: None,
        }
    }
}

/// Reads the end state and judges it; returns the checks and the confirmed count per seat type.
pub(super) async fn verify_end(
    ctx: &Ctx,
    admin: &HeaderValue,
    stage: &Stage,
    users: &[User],
    ledger: &Ledger,
) -> anyhow::Result<(Vec<Check>, Vec<u64>)> {
    let observed = verify::observe(
        &ctx.target,
        admin,
        &stage.concert_id,
        &stage.seat_types,
        users,
        ledger,
        ctx.concurrency.min(64),
    )
    .await
    .context("reading the end state back")?;
    let by_id: HashMap<&str, u64> = observed
        .sales
        .seat_types
        .iter()
        .map(|seat| (seat.id.as_str(), seat.sold))
        .collect();
    let sold = stage
        .seat_types
        .iter()
        .map(|seat| by_id.get(seat.id.as_str()).copied().unwrap_or(0))
        .collect();
    let checks = verify::judge(
        &stage.concert_id,
        &stage.seat_types,
        users,
        ledger,
        &observed,
    );
    Ok((checks, sold))
}

/// The first check of every scenario: no 5xx, no request without an answer.
pub(super) fn server_error_check(phase: &PhaseStats) -> Check {
    let errors = phase.server_errors;
    Check::new(
        "no server errors",
        errors.total() == 0,
        format!("5xx {}, transport {}", errors.http_5xx, errors.transport),
    )
}
