//! API contract, "Checkout: holds and payment", with the `stripe` provider, against localstripe
//! (a stateful fake of Stripe's API from PyPI, started per test by `tests/peers/stripe_peer.py`):
//! a hold creates a PaymentIntent keyed by the hold, paying confirms it, Stripe's signed webhook
//! completes holds the client paid itself, a declined card marks the payment failed, a cancel
//! refunds through Stripe, and forged, stale or replayed webhooks change nothing.
//!
//! Without python3 and localstripe the tests say they skipped; under `BOXOFFICE_CI=1` they fail.

use std::io::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_booking::payments::stripe::{Stripe, StripeConfig, sign};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::{
    TestApp, assert_problem, concert_body, free_port, id_of, now_unix, poll_until,
    spawn_admin_app_with,
};

const SECRET_KEY: &str = "sk_test_boxoffice";
const WEBHOOK_SECRET: &str = "whsec_boxoffice_test";
const WEBHOOK: &str = "/api/v1/payments/stripe/webhook";

/// A running localstripe.
struct StripePeer {
    _child: Child,
    url: String,
    http: reqwest::Client,
}

impl StripePeer {
    /// Starts localstripe on a free port and waits until it answers; `None` (the test skips)
    /// where python3 with localstripe is missing, which `BOXOFFICE_CI=1` does not allow.
    async fn start(test: &str) -> Option<StripePeer> {
        let installed = std::process::Command::new("python3")
            .args(["-c", "import localstripe"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            assert!(
                std::env::var("BOXOFFICE_CI").as_deref() != Ok("1"),
                "{test}: python3 with localstripe is required under BOXOFFICE_CI=1; run .ci/peers.sh"
            );
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped: python3 with localstripe is not installed (.ci/peers.sh)"
            );
            return None;
        }
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/stripe_peer.py");
        let child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string()])
            // Held open: the peer exits when it closes, even if this process is killed.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let peer = StripePeer {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        poll_until(20, "localstripe to answer", || async {
            let answer = peer
                .http
                .get(peer.at("/v1/payment_intents"))
                .bearer_auth(SECRET_KEY);
            answer.send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        Some(peer)
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Has localstripe send its signed events to `app`'s webhook.
    async fn deliver_to(&self, app: &TestApp) {
        let response = self
            .http
            .post(self.at("/_config/webhooks/boxoffice"))
            .form(&[("url", app.url(WEBHOOK)), ("secret", WEBHOOK_SECRET.into())])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "webhook registration");
    }

    /// A call to Stripe's API as the deployment (or its client) makes it.
    async fn api(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
        let response = self
            .http
            .request(method, self.at(path))
            .bearer_auth(SECRET_KEY)
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// What a client does with Stripe.js: confirms the hold's PaymentIntent with a card.
    async fn confirm_as_client(&self, intent: &str, method: &str) -> Value {
        let path = format!("/v1/payment_intents/{intent}");
        self.api(reqwest::Method::POST, &path, &[("payment_method", method)])
            .await;
        self.api(reqwest::Method::POST, &format!("{path}/confirm"), &[])
            .await
    }
}

/// A server taking payments through `peer`, and an admin's token.
async fn stripe_app(peer: &StripePeer) -> (TestApp, String) {
    let api_url = peer.url.clone();
    spawn_admin_app_with(move |config| {
        let stripe = Stripe::new(StripeConfig {
            secret_key: SecretString::from(SECRET_KEY),
            webhook_secret: SecretString::from(WEBHOOK_SECRET),
            api_url,
        })
        .expect("the Stripe client builds");
        config.checkout.payments = Arc::new(stripe);
    })
    .await
}

/// A concert with a priced ("General", 25000 USD cents) and a free ("Guest list") seat type.
async fn concert(app: &TestApp, admin: &str, capacity: u64) -> (String, String, String) {
    let mut body = concert_body("Paid through Stripe", 3600, capacity);
    body["seat_types"].as_array_mut().unwrap().push(
        json!({"name": "Guest list", "price_cents": 0, "currency": "USD", "capacity": capacity}),
    );
    let concert = app.create_concert(admin, &body).await;
    let seat = |index: usize| id_of(&concert["seat_types"][index]);
    (id_of(&concert), seat(0), seat(1))
}

/// A Stripe deployment with a concert and one fan holding a priced seat.
struct Checkout {
    peer: StripePeer,
    app: TestApp,
    concert: String,
    priced: String,
    fan: crate::helpers::Session,
    hold: Value,
}

/// Starts a peer and a server paying through it (receiving the peer's webhooks when
/// `webhooks`), and has the fan `email` hold a priced seat; `None` where the peer cannot run.
async fn checkout(test: &str, email: &str, webhooks: bool) -> Option<Checkout> {
    let peer = StripePeer::start(test).await?;
    let (app, admin) = stripe_app(&peer).await;
    if webhooks {
        peer.deliver_to(&app).await;
    }
    let (concert, priced, _) = concert(&app, &admin, 5).await;
    let fan = app.register_user(email).await;
    let hold = app.hold_ok(&fan.access_token, &concert, &priced).await;
    Some(Checkout {
        peer,
        app,
        concert,
        priced,
        fan,
        hold,
    })
}

/// The PaymentIntent of a hold as the API shows it (its id is the client secret's prefix).
fn intent_of(hold: &Value) -> String {
    let secret = hold["payment"]["client_secret"]
        .as_str()
        .expect("a client secret");
    secret.split("_secret_").next().unwrap().to_owned()
}

#[tokio::test]
async fn a_hold_paid_through_stripe_books_the_seat_and_a_cancel_refunds_it() {
    let Some(peer) = StripePeer::start("a_hold_paid_through_stripe_books_the_seat").await else {
        return;
    };
    let (app, admin) = stripe_app(&peer).await;
    peer.deliver_to(&app).await;
    let (concert, priced, _) = concert(&app, &admin, 5).await;
    let fan = app.register_user("stripe-payer@example.com").await;

    let hold = app.hold_ok(&fan.access_token, &concert, &priced).await;
    assert_eq!(hold["payment"]["provider"], "stripe");
    assert_eq!(hold["payment"]["status"], "requires_payment");
    let intent_id = intent_of(&hold);
    assert!(intent_id.starts_with("pi_"), "{hold}");
    let intent = peer
        .api(
            reqwest::Method::GET,
            &format!("/v1/payment_intents/{intent_id}"),
            &[],
        )
        .await;
    assert_eq!(intent["amount"], 25000);
    assert_eq!(intent["currency"], "usd");
    assert_eq!(intent["metadata"]["hold_id"], hold["id"]);

    // Five tabs pay at once: one charge, one booking, the same answer for all.
    let hold_id = id_of(&hold);
    let pay = || app.pay(&fan.access_token, &hold_id, "pm_card_visa");
    let (a, b, c, d, e) = tokio::join!(pay(), pay(), pay(), pay(), pay());
    let mut bookings = std::collections::HashSet::new();
    for paid in [a, b, c, d, e] {
        assert_eq!(paid.status(), StatusCode::OK);
        let paid: Value = paid.json().await.unwrap();
        assert_eq!(paid["status"], "completed");
        assert_eq!(paid["payment"]["status"], "succeeded");
        bookings.insert(paid["booking_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(bookings.len(), 1, "{bookings:?}");
    let booking_id = bookings.into_iter().next().unwrap();
    let intent = peer
        .api(
            reqwest::Method::GET,
            &format!("/v1/payment_intents/{intent_id}"),
            &[],
        )
        .await;
    assert_eq!(intent["status"], "succeeded", "{intent}");
    // Stripe's own event about the same payment arrives a moment later and changes nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = app
        .pay(&fan.access_token, &id_of(&hold), "pm_card_visa")
        .await;
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["booking_id"], booking_id.as_str());
    assert_eq!(app.remaining(&concert, &priced).await, 4);

    let booking = app
        .get_with_token(&format!("/api/v1/bookings/{booking_id}"), &fan.access_token)
        .await;
    let booking: Value = booking.json().await.unwrap();
    assert_eq!(
        booking["payment"],
        json!({"provider": "stripe", "amount_cents": 25000, "status": "succeeded"})
    );
    let cancelled = app.cancel_booking(&fan.access_token, &booking_id).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    poll_until(20, "the refund through Stripe", || async {
        let refunds = peer
            .api(
                reqwest::Method::GET,
                "/v1/refunds",
                &[("payment_intent", &intent_id)],
            )
            .await;
        let refunds = refunds["data"].as_array().cloned().unwrap_or_default();
        (refunds.len() == 1).then_some(refunds)
    })
    .await;
    poll_until(20, "the booking's payment refunded", || async {
        let path = format!("/api/v1/bookings/{booking_id}");
        let booking: Value = app
            .get_with_token(&path, &fan.access_token)
            .await
            .json()
            .await
            .ok()?;
        (booking["payment"]["status"] == "refunded").then_some(())
    })
    .await;
    let sales = app.sales(&admin, &concert).await;
    assert_eq!(sales["seat_types"][0]["refunded_cents"], 25000, "{sales}");
}

#[tokio::test]
async fn a_payment_the_client_confirms_with_stripe_completes_the_hold_by_webhook() {
    let Some(Checkout {
        peer,
        app,
        concert,
        priced,
        fan,
        hold,
    }) = checkout(
        "a_payment_the_client_confirms_with_stripe",
        "stripe-js@example.com",
        true,
    )
    .await
    else {
        return;
    };

    let confirmed = peer
        .confirm_as_client(&intent_of(&hold), "pm_card_visa")
        .await;
    assert_eq!(confirmed["status"], "succeeded");
    let completed = poll_until(20, "the webhook to complete the hold", || async {
        let hold = app.hold_of(&fan.access_token, &id_of(&hold)).await;
        (hold["status"] == "completed").then_some(hold)
    })
    .await;
    assert_eq!(completed["payment"]["status"], "succeeded");
    let booking_id = completed["booking_id"].as_str().unwrap();
    let booking = app
        .get_with_token(&format!("/api/v1/bookings/{booking_id}"), &fan.access_token)
        .await;
    assert_eq!(booking.status(), StatusCode::OK);
    assert_eq!(app.remaining(&concert, &priced).await, 4);
}

#[tokio::test]
async fn a_declined_card_marks_the_payment_failed_and_keeps_the_hold() {
    let Some(Checkout {
        peer: _peer,
        app,
        concert,
        priced,
        fan,
        hold,
    }) = checkout(
        "a_declined_card_marks_the_payment_failed",
        "stripe-declined@example.com",
        true,
    )
    .await
    else {
        return;
    };

    // Attaching this card succeeds and charging it fails, at Stripe and at localstripe (which
    // declines pm_card_visa_chargeDeclined only when it is attached to a customer).
    let declined = app
        .pay(
            &fan.access_token,
            &id_of(&hold),
            "pm_card_chargeCustomerFail",
        )
        .await;
    let problem = assert_problem(declined, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("card_declined"),
        "{problem}"
    );
    let after = app.hold_of(&fan.access_token, &id_of(&hold)).await;
    assert_eq!(after["status"], "active");
    assert_eq!(after["payment"]["status"], "failed");
    // Stripe's payment_intent.payment_failed event arrives too, and changes nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = app.hold_of(&fan.access_token, &id_of(&hold)).await;
    assert_eq!(later["status"], "active");
    assert_eq!(app.remaining(&concert, &priced).await, 4);
}

#[tokio::test]
async fn priced_seats_need_a_hold_and_free_seats_book_in_one_step() {
    let Some(peer) = StripePeer::start("priced_seats_need_a_hold").await else {
        return;
    };
    let (app, admin) = stripe_app(&peer).await;
    let (concert, priced, free) = concert(&app, &admin, 5).await;
    let fan = app.register_user("stripe-booker@example.com").await;

    let refused = app.book(&fan.access_token, &concert, &priced).await;
    assert_problem(refused, StatusCode::CONFLICT, "payment_required").await;
    assert_eq!(app.remaining(&concert, &priced).await, 5);
    let booking = app.book_ok(&fan.access_token, &concert, &free).await;
    assert_eq!(booking["payment"], Value::Null);

    // A free seat's hold asks Stripe for nothing and is paid with an empty body.
    let other = app.register_user("stripe-guest@example.com").await;
    let hold = app.hold_ok(&other.access_token, &concert, &free).await;
    assert_eq!(hold["payment"]["client_secret"], Value::Null);
    let paid = app
        .post_json_with_token(
            &format!("/api/v1/holds/{}/pay", id_of(&hold)),
            &other.access_token,
            &json!({}),
        )
        .await;
    assert_eq!(paid.status(), StatusCode::OK);
}

/// An event as Stripe would send it about `intent` of `hold_id`.
fn event(id: &str, kind: &str, intent: &str, hold_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": kind, "api_version": "2024-06-20",
        "data": {"object": {"id": intent, "object": "payment_intent", "amount": 25000,
                            "metadata": {"hold_id": hold_id}}}
    }))
    .unwrap()
}

async fn post_event(app: &TestApp, payload: &[u8], signature: Option<String>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(app.url(WEBHOOK))
        .header("content-type", "application/json; charset=utf-8")
        .body(payload.to_vec());
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn forged_stale_and_replayed_webhooks_change_nothing() {
    // No webhook registered with the peer: only the events below arrive.
    let Some(Checkout {
        peer,
        app,
        concert,
        priced,
        fan,
        hold,
    }) = checkout(
        "forged_stale_and_replayed_webhooks",
        "stripe-webhook@example.com",
        false,
    )
    .await
    else {
        return;
    };
    let (hold_id, intent) = (id_of(&hold), intent_of(&hold));
    peer.confirm_as_client(&intent, "pm_card_visa").await;
    let payload = event(
        "evt_paid_once",
        "payment_intent.succeeded",
        &intent,
        &hold_id,
    );
    let now = now_unix();

    for (why, signature) in [
        ("forged", Some(sign(b"whsec_someone_else", now, &payload))),
        (
            "stale",
            Some(sign(WEBHOOK_SECRET.as_bytes(), now - 301, &payload)),
        ),
        ("garbled", Some("t=1,v1=nothex".to_owned())),
        ("missing", None),
    ] {
        let refused = post_event(&app, &payload, signature).await;
        let problem = assert_problem(refused, StatusCode::BAD_REQUEST, "invalid_signature").await;
        assert!(problem["detail"].is_string(), "{why}");
        let still = app.hold_of(&fan.access_token, &hold_id).await;
        assert_eq!(still["status"], "active", "{why}");
    }
    // Signed for another body: refused too.
    let other = event("evt_other", "payment_intent.succeeded", &intent, &hold_id);
    let swapped = sign(WEBHOOK_SECRET.as_bytes(), now, &payload);
    assert_problem(
        post_event(&app, &other, Some(swapped)).await,
        StatusCode::BAD_REQUEST,
        "invalid_signature",
    )
    .await;

    let signed = || Some(sign(WEBHOOK_SECRET.as_bytes(), now_unix(), &payload));
    let accepted = post_event(&app, &payload, signed()).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(
        accepted.json::<Value>().await.unwrap(),
        json!({"received": true})
    );
    let completed = app.hold_of(&fan.access_token, &hold_id).await;
    assert_eq!(completed["status"], "completed");
    let booking_id = completed["booking_id"].as_str().unwrap().to_owned();

    // Replayed after the booking was cancelled: acknowledged, and the seat stays free.
    app.cancel_booking(&fan.access_token, &booking_id).await;
    for _ in 0..3 {
        let replayed = post_event(&app, &payload, signed()).await;
        assert_eq!(replayed.status(), StatusCode::OK);
    }
    assert_eq!(app.remaining(&concert, &priced).await, 5);
    let bookings = app
        .get_with_token("/api/v1/bookings", &fan.access_token)
        .await;
    let bookings: Value = bookings.json().await.unwrap();
    assert_eq!(bookings["items"].as_array().unwrap().len(), 1, "{bookings}");

    // Events about holds of other deployments, and other kinds of event, are acknowledged.
    let stranger = event(
        "evt_stranger",
        "payment_intent.succeeded",
        "pi_x",
        &uuid::Uuid::now_v7().to_string(),
    );
    let stranger_signature = Some(sign(WEBHOOK_SECRET.as_bytes(), now_unix(), &stranger));
    assert_eq!(
        post_event(&app, &stranger, stranger_signature)
            .await
            .status(),
        StatusCode::OK
    );
    let other_kind = event("evt_kind", "charge.refunded", &intent, &hold_id);
    let kind_signature = Some(sign(WEBHOOK_SECRET.as_bytes(), now_unix(), &other_kind));
    assert_eq!(
        post_event(&app, &other_kind, kind_signature).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_deployment_without_stripe_has_no_stripe_webhook() {
    let (app, _) = spawn_admin_app_with(|_| {}).await;
    let payload = event(
        "evt_1",
        "payment_intent.succeeded",
        "pi_1",
        &uuid::Uuid::now_v7().to_string(),
    );
    let signature = Some(sign(WEBHOOK_SECRET.as_bytes(), now_unix(), &payload));
    assert_problem(
        post_event(&app, &payload, signature).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}
