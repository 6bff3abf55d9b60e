//! Restarts, the binary and signals (API contract, "Running it"): a generated signing key and
//! revoked sessions survive a restart on the same data directory; `boxoffice serve` answers,
//! exits 0 on SIGTERM, and `--demo` prints how to log in.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::admin::boxoffice_command;
use crate::helpers::{PASSWORD, assert_problem, free_port, now_unix, read_claims, spawn_app_with};

fn header_alg(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    header["alg"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_token_issued_before_a_restart_works_after_it_with_a_generated_key() {
    let app = spawn_app_with(|config| config.jwt_secret = None).await;
    let session = app.register_user("persist@example.com").await;
    assert_eq!(header_alg(&session.access_token), "EdDSA");
    assert!(
        std::fs::read_dir(app.data_dir()).unwrap().any(|entry| entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".pem")),
        "the generated key is kept in the data directory"
    );

    let app = app.restart_with(|config| config.jwt_secret = None).await;

    let me = app.me_ok(&session.access_token).await;
    assert_eq!(me["id"], session.user["id"]);
    let response = app.refresh(&session.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let new_access = body["access_token"].as_str().unwrap();
    app.me_ok(new_access).await;
}

#[tokio::test]
async fn an_hmac_token_is_refused_by_a_server_that_signs_with_ed25519() {
    // The verifier pins its algorithm: a token signed with HS256 (here with the test secret, which
    // this server does not use) must not pass, whatever key the attacker picks.
    let app = spawn_app_with(|config| config.jwt_secret = None).await;
    let session = app.register_user("pinned@example.com").await;
    let now = now_unix();
    let claims = boxoffice_shared::token::AccessClaims {
        iat: now,
        exp: now + 600,
        ..read_claims(&session.access_token)
    };
    let response = app.me(&app.forge_token(&claims)).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    app.me_ok(&session.access_token).await;
}

#[tokio::test]
async fn a_logout_before_a_restart_stays_effective_after_it() {
    let app = spawn_app_with(|config| config.jwt_secret = None).await;
    let gone = app.register_user("gone@example.com").await;
    let kept = app.login_session("gone@example.com", PASSWORD).await;
    let response = app.logout(&gone.access_token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let app = app.restart_with(|config| config.jwt_secret = None).await;

    let response = app.me(&gone.access_token).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let response = app.refresh(&gone.refresh_token).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    // The other session survived the restart too.
    app.me_ok(&kept.access_token).await;
}

#[tokio::test]
async fn a_session_revoked_by_refresh_reuse_stays_revoked_after_a_restart() {
    let app = spawn_app_with(|config| config.jwt_secret = None).await;
    let session = app.register_user("reused@example.com").await;
    let response = app.refresh(&session.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let newest_access = body["access_token"].as_str().unwrap().to_owned();
    let response = app.refresh(&session.refresh_token).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;

    let app = app.restart_with(|config| config.jwt_secret = None).await;

    let response = app.me(&newest_access).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

/// Starts `boxoffice serve` on a free port with `extra` arguments; stdout is piped.
fn spawn_serve(data_dir: &Path, extra: &[&str]) -> (Child, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = boxoffice_command()
        .args(["serve", "--listen", &listen, "--rate-limit", "off"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    (child, format!("http://{listen}"))
}

/// Polls `/healthz` until the child answers (start-up includes migrations, hence the patience).
async fn wait_until_healthy(child: &mut Child, base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("boxoffice exited early with {status}");
        }
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            assert_eq!(response.status(), StatusCode::OK);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("boxoffice did not answer /healthz at {base}");
}

/// Sends SIGTERM and checks that the process exits with status 0 within 10 s.
async fn terminate(mut child: Child) {
    let pid = child.id().expect("the child is running");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("boxoffice exits within 10 s of SIGTERM")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
}

#[tokio::test]
async fn the_binary_serves_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_serve(dir.path(), &[]);
    // Keep draining stdout so that log lines never block the child.
    let stdout = child.stdout.take().unwrap();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
    });
    wait_until_healthy(&mut child, &base).await;

    // It is the real thing: an account can be made and used.
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&serde_json::json!({
            "email": "binary@example.com",
            "password": PASSWORD,
            "full_name": "Binary",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // The generated signing key is kept in the data directory.
    assert!(
        std::fs::read_dir(dir.path()).unwrap().any(|entry| entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".pem")),
        "a key file in the data directory"
    );

    terminate(child).await;
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "nothing listens after the exit"
    );
}

#[tokio::test]
async fn serve_demo_prints_how_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_serve(dir.path(), &["--demo"]);
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();

    // Read until the guide names the demo fan's credentials.
    let mut printed = String::new();
    let fan_line = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("Demo fan:") {
                return line;
            }
        }
        panic!("stdout ended without a login guide:\n{printed}");
    })
    .await
    .expect("the guide is printed at start-up");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    assert!(
        printed.contains(&base),
        "the guide names {base}:\n{printed}"
    );
    assert!(
        printed.contains("/docs"),
        "the guide points at the docs:\n{printed}"
    );
    assert!(printed.contains("Demo admin:"), "{printed}");
    let credentials = fan_line.split_once(':').unwrap().1.trim();
    let (email, password) = credentials
        .split_once(" / ")
        .unwrap_or_else(|| panic!("`email / password` in {fan_line:?}"));

    wait_until_healthy(&mut child, &base).await;
    // The printed credentials work.
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "login": email.trim(), "password": password.trim() }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "login with {credentials}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["role"], "customer");

    terminate(child).await;
}
