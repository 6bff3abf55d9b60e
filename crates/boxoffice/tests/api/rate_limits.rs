//! API contract, "Conventions": rate limits answer 429 `rate_limited` with `Retry-After`.
//! Login is throttled on failures per (account, client address) (a success forgives), with a
//! brake per account that rations checks and a limit per address; registration per address.
//! `docs/security.md`, "Login throttling", states the design these tests hold it to.

use boxoffice_auth::config::RateLimitConfig;
use reqwest::{Response, StatusCode, header};
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, assert_problem, spawn_app_with};

/// Small limits, so that a test reaches them in a few requests; default windows.
fn limits() -> RateLimitConfig {
    RateLimitConfig {
        login_failures_per_account_address: 3,
        login_failures_per_address: 100,
        registrations_per_address: 3,
        ..Default::default()
    }
}

async fn spawn_limited_app() -> TestApp {
    spawn_app_with(|config| config.auth.rate_limit = Some(limits())).await
}

/// An app behind a trusted proxy on 127.0.0.1, so that a test can speak from many addresses.
async fn spawn_proxied_app(limits: RateLimitConfig) -> TestApp {
    spawn_app_with(|config| {
        config.auth.rate_limit = Some(limits);
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await
}

/// Logs in as if the gateway had forwarded the request for `client`.
async fn login_via(app: &TestApp, login: &str, password: &str, client: &str) -> Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", client)
        .json(&json!({"login": login, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn fail_login_via(app: &TestApp, login: &str, client: &str) {
    let response = login_via(app, login, "definitely wrong", client).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

async fn assert_logged_in_as(response: Response, user_id: &str) {
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], user_id);
}

const ATTACKER: &str = "203.0.113.66";
const OWNER: &str = "198.51.100.7";

#[tokio::test]
async fn an_attacker_failing_on_an_account_does_not_lock_its_owner_out() {
    let app = spawn_proxied_app(limits()).await;
    let owner = app.register_user("fan@example.com").await;
    for _ in 0..3 {
        fail_login_via(&app, "fan@example.com", ATTACKER).await;
    }
    // The attacker's address is refused on this account, even with the right password...
    let response = login_via(&app, "fan@example.com", PASSWORD, ATTACKER).await;
    assert_rate_limited(response, limits().failure_window.as_secs()).await;
    // ...while the owner, from anywhere else, logs in during the attack.
    let response = login_via(&app, "fan@example.com", PASSWORD, OWNER).await;
    assert_logged_in_as(response, owner.user_id()).await;
    // The owner's success forgave the owner's address, not the attacker's.
    let response = login_via(&app, "FAN@example.com", "definitely wrong", ATTACKER).await;
    assert_rate_limited(response, limits().failure_window.as_secs()).await;
}

#[tokio::test]
async fn many_addresses_failing_on_one_account_brake_it_without_locking_it() {
    let interval = std::time::Duration::from_secs(30);
    let app = spawn_proxied_app(RateLimitConfig {
        login_failures_per_account: 6,
        braked_login_interval: interval,
        ..limits()
    })
    .await;
    let owner = app.register_user("star@example.com").await;
    // Two addresses, three failures each: neither is over its own limit, the account is braked.
    for attacker in ["203.0.113.1", "203.0.113.2"] {
        for _ in 0..3 {
            fail_login_via(&app, "star@example.com", attacker).await;
        }
    }
    // The owner still gets in: a braked account is rationed, not locked.
    let response = login_via(&app, "star@example.com", PASSWORD, OWNER).await;
    assert_logged_in_as(response, owner.user_id()).await;
    // That was the interval's check: the next one waits, whoever asks and whatever the password.
    let response = login_via(&app, "star@example.com", "definitely wrong", "203.0.113.3").await;
    assert_rate_limited(response, interval.as_secs()).await;
    let response = login_via(&app, "star@example.com", PASSWORD, "198.51.100.8").await;
    assert_rate_limited(response, interval.as_secs()).await;
}

#[tokio::test]
async fn one_address_spraying_guesses_across_accounts_is_stopped() {
    let app = spawn_proxied_app(RateLimitConfig {
        login_failures_per_address: 3,
        ..limits()
    })
    .await;
    let sessions = [
        app.register_user("one@example.com").await,
        app.register_user("two@example.com").await,
        app.register_user("three@example.com").await,
    ];
    // One guess on each account: no account sees more than one failure from it.
    for email in ["one@example.com", "two@example.com", "three@example.com"] {
        fail_login_via(&app, email, ATTACKER).await;
    }
    let response = login_via(&app, "one@example.com", PASSWORD, ATTACKER).await;
    assert_rate_limited(response, limits().failure_window.as_secs()).await;
    let response = login_via(&app, "nobody@example.com", "definitely wrong", ATTACKER).await;
    assert_rate_limited(response, limits().failure_window.as_secs()).await;
    // Every other address is untouched.
    let response = login_via(&app, "one@example.com", PASSWORD, OWNER).await;
    assert_logged_in_as(response, sessions[0].user_id()).await;
}

/// Checks a 429 `rate_limited` answer and returns its `Retry-After` in seconds.
async fn assert_rate_limited(response: Response, window_secs: u64) -> u64 {
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let retry_after = retry_after.expect("a Retry-After header");
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is a number of seconds, got {retry_after:?}"));
    assert!(
        (1..=window_secs).contains(&seconds),
        "Retry-After {seconds} within the window of {window_secs} s"
    );
    seconds
}

async fn fail_login(app: &TestApp, login: &str) {
    let response = app.login(login, "definitely wrong").await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn the_fourth_login_after_three_failures_is_429_even_with_the_right_password() {
    let app = spawn_limited_app().await;
    app.register_user("target@example.com").await;
    let bystander = app.register_user("bystander@example.com").await;

    for _ in 0..3 {
        fail_login(&app, "target@example.com").await;
    }
    // Every request here comes from one client address: the one that failed.
    let response = app.login("target@example.com", PASSWORD).await;
    assert_rate_limited(response, limits().failure_window.as_secs()).await;
    // Still refused, whatever the spelling of the email address.
    let response = app.login("  TARGET@example.com", "definitely wrong").await;
    assert_rate_limited(response, limits().failure_window.as_secs()).await;

    // Another account from the same address is not affected.
    let login = app.login_session("bystander@example.com", PASSWORD).await;
    assert_eq!(login.user_id(), bystander.user_id());
}

#[tokio::test]
async fn a_successful_login_clears_the_failure_count() {
    let app = spawn_limited_app().await;
    app.register_user("forgetful@example.com").await;

    fail_login(&app, "forgetful@example.com").await;
    fail_login(&app, "forgetful@example.com").await;
    app.login_session("forgetful@example.com", PASSWORD).await;
    // Two more failures: without the reset this would be the fourth and fifth.
    fail_login(&app, "forgetful@example.com").await;
    fail_login(&app, "forgetful@example.com").await;
    app.login_session("forgetful@example.com", PASSWORD).await;
}

#[tokio::test]
async fn failures_count_against_the_account_whichever_login_names_it() {
    // The limit is per account: guessing through the phone number must not reset or bypass the
    // count kept for the email address.
    let app = spawn_limited_app().await;
    app.register_session(&json!({
        "email": "phone-owner@example.com",
        "password": PASSWORD,
        "full_name": "Phone Owner",
        "phone": "+84901234567",
    }))
    .await;

    fail_login(&app, "+84901234567").await;
    fail_login(&app, "phone-owner@example.com").await;
    fail_login(&app, "+84901234567").await;

    let response = app.login("phone-owner@example.com", PASSWORD).await;
    assert_rate_limited(response, limits().failure_window.as_secs()).await;
    let response = app.login("+84901234567", PASSWORD).await;
    assert_rate_limited(response, limits().failure_window.as_secs()).await;
}

#[tokio::test]
async fn the_fourth_registration_from_one_address_is_429() {
    let app = spawn_limited_app().await;
    for n in 0..3 {
        app.register_user(&format!("user{n}@example.com")).await;
    }

    let response = app
        .register(&json!({
            "email": "user3@example.com",
            "password": PASSWORD,
            "full_name": "One Too Many",
        }))
        .await;
    assert_rate_limited(response, limits().registration_window.as_secs()).await;

    // Nothing was created, and logging in (a different limit) still works for the others.
    let response = app.login("user3@example.com", PASSWORD).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    app.login_session("user0@example.com", PASSWORD).await;
}

/// Registers `email` as if the gateway had forwarded the request for `client`.
async fn register_via(app: &TestApp, email: &str, forwarded_for: &str) -> Response {
    app.client
        .post(app.url("/api/v1/auth/register"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": email, "password": PASSWORD, "full_name": "Behind A Proxy"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_throttle_keys_on_the_address_it_forwards() {
    let app = spawn_app_with(|config| {
        config.auth.rate_limit = Some(limits());
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    // The gateway appends the client it saw; whatever the client wrote before that is ignored.
    for n in 0..3 {
        let response = register_via(
            &app,
            &format!("a{n}@example.com"),
            &format!("198.51.100.{n}, 203.0.113.7"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = register_via(&app, "a3@example.com", "203.0.113.7").await;
    assert_rate_limited(response, limits().registration_window.as_secs()).await;
    // Another client behind the same proxy has its own budget.
    let response = register_via(&app, "b0@example.com", "203.0.113.8").await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn from_an_untrusted_peer_x_forwarded_for_is_ignored() {
    let app = spawn_limited_app().await;
    for n in 0..3 {
        let response = register_via(
            &app,
            &format!("c{n}@example.com"),
            &format!("203.0.113.{n}"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    // A made-up address does not buy a fresh budget.
    let response = register_via(&app, "c3@example.com", "203.0.113.99").await;
    assert_rate_limited(response, limits().registration_window.as_secs()).await;
}

#[tokio::test]
async fn two_auth_instances_sharing_redis_count_registrations_together() {
    let Some(url) = boxoffice_shared::redistest::server("two_auth_instances_sharing_redis") else {
        return;
    };
    let shared = boxoffice_auth::config::SharedThrottles {
        url,
        prefix: format!("boxoffice-test:{}", uuid::Uuid::now_v7()),
    };
    let configure = |config: &mut boxoffice::app::Config| {
        config.auth.rate_limit = Some(limits());
        config.auth.shared_throttles = Some(shared.clone());
    };
    // Separate stores: only the counts in Redis connect the two.
    let a = spawn_app_with(configure).await;
    let b = spawn_app_with(configure).await;
    a.register_user("first@example.com").await;
    b.register_user("second@example.com").await;
    a.register_user("third@example.com").await;
    // Three registrations from this address in all, though neither instance saw three.
    let response = b
        .register(
            &json!({"email": "fourth@example.com", "password": PASSWORD, "full_name": "Too Many"}),
        )
        .await;
    assert_rate_limited(response, limits().registration_window.as_secs()).await;
    let response = a
        .register(
            &json!({"email": "fifth@example.com", "password": PASSWORD, "full_name": "Too Many"}),
        )
        .await;
    assert_rate_limited(response, limits().registration_window.as_secs()).await;
}

/// API contract, "Limits on writes": bookings and cancels count per user; past the limit the
/// answer is 429 with `Retry-After` whatever the request, and other users are untouched.
#[tokio::test]
async fn a_user_past_the_write_limit_is_429_and_other_users_are_not() {
    let app = spawn_app_with(|config| {
        config.write_limits = Some(boxoffice_auth::write_limits::WriteLimitConfig {
            per_user: 5,
            per_address: 1_000,
            window: std::time::Duration::from_secs(10),
        });
    })
    .await;
    let eager = app.register_user("eager@example.com").await;
    let calm = app.register_user("calm@example.com").await;
    let nowhere = "/api/v1/bookings/0190a5c1-0000-7000-8000-000000000000/cancel";
    for _ in 0..5 {
        let response = app.post_with_token(nowhere, &eager.access_token).await;
        assert_problem(response, StatusCode::NOT_FOUND, "booking_not_found").await;
    }
    let response = app.post_with_token(nowhere, &eager.access_token).await;
    assert_rate_limited(response, 10).await;
    let response = app
        .post_json_with_token(
            "/api/v1/bookings",
            &eager.access_token,
            &json!({"concert_id": "0190a5c1-0000-7000-8000-000000000000",
                    "seat_type_id": "0190a5c1-0000-7000-8000-000000000001"}),
        )
        .await;
    assert_rate_limited(response, 10).await;
    let response = app.post_with_token(nowhere, &calm.access_token).await;
    assert_problem(response, StatusCode::NOT_FOUND, "booking_not_found").await;
}

/// `BOXOFFICE_RATE_LIMIT=off` switches the limits on writes off too.
#[tokio::test]
async fn without_rate_limits_writes_are_not_limited() {
    let app = spawn_app_with(|config| config.write_limits = None).await;
    let user = app.register_user("unlimited@example.com").await;
    let nowhere = "/api/v1/bookings/0190a5c1-0000-7000-8000-000000000000/cancel";
    for _ in 0..150 {
        let response = app.post_with_token(nowhere, &user.access_token).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
