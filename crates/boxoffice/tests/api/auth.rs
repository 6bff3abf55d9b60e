//! API contract, "Auth": registration, login, refresh-token rotation with reuse detection,
//! logout, `/me`, and access tokens that must be refused.

use boxoffice_shared::token::{AUDIENCE, AccessClaims, ISSUER, Role};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, assert_problem, error_fields, forge_token_with, now_unix, read_claims, spawn_app,
    unsigned_token,
};

// ---------------------------------------------------------------------------------------------
// Registration

#[tokio::test]
async fn register_returns_201_with_the_user_and_bearer_tokens() {
    let app = spawn_app().await;

    let response = app
        .register(&json!({
            "email": "ada@example.com",
            "password": PASSWORD,
            "full_name": "Ada Lovelace",
            "phone": "+84901234567",
        }))
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let text = response.text().await.unwrap();
    let lower = text.to_lowercase();
    assert!(!lower.contains("password"), "no password field: {text}");
    assert!(!lower.contains("hash"), "no hash field: {text}");
    assert!(!text.contains("$argon2"), "no PHC string: {text}");
    assert!(
        !text.contains(PASSWORD),
        "the password is not echoed: {text}"
    );

    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "the access token is a JWT");
    assert!(refresh.len() >= 32, "the refresh token is long and random");
    assert_ne!(access, refresh);

    let user = body["user"].as_object().unwrap();
    let mut keys: Vec<&str> = user.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created_at", "email", "full_name", "id", "phone", "role"]
    );
    let id = uuid::Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["full_name"], "Ada Lovelace");
    assert_eq!(user["phone"], "+84901234567");
    assert_eq!(user["role"], "customer");
    let created_at = time::OffsetDateTime::parse(
        user["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(created_at.offset(), time::UtcOffset::UTC);
    assert!((created_at.unix_timestamp() - now_unix()).abs() < 60);

    // The token is the user's, and it works.
    let claims = read_claims(access);
    assert_eq!(claims.sub, id);
    assert_eq!(claims.role, Role::Customer);
    assert_eq!(claims.exp - claims.iat, 900);
    let me = app.me_ok(access).await;
    assert_eq!(me, body["user"]);
}

#[tokio::test]
async fn register_without_phone_has_null_phone() {
    let app = spawn_app().await;
    let session = app.register_user("nophone@example.com").await;
    assert!(session.user["phone"].is_null());
    assert_eq!(app.me_ok(&session.access_token).await["phone"], Value::Null);
}

#[tokio::test]
async fn email_is_trimmed_and_case_insensitive() {
    let app = spawn_app().await;
    let session = app.register_user("  Ada.Lovelace@Example.COM ").await;
    assert_eq!(session.user["email"], "ada.lovelace@example.com");

    let duplicate = app
        .register(&json!({
            "email": "ADA.LOVELACE@example.com",
            "password": "another password",
            "full_name": "Someone Else",
        }))
        .await;
    assert_problem(duplicate, StatusCode::CONFLICT, "email_taken").await;

    // Logging in with any spelling of the address reaches the one account.
    let login = app
        .login_session(" ada.lovelace@EXAMPLE.com", PASSWORD)
        .await;
    assert_eq!(login.user_id(), session.user_id());
}

#[tokio::test]
async fn spellings_that_look_alike_are_one_account_or_refused() {
    // docs/security.md, "Email identity". NFC é and ü, and a Unicode domain.
    let app = spawn_app().await;
    let session = app.register_user("ren\u{e9}e@b\u{fc}cher.example").await;
    assert_eq!(session.user["email"], "ren\u{e9}e@xn--bcher-kva.example");
    let same_account = [
        "rene\u{301}e@bu\u{308}cher.example",                  // NFD
        "\u{ff52}\u{ff45}\u{ff4e}\u{e9}e@b\u{fc}cher.example", // fullwidth
        "ren\u{e9}e@xn--bcher-kva.example",                    // punycode
        "REN\u{c9}E@B\u{dc}CHER.EXAMPLE",                      // upper case
    ];
    let refused = [
        "re\u{200b}n\u{e9}e@b\u{fc}cher.example", // zero-width space
        "ren\u{ad}\u{e9}e@b\u{fc}cher.example",   // soft hyphen
        "\u{202e}ren\u{e9}e@b\u{fc}cher.example", // right-to-left override
        "ren\u{e9}\u{435}@b\u{fc}cher.example",   // Cyrillic e at the end
    ];
    for email in same_account.into_iter().chain(refused) {
        let body = json!({"email": email, "password": PASSWORD, "full_name": "Look Alike"});
        let response = app.register(&body).await;
        if same_account.contains(&email) {
            assert_problem(response, StatusCode::CONFLICT, "email_taken").await;
        } else {
            let problem = assert_problem(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            )
            .await;
            assert_eq!(error_fields(&problem), ["email"], "{email:?}");
        }
    }
    for email in &same_account[..3] {
        let login = app.login_session(email, PASSWORD).await;
        assert_eq!(login.user_id(), session.user_id(), "{email:?}");
    }
}

#[tokio::test]
async fn duplicate_phone_is_409_phone_taken() {
    let app = spawn_app().await;
    app.register_session(&json!({
        "email": "first@example.com",
        "password": PASSWORD,
        "full_name": "First",
        "phone": "+84901234567",
    }))
    .await;

    let response = app
        .register(&json!({
            "email": "second@example.com",
            "password": PASSWORD,
            "full_name": "Second",
            "phone": "+84901234567",
        }))
        .await;
    assert_problem(response, StatusCode::CONFLICT, "phone_taken").await;

    // Nothing was created: the second email is still free.
    let response = app.login("second@example.com", PASSWORD).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn invalid_registrations_are_422_naming_the_field() {
    let app = spawn_app().await;
    let valid = json!({
        "email": "valid@example.com",
        "password": PASSWORD,
        "full_name": "Valid Name",
        "phone": "+84901234567",
    });
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases = [
        ("bad email", with("email", json!("not-an-email")), "email"),
        (
            "email without domain",
            with("email", json!("ada@")),
            "email",
        ),
        (
            "7-char password",
            with("password", json!("1234567")),
            "password",
        ),
        (
            "129-char password",
            with("password", json!("x".repeat(129))),
            "password",
        ),
        (
            "phone without +",
            with("phone", json!("84901234567")),
            "phone",
        ),
        ("phone too short", with("phone", json!("+1234567")), "phone"),
        (
            "phone with letters",
            with("phone", json!("+84abc34567")),
            "phone",
        ),
        ("empty name", with("full_name", json!("   ")), "full_name"),
        ("missing email", without("email"), "email"),
        ("missing password", without("password"), "password"),
        ("missing full_name", without("full_name"), "full_name"),
        ("unknown field", with("role", json!("admin")), "role"),
        ("wrong type", with("password", json!(12345678)), "password"),
    ];
    for (case, body, field) in cases {
        let response = app.register(&body).await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        let fields = error_fields(&problem);
        assert!(
            fields.iter().any(|f| f == field),
            "{case}: expected an error on `{field}`, got {fields:?}"
        );
    }

    // The boundaries are accepted: 8 and 128 characters.
    for (email, password) in [
        ("eight@example.com", "x".repeat(8)),
        ("onetwentyeight@example.com", "y".repeat(128)),
    ] {
        let session = app
            .register_session(&json!({ "email": email, "password": password, "full_name": "Edge" }))
            .await;
        let login = app.login_session(email, &password).await;
        assert_eq!(login.user_id(), session.user_id());
    }

    // None of the rejected bodies created the account.
    let response = app.login("valid@example.com", PASSWORD).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn several_invalid_fields_are_all_listed() {
    let app = spawn_app().await;
    let response = app
        .register(&json!({
            "email": "nope",
            "password": "short",
            "full_name": "Ok",
            "phone": "12",
        }))
        .await;
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(fields, ["email", "password", "phone"]);
}

// ---------------------------------------------------------------------------------------------
// Login

#[tokio::test]
async fn login_by_email_and_by_phone() {
    let app = spawn_app().await;
    let registered = app
        .register_session(&json!({
            "email": "grace@example.com",
            "password": PASSWORD,
            "full_name": "Grace Hopper",
            "phone": "+14155550123",
        }))
        .await;

    for login in ["grace@example.com", "+14155550123"] {
        let response = app.login(login, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK, "login as {login}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert_eq!(body["user"], registered.user);
        assert!(!body.to_string().to_lowercase().contains("password"));
        let token = body["access_token"].as_str().unwrap();
        assert_ne!(
            token, registered.access_token,
            "each login is a new session"
        );
        assert_eq!(app.me_ok(token).await["id"], registered.user["id"]);
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_login_get_the_same_answer() {
    let app = spawn_app().await;
    app.register_user("known@example.com").await;

    let wrong_password = app.login("known@example.com", "not the password").await;
    let wrong = assert_problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown_login = app.login("unknown@example.com", PASSWORD).await;
    let unknown = assert_problem(
        unknown_login,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown_phone = app.login("+19995550000", PASSWORD).await;
    let phone = assert_problem(
        unknown_phone,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let garbage = app.login("neither", PASSWORD).await;
    let garbage = assert_problem(garbage, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    assert_eq!(wrong, unknown, "the bodies must not tell the cases apart");
    assert_eq!(wrong, phone);
    assert_eq!(wrong, garbage);
}

// ---------------------------------------------------------------------------------------------
// Refresh

#[tokio::test]
async fn refresh_rotates_tokens() {
    let app = spawn_app().await;
    let first = app.register_user("rotate@example.com").await;

    let response = app.refresh(&first.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["id"], first.user["id"]);
    let second_access = body["access_token"].as_str().unwrap().to_owned();
    let second_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first.refresh_token);
    assert_ne!(
        second_access, first.access_token,
        "refresh must issue a new access token, even within the second the old one was issued"
    );
    // Still the same session.
    assert_eq!(
        read_claims(&second_access).sid,
        read_claims(&first.access_token).sid
    );
    assert_eq!(app.me_ok(&second_access).await["id"], first.user["id"]);

    // The new refresh token works in turn.
    let response = app.refresh(&second_refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    let third: Value = response.json().await.unwrap();
    assert_ne!(third["refresh_token"], second_refresh.as_str());
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_the_session() {
    let app = spawn_app().await;
    let first = app.register_user("reuse@example.com").await;
    let other_session = app.login_session("reuse@example.com", PASSWORD).await;

    let response = app.refresh(&first.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let newest_access = body["access_token"].as_str().unwrap().to_owned();
    let newest_refresh = body["refresh_token"].as_str().unwrap().to_owned();

    // The spent token comes back: whoever holds it is not the rightful owner.
    let reuse = app.refresh(&first.refresh_token).await;
    assert_problem(reuse, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;

    // The whole session is gone: the newest refresh token and its access tokens.
    let response = app.refresh(&newest_refresh).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    let response = app.me(&newest_access).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let response = app.me(&first.access_token).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // Another session of the same user is untouched.
    app.me_ok(&other_session.access_token).await;
    let response = app.refresh(&other_session.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn garbage_refresh_token_is_401_and_revokes_nothing() {
    let app = spawn_app().await;
    let session = app.register_user("garbage@example.com").await;

    for garbage in [
        "garbage",
        &"A".repeat(43),
        &format!("{}x", session.refresh_token),
        &session.access_token,
    ] {
        let response = app.refresh(garbage).await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    }

    app.me_ok(&session.access_token).await;
    let response = app.refresh(&session.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn refresh_request_must_name_the_token() {
    let app = spawn_app().await;
    let response = app.post_json("/api/v1/auth/refresh", &json!({})).await;
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["refresh_token"]);
}

// ---------------------------------------------------------------------------------------------
// Logout

#[tokio::test]
async fn logout_ends_only_that_session() {
    let app = spawn_app().await;
    let session = app.register_user("logout@example.com").await;
    let other = app.login_session("logout@example.com", PASSWORD).await;

    let response = app.logout(&session.access_token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.unwrap().is_empty());

    let response = app.me(&session.access_token).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let response = app.refresh(&session.refresh_token).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    let response = app.logout(&session.access_token).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // The same user's other session goes on.
    assert_eq!(
        app.me_ok(&other.access_token).await["id"],
        session.user["id"]
    );
    let response = app.refresh(&other.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_needs_a_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

// ---------------------------------------------------------------------------------------------
// /me

#[tokio::test]
async fn get_me_returns_the_callers_account() {
    let app = spawn_app().await;
    let ada = app.register_user("ada@example.com").await;
    let bob = app.register_user("bob@example.com").await;

    let me = app.me_ok(&ada.access_token).await;
    assert_eq!(me, ada.user);
    assert_eq!(me["role"], "customer");
    assert!(!me.to_string().to_lowercase().contains("password"));
    assert_eq!(app.me_ok(&bob.access_token).await, bob.user);
}

#[tokio::test]
async fn patch_me_changes_name_and_phone() {
    let app = spawn_app().await;
    let session = app.register_user("patch@example.com").await;
    let token = &session.access_token;

    let response = app
        .patch_me(token, &json!({ "full_name": "  Ada King  " }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["full_name"], "Ada King");
    assert!(body["phone"].is_null());
    assert_eq!(body["email"], "patch@example.com");
    assert_eq!(body["id"], session.user["id"]);

    let response = app
        .patch_me(token, &json!({ "phone": "+84901234567" }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["phone"], "+84901234567");
    assert_eq!(body["full_name"], "Ada King", "an absent field is kept");
    assert_eq!(app.me_ok(token).await["phone"], "+84901234567");
    // The new phone number logs in.
    let login = app.login_session("+84901234567", PASSWORD).await;
    assert_eq!(login.user_id(), session.user_id());

    // An empty patch changes nothing.
    let response = app.patch_me(token, &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["phone"], "+84901234567");
    assert_eq!(body["full_name"], "Ada King");

    let response = app.patch_me(token, &json!({ "phone": null })).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["phone"].is_null());
    assert_eq!(body["full_name"], "Ada King");
    assert!(app.me_ok(token).await["phone"].is_null());
    let response = app.login("+84901234567", PASSWORD).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn patch_me_with_another_users_phone_is_409() {
    let app = spawn_app().await;
    app.register_session(&json!({
        "email": "owner@example.com",
        "password": PASSWORD,
        "full_name": "Owner",
        "phone": "+84901234567",
    }))
    .await;
    let other = app.register_user("other@example.com").await;

    let response = app
        .patch_me(&other.access_token, &json!({ "phone": "+84901234567" }))
        .await;
    assert_problem(response, StatusCode::CONFLICT, "phone_taken").await;
    assert!(app.me_ok(&other.access_token).await["phone"].is_null());
    // The owner still logs in with it.
    let owner = app.login_session("+84901234567", PASSWORD).await;
    assert_eq!(owner.user["email"], "owner@example.com");
}

#[tokio::test]
async fn patch_me_rejects_invalid_fields() {
    let app = spawn_app().await;
    let session = app.register_user("invalid@example.com").await;
    let token = &session.access_token;

    let cases = [
        (json!({ "full_name": "" }), "full_name"),
        (json!({ "full_name": "x".repeat(201) }), "full_name"),
        (json!({ "full_name": "bad\u{0007}name" }), "full_name"),
        (json!({ "phone": "not a phone" }), "phone"),
        (json!({ "email": "new@example.com" }), "email"),
        (json!({ "role": "admin" }), "role"),
    ];
    for (body, field) in cases {
        let response = app.patch_me(token, &body).await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error_fields(&problem), [field], "{body}");
    }
    // Nothing changed.
    assert_eq!(app.me_ok(token).await, session.user);
}

#[tokio::test]
async fn patch_me_needs_a_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .patch(app.url("/api/v1/me"))
        .json(&json!({ "full_name": "Nobody" }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

#[tokio::test]
async fn me_without_a_valid_bearer_token_is_401_with_www_authenticate() {
    let app = spawn_app().await;
    let session = app.register_user("headers@example.com").await;

    let requests = [
        ("no header", None),
        (
            "Basic scheme",
            Some("Basic aGVhZGVyc0BleGFtcGxlLmNvbTpwYXNzd29yZA==".to_owned()),
        ),
        ("garbage token", Some("Bearer garbage".to_owned())),
        ("empty bearer", Some("Bearer ".to_owned())),
        ("scheme only", Some("Bearer".to_owned())),
        ("token without scheme", Some(session.access_token.clone())),
        (
            "token with a flipped signature",
            Some(format!("Bearer {}", flip_last_char(&session.access_token))),
        ),
    ];
    for (case, authorization) in requests {
        let mut request = app.client.get(app.url("/api/v1/me"));
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = request.send().await.unwrap();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|value| value.to_str().unwrap().to_owned());
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        assert!(
            challenge
                .as_deref()
                .is_some_and(|c| c.starts_with("Bearer")),
            "{case}: WWW-Authenticate is {challenge:?}"
        );
    }

    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let response = app
        .client
        .get(app.url("/api/v1/me"))
        .header(
            header::AUTHORIZATION,
            format!("bearer {}", session.access_token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

fn flip_last_char(token: &str) -> String {
    let mut token = token.to_owned();
    let last = token.pop().unwrap();
    token.push(if last == 'A' { 'B' } else { 'A' });
    token
}

// ---------------------------------------------------------------------------------------------
// Forged and dead access tokens

/// Claims that the test server would accept, for the account behind `access_token`.
fn valid_claims(access_token: &str) -> AccessClaims {
    let claims = read_claims(access_token);
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.aud, AUDIENCE);
    claims
}

#[tokio::test]
async fn a_forged_token_with_the_right_secret_is_accepted() {
    // The control for the tests below: forging works, so each rejection is about one defect.
    let app = spawn_app().await;
    let session = app.register_user("control@example.com").await;
    let now = now_unix();
    let token = app.forge_token(&AccessClaims {
        iat: now,
        exp: now + 600,
        ..valid_claims(&session.access_token)
    });
    assert_eq!(app.me_ok(&token).await["id"], session.user["id"]);
}

#[tokio::test]
async fn forged_tokens_are_401_unauthenticated() {
    let app = spawn_app().await;
    let session = app.register_user("forged@example.com").await;
    let now = now_unix();
    let base = AccessClaims {
        iat: now,
        exp: now + 600,
        ..valid_claims(&session.access_token)
    };

    let cases = [
        (
            "signed with another secret",
            forge_token_with(&base, b"another-secret-of-at-least-32-bytes!!"),
        ),
        ("alg none", unsigned_token(&base)),
        (
            "alg none, admin",
            unsigned_token(&AccessClaims {
                role: Role::Admin,
                ..base.clone()
            }),
        ),
        (
            "expired 120 s ago",
            app.forge_token(&AccessClaims {
                iat: now - 1020,
                exp: now - 120,
                ..base.clone()
            }),
        ),
        (
            "wrong audience",
            app.forge_token(&AccessClaims {
                aud: "some-other-api".to_owned(),
                ..base.clone()
            }),
        ),
        (
            "wrong issuer",
            app.forge_token(&AccessClaims {
                iss: "not-boxoffice".to_owned(),
                ..base.clone()
            }),
        ),
    ];
    for (case, token) in cases {
        let response = app.me(&token).await;
        let status = response.status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }

    // The genuine token still works: none of this revoked anything.
    app.me_ok(&session.access_token).await;
}

#[tokio::test]
async fn a_valid_token_of_a_logged_out_session_is_401() {
    let app = spawn_app().await;
    let session = app.register_user("dead@example.com").await;
    let now = now_unix();
    // A fresh, correctly signed token for the same session, minted after the logout.
    let claims = AccessClaims {
        iat: now,
        exp: now + 600,
        ..valid_claims(&session.access_token)
    };

    let response = app.logout(&session.access_token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let response = app.me(&app.forge_token(&claims)).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}
