//! What a newcomer meets when `boxoffice serve` cannot start, or is started with a host name:
//! a message that says what to fix, and nothing left behind by a start that failed.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;

use crate::admin::boxoffice_command;
use crate::helpers::free_port;

/// Runs `boxoffice serve` with `args` and expects it to exit non-zero within 30 s; returns
/// what it printed.
async fn failed_start(args: &[&str]) -> String {
    let output = boxoffice_command()
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("the failed start ends within 30 s")
        .unwrap();
    assert!(!output.status.success(), "the start fails");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn a_data_dir_that_is_a_file_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let port = free_port().to_string();
    let said = failed_start(&[
        "--data-dir",
        file.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .await;
    assert!(said.contains("is a file, not a directory"), "{said}");
    assert!(said.contains("not-a-dir"), "{said}");
}

#[tokio::test]
async fn stripe_without_its_keys_names_the_variables_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let said = failed_start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--payments",
        "stripe",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
    ])
    .await;
    assert!(said.contains("BOXOFFICE_STRIPE_SECRET_KEY"), "{said}");
    assert!(said.contains("BOXOFFICE_STRIPE_WEBHOOK_SECRET"), "{said}");
}

#[tokio::test]
async fn an_unreachable_postgresql_is_named_and_no_key_file_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let said = failed_start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--database-url",
        "postgres://nobody@127.0.0.1:1/boxoffice",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
    ])
    .await;
    assert!(said.contains("127.0.0.1:1"), "the server is named: {said}");
    assert!(!said.contains("pool timed out"), "{said}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".pem"))
        .collect();
    assert!(left.is_empty(), "a failed start left {left:?}");
}

#[tokio::test]
async fn listen_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = boxoffice_command()
        .args(["serve", "--listen", &format!("localhost:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut answered = false;
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("boxoffice exited early with {status}");
        }
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            assert_eq!(response.status(), StatusCode::OK);
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill().await;
    assert!(answered, "serve --listen localhost:{port} answers");
}
