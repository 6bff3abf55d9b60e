//! An on-sale behind a waiting room, in the browser: the organiser puts the room in front of
//! the sales, a fan waits in it — the place said live as the queue moves — is let through,
//! holds and pays; then the organiser takes the room away.

use std::time::Duration;

use serde_json::{Value, json};

use crate::Browser;
use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, TestApp, concert_body, id_of, rfc3339_in,
    spawn_admin_app,
};
use crate::journeys::{sign_in, sign_out, wait_for_path};

/// Waits up to `seconds` until the first element matching `css` says `expected`, and fails with
/// what it said last (the queue moves on the room's one-second ticks).
async fn wait_for_text_within(browser: &Browser, css: &str, expected: &str, seconds: u64) {
    let mut last = String::new();
    for _ in 0..seconds * 10 {
        if let Ok(element) = browser.client.find(fantoccini::Locator::Css(css)).await {
            last = element.text().await.unwrap_or_default();
            if last.contains(expected) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} says {last:?}, not {expected:?}");
}

/// `PATCH /api/v1/concerts/{id}` as the admin; panics unless it is made.
async fn patch_concert(app: &TestApp, admin: &str, concert_id: &str, body: Value) {
    let response = app
        .patch_json_with_token(&format!("/api/v1/concerts/{concert_id}"), admin, &body)
        .await;
    let status = response.status();
    assert!(
        status.is_success(),
        "{body}: {}",
        response.text().await.unwrap()
    );
}

/// The organiser's part: a waiting room letting one fan through a minute (slow enough for the
/// fan to see their place once sales open), set on the concert's edit page and shown on its
/// dashboard and in the list of concerts.
async fn organiser_sets_a_waiting_room(browser: &Browser, base: &str, concert_id: &str) {
    sign_in(browser, base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser
        .goto(&format!("{base}/organiser/concerts/{concert_id}/edit"))
        .await;
    assert!(
        browser
            .text("[data-waiting-room]")
            .await
            .contains("No waiting room")
    );
    browser.fill("admit_per_minute", "1").await;
    browser.fill("turn_minutes", "10").await;
    browser.snapshot("organiser-waiting-room").await;
    browser.click("Set up a waiting room").await;
    wait_for_path(browser, |path| !path.ends_with("/edit")).await;
    let said = browser.text("[data-waiting-room]").await;
    assert!(
        said.contains("1 fan a minute") && said.contains("10 minutes"),
        "the dashboard shows the room: {said}"
    );
    browser.goto(&format!("{base}/organiser")).await;
    assert!(browser.source().await.contains("1 fan a minute"));
    sign_out(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organiser_sets_a_waiting_room_and_a_fan_queues_is_let_through_and_buys() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (app, admin) = spawn_admin_app().await;
    let base = app.base.clone();
    // Sales open in an hour; the test opens them once the fan is in the waiting room.
    let mut body = concert_body("Big On-Sale", 86_400, 10);
    body["sales_open_at"] = json!(rfc3339_in(3600));
    let concert = app.create_concert(&admin, &body).await;
    let concert_id = id_of(&concert);
    let seat = id_of(&concert["seat_types"][0]);
    app.register_user("queue-fan@browser.test").await;
    organiser_sets_a_waiting_room(&browser, &base, &concert_id).await;

    // The fan finds the queue instead of a buy button; a hold without an admission (a form
    // made by hand) is refused with the API's sentence.
    sign_in(&browser, &base, "queue-fan@browser.test", PASSWORD).await;
    browser.goto(&format!("{base}/concerts/{concert_id}")).await;
    assert!(!browser.source().await.contains("Buy a General ticket"));
    browser.wait_for("[data-queue-join]").await;
    browser.snapshot("concert-waiting-room").await;
    browser
        .client
        .execute(
            "const form = document.querySelector('[data-queue-join] form');
             form.action = form.action.replace(/queue$/, 'hold');
             const seat = document.createElement('input');
             seat.type = 'hidden'; seat.name = 'seat_type_id'; seat.value = arguments[0];
             form.appendChild(seat);
             form.submit();",
            vec![json!(seat)],
        )
        .await
        .unwrap();
    browser.wait_for_text(".notice", "join the queue").await;

    // In the waiting room before the opening: no place yet, said so.
    browser.click("Join the queue").await;
    wait_for_path(&browser, |path| {
        path == format!("/concerts/{concert_id}/queue")
    })
    .await;
    browser
        .wait_for_text("[data-queue-text]", "random place")
        .await;
    browser.snapshot("queue-waiting").await;
    browser.check_phone_width("queue").await;

    // Sales open: the place appears on the page as it is (no reload: the marker stays).
    browser
        .client
        .execute("window.stayed = true;", Vec::new())
        .await
        .unwrap();
    patch_concert(
        &app,
        &admin,
        &concert_id,
        json!({ "sales_open_at": rfc3339_in(1) }),
    )
    .await;
    wait_for_text_within(
        &browser,
        "[data-queue-text]",
        "You are next in the queue",
        20,
    )
    .await;
    let stayed: Value = browser
        .client
        .execute("return window.stayed === true;", Vec::new())
        .await
        .unwrap();
    assert_eq!(stayed, json!(true), "updated live, not reloaded");
    browser.snapshot("queue-place").await;

    // The organiser lets fans through faster: the fan's turn comes, with the tickets.
    let faster = json!({ "admit_per_minute": 6000, "admission_ttl_seconds": 600 });
    patch_concert(&app, &admin, &concert_id, json!({ "waiting_room": faster })).await;
    wait_for_text_within(&browser, "h1", "It's your turn", 20).await;
    browser.snapshot("queue-turn").await;
    browser.check_phone_width("queue-turn").await;
    // A forged admission is refused, said on the queue page, which still has the real one.
    browser
        .client
        .execute(
            "document.querySelector('input[name=admission]').value = 'forged';",
            Vec::new(),
        )
        .await
        .unwrap();
    browser.click("Buy a General ticket").await;
    browser.wait_for_text(".notice", "join the queue").await;
    assert_eq!(
        browser.path().await,
        format!("/concerts/{concert_id}/queue/hold")
    );
    browser.click("Buy a General ticket").await;
    wait_for_path(&browser, |path| path.starts_with("/holds/")).await;
    browser.click("Pay 250.00 USD").await;
    wait_for_path(&browser, |path| path.starts_with("/tickets/")).await;
    assert_eq!(browser.text("[data-ticket-status]").await, "Valid");
    sign_out(&browser).await;

    // The organiser takes the room away: fans buy directly again.
    sign_in(&browser, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser
        .goto(&format!("{base}/organiser/concerts/{concert_id}/edit"))
        .await;
    browser.click("Remove the waiting room").await;
    wait_for_path(&browser, |path| !path.ends_with("/edit")).await;
    assert!(
        browser
            .text("[data-waiting-room]")
            .await
            .contains("No waiting room")
    );
    assert_eq!(app.concert(&concert_id).await["waiting_room"], Value::Null);
}
