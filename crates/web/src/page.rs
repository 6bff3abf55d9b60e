//! What every page shares: the layout's data ([`Chrome`]), how a page is answered, and how a
//! refusal becomes a page ([`PageError`]).

use askama::Template;
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::StatusCode;

use crate::api::Refusal;
use crate::session::{Denied, SignedIn, Visitor};

/// The layout's data: who is signed in (for the links), the CSRF token (for the sign-out
/// form), and a message to show above the page.
pub struct Chrome {
    pub user: Option<SignedIn>,
    pub csrf: String,
    pub notice: Option<String>,
    /// Whether the account links are shown: not on a page that does not know the visitor.
    pub account_links: bool,
}

impl Chrome {
    pub fn of(visitor: &Visitor) -> Self {
        Self {
            user: visitor.user,
            csrf: visitor.csrf.clone(),
            notice: None,
            account_links: true,
        }
    }

    /// The same chrome with a message above the page (`None`: none).
    pub fn with_notice(mut self, notice: impl Into<Option<String>>) -> Self {
        self.notice = notice.into();
        self
    }

    pub fn signed_in(&self) -> bool {
        self.user.is_some()
    }

    pub fn is_admin(&self) -> bool {
        self.user.is_some_and(|user| user.is_admin())
    }

    pub fn is_door_staff(&self) -> bool {
        self.user.is_some_and(|user| user.is_door_staff())
    }
}

/// Renders `template` as the answer, with the visitor's cookies.
pub fn render(visitor: Visitor, status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => visitor.respond((status, Html(html))),
        Err(error) => {
            tracing::error!(%error, "a page could not be rendered");
            visitor.respond(PageError::Broken)
        }
    }
}

/// A `303 See Other` to `to`, with the visitor's cookies (after a form's POST).
pub fn see_other(visitor: Visitor, to: &str) -> Response {
    visitor.respond(Redirect::to(to))
}

/// A form that carries nothing but this browser's CSRF token (a button: cancel, delete, …).
#[derive(Debug, serde::Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: to the sign-in page, then back to this path.
    SignIn(String),
    /// A form without this browser's CSRF token.
    Csrf,
    /// A form that could not be read.
    BadForm,
    /// The API refused.
    Refused(Refusal),
    /// A page failed to render.
    Broken,
}

impl From<Denied> for PageError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::SignIn(back) => Self::SignIn(back),
            // Said as the API says it to anyone without the role.
            Denied::Role => Self::Refused(Refusal::forbidden()),
            Denied::Csrf => Self::Csrf,
        }
    }
}

impl From<Refusal> for PageError {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

/// A page that only says what went wrong.
#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage<'a> {
    chrome: Chrome,
    title: &'a str,
    sentence: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, sentence) = match self {
            PageError::SignIn(back) => {
                let to = format!("/signin?next={}", encode(&back));
                return Redirect::to(&to).into_response();
            }
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form has expired. Go back, reload the page and try again.".to_owned(),
            ),
            PageError::BadForm => (
                StatusCode::BAD_REQUEST,
                "Form not understood",
                "This form could not be read. Go back, reload the page and try again.".to_owned(),
            ),
            PageError::Refused(refusal) if refusal.needs_sign_in() => {
                return Redirect::to("/signin").into_response();
            }
            PageError::Refused(refusal) => (refusal.status, "Sorry", refusal.sentence()),
            PageError::Broken => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sorry",
                "Something went wrong on our side. Please try again.".to_owned(),
            ),
        };
        let page = ProblemPage {
            chrome: Chrome {
                user: None,
                csrf: String::new(),
                notice: None,
                account_links: false,
            },
            title,
            sentence,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, sentence_only(&page.sentence)).into_response(),
        }
    }
}

fn sentence_only(sentence: &str) -> String {
    sentence.to_owned()
}

/// `text` percent-encoded for a query string.
pub fn encode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|encoded| encoded.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}
