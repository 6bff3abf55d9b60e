//! Setting the stage (admin login, concert, accounts) and the four scenarios.
//!
//! Every scenario has the same shape: prepare through the API, run one measured phase with
//! `--concurrency` workers (each with its own connection, all connected before the phase
//! starts, so the start is the signal), optionally measure `GET /healthz` the same way
//! (`--baseline`), then read the end state back and [`verify::judge`] it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::client::{Answer, Call, Conn, Target, bearer};
use crate::report::{Check, Live, PhaseStats, Progress, Ratios, Recorder, Report, SeatTypeReport};
use crate::verify::{self, Booked, Ledger, SeatTypeInfo, User};
use crate::{LoadtestArgs, Scenario, SeatTypeSpec};

/// Accounts per `POST /api/v1/admin/load-test-accounts` call (the endpoint's maximum).
const ACCOUNTS_PER_CALL: usize = 10_000;
/// How many of those calls run at once: enough to overlap, few enough not to starve the
/// server's other work while it hashes nothing but writes a lot.
const ACCOUNT_CALLS_AT_ONCE: usize = 3;

/// Stops a phase: at a deadline, after a number of requests, whichever comes first.
pub struct Budget {
    deadline: Option<Instant>,
    left: Option<AtomicU64>,
}

impl Budget {
    pub fn new(duration: Option<Duration>, requests: Option<u64>) -> Self {
        Self {
            deadline: duration.map(|duration| Instant::now() + duration),
            left: requests.map(AtomicU64::new),
        }
    }

    /// Takes one request from the budget; false once it is spent.
    pub fn take(&self) -> bool {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return false;
        }
        match &self.left {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// One load-generating worker: its connection, its recorder, the shared progress counters.
pub struct Worker {
    conn: Conn,
    recorder: Recorder,
    live: Arc<Live>,
}

impl Worker {
    /// Sends `call`, timing and counting the answer.
    pub async fn call(&mut self, call: &Call, want_id: bool) -> Answer {
        let started = Instant::now();
        let answer = self.conn.send(call, want_id).await;
        self.recorder.record(&answer, started.elapsed());
        self.live.count(&answer);
        answer
    }
}

/// Everything a scenario needs besides its arguments.
pub struct Ctx {
    pub target: Arc<Target>,
    pub concurrency: usize,
    pub show_progress: bool,
}

impl Ctx {
    /// Runs one measured phase: `states` (one per worker) go to `concurrency` workers running
    /// `body`; they come back, with the merged figures, when every worker has finished.
    pub async fn phase<S, F, Fut>(
        &self,
        name: &str,
        total: Option<u64>,
        states: Vec<S>,
        body: F,
    ) -> anyhow::Result<(PhaseStats, Vec<S>)>
    where
        S: Send + 'static,
        F: Fn(Worker, S) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = (Worker, S)> + Send + 'static,
    {
        let live = Arc::new(Live::default());
        let mut workers = Vec::with_capacity(states.len());
        for _ in 0..states.len() {
            let mut conn = Conn::new(self.target.clone());
            // A failed connect is not fatal here: the first request retries and counts it.
            let _ = conn.connect().await;
            workers.push(Worker {
                conn,
                recorder: Recorder::new(),
                live: live.clone(),
            });
        }
        let progress = Progress::start(name, total, live, self.show_progress);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (worker, state)) in workers.into_iter().zip(states).enumerate() {
            let body = body.clone();
            tasks.spawn(async move {
                let (worker, state) = body(worker, state).await;
                (index, worker.recorder, state)
            });
        }
        let mut merged = Recorder::new();
        let mut done = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (index, recorder, state) = joined.context("a load worker panicked")?;
            merged.merge(recorder);
            done.push((index, state));
        }
        let elapsed = started.elapsed();
        progress.finish();
        done.sort_by_key(|(index, _)| *index);
        let states = done.into_iter().map(|(_, state)| state).collect();
        Ok((merged.finish(name, elapsed), states))
    }

    /// `GET /healthz` with the same concurrency, for as many requests as `like` made (and
    /// no longer than `duration`): the ceiling of this HTTP stack on this machine.
    async fn baseline(
        &self,
        like: &PhaseStats,
        duration: Option<Duration>,
    ) -> anyhow::Result<PhaseStats> {
        let budget = Arc::new(Budget::new(duration, Some(like.requests.max(1))));
        let call = Arc::new(Call::get("/healthz")?);
        let (stats, _) = self
            .phase(
                "baseline",
                Some(like.requests.max(1)),
                vec![(); self.concurrency],
                move |mut worker, ()| {
                    let budget = budget.clone();
                    let call = call.clone();
                    async move {
                        while budget.take() {
                            worker.call(&call, false).await;
                        }
                        (worker, ())
                    }
                },
            )
            .await?;
        Ok(stats)
    }
}

/// The concert a run books into.
struct Stage {
    concert_id: String,
    seat_types: Vec<SeatTypeInfo>,
    /// Pre-serialized `POST /api/v1/bookings` calls, one per seat type (auth added per user).
    book: Vec<Call>,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
}

#[derive(Deserialize)]
struct ConcertSeatType {
    id: String,
    name: String,
    capacity: u64,
}

#[derive(Deserialize)]
struct Concert {
    id: String,
    seat_types: Vec<ConcertSeatType>,
}

#[derive(Deserialize)]
struct ConcertPage {
    items: Vec<Concert>,
}

#[derive(Deserialize)]
struct Account {
    user_id: String,
    access_token: String,
}

#[derive(Deserialize)]
struct Accounts {
    accounts: Vec<Account>,
}

async fn admin_login(conn: &mut Conn, args: &LoadtestArgs) -> anyhow::Result<HeaderValue> {
    let (Some(email), Some(password)) = (&args.admin_email, &args.admin_password) else {
        anyhow::bail!(
            "the {} scenario needs an admin: pass --admin-email and set BOXOFFICE_ADMIN_PASSWORD",
            args.scenario.name()
        );
    };
    let body = serde_json::to_vec(&json!({ "login": email, "password": password }))?;
    let tokens: Tokens = conn
        .json(
            &Call::post("/api/v1/auth/login", Some(body.into()))?,
            StatusCode::OK,
        )
        .await
        .context("logging in as the admin")?;
    bearer(&tokens.access_token)
}

fn stage_of(concert: Concert, wanted: Option<&[SeatTypeSpec]>) -> anyhow::Result<Stage> {
    let seat_types: Vec<SeatTypeInfo> = match wanted {
        // A concert the tool created: its seat types in the order they were asked for.
        Some(wanted) => wanted
            .iter()
            .map(|spec| {
                concert
                    .seat_types
                    .iter()
                    .find(|seat| seat.name == spec.name)
                    .map(|seat| SeatTypeInfo {
                        id: seat.id.clone(),
                        name: seat.name.clone(),
                        capacity: seat.capacity,
                        expected: None,
                    })
                    .with_context(|| format!("the new concert has no seat type {:?}", spec.name))
            })
            .collect::<anyhow::Result<_>>()?,
        None => concert
            .seat_types
            .iter()
            .map(|seat| SeatTypeInfo {
                id: seat.id.clone(),
                name: seat.name.clone(),
                capacity: seat.capacity,
                expected: None,
            })
            .collect(),
    };
    anyhow::ensure!(
        !seat_types.is_empty(),
        "concert {} has no seat types",
        concert.id
    );
    let book = seat_types
        .iter()
        .map(|seat| {
            let body =
                serde_json::to_vec(&json!({ "concert_id": concert.id, "seat_type_id": seat.id }))?;
            Call::post("/api/v1/bookings", Some(Bytes::from(body)))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Stage {
        concert_id: concert.id,
        seat_types,
        book,
    })
}

/// Creates the concert of this run (or loads `--concert-id`).
async fn stage(
    conn: &mut Conn,
    admin: &HeaderValue,
    args: &LoadtestArgs,
    seat_types: &[SeatTypeSpec],
) -> anyhow::Result<Stage> {
    if let Some(id) = &args.concert_id {
        let concert: Concert = conn
            .json(
                &Call::get(&format!("/api/v1/concerts/{id}"))?,
                StatusCode::OK,
            )
            .await
            .context("reading --concert-id")?;
        return stage_of(concert, None);
    }
    let starts_at = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    let body = json!({
        "name": format!("Load test {}", args.prefix),
        "artist": "boxoffice loadtest",
        "venue": "Loopback Arena",
        "description": format!("Created by `boxoffice loadtest --scenario {}`", args.scenario.name()),
        "starts_at": starts_at,
        "seat_types": seat_types.iter().map(|seat| json!({
            "name": seat.name, "price_cents": 5000, "currency": "USD", "capacity": seat.capacity,
        })).collect::<Vec<_>>(),
    });
    let concert: Concert = conn
        .json(
            &Call::post("/api/v1/concerts", Some(serde_json::to_vec(&body)?.into()))?
                .with_auth(admin.clone()),
            StatusCode::CREATED,
        )
        .await
        .context("creating the concert")?;
    stage_of(concert, Some(seat_types))
}

/// `count` customer accounts with access tokens, from the load-test accounts endpoint in
/// chunks of [`ACCOUNTS_PER_CALL`], [`ACCOUNT_CALLS_AT_ONCE`] at a time.
async fn prepare_users(
    target: &Arc<Target>,
    admin: &HeaderValue,
    count: usize,
    prefix: &str,
) -> anyhow::Result<Vec<User>> {
    let chunks: Vec<usize> = (0..count)
        .step_by(ACCOUNTS_PER_CALL)
        .map(|start| ACCOUNTS_PER_CALL.min(count - start))
        .collect();
    let admin = admin.clone();
    let prefix = prefix.to_owned();
    let lists = verify::parallel(
        target,
        ACCOUNT_CALLS_AT_ONCE,
        chunks,
        move |mut conn: Conn, size: usize| {
            let admin = admin.clone();
            let prefix = prefix.clone();
            async move {
                let body = serde_json::to_vec(&json!({ "count": size, "prefix": prefix }))?;
                let call = Call::post("/api/v1/admin/load-test-accounts", Some(body.into()))?
                    .with_auth(admin);
                let (status, body) = conn.send_raw(&call).await.map_err(|error| {
                    anyhow::anyhow!(
                        "creating load-test accounts: no answer ({})",
                        error.as_str()
                    )
                })?;
                if status == StatusCode::NOT_FOUND {
                    anyhow::bail!(
                        "the server does not offer load-test accounts; start it with \
                     --load-test-accounts on (BOXOFFICE_LOAD_TEST_ACCOUNTS=on)"
                    );
                }
                if status != StatusCode::CREATED {
                    anyhow::bail!(
                        "creating load-test accounts answered {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(500)])
                    );
                }
                let accounts: Accounts =
                    serde_json::from_slice(&body).context("the load-test accounts answer")?;
                let users = accounts
                    .accounts
                    .into_iter()
                    .map(|account| {
                        Ok(User {
                            id: account.user_id,
                            auth: bearer(&account.access_token)?,
                        })
                    })
                    .collect::<anyhow::Result<Vec<User>>>()?;
                Ok((conn, users))
            }
        },
    )
    .await?;
    let users: Vec<User> = lists.into_iter().flatten().collect();
    anyhow::ensure!(
        users.len() == count,
        "asked for {count} load-test accounts, got {}",
        users.len()
    );
    Ok(users)
}

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

fn server_error_check(phase: &PhaseStats) -> Check {
    let errors = phase.server_errors;
    Check::new(
        "no server errors",
        errors.total() == 0,
        format!("5xx {}, transport {}", errors.http_5xx, errors.transport),
    )
}

/// What the run did and found, put together.
struct Outcome {
    stage: Option<Stage>,
    users: usize,
    setup: Duration,
    expectation: String,
    phase: PhaseStats,
    chosen: Option<Vec<u64>>,
    confirmed: Option<Vec<u64>>,
    checks: Vec<Check>,
}

/// Runs the scenario `args` names against `target`.
pub async fn run(target: Arc<Target>, args: &LoadtestArgs) -> anyhow::Result<Report> {
    let ctx = Ctx {
        target: target.clone(),
        concurrency: args.concurrency(),
        show_progress: !args.json,
    };
    let outcome = match args.scenario {
        Scenario::Onsale => onsale(&ctx, args).await?,
        Scenario::Churn => churn(&ctx, args).await?,
        Scenario::Browse => browse(&ctx, args).await?,
        Scenario::Soldout => soldout(&ctx, args).await?,
    };
    let baseline = if args.baseline {
        Some(ctx.baseline(&outcome.phase, args.phase_duration()).await?)
    } else {
        None
    };
    let ratios = baseline
        .as_ref()
        .and_then(|baseline| Ratios::of(&outcome.phase, baseline));
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
        baseline,
        ratios,
        checks: outcome.checks,
        verdict,
    })
}

fn note(args: &LoadtestArgs, message: &str) {
    if !args.json {
        eprintln!("{message}");
    }
}

/// Admin, concert and users, timed.
async fn prepare(
    ctx: &Ctx,
    args: &LoadtestArgs,
    seat_types: &[SeatTypeSpec],
    users: usize,
) -> anyhow::Result<(HeaderValue, Stage, Vec<User>, Duration)> {
    let started = Instant::now();
    let mut conn = Conn::new(ctx.target.clone());
    let admin = admin_login(&mut conn, args).await?;
    // Accounts first: a server that offers no load-test accounts is then refused before a
    // concert is created, instead of left with a "Load test …" concert on sale.
    note(args, &format!("preparing {users} users…"));
    let prepared = prepare_users(&ctx.target, &admin, users, &args.prefix).await?;
    let stage = stage(&mut conn, &admin, args, seat_types).await?;
    note(args, &format!("concert {} ready", stage.concert_id));
    let setup = started.elapsed();
    note(
        args,
        &format!("{users} users ready in {:.2} s", setup.as_secs_f64()),
    );
    Ok((admin, stage, prepared, setup))
}

/// Reads the end state and judges it; returns the checks and the confirmed count per seat type.
async fn verify_end(
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

/// Every prepared user books once, all at the same moment.
async fn onsale(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
    let specs = args.seat_types_or(&SeatTypeSpec::onsale_default());
    let (admin, mut stage, users, setup) = prepare(ctx, args, &specs, args.users()).await?;
    let users = Arc::new(users);
    let next = Arc::new(AtomicUsize::new(0));
    let budget = Arc::new(Budget::new(args.duration, args.requests));
    let book = Arc::new(stage.book.clone());
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
                move |mut worker, mut answers: Vec<(usize, Answer)>| {
                    let (users, next, budget, book) =
                        (users.clone(), next.clone(), budget.clone(), book.clone());
                    async move {
                        while budget.take() {
                            let user = next.fetch_add(1, Ordering::Relaxed);
                            let Some(found) = users.get(user) else { break };
                            let call = book[user % book.len()]
                                .clone()
                                .with_auth(found.auth.clone());
                            let answer = worker.call(&call, true).await;
                            answers.push((user, answer));
                        }
                        (worker, answers)
                    }
                }
            },
        )
        .await?;

    let k = stage.seat_types.len();
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
    let capacities: Vec<u64> = stage.seat_types.iter().map(|seat| seat.capacity).collect();
    let expectation = round_robin_expectation(&capacities, attempted);
    for (seat, (_, expected)) in stage.seat_types.iter_mut().zip(&expectation) {
        seat.expected = Some(*expected);
    }
    note(args, "verifying…");
    let (mut checks, sold) = verify_end(ctx, &admin, &stage, &users, &ledger).await?;
    checks.insert(0, server_error_check(&phase));
    let mut unexpected: Vec<String> = unexpected
        .into_iter()
        .map(|(what, count)| format!("{what} ×{count}"))
        .collect();
    unexpected.sort();
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
    })
}

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

/// Steady book/cancel traffic: each worker walks its own users; a user holding a booking
/// cancels it, a user holding none books (seat types in turn).
async fn churn(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
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
    let budget = Arc::new(Budget::new(args.phase_duration(), args.requests));
    let book = Arc::new(stage.book.clone());
    let (phase, states) = ctx
        .phase("churn", args.requests, states, {
            let users = users.clone();
            move |mut worker, mut state: ChurnState| {
                let (users, budget, book) = (users.clone(), budget.clone(), book.clone());
                async move {
                    let mut position = 0;
                    while state.users.iter().any(|user| !user.unsure) && budget.take() {
                        position = (position + 1) % state.users.len();
                        let user = &mut state.users[position];
                        if user.unsure {
                            continue;
                        }
                        let Some(found) = users.get(user.index) else {
                            break;
                        };
                        if let Some((id, seat)) = user.held.take() {
                            let Ok(call) =
                                Call::post(&format!("/api/v1/bookings/{id}/cancel"), None)
                            else {
                                break;
                            };
                            let answer = worker
                                .call(&call.with_auth(found.auth.clone()), false)
                                .await;
                            if answer.status() == Some(StatusCode::OK) {
                                state.cancelled.push(Booked {
                                    id,
                                    user: user.index,
                                    seat_type: seat,
                                });
                            } else {
                                if !answer.is_server_error() {
                                    state.unexpected.push(format!("cancel: {answer:?}"));
                                }
                                // Whatever happened, the server knows better now.
                                user.unsure = true;
                                user.held = Some((id, seat));
                            }
                        } else {
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
                                }
                                answer if answer.is(StatusCode::CONFLICT, "sold_out") => {}
                                answer => {
                                    if !answer.is_server_error() {
                                        state.unexpected.push(format!("book: {answer:?}"));
                                    }
                                    user.unsure = true;
                                }
                            }
                        }
                    }
                    (worker, state)
                }
            }
        })
        .await?;
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
    note(args, "verifying…");
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
    })
}

/// Catalog reads: the list, one concert's details and its availability, in turn.
async fn browse(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
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
    })
}

/// Sells a tiny seat type out, then hammers it: the loser path.
async fn soldout(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
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
    let mut conn = Conn::new(ctx.target.clone());
    let mut ledger = Ledger::default();
    let mut sell_out_failures = Vec::new();
    for (user, found) in users.iter().enumerate().take(capacity) {
        let call = stage.book[0].clone().with_auth(found.auth.clone());
        match conn.send(&call, true).await {
            Answer::Http {
                status: StatusCode::CREATED,
                id: Some(id),
                ..
            } => {
                ledger.confirmed.push(Booked {
                    id,
                    user,
                    seat_type: 0,
                });
            }
            answer => {
                if answer.is_server_error() {
                    ledger.unsure_users.push(user);
                }
                sell_out_failures.push(format!("user {user}: {answer:?}"));
            }
        }
    }
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
    note(args, "verifying…");
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

    #[test]
    fn a_budget_ends_at_its_request_cap() {
        let budget = Budget::new(None, Some(3));
        assert_eq!((0..10).filter(|_| budget.take()).count(), 3);
        let unbounded_in_count = Budget::new(Some(Duration::from_secs(60)), None);
        assert!((0..1000).all(|_| unbounded_in_count.take()));
        let over = Budget::new(Some(Duration::ZERO), None);
        assert!(!over.take());
    }
}
