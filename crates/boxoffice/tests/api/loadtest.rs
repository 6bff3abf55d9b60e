//! `boxoffice loadtest` against a real server: the scenarios end with a PASS verdict on a
//! correct server, and the verification reports FAIL when the end state is not what the tool
//! made it (bookings made behind its back). No timing is asserted: only outcomes and state.
//! The checkout scenarios run against servers whose holds last 3 seconds.

use std::time::Duration;

use boxoffice_loadtest::scenario::{Plan, plan_of};
use boxoffice_loadtest::{self as loadtest, Figure, LoadtestArgs, Report, Verdict};
use clap::Parser;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const ADMIN: &str = "loadtest-admin@example.com";
const ADMIN_PASSWORD: &str = "loadtest admin password";

/// A server with load-test accounts switched on and a bootstrapped admin.
async fn spawn_loadtest_app() -> TestApp {
    spawn_app_with(|config| {
        config.auth.load_test_accounts = true;
        config.auth.rate_limit = None;
        config.admin = Some(boxoffice::app::AccountSpec {
            email: ADMIN.to_owned(),
            password: SecretString::from(ADMIN_PASSWORD.to_owned()),
        });
    })
    .await
}

/// The same, with holds that last `hold_ttl` (the command line's minimum is 30 s; tests wait
/// less).
async fn spawn_loadtest_app_holding_for(hold_ttl: Duration) -> TestApp {
    spawn_app_with(|config| {
        config.auth.load_test_accounts = true;
        config.auth.rate_limit = None;
        config.checkout.hold_ttl = hold_ttl;
        config.admin = Some(boxoffice::app::AccountSpec {
            email: ADMIN.to_owned(),
            password: SecretString::from(ADMIN_PASSWORD.to_owned()),
        });
    })
    .await
}

/// The figure of `report` named `name`.
fn figure<'a>(report: &'a Report, name: &str) -> &'a Figure {
    report
        .figures
        .iter()
        .find(|figure| figure.name == name)
        .unwrap_or_else(|| panic!("no figure {name:?}: {}", report.to_text()))
}

/// Runs `boxoffice loadtest` with these extra arguments against `app`.
async fn run(app: &TestApp, extra: &[&str]) -> anyhow::Result<Report> {
    let mut argv = vec![
        "loadtest",
        "--target",
        &app.base,
        "--admin-email",
        ADMIN,
        "--admin-password",
        ADMIN_PASSWORD,
        "--json",
    ];
    argv.extend_from_slice(extra);
    loadtest::run(LoadtestArgs::try_parse_from(argv)?).await
}

fn failed(report: &Report) -> Vec<&str> {
    report.failures().map(|check| check.name.as_str()).collect()
}

#[tokio::test]
async fn onsale_with_2000_users_and_100_seats_passes() {
    let app = spawn_loadtest_app().await;
    let report = run(
        &app,
        &[
            "--scenario",
            "onsale",
            "--users",
            "2000",
            "--concurrency",
            "32",
            "--seat-types",
            "VIP:40,Regular:60",
        ],
    )
    .await
    .unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_text());
    assert_eq!(report.users, 2000);
    // 2000 users, round-robin over two seat types: 1000 choose each.
    let seats: Vec<_> = report
        .seat_types
        .iter()
        .map(|seat| {
            (
                seat.name.as_str(),
                seat.chosen_by,
                seat.expected_confirmed,
                seat.confirmed,
            )
        })
        .collect();
    assert_eq!(
        seats,
        [
            ("VIP", Some(1000), Some(40), Some(40)),
            ("Regular", Some(1000), Some(60), Some(60))
        ]
    );
    assert_eq!(report.phase.requests, 2000);
    assert_eq!(report.phase.count(201, None), 100);
    assert_eq!(report.phase.count(409, Some("sold_out")), 1900);
    assert_eq!(report.phase.server_errors.total(), 0);
    assert!(report.phase.latency.is_some());

    // The JSON document machines read carries the same verdict.
    let document = serde_json::to_value(&report).unwrap();
    assert_eq!(document["verdict"], "PASS");
    assert_eq!(document["phase"]["requests"], 2000);

    // And the server agrees: everything is sold.
    let concert_id = report.concert_id.clone().unwrap();
    let availability: Value = app
        .get(&format!("/api/v1/concerts/{concert_id}/availability"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        availability["seat_types"]
            .as_array()
            .unwrap()
            .iter()
            .all(|seat| seat["remaining"] == 0),
        "{availability}"
    );
}

#[tokio::test]
async fn an_onsale_that_opens_during_the_run_books_nobody_before_the_instant() {
    let app = spawn_loadtest_app().await;
    let report = run(
        &app,
        &[
            "--scenario",
            "onsale",
            "--users",
            "300",
            "--concurrency",
            "16",
            "--seat-types",
            "GA:100",
            "--opens-in",
            "2s",
        ],
    )
    .await
    .unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_text());
    assert_eq!(report.phase.count(201, None), 100);
    assert_eq!(report.phase.count(409, Some("sold_out")), 200);
    // The users came before the on-sale and were told to wait, then all of them got an answer.
    assert!(
        report.phase.count(409, Some("sales_not_open")) > 0,
        "{}",
        report.to_text()
    );
    assert!(
        report
            .checks
            .iter()
            .any(|check| check.name == "no booking before the on-sale" && check.passed),
        "{}",
        report.to_text()
    );
    // Only for the concert `onsale` creates.
    let refused = run(&app, &["--scenario", "soldout", "--opens-in", "2s"]).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn soldout_answers_only_sold_out_after_the_sell_out() {
    let app = spawn_loadtest_app().await;
    let report = run(
        &app,
        &[
            "--scenario",
            "soldout",
            "--users",
            "20",
            "--concurrency",
            "8",
            "--seat-types",
            "Tiny:3",
            "--requests",
            "200",
        ],
    )
    .await
    .unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_text());
    assert_eq!(report.phase.requests, 200);
    assert_eq!(report.phase.count(409, Some("sold_out")), 200);
    assert_eq!(report.seat_types[0].confirmed, Some(3));
}

#[tokio::test]
async fn doors_admit_every_ticket_exactly_once() {
    let app = spawn_loadtest_app().await;
    let report = run(
        &app,
        &[
            "--scenario",
            "doors",
            "--users",
            "60",
            "--concurrency",
            "12",
            "--doors",
            "3",
            "--seat-types",
            "Front:20,Back:50",
            "--retry-share",
            "0.2",
        ],
    )
    .await
    .unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_text());
    // Every ticket scanned once at least; one in three or so scanned again and refused.
    assert!(report.phase.count(201, None) >= 60, "{}", report.to_text());
    assert!(
        report.phase.count(409, Some("already_checked_in")) > 0,
        "{}",
        report.to_text()
    );
    assert!(figure(&report, "check-in scans per second").value.is_some());
}

#[tokio::test]
async fn the_waitlist_scenario_offers_freed_seats_in_line_order() {
    let app = spawn_loadtest_app().await;
    let report = run(
        &app,
        &[
            "--scenario",
            "waitlist",
            "--users",
            "60",
            "--concurrency",
            "8",
            "--seat-types",
            "Front:20",
        ],
    )
    .await
    .unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_text());
    // Ten cancels, ten public attempts refused; the ten offered fans paid: sold out again.
    assert_eq!(report.phase.count(200, None), 10, "{}", report.to_text());
    assert_eq!(report.phase.count(409, Some("sold_out")), 10);
    assert_eq!(report.seat_types[0].confirmed, Some(20));
    let order = report
        .checks
        .iter()
        .find(|check| check.name == "offers in order")
        .unwrap();
    assert!(order.passed, "{}", report.to_text());
}

#[tokio::test]
async fn the_waitingroom_scenario_admits_in_order_at_the_rate_and_books_only_the_admitted() {
    let app = spawn_loadtest_app().await;
    let report = run(
        &app,
        &[
            "--scenario",
            "waitingroom",
            "--users",
            "40",
            "--concurrency",
            "8",
            "--admit-per-minute",
            "600",
            "--seat-types",
            "GA:30",
        ],
    )
    .await
    .unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_text());
    // Everyone joined before the opening; everyone was admitted and booked: 30 seats, 10 late.
    assert_eq!(report.phase.name, "join");
    assert_eq!(report.phase.count(201, None), 40, "{}", report.to_text());
    let part = |name: &str| {
        report
            .parts
            .iter()
            .find(|part| part.name == name)
            .unwrap_or_else(|| panic!("no part {name}: {}", report.to_text()))
    };
    assert_eq!(part("book").count(201, None), 30, "{}", report.to_text());
    assert_eq!(part("book").count(409, Some("sold_out")), 10);
    // The sampled fans tried to book while waiting, and were refused.
    assert!(part("wait").count(403, Some("admission_required")) > 0);
    assert_eq!(report.seat_types[0].confirmed, Some(30));
    for name in [
        "nobody booked without an admission",
        "admission order",
        "admission rate",
        "everyone admitted",
    ] {
        let check = report.checks.iter().find(|check| check.name == name);
        assert!(
            check.is_some_and(|check| check.passed),
            "{name}: {}",
            report.to_text()
        );
    }
    assert!(figure(&report, "joins per second").value.is_some());
    // A room too slow for the run, and the rate given to another scenario, are refused.
    let slow = [
        "--scenario",
        "waitingroom",
        "--users",
        "40",
        "--admit-per-minute",
        "1",
    ];
    assert!(run(&app, &slow).await.is_err());
    assert!(
        run(&app, &["--scenario", "onsale", "--admit-per-minute", "60"])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn churn_and_browse_pass_and_the_baseline_gives_ratios() {
    let app = spawn_loadtest_app().await;
    let churn = run(
        &app,
        &[
            "--scenario",
            "churn",
            "--users",
            "30",
            "--concurrency",
            "6",
            "--seat-types",
            "A:4,B:3",
            "--requests",
            "400",
        ],
    )
    .await
    .unwrap();
    assert_eq!(churn.verdict, Verdict::Pass, "{}", churn.to_text());
    assert_eq!(churn.phase.requests, 400);
    // Both paths were taken: bookings, cancellations and sold-out answers.
    assert!(churn.phase.count(201, None) > 0, "{}", churn.to_text());
    assert!(churn.phase.count(200, None) > 0, "{}", churn.to_text());
    assert!(
        churn.phase.count(409, Some("sold_out")) > 0,
        "{}",
        churn.to_text()
    );

    let browse = run(
        &app,
        &[
            "--scenario",
            "browse",
            "--concurrency",
            "4",
            "--requests",
            "120",
            "--baseline",
        ],
    )
    .await
    .unwrap();
    assert_eq!(browse.verdict, Verdict::Pass, "{}", browse.to_text());
    assert_eq!(browse.phase.count(200, None), 120);
    let baseline = browse.baseline.as_ref().unwrap();
    assert_eq!(baseline.name, "baseline");
    assert_eq!(baseline.count(200, None), 120);
    assert!(browse.ratios.is_some());
}

#[tokio::test]
async fn bookings_made_outside_the_tool_make_the_verdict_fail() {
    let app = spawn_loadtest_app().await;
    let admin = app.login_session(ADMIN, ADMIN_PASSWORD).await.access_token;
    let starts_at = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let response = app
        .client
        .post(app.url("/api/v1/concerts"))
        .bearer_auth(&admin)
        .json(&json!({
            "name": "Tampered", "artist": "Someone Else", "venue": "Hall",
            "starts_at": starts_at,
            "seat_types": [{"name": "General", "price_cents": 100, "capacity": 10}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let concert: Value = response.json().await.unwrap();
    let concert_id = concert["id"].as_str().unwrap().to_owned();
    let seat_type_id = concert["seat_types"][0]["id"].as_str().unwrap().to_owned();

    // Two seats go to buyers the tool does not know about.
    for email in ["outsider1@example.com", "outsider2@example.com"] {
        let outsider = app.register_user(email).await;
        let response = app
            .client
            .post(app.url("/api/v1/bookings"))
            .bearer_auth(&outsider.access_token)
            .json(&json!({"concert_id": concert_id, "seat_type_id": seat_type_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    let report = run(
        &app,
        &[
            "--scenario",
            "onsale",
            "--concert-id",
            &concert_id,
            "--users",
            "30",
            "--concurrency",
            "8",
        ],
    )
    .await
    .unwrap();
    assert_eq!(report.verdict, Verdict::Fail, "{}", report.to_text());
    let failures = failed(&report);
    // The tool got 8 seats where it expected all 10, and the sales report counts 2 bookings
    // it never made.
    assert!(
        failures.contains(&"confirmed bookings == expectation"),
        "{failures:?}"
    );
    assert!(
        failures.contains(&"sales report == ledger, sold + remaining == capacity"),
        "{failures:?}"
    );
    assert_eq!(report.phase.count(201, None), 8);
    // What held still holds: nothing was oversold and every 201 is visible.
    for held in ["not oversold", "every 201 is visible and confirmed"] {
        assert!(!failures.contains(&held), "{held}: {}", report.to_text());
    }
}

#[tokio::test]
async fn accounts_switched_off_and_remote_targets_are_refused() {
    // Without --load-test-accounts the endpoint is 404 and the run cannot be prepared.
    let app = spawn_app_with(|config| {
        config.admin = Some(boxoffice::app::AccountSpec {
            email: ADMIN.to_owned(),
            password: SecretString::from(ADMIN_PASSWORD.to_owned()),
        });
    })
    .await;
    let error = run(&app, &["--users", "5"]).await.unwrap_err();
    assert!(
        error.to_string().contains("--load-test-accounts on"),
        "{error:#}"
    );

    let args =
        LoadtestArgs::try_parse_from(["loadtest", "--target", "http://192.0.2.1:8080"]).unwrap();
    let error = loadtest::run(args).await.unwrap_err();
    assert!(error.to_string().contains("--allow-remote"), "{error:#}");
}

#[tokio::test]
async fn a_server_without_load_test_accounts_is_refused_before_any_concert_is_created() {
    let app = spawn_app_with(|config| {
        config.auth.load_test_accounts = false;
        config.admin = Some(boxoffice::app::AccountSpec {
            email: ADMIN.to_owned(),
            password: SecretString::from(ADMIN_PASSWORD.to_owned()),
        });
    })
    .await;
    let error = run(&app, &["--scenario", "onsale", "--users", "10"])
        .await
        .expect_err("the run is refused");
    assert!(
        format!("{error:#}").contains("--load-test-accounts on"),
        "{error:#}"
    );
    let concerts: Value = app
        .get("/api/v1/concerts?status=all")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        concerts["items"].as_array().map(Vec::len),
        Some(0),
        "no concert is left behind: {concerts}"
    );
}

#[tokio::test]
async fn checkout_pays_retries_declined_cards_and_waits_out_the_unpaid_holds() {
    let app = spawn_loadtest_app_holding_for(Duration::from_secs(3)).await;
    let report = run(
        &app,
        &[
            "--scenario",
            "checkout",
            "--users",
            "200",
            "--concurrency",
            "8",
            "--seat-types",
            "A:60,B:100",
            "--decline-share",
            "0.2",
            "--abandon-share",
            "25%",
            "--baseline",
        ],
    )
    .await
    .unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_text());
    let phase = &report.phase;
    // Every user asked for one hold: a seat, or sold out.
    let held = phase.count(201, None);
    assert_eq!(held + phase.count(409, Some("sold_out")), 200);
    // Every 200 is a payment that completed into a confirmed booking.
    let paid = phase.count(200, None);
    let confirmed: Vec<u64> = report
        .seat_types
        .iter()
        .map(|seat| seat.confirmed.unwrap())
        .collect();
    assert_eq!(confirmed.iter().sum::<u64>(), paid);
    assert!(confirmed[0] <= 60, "{confirmed:?}");
    // B has a seat for each of its 100 users (the odd ones): exactly those who pay booked.
    let b_payers = (1..200)
        .step_by(2)
        .filter(|&user| plan_of(user, 0.2, 0.25) != Plan::Abandon)
        .count() as u64;
    assert_eq!(confirmed[1], b_payers, "{}", report.to_text());
    // The unpaid holds were left to expire, and the declined cards were tried again.
    assert!(held > paid, "{}", report.to_text());
    assert!(
        phase.count(402, Some("payment_declined")) > 0,
        "{}",
        report.to_text()
    );
    let rate = figure(&report, "completed checkouts per second");
    assert!(rate.value.is_some_and(|rate| rate > 0.0), "{rate:?}");
    let ratio = figure(
        &report,
        "completed checkouts per second ÷ healthz requests per second",
    );
    assert!(ratio.met.is_some(), "{ratio:?}");
    assert!(
        figure(
            &report,
            "unpaid holds' seats all back, after the last expires_at"
        )
        .value
        .is_some()
    );

    // The server agrees: nothing held, every unpaid seat back.
    let concert_id = report.concert_id.clone().unwrap();
    for (seat, confirmed) in report.seat_types.iter().zip(&confirmed) {
        let remaining = app.remaining(&concert_id, &seat.id).await;
        assert_eq!(remaining as u64, seat.capacity - confirmed, "{}", seat.name);
    }
}

#[tokio::test]
async fn expiry_brings_every_seat_back_and_others_only_hear_sold_out() {
    let app = spawn_loadtest_app_holding_for(Duration::from_secs(3)).await;
    let report = run(
        &app,
        &[
            "--scenario",
            "expiry",
            "--users",
            "150",
            "--concurrency",
            "6",
            "--duration",
            "500ms",
            "--baseline",
        ],
    )
    .await
    .unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_text());
    // 150 holders, one seller of the sold-out seat type, 6 others.
    assert_eq!(report.users, 157);
    let holds = &report.parts[0];
    assert_eq!(holds.name, "holds");
    assert_eq!(holds.count(201, None), 150);
    // The others heard nothing but sold out, before, during and after the expiry.
    assert!(report.phase.requests > 0);
    assert_eq!(
        report.phase.count(409, Some("sold_out")),
        report.phase.requests
    );
    let windows: u64 = report.parts[1..].iter().map(|part| part.requests).sum();
    assert_eq!(windows, report.phase.requests);
    let seats: Vec<_> = report
        .seat_types
        .iter()
        .map(|seat| (seat.name.as_str(), seat.capacity, seat.confirmed))
        .collect();
    assert_eq!(seats, [("Held", 150, Some(0)), ("Gone", 1, Some(1))]);
    assert!(
        figure(&report, "every seat back, after the last expires_at")
            .value
            .is_some()
    );
    let concert_id = report.concert_id.clone().unwrap();
    assert_eq!(
        app.remaining(&concert_id, &report.seat_types[0].id).await,
        150
    );
}

#[tokio::test]
async fn the_checkout_scenarios_refuse_long_hold_times_and_other_concerts() {
    // Holds of ten minutes (the default) cannot be waited out within a run.
    let app = spawn_loadtest_app().await;
    for scenario in ["checkout", "expiry"] {
        let error = run(&app, &["--scenario", scenario, "--users", "5"])
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains("--hold-ttl"), "{error:#}");
        let error = run(
            &app,
            &[
                "--scenario",
                scenario,
                "--concert-id",
                "00000000-0000-0000-0000-000000000000",
            ],
        )
        .await
        .unwrap_err();
        assert!(format!("{error:#}").contains("--concert-id"), "{error:#}");
    }
    let error = run(
        &app,
        &[
            "--scenario",
            "checkout",
            "--decline-share",
            "0.6",
            "--abandon-share",
            "0.5",
        ],
    )
    .await
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("--abandon-share"),
        "{error:#}"
    );
}
