//! `churn`: steady book/cancel traffic. Each worker walks its own users; a user holding a
//! booking cancels it, a user holding none books (seat types in turn). At the end the server
//! must hold exactly the bookings the tool holds and show cancelled exactly those it cancelled.

use std::sync::Arc;

use http::StatusCode;

use super::outcome::{Outcome, server_error_check, verify_end};
use crate::args::{LoadtestArgs, SeatTypeSpec};
use crate::client::{Answer, Call};
use crate::phase::{Budget, Ctx, Worker};
use crate::report::Check;
use crate::setup::prepare;
use crate::verify::{Booked, Ledger, User};

/// A user of the churn scenario, owned by one worker.
struct ChurnUser {
    index: usize,
    held: Option<(String, usize)>,
    next_seat: usize,
    unsure: bool,
}

#[derive(Default)]
struct ChurnState {
    users: Vec<ChurnUser>,
    cancelled: Vec<Booked>,
    unexpected: Vec<String>,
}

/// What every worker shares: the prepared users, the budget, one booking call per seat type.
#[derive(Clone)]
struct Shared {
    users: Arc<Vec<User>>,
    budget: Arc<Budget>,
    book: Arc<Vec<Call>>,
}

/// One worker's share of the phase: its users in turn until the budget is spent or every one
/// of them is unsure.
async fn walk(mut worker: Worker, mut state: ChurnState, shared: Shared) -> (Worker, ChurnState) {
    let mut position = 0;
    while state.users.iter().any(|user| !user.unsure) && shared.budget.take() {
        position = (position + 1) % state.users.len();
        let user = &mut state.users[position];
        if user.unsure {
            continue;
        }
        let Some(found) = shared.users.get(user.index) else {
            break;
        };
        let step = if user.held.is_some() {
            cancel(&mut worker, user, found, &mut state.cancelled).await
        } else {
            book(&mut worker, user, found, &shared.book).await
        };
        match step {
            Ok(None) => {}
            Ok(Some(unexpected)) => state.unexpected.push(unexpected),
            Err(()) => break,
        }
    }
    (worker, state)
}

/// Cancels the booking `user` holds. Returns a description of an unexpected answer; `Err`
/// when the call cannot even be built.
async fn cancel(
    worker: &mut Worker,
    user: &mut ChurnUser,
    found: &User,
    cancelled: &mut Vec<Booked>,
) -> Result<Option<String>, ()> {
    let Some((id, seat)) = user.held.take() else {
        return Ok(None);
    };
    let Ok(call) = Call::post(&format!("/api/v1/bookings/{id}/cancel"), None) else {
        return Err(());
    };
    let answer = worker
        .call(&call.with_auth(found.auth.clone()), false)
        .await;
    if answer.status() == Some(StatusCode::OK) {
        cancelled.push(Booked {
            id,
            user: user.index,
            seat_type: seat,
        });
        return Ok(None);
    }
    // Whatever happened, the server knows better now.
    user.unsure = true;
    user.held = Some((id, seat));
    Ok((!answer.is_server_error()).then(|| format!("cancel: {answer:?}")))
}

/// Books the next seat type in turn for `user`. Returns a description of an unexpected answer.
async fn book(
    worker: &mut Worker,
    user: &mut ChurnUser,
    found: &User,
    book: &[Call],
) -> Result<Option<String>, ()> {
    let seat = user.next_seat % book.len();
    user.next_seat += 1;
    let call = book[seat].clone().with_auth(found.auth.clone());
    match worker.call(&call, true).await {
        Answer::Http {
            status: StatusCode::CREATED,
            id: Some(id),
            ..
        } => {
            user.held = Some((id, seat));
            Ok(None)
        }
        answer if answer.is(StatusCode::CONFLICT, "sold_out") => Ok(None),
        answer => {
            user.unsure = true;
            Ok((!answer.is_server_error()).then(|| format!("book: {answer:?}")))
        }
    }
}

/// The workers' states put together: what the tool holds, cancelled and is unsure of, and
/// the unexpected answers.
fn ledger_of(states: Vec<ChurnState>) -> (Ledger, Vec<String>) {
    let mut ledger = Ledger::default();
    let mut unexpected = Vec::new();
    for state in states {
        ledger.cancelled.extend(state.cancelled);
        unexpected.extend(state.unexpected);
        for user in state.users {
            if user.unsure {
                ledger.unsure_users.push(user.index);
            } else if let Some((id, seat_type)) = user.held {
                ledger.confirmed.push(Booked {
                    id,
                    user: user.index,
                    seat_type,
                });
            }
        }
    }
    (ledger, unexpected)
}

/// Steady book/cancel traffic: each worker walks its own users; a user holding a booking
/// cancels it, a user holding none books (seat types in turn).
pub(super) async fn run(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
    let specs = args.seat_types_or(&SeatTypeSpec::onsale_default());
    let (admin, stage, users, setup) = prepare(ctx, args, &specs, args.users()).await?;
    let users = Arc::new(users);
    let mut states: Vec<ChurnState> = (0..ctx.concurrency)
        .map(|_| ChurnState::default())
        .collect();
    for index in 0..users.len() {
        states[index % ctx.concurrency].users.push(ChurnUser {
            index,
            held: None,
            next_seat: index,
            unsure: false,
        });
    }
    let shared = Shared {
        users: users.clone(),
        budget: Arc::new(Budget::new(args.phase_duration(), args.requests)),
        book: Arc::new(stage.book.clone()),
    };
    let (phase, states) = ctx
        .phase("churn", args.requests, states, move |worker, state| {
            walk(worker, state, shared.clone())
        })
        .await?;
    let (ledger, unexpected) = ledger_of(states);
    args.note("verifying…");
    let (mut checks, sold) = verify_end(ctx, &admin, &stage, &users, &ledger).await?;
    checks.insert(0, server_error_check(&phase));
    checks.insert(
        1,
        Check::new(
            "only 201, 200 and 409 sold_out answers",
            unexpected.is_empty(),
            if unexpected.is_empty() {
                format!(
                    "{} bookings held, {} cancelled at the end",
                    ledger.confirmed.len(),
                    ledger.cancelled.len()
                )
            } else {
                format!("{} unexpected, e.g. {}", unexpected.len(), unexpected[0])
            },
        ),
    );
    Ok(Outcome {
        users: users.len(),
        setup,
        expectation: "each user alternates booking (seat types in turn) and cancelling; at the \
                      end the server's confirmed bookings are exactly those the tool holds and \
                      its cancelled ones those the tool cancelled"
            .to_owned(),
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
