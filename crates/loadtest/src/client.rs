//! The HTTP client of the load generator: one keep-alive HTTP/1.1 connection per worker.
//!
//! The generator shares a small machine with the server it measures, so every request must be
//! cheap. Each worker owns one [`Conn`] (a `hyper` 1.x `client::conn::http1` connection over
//! `TcpStream`), which gives a pool of exactly `--concurrency` connections by construction,
//! without the locking and the speculative extra connects of a shared pool. Bodies are
//! pre-serialized [`Bytes`] (cloning them is a reference-count bump), `Authorization` values
//! are built once per user, and response bodies are only looked at to read the `code` of a
//! problem or the `id` of a 201 ([`Answer`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

/// The server under test: where to connect and what to say in `Host`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The address every connection goes to (resolved once, before the run).
    pub addr: SocketAddr,
    /// `host[:port]` as given in `--target`.
    pub host: HeaderValue,
    /// `http://host[:port]` as given, for the report.
    pub base: String,
    /// How long one request may take before it counts as a transport error.
    pub timeout: Duration,
}

impl Target {
    /// Parses `--target` (`http://host[:port]`, no path) and resolves the host. Unless
    /// `allow_remote`, every address the name resolves to must be a loopback address: a load
    /// test is traffic that nobody else should receive by accident.
    pub async fn resolve(url: &str, allow_remote: bool, timeout: Duration) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--target {url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => anyhow::bail!(
                "--target {url}: https is not supported; the generator speaks plain HTTP/1.1 and \
                 is meant to run next to the server (or its TLS-terminating proxy's backend)"
            ),
            _ => anyhow::bail!("--target must look like http://127.0.0.1:8080 (got {url:?})"),
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            anyhow::bail!("--target is the server's base URL, without a path (got {url:?})");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--target {url:?} names no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .collect();
        let addr = *addrs
            .first()
            .with_context(|| format!("{host} resolves to no address"))?;
        if let Some(remote) = addrs.iter().find(|addr| !addr.ip().is_loopback())
            && !allow_remote
        {
            anyhow::bail!(
                "--target {url} resolves to {remote}, which is not a loopback address; \
                 pass --allow-remote to load-test another machine you are allowed to"
            );
        }
        Ok(Self {
            addr,
            host: HeaderValue::from_str(authority.as_str())?,
            base: format!("http://{authority}"),
            timeout,
        })
    }
}

/// What one request came back with. Transport failures (connect, reset, timeout) are answers
/// too: the report counts them with the 5xx as server errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The server answered with `status`.
    Http {
        status: StatusCode,
        /// `code` of a problem+json answer (any status >= 400 whose body has one).
        code: Option<Arc<str>>,
        /// `id` of a 201 answer, when the caller asked for it.
        id: Option<String>,
    },
    /// No answer: the connection failed or the request timed out.
    Transport(TransportError),
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportError {
    Connect,
    Io,
    Timeout,
}

impl TransportError {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportError::Connect => "connect",
            TransportError::Io => "io",
            TransportError::Timeout => "timeout",
        }
    }
}

impl Answer {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Answer::Http { status, .. } => Some(*status),
            Answer::Transport(_) => None,
        }
    }

    /// The problem `code`, if the answer had one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Answer::Http { code, .. } => code.as_deref(),
            Answer::Transport(_) => None,
        }
    }

    /// A 5xx or no answer at all: the outcome of the request is unknown.
    pub fn is_server_error(&self) -> bool {
        match self {
            Answer::Http { status, .. } => status.is_server_error(),
            Answer::Transport(_) => true,
        }
    }

    /// True when this is `status` with problem `code`.
    pub fn is(&self, status: StatusCode, code: &str) -> bool {
        self.status() == Some(status) && self.code() == Some(code)
    }
}

/// The few members of a response body the hot path reads.
#[derive(Deserialize)]
struct Problem<'a> {
    #[serde(borrow)]
    code: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Created<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// Interns problem codes so that counting outcomes does not allocate per request.
fn intern(code: &str) -> Arc<str> {
    const KNOWN: &[&str] = &[
        "sold_out",
        "already_booked",
        "already_cancelled",
        "booking_closed",
        "sales_not_open",
        "payment_declined",
        "hold_expired",
        "hold_not_active",
        "unauthenticated",
        "rate_limited",
        "unavailable",
        "admission_required",
    ];
    thread_local! {
        static CODES: Vec<Arc<str>> = KNOWN.iter().map(|code| Arc::from(*code)).collect();
    }
    CODES.with(|codes| {
        codes
            .iter()
            .find(|known| &***known == code)
            .cloned()
            .unwrap_or_else(|| Arc::from(code))
    })
}

/// Reads the parts of `body` the report needs: the `code` of an error, the `id` of a 201.
pub fn classify(status: StatusCode, body: &[u8], want_id: bool) -> Answer {
    let mut code = None;
    let mut id = None;
    if status.as_u16() >= 400 {
        if let Ok(Problem { code: Some(found) }) = serde_json::from_slice::<Problem>(body) {
            code = Some(intern(&found));
        }
    } else if want_id
        && status == StatusCode::CREATED
        && let Ok(created) = serde_json::from_slice::<Created>(body)
    {
        id = Some(created.id.into_owned());
    }
    Answer::Http { status, code, id }
}

/// A request ready to send: method, path, optional bearer value and pre-serialized JSON body.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: Uri,
    pub auth: Option<HeaderValue>,
    /// One more header, when the call needs one (a booking's `Boxoffice-Admission`).
    pub header: Option<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
}

impl Call {
    pub fn get(path: &str) -> anyhow::Result<Self> {
        Ok(Self {
            method: Method::GET,
            path: path.parse().with_context(|| format!("path {path:?}"))?,
            auth: None,
            header: None,
            body: None,
        })
    }

    pub fn post(path: &str, body: Option<Bytes>) -> anyhow::Result<Self> {
        Ok(Self {
            method: Method::POST,
            body,
            ..Self::get(path)?
        })
    }

    pub fn patch(path: &str, body: Option<Bytes>) -> anyhow::Result<Self> {
        Ok(Self {
            method: Method::PATCH,
            ..Self::post(path, body)?
        })
    }

    pub fn with_auth(mut self, auth: HeaderValue) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The same call with the header `name: value` as well.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.header = Some((name, value));
        self
    }
}

/// `Bearer <token>` as a header value, built once per user.
pub fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .context("an access token that is not a valid header value")?;
    value.set_sensitive(true);
    Ok(value)
}

/// One keep-alive HTTP/1.1 connection to the target, reopened when it breaks.
pub struct Conn {
    target: Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(target: Arc<Target>) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    /// Opens the connection now (instead of on the first request), so that a rush measures
    /// requests and not TCP handshakes.
    pub async fn connect(&mut self) -> Result<(), TransportError> {
        if self
            .sender
            .as_ref()
            .is_some_and(|sender| !sender.is_closed())
        {
            return Ok(());
        }
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|_| TransportError::Connect)?;
        // Small request/response pairs: Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| TransportError::Connect)?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped; either way
            // the next request reconnects.
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends `call` and reads the whole answer (reading it to the end is what lets the
    /// connection be reused).
    pub async fn send_raw(&mut self, call: &Call) -> Result<(StatusCode, Bytes), TransportError> {
        let timeout = self.target.timeout;
        match tokio::time::timeout(timeout, self.exchange(call)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => {
                self.sender = None;
                Err(error)
            }
            Err(_) => {
                // The connection may still deliver the late answer: never reuse it.
                self.sender = None;
                Err(TransportError::Timeout)
            }
        }
    }

    async fn exchange(&mut self, call: &Call) -> Result<(StatusCode, Bytes), TransportError> {
        self.connect().await?;
        let Some(sender) = self.sender.as_mut() else {
            return Err(TransportError::Connect);
        };
        if sender.ready().await.is_err() {
            // The server closed an idle connection: one fresh try.
            self.sender = None;
            self.connect().await?;
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(TransportError::Connect);
        };
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(call.path.clone())
            .header(HOST, self.target.host.clone());
        if let Some(auth) = &call.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if let Some((name, value)) = &call.header {
            builder = builder.header(name.clone(), value.clone());
        }
        let body = match &call.body {
            Some(body) => {
                builder =
                    builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Full::new(body.clone())
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body).map_err(|_| TransportError::Io)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| TransportError::Io)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| TransportError::Io)?
            .to_bytes();
        Ok((status, body))
    }

    /// Sends `call` and classifies the answer (see [`classify`]).
    pub async fn send(&mut self, call: &Call, want_id: bool) -> Answer {
        match self.send_raw(call).await {
            Ok((status, body)) => classify(status, &body, want_id),
            Err(error) => Answer::Transport(error),
        }
    }

    /// Sends `call`, classifies the answer (asking for the `id` of a 201) and also hands back
    /// its body (`None` without an HTTP answer): for the calls whose answer carries more than
    /// an `id` or a `code` that the scenario needs (a hold's `expires_at`, a paid hold's
    /// `booking_id`, the `checked_in_at` of a 409 `already_checked_in`).
    pub async fn send_keeping_body(&mut self, call: &Call) -> (Answer, Option<Bytes>) {
        match self.send_raw(call).await {
            Ok((status, body)) => {
                let answer = classify(status, &body, true);
                (answer, Some(body))
            }
            Err(error) => (Answer::Transport(error), None),
        }
    }

    /// Setup and verification: sends `call` and parses a JSON answer of status `expected`;
    /// anything else is an error that names the call and quotes the body.
    pub async fn json<T: DeserializeOwned>(
        &mut self,
        call: &Call,
        expected: StatusCode,
    ) -> anyhow::Result<T> {
        let (status, body) = self.send_raw(call).await.map_err(|error| {
            anyhow::anyhow!(
                "{} {}: no answer ({})",
                call.method,
                call.path,
                error.as_str()
            )
        })?;
        if status != expected {
            anyhow::bail!(
                "{} {} answered {status}: {}",
                call.method,
                call.path,
                String::from_utf8_lossy(&body[..body.len().min(500)])
            );
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("{} {}: unexpected body", call.method, call.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_reads_the_code_of_a_problem_and_the_id_of_a_201() {
        let problem = br#"{"type":"https://boxoffice.dev/problems/sold_out","title":"Sold out","status":409,"detail":"none left","code":"sold_out"}"#;
        let answer = classify(StatusCode::CONFLICT, problem, true);
        assert!(answer.is(StatusCode::CONFLICT, "sold_out"));
        assert!(!answer.is_server_error());

        let created = br#"{"user_id":"u-1","id":"b-1","status":"confirmed"}"#;
        let answer = classify(StatusCode::CREATED, created, true);
        assert_eq!(
            answer,
            Answer::Http {
                status: StatusCode::CREATED,
                code: None,
                id: Some("b-1".into())
            }
        );
        // Without asking, a 201 body is not parsed at all.
        let answer = classify(StatusCode::CREATED, created, false);
        assert!(matches!(answer, Answer::Http { id: None, .. }));

        // A 5xx with a body that is not a problem still counts, without a code.
        let answer = classify(StatusCode::BAD_GATEWAY, b"<html>", true);
        assert!(answer.is_server_error());
        assert_eq!(answer.code(), None);
        assert!(Answer::Transport(TransportError::Timeout).is_server_error());
    }

    #[test]
    fn codes_are_interned() {
        let a = intern("sold_out");
        let b = intern("sold_out");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*intern("something_new"), "something_new");
    }

    #[tokio::test]
    async fn the_target_must_be_loopback_http() {
        let timeout = Duration::from_secs(1);
        let target = Target::resolve("http://127.0.0.1:8080", false, timeout)
            .await
            .unwrap();
        assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(target.host, "127.0.0.1:8080");
        assert!(
            Target::resolve("http://[::1]:9000/", false, timeout)
                .await
                .is_ok()
        );
        for refused in [
            "https://127.0.0.1:8080",
            "127.0.0.1:8080",
            "http://127.0.0.1:8080/api",
            "http://192.0.2.10:8080",
            "http://10.1.2.3",
        ] {
            assert!(
                Target::resolve(refused, false, timeout).await.is_err(),
                "{refused} must be refused"
            );
        }
        // An address literal needs no lookup: --allow-remote lets it through.
        assert!(
            Target::resolve("http://192.0.2.10:8080", true, timeout)
                .await
                .is_ok()
        );
    }
}
