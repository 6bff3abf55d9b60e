//! API contract, "Running it": an admin account made sure of at start-up
//! (`BOXOFFICE_ADMIN_EMAIL` / `_PASSWORD`) or by `boxoffice admin create`, and roles in `/me`.

use boxoffice::app::AccountSpec;
use boxoffice_shared::token::Role;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, assert_problem, read_claims, spawn_app, spawn_app_with};

const ADMIN_PASSWORD: &str = "bootstrap admin password";

fn admin_spec(email: &str) -> AccountSpec {
    AccountSpec {
        email: email.to_owned(),
        password: SecretString::from(ADMIN_PASSWORD.to_owned()),
    }
}

/// `boxoffice` with a clean `BOXOFFICE_*` environment and cheap argon2.
pub fn boxoffice_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BOXOFFICE_") {
            command.env_remove(name);
        }
    }
    command
        .env("BOXOFFICE_ARGON2_MEMORY_KIB", "256")
        .env("BOXOFFICE_ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    if let Some(url) = crate::helpers::database_url() {
        command.env("BOXOFFICE_DATABASE_URL", url);
    }
    command
}

#[tokio::test]
async fn bootstrap_creates_an_admin() {
    let app = spawn_app_with(|config| config.admin = Some(admin_spec("  Root@Example.COM "))).await;

    let session = app.login_session("root@example.com", ADMIN_PASSWORD).await;
    assert_eq!(session.user["role"], "admin");
    assert_eq!(session.user["email"], "root@example.com");
    assert_eq!(read_claims(&session.access_token).role, Role::Admin);
    assert_eq!(app.me_ok(&session.access_token).await["role"], "admin");

    // A second start with the same bootstrap keeps the one account.
    let app = app
        .restart_with(|config| config.admin = Some(admin_spec("root@example.com")))
        .await;
    let again = app.login_session("root@example.com", ADMIN_PASSWORD).await;
    assert_eq!(again.user_id(), session.user_id());
    assert_eq!(again.user["role"], "admin");
}

#[tokio::test]
async fn bootstrap_promotes_an_existing_customer_with_the_bootstrap_password() {
    let app = spawn_app().await;
    let customer = app
        .register_session(&json!({
            "email": "boss@example.com",
            "password": PASSWORD,
            "full_name": "The Boss",
            "phone": "+84901234567",
        }))
        .await;
    assert_eq!(customer.user["role"], "customer");

    let app = app
        .restart_with(|config| config.admin = Some(admin_spec("BOSS@example.com")))
        .await;

    let admin = app.login_session("boss@example.com", ADMIN_PASSWORD).await;
    assert_eq!(admin.user_id(), customer.user_id(), "the same account");
    assert_eq!(admin.user["role"], "admin");
    assert_eq!(admin.user["full_name"], "The Boss", "the profile is kept");
    assert_eq!(admin.user["phone"], "+84901234567");
    assert_eq!(read_claims(&admin.access_token).role, Role::Admin);
    assert_eq!(app.me_ok(&admin.access_token).await["role"], "admin");

    // The old password no longer opens the account.
    let response = app.login("boss@example.com", PASSWORD).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn admin_create_cli_then_serve_on_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let output = boxoffice_command()
        .args([
            "admin",
            "create",
            "--email",
            "Ops@Example.com",
            "--password",
        ])
        .arg(ADMIN_PASSWORD)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "admin create failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ops@example.com"), "{stdout}");
    assert!(
        !stdout.contains(ADMIN_PASSWORD),
        "the password is not printed"
    );

    let app = TestApp::start(dir, |_| {}).await;
    let session = app.login_session("ops@example.com", ADMIN_PASSWORD).await;
    assert_eq!(session.user["role"], "admin");
    assert_eq!(app.me_ok(&session.access_token).await["role"], "admin");
}

#[tokio::test]
async fn admin_create_cli_rejects_a_short_password() {
    let dir = tempfile::tempdir().unwrap();
    let output = boxoffice_command()
        .args([
            "admin",
            "create",
            "--email",
            "ops@example.com",
            "--password",
            "short",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        !output.status.success(),
        "a 5-character password is refused"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("8 characters"),
        "says what to fix: {stderr}"
    );

    let app = TestApp::start(dir, |_| {}).await;
    let response = app.login("ops@example.com", "short").await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn a_customer_is_a_customer_in_me_and_in_the_token() {
    let app = spawn_app_with(|config| config.admin = Some(admin_spec("root@example.com"))).await;
    let customer = app.register_user("fan@example.com").await;
    assert_eq!(customer.user["role"], "customer");
    assert_eq!(read_claims(&customer.access_token).role, Role::Customer);
    assert_eq!(app.me_ok(&customer.access_token).await["role"], "customer");

    // Registration cannot ask for another role.
    let response = app
        .register(&json!({
            "email": "sneaky@example.com",
            "password": PASSWORD,
            "full_name": "Sneaky",
            "role": "admin",
        }))
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

/// Load-test accounts: off by default (404), admin only (403), bounded (422), and the tokens
/// they come with are real tokens of real customer accounts that nobody can log in to.
#[tokio::test]
async fn load_test_accounts_are_off_by_default_and_admin_only() {
    let app = spawn_app_with(|config| config.admin = Some(admin_spec("root@example.com"))).await;
    let admin = app.login_session("root@example.com", ADMIN_PASSWORD).await;
    let body = json!({"count": 3, "prefix": "run-1"});
    let response = app
        .post_json_with_token(
            "/api/v1/admin/load-test-accounts",
            &admin.access_token,
            &body,
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;

    let app = app
        .restart_with(|config| {
            config.admin = Some(admin_spec("root@example.com"));
            config.auth.load_test_accounts = true;
        })
        .await;
    let admin = app.login_session("root@example.com", ADMIN_PASSWORD).await;
    let customer = app.register_user("fan@example.com").await;
    let response = app
        .post_json_with_token(
            "/api/v1/admin/load-test-accounts",
            &customer.access_token,
            &body,
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    for bad in [
        json!({"count": 0, "prefix": "run"}),
        json!({"count": 10001, "prefix": "run"}),
        json!({"count": 1, "prefix": "Bad Prefix"}),
    ] {
        let response = app
            .post_json_with_token(
                "/api/v1/admin/load-test-accounts",
                &admin.access_token,
                &bad,
            )
            .await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }

    let response = app
        .post_json_with_token(
            "/api/v1/admin/load-test-accounts",
            &admin.access_token,
            &body,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: serde_json::Value = response.json().await.unwrap();
    let accounts = created["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 3);
    for account in accounts {
        let token = account["access_token"].as_str().unwrap();
        let me = app.me_ok(token).await;
        assert_eq!(me["id"], account["user_id"]);
        assert_eq!(me["role"], "customer");
        let email = account["email"].as_str().unwrap();
        assert!(
            email.starts_with("run-1-") && email.ends_with("@loadtest.invalid"),
            "{email}"
        );
        let login = app.login(email, "any password at all").await;
        assert_problem(login, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
}
