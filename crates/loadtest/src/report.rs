//! Measuring a phase and reporting a run.
//!
//! Each worker records into its own [`Recorder`] (an HDR histogram of latencies in
//! microseconds and a count per outcome), so the hot path takes no lock; the recorders are
//! merged when the phase ends into a [`PhaseStats`]. A [`Progress`] line reads two shared
//! counters ([`Live`]) ten times a second. The [`Report`] is what `run` returns: figures, the
//! expectation, every check and the [`Verdict`]; it prints as text or as one JSON document.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::client::Answer;

/// Latencies above this (in µs) are recorded as this: one minute is far past any timeout.
const HIGHEST_US: u64 = 60_000_000;

/// The measurements of one worker during one phase.
pub struct Recorder {
    latency_us: Histogram<u64>,
    outcomes: BTreeMap<OutcomeKey, u64>,
}

/// How an answer is counted: status and problem code, or the kind of transport failure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum OutcomeKey {
    Http { status: u16, code: Option<Arc<str>> },
    Transport(&'static str),
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            // 3 significant figures over 1 µs..60 s: about 200 KiB per worker.
            latency_us: Histogram::new_with_bounds(1, HIGHEST_US, 3)
                .expect("1 µs..60 s at 3 significant figures are valid bounds"),
            outcomes: BTreeMap::new(),
        }
    }

    /// Counts one answer that took `elapsed`.
    pub fn record(&mut self, answer: &Answer, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(micros.clamp(1, HIGHEST_US));
        let key = match answer {
            Answer::Http { status, code, .. } => OutcomeKey::Http {
                status: status.as_u16(),
                code: code.clone(),
            },
            Answer::Transport(error) => OutcomeKey::Transport(error.as_str()),
        };
        *self.outcomes.entry(key).or_default() += 1;
    }

    /// Adds `other`'s measurements to these.
    pub fn merge(&mut self, other: Recorder) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (key, count) in other.outcomes {
            *self.outcomes.entry(key).or_default() += count;
        }
    }

    pub fn requests(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// The figures of a phase that these measurements cover and that lasted `elapsed`.
    pub fn finish(&self, name: &str, elapsed: Duration) -> PhaseStats {
        let requests = self.requests();
        let seconds = elapsed.as_secs_f64();
        let mut outcomes = Vec::new();
        let (mut http_5xx, mut transport) = (0, 0);
        for (key, &count) in &self.outcomes {
            match key {
                OutcomeKey::Http { status, code } => {
                    if *status >= 500 {
                        http_5xx += count;
                    }
                    outcomes.push(Outcome {
                        status: Some(*status),
                        code: code.as_deref().map(str::to_owned),
                        transport: None,
                        count,
                    });
                }
                OutcomeKey::Transport(kind) => {
                    transport += count;
                    outcomes.push(Outcome {
                        status: None,
                        code: None,
                        transport: Some((*kind).to_owned()),
                        count,
                    });
                }
            }
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let h = &self.latency_us;
        let latency = (requests > 0).then(|| Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p99_9_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        });
        PhaseStats {
            name: name.to_owned(),
            requests,
            seconds,
            requests_per_second: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            outcomes,
            latency,
            server_errors: ServerErrors {
                http_5xx,
                transport,
            },
        }
    }
}

/// Counters every worker bumps, read by the progress line.
#[derive(Debug, Default)]
pub struct Live {
    pub done: AtomicU64,
    pub server_errors: AtomicU64,
}

impl Live {
    pub fn count(&self, answer: &Answer) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if answer.is_server_error() {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The live progress line of one phase (hidden with `--json` or when stderr is no terminal).
pub struct Progress {
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts a line for `name`; `total` is the number of requests when it is known.
    pub fn start(name: &str, total: Option<u64>, live: Arc<Live>, visible: bool) -> Self {
        if !visible {
            return Self {
                bar: ProgressBar::hidden(),
                ticker: None,
            };
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{prefix:>8} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "{prefix:>8} {spinner} [{elapsed_precise}] {pos} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_prefix(name.to_owned());
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            loop {
                interval.tick().await;
                let done = live.done.load(Ordering::Relaxed);
                let errors = live.server_errors.load(Ordering::Relaxed);
                let seconds = started.elapsed().as_secs_f64().max(0.001);
                ticking.set_position(done);
                ticking.set_message(format!(
                    "{:.0} req/s, {errors} server errors",
                    done as f64 / seconds
                ));
            }
        });
        Self {
            bar,
            ticker: Some(ticker),
        }
    }

    pub fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

/// How many answers had one status and problem code (or one kind of transport failure).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// HTTP status; `None` for a transport failure.
    pub status: Option<u16>,
    /// The problem `code`, for error answers that have one.
    pub code: Option<String>,
    /// `connect`, `io` or `timeout` when there was no HTTP answer.
    pub transport: Option<String>,
    pub count: u64,
}

impl Outcome {
    fn label(&self) -> String {
        match (&self.status, &self.code, &self.transport) {
            (Some(status), Some(code), _) => format!("{status} {code}"),
            (Some(status), None, _) => status.to_string(),
            (None, _, Some(kind)) => format!("transport {kind}"),
            (None, _, None) => "transport".to_owned(),
        }
    }
}

/// Latency percentiles from the HDR histogram, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Answers whose outcome the client cannot know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServerErrors {
    pub http_5xx: u64,
    pub transport: u64,
}

impl ServerErrors {
    pub fn total(&self) -> u64 {
        self.http_5xx + self.transport
    }
}

/// The figures of one measured phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseStats {
    /// The scenario's name, `baseline`, or the name of a part (`holds`, `before expiry`…).
    pub name: String,
    pub requests: u64,
    /// Wall-clock length of the phase.
    pub seconds: f64,
    pub requests_per_second: f64,
    /// Sorted by status, then code.
    pub outcomes: Vec<Outcome>,
    /// `None` when the phase sent nothing.
    pub latency: Option<Latency>,
    pub server_errors: ServerErrors,
}

impl PhaseStats {
    /// How many answers had `status` and `code`.
    pub fn count(&self, status: u16, code: Option<&str>) -> u64 {
        self.outcomes
            .iter()
            .filter(|o| o.status == Some(status) && o.code.as_deref() == code)
            .map(|o| o.count)
            .sum()
    }
}

/// Every figure of the scenario divided by the same figure of `GET /healthz` at the same
/// concurrency: how close the scenario comes to what this HTTP stack can do at all.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratios {
    /// Scenario requests/s ÷ healthz requests/s (1.0 = as fast as an empty endpoint).
    pub requests_per_second: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Ratios {
    pub fn of(scenario: &PhaseStats, baseline: &PhaseStats) -> Option<Self> {
        let (s, b) = (scenario.latency.as_ref()?, baseline.latency.as_ref()?);
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Some(Self {
            requests_per_second: ratio(scenario.requests_per_second, baseline.requests_per_second),
            p50: ratio(s.p50_ms, b.p50_ms),
            p90: ratio(s.p90_ms, b.p90_ms),
            p99: ratio(s.p99_ms, b.p99_ms),
            p99_9: ratio(s.p99_9_ms, b.p99_9_ms),
            max: ratio(s.max_ms, b.max_ms),
        })
    }
}

/// PASS or FAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
}

/// One verified property: what was checked, whether it held, and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: impl Into<String>, passed: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            passed,
            detail: detail.into(),
        }
    }

    /// Passed, with `ok` as the detail, when there are no `problems`; else failed, with their
    /// number and the first few.
    pub fn of_problems(name: &str, problems: &[String], ok: String) -> Self {
        if problems.is_empty() {
            Self::new(name, true, ok)
        } else {
            let shown: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
            Self::new(
                name,
                false,
                format!("{} problems, e.g. {}", problems.len(), shown.join("; ")),
            )
        }
    }
}

/// A figure a scenario measured besides the latencies and rates of its phases (checkouts per
/// second, how long seats took to come back), with its target when it has one. Targets are
/// reported, not judged: the verdict is about correctness only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: String,
    /// `None` when the run could not measure it (e.g. no window before the expiry).
    pub value: Option<f64>,
    /// `/s`, `ms`, `×`…
    pub unit: String,
    /// The target in words (`≥ 0.25× healthz`), when the figure has one.
    pub target: Option<String>,
    /// Whether the target was met; `None` without a target or without a value to judge.
    pub met: Option<bool>,
    /// How it was measured, or the numbers behind it.
    pub detail: String,
}

impl Figure {
    /// A figure without a target.
    pub fn new(
        name: impl Into<String>,
        value: Option<f64>,
        unit: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            value,
            unit: unit.into(),
            target: None,
            met: None,
            detail: detail.into(),
        }
    }

    /// The same figure with a target (`described` in words) that `meets` judges.
    pub fn with_target(mut self, described: &str, meets: impl Fn(f64) -> bool) -> Self {
        self.target = Some(described.to_owned());
        self.met = self.value.filter(|value| value.is_finite()).map(meets);
        self
    }

    fn line(&self) -> String {
        let value = match self.value {
            Some(value) if value.is_finite() => format!("{value:.3} {}", self.unit),
            _ => "n/a".to_owned(),
        };
        let target = match (&self.target, self.met) {
            (Some(target), Some(true)) => format!("  [target {target}: met]"),
            (Some(target), Some(false)) => format!("  [target {target}: NOT met]"),
            (Some(target), None) => format!("  [target {target}: not judged]"),
            (None, _) => String::new(),
        };
        format!("  {}: {value}{target}\n      {}", self.name, self.detail)
    }
}

/// Operations a scenario completed in its measured phase (checkouts, check-in scans), reported
/// per second and, when the baseline was measured, as a share of `/healthz` requests per second
/// against the scenario's target.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// What is counted, plural, as the figures name it: `completed checkouts`.
    pub name: &'static str,
    /// How many were completed, and what one is, for the details: `checkouts (hold + pay)
    /// completed`.
    pub counted: &'static str,
    /// What is counted, short, for a rate: `checkouts` (as in `checkouts/s`).
    pub short: &'static str,
    pub count: u64,
    /// The target: at least this share of `/healthz` requests per second.
    pub target: f64,
}

impl Rate {
    /// `{name} per second` over `phase`, and its ratio to `baseline`'s requests per second
    /// (judged against the target) when there is a baseline.
    pub fn figures(&self, phase: &PhaseStats, baseline: Option<&PhaseStats>) -> Vec<Figure> {
        let per_second = (phase.seconds > 0.0).then(|| self.count as f64 / phase.seconds);
        let mut figures = vec![Figure::new(
            format!("{} per second", self.name),
            per_second,
            "/s",
            format!("{} {} in {:.2} s", self.count, self.counted, phase.seconds),
        )];
        if let Some(baseline) = baseline.filter(|baseline| baseline.requests_per_second > 0.0) {
            let target = self.target;
            figures.push(
                Figure::new(
                    format!("{} per second ÷ healthz requests per second", self.name),
                    per_second.map(|rate| rate / baseline.requests_per_second),
                    "×",
                    format!(
                        "{:.0} {}/s against {:.0} healthz requests/s in the same run",
                        per_second.unwrap_or(0.0),
                        self.short,
                        baseline.requests_per_second
                    ),
                )
                .with_target(&format!("≥ {target}× healthz"), |ratio| ratio >= target),
            );
        }
        figures
    }
}

/// A seat type the run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeatTypeReport {
    pub id: String,
    pub name: String,
    pub capacity: u64,
    /// Users who chose it (onsale) or `None`.
    pub chosen_by: Option<u64>,
    /// What the run expects to be confirmed at the end, when the rule makes that exact.
    pub expected_confirmed: Option<u64>,
    /// Confirmed according to the server at the end.
    pub confirmed: Option<u64>,
}

/// Everything a run found out. `--json` prints exactly this.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub concurrency: usize,
    /// Users prepared (accounts with tokens).
    pub users: usize,
    pub concert_id: Option<String>,
    pub seat_types: Vec<SeatTypeReport>,
    /// Seconds spent preparing (admin login, concert, accounts, connections).
    pub setup_seconds: f64,
    /// The rule the expectation follows, in words.
    pub expectation: String,
    /// The measured phase.
    pub phase: PhaseStats,
    /// Further measured phases and windows of the scenario (`expiry`: the holds, and the
    /// sold-out answers before, during and after the expiry).
    pub parts: Vec<PhaseStats>,
    /// `GET /healthz` at the same concurrency, with `--baseline`.
    pub baseline: Option<PhaseStats>,
    pub ratios: Option<Ratios>,
    /// What the scenario measured besides its phases, with targets.
    pub figures: Vec<Figure>,
    pub checks: Vec<Check>,
    pub verdict: Verdict,
}

impl Report {
    /// The verdict that `checks` lead to: PASS when every one held (and there was one).
    pub fn verdict_of(checks: &[Check]) -> Verdict {
        if !checks.is_empty() && checks.iter().all(|check| check.passed) {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    /// The checks that did not hold.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.passed)
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "boxoffice loadtest: {} against {} (concurrency {}, {} users, setup {:.2} s)",
            self.scenario, self.target, self.concurrency, self.users, self.setup_seconds
        );
        if let Some(id) = &self.concert_id {
            let _ = writeln!(out, "concert {id}");
        }
        for seat in &self.seat_types {
            let _ = write!(out, "  {:<12} capacity {:>7}", seat.name, seat.capacity);
            if let Some(chosen) = seat.chosen_by {
                let _ = write!(out, "  chosen by {chosen:>7}");
            }
            if let Some(expected) = seat.expected_confirmed {
                let _ = write!(out, "  expected {expected:>7}");
            }
            if let Some(confirmed) = seat.confirmed {
                let _ = write!(out, "  confirmed {confirmed:>7}");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "expectation: {}", self.expectation);
        out.push('\n');
        write_phase(&mut out, &self.phase, self.ratios.as_ref());
        for part in &self.parts {
            out.push('\n');
            write_phase(&mut out, part, None);
        }
        if let Some(baseline) = &self.baseline {
            out.push('\n');
            write_phase(&mut out, baseline, None);
        }
        if !self.figures.is_empty() {
            out.push_str("\nfigures:\n");
            for figure in &self.figures {
                let _ = writeln!(out, "{}", figure.line());
            }
        }
        out.push_str("\nchecks:\n");
        for check in &self.checks {
            let _ = writeln!(
                out,
                "  [{}] {}: {}",
                if check.passed { "ok" } else { "FAIL" },
                check.name,
                check.detail
            );
        }
        let _ = writeln!(
            out,
            "\nverdict: {}",
            match self.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
            }
        );
        out
    }
}

fn write_phase(out: &mut String, phase: &PhaseStats, ratios: Option<&Ratios>) {
    let of = |ratio: Option<f64>| match ratio {
        Some(ratio) if ratio.is_finite() => format!("  ({ratio:.2}× healthz)"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "{}: {} requests in {:.2} s = {:.0} req/s{}",
        phase.name,
        phase.requests,
        phase.seconds,
        phase.requests_per_second,
        of(ratios.map(|r| r.requests_per_second))
    );
    let _ = writeln!(out, "  outcomes:");
    for outcome in &phase.outcomes {
        let _ = writeln!(out, "    {:<28} {:>9}", outcome.label(), outcome.count);
    }
    if let Some(latency) = &phase.latency {
        let _ = writeln!(out, "  latency:");
        let rows = [
            ("p50", latency.p50_ms, ratios.map(|r| r.p50)),
            ("p90", latency.p90_ms, ratios.map(|r| r.p90)),
            ("p99", latency.p99_ms, ratios.map(|r| r.p99)),
            ("p99.9", latency.p99_9_ms, ratios.map(|r| r.p99_9)),
            ("max", latency.max_ms, ratios.map(|r| r.max)),
        ];
        for (name, ms, ratio) in rows {
            let _ = writeln!(out, "    {name:<6} {ms:>10.3} ms{}", of(ratio));
        }
    }
    let _ = writeln!(
        out,
        "  server errors: {} (5xx {}, transport {})",
        phase.server_errors.total(),
        phase.server_errors.http_5xx,
        phase.server_errors.transport
    );
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::client::TransportError;

    fn answer(status: u16, code: Option<&str>) -> Answer {
        Answer::Http {
            status: StatusCode::from_u16(status).unwrap(),
            code: code.map(Arc::from),
            id: None,
        }
    }

    #[test]
    fn recorders_merge_into_phase_figures() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        for ms in 1..=100 {
            a.record(&answer(201, None), Duration::from_millis(ms));
        }
        for _ in 0..50 {
            b.record(&answer(409, Some("sold_out")), Duration::from_millis(2));
        }
        b.record(&answer(503, Some("unavailable")), Duration::from_secs(1));
        b.record(
            &Answer::Transport(TransportError::Timeout),
            Duration::from_secs(90),
        );
        a.merge(b);
        let phase = a.finish("onsale", Duration::from_secs(2));
        assert_eq!(phase.requests, 152);
        assert_eq!(phase.requests_per_second, 76.0);
        assert_eq!(phase.count(201, None), 100);
        assert_eq!(phase.count(409, Some("sold_out")), 50);
        assert_eq!(
            phase.server_errors,
            ServerErrors {
                http_5xx: 1,
                transport: 1
            }
        );
        let latency = phase.latency.clone().unwrap();
        assert!(
            (59.0..=61.0).contains(&(latency.max_ms / 1000.0)),
            "{latency:?}"
        );
        assert!(latency.p50_ms <= latency.p90_ms && latency.p90_ms <= latency.p99_ms);
        assert!(latency.p99_ms <= latency.p99_9_ms && latency.p99_9_ms <= latency.max_ms);
        let labels: Vec<String> = phase.outcomes.iter().map(Outcome::label).collect();
        assert_eq!(
            labels,
            [
                "201",
                "409 sold_out",
                "503 unavailable",
                "transport timeout"
            ]
        );
    }

    #[test]
    fn the_verdict_needs_every_check_and_at_least_one() {
        assert_eq!(Report::verdict_of(&[]), Verdict::Fail);
        let ok = Check::new("a", true, "");
        let bad = Check::new("b", false, "");
        assert_eq!(Report::verdict_of(std::slice::from_ref(&ok)), Verdict::Pass);
        assert_eq!(Report::verdict_of(&[ok, bad]), Verdict::Fail);
    }

    #[test]
    fn figures_judge_their_targets_when_they_have_a_value() {
        let fast = Figure::new("back", Some(120.0), "ms", "polled")
            .with_target("≤ 1000 ms", |ms| ms <= 1000.0);
        assert_eq!(fast.met, Some(true));
        assert!(
            fast.line().contains("[target ≤ 1000 ms: met]"),
            "{}",
            fast.line()
        );
        let slow = Figure::new("back", Some(1500.0), "ms", "")
            .with_target("≤ 1000 ms", |ms| ms <= 1000.0);
        assert_eq!(slow.met, Some(false));
        assert!(slow.line().contains("NOT met"));
        let unmeasured = Figure::new("back", None, "ms", "").with_target("≤ 1000 ms", |_| true);
        assert_eq!(unmeasured.met, None);
        assert!(unmeasured.line().contains("n/a"));
        assert_eq!(Figure::new("rate", Some(1.0), "/s", "").met, None);
    }

    #[test]
    fn rates_are_judged_against_healthz() {
        let phase = |name: &str, requests: u64, seconds: u64| {
            let mut recorder = Recorder::new();
            for _ in 0..requests {
                recorder.record(&answer(200, None), Duration::from_millis(1));
            }
            recorder.finish(name, Duration::from_secs(seconds))
        };
        let rate = Rate {
            name: "completed checkouts",
            counted: "checkouts (hold + pay) completed",
            short: "checkouts",
            count: 100,
            target: 0.25,
        };
        let checkout = phase("checkout", 300, 1);
        let alone = rate.figures(&checkout, None);
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].name, "completed checkouts per second");
        assert_eq!(alone[0].value, Some(100.0));
        assert_eq!(alone[0].met, None);
        let healthz = phase("baseline", 300, 1);
        let figures = rate.figures(&checkout, Some(&healthz));
        assert_eq!(
            figures[1].name,
            "completed checkouts per second ÷ healthz requests per second"
        );
        assert!((figures[1].value.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(figures[1].met, Some(true));
        assert_eq!(figures[1].target.as_deref(), Some("≥ 0.25× healthz"));
        let fast_healthz = phase("baseline", 1000, 1);
        assert_eq!(
            rate.figures(&checkout, Some(&fast_healthz))[1].met,
            Some(false)
        );
    }

    #[test]
    fn ratios_divide_by_the_baseline() {
        let mut fast = Recorder::new();
        let mut slow = Recorder::new();
        for _ in 0..10 {
            fast.record(&answer(200, None), Duration::from_millis(1));
            slow.record(&answer(201, None), Duration::from_millis(4));
        }
        let baseline = fast.finish("baseline", Duration::from_secs(1));
        let scenario = slow.finish("onsale", Duration::from_secs(4));
        let ratios = Ratios::of(&scenario, &baseline).unwrap();
        assert!((ratios.requests_per_second - 0.25).abs() < 1e-9);
        assert!((ratios.p50 - 4.0).abs() < 0.01, "{ratios:?}");
    }
}
