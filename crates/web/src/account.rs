//! Signing up, in and out: the API's register, login and logout, with the session kept in
//! cookies ([`crate::session`]).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::api::Api;
use crate::page::{Chrome, PageError, render, see_other};
use crate::session::{Tokens, Visitor};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/signin", get(sign_in_page).post(sign_in))
        .route("/signup", get(sign_up_page).post(sign_up))
        .route("/signout", post(sign_out))
}

#[derive(Debug, Default, Deserialize)]
struct Next {
    #[serde(default)]
    next: String,
}

/// Where to go after signing in: a path of these pages only, never another site.
fn safe_next(next: &str) -> String {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if local {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    chrome: Chrome,
    next: String,
    login: String,
}

async fn sign_in_page(visitor: Visitor, Query(next): Query<Next>) -> Response {
    let page = SignInPage {
        chrome: Chrome::of(&visitor),
        next: safe_next(&next.next),
        login: String::new(),
    };
    render(visitor, StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    csrf: String,
    login: String,
    password: String,
    #[serde(default)]
    next: String,
}

async fn sign_in(
    State(api): State<Api>,
    mut visitor: Visitor,
    Form(form): Form<SignInForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let body = json!({ "login": form.login.trim(), "password": form.password });
    let next = safe_next(&form.next);
    match api
        .call::<Tokens>(
            &visitor.caller,
            Method::POST,
            "/api/v1/auth/login",
            Some(&body),
        )
        .await
    {
        Ok(tokens) => {
            visitor.sign_in(&tokens);
            Ok(see_other(visitor, &next))
        }
        Err(refusal) => {
            let chrome = Chrome::of(&visitor).with_notice(refusal.sentence());
            let page = SignInPage {
                chrome,
                next,
                login: form.login,
            };
            Ok(render(visitor, refusal.status, &page))
        }
    }
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignUpPage {
    chrome: Chrome,
    next: String,
    email: String,
    full_name: String,
}

async fn sign_up_page(visitor: Visitor, Query(next): Query<Next>) -> Response {
    let page = SignUpPage {
        chrome: Chrome::of(&visitor),
        next: safe_next(&next.next),
        email: String::new(),
        full_name: String::new(),
    };
    render(visitor, StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
struct SignUpForm {
    csrf: String,
    email: String,
    full_name: String,
    password: String,
    #[serde(default)]
    next: String,
}

async fn sign_up(
    State(api): State<Api>,
    mut visitor: Visitor,
    Form(form): Form<SignUpForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let body = json!({
        "email": form.email.trim(),
        "full_name": form.full_name.trim(),
        "password": form.password,
    });
    let next = safe_next(&form.next);
    match api
        .call::<Tokens>(
            &visitor.caller,
            Method::POST,
            "/api/v1/auth/register",
            Some(&body),
        )
        .await
    {
        Ok(tokens) => {
            visitor.sign_in(&tokens);
            Ok(see_other(visitor, &next))
        }
        Err(refusal) => {
            let chrome = Chrome::of(&visitor).with_notice(refusal.sentence());
            let page = SignUpPage {
                chrome,
                next,
                email: form.email,
                full_name: form.full_name,
            };
            Ok(render(visitor, refusal.status, &page))
        }
    }
}

#[derive(Debug, Deserialize)]
struct SignOutForm {
    csrf: String,
}

/// Ends the session at the API (its tokens stop working at once) and in this browser.
async fn sign_out(
    State(api): State<Api>,
    mut visitor: Visitor,
    Form(form): Form<SignOutForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    if visitor.user.is_some() {
        // Already ended elsewhere is fine: the browser forgets it all the same.
        let _ = api
            .call::<serde_json::Value>(&visitor.caller, Method::POST, "/api/v1/auth/logout", None)
            .await;
    }
    visitor.sign_out();
    Ok(see_other(visitor, "/"))
}
