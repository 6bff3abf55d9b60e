//! Proving through the API that nothing was oversold, duplicated or lost.
//!
//! During a run the tool keeps a [`Ledger`]: every booking it believes confirmed (its 201s),
//! every booking it cancelled (its 200s), and the users whose last request got no definite
//! answer (a 5xx or a transport failure: the booking may or may not exist). At the end,
//! [`observe`] reads what the server says — the admin sales report, the availability read,
//! the concert details, each booking of the ledger by id (as the admin), and the confirmed
//! bookings of each unsure user — and [`judge`] compares both without any I/O, which is what
//! the unit tests below exercise with tampered data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use crate::client::{Call, Conn, Target};
use crate::report::Check;

/// A seat type of the concert under test.
#[derive(Debug, Clone)]
pub struct SeatTypeInfo {
    pub id: String,
    pub name: String,
    pub capacity: u64,
    /// What must be confirmed at the end, when the scenario's rule makes it exact.
    pub expected: Option<u64>,
}

/// One booking the tool made (or found, for an unsure user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booked {
    pub id: String,
    /// Index of the user in the prepared list.
    pub user: usize,
    /// Index of the seat type in [`SeatTypeInfo`] order.
    pub seat_type: usize,
}

/// What the tool believes about the bookings it made.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Bookings the tool holds: created (201) and not cancelled.
    pub confirmed: Vec<Booked>,
    /// Bookings the tool cancelled (200).
    pub cancelled: Vec<Booked>,
    /// Users whose last request got no definite answer; their confirmed bookings are
    /// read back from the server before judging.
    pub unsure_users: Vec<usize>,
}

/// A booking as `GET /api/v1/bookings/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BookingView {
    pub id: String,
    pub user_id: String,
    pub concert_id: String,
    pub seat_type_id: String,
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SalesSeatType {
    pub id: String,
    pub capacity: u64,
    pub sold: u64,
    pub remaining: u64,
}

/// `GET /api/v1/concerts/{id}/sales`.
#[derive(Debug, Clone, Deserialize)]
pub struct Sales {
    pub seat_types: Vec<SalesSeatType>,
    pub bookings_confirmed: u64,
    pub bookings_cancelled: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Remaining {
    pub id: String,
    pub remaining: u64,
}

/// `GET /api/v1/concerts/{id}/availability` (and the seat types of the concert details).
#[derive(Debug, Clone, Deserialize)]
pub struct SeatCounts {
    pub seat_types: Vec<Remaining>,
}

#[derive(Debug, Clone, Deserialize)]
struct Page {
    items: Vec<BookingView>,
    next_cursor: Option<String>,
}

/// What the server says at the end of a run.
#[derive(Debug, Clone)]
pub struct Observed {
    pub sales: Sales,
    pub availability: SeatCounts,
    pub details: SeatCounts,
    /// Each booking of the ledger (confirmed, then cancelled) as the admin reads it by id;
    /// `None` when that read did not answer 200.
    pub lookups: HashMap<String, Option<BookingView>>,
    /// The confirmed bookings of this concert that each unsure user holds.
    pub resolved: Vec<Booked>,
}

/// A prepared user: id and ready-made `Authorization` value.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub auth: HeaderValue,
}

/// Reads everything [`judge`] needs, with `concurrency` connections for the per-booking reads.
pub async fn observe(
    target: &Arc<Target>,
    admin: &HeaderValue,
    concert_id: &str,
    seat_types: &[SeatTypeInfo],
    users: &[User],
    ledger: &Ledger,
    concurrency: usize,
) -> anyhow::Result<Observed> {
    let mut conn = Conn::new(target.clone());
    let sales: Sales = conn
        .json(
            &Call::get(&format!("/api/v1/concerts/{concert_id}/sales"))?.with_auth(admin.clone()),
            StatusCode::OK,
        )
        .await?;
    // Every booking id of the ledger, read by id as the admin, `concurrency` at a time.
    let ids: Vec<String> = ledger
        .confirmed
        .iter()
        .chain(&ledger.cancelled)
        .map(|booked| booked.id.clone())
        .collect();
    let lookups = parallel(target, concurrency, ids, {
        let admin = admin.clone();
        move |mut conn: Conn, id: String| {
            let admin = admin.clone();
            async move {
                let call = Call::get(&format!("/api/v1/bookings/{id}"))?.with_auth(admin);
                let view = conn.json::<BookingView>(&call, StatusCode::OK).await.ok();
                Ok((conn, (id, view)))
            }
        }
    })
    .await?
    .into_iter()
    .collect();

    // What each unsure user really holds.
    let seat_index: HashMap<&str, usize> = seat_types
        .iter()
        .enumerate()
        .map(|(index, seat)| (seat.id.as_str(), index))
        .collect();
    let unsure: Vec<(usize, User)> = ledger
        .unsure_users
        .iter()
        .filter_map(|&user| users.get(user).map(|found| (user, found.clone())))
        .collect();
    let held = parallel(target, concurrency, unsure, {
        let concert_id = concert_id.to_owned();
        move |mut conn: Conn, (index, user): (usize, User)| {
            let concert_id = concert_id.clone();
            async move {
                let mut found = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let mut path = "/api/v1/bookings?status=confirmed&limit=100".to_owned();
                    if let Some(cursor) = &cursor {
                        path.push_str("&cursor=");
                        path.push_str(cursor);
                    }
                    let page: Page = conn
                        .json(
                            &Call::get(&path)?.with_auth(user.auth.clone()),
                            StatusCode::OK,
                        )
                        .await
                        .with_context(|| format!("listing the bookings of user {}", user.id))?;
                    found.extend(
                        page.items
                            .into_iter()
                            .filter(|booking| booking.concert_id == concert_id)
                            .map(|booking| (index, booking)),
                    );
                    match page.next_cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Ok((conn, found))
            }
        }
    })
    .await?;
    // The public reads last: where several Booking instances sell, each answers them from a view
    // that follows the others' commits a moment later (tens of milliseconds, more on a CPU-capped
    // instance); by now every commit of the run has reached every view.
    let availability: SeatCounts = conn
        .json(
            &Call::get(&format!("/api/v1/concerts/{concert_id}/availability"))?,
            StatusCode::OK,
        )
        .await?;
    let details: SeatCounts = conn
        .json(
            &Call::get(&format!("/api/v1/concerts/{concert_id}"))?,
            StatusCode::OK,
        )
        .await?;
    let resolved = held
        .into_iter()
        .flatten()
        .map(|(user, booking)| Booked {
            seat_type: seat_index
                .get(booking.seat_type_id.as_str())
                .copied()
                .unwrap_or(usize::MAX),
            id: booking.id,
            user,
        })
        .collect();
    Ok(Observed {
        sales,
        availability,
        details,
        lookups,
        resolved,
    })
}

/// Runs `work` over `items` on `concurrency` connections; the answers come back unordered.
/// `work` gets a connection and hands it back with its answer, so that it is reused.
pub async fn parallel<I, T, F, Fut>(
    target: &Arc<Target>,
    concurrency: usize,
    items: Vec<I>,
    work: F,
) -> anyhow::Result<Vec<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(Conn, I) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<(Conn, T)>> + Send,
{
    let queue = Arc::new(std::sync::Mutex::new(items));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let queue = queue.clone();
        let work = work.clone();
        let mut conn = Conn::new(target.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let next = queue.lock().map(|mut items| items.pop()).ok().flatten();
                let Some(item) = next else { break };
                let (back, answer) = work(conn, item).await?;
                conn = back;
                out.push(answer);
            }
            anyhow::Ok(out)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

/// Compares the ledger with what the server says. `users` gives the ids the bookings must
/// belong to; `concert_id` the concert they must be of.
pub fn judge(
    concert_id: &str,
    seat_types: &[SeatTypeInfo],
    users: &[User],
    ledger: &Ledger,
    observed: &Observed,
) -> Vec<Check> {
    let unsure: HashSet<usize> = ledger.unsure_users.iter().copied().collect();
    // The bookings that must be confirmed now: the tool's own, plus what unsure users hold.
    let mut confirmed: Vec<&Booked> = ledger
        .confirmed
        .iter()
        .filter(|booked| !unsure.contains(&booked.user))
        .collect();
    confirmed.extend(&observed.resolved);
    let mut per_seat = vec![0u64; seat_types.len()];
    for booked in &confirmed {
        if let Some(count) = per_seat.get_mut(booked.seat_type) {
            *count += 1;
        }
    }
    let mut checks = Vec::new();
    checks.extend(expectation_check(seat_types, &per_seat));
    checks.push(oversold_check(seat_types, &per_seat));
    checks.push(holders_check(&confirmed));
    checks.push(sales_check(
        seat_types,
        &per_seat,
        confirmed.len() as u64,
        ledger,
        !unsure.is_empty(),
        &observed.sales,
    ));
    checks.extend(remaining_checks(seat_types, &per_seat, observed));
    let visible = Visible {
        concert_id,
        seat_types,
        users,
        unsure: &unsure,
        lookups: &observed.lookups,
    };
    checks.extend(visible.checks(ledger));
    checks
}

/// Check 1: the exact expectation, where the scenario has one.
fn expectation_check(seat_types: &[SeatTypeInfo], per_seat: &[u64]) -> Option<Check> {
    let expected: Vec<String> = seat_types
        .iter()
        .zip(per_seat)
        .filter_map(|(seat, &got)| {
            seat.expected
                .map(|expected| (seat, expected, got))
                .map(|(seat, expected, got)| {
                    format!(
                        "{} {got}/{expected}{}",
                        seat.name,
                        if got == expected { "" } else { " ✗" }
                    )
                })
        })
        .collect();
    if expected.is_empty() {
        return None;
    }
    let held = seat_types
        .iter()
        .zip(per_seat)
        .all(|(seat, &got)| seat.expected.is_none_or(|expected| expected == got));
    Some(Check::new(
        "confirmed bookings == expectation",
        held,
        format!("confirmed/expected per seat type: {}", expected.join(", ")),
    ))
}

/// Check 2a: not oversold.
fn oversold_check(seat_types: &[SeatTypeInfo], per_seat: &[u64]) -> Check {
    let oversold: Vec<String> = seat_types
        .iter()
        .zip(per_seat)
        .filter(|(seat, got)| **got > seat.capacity)
        .map(|(seat, got)| format!("{} {got} > capacity {}", seat.name, seat.capacity))
        .collect();
    Check::new(
        "not oversold",
        oversold.is_empty(),
        if oversold.is_empty() {
            "every seat type's confirmed bookings are within its capacity".to_owned()
        } else {
            oversold.join(", ")
        },
    )
}

/// Check 2b: nobody holds two, no booking id twice.
fn holders_check(confirmed: &[&Booked]) -> Check {
    let mut holders: HashMap<usize, u64> = HashMap::new();
    let mut ids: HashSet<&str> = HashSet::new();
    let mut duplicate_ids = 0;
    for booked in confirmed {
        *holders.entry(booked.user).or_default() += 1;
        if !ids.insert(booked.id.as_str()) {
            duplicate_ids += 1;
        }
    }
    let doubles = holders.values().filter(|&&count| count > 1).count();
    Check::new(
        "no user holds two bookings",
        doubles == 0 && duplicate_ids == 0,
        format!(
            "{} holders, {doubles} holding more than one, {duplicate_ids} booking ids seen twice",
            holders.len()
        ),
    )
}

/// Check 3: the sales report agrees with itself and with the ledger (nothing lost, nothing
/// extra: its confirmed count is exactly the `total` bookings the tool knows of). With unsure
/// users (`any_unsure`) a cancellation may have happened without the tool knowing.
fn sales_check(
    seat_types: &[SeatTypeInfo],
    per_seat: &[u64],
    total: u64,
    ledger: &Ledger,
    any_unsure: bool,
    sales: &Sales,
) -> Check {
    let sales_by_id: HashMap<&str, &SalesSeatType> = sales
        .seat_types
        .iter()
        .map(|seat| (seat.id.as_str(), seat))
        .collect();
    let mut problems = Vec::new();
    for (seat, &got) in seat_types.iter().zip(per_seat) {
        match sales_by_id.get(seat.id.as_str()) {
            None => problems.push(format!("{} missing", seat.name)),
            Some(sale) => sale_problems(seat, sale, got, &mut problems),
        }
    }
    if sales.bookings_confirmed != total {
        problems.push(format!(
            "bookings_confirmed {} but the tool holds {total}",
            sales.bookings_confirmed
        ));
    }
    let cancelled = ledger.cancelled.len() as u64;
    let cancelled_ok = if any_unsure {
        sales.bookings_cancelled >= cancelled
    } else {
        sales.bookings_cancelled == cancelled
    };
    if !cancelled_ok {
        problems.push(format!(
            "bookings_cancelled {} but the tool cancelled {cancelled}",
            sales.bookings_cancelled
        ));
    }
    Check::new(
        "sales report == ledger, sold + remaining == capacity",
        problems.is_empty(),
        if problems.is_empty() {
            format!(
                "{total} confirmed, {} cancelled, every seat type sold + remaining == capacity",
                sales.bookings_cancelled
            )
        } else {
            problems.join("; ")
        },
    )
}

/// What is wrong with one seat type's line of the sales report, when the tool holds `got`.
fn sale_problems(seat: &SeatTypeInfo, sale: &SalesSeatType, got: u64, problems: &mut Vec<String>) {
    if sale.capacity != seat.capacity {
        problems.push(format!(
            "{} capacity {} ≠ {}",
            seat.name, sale.capacity, seat.capacity
        ));
    }
    if sale.sold + sale.remaining != sale.capacity {
        problems.push(format!(
            "{} sold {} + remaining {} ≠ capacity {}",
            seat.name, sale.sold, sale.remaining, sale.capacity
        ));
    }
    if sale.sold != got {
        problems.push(format!(
            "{} sold {} but the tool holds {got}",
            seat.name, sale.sold
        ));
    }
}

/// Check 4: the public reads show remaining == capacity − confirmed.
fn remaining_checks(
    seat_types: &[SeatTypeInfo],
    per_seat: &[u64],
    observed: &Observed,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for (name, counts) in [
        ("availability", &observed.availability),
        ("concert details", &observed.details),
    ] {
        let by_id: HashMap<&str, u64> = counts
            .seat_types
            .iter()
            .map(|seat| (seat.id.as_str(), seat.remaining))
            .collect();
        let wrong: Vec<String> = seat_types
            .iter()
            .zip(per_seat)
            .filter_map(|(seat, &got)| {
                let want = seat.capacity.saturating_sub(got);
                match by_id.get(seat.id.as_str()) {
                    Some(&remaining) if remaining == want => None,
                    Some(&remaining) => Some(format!(
                        "{} remaining {remaining} ≠ {} − {got}",
                        seat.name, seat.capacity
                    )),
                    None => Some(format!("{} missing", seat.name)),
                }
            })
            .collect();
        checks.push(Check::new(
            format!("{name}: remaining == capacity − confirmed"),
            wrong.is_empty(),
            if wrong.is_empty() {
                seat_types
                    .iter()
                    .zip(per_seat)
                    .map(|(seat, got)| {
                        format!("{} {}", seat.name, seat.capacity.saturating_sub(*got))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                wrong.join("; ")
            },
        ));
    }
    checks
}

/// Check 5: every booking the tool made is visible, as the tool believes it to be. This holds
/// what that check needs.
struct Visible<'a> {
    concert_id: &'a str,
    seat_types: &'a [SeatTypeInfo],
    users: &'a [User],
    unsure: &'a HashSet<usize>,
    lookups: &'a HashMap<String, Option<BookingView>>,
}

impl Visible<'_> {
    /// One check for the confirmed bookings, one for the cancelled ones (when there are any).
    fn checks(&self, ledger: &Ledger) -> Vec<Check> {
        let mut checks = vec![self.check(
            "every 201 is visible and confirmed",
            &ledger.confirmed,
            "confirmed",
        )];
        if !ledger.cancelled.is_empty() {
            checks.push(self.check(
                "every cancellation is visible",
                &ledger.cancelled,
                "cancelled",
            ));
        }
        checks
    }

    fn check(&self, name: &str, list: &[Booked], status: &str) -> Check {
        let mut bad = Vec::new();
        let mut checked = 0;
        for booked in list {
            if status == "confirmed" && self.unsure.contains(&booked.user) {
                continue;
            }
            checked += 1;
            let view = self.lookups.get(&booked.id).and_then(Option::as_ref);
            if !view.is_some_and(|view| self.shows(booked, view, status)) {
                bad.push(match view {
                    None => format!("{} not found", booked.id),
                    Some(view) => format!("{} is {} ({:?})", booked.id, view.status, view),
                });
            }
        }
        let detail = if bad.is_empty() {
            format!("{checked} of {checked} read back by id as {status}")
        } else {
            format!(
                "{} of {checked} wrong, e.g. {}",
                bad.len(),
                bad.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            )
        };
        Check::new(name, bad.is_empty(), detail)
    }

    /// True when `view` is `booked` as the tool believes it to be, with `status`.
    fn shows(&self, booked: &Booked, view: &BookingView, status: &str) -> bool {
        view.status == status
            && view.concert_id == self.concert_id
            && self
                .users
                .get(booked.user)
                .is_some_and(|user| user.id == view.user_id)
            && self
                .seat_types
                .get(booked.seat_type)
                .is_some_and(|seat| seat.id == view.seat_type_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(id: &str, capacity: u64, expected: Option<u64>) -> SeatTypeInfo {
        SeatTypeInfo {
            id: id.into(),
            name: id.to_uppercase(),
            capacity,
            expected,
        }
    }

    fn users(n: usize) -> Vec<User> {
        (0..n)
            .map(|i| User {
                id: format!("u{i}"),
                auth: HeaderValue::from_static("Bearer x"),
            })
            .collect()
    }

    fn view(id: &str, user: usize, seat: &str, status: &str) -> BookingView {
        BookingView {
            id: id.into(),
            user_id: format!("u{user}"),
            concert_id: "c".into(),
            seat_type_id: seat.into(),
            status: status.into(),
        }
    }

    /// Two seat types of capacity 2 and 1, three users, everything sold as the tool saw it.
    fn consistent() -> (Vec<SeatTypeInfo>, Ledger, Observed) {
        let seats = vec![seat("a", 2, Some(2)), seat("b", 1, Some(1))];
        let ledger = Ledger {
            confirmed: vec![
                Booked {
                    id: "b0".into(),
                    user: 0,
                    seat_type: 0,
                },
                Booked {
                    id: "b1".into(),
                    user: 1,
                    seat_type: 1,
                },
                Booked {
                    id: "b2".into(),
                    user: 2,
                    seat_type: 0,
                },
            ],
            cancelled: vec![],
            unsure_users: vec![],
        };
        let remaining = |a, b| SeatCounts {
            seat_types: vec![
                Remaining {
                    id: "a".into(),
                    remaining: a,
                },
                Remaining {
                    id: "b".into(),
                    remaining: b,
                },
            ],
        };
        let observed = Observed {
            sales: Sales {
                seat_types: vec![
                    SalesSeatType {
                        id: "a".into(),
                        capacity: 2,
                        sold: 2,
                        remaining: 0,
                    },
                    SalesSeatType {
                        id: "b".into(),
                        capacity: 1,
                        sold: 1,
                        remaining: 0,
                    },
                ],
                bookings_confirmed: 3,
                bookings_cancelled: 0,
            },
            availability: remaining(0, 0),
            details: remaining(0, 0),
            lookups: [
                ("b0", Some(view("b0", 0, "a", "confirmed"))),
                ("b1", Some(view("b1", 1, "b", "confirmed"))),
                ("b2", Some(view("b2", 2, "a", "confirmed"))),
            ]
            .into_iter()
            .map(|(id, view)| (id.to_owned(), view))
            .collect(),
            resolved: vec![],
        };
        (seats, ledger, observed)
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|check| !check.passed)
            .map(|check| check.name.as_str())
            .collect()
    }

    #[test]
    fn a_consistent_run_passes_every_check() {
        let (seats, ledger, observed) = consistent();
        let checks = judge("c", &seats, &users(3), &ledger, &observed);
        assert!(failed(&checks).is_empty(), "{checks:#?}");
        assert_eq!(checks.len(), 7, "{checks:#?}");
    }

    #[test]
    fn a_booking_made_outside_the_tool_fails() {
        let (seats, ledger, mut observed) = consistent();
        observed.sales.seat_types[0].sold = 3;
        observed.sales.seat_types[0].capacity = 3;
        observed.sales.bookings_confirmed = 4;
        let checks = judge("c", &seats, &users(3), &ledger, &observed);
        assert!(failed(&checks).contains(&"sales report == ledger, sold + remaining == capacity"));
    }

    #[test]
    fn a_lost_201_fails() {
        let (seats, ledger, mut observed) = consistent();
        observed.lookups.insert("b1".into(), None);
        observed.sales.seat_types[1].sold = 0;
        observed.sales.seat_types[1].remaining = 1;
        observed.sales.bookings_confirmed = 2;
        observed.availability.seat_types[1].remaining = 1;
        let failures = judge("c", &seats, &users(3), &ledger, &observed);
        let failures = failed(&failures);
        assert!(failures.contains(&"every 201 is visible and confirmed"));
        assert!(failures.contains(&"availability: remaining == capacity − confirmed"));
        assert!(!failures.contains(&"concert details: remaining == capacity − confirmed"));
    }

    #[test]
    fn oversold_and_double_holders_fail() {
        let (seats, mut ledger, mut observed) = consistent();
        ledger.confirmed.push(Booked {
            id: "b3".into(),
            user: 0,
            seat_type: 1,
        });
        observed
            .lookups
            .insert("b3".into(), Some(view("b3", 0, "b", "confirmed")));
        let checks = judge("c", &seats, &users(3), &ledger, &observed);
        let failures = failed(&checks);
        assert!(failures.contains(&"not oversold"));
        assert!(failures.contains(&"no user holds two bookings"));
        assert!(failures.contains(&"confirmed bookings == expectation"));
    }

    #[test]
    fn unsure_users_are_judged_by_what_they_really_hold() {
        let (seats, mut ledger, mut observed) = consistent();
        // User 1's request timed out; the server shows the booking exists after all.
        ledger.confirmed.retain(|booked| booked.user != 1);
        ledger.unsure_users.push(1);
        observed.resolved.push(Booked {
            id: "b1".into(),
            user: 1,
            seat_type: 1,
        });
        let checks = judge("c", &seats, &users(3), &ledger, &observed);
        assert!(failed(&checks).is_empty(), "{checks:#?}");
    }

    #[test]
    fn a_cancellation_that_did_not_stick_fails() {
        let (seats, mut ledger, mut observed) = consistent();
        ledger.cancelled.push(Booked {
            id: "x".into(),
            user: 2,
            seat_type: 1,
        });
        observed
            .lookups
            .insert("x".into(), Some(view("x", 2, "b", "confirmed")));
        observed.sales.bookings_cancelled = 1;
        let checks = judge("c", &seats, &users(3), &ledger, &observed);
        assert_eq!(failed(&checks), ["every cancellation is visible"]);
    }
}
