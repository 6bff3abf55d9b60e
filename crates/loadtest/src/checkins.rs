//! Proving the check-in guarantees through the API (contract, "Tickets and check-in").
//!
//! Before the doors open, [`read_tickets`] reads each booking's ticket as its holder. While the
//! `doors` scenario runs, each scan's answer is read into a [`Got`]; every scan (one nonce) and
//! what it got, and what its re-send got when a scanner retried it, is a [`Scanned`]. The
//! judgements below compare those answers and the check-in counts ([`read_counts`]) without
//! any I/O (the unit tests tamper with the data): exactly one scan per ticket answers 201,
//! every other one 409 `already_checked_in` with the `checked_in_at` of that one, a re-sent
//! scan gets the same answer again, and the counts are the tickets let in.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::client::{Answer, Call, Conn, Target};
use crate::report::Check;
use crate::verify::{self, Booked, SeatTypeInfo, User};

/// A ticket as `GET /api/v1/bookings/{id}/ticket` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TicketView {
    pub booking_id: String,
    pub concert_id: String,
    pub seat_type_id: String,
    pub holder_name: String,
    pub code: String,
    pub status: String,
}

/// A ticket of the run: the booking it was read for, and what its holder read.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub booked: Booked,
    pub view: TicketView,
}

/// Each booking's ticket, read by its holder, `concurrency` at a time; in `bookings` order.
pub async fn read_tickets(
    target: &Arc<Target>,
    users: &[User],
    bookings: &[Booked],
    concurrency: usize,
) -> anyhow::Result<Vec<Ticket>> {
    let items = bookings
        .iter()
        .enumerate()
        .map(|(index, booked)| {
            let holder = users
                .get(booked.user)
                .context("a booking of no prepared user")?;
            Ok((index, booked.clone(), holder.auth.clone()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tickets = verify::parallel(
        target,
        concurrency,
        items,
        |mut conn: Conn, (index, booked, auth): (usize, Booked, HeaderValue)| async move {
            let call =
                Call::get(&format!("/api/v1/bookings/{}/ticket", booked.id))?.with_auth(auth);
            let view: TicketView = conn
                .json(&call, StatusCode::OK)
                .await
                .context("reading a ticket as its holder")?;
            Ok((conn, (index, Ticket { booked, view })))
        },
    )
    .await?;
    tickets.sort_by_key(|(index, _)| *index);
    Ok(tickets.into_iter().map(|(_, ticket)| ticket).collect())
}

/// `POST /api/v1/concerts/{id}/checkins` with this code and nonce (auth added per door).
pub fn scan_call(concert_id: &str, code: &str, nonce: &str) -> anyhow::Result<Call> {
    let body = serde_json::to_vec(&json!({ "code": code, "nonce": nonce }))?;
    Call::post(
        &format!("/api/v1/concerts/{concert_id}/checkins"),
        Some(body.into()),
    )
}

/// The 201 of a ticket's first scan.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Admission {
    pub booking_id: String,
    pub seat_type_id: String,
    pub holder_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_in_at: OffsetDateTime,
}

/// The member a 409 `already_checked_in` adds to the problem.
#[derive(Deserialize)]
struct AlreadyIn {
    #[serde(with = "time::serde::rfc3339")]
    checked_in_at: OffsetDateTime,
}

/// What one scan was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// 201: the ticket is in.
    Admitted(Admission),
    /// 409 `already_checked_in`, with the `checked_in_at` it carries (`None` when it carries
    /// none that reads as a time).
    AlreadyIn(Option<OffsetDateTime>),
    /// A 5xx or no answer: the scan may or may not have let the ticket in.
    Unsure,
    /// Anything else, as `"STATUS CODE"`.
    Unexpected(String),
}

impl Got {
    /// Reads an answer and its body (see [`Conn::send_keeping_body`]).
    pub fn of(answer: &Answer, body: Option<&Bytes>) -> Self {
        if answer.is_server_error() {
            return Got::Unsure;
        }
        if answer.status() == Some(StatusCode::CREATED)
            && let Some(admission) = body.and_then(|body| serde_json::from_slice(body).ok())
        {
            return Got::Admitted(admission);
        }
        if answer.is(StatusCode::CONFLICT, "already_checked_in") {
            let first = body.and_then(|body| serde_json::from_slice::<AlreadyIn>(body).ok());
            return Got::AlreadyIn(first.map(|first| first.checked_in_at));
        }
        Got::Unexpected(format!(
            "{} {}",
            answer.status().map_or(0, |status| status.as_u16()),
            answer.code().unwrap_or("-")
        ))
    }

    fn is_definite(&self) -> bool {
        matches!(self, Got::Admitted(_) | Got::AlreadyIn(_))
    }
}

/// One scan the doors sent (one nonce) and what it got; `retry` is what its re-send (the same
/// request, the same nonce) got, when the scanner re-sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Index of the ticket in the run's list.
    pub ticket: usize,
    pub got: Got,
    pub retry: Option<Got>,
}

impl Scanned {
    /// The 201 of this nonce: the first send's, or its re-send's when the first got no answer.
    fn admission(&self) -> Option<&Admission> {
        match (&self.got, &self.retry) {
            (Got::Admitted(admission), _) | (Got::Unsure, Some(Got::Admitted(admission))) => {
                Some(admission)
            }
            _ => None,
        }
    }

    /// Neither the first send nor a re-send got a definite answer.
    fn is_unsure(&self) -> bool {
        self.got == Got::Unsure && !self.retry.as_ref().is_some_and(Got::is_definite)
    }

    /// Every answer of this scan: the first send's, then the re-send's.
    fn answers(&self) -> impl Iterator<Item = &Got> {
        std::iter::once(&self.got).chain(&self.retry)
    }
}

/// The scans of one ticket, put together.
#[derive(Debug, Default)]
struct TicketScans<'a> {
    /// Scans (nonces) sent.
    scans: usize,
    /// The 201 of each nonce that got one.
    admitted: Vec<&'a Admission>,
    /// Some scan of it got no definite answer.
    unsure: bool,
}

impl TicketScans<'_> {
    /// When the ticket was let in: its one 201's `checked_in_at`.
    fn checked_in_at(&self) -> Option<OffsetDateTime> {
        self.admitted
            .first()
            .map(|admission| admission.checked_in_at)
    }
}

fn per_ticket(tickets: usize, scanned: &[Scanned]) -> Vec<TicketScans<'_>> {
    let mut per: Vec<TicketScans> = (0..tickets).map(|_| TicketScans::default()).collect();
    for scan in scanned {
        let Some(ticket) = per.get_mut(scan.ticket) else {
            continue;
        };
        ticket.scans += 1;
        ticket.admitted.extend(scan.admission());
        ticket.unsure |= scan.is_unsure();
    }
    per
}

/// Before the doors open: every ticket reads `valid`, of its booking, seat type and concert.
pub fn tickets_check(concert_id: &str, seat_types: &[SeatTypeInfo], tickets: &[Ticket]) -> Check {
    let problems: Vec<String> = tickets
        .iter()
        .filter(|ticket| {
            let view = &ticket.view;
            let seat = seat_types.get(ticket.booked.seat_type);
            view.status != "valid"
                || view.booking_id != ticket.booked.id
                || view.concert_id != concert_id
                || seat.is_none_or(|seat| seat.id != view.seat_type_id)
                || view.code.is_empty()
        })
        .map(|ticket| format!("booking {} reads {:?}", ticket.booked.id, ticket.view))
        .collect();
    Check::of_problems(
        "every ticket reads valid before the doors open",
        &problems,
        format!(
            "{} tickets read by their holders: valid, of their booking and seat type",
            tickets.len()
        ),
    )
}

/// The scans answered 201 or 409 `already_checked_in`, re-sends included: the scans done.
pub fn answered(scanned: &[Scanned]) -> u64 {
    scanned
        .iter()
        .flat_map(Scanned::answers)
        .filter(|got| got.is_definite())
        .count() as u64
}

/// Every answer is a 201 or a 409 `already_checked_in` (or a server error, judged apart).
pub fn answers_check(tickets: usize, scanned: &[Scanned]) -> Check {
    let (mut admitted, mut already, mut unsure, mut resent) = (0, 0, 0, 0);
    let mut unexpected: HashMap<&str, u64> = HashMap::new();
    for scan in scanned {
        resent += usize::from(scan.retry.is_some());
        for got in scan.answers() {
            match got {
                Got::Admitted(_) => admitted += 1,
                Got::AlreadyIn(_) => already += 1,
                Got::Unsure => unsure += 1,
                Got::Unexpected(what) => *unexpected.entry(what).or_default() += 1,
            }
        }
    }
    // One door scans far more than one user writes: the per-user write limit is meant for
    // users, and a load test runs without it.
    let limited = unexpected.contains_key("429 rate_limited");
    let mut unexpected: Vec<String> = unexpected
        .into_iter()
        .map(|(what, count)| format!("{what} ×{count}"))
        .collect();
    unexpected.sort();
    Check::new(
        "only 201 and 409 already_checked_in answers",
        unexpected.is_empty(),
        if unexpected.is_empty() {
            format!(
                "{} scans of {tickets} tickets ({resent} of them re-sent): {admitted} answers \
                 201, {already} 409 already_checked_in, {unsure} unsure",
                scanned.len()
            )
        } else {
            format!(
                "unexpected: {}{}",
                unexpected.join(", "),
                if limited {
                    " (the doors met the write limit: run the server with \
                     BOXOFFICE_RATE_LIMIT=off)"
                } else {
                    ""
                }
            )
        },
    )
}

/// Exactly one scan (one nonce) per scanned ticket answered 201: at most one where a scan of
/// it got no definite answer.
pub fn one_success_check(tickets: &[Ticket], scanned: &[Scanned]) -> Check {
    let per = per_ticket(tickets.len(), scanned);
    let mut problems = Vec::new();
    for (ticket, scans) in tickets.iter().zip(&per) {
        let admitted = scans.admitted.len();
        if admitted > 1 || (admitted == 0 && scans.scans > 0 && !scans.unsure) {
            problems.push(format!(
                "ticket of booking {}: {admitted} of its {} scans answered 201",
                ticket.booked.id, scans.scans
            ));
        }
    }
    let scanned_tickets = per.iter().filter(|scans| scans.scans > 0).count();
    let unsure = per.iter().filter(|scans| scans.unsure).count();
    Check::of_problems(
        "exactly one successful scan per ticket",
        &problems,
        format!(
            "{scanned_tickets} tickets scanned, each let in by exactly one scan ({unsure} with \
             a scan that got no answer: at most one)"
        ),
    )
}

/// Every 201 names the ticket's booking, seat type and holder.
pub fn admissions_check(tickets: &[Ticket], scanned: &[Scanned]) -> Check {
    let mut problems = Vec::new();
    let mut count = 0;
    for scan in scanned {
        let Some(ticket) = tickets.get(scan.ticket) else {
            continue;
        };
        for got in scan.answers() {
            let Got::Admitted(admission) = got else {
                continue;
            };
            count += 1;
            let view = &ticket.view;
            if admission.booking_id != view.booking_id
                || admission.seat_type_id != view.seat_type_id
                || admission.holder_name != view.holder_name
            {
                problems.push(format!(
                    "the ticket of booking {} was let in as {admission:?}",
                    view.booking_id
                ));
            }
        }
    }
    Check::of_problems(
        "every 201 names the ticket's booking, seat type and holder",
        &problems,
        format!("{count} answers 201, each of the ticket scanned"),
    )
}

/// Every 409 `already_checked_in` carries the `checked_in_at` of the ticket's one 201 (or,
/// where that 201 was lost, the same as the ticket's other 409s).
pub fn conflicts_check(tickets: &[Ticket], scanned: &[Scanned]) -> Check {
    let per = per_ticket(tickets.len(), scanned);
    let mut first_409: Vec<Option<OffsetDateTime>> = vec![None; tickets.len()];
    let mut problems = Vec::new();
    let mut count = 0;
    for scan in scanned {
        let (Some(ticket), Some(scans)) = (tickets.get(scan.ticket), per.get(scan.ticket)) else {
            continue;
        };
        for got in scan.answers() {
            let Got::AlreadyIn(carried) = got else {
                continue;
            };
            count += 1;
            let want = scans
                .checked_in_at()
                .or(first_409[scan.ticket])
                .or(*carried);
            first_409[scan.ticket] = want;
            if carried.is_none() || *carried != want {
                problems.push(format!(
                    "ticket of booking {}: a 409 carries checked_in_at {carried:?}, its \
                     check-in was at {want:?}",
                    ticket.view.booking_id
                ));
            }
        }
    }
    Check::of_problems(
        "every 409 already_checked_in carries the checked_in_at of the one success",
        &problems,
        format!("{count} answers 409 already_checked_in, each with its ticket's checked_in_at"),
    )
}

/// A scan re-sent with its nonce got the same answer again: the same 201 (booking and
/// `checked_in_at`) after a 201, a 409 `already_checked_in` after one.
pub fn retries_check(scanned: &[Scanned]) -> Check {
    let (mut same_201, mut same_409, mut undecided) = (0, 0, 0);
    let mut problems = Vec::new();
    for scan in scanned {
        let Some(retry) = &scan.retry else {
            continue;
        };
        match (&scan.got, retry) {
            (Got::Admitted(first), Got::Admitted(again))
                if first.booking_id == again.booking_id
                    && first.checked_in_at == again.checked_in_at =>
            {
                same_201 += 1;
            }
            (Got::AlreadyIn(first), Got::AlreadyIn(again)) if first == again => same_409 += 1,
            // No answer to judge by, or an answer the answers check already counts.
            (Got::Unsure | Got::Unexpected(_), _) | (_, Got::Unsure | Got::Unexpected(_)) => {
                undecided += 1;
            }
            (first, again) => problems.push(format!(
                "a scan got {first:?}, its re-send with the same nonce {again:?}"
            )),
        }
    }
    Check::of_problems(
        "a re-sent scan (same nonce) gets the same answer",
        &problems,
        format!(
            "{} scans re-sent: {same_201} got the same 201 again, {same_409} the same 409, \
             {undecided} could not be judged",
            same_201 + same_409 + undecided
        ),
    )
}

/// One seat type's line of `GET /api/v1/concerts/{id}/checkins`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CountLine {
    pub id: String,
    pub name: String,
    pub confirmed: u64,
    pub checked_in: u64,
}

/// `GET /api/v1/concerts/{id}/checkins`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Counts {
    pub concert_id: String,
    pub seat_types: Vec<CountLine>,
}

/// Reads the check-in counts with `auth` (a door's); a failed read is kept as its message, for
/// [`counts_check`] to report.
pub async fn read_counts(
    conn: &mut Conn,
    auth: &HeaderValue,
    concert_id: &str,
) -> Result<Counts, String> {
    let call = Call::get(&format!("/api/v1/concerts/{concert_id}/checkins"))
        .map_err(|error| format!("{error:#}"))?;
    conn.json(&call.with_auth(auth.clone()), StatusCode::OK)
        .await
        .map_err(|error| format!("{error:#}"))
}

/// An inclusive range of counts: exact unless an answer was lost.
fn within(count: u64, (low, high): (u64, u64)) -> bool {
    (low..=high).contains(&count)
}

/// The check-in counts, per seat type: `confirmed` is the bookings (`bookings[j]`: the 201s,
/// and how many more may exist behind a lost answer), `checked_in` the tickets let in.
pub fn counts_check(
    concert_id: &str,
    seat_types: &[SeatTypeInfo],
    bookings: &[(u64, u64)],
    tickets: &[Ticket],
    scanned: &[Scanned],
    read: &Result<Counts, String>,
) -> Check {
    let counts = match read {
        Ok(counts) => counts,
        Err(error) => return Check::new("check-in counts == tickets let in", false, error),
    };
    let mut let_in = vec![(0u64, 0u64); seat_types.len()];
    for (ticket, scans) in tickets.iter().zip(per_ticket(tickets.len(), scanned)) {
        if let Some((low, high)) = let_in.get_mut(ticket.booked.seat_type) {
            *low += u64::from(!scans.admitted.is_empty());
            *high += u64::from(!scans.admitted.is_empty() || scans.unsure);
        }
    }
    let mut problems = Vec::new();
    if counts.concert_id != concert_id {
        problems.push(format!("the counts are of concert {}", counts.concert_id));
    }
    for ((seat, &(booked, lost)), &checked_in) in seat_types.iter().zip(bookings).zip(&let_in) {
        let Some(line) = counts.seat_types.iter().find(|line| line.id == seat.id) else {
            problems.push(format!("{} missing", seat.name));
            continue;
        };
        if !within(line.confirmed, (booked, booked + lost)) || !within(line.checked_in, checked_in)
        {
            problems.push(format!(
                "{}: confirmed {} (bookings {booked}), checked_in {} (tickets let in {}{})",
                seat.name,
                line.confirmed,
                line.checked_in,
                checked_in.0,
                if checked_in.1 > checked_in.0 {
                    format!(" to {}", checked_in.1)
                } else {
                    String::new()
                }
            ));
        }
    }
    let summary: Vec<String> = counts
        .seat_types
        .iter()
        .map(|line| {
            format!(
                "{} {} of {} checked in",
                line.name, line.checked_in, line.confirmed
            )
        })
        .collect();
    Check::of_problems(
        "check-in counts == tickets let in, confirmed == bookings",
        &problems,
        summary.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const AT: OffsetDateTime = datetime!(2027-05-01 18:00:00 UTC);

    fn seats() -> Vec<SeatTypeInfo> {
        ["a", "b"]
            .into_iter()
            .map(|id| SeatTypeInfo {
                id: id.into(),
                name: id.to_uppercase(),
                capacity: 5,
                expected: None,
            })
            .collect()
    }

    /// Ticket `n` is booking `b{n}` of user `n`, seat type `a` for even `n`, `b` for odd.
    fn tickets(n: usize) -> Vec<Ticket> {
        (0..n)
            .map(|i| Ticket {
                booked: Booked {
                    id: format!("b{i}"),
                    user: i,
                    seat_type: i % 2,
                },
                view: TicketView {
                    booking_id: format!("b{i}"),
                    concert_id: "c".into(),
                    seat_type_id: ["a", "b"][i % 2].into(),
                    holder_name: "Load Test".into(),
                    code: format!("code-{i}"),
                    status: "valid".into(),
                },
            })
            .collect()
    }

    fn admitted(ticket: usize, at: OffsetDateTime) -> Got {
        Got::Admitted(Admission {
            booking_id: format!("b{ticket}"),
            seat_type_id: ["a", "b"][ticket % 2].into(),
            holder_name: "Load Test".into(),
            checked_in_at: at,
        })
    }

    fn scan(ticket: usize, got: Got) -> Scanned {
        Scanned {
            ticket,
            got,
            retry: None,
        }
    }

    /// Ticket 0 scanned once, ticket 1 twice, ticket 2 three times with its first scan
    /// re-sent; ticket 3 let in at another moment.
    fn consistent() -> Vec<Scanned> {
        let later = AT + time::Duration::milliseconds(5);
        vec![
            scan(0, admitted(0, AT)),
            scan(1, admitted(1, AT)),
            scan(1, Got::AlreadyIn(Some(AT))),
            Scanned {
                retry: Some(admitted(2, AT)),
                ..scan(2, admitted(2, AT))
            },
            scan(2, Got::AlreadyIn(Some(AT))),
            scan(2, Got::AlreadyIn(Some(AT))),
            scan(3, Got::AlreadyIn(Some(later))),
            scan(3, admitted(3, later)),
        ]
    }

    fn counts(a: (u64, u64), b: (u64, u64)) -> Result<Counts, String> {
        let line = |id: &str, (confirmed, checked_in)| CountLine {
            id: id.into(),
            name: id.to_uppercase(),
            confirmed,
            checked_in,
        };
        Ok(Counts {
            concert_id: "c".into(),
            seat_types: vec![line("a", a), line("b", b)],
        })
    }

    #[test]
    fn a_consistent_door_run_passes() {
        let (tickets, scanned) = (tickets(4), consistent());
        assert!(tickets_check("c", &seats(), &tickets).passed);
        let answers = answers_check(4, &scanned);
        assert!(answers.passed, "{answers:?}");
        assert!(
            answers
                .detail
                .contains("8 scans of 4 tickets (1 of them re-sent)")
        );
        assert!(one_success_check(&tickets, &scanned).passed);
        assert!(admissions_check(&tickets, &scanned).passed);
        assert!(conflicts_check(&tickets, &scanned).passed);
        let retries = retries_check(&scanned);
        assert!(retries.passed, "{retries:?}");
        assert!(retries.detail.contains("1 got the same 201 again"));
        let bookings = [(2, 0), (2, 0)];
        let check = counts_check(
            "c",
            &seats(),
            &bookings,
            &tickets,
            &scanned,
            &counts((2, 2), (2, 2)),
        );
        assert!(check.passed, "{check:?}");
    }

    #[test]
    fn two_successes_or_none_fail() {
        let tickets = tickets(4);
        let mut twice = consistent();
        twice[2] = scan(1, admitted(1, AT));
        assert!(!one_success_check(&tickets, &twice).passed);
        let mut never = consistent();
        never[0] = scan(0, Got::AlreadyIn(Some(AT)));
        assert!(!one_success_check(&tickets, &never).passed);
        // A scan that got no answer may have been the one: no 201 seen is then no failure.
        never[0] = scan(0, Got::Unsure);
        assert!(one_success_check(&tickets, &never).passed);
        // A re-send's 201 stands for its nonce's lost answer.
        never[0].retry = Some(admitted(0, AT));
        assert!(one_success_check(&tickets, &never).passed);
        never.push(scan(0, admitted(0, AT)));
        assert!(!one_success_check(&tickets, &never).passed);
    }

    #[test]
    fn a_409_with_another_moment_or_none_fails() {
        let tickets = tickets(4);
        let mut scanned = consistent();
        scanned[2] = scan(1, Got::AlreadyIn(Some(AT + time::Duration::seconds(1))));
        assert!(!conflicts_check(&tickets, &scanned).passed);
        scanned[2] = scan(1, Got::AlreadyIn(None));
        assert!(!conflicts_check(&tickets, &scanned).passed);
        // Without a 201, the 409s of a ticket must agree among themselves.
        let lost = vec![
            scan(0, Got::Unsure),
            scan(0, Got::AlreadyIn(Some(AT))),
            scan(0, Got::AlreadyIn(Some(AT))),
        ];
        assert!(conflicts_check(&tickets, &lost).passed);
        let disagree = vec![
            scan(0, Got::Unsure),
            scan(0, Got::AlreadyIn(Some(AT))),
            scan(0, Got::AlreadyIn(Some(AT + time::Duration::seconds(1)))),
        ];
        assert!(!conflicts_check(&tickets, &disagree).passed);
    }

    #[test]
    fn a_retry_answered_otherwise_fails() {
        let mut scanned = consistent();
        scanned[3].retry = Some(Got::AlreadyIn(Some(AT)));
        assert!(!retries_check(&scanned).passed);
        scanned[3].retry = Some(admitted(2, AT + time::Duration::seconds(1)));
        assert!(!retries_check(&scanned).passed);
        scanned[3].retry = Some(Got::Unsure);
        assert!(retries_check(&scanned).passed);
        let mut lost = consistent();
        lost[2].retry = Some(Got::AlreadyIn(Some(AT)));
        assert!(retries_check(&lost).passed);
        lost[2].retry = Some(admitted(1, AT));
        assert!(!retries_check(&lost).passed);
    }

    #[test]
    fn answers_of_another_ticket_or_kind_fail() {
        let tickets = tickets(4);
        let mut scanned = consistent();
        scanned[0] = scan(0, admitted(1, AT));
        assert!(!admissions_check(&tickets, &scanned).passed);
        scanned[0] = scan(0, Got::Unexpected("429 rate_limited".into()));
        let answers = answers_check(4, &scanned);
        assert!(!answers.passed);
        assert!(
            answers.detail.contains("429 rate_limited ×1"),
            "{answers:?}"
        );
    }

    #[test]
    fn counts_that_differ_fail() {
        let (tickets, scanned) = (tickets(4), consistent());
        let bookings = [(2, 0), (2, 0)];
        let check = |read| counts_check("c", &seats(), &bookings, &tickets, &scanned, &read);
        assert!(!check(counts((2, 1), (2, 2))).passed);
        assert!(!check(counts((3, 2), (2, 2))).passed);
        assert!(!check(Err("403 forbidden".into())).passed);
        let mut other = counts((2, 2), (2, 2)).unwrap();
        other.concert_id = "d".into();
        assert!(!check(Ok(other)).passed);
        // A scan without an answer may or may not have let its ticket in.
        let mut lost = consistent();
        lost[0] = scan(0, Got::Unsure);
        let check = |read| counts_check("c", &seats(), &bookings, &tickets, &lost, &read);
        assert!(check(counts((2, 1), (2, 2))).passed);
        assert!(check(counts((2, 2), (2, 2))).passed);
        assert!(!check(counts((2, 0), (2, 2))).passed);
    }

    #[test]
    fn a_ticket_not_valid_before_the_doors_open_fails() {
        let mut tickets = tickets(2);
        tickets[1].view.status = "checked_in".into();
        assert!(!tickets_check("c", &seats(), &tickets).passed);
        let mut tickets = super::tests::tickets(2);
        tickets[0].view.seat_type_id = "b".into();
        assert!(!tickets_check("c", &seats(), &tickets).passed);
    }

    #[test]
    fn answers_read_into_what_they_got() {
        let created = Bytes::from_static(
            br#"{"booking_id":"b0","seat_type_id":"a","holder_name":"Load Test","checked_in_at":"2027-05-01T18:00:00Z"}"#,
        );
        let answer = |status: u16, code: Option<&str>| Answer::Http {
            status: StatusCode::from_u16(status).unwrap(),
            code: code.map(Arc::from),
            id: None,
        };
        assert_eq!(Got::of(&answer(201, None), Some(&created)), admitted(0, AT));
        let conflict = Bytes::from_static(
            br#"{"type":"https://boxoffice.dev/problems/already_checked_in","title":"Already checked in","status":409,"detail":"scanned before","code":"already_checked_in","checked_in_at":"2027-05-01T18:00:00.000Z"}"#,
        );
        let already = answer(409, Some("already_checked_in"));
        assert_eq!(Got::of(&already, Some(&conflict)), Got::AlreadyIn(Some(AT)));
        assert_eq!(Got::of(&already, None), Got::AlreadyIn(None));
        assert_eq!(
            Got::of(&answer(503, Some("unavailable")), None),
            Got::Unsure
        );
        assert_eq!(
            Got::of(&answer(201, None), Some(&Bytes::from_static(b"{}"))),
            Got::Unexpected("201 -".into())
        );
        assert_eq!(
            Got::of(&answer(422, Some("invalid_ticket")), None),
            Got::Unexpected("422 invalid_ticket".into())
        );
    }

    #[test]
    fn a_scan_is_its_code_and_nonce() {
        let scan = scan_call("c", "code-0", "n").unwrap();
        assert_eq!(scan.path, "/api/v1/concerts/c/checkins");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(scan.body.as_ref().unwrap()).unwrap(),
            json!({ "code": "code-0", "nonce": "n" })
        );
    }
}
