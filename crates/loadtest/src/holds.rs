//! Proving the hold guarantees through the API (contract, "Checkout: holds and payment").
//!
//! The `checkout` and `expiry` scenarios keep a [`HoldLedger`]: the holds the tool paid (with
//! the booking each became), the holds it left unpaid (with their `expires_at`), and the users
//! whose checkout got no definite answer. A [`SalesMonitor`] samples the sales report while a
//! phase runs; at the end [`observe`] reads every hold of the ledger by id as the admin, and the
//! judgements below compare without any I/O (the unit tests tamper with the data). Before a
//! run that waits for holds to expire, [`probe_hold_time`] learns the deployment's hold time;
//! [`wait_until_none_held`] then waits for the sales report to show no seat held.
//!
//! The bookings the paid holds became are judged by [`crate::verify`] like any other booking
//! ([`HoldLedger::bookings`]); this module adds what only holds have.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::client::{Call, Conn, Target};
use crate::report::Check;
use crate::verify::{self, Booked, Ledger, SeatTypeInfo, User};

/// The longest hold time a run waits out: the users' access tokens live 15 minutes, and a
/// load run should end within a few minutes anyway.
pub const MAX_HOLD_TIME: Duration = Duration::from_secs(120);

/// The body of a good payment and of one the simulated provider declines.
pub const PAY_OK: &[u8] = br#"{"payment_method":"pm_card_visa"}"#;
pub const PAY_DECLINED: &[u8] = br#"{"payment_method":"pm_card_visa_chargeDeclined"}"#;

/// One seat type's line of the sales report, with the checkout's fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SalesLine {
    pub id: String,
    pub capacity: i64,
    /// `capacity − remaining − held`, as the server derives it.
    pub sold: i64,
    /// Seats kept by active holds.
    pub held: i64,
    pub remaining: i64,
    pub revenue_cents: i64,
    pub refunded_cents: i64,
}

/// `GET /api/v1/concerts/{id}/sales`, the fields the hold checks read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HoldSales {
    pub seat_types: Vec<SalesLine>,
    pub bookings_confirmed: i64,
}

impl HoldSales {
    pub fn line(&self, seat_type_id: &str) -> Option<&SalesLine> {
        self.seat_types.iter().find(|line| line.id == seat_type_id)
    }

    /// Seats held over every seat type.
    pub fn held(&self) -> i64 {
        self.seat_types.iter().map(|line| line.held).sum()
    }
}

/// Reads the sales report of `concert_id` as the admin.
pub async fn read_sales(
    conn: &mut Conn,
    admin: &HeaderValue,
    concert_id: &str,
) -> anyhow::Result<HoldSales> {
    conn.json(
        &Call::get(&format!("/api/v1/concerts/{concert_id}/sales"))?.with_auth(admin.clone()),
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentView {
    pub status: String,
}

/// A hold as `POST /holds`, `POST /holds/{id}/pay` and `GET /holds/{id}` show it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HoldView {
    pub id: String,
    pub user_id: String,
    pub seat_type_id: String,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub booking_id: Option<String>,
    pub payment: PaymentView,
}

impl HoldView {
    /// The hold in an answer's body, if the body is one.
    pub fn parse(body: Option<&Bytes>) -> Option<Self> {
        serde_json::from_slice(body?).ok()
    }
}

/// `POST /api/v1/holds` calls, one per seat type: the booking calls' bodies, sent to the holds.
pub fn hold_calls(book: &[Call]) -> anyhow::Result<Vec<Call>> {
    let path: http::Uri = "/api/v1/holds".parse()?;
    Ok(book
        .iter()
        .map(|call| Call {
            path: path.clone(),
            ..call.clone()
        })
        .collect())
}

/// `POST /api/v1/holds/{id}/pay` with `body` ([`PAY_OK`] or [`PAY_DECLINED`]).
pub fn pay_call(hold_id: &str, body: &'static [u8]) -> anyhow::Result<Call> {
    Call::post(
        &format!("/api/v1/holds/{hold_id}/pay"),
        Some(Bytes::from_static(body)),
    )
}

/// A hold the tool paid, and the booking it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidHold {
    pub hold_id: String,
    /// Index of the user in the prepared list.
    pub user: usize,
    /// Index of the seat type in [`SeatTypeInfo`] order.
    pub seat_type: usize,
    pub booking_id: String,
}

/// A hold the tool left unpaid: it must expire at `expires_at`, without a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpaidHold {
    pub hold_id: String,
    pub user: usize,
    pub seat_type: usize,
    pub expires_at: OffsetDateTime,
}

/// What the tool believes about the holds it made.
#[derive(Debug, Clone, Default)]
pub struct HoldLedger {
    pub paid: Vec<PaidHold>,
    pub unpaid: Vec<UnpaidHold>,
    /// Users whose checkout got no definite answer somewhere (a 5xx or no answer).
    pub unsure_users: Vec<usize>,
}

impl HoldLedger {
    /// The bookings the paid holds became, for [`verify::judge`].
    pub fn bookings(&self) -> Ledger {
        Ledger {
            confirmed: self
                .paid
                .iter()
                .map(|paid| Booked {
                    id: paid.booking_id.clone(),
                    user: paid.user,
                    seat_type: paid.seat_type,
                })
                .collect(),
            cancelled: Vec::new(),
            unsure_users: self.unsure_users.clone(),
        }
    }

    /// When the last unpaid hold expires.
    pub fn last_expiry(&self) -> Option<OffsetDateTime> {
        self.unpaid.iter().map(|hold| hold.expires_at).max()
    }

    /// Paid holds per seat type, for `k` seat types.
    pub fn paid_per_seat(&self, k: usize) -> Vec<u64> {
        let mut counts = vec![0; k];
        for paid in &self.paid {
            if let Some(count) = counts.get_mut(paid.seat_type) {
                *count += 1;
            }
        }
        counts
    }
}

/// The deployment's hold time, learnt from one hold the admin makes on `seat_type_id` and
/// releases at once (a released hold leaves no trace in `sold` or `held`). Refuses hold times
/// over [`MAX_HOLD_TIME`]: the run would have to wait them out.
pub async fn probe_hold_time(
    conn: &mut Conn,
    admin: &HeaderValue,
    hold: &Call,
) -> anyhow::Result<Duration> {
    let probe: HoldView = conn
        .json(&hold.clone().with_auth(admin.clone()), StatusCode::CREATED)
        .await
        .context("holding a seat as the admin to learn the hold time")?;
    let release = Call::post(&format!("/api/v1/holds/{}/release", probe.id), None)?;
    let _: HoldView = conn
        .json(&release.with_auth(admin.clone()), StatusCode::OK)
        .await
        .context("releasing the admin's probe hold")?;
    let ttl = Duration::try_from(probe.expires_at - probe.created_at)
        .context("a hold that expires before it was made")?;
    anyhow::ensure!(
        ttl <= MAX_HOLD_TIME,
        "the server keeps holds for {} s, and this scenario waits for holds to expire: start it \
         with a short hold time, e.g. --hold-ttl 30 (BOXOFFICE_HOLD_TTL=30); at most {} s",
        ttl.as_secs(),
        MAX_HOLD_TIME.as_secs()
    );
    Ok(ttl)
}

/// One reading of the sales report during a phase, with the paid holds per seat type the tool
/// had been answered 200 for before it sent the read.
#[derive(Debug, Clone)]
pub struct SalesSample {
    pub acknowledged: Vec<u64>,
    pub sales: HoldSales,
}

/// Samples the sales report every `every` while a phase runs, on a connection of its own.
pub struct SalesMonitor {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(Vec<SalesSample>, Vec<String>)>,
}

impl SalesMonitor {
    /// Starts sampling; `acknowledged` are the workers' counters of paid holds per seat type.
    pub fn start(
        target: Arc<Target>,
        admin: HeaderValue,
        concert_id: String,
        acknowledged: Arc<Vec<AtomicU64>>,
        every: Duration,
    ) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut conn = Conn::new(target);
            let (mut samples, mut failures) = (Vec::new(), Vec::new());
            loop {
                let before: Vec<u64> = acknowledged
                    .iter()
                    .map(|count| count.load(Ordering::SeqCst))
                    .collect();
                match read_sales(&mut conn, &admin, &concert_id).await {
                    Ok(sales) => samples.push(SalesSample {
                        acknowledged: before,
                        sales,
                    }),
                    Err(error) => failures.push(format!("{error:#}")),
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(every) => {}
                }
            }
            (samples, failures)
        });
        Self { stop, task }
    }

    /// Stops sampling; returns the samples and the reads that failed.
    pub async fn stop(self) -> anyhow::Result<(Vec<SalesSample>, Vec<String>)> {
        let _ = self.stop.send(());
        self.task.await.context("the sales monitor panicked")
    }
}

/// Polls the sales report until no seat of the concert is held, or until `deadline`. Returns
/// when the first read that showed none held was answered (`None` if none did) and that read.
pub async fn wait_until_none_held(
    conn: &mut Conn,
    admin: &HeaderValue,
    concert_id: &str,
    deadline: OffsetDateTime,
) -> anyhow::Result<(Option<OffsetDateTime>, HoldSales)> {
    loop {
        let sales = read_sales(conn, admin, concert_id).await?;
        let now = OffsetDateTime::now_utc();
        if sales.held() == 0 {
            return Ok((Some(now), sales));
        }
        if now >= deadline {
            return Ok((None, sales));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every hold of the ledger read by id as the admin, `concurrency` at a time; `None` where the
/// read did not answer 200.
pub async fn observe(
    target: &Arc<Target>,
    admin: &HeaderValue,
    ledger: &HoldLedger,
    concurrency: usize,
) -> anyhow::Result<HashMap<String, Option<HoldView>>> {
    let ids: Vec<String> = ledger
        .paid
        .iter()
        .map(|paid| paid.hold_id.clone())
        .chain(ledger.unpaid.iter().map(|unpaid| unpaid.hold_id.clone()))
        .collect();
    let admin = admin.clone();
    let views = verify::parallel(
        target,
        concurrency,
        ids,
        move |mut conn: Conn, id: String| {
            let admin = admin.clone();
            async move {
                let call = Call::get(&format!("/api/v1/holds/{id}"))?.with_auth(admin);
                let view = conn.json::<HoldView>(&call, StatusCode::OK).await.ok();
                Ok((conn, (id, view)))
            }
        },
    )
    .await?;
    Ok(views.into_iter().collect())
}

/// While the phase ran: per seat type, `sold` (capacity − remaining − held) was never below the
/// paid holds already acknowledged, i.e. confirmed + active holds never exceeded capacity.
pub fn capacity_check(
    seat_types: &[SeatTypeInfo],
    samples: &[SalesSample],
    failures: &[String],
) -> Check {
    let mut problems: Vec<String> = failures
        .iter()
        .map(|failure| format!("unreadable sample: {failure}"))
        .collect();
    for (n, sample) in samples.iter().enumerate() {
        for (j, seat) in seat_types.iter().enumerate() {
            let Some(line) = sample.sales.line(&seat.id) else {
                problems.push(format!("sample {n}: {} missing", seat.name));
                continue;
            };
            let acknowledged = sample.acknowledged.get(j).copied().unwrap_or(0);
            if line.sold < 0 || (line.sold as u64) < acknowledged {
                problems.push(format!(
                    "sample {n}: {} sold {} (capacity − remaining − held) < {acknowledged} paid \
                     holds already acknowledged: confirmed + held > capacity",
                    seat.name, line.sold
                ));
            }
            if line.held < 0 || line.remaining < 0 || line.capacity != seat.capacity as i64 {
                problems.push(format!("sample {n}: {} reads {line:?}", seat.name));
            }
        }
    }
    Check::of_problems(
        "confirmed + active holds ≤ capacity during the run",
        &problems,
        format!(
            "{} samples of the sales report while the checkouts ran: per seat type, sold ≥ the \
             paid holds already acknowledged and held, remaining ≥ 0",
            samples.len()
        ),
    )
}

/// Right after the phase (every payment answered): per seat type `sold` is the paid holds, and
/// `held` lies between the unpaid holds not yet due when the read was sent and all of them.
pub fn after_checkouts_check(
    seat_types: &[SeatTypeInfo],
    ledger: &HoldLedger,
    sales: &HoldSales,
    read_sent: OffsetDateTime,
) -> Check {
    let paid = ledger.paid_per_seat(seat_types.len());
    let mut problems = Vec::new();
    let mut held_total = 0;
    for (j, seat) in seat_types.iter().enumerate() {
        let Some(line) = sales.line(&seat.id) else {
            problems.push(format!("{} missing", seat.name));
            continue;
        };
        held_total += line.held;
        let unpaid = ledger.unpaid.iter().filter(|hold| hold.seat_type == j);
        let all = unpaid.clone().count() as i64;
        let not_due = unpaid.filter(|hold| hold.expires_at > read_sent).count() as i64;
        if line.sold != paid[j] as i64 && ledger.unsure_users.is_empty() {
            problems.push(format!(
                "{} sold {} but {} holds were paid",
                seat.name, line.sold, paid[j]
            ));
        }
        if line.held > all || line.held < not_due {
            problems.push(format!(
                "{} held {} but the tool left {all} holds unpaid, {not_due} of them not yet due",
                seat.name, line.held
            ));
        }
    }
    Check::of_problems(
        "after the checkouts: sold == paid holds, held == unpaid holds not yet expired",
        &problems,
        format!(
            "{} paid, {} unpaid holds, {held_total} of them still held",
            ledger.paid.len(),
            ledger.unpaid.len()
        ),
    )
}

/// Every paid hold reads `completed` with the booking its payment answered, its payment
/// `succeeded`, and no two paid holds share a booking.
pub fn paid_check(
    seat_types: &[SeatTypeInfo],
    users: &[User],
    ledger: &HoldLedger,
    views: &HashMap<String, Option<HoldView>>,
) -> Check {
    let mut problems = Vec::new();
    let mut bookings = HashSet::new();
    for paid in &ledger.paid {
        if !bookings.insert(paid.booking_id.as_str()) {
            problems.push(format!("booking {} paid for twice", paid.booking_id));
        }
        let view = views.get(&paid.hold_id).and_then(Option::as_ref);
        let Some(view) = view else {
            problems.push(format!("hold {} not found", paid.hold_id));
            continue;
        };
        let owner = users.get(paid.user).map(|user| user.id.as_str());
        let seat = seat_types.get(paid.seat_type).map(|seat| seat.id.as_str());
        if view.status != "completed"
            || view.booking_id.as_deref() != Some(paid.booking_id.as_str())
            || view.payment.status != "succeeded"
            || owner != Some(view.user_id.as_str())
            || seat != Some(view.seat_type_id.as_str())
        {
            problems.push(format!("paid hold {} reads {view:?}", paid.hold_id));
        }
    }
    Check::of_problems(
        "every paid hold is completed, with exactly one booking of its own",
        &problems,
        format!(
            "{} paid holds read back completed, each with its own booking",
            ledger.paid.len()
        ),
    )
}

/// Every unpaid hold reads `expired`, without a booking and without a payment taken.
pub fn unpaid_check(ledger: &HoldLedger, views: &HashMap<String, Option<HoldView>>) -> Check {
    let mut problems = Vec::new();
    for unpaid in &ledger.unpaid {
        match views.get(&unpaid.hold_id).and_then(Option::as_ref) {
            None => problems.push(format!("hold {} not found", unpaid.hold_id)),
            Some(view)
                if view.status != "expired"
                    || view.booking_id.is_some()
                    || view.expires_at != unpaid.expires_at
                    || matches!(view.payment.status.as_str(), "succeeded" | "refunded") =>
            {
                problems.push(format!("unpaid hold {} reads {view:?}", unpaid.hold_id));
            }
            Some(_) => {}
        }
    }
    Check::of_problems(
        "every unpaid hold expired, without a booking or a charge",
        &problems,
        format!(
            "{} unpaid holds read back expired at their expires_at",
            ledger.unpaid.len()
        ),
    )
}

/// At the end: no seat held, and per seat type the revenue is `sold × price` for the `sold`
/// the tool expects, with nothing refunded.
pub fn end_sales_check(
    seat_types: &[SeatTypeInfo],
    sold: &[u64],
    price_cents: i64,
    sales: &HoldSales,
) -> Check {
    let mut problems = Vec::new();
    for (seat, &sold) in seat_types.iter().zip(sold) {
        let Some(line) = sales.line(&seat.id) else {
            problems.push(format!("{} missing", seat.name));
            continue;
        };
        let revenue = sold as i64 * price_cents;
        if line.held != 0 || line.revenue_cents != revenue || line.refunded_cents != 0 {
            problems.push(format!(
                "{}: held {}, revenue {} (expected {revenue}), refunded {}",
                seat.name, line.held, line.revenue_cents, line.refunded_cents
            ));
        }
    }
    let revenue: i64 = sales.seat_types.iter().map(|line| line.revenue_cents).sum();
    Check::of_problems(
        "sales report at the end: nothing held, revenue == paid × price, nothing refunded",
        &problems,
        format!("revenue {revenue} cents, no seat held, nothing refunded"),
    )
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn seats() -> Vec<SeatTypeInfo> {
        ["a", "b"]
            .into_iter()
            .map(|id| SeatTypeInfo {
                id: id.into(),
                name: id.to_uppercase(),
                capacity: 3,
                expected: None,
            })
            .collect()
    }

    fn users() -> Vec<User> {
        (0..4)
            .map(|i| User {
                id: format!("u{i}"),
                auth: HeaderValue::from_static("Bearer x"),
            })
            .collect()
    }

    const DUE: OffsetDateTime = datetime!(2027-01-01 10:00:30 UTC);

    /// User 0 paid an A seat, user 1 a B seat; users 2 and 3 left A seats unpaid.
    fn ledger() -> HoldLedger {
        let unpaid = |n: usize| UnpaidHold {
            hold_id: format!("h{n}"),
            user: n,
            seat_type: 0,
            expires_at: DUE,
        };
        HoldLedger {
            paid: vec![
                PaidHold {
                    hold_id: "h0".into(),
                    user: 0,
                    seat_type: 0,
                    booking_id: "b0".into(),
                },
                PaidHold {
                    hold_id: "h1".into(),
                    user: 1,
                    seat_type: 1,
                    booking_id: "b1".into(),
                },
            ],
            unpaid: vec![unpaid(2), unpaid(3)],
            unsure_users: vec![],
        }
    }

    fn line(id: &str, sold: i64, held: i64) -> SalesLine {
        SalesLine {
            id: id.into(),
            capacity: 3,
            sold,
            held,
            remaining: 3 - sold - held,
            revenue_cents: sold * 5000,
            refunded_cents: 0,
        }
    }

    fn sales(a: (i64, i64), b: (i64, i64)) -> HoldSales {
        HoldSales {
            seat_types: vec![line("a", a.0, a.1), line("b", b.0, b.1)],
            bookings_confirmed: a.0 + b.0,
        }
    }

    fn view(hold: usize, seat: &str, status: &str, booking: Option<&str>) -> HoldView {
        HoldView {
            id: format!("h{hold}"),
            user_id: format!("u{hold}"),
            seat_type_id: seat.into(),
            status: status.into(),
            created_at: DUE - time::Duration::seconds(30),
            expires_at: DUE,
            booking_id: booking.map(str::to_owned),
            payment: PaymentView {
                status: if booking.is_some() {
                    "succeeded"
                } else {
                    "requires_payment"
                }
                .into(),
            },
        }
    }

    fn views() -> HashMap<String, Option<HoldView>> {
        [
            view(0, "a", "completed", Some("b0")),
            view(1, "b", "completed", Some("b1")),
            view(2, "a", "expired", None),
            view(3, "a", "expired", None),
        ]
        .into_iter()
        .map(|view| (view.id.clone(), Some(view)))
        .collect()
    }

    #[test]
    fn a_consistent_checkout_passes() {
        let (seats, ledger) = (seats(), ledger());
        let samples = [
            SalesSample {
                acknowledged: vec![0, 0],
                sales: sales((0, 1), (0, 0)),
            },
            SalesSample {
                acknowledged: vec![1, 0],
                sales: sales((1, 2), (1, 0)),
            },
        ];
        assert!(capacity_check(&seats, &samples, &[]).passed);
        let before_due = DUE - time::Duration::seconds(1);
        assert!(after_checkouts_check(&seats, &ledger, &sales((1, 2), (1, 0)), before_due).passed);
        // Past their expiry, the holds may or may not be marked expired yet.
        assert!(after_checkouts_check(&seats, &ledger, &sales((1, 0), (1, 0)), DUE).passed);
        assert!(paid_check(&seats, &users(), &ledger, &views()).passed);
        assert!(unpaid_check(&ledger, &views()).passed);
        assert!(end_sales_check(&seats, &[1, 1], 5000, &sales((1, 0), (1, 0))).passed);
        let bookings = ledger.bookings();
        assert_eq!(bookings.confirmed.len(), 2);
        assert_eq!(ledger.paid_per_seat(2), [1, 1]);
        assert_eq!(ledger.last_expiry(), Some(DUE));
    }

    #[test]
    fn a_seat_sold_while_held_fails_the_capacity_check() {
        // Two paid A seats acknowledged, yet the report derives only one sold: the second
        // booking's seat is still counted as held or remaining.
        let sample = SalesSample {
            acknowledged: vec![2, 0],
            sales: sales((1, 2), (0, 0)),
        };
        assert!(!capacity_check(&seats(), &[sample], &[]).passed);
        assert!(!capacity_check(&seats(), &[], &["503".into()]).passed);
    }

    #[test]
    fn holds_miscounted_after_the_checkouts_fail() {
        let (seats, ledger) = (seats(), ledger());
        let before_due = DUE - time::Duration::seconds(1);
        // An unpaid hold's seat came back before its expires_at.
        assert!(!after_checkouts_check(&seats, &ledger, &sales((1, 1), (1, 0)), before_due).passed);
        // A seat held that the tool never held.
        assert!(!after_checkouts_check(&seats, &ledger, &sales((1, 2), (1, 1)), before_due).passed);
        // A payment that did not make a sale.
        assert!(!after_checkouts_check(&seats, &ledger, &sales((0, 2), (1, 0)), before_due).passed);
    }

    #[test]
    fn holds_that_read_otherwise_fail() {
        let (seats, ledger) = (seats(), ledger());
        let mut views = views();
        views.insert("h0".into(), Some(view(0, "a", "completed", Some("b9"))));
        assert!(!paid_check(&seats, &users(), &ledger, &views).passed);
        let mut views = super::tests::views();
        views.insert("h2".into(), Some(view(2, "a", "completed", Some("b2"))));
        assert!(!unpaid_check(&ledger, &views).passed);
        views.insert("h2".into(), None);
        assert!(!unpaid_check(&ledger, &views).passed);
        let mut twice = ledger.clone();
        twice.paid[1].booking_id = "b0".into();
        assert!(!paid_check(&seats, &users(), &twice, &super::tests::views()).passed);
    }

    #[test]
    fn a_seat_still_held_or_refunded_at_the_end_fails() {
        let seats = seats();
        assert!(!end_sales_check(&seats, &[1, 1], 5000, &sales((1, 1), (1, 0))).passed);
        let mut refunded = sales((1, 0), (1, 0));
        refunded.seat_types[0].refunded_cents = 5000;
        assert!(!end_sales_check(&seats, &[1, 1], 5000, &refunded).passed);
        assert!(!end_sales_check(&seats, &[2, 1], 5000, &sales((1, 0), (1, 0))).passed);
    }

    #[test]
    fn hold_answers_parse() {
        let body = Bytes::from_static(
            br#"{"id":"h1","user_id":"u1","concert_id":"c","seat_type_id":"a","status":"active",
            "price_cents":5000,"currency":"USD","created_at":"2027-01-01T10:00:00Z",
            "expires_at":"2027-01-01T10:00:30.250Z","booking_id":null,
            "payment":{"provider":"simulated","status":"requires_payment","client_secret":null}}"#,
        );
        let hold = HoldView::parse(Some(&body)).unwrap();
        assert_eq!(hold.expires_at, datetime!(2027-01-01 10:00:30.25 UTC));
        assert_eq!(hold.booking_id, None);
        assert!(HoldView::parse(None).is_none());
        assert!(HoldView::parse(Some(&Bytes::from_static(b"{}"))).is_none());
        let call = hold_calls(&[Call::post("/api/v1/bookings", None).unwrap()]).unwrap();
        assert_eq!(call[0].path, "/api/v1/holds");
        assert_eq!(pay_call("h1", PAY_OK).unwrap().path, "/api/v1/holds/h1/pay");
    }
}
