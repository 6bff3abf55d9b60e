//! The JSON API as the pages call it: in process, through the API's own router, as the
//! browser's client — its address (for rate limits), its bearer token — so that a page is held
//! to exactly the rules a JSON client is.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use boxoffice_shared::problem::ErrorCode;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;

/// The biggest API answer a page reads (a page of concerts, a QR code).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The API's router, called by the pages.
#[derive(Clone)]
pub struct Api {
    router: Router,
}

/// Who a call is made for: the browser's address (and the `X-Forwarded-For` it came with,
/// which the API heeds only from a trusted proxy, as for any request) and, once signed in, its
/// access token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub address: Option<ConnectInfo<SocketAddr>>,
    pub forwarded_for: Option<http::HeaderValue>,
    pub token: Option<String>,
}

/// What the API refused, as a page says it.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    /// The problem's `code` (`sold_out`, …); empty when the answer was not a problem.
    pub code: String,
    /// The problem's `detail`.
    pub detail: String,
    /// Per-field messages of a `validation_failed`.
    pub fields: Vec<(String, String)>,
    /// The whole problem, for the members some codes add (`checked_in_at`).
    pub extra: Value,
}

impl Refusal {
    /// A plain sentence for a fan, an organiser or door staff.
    pub fn sentence(&self) -> String {
        let plain = match ErrorCode::parse(&self.code) {
            Some(code) => sentence(code),
            None => "",
        };
        if plain.is_empty() {
            if self.detail.is_empty() {
                return "Something went wrong. Please try again.".into();
            }
            return self.detail.clone();
        }
        if self.fields.is_empty() {
            return plain.into();
        }
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(field, message)| format!("{}: {message}", field.replace('_', " ")))
            .collect();
        format!("{plain} {}", fields.join("; "))
    }

    /// The caller is not (or no longer) signed in.
    pub fn needs_sign_in(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
    }

    fn local(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            code: String::new(),
            detail: detail.into(),
            fields: Vec::new(),
            extra: Value::Null,
        }
    }

    /// The API's own refusal of a page for someone without the role, said before asking it.
    pub fn forbidden() -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: ErrorCode::Forbidden.as_str().to_owned(),
            detail: String::new(),
            fields: Vec::new(),
            extra: Value::Null,
        }
    }
}

/// What a problem `code` means to a person using the pages.
fn sentence(code: ErrorCode) -> &'static str {
    use ErrorCode::*;
    match code {
        Unauthenticated | InvalidRefreshToken => "Please sign in first.",
        InvalidCredentials => "That email and password do not match an account.",
        Forbidden => "This page is for organisers or door staff only.",
        ConcertNotFound => "There is no such concert.",
        SeatTypeNotFound => "This concert has no such ticket type.",
        BookingNotFound => "There is no such ticket.",
        HoldNotFound => "There is no such reservation.",
        WaitlistEntryNotFound => "There is no such waiting-list place.",
        WebhookNotFound => "There is no such webhook.",
        NotFound | MethodNotAllowed => "There is nothing here.",
        EmailTaken => "An account with this email already exists. Sign in instead.",
        PhoneTaken => "An account with this phone number already exists.",
        SoldOut => "Sold out: every ticket of this type is taken or reserved.",
        AlreadyBooked => {
            "You already have a ticket or a reservation for this concert (one per person)."
        }
        BookingClosed => "Sales for this concert are closed.",
        SalesNotOpen => "Sales for this concert have not opened yet.",
        AlreadyCancelled => "This ticket is already cancelled.",
        HoldNotActive => "This reservation is no longer active.",
        HoldExpired => "Your reservation ran out before the payment: the ticket went back on sale.",
        PaymentDeclined => {
            "The card was declined. Try another card before the reservation runs out."
        }
        PaymentRequired => "This ticket must be paid for at checkout.",
        AlreadyCheckedIn => "Already checked in.",
        TicketCancelled => "This ticket was cancelled.",
        InvalidTicket => "Not a valid ticket for this concert.",
        SeatsAvailable => "Tickets of this type are still on sale: buy one instead.",
        AlreadyWaitlisted => "You are already on the waiting list for this concert.",
        AdmissionRequired => {
            "This concert sells through its waiting room: join the queue and wait for your turn."
        }
        ValidationFailed => "Please check the form.",
        RateLimited => "Too many attempts. Please wait a moment and try again.",
        Unavailable | Internal => "Something went wrong on our side. Please try again.",
        MalformedBody | BodyTooLarge | UnsupportedMediaType | IdempotencyKeyReused
        | InvalidSignature => "",
    }
}

impl Api {
    pub fn new(router: Router) -> Self {
        Self { router }
    }

    /// `GET path` as `caller`, read as `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        path: &str,
    ) -> Result<T, Refusal> {
        self.call(caller, Method::GET, path, None).await
    }

    /// `method path` with a JSON body (or none) as `caller`, read as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, Refusal> {
        self.call_with(caller, method, path, body, &[]).await
    }

    /// [`Self::call`] with more headers (a hold's `Boxoffice-Admission`).
    pub async fn call_with<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<T, Refusal> {
        let (status, bytes) = self.send(caller, method, path, body, headers).await?;
        let bytes = if bytes.is_empty() && status == StatusCode::NO_CONTENT {
            b"null".as_slice().into()
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|error| {
            Refusal::local(format!("an answer of the API could not be read: {error}"))
        })
    }

    /// `GET path` as `caller`, as text (an SVG).
    pub async fn text(&self, caller: &Caller, path: &str) -> Result<String, Refusal> {
        let (_, bytes) = self.send(caller, Method::GET, path, None, &[]).await?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Refusal::local("an answer was not text"))
    }

    /// `GET path` as `caller`, its body left unread: a stream of server-sent events, which runs
    /// for as long as the body is read.
    pub async fn stream(&self, caller: &Caller, path: &str) -> Result<Body, Refusal> {
        let response = self.respond(caller, Method::GET, path, None, &[]).await?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            let bytes = read(response.into_body()).await?;
            return Err(refusal(status, &bytes));
        }
        Ok(response.into_body())
    }

    /// Sends one request through the API's router and reads the answer; a status of 400 or more
    /// is a [`Refusal`].
    async fn send(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<(StatusCode, bytes::Bytes), Refusal> {
        let response = self.respond(caller, method, path, body, headers).await?;
        let status = response.status();
        let bytes = read(response.into_body()).await?;
        if status.is_client_error() || status.is_server_error() {
            return Err(refusal(status, &bytes));
        }
        Ok((status, bytes))
    }

    /// Sends one request through the API's router: its answer, whatever the status.
    async fn respond(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Response<Body>, Refusal> {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(token) = &caller.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(forwarded) = &caller.forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request
            .body(body)
            .map_err(|error| Refusal::local(error.to_string()))?;
        if let Some(address) = caller.address {
            request.extensions_mut().insert(address);
        }
        self.router
            .clone()
            .oneshot(request)
            .await
            .map_err(|error| Refusal::local(error.to_string()))
    }
}

/// An answer's body, up to [`MAX_ANSWER_BYTES`].
async fn read(body: Body) -> Result<bytes::Bytes, Refusal> {
    Ok(http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|error| Refusal::local(error.to_string()))?
        .to_bytes())
}

/// Reads a problem+json answer.
fn refusal(status: StatusCode, bytes: &[u8]) -> Refusal {
    let problem: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let text = |key: &str| problem[key].as_str().unwrap_or_default().to_owned();
    let fields = problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| {
                    (
                        error["field"].as_str().unwrap_or_default().to_owned(),
                        error["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Refusal {
        status,
        code: text("code"),
        detail: text("detail"),
        fields,
        extra: problem,
    }
}
