//! `waitingroom`: an on-sale behind a waiting room (contract, "Waiting room for on-sales").
//!
//! Not measured: the users, and a concert whose sales open `--opens-in` after it is created
//! (default 3 s and 1 ms per user) behind a waiting room admitting `--admit-per-minute`
//! (default: the users spread over `--duration`, 30 s). Measured, in three phases:
//!
//! 1. `join`: every user joins the queue at once, before the opening. Each answer must be 201
//!    `waiting` without a position: the pre-queue has no order until it is shuffled.
//! 2. `wait`: every user polls their ticket until admitted — every second, or every half of
//!    their estimated wait up to 5 s — and the tool keeps the first position each was shown and
//!    their `admitted_until`. A sample of the waiting users tries to book without an admission,
//!    once before their position is known and once while waiting at one: 403
//!    `admission_required` each time.
//! 3. `book`: every admitted user books with their admission (`Boxoffice-Admission`), seat
//!    type `i mod k` for user `i`: 201, or 409 `sold_out` once their seat type is gone.
//!
//! Verified: nobody booked without an admission (every attempt without one refused, and the
//! server's confirmed bookings are exactly the tool's admitted ones, [`verify_end`]); the
//! admission order is the order of the positions shown; the admission rate is
//! `admit_per_minute` within 1 % (and one admission of rounding) over every minute, or over the
//! whole run when it is shorter ([`super::admissions`] says how each is measured).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use time::OffsetDateTime;

use super::admissions::{Admitted, RateFinding, Sighting, judge_rate, order_check, rate_check};
use super::outcome::{Outcome, verify_end};
use super::spread::spot;
use crate::args::{LoadtestArgs, SeatTypeSpec};
use crate::client::{Answer, Call};
use crate::phase::{Budget, Ctx, Worker};
use crate::report::{Check, Figure, PhaseStats};
use crate::setup::{RoomSettings, prepare};
use crate::verify::{Booked, Ledger, User};

/// The header that carries an admission to `POST /bookings`.
const ADMISSION: HeaderName = HeaderName::from_static("boxoffice-admission");
/// The share of users who try to book without an admission while they wait.
const PROBE_SHARE: f64 = 0.1;
/// The longest wait the scenario accepts (opening plus admissions): access tokens last 15
/// minutes.
const LONGEST_WAIT: Duration = Duration::from_secs(600);

/// A `QueueTicket`, as far as the scenario reads it.
#[derive(Debug, Deserialize)]
struct Ticket {
    state: String,
    position: Option<u64>,
    estimated_wait_seconds: Option<u64>,
    admission: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    admitted_until: Option<OffsetDateTime>,
}

impl Ticket {
    fn parse(answer: &Answer, body: Option<&Bytes>) -> Option<Self> {
        matches!(answer.status(), Some(StatusCode::OK | StatusCode::CREATED))
            .then(|| serde_json::from_slice(body?).ok())
            .flatten()
    }
}

/// What the tool learnt about one user.
#[derive(Debug, Default)]
struct Fan {
    /// Their join answered 201.
    joined: bool,
    first_position: Option<Sighting>,
    /// Tried to book without an admission before their position was known / at one.
    probed_early: bool,
    probed_placed: bool,
    admission: Option<String>,
    /// `admitted_until − admission_ttl_seconds`: the server's admission time.
    admitted_at: Option<OffsetDateTime>,
    /// When the tool first read the admission (its own clock).
    seen_at: Option<OffsetDateTime>,
    /// Polling ended without an admission (a refused poll, an admission already expired).
    gave_up: Option<String>,
}

/// Everything the waiting workers share: the fans and whose poll is due when.
struct Board {
    fans: Vec<Fan>,
    due: BinaryHeap<Reverse<(Instant, usize)>>,
}

/// The `wait` phase's shared state.
struct Waiting {
    board: Mutex<Board>,
    /// Fans still polling.
    left: AtomicUsize,
    deadline: Instant,
    /// Per user: `GET /api/v1/concerts/{id}/queue`, and a booking without an admission.
    polls: Vec<Call>,
    bookings: Vec<Call>,
    ttl: time::Duration,
}

impl Waiting {
    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next user whose poll is due, or how long until one is.
    fn next(&self) -> Result<usize, Duration> {
        let mut board = self.board();
        let now = Instant::now();
        match board.due.peek().copied() {
            Some(Reverse((at, user))) if at <= now => {
                board.due.pop();
                Ok(user)
            }
            Some(Reverse((at, _))) => Err((at - now).min(Duration::from_millis(50))),
            None => Err(Duration::from_millis(20)),
        }
    }

    fn done(&self, user: usize, gave_up: Option<String>) {
        self.board().fans[user].gave_up = gave_up;
        self.left.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The answers to bookings without an admission, as one worker saw them.
#[derive(Default)]
struct Probes {
    early: u64,
    placed: u64,
    refused: u64,
    other: Vec<String>,
}

/// How long a user waits before polling again: a second, or half the estimated wait up to 5 s.
fn poll_interval(estimated_wait_seconds: Option<u64>) -> Duration {
    Duration::from_secs(estimated_wait_seconds.map_or(1, |seconds| (seconds / 2).clamp(1, 5)))
}

/// One poll of `user`, and what follows from it.
async fn poll(worker: &mut Worker, waiting: &Waiting, probes: &mut Probes, user: usize) {
    let sent = Instant::now();
    let (answer, body) = worker.call_keeping_body(&waiting.polls[user]).await;
    let heard = Instant::now();
    let Some(ticket) = Ticket::parse(&answer, body.as_ref()) else {
        if answer.is_server_error() && heard < waiting.deadline {
            let mut board = waiting.board();
            board
                .due
                .push(Reverse((heard + Duration::from_secs(1), user)));
        } else {
            waiting.done(user, Some(format!("user {user}: {answer:?}")));
        }
        return;
    };
    if ticket.state == "admitted" {
        let (Some(admission), Some(until)) = (ticket.admission, ticket.admitted_until) else {
            let expired = format!("user {user}: admitted without a usable admission");
            return waiting.done(user, Some(expired));
        };
        {
            let mut board = waiting.board();
            let fan = &mut board.fans[user];
            fan.admission = Some(admission);
            fan.admitted_at = Some(until - waiting.ttl);
            fan.seen_at = Some(OffsetDateTime::now_utc());
        }
        return waiting.done(user, None);
    }
    let probe = {
        let mut board = waiting.board();
        let fan = &mut board.fans[user];
        if let Some(position) = ticket.position
            && fan.first_position.is_none()
        {
            fan.first_position = Some(Sighting {
                sent,
                heard,
                position,
            });
        }
        let sampled = spot(user) < PROBE_SHARE;
        let early = sampled && !fan.probed_early && ticket.position.is_none();
        let placed = sampled && !fan.probed_placed && ticket.position.is_some();
        fan.probed_early |= early;
        fan.probed_placed |= placed;
        early || placed
    };
    if probe {
        let refused = worker.call(&waiting.bookings[user], false).await;
        match ticket.position {
            None => probes.early += 1,
            Some(_) => probes.placed += 1,
        }
        if refused.is(StatusCode::FORBIDDEN, "admission_required") {
            probes.refused += 1;
        } else {
            probes.other.push(format!("user {user}: {refused:?}"));
        }
    }
    let next = Instant::now() + poll_interval(ticket.estimated_wait_seconds);
    waiting.board().due.push(Reverse((next, user)));
}

/// One worker of the `wait` phase: polls whoever is due until everyone is admitted or the time
/// is up.
async fn wait(mut worker: Worker, mut probes: Probes, waiting: Arc<Waiting>) -> (Worker, Probes) {
    while waiting.left.load(Ordering::Relaxed) > 0 && Instant::now() < waiting.deadline {
        match waiting.next() {
            Ok(user) => poll(&mut worker, &waiting, &mut probes, user).await,
            Err(pause) => tokio::time::sleep(pause).await,
        }
    }
    (worker, probes)
}

/// One join's answer and when it was heard (on this machine's clock).
struct JoinAnswer {
    user: usize,
    answer: Answer,
    ticket: Option<Ticket>,
    sent: Instant,
    heard: Instant,
    heard_at: OffsetDateTime,
}

/// The `join` phase: every user (up to `--requests`) joins the queue once, all at once.
async fn join_all(
    ctx: &Ctx,
    args: &LoadtestArgs,
    concert_id: &str,
    users: &[User],
) -> anyhow::Result<(PhaseStats, Vec<JoinAnswer>)> {
    let path = format!("/api/v1/concerts/{concert_id}/queue");
    let calls: Vec<Call> = users
        .iter()
        .map(|user| Ok(Call::post(&path, None)?.with_auth(user.auth.clone())))
        .collect::<anyhow::Result<_>>()?;
    let total = args
        .requests
        .map_or(users.len() as u64, |cap| cap.min(users.len() as u64));
    let calls = Arc::new(calls);
    let next = Arc::new(AtomicUsize::new(0));
    let budget = Arc::new(Budget::new(None, Some(total)));
    let (phase, answers) = ctx
        .phase(
            "join",
            Some(total),
            (0..ctx.concurrency).map(|_| Vec::new()).collect(),
            move |mut worker, mut answers: Vec<JoinAnswer>| {
                let (calls, next, budget) = (calls.clone(), next.clone(), budget.clone());
                async move {
                    while budget.take() {
                        let user = next.fetch_add(1, Ordering::Relaxed);
                        let Some(call) = calls.get(user) else { break };
                        let sent = Instant::now();
                        let (answer, body) = worker.call_keeping_body(call).await;
                        answers.push(JoinAnswer {
                            user,
                            ticket: Ticket::parse(&answer, body.as_ref()),
                            answer,
                            sent,
                            heard: Instant::now(),
                            heard_at: OffsetDateTime::now_utc(),
                        });
                    }
                    (worker, answers)
                }
            },
        )
        .await?;
    Ok((phase, answers.into_iter().flatten().collect()))
}

/// Sorts the joins into the fans: who is in the queue, and the check that every join before the
/// opening was a new place without a position.
fn tally_joins(answers: Vec<JoinAnswer>, fans: &mut [Fan], opens_at: OffsetDateTime) -> Check {
    let (mut early, mut late) = (0, 0);
    let mut problems = Vec::new();
    for join in answers {
        let fan = &mut fans[join.user];
        let Some(ticket) = join
            .ticket
            .filter(|_| join.answer.status() == Some(StatusCode::CREATED))
        else {
            problems.push(format!("user {}: {:?}", join.user, join.answer));
            continue;
        };
        fan.joined = true;
        if join.heard_at < opens_at {
            early += 1;
            if ticket.state != "waiting" || ticket.position.is_some() {
                problems.push(format!(
                    "user {}: {} at {:?} before the opening",
                    join.user, ticket.state, ticket.position
                ));
            }
        } else {
            late += 1;
        }
        if let Some(position) = ticket.position {
            fan.first_position = Some(Sighting {
                sent: join.sent,
                heard: join.heard,
                position,
            });
        }
    }
    let late = if late == 0 {
        String::new()
    } else {
        format!("; {late} answered after the opening (a longer --opens-in keeps them before)")
    };
    Check::of_problems(
        "joins",
        &problems,
        format!("{early} joins answered 201 waiting without a position before the opening{late}"),
    )
}

/// The `wait` phase: polls until every fan who joined is admitted, or until `deadline`.
async fn wait_all(
    ctx: &Ctx,
    stage: &crate::setup::Stage,
    users: &[User],
    fans: Vec<Fan>,
    ttl_seconds: u32,
    deadline: Instant,
) -> anyhow::Result<(PhaseStats, Vec<Fan>, Probes)> {
    let path = format!("/api/v1/concerts/{}/queue", stage.concert_id);
    let polls = users
        .iter()
        .map(|user| Ok(Call::get(&path)?.with_auth(user.auth.clone())))
        .collect::<anyhow::Result<_>>()?;
    let bookings = (0..users.len())
        .map(|user| book_call(stage, users, user, None))
        .collect::<anyhow::Result<_>>()?;
    let now = Instant::now();
    let due = (0..fans.len())
        .filter(|user| fans[*user].joined)
        .map(|user| Reverse((now, user)))
        .collect::<BinaryHeap<_>>();
    let waiting = Arc::new(Waiting {
        left: AtomicUsize::new(due.len()),
        board: Mutex::new(Board { fans, due }),
        deadline,
        polls,
        bookings,
        ttl: time::Duration::seconds(ttl_seconds.into()),
    });
    let (phase, probes) = ctx
        .phase(
            "wait",
            None,
            (0..ctx.concurrency).map(|_| Probes::default()).collect(),
            {
                let waiting = waiting.clone();
                move |worker, probes| wait(worker, probes, waiting.clone())
            },
        )
        .await?;
    let waiting = Arc::try_unwrap(waiting)
        .map_err(|_| anyhow::anyhow!("a wait worker outlived its phase"))?;
    let fans = waiting
        .board
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .fans;
    let probes = probes.into_iter().fold(Probes::default(), |mut all, one| {
        all.early += one.early;
        all.placed += one.placed;
        all.refused += one.refused;
        all.other.extend(one.other);
        all
    });
    Ok((phase, fans, probes))
}

/// `POST /api/v1/bookings` of seat type `user mod k` for `user`, with `admission` if given.
fn book_call(
    stage: &crate::setup::Stage,
    users: &[User],
    user: usize,
    admission: Option<&str>,
) -> anyhow::Result<Call> {
    let call = stage.book[user % stage.book.len()]
        .clone()
        .with_auth(users[user].auth.clone());
    Ok(match admission {
        Some(token) => call.with_header(ADMISSION, HeaderValue::from_str(token)?),
        None => call,
    })
}

/// The `book` phase: every admitted fan books once with their admission, in admission order.
async fn book_all(
    ctx: &Ctx,
    stage: &crate::setup::Stage,
    users: &[User],
    fans: &[Fan],
) -> anyhow::Result<(PhaseStats, Vec<(usize, Answer)>)> {
    let mut admitted: Vec<(OffsetDateTime, usize, &str)> = fans
        .iter()
        .enumerate()
        .filter_map(|(user, fan)| Some((fan.admitted_at?, user, fan.admission.as_deref()?)))
        .collect();
    admitted.sort();
    let calls: Vec<(usize, Call)> = admitted
        .into_iter()
        .map(|(_, user, token)| Ok((user, book_call(stage, users, user, Some(token))?)))
        .collect::<anyhow::Result<_>>()?;
    let total = calls.len() as u64;
    let calls = Arc::new(calls);
    let next = Arc::new(AtomicUsize::new(0));
    let (phase, answers) = ctx
        .phase(
            "book",
            Some(total),
            vec![Vec::new(); ctx.concurrency],
            move |mut worker, mut answers: Vec<(usize, Answer)>| {
                let (calls, next) = (calls.clone(), next.clone());
                async move {
                    while let Some((user, call)) = calls.get(next.fetch_add(1, Ordering::Relaxed)) {
                        answers.push((*user, worker.call(call, true).await));
                    }
                    (worker, answers)
                }
            },
        )
        .await?;
    Ok((phase, answers.into_iter().flatten().collect()))
}

/// The bookings' answers in a ledger (201s confirmed, seat type `user mod k`; a 5xx or no
/// answer unsure), the users who tried per seat type, and the answers that are neither a 201
/// nor a 409 `sold_out`.
fn tally_bookings(answers: Vec<(usize, Answer)>, k: usize) -> (Ledger, Vec<u64>, Vec<String>) {
    let mut ledger = Ledger::default();
    let mut chosen = vec![0; k];
    let mut unexpected = Vec::new();
    for (user, answer) in answers {
        chosen[user % k] += 1;
        match answer {
            Answer::Http {
                status: StatusCode::CREATED,
                id: Some(id),
                ..
            } => ledger.confirmed.push(Booked {
                id,
                user,
                seat_type: user % k,
            }),
            answer if answer.is(StatusCode::CONFLICT, "sold_out") => {}
            answer => {
                if answer.is_server_error() || answer.status() == Some(StatusCode::CREATED) {
                    ledger.unsure_users.push(user);
                }
                unexpected.push(format!("user {user}: {answer:?}"));
            }
        }
    }
    (ledger, chosen, unexpected)
}

/// "; first WHAT: …" naming the first of `failures`, or nothing when there is none.
fn first(failures: &[String], what: &str) -> String {
    failures
        .first()
        .map_or(String::new(), |first| format!("; first {what}: {first}"))
}

/// No 5xx and no request without an answer, in any of the phases.
fn server_errors(phases: &[&PhaseStats]) -> Check {
    let total: u64 = phases.iter().map(|phase| phase.server_errors.total()).sum();
    let each: Vec<String> = phases
        .iter()
        .map(|phase| {
            let errors = phase.server_errors;
            format!(
                "{}: 5xx {}, transport {}",
                phase.name, errors.http_5xx, errors.transport
            )
        })
        .collect();
    Check::new("no server errors", total == 0, each.join("; "))
}

/// Every fan in the queue admitted, each with an admission still good when first read.
fn admitted_check(fans: &[Fan]) -> Check {
    let joined = fans.iter().filter(|fan| fan.joined).count();
    let admitted = fans.iter().filter(|fan| fan.admitted_at.is_some()).count();
    let mut problems: Vec<String> = fans.iter().filter_map(|fan| fan.gave_up.clone()).collect();
    let still = joined - admitted - problems.len().min(joined - admitted);
    if still > 0 {
        problems.push(format!(
            "{still} fans still waiting when the wait ran out of time"
        ));
    }
    Check::of_problems(
        "everyone admitted",
        &problems,
        format!("{admitted} of {joined} fans in the queue admitted"),
    )
}

/// Nobody booked without an admission: every try without one refused, and the server's
/// confirmed bookings are exactly those the admitted fans made.
fn no_admission_check(probes: &Probes, sold: &[u64], ledger: &Ledger) -> Check {
    let confirmed: u64 = sold.iter().sum();
    let booked = ledger.confirmed.len() as u64;
    Check::new(
        "nobody booked without an admission",
        probes.other.is_empty() && confirmed == booked && ledger.unsure_users.is_empty(),
        format!(
            "{} bookings without an admission by waiting fans ({} before their position was \
             known, {} at one): {} answered 403 admission_required{}; the server holds \
             {confirmed} confirmed bookings, the admitted fans made {booked}",
            probes.early + probes.placed,
            probes.early,
            probes.placed,
            probes.refused,
            first(&probes.other, "other answer")
        ),
    )
}

/// The admitted fans as the order check sees them.
fn admitted(fans: &[Fan]) -> Vec<Admitted> {
    fans.iter()
        .filter_map(|fan| {
            Some(Admitted {
                at: fan.admitted_at?,
                first_position: fan.first_position,
            })
        })
        .collect()
}

/// The figures: joins per second, the admission rate measured, how soon admissions were seen.
fn figures(join: &PhaseStats, fans: &[Fan], finding: &RateFinding) -> Vec<Figure> {
    let joined = fans.iter().filter(|fan| fan.joined).count();
    let mut lags: Vec<f64> = fans
        .iter()
        .filter_map(|fan| Some((fan.seen_at? - fan.admitted_at?).as_seconds_f64() * 1000.0))
        .collect();
    lags.sort_by(f64::total_cmp);
    let at = |quantile: f64| {
        let index = ((lags.len() as f64 - 1.0) * quantile).round() as usize;
        lags.get(index).copied()
    };
    vec![
        Figure::new(
            "joins per second",
            (join.seconds > 0.0).then(|| joined as f64 / join.seconds),
            "/s",
            format!("{joined} joins answered 201 in {:.2} s", join.seconds),
        ),
        Figure::new(
            "admissions per minute",
            finding.per_minute,
            "/min",
            format!(
                "admissions between the first and the last full tick ({:.1} s), by the server's \
                 admission times (admitted_until − admission_ttl_seconds)",
                finding.span_seconds
            ),
        ),
        Figure::new(
            "admission seen after",
            at(0.5),
            "ms",
            format!(
                "p50; p99 {:.0} ms, max {:.0} ms over {} fans polling every second (half the \
                 estimated wait, up to 5 s), on this machine's clock, which a loopback server \
                 shares",
                at(0.99).unwrap_or(f64::NAN),
                lags.last().copied().unwrap_or(f64::NAN),
                lags.len()
            ),
        ),
    ]
}

/// The admissions' span and the opening, checked against the ten minutes a run may wait.
fn room_of(args: &LoadtestArgs) -> anyhow::Result<(RoomSettings, Duration)> {
    let (admit_per_minute, admission_ttl_seconds) = args
        .waiting_room()
        .ok_or_else(|| anyhow::anyhow!("the waitingroom scenario has no waiting room"))?;
    let opening = args.opening().unwrap_or_default();
    let users = args
        .requests
        .map_or(args.users() as u64, |cap| cap.min(args.users() as u64));
    let admissions = Duration::from_secs_f64(users as f64 * 60.0 / f64::from(admit_per_minute));
    anyhow::ensure!(
        opening + admissions <= LONGEST_WAIT,
        "{users} users admitted at {admit_per_minute}/min after an opening in {opening:?} would \
         wait over {LONGEST_WAIT:?}, longer than the users' access tokens allow: raise \
         --admit-per-minute or lower --duration"
    );
    let room = RoomSettings {
        admit_per_minute,
        admission_ttl_seconds,
    };
    Ok((room, opening))
}

/// A large queue joins before the opening, waits until admitted, and books with the admissions.
pub(super) async fn run(ctx: &Ctx, args: &LoadtestArgs) -> anyhow::Result<Outcome> {
    let (room, _) = room_of(args)?;
    let per_minute = room.admit_per_minute;
    let specs = args.seat_types_or(&SeatTypeSpec::onsale_default());
    let (admin, mut stage, users, setup) = prepare(ctx, args, &specs, args.users()).await?;
    anyhow::ensure!(
        stage.waiting_room == Some(room),
        "the server did not keep the concert's waiting room (it shows {:?}): it needs the v1.1 \
         API",
        stage.waiting_room
    );
    let opens_at = stage
        .opens_at
        .ok_or_else(|| anyhow::anyhow!("the concert has no opening"))?;
    args.note(&format!("{} users join the queue…", users.len()));
    let (join, answers) = join_all(ctx, args, &stage.concert_id, &users).await?;
    let mut fans: Vec<Fan> = (0..users.len()).map(|_| Fan::default()).collect();
    let joins = tally_joins(answers, &mut fans, opens_at);
    let joined = fans.iter().filter(|fan| fan.joined).count();
    let until_opening =
        Duration::try_from(opens_at - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO);
    let admissions = Duration::from_secs_f64(joined as f64 * 60.0 / f64::from(per_minute));
    let deadline =
        Instant::now() + until_opening + admissions.mul_f64(1.25) + Duration::from_secs(20);
    args.note(&format!(
        "{joined} fans wait for the opening at {opens_at} and {per_minute} admissions a minute…"
    ));
    let (wait, fans, probes) = wait_all(
        ctx,
        &stage,
        &users,
        fans,
        room.admission_ttl_seconds,
        deadline,
    )
    .await?;
    args.note("the admitted fans book…");
    let (book, answers) = book_all(ctx, &stage, &users, &fans).await?;
    let k = stage.seat_types.len();
    let (ledger, chosen, unexpected) = tally_bookings(answers, k);
    for (seat, chosen) in stage.seat_types.iter_mut().zip(&chosen) {
        seat.expected = Some(seat.capacity.min(*chosen));
    }
    args.note("verifying…");
    let (mut booking_checks, sold) = verify_end(ctx, &admin, &stage, &users, &ledger).await?;
    let times = fans.iter().filter_map(|fan| fan.admitted_at).collect();
    let finding = judge_rate(times, per_minute, opens_at);
    let tried: u64 = chosen.iter().sum();
    let mut checks = vec![
        server_errors(&[&join, &wait, &book]),
        joins,
        admitted_check(&fans),
        no_admission_check(&probes, &sold, &ledger),
        Check::of_problems(
            "admitted bookings",
            &unexpected,
            format!(
                "{} of {tried} admitted fans booked (201), the others were told 409 sold_out",
                ledger.confirmed.len()
            ),
        ),
        order_check(&admitted(&fans)),
        rate_check(&finding, per_minute),
    ];
    checks.append(&mut booking_checks);
    let expectation = format!(
        "{joined} fans join before the opening, without a position; they are admitted at \
         {per_minute}/min in the order of the positions shown; each books once with their \
         admission, user i seat type i mod {k}: per seat type confirmed == min(capacity, fans \
         who chose it); nobody books without an admission"
    );
    Ok(Outcome {
        chosen: Some(chosen),
        confirmed: Some(sold),
        checks,
        parts: vec![wait, book],
        figures: figures(&join, &fans, &finding),
        ..Outcome::new(Some(stage), users.len(), setup, expectation, join)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_slow_down_for_long_waits() {
        assert_eq!(poll_interval(None), Duration::from_secs(1));
        assert_eq!(poll_interval(Some(3)), Duration::from_secs(1));
        assert_eq!(poll_interval(Some(8)), Duration::from_secs(4));
        assert_eq!(poll_interval(Some(600)), Duration::from_secs(5));
    }
}
