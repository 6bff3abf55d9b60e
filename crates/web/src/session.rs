//! Who is using the pages, kept in cookies: the API's access and refresh tokens (HttpOnly, so
//! no script reads them; SameSite=Lax; Secure when the browser came over HTTPS), refreshed
//! through the API when the access token has run out, and a random CSRF token that every form
//! repeats in a hidden field and every POST must match (double submit, compared in constant
//! time). The token's claims are read here only to show the right links; every decision is the
//! API's, which verifies the token.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_shared::token::{AccessClaims, Role};
use cookie::{Cookie, SameSite};
use http::{HeaderValue, Method, header};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::api::{Api, Caller};

const ACCESS: &str = "bo_access";
const REFRESH: &str = "bo_refresh";
const CSRF: &str = "bo_csrf";

/// Seconds before its `exp` at which an access token is refreshed.
const REFRESH_MARGIN: i64 = 10;

/// The person behind a browser: signed in or not, with the cookies to send back.
pub struct Visitor {
    pub caller: Caller,
    /// Who is signed in, as the access token says.
    pub user: Option<SignedIn>,
    /// The CSRF token the page's forms carry.
    pub csrf: String,
    /// `Set-Cookie` values for the answer.
    set_cookies: Vec<String>,
    secure: bool,
}

/// The signed-in user, as their access token says.
#[derive(Debug, Clone, Copy)]
pub struct SignedIn {
    pub id: Uuid,
    pub role: Role,
}

impl SignedIn {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn is_door_staff(&self) -> bool {
        matches!(self.role, Role::Staff | Role::Admin)
    }
}

/// Why a visitor may not go on (the pages answer each: [`crate::page::PageError`]).
#[derive(Debug)]
pub enum Denied {
    /// Not signed in: to the sign-in page, then back to this path.
    SignIn(String),
    /// Signed in without the role the page is for.
    Role,
    /// A form without this browser's CSRF token.
    Csrf,
}

/// A login's or a refresh's answer.
#[derive(Debug, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

impl FromRequestParts<Api> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, Self::Rejection> {
        let mut cookies = std::collections::HashMap::new();
        for value in parts.headers.get_all(header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for cookie in Cookie::split_parse(value).flatten() {
                cookies.insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
        let secure = parts
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
        let mut visitor = Visitor {
            caller: Caller {
                address: parts
                    .extensions
                    .get::<ConnectInfo<std::net::SocketAddr>>()
                    .copied(),
                forwarded_for: parts.headers.get("x-forwarded-for").cloned(),
                token: None,
            },
            user: None,
            csrf: String::new(),
            set_cookies: Vec::new(),
            secure,
        };
        visitor.csrf = match cookies.get(CSRF).filter(|token| token.len() == 43) {
            Some(token) => token.clone(),
            None => {
                let token = random_token();
                visitor.set(CSRF, &token);
                token
            }
        };
        if let Some(access) = cookies.get(ACCESS) {
            visitor.resume(api, access, cookies.get(REFRESH)).await;
        }
        Ok(visitor)
    }
}

impl Visitor {
    /// Takes up the session of the cookies: the access token while it lasts, else a refresh.
    async fn resume(&mut self, api: &Api, access: &str, refresh: Option<&String>) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Some(claims) = claims(access)
            && claims.exp - REFRESH_MARGIN > now
        {
            self.use_token(access.to_owned(), &claims);
            return;
        }
        let Some(refresh) = refresh else {
            self.sign_out();
            return;
        };
        let body = json!({ "refresh_token": refresh });
        match api
            .call::<Tokens>(
                &self.caller,
                Method::POST,
                "/api/v1/auth/refresh",
                Some(&body),
            )
            .await
        {
            Ok(tokens) => self.sign_in(&tokens),
            Err(_) => self.sign_out(),
        }
    }

    fn use_token(&mut self, token: String, claims: &AccessClaims) {
        self.user = Some(SignedIn {
            id: claims.sub,
            role: claims.role,
        });
        self.caller.token = Some(token);
    }

    /// Starts a session with a login's tokens.
    pub fn sign_in(&mut self, tokens: &Tokens) {
        match claims(&tokens.access_token) {
            Some(claims) => {
                self.use_token(tokens.access_token.clone(), &claims);
                self.set(ACCESS, &tokens.access_token);
                self.set(REFRESH, &tokens.refresh_token);
            }
            None => self.sign_out(),
        }
    }

    /// Forgets the session in this browser.
    pub fn sign_out(&mut self) {
        self.user = None;
        self.caller.token = None;
        for name in [ACCESS, REFRESH] {
            let mut cookie = self.cookie(name, "");
            cookie.make_removal();
            self.set_cookies.push(cookie.to_string());
        }
    }

    /// [`Denied::Csrf`] unless `token` is this browser's CSRF token.
    pub fn check_csrf(&self, token: &str) -> Result<(), Denied> {
        let (ours, theirs) = (self.csrf.as_bytes(), token.as_bytes());
        let same = ours.len() == theirs.len()
            && ours
                .iter()
                .zip(theirs)
                .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                == 0;
        if same && !ours.is_empty() {
            Ok(())
        } else {
            Err(Denied::Csrf)
        }
    }

    /// The signed-in user, or a redirect to the sign-in page that comes back to `back`.
    pub fn require(&self, back: &str) -> Result<SignedIn, Denied> {
        self.user.ok_or_else(|| Denied::SignIn(back.to_owned()))
    }

    /// [`Self::require`], then `forbidden` unless the user is an admin (as the API would say).
    pub fn require_admin(&self, back: &str) -> Result<SignedIn, Denied> {
        self.require_role(back, SignedIn::is_admin)
    }

    /// [`Self::require`], then `forbidden` unless the user is door staff or an admin.
    pub fn require_door_staff(&self, back: &str) -> Result<SignedIn, Denied> {
        self.require_role(back, SignedIn::is_door_staff)
    }

    fn require_role(
        &self,
        back: &str,
        allowed: impl Fn(&SignedIn) -> bool,
    ) -> Result<SignedIn, Denied> {
        let user = self.require(back)?;
        if allowed(&user) {
            Ok(user)
        } else {
            Err(Denied::Role)
        }
    }

    /// `response` with this visitor's cookies.
    pub fn respond(self, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        for cookie in self.set_cookies {
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        response
    }

    fn set(&mut self, name: &'static str, value: &str) {
        let cookie = self.cookie(name, value);
        self.set_cookies.push(cookie.to_string());
    }

    fn cookie(&self, name: &'static str, value: &str) -> Cookie<'static> {
        Cookie::build((name, value.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .build()
    }
}

/// The claims of an access token, unverified: what the pages show, never what they allow.
fn claims(token: &str) -> Option<AccessClaims> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// 32 random bytes from the operating system's source, base64url (43 characters).
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}
