//! The journeys, each in a fresh headless Chromium against a fresh server.

use fantoccini::Locator;
use fantoccini::key::Key;

use crate::Browser;
use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, TestApp, concert_body, id_of, spawn_admin_app,
    spawn_admin_app_with,
};

/// A concert of `capacity` General seats at 250.00 USD, starting in a day; its id.
async fn concert(app: &TestApp, admin: &str, name: &str, capacity: u64) -> String {
    id_of(
        &app.create_concert(admin, &concert_body(name, 86_400, capacity))
            .await,
    )
}

pub async fn sign_in(browser: &Browser, base: &str, login: &str, password: &str) {
    browser.goto(&format!("{base}/signin")).await;
    browser.fill("login", login).await;
    browser.fill("password", password).await;
    browser.click("Sign in").await;
    wait_for_path(browser, |path| path != "/signin").await;
}

pub async fn sign_out(browser: &Browser) {
    browser.click("Sign out").await;
    wait_for_path(browser, |path| path == "/").await;
}

/// Waits (a few seconds at most) until the browser's path satisfies `done`.
pub async fn wait_for_path(browser: &Browser, done: impl Fn(&str) -> bool) {
    for _ in 0..100 {
        if done(&browser.path().await) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("still at {}", browser.path().await);
}

/// Checks the radio button of `value`.
async fn choose(browser: &Browser, value: &str) {
    browser
        .client
        .find(Locator::Css(&format!("input[value=\"{value}\"]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_signs_up_buys_a_ticket_through_checkout_and_sees_its_qr_code_and_the_door_admits_it_once()
 {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (app, admin) = spawn_admin_app().await;
    let base = app.base.clone();
    let concert_id = concert(&app, &admin, "Browser Night", 5).await;

    browser.goto(&format!("{base}/")).await;
    browser.snapshot("home").await;
    browser.check_phone_width("home").await;
    // The filters: by category (the select offers the concerts' own), and by day.
    assert!(browser.source().await.contains("<option value=\"concert\""));
    browser.goto(&format!("{base}/?category=opera")).await;
    assert!(browser.source().await.contains("No concert matches."));
    let tomorrow = (time::OffsetDateTime::now_utc() + time::Duration::days(1)).date();
    browser
        .goto(&format!(
            "{base}/?category=concert&from={tomorrow}&to={tomorrow}"
        ))
        .await;
    assert!(browser.source().await.contains("Browser Night"));
    browser.goto(&format!("{base}/?from=someday")).await;
    assert!(browser.text(".notice").await.contains("is not a day"));
    browser.goto(&format!("{base}/")).await;
    browser.click("Browser Night").await;
    wait_for_path(&browser, |path| path.starts_with("/concerts/")).await;
    browser.snapshot("concert").await;
    browser.check_phone_width("concert").await;
    browser.click("Buy a General ticket").await;
    // Not signed in: to the sign-in page, then an account, then back to the concert.
    wait_for_path(&browser, |path| path == "/signin").await;
    browser.snapshot("signin").await;
    browser.click("Create an account").await;
    wait_for_path(&browser, |path| path == "/signup").await;
    browser.fill("full_name", "Ada Browser").await;
    browser.fill("email", "ada@browser.test").await;
    browser.fill("password", PASSWORD).await;
    browser.snapshot("signup").await;
    browser.click("Create the account").await;
    wait_for_path(&browser, |path| path == format!("/concerts/{concert_id}")).await;

    browser.click("Buy a General ticket").await;
    wait_for_path(&browser, |path| path.starts_with("/holds/")).await;
    assert!(
        browser.text(".countdown").await.contains("left"),
        "the countdown runs"
    );
    browser.snapshot("checkout").await;
    browser.check_phone_width("checkout").await;
    // A declined card first: the reason, and the reservation still there.
    choose(&browser, "pm_card_visa_chargeDeclined").await;
    browser.click("Pay 250.00 USD").await;
    browser.wait_for_text(".notice", "declined").await;
    choose(&browser, "pm_card_visa").await;
    browser.click("Pay 250.00 USD").await;
    wait_for_path(&browser, |path| path.starts_with("/tickets/")).await;
    assert_eq!(browser.text("[data-ticket-status]").await, "Valid");
    let code = browser.text("[data-code]").await;
    assert!(code.len() > 100, "a ticket code: {code}");
    let qr = browser
        .client
        .find(Locator::Css("figure.qr svg"))
        .await
        .expect("the QR code is on the page");
    assert!(
        qr.rectangle().await.unwrap().2 >= 200.0,
        "the QR code is big enough"
    );
    browser.snapshot("ticket").await;
    browser.check_phone_width("ticket").await;
    browser.click("All my tickets").await;
    wait_for_path(&browser, |path| path == "/tickets").await;
    assert!(browser.source().await.contains("Browser Night"));
    browser.snapshot("tickets").await;

    // The fan may not open the door or the back office: refused as the API refuses.
    for page in ["/door", "/organiser"] {
        browser.goto(&format!("{base}{page}")).await;
        assert!(
            browser
                .text(".notice")
                .await
                .contains("organisers or door staff"),
            "{page} refused"
        );
    }
    browser.goto(&format!("{base}/tickets")).await;
    sign_out(&browser).await;

    // At the door (an admin may scan): admitted once, then refused with the time.
    sign_in(&browser, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.goto(&format!("{base}/door/{concert_id}")).await;
    browser.fill("code", &code).await;
    browser.click("Check in").await;
    browser
        .wait_for_text("[data-answer] .headline", "Admitted")
        .await;
    assert!(browser.text("[data-answer]").await.contains("Ada Browser"));
    browser.snapshot("door-admitted").await;
    browser.check_phone_width("door").await;
    browser.fill("code", &code).await;
    browser.click("Check in").await;
    browser
        .wait_for_text("[data-answer] .headline", "Already checked in")
        .await;
    browser.snapshot("door-refused").await;
    browser.fill("code", "not-a-ticket").await;
    browser.click("Check in").await;
    browser
        .wait_for_text("[data-answer] .headline", "Not a valid ticket")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organiser_creates_a_concert_sees_a_sale_on_its_dashboard_and_sets_roles_and_webhooks() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (app, _admin) = spawn_admin_app_with(|config| config.webhooks.allow_private = true).await;
    let base = app.base.clone();
    sign_in(&browser, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.goto(&format!("{base}/organiser")).await;
    browser.snapshot("organiser").await;
    browser.click("New concert").await;
    wait_for_path(&browser, |path| path == "/organiser/concerts/new").await;
    let starts = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]"
        ))
        .unwrap();
    browser.fill("name", "Dashboard Live").await;
    browser.fill("artist", "The Organisers").await;
    browser.fill("venue", "Main Hall").await;
    // A datetime-local field takes its value by script in headless Chromium.
    browser
        .client
        .execute(
            "document.getElementById('starts_at').value = arguments[0];",
            vec![serde_json::json!(starts)],
        )
        .await
        .unwrap();
    browser.fill("seat_name_0", "Floor").await;
    browser.fill("seat_price_0", "40.00").await;
    browser.fill("seat_capacity_0", "100").await;
    browser.fill("seat_name_1", "Balcony").await;
    browser.fill("seat_price_1", "25").await;
    browser.fill("seat_capacity_1", "50").await;
    browser.snapshot("organiser-new").await;
    browser.click("Create the concert").await;
    wait_for_path(&browser, |path| path.starts_with("/organiser/concerts/0")).await;
    let concert_id = browser.path().await.rsplit('/').next().unwrap().to_owned();
    assert_eq!(browser.text("[data-sales] tbody tr [data-sold]").await, "0");

    // A fan buys a Floor ticket through the API; the dashboard shows it.
    let concert: serde_json::Value = app
        .client
        .get(format!("{base}/api/v1/concerts/{concert_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(concert["seat_types"][0]["price_cents"], 4000);
    let fan = app.register_user("dashboard-fan@example.com").await;
    app.book_ok(
        &fan.access_token,
        &concert_id,
        &id_of(&concert["seat_types"][0]),
    )
    .await;
    browser
        .goto(&format!("{base}/organiser/concerts/{concert_id}"))
        .await;
    assert_eq!(browser.text("[data-sales] tbody tr [data-sold]").await, "1");
    assert!(browser.source().await.contains("40.00 USD"));
    browser.snapshot("organiser-dashboard").await;
    browser.click("Every booking").await;
    wait_for_path(&browser, |path| path.ends_with("/bookings")).await;
    assert_eq!(
        browser.text("[data-bookings] tbody tr .status").await,
        "Confirmed"
    );
    let row = browser.text("[data-bookings] tbody tr").await;
    assert!(
        row.contains("Ada Lovelace") && row.contains("dashboard-fan@example.com"),
        "the customer is named: {row}"
    );
    browser.snapshot("organiser-bookings").await;
    browser.click("Back to the dashboard").await;
    wait_for_path(&browser, |path| !path.ends_with("/bookings")).await;

    // Sales move to a later on-sale time; a VIP ticket type is added.
    browser.click("Edit the concert").await;
    wait_for_path(&browser, |path| path.ends_with("/edit")).await;
    let opens = (time::OffsetDateTime::now_utc() + time::Duration::days(2))
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]"
        ))
        .unwrap();
    browser
        .client
        .execute(
            "document.getElementById('sales_open_at').value = arguments[0];",
            vec![serde_json::json!(opens)],
        )
        .await
        .unwrap();
    browser.snapshot("organiser-edit").await;
    browser.click("Save").await;
    wait_for_path(&browser, |path| !path.ends_with("/edit")).await;
    assert!(browser.source().await.contains("Not on sale yet"));
    browser.click("Edit the concert").await;
    wait_for_path(&browser, |path| path.ends_with("/edit")).await;
    browser.fill("seat_name", "VIP").await;
    browser.fill("seat_price", "99.50").await;
    browser.fill("seat_capacity", "10").await;
    browser.click("Add the ticket type").await;
    wait_for_path(&browser, |path| !path.ends_with("/edit")).await;
    assert!(browser.source().await.contains("VIP"));

    // The Floor grows to 120 tickets; no capacity may be below what is sold.
    let floor = id_of(&concert["seat_types"][0]);
    browser.click("Edit the concert").await;
    wait_for_path(&browser, |path| path.ends_with("/edit")).await;
    browser.fill(&format!("capacity-{floor}"), "120").await;
    browser.click("Save the capacity of Floor").await;
    wait_for_path(&browser, |path| !path.ends_with("/edit")).await;
    let capacity = |concert: serde_json::Value| concert["seat_types"][0]["capacity"].clone();
    let read = || async {
        app.client
            .get(format!("{base}/api/v1/concerts/{concert_id}"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    assert_eq!(capacity(read().await), 120);
    browser.click("Edit the concert").await;
    wait_for_path(&browser, |path| path.ends_with("/edit")).await;
    browser.fill(&format!("capacity-{floor}"), "0").await;
    browser.click("Save the capacity of Floor").await;
    browser.wait_for(".notice").await;
    assert_eq!(capacity(read().await), 120);

    // The fan becomes door staff.
    browser
        .goto(&format!("{base}/organiser/users?q=dashboard-fan"))
        .await;
    browser
        .client
        .execute(
            "document.querySelector('select[name=role]').value = 'staff';",
            Vec::new(),
        )
        .await
        .unwrap();
    browser.snapshot("organiser-users").await;
    browser.click("Save").await;
    let admin = app.admin_token().await;
    let mut role = serde_json::Value::Null;
    for _ in 0..100 {
        let users: serde_json::Value = app
            .client
            .get(format!("{base}/api/v1/admin/users?q=dashboard-fan"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        role = users["items"][0]["role"].clone();
        if role == "staff" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(role, "staff");

    // A webhook: its secret shown once, then listed with its events.
    browser.goto(&format!("{base}/organiser/webhooks")).await;
    browser.fill("url", "http://127.0.0.1:9/hooks").await;
    choose(&browser, "booking.confirmed").await;
    browser.click("Add the webhook").await;
    browser.wait_for("[data-secret]").await;
    assert!(browser.text("[data-secret]").await.starts_with("whsec_"));
    assert!(browser.source().await.contains("booking.confirmed"));
    browser.snapshot("organiser-webhooks").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_a_fan_joins_the_waiting_list_is_offered_the_freed_seat_and_pays() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (app, admin) = spawn_admin_app().await;
    let base = app.base.clone();
    let concert_id = concert(&app, &admin, "Tiny Show", 1).await;
    let seat = {
        let concert: serde_json::Value = app
            .client
            .get(format!("{base}/api/v1/concerts/{concert_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        id_of(&concert["seat_types"][0])
    };
    let first = app.register_user("first@example.com").await;
    let booking = id_of(&app.book_ok(&first.access_token, &concert_id, &seat).await);
    app.register_user("second@example.com").await;

    sign_in(&browser, &base, "second@example.com", PASSWORD).await;
    browser.goto(&format!("{base}/concerts/{concert_id}")).await;
    browser.click("Join the General waiting list").await;
    wait_for_path(&browser, |path| path == "/waitlist").await;
    assert!(browser.source().await.contains("number 1 in line"));
    browser.snapshot("waitlist").await;

    // The first fan cancels: the seat is offered to the second at once.
    app.cancel_booking(&first.access_token, &booking).await;
    browser.goto(&format!("{base}/waitlist")).await;
    assert!(
        browser
            .source()
            .await
            .contains("A ticket is reserved for you")
    );
    browser.snapshot("waitlist-offered").await;
    browser.click("Pay for your ticket").await;
    wait_for_path(&browser, |path| path.starts_with("/holds/")).await;
    browser.click("Pay 250.00 USD").await;
    wait_for_path(&browser, |path| path.starts_with("/tickets/")).await;
    assert_eq!(browser.text("[data-ticket-status]").await, "Valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_signs_in_and_buys_a_ticket_with_the_keyboard_alone() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (app, admin) = spawn_admin_app().await;
    let base = app.base.clone();
    let concert_id = concert(&app, &admin, "Keyboard Night", 5).await;
    app.register_user("keys@browser.test").await;

    browser.goto(&format!("{base}/")).await;
    browser.tab_to("a[href='/signin']").await;
    browser.press(Key::Enter).await;
    wait_for_path(&browser, |path| path == "/signin").await;
    browser.tab_to("#login").await;
    browser.type_here("keys@browser.test").await;
    browser.tab_to("#password").await;
    browser.type_here(PASSWORD).await;
    browser.press(Key::Enter).await;
    wait_for_path(&browser, |path| path != "/signin").await;

    browser.goto(&format!("{base}/")).await;
    browser
        .tab_to(&format!("a[href='/concerts/{concert_id}']"))
        .await;
    browser.press(Key::Enter).await;
    wait_for_path(&browser, |path| path == format!("/concerts/{concert_id}")).await;
    browser.tab_to("form[action$='/hold'] button").await;
    browser.press(Key::Enter).await;
    wait_for_path(&browser, |path| path.starts_with("/holds/")).await;
    // The first test card is chosen already; the arrow keys would choose another.
    browser.tab_to("form.pay button").await;
    browser.press(Key::Enter).await;
    wait_for_path(&browser, |path| path.starts_with("/tickets/")).await;
    assert_eq!(browser.text("[data-ticket-status]").await, "Valid");
    browser.tab_to("a[href='/tickets']").await;
}
