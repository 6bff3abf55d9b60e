//! API contract, "Roles": admins list users and change their roles; a promotion shows in the
//! user's next token, a demotion takes the old rights away at once.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, PASSWORD, assert_problem, concert_body, error_fields, spawn_admin_app,
};

/// The emails of a page of `GET /api/v1/admin/users…`.
fn emails(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["email"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn admins_list_users_newest_first_with_search_role_and_pages() {
    let (app, admin) = spawn_admin_app().await;
    for email in ["ada@example.com", "grace@example.com", "alan@example.org"] {
        app.register_user(email).await;
    }
    let list = async |query: &str| -> Value {
        let response = app
            .get_with_token(&format!("/api/v1/admin/users{query}"), &admin)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        response.json().await.unwrap()
    };
    let all = list("").await;
    assert_eq!(
        emails(&all),
        [
            "alan@example.org",
            "grace@example.com",
            "ada@example.com",
            ADMIN_EMAIL
        ]
    );
    assert!(all["items"][0].get("password_hash").is_none());
    let first = list("?limit=2").await;
    assert_eq!(emails(&first), ["alan@example.org", "grace@example.com"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = list(&format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(emails(&second), ["ada@example.com", ADMIN_EMAIL]);
    assert_eq!(second["next_cursor"], Value::Null);
    assert_eq!(emails(&list("?q=GRACE").await), ["grace@example.com"]);
    assert_eq!(emails(&list("?role=admin").await), [ADMIN_EMAIL]);
    assert!(emails(&list("?role=staff").await).is_empty());
    // An empty value is no filter, as for `limit=` and `cursor=`.
    assert_eq!(emails(&list("?role=&limit=").await).len(), 4);

    for bad in ["?role=owner", "?limit=0", "?cursor=nonsense", "?sort=name"] {
        let response = app
            .get_with_token(&format!("/api/v1/admin/users{bad}"), &admin)
            .await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let fan = app.register_user("fan@example.com").await;
    let response = app
        .get_with_token("/api/v1/admin/users", &fan.access_token)
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.get("/api/v1/admin/users").await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

#[tokio::test]
async fn a_promotion_shows_in_the_next_token_and_a_demotion_takes_the_rights_away_at_once() {
    let (app, admin) = spawn_admin_app().await;
    let user = app.register_user("door@example.com").await;
    let path = format!("/api/v1/admin/users/{}", user.user_id());

    // Promotion to staff: the answer says so, and so does the next token.
    let response = app
        .patch_json_with_token(&path, &admin, &json!({ "role": "staff" }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["role"], "staff");
    let refreshed = app.refresh(&user.refresh_token).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let refreshed: Value = refreshed.json().await.unwrap();
    assert_eq!(refreshed["user"]["role"], "staff");

    // Promotion to admin, then a demotion: the admin's tokens stop working at once.
    app.patch_json_with_token(&path, &admin, &json!({ "role": "admin" }))
        .await;
    let promoted = app.login_session("door@example.com", PASSWORD).await;
    assert_eq!(promoted.user["role"], "admin");
    let created = app
        .post_json_with_token(
            "/api/v1/concerts",
            &promoted.access_token,
            &concert_body("Show", 3600, 5),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let demoted = app
        .patch_json_with_token(&path, &admin, &json!({ "role": "customer" }))
        .await;
    assert_eq!(demoted.status(), StatusCode::OK);
    let refused = app
        .post_json_with_token(
            "/api/v1/concerts",
            &promoted.access_token,
            &concert_body("Show", 3600, 5),
        )
        .await;
    assert_problem(refused, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let refresh = app.refresh(&promoted.refresh_token).await;
    assert_problem(refresh, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    // Signing in again gives a customer's token.
    let again = app.login_session("door@example.com", PASSWORD).await;
    assert_eq!(again.user["role"], "customer");
    let refused = app
        .post_json_with_token(
            "/api/v1/concerts",
            &again.access_token,
            &concert_body("Show", 3600, 5),
        )
        .await;
    assert_problem(refused, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn role_changes_are_refused_for_unknown_users_bad_roles_non_admins_and_the_last_word_on_oneself()
 {
    let (app, admin) = spawn_admin_app().await;
    let me: Value = app.me_ok(&admin).await;
    let own = format!("/api/v1/admin/users/{}", me["id"].as_str().unwrap());
    let response = app
        .patch_json_with_token(&own, &admin, &json!({ "role": "staff" }))
        .await;
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["role"]);
    // Staying admin is no change and no error.
    let response = app
        .patch_json_with_token(&own, &admin, &json!({ "role": "admin" }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    for path in [
        format!("/api/v1/admin/users/{}", uuid::Uuid::now_v7()),
        "/api/v1/admin/users/not-a-uuid".to_owned(),
    ] {
        let response = app
            .patch_json_with_token(&path, &admin, &json!({ "role": "staff" }))
            .await;
        assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let user = app.register_user("someone@example.com").await;
    let path = format!("/api/v1/admin/users/{}", user.user_id());
    for body in [
        json!({ "role": "owner" }),
        json!({}),
        json!({ "role": "staff", "extra": 1 }),
    ] {
        let response = app.patch_json_with_token(&path, &admin, &body).await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let response = app
        .patch_json_with_token(&path, &user.access_token, &json!({ "role": "admin" }))
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(app.me_ok(&user.access_token).await["role"], "customer");
}

#[tokio::test]
async fn an_admin_reads_one_user_by_id_and_nobody_else_may() {
    let (app, admin) = spawn_admin_app().await;
    let fan = app.register_user("one@example.com").await;
    let id = fan.user["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/admin/users/{id}");

    let response = app.get_with_token(&path, &admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["id"], id.as_str());
    assert_eq!(user["email"], "one@example.com");
    assert_eq!(user["role"], "customer");
    assert!(user.get("password_hash").is_none());

    for unknown in ["01900000-0000-7000-8000-000000000000", "not-a-uuid"] {
        let response = app
            .get_with_token(&format!("/api/v1/admin/users/{unknown}"), &admin)
            .await;
        assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let response = app.get_with_token(&path, &fan.access_token).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.get(&path).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}
