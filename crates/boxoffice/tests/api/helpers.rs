//! The test harness: a real server on `127.0.0.1:0` in its own temporary data directory, and a
//! client that talks to it the way any HTTP client would.
//!
//! Every test starts its own [`TestApp`], so tests share nothing and run in parallel. Servers use
//! cheap argon2 parameters, no rate limits (unless a test asks for them) and the HMAC secret
//! [`SECRET`], which lets tests forge tokens with [`TestApp::forge_token`]. A test that needs a
//! restart stops the server with [`TestApp::stop`], which hands back the data directory for the
//! next [`TestApp::start`].

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice::app::{Application, Config, Storage};
use boxoffice_auth::config::PasswordParams;
use boxoffice_shared::pgtest::TestDatabase;
use boxoffice_shared::token::AccessClaims;
use reqwest::{Response, StatusCode, header};
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The HMAC secret test servers sign with (HS256 needs at least 32 bytes).
pub const SECRET: &str = "boxoffice-test-secret-0123456789-abcdefghij";

/// The password [`TestApp::register_user`] gives every account.
pub const PASSWORD: &str = "correct horse battery";

/// The cheapest argon2id parameters: tests exercise the rules, not the hash cost.
pub const CHEAP_ARGON2: PasswordParams = PasswordParams {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

thread_local! {
    /// This test's PostgreSQL database; libtest runs every test on a thread of its own, so it is
    /// dropped (and the database with it) when the test ends.
    static DATABASE: std::cell::RefCell<Option<TestDatabase>> =
        const { std::cell::RefCell::new(None) };
}

/// A port on 127.0.0.1 for a `boxoffice` process that a test starts with `--listen`: free when
/// chosen, and chosen below the kernel's ephemeral range (read from
/// `/proc/sys/net/ipv4/ip_local_port_range`; Linux's default starts at 32768). The process binds
/// it seconds later, after its migrations; a port taken from the ephemeral range (what binding
/// port 0 gives) could meanwhile be handed to another test's server binding port 0, which then
/// answered in the process's place. Below that range only this function hands ports out, and a
/// counter (offset by the process id, for two test binaries at once) never hands one out twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(FIRST).max(1_000);
    for _ in 0..span {
        let offset = NEXT
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(std::process::id().wrapping_mul(97));
        let port = u16::try_from(FIRST + offset % span).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + span);
}

/// The URL of this test's PostgreSQL database when the suite runs on PostgreSQL, made on first
/// use; `None` on SQLite. Without a PostgreSQL server (and without `BOXOFFICE_REQUIRE_POSTGRES=1`)
/// the test says it skipped PostgreSQL and runs on SQLite.
pub fn database_url() -> Option<String> {
    if !crate::ON_POSTGRES {
        return None;
    }
    DATABASE.with(|cell| {
        let mut database = cell.borrow_mut();
        if database.is_none() {
            let test = std::thread::current()
                .name()
                .unwrap_or("an API test")
                .to_owned();
            *database = TestDatabase::create_blocking(&test);
        }
        database.as_ref().map(|database| database.url.clone())
    })
}

/// The configuration of a test server keeping its data in `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::new(
        "127.0.0.1:0".parse().expect("a socket address"),
        dir.to_owned(),
    );
    if let Some(url) = database_url() {
        config.storage = Storage::Postgres { url };
    }
    config.jwt_secret = Some(SecretString::from(SECRET.to_owned()));
    config.auth.password = CHEAP_ARGON2;
    config.auth.rate_limit = None;
    config.write_limits = None;
    config
}

/// A running server and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub client: reqwest::Client,
    dir: Option<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The tokens of one logged-in session, as register/login/refresh return them.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: Value,
    pub access_token: String,
    pub refresh_token: String,
}

impl Session {
    fn from_body(body: &Value) -> Self {
        Self {
            user: body["user"].clone(),
            access_token: body["access_token"]
                .as_str()
                .expect("access_token is a string")
                .to_owned(),
            refresh_token: body["refresh_token"]
                .as_str()
                .expect("refresh_token is a string")
                .to_owned(),
        }
    }

    pub fn user_id(&self) -> &str {
        self.user["id"].as_str().expect("user.id is a string")
    }
}

/// A server with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server whose test configuration `tweak` adjusts first.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    TestApp::start(dir, tweak).await
}

impl TestApp {
    /// Starts a server on the data directory `dir` (fresh or left by an earlier server).
    pub async fn start(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let app = Application::build(config)
            .await
            .expect("the application builds");
        let address = app.address();
        assert!(address.ip().is_loopback(), "test servers bind 127.0.0.1");
        let (stop, stop_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until_stopped(async move {
            let _ = stop_rx.await;
        }));
        TestApp {
            base: format!("http://{address}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                // Below the server's idle timeout, as any well-behaved client keeps it.
                .pool_idle_timeout(std::time::Duration::from_secs(5))
                .build()
                .expect("a reqwest client"),
            dir: Some(dir),
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.as_ref().expect("the data directory").path()
    }

    /// Stops the server gracefully, checks that it stopped cleanly and hands back its data
    /// directory.
    pub async fn stop(mut self) -> TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = self.handle.take().expect("the server task");
        tokio::time::timeout(std::time::Duration::from_secs(10), handle)
            .await
            .expect("the server stops within 10 s")
            .expect("the server task did not panic")
            .expect("the server stopped without an error");
        self.dir.take().expect("the data directory")
    }

    /// Stops this server and starts another on the same data directory.
    pub async fn restart_with(self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = self.stop().await;
        TestApp::start(dir, tweak).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST /api/v1/auth/register` with this body.
    pub async fn register(&self, body: &Value) -> Response {
        self.post_json("/api/v1/auth/register", body).await
    }

    /// Registers `email` with [`PASSWORD`] and no phone; panics unless it succeeds.
    pub async fn register_user(&self, email: &str) -> Session {
        self.register_session(&json!({
            "email": email,
            "password": PASSWORD,
            "full_name": "Ada Lovelace",
        }))
        .await
    }

    /// Registers with this body; panics unless the answer is 201.
    pub async fn register_session(&self, body: &Value) -> Session {
        let response = self.register(body).await;
        assert_eq!(response.status(), StatusCode::CREATED, "register {body}");
        Session::from_body(&response.json().await.expect("a JSON body"))
    }

    /// `POST /api/v1/auth/login`.
    pub async fn login(&self, login: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/login",
            &json!({ "login": login, "password": password }),
        )
        .await
    }

    /// Logs in; panics unless the answer is 200.
    pub async fn login_session(&self, login: &str, password: &str) -> Session {
        let response = self.login(login, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login as {login}");
        Session::from_body(&response.json().await.expect("a JSON body"))
    }

    /// `POST /api/v1/auth/refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json(
            "/api/v1/auth/refresh",
            &json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    /// `POST /api/v1/auth/logout`.
    pub async fn logout(&self, access_token: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/logout"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET /api/v1/me`.
    pub async fn me(&self, access_token: &str) -> Response {
        self.get_with_token("/api/v1/me", access_token).await
    }

    /// `PATCH /api/v1/me`.
    pub async fn patch_me(&self, access_token: &str, body: &Value) -> Response {
        self.client
            .patch(self.url("/api/v1/me"))
            .bearer_auth(access_token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET /api/v1/me`; panics unless the answer is 200.
    pub async fn me_ok(&self, access_token: &str) -> Value {
        let response = self.me(access_token).await;
        assert_eq!(response.status(), StatusCode::OK, "GET /api/v1/me");
        response.json().await.expect("a JSON body")
    }

    /// An HS256 token over `claims`, signed with the test server's secret.
    pub fn forge_token(&self, claims: &AccessClaims) -> String {
        forge_token_with(claims, SECRET.as_bytes())
    }
}

/// An HS256 token over `claims` signed with `secret`.
pub fn forge_token_with(claims: &AccessClaims, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("the token encodes")
}

/// The claims of a token, read without checking anything (the server is the one that checks).
pub fn read_claims(token: &str) -> AccessClaims {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .expect("the payload is base64url");
    serde_json::from_slice(&bytes).expect("the payload holds access claims")
}

/// `base64url(header).base64url(claims).` with `"alg": "none"` and no signature.
pub fn unsigned_token(claims: &AccessClaims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    format!("{header}.{claims}.")
}

/// Now, in seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Checks that `response` is an RFC 9457 problem document with this status and code, and
/// returns its body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    let actual = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "status of a `{code}` problem; body: {text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type:?} of a `{code}` problem; body: {text}"
    );
    let body: Value = serde_json::from_str(&text).expect("a problem body is JSON");
    assert_eq!(body["code"], code, "code; body: {body}");
    assert_eq!(
        body["type"],
        format!("https://boxoffice.dev/problems/{code}"),
        "type; body: {body}"
    );
    assert_eq!(
        body["status"],
        status.as_u16(),
        "status member; body: {body}"
    );
    assert!(
        body["title"]
            .as_str()
            .is_some_and(|title| !title.is_empty()),
        "title; body: {body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| !detail.is_empty()),
        "detail; body: {body}"
    );
    body
}

/// The fields named under `errors` of a `validation_failed` problem.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("a validation problem lists `errors`")
        .iter()
        .map(|error| {
            assert!(
                error["message"].as_str().is_some_and(|m| !m.is_empty()),
                "every field error has a message: {error}"
            );
            error["field"]
                .as_str()
                .expect("every field error names its field")
                .to_owned()
        })
        .collect()
}

/// The admin account [`spawn_admin_app`] bootstraps.
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// The password of [`ADMIN_EMAIL`].
pub const ADMIN_PASSWORD: &str = "bootstrap admin password";

/// A server with an admin account bootstrapped from configuration, and that admin's access token.
pub async fn spawn_admin_app() -> (TestApp, String) {
    spawn_admin_app_with(|_| {}).await
}

/// [`spawn_admin_app`], with the configuration changed by `tweak` first.
pub async fn spawn_admin_app_with(tweak: impl FnOnce(&mut Config)) -> (TestApp, String) {
    let app = spawn_app_with(|config| {
        config.admin = Some(boxoffice::app::AccountSpec {
            email: ADMIN_EMAIL.to_owned(),
            password: SecretString::from(ADMIN_PASSWORD.to_owned()),
        });
        tweak(config);
    })
    .await;
    let admin = app.admin_token().await;
    (app, admin)
}

/// RFC 3339 (UTC) of now plus `seconds` (negative for the past).
pub fn rfc3339_in(seconds: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    at.replace_nanosecond(0)
        .expect("0 ns is valid")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats as RFC 3339")
}

/// A valid `POST /api/v1/concerts` body starting `starts_in` seconds from now, with one
/// `"General"` seat type of `capacity` seats at 25000 USD cents.
pub fn concert_body(name: &str, starts_in: i64, capacity: u64) -> Value {
    json!({
        "name": name,
        "artist": "The Testers",
        "venue": "Hall One",
        "description": "A test concert",
        "starts_at": rfc3339_in(starts_in),
        "seat_types": [{"name": "General", "price_cents": 25000, "currency": "USD", "capacity": capacity}],
    })
}

/// The id of `value` (a concert, seat type, booking or user).
pub fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("an `id` string").to_owned()
}

/// Polls `check` every 25 ms until it returns `Some`, or panics with `what` after `seconds`.
pub async fn poll_until<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

impl TestApp {
    /// Logs in as the bootstrapped admin and returns the access token.
    pub async fn admin_token(&self) -> String {
        let session = self.login_session(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(session.user["role"], "admin");
        session.access_token
    }

    /// `POST path` with a bearer token and a JSON body.
    pub async fn post_json_with_token(&self, path: &str, token: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST path` with a bearer token and no body.
    pub async fn post_with_token(&self, path: &str, token: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// `PATCH path` with a bearer token and a JSON body.
    pub async fn patch_json_with_token(&self, path: &str, token: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST /api/v1/concerts` as `admin`; panics unless the answer is 201.
    pub async fn create_concert(&self, admin: &str, body: &Value) -> Value {
        let response = self
            .post_json_with_token("/api/v1/concerts", admin, body)
            .await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert_eq!(status, StatusCode::CREATED, "create concert {body}: {text}");
        serde_json::from_str(&text).expect("a JSON body")
    }

    /// `GET /api/v1/concerts/{id}`; panics unless the answer is 200.
    pub async fn concert(&self, id: &str) -> Value {
        let response = self.get(&format!("/api/v1/concerts/{id}")).await;
        assert_eq!(response.status(), StatusCode::OK, "GET concert {id}");
        response.json().await.expect("a JSON body")
    }

    /// `GET /api/v1/concerts/{id}/availability`; panics unless the answer is 200.
    pub async fn availability(&self, id: &str) -> Value {
        let response = self
            .get(&format!("/api/v1/concerts/{id}/availability"))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "GET availability {id}");
        response.json().await.expect("a JSON body")
    }

    /// `remaining` of seat type `seat_type_id` in the availability read of `concert_id`.
    pub async fn remaining(&self, concert_id: &str, seat_type_id: &str) -> i64 {
        let availability = self.availability(concert_id).await;
        availability["seat_types"]
            .as_array()
            .expect("seat_types")
            .iter()
            .find(|seat_type| seat_type["id"] == seat_type_id)
            .expect("the seat type is listed")["remaining"]
            .as_i64()
            .expect("remaining is an integer")
    }

    /// `GET /api/v1/concerts/{id}/sales` as `admin`; panics unless the answer is 200.
    pub async fn sales(&self, admin: &str, id: &str) -> Value {
        let response = self
            .get_with_token(&format!("/api/v1/concerts/{id}/sales"), admin)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "GET sales {id}");
        response.json().await.expect("a JSON body")
    }

    /// `POST /api/v1/bookings` for one seat of `seat_type_id`.
    pub async fn book(&self, token: &str, concert_id: &str, seat_type_id: &str) -> Response {
        self.post_json_with_token(
            "/api/v1/bookings",
            token,
            &json!({ "concert_id": concert_id, "seat_type_id": seat_type_id }),
        )
        .await
    }

    /// Books one seat; panics unless the answer is 201.
    pub async fn book_ok(&self, token: &str, concert_id: &str, seat_type_id: &str) -> Value {
        let response = self.book(token, concert_id, seat_type_id).await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert_eq!(status, StatusCode::CREATED, "book: {text}");
        serde_json::from_str(&text).expect("a JSON body")
    }

    /// `POST /api/v1/bookings/{id}/cancel`.
    pub async fn cancel_booking(&self, token: &str, booking_id: &str) -> Response {
        self.post_with_token(&format!("/api/v1/bookings/{booking_id}/cancel"), token)
            .await
    }

    /// Registers `count` users concurrently (`{prefix}{i}@example.com`), in order.
    pub async fn register_users(&self, prefix: &str, count: usize) -> Vec<Session> {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let client = self.client.clone();
            let url = self.url("/api/v1/auth/register");
            let email = format!("{prefix}{i}@example.com");
            tasks.spawn(async move {
                let body = json!({"email": email, "password": PASSWORD, "full_name": "Fan"});
                let response = client.post(url).json(&body).send().await.expect("sent");
                assert_eq!(response.status(), StatusCode::CREATED, "register {email}");
                let body: Value = response.json().await.expect("a JSON body");
                (i, Session::from_body(&body))
            });
        }
        let mut sessions: Vec<(usize, Session)> = tasks.join_all().await;
        sessions.sort_by_key(|(i, _)| *i);
        sessions.into_iter().map(|(_, session)| session).collect()
    }
}

/// The `.eml` files of `mail_dir` (none if it does not exist yet), as text.
pub fn read_mail_dir(mail_dir: &Path) -> Vec<(std::path::PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(mail_dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|ext| ext == "eml")
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            files.push((path, text));
        }
    }
    files
}

/// The value of header `name` in the header block of an RFC 5322 message (unfolded, trimmed).
pub fn mail_header(message: &str, name: &str) -> Option<String> {
    let head = message
        .split("\r\n\r\n")
        .next()
        .unwrap_or(message)
        .split("\n\n")
        .next()
        .unwrap_or(message);
    let mut value: Option<String> = None;
    for line in head.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            // A folded continuation of the header we are reading, if any.
            if let Some(value) = value.as_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((header, rest)) = line.split_once(':')
            && header.trim().eq_ignore_ascii_case(name)
        {
            value = Some(rest.trim().to_owned());
        }
    }
    value
}
