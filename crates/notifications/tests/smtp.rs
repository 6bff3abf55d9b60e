//! The SMTP transport against a real SMTP server: aiosmtpd (PyPI), which each test starts on
//! 127.0.0.1 through `tests/smtp_peer.py` and which reports every DATA command it receives, parsed
//! by Python's own email package, on its stdout.
//!
//! The worker runs as in production (claim → render → send over lettre's pooled SMTP transport →
//! acknowledge) on the system clock, with its backoff shortened through its configuration. Booking's
//! outbox and Auth's user directory are in-memory stand-ins: the SMTP server is the peer under test.
//!
//! Without python3 and aiosmtpd these tests print a notice and pass, except under
//! `BOXOFFICE_CI=1`, where they fail: `.ci/peers.sh` installs aiosmtpd.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boxoffice_notifications::{
    MailTransport, NotificationsConfig, TransportConfig, WorkerWaker, run,
};
use boxoffice_shared::clients::{
    BookingEmail, ClientError, Contact, EmailKind, OutboxMessage, OutboxSource, UserDirectory,
};
use boxoffice_shared::clock::{self, SharedClock};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The first wait after a failed attempt; it doubles with each further failure.
const BASE_BACKOFF: Duration = Duration::from_millis(100);
/// Short enough that a test waiting on retries never waits long.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
const FROM: &str = "Aurora Hall Box Office <tickets@example.com>";

// --- The SMTP server -------------------------------------------------------------------------

/// A running `smtp_peer.py`, and the events it reported.
struct Peer {
    child: Child,
    port: u16,
    events: Arc<Mutex<Vec<Value>>>,
    reader: JoinHandle<()>,
}

/// Whether the peer can run here. Under `BOXOFFICE_CI=1` it must: the tests then fail rather
/// than skip, so that a CI machine without aiosmtpd cannot pass without testing SMTP.
fn peer_available(test: &str) -> bool {
    let imported = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !imported {
        assert!(
            std::env::var("BOXOFFICE_CI").as_deref() != Ok("1"),
            "{test}: python3 with aiosmtpd is required under BOXOFFICE_CI=1; run .ci/peers.sh"
        );
        // Straight to stderr: libtest would swallow `eprintln!` of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: python3 with aiosmtpd is not installed (.ci/peers.sh)"
        );
    }
    imported
}

impl Peer {
    /// Starts the server on `port` (0: any free one), answering 451 to the first `refuse_data`
    /// DATA commands, and waits until it listens.
    async fn start(port: u16, refuse_data: u32) -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string()])
            .args(["--refuse-data", &refuse_data.to_string()])
            // Held open: the peer exits when it closes, even if this process is killed.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the SMTP peer did not start within 10 s")
            .unwrap()
            .expect("the SMTP peer exited before listening");
        let ready: Value = serde_json::from_str(&ready).unwrap();
        assert_eq!(ready["event"], "ready", "{ready}");
        let port = u16::try_from(ready["port"].as_u64().unwrap()).unwrap();

        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        Peer {
            child,
            port,
            events,
            reader,
        }
    }

    /// Every DATA command so far, accepted or refused, in order.
    fn attempts(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// The messages the server accepted.
    fn accepted(&self) -> Vec<Value> {
        let attempts = self.attempts().into_iter();
        attempts.filter(|event| event["accepted"] == true).collect()
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
        self.reader.abort();
    }
}

/// A port below the kernel's ephemeral range that is free now, for a server started later (the
/// way `crates/boxoffice/tests/api/helpers.rs` picks them): binding port 0 elsewhere, as other
/// tests' servers do, can never be handed this port in the meantime.
fn free_port() -> u16 {
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
            // Offset differently from the API tests' helper, so two binaries at once rarely meet.
            .wrapping_add(std::process::id().wrapping_mul(89).wrapping_add(span / 2));
        let port = u16::try_from(FIRST + offset % span).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + span);
}

// --- Booking's outbox and Auth's directory, in memory ----------------------------------------

struct Row {
    message: OutboxMessage,
    due_at: OffsetDateTime,
    leased_until: Option<OffsetDateTime>,
    acknowledged: bool,
    claims: u32,
    /// The error of each `retry_later`.
    retries: Vec<String>,
}

/// The outbox as its contract describes it (leases, due times, acknowledgements).
struct MemoryOutbox {
    clock: SharedClock,
    rows: Mutex<Vec<Row>>,
}

impl MemoryOutbox {
    fn push(&self, kind: EmailKind, booking: &BookingEmail) -> Uuid {
        let message_id = Uuid::now_v7();
        self.rows.lock().unwrap().push(Row {
            message: OutboxMessage {
                message_id,
                kind,
                attempts: 0,
                booking: booking.clone(),
            },
            due_at: self.clock.now(),
            leased_until: None,
            acknowledged: false,
            claims: 0,
            retries: Vec::new(),
        });
        message_id
    }

    fn with_row<T>(&self, message_id: Uuid, f: impl FnOnce(&mut Row) -> T) -> T {
        let mut rows = self.rows.lock().unwrap();
        let row = rows
            .iter_mut()
            .find(|row| row.message.message_id == message_id);
        f(row.unwrap())
    }

    fn acknowledged(&self, message_id: Uuid) -> bool {
        self.with_row(message_id, |row| row.acknowledged)
    }

    fn claims(&self, message_id: Uuid) -> u32 {
        self.with_row(message_id, |row| row.claims)
    }

    fn retries(&self, message_id: Uuid) -> Vec<String> {
        self.with_row(message_id, |row| row.retries.clone())
    }
}

#[async_trait]
impl OutboxSource for MemoryOutbox {
    async fn claim(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxMessage>, ClientError> {
        let now = self.clock.now();
        let mut rows = self.rows.lock().unwrap();
        let due = rows.iter_mut().filter(|row| {
            !row.acknowledged
                && row.due_at <= now
                && row.leased_until.is_none_or(|until| until <= now)
        });
        Ok(due
            .take(limit as usize)
            .map(|row| {
                row.leased_until = Some(now + lease);
                row.claims += 1;
                row.message.clone()
            })
            .collect())
    }

    async fn acknowledge(&self, message_ids: &[Uuid]) -> Result<(), ClientError> {
        for &message_id in message_ids {
            self.with_row(message_id, |row| {
                row.acknowledged = true;
                row.leased_until = None;
            });
        }
        Ok(())
    }

    async fn retry_later(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), ClientError> {
        self.with_row(message_id, |row| {
            row.message.attempts += 1;
            row.due_at = retry_at;
            row.leased_until = None;
            row.retries.push(error.to_owned());
        });
        Ok(())
    }

    async fn depth(&self) -> Result<u64, ClientError> {
        let rows = self.rows.lock().unwrap();
        Ok(rows.iter().filter(|row| !row.acknowledged).count() as u64)
    }
}

struct Users(HashMap<Uuid, Contact>);

#[async_trait]
impl UserDirectory for Users {
    async fn contact(&self, user_id: Uuid) -> Result<Option<Contact>, ClientError> {
        Ok(self.0.get(&user_id).cloned())
    }
}

// --- The worker ------------------------------------------------------------------------------

/// A worker sending through `smtp://127.0.0.1:{port}` as [`FROM`], and its outbox.
struct Mailer {
    outbox: Arc<MemoryOutbox>,
    /// The one user, Ada, with a booking.
    booking: BookingEmail,
    stop: CancellationToken,
    worker: JoinHandle<()>,
}

impl Mailer {
    async fn start(port: u16) -> Mailer {
        let clock = clock::system();
        let outbox = Arc::new(MemoryOutbox {
            clock: clock.clone(),
            rows: Mutex::new(Vec::new()),
        });
        let ada = Uuid::now_v7();
        let contact = Contact {
            email: "ada@example.com".into(),
            full_name: "Ada Lovelace".into(),
        };
        let users = Arc::new(Users(HashMap::from([(ada, contact)])));
        let url = format!("smtp://127.0.0.1:{port}");
        let transport = TransportConfig::parse(Some(&url), PathBuf::new()).unwrap();
        let mut config = NotificationsConfig::new(transport)
            .with_from(Some(FROM))
            .unwrap();
        config.poll_interval = Duration::from_millis(10);
        config.base_backoff = BASE_BACKOFF;
        config.max_backoff = MAX_BACKOFF;
        // Opens no connection: a relay that is down must not stop start-up.
        let mail = MailTransport::start(&config.transport).await.unwrap();
        let stop = CancellationToken::new();
        let worker = tokio::spawn(run(
            outbox.clone(),
            users,
            mail,
            config,
            clock,
            WorkerWaker::new(),
            stop.clone(),
        ));
        let booking = BookingEmail {
            booking_id: Uuid::now_v7(),
            user_id: ada,
            concert_id: Uuid::now_v7(),
            concert_name: "Night, Day & Co".into(),
            artist: "Aurora".into(),
            venue: "Aurora Hall; Main Stage".into(),
            time_zone: "Europe/Oslo".into(),
            starts_at: datetime!(2027-05-01 19:30 UTC),
            seat_type_name: "VIP".into(),
            price_cents: 25000,
            currency: "USD".into(),
            at: datetime!(2027-01-02 03:04:05 UTC),
            payment: None,
            ticket_code: None,
        };
        Mailer {
            outbox,
            booking,
            stop,
            worker,
        }
    }

    fn queue(&self, kind: EmailKind) -> Uuid {
        self.outbox.push(kind, &self.booking)
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.worker)
            .await
            .expect("the worker did not stop")
            .unwrap();
    }
}

/// Waits (in real time, generously) until `condition` holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The parts of a received message, as Python's email package read them, by content type.
fn part<'a>(received: &'a Value, content_type: &str) -> &'a Value {
    let parts = received["parts"].as_array().unwrap();
    let found = parts
        .iter()
        .find(|part| part["content_type"] == content_type);
    found.unwrap_or_else(|| panic!("no {content_type} part in {received:#}"))
}

fn content<'a>(received: &'a Value, content_type: &str) -> &'a str {
    part(received, content_type)["content"].as_str().unwrap()
}

// --- The tests -------------------------------------------------------------------------------

#[tokio::test]
async fn emails_reach_the_smtp_server_with_their_headers_parts_and_calendar_file() {
    if !peer_available("emails_reach_the_smtp_server") {
        return;
    }
    let peer = Peer::start(0, 0).await;
    let mailer = Mailer::start(peer.port).await;
    let confirmed = mailer.queue(EmailKind::BookingConfirmed);
    let cancelled = mailer.queue(EmailKind::BookingCancelled);
    eventually("both are acknowledged", || {
        mailer.outbox.acknowledged(confirmed) && mailer.outbox.acknowledged(cancelled)
    })
    .await;

    let received = peer.accepted();
    assert_eq!(received.len(), 2, "{received:#?}");
    let booking_id = mailer.booking.booking_id;
    for (message_id, method, subject) in [
        (
            confirmed,
            "PUBLISH",
            "Your ticket for Night, Day & Co is confirmed",
        ),
        (
            cancelled,
            "CANCEL",
            "Your booking for Night, Day & Co was cancelled",
        ),
    ] {
        let email = received
            .iter()
            .find(|email| email["message_id"] == format!("<{message_id}@boxoffice>"))
            .unwrap_or_else(|| panic!("{message_id} not received: {received:#?}"));
        assert_eq!(email["rcpt_tos"], serde_json::json!(["ada@example.com"]));
        assert_eq!(email["mail_from"], "tickets@example.com");
        assert_eq!(email["to"], "Ada Lovelace <ada@example.com>");
        assert_eq!(email["from_name"], "Aurora Hall Box Office");
        assert_eq!(email["subject"], subject);
        assert_eq!(email["defects"], serde_json::json!([]), "{email:#}");
        let tree: Vec<_> = email["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|part| part["content_type"].as_str().unwrap())
            .collect();
        assert_eq!(
            tree,
            [
                "multipart/mixed",
                "multipart/alternative",
                "text/plain",
                "text/html",
                "text/calendar"
            ]
        );

        let plain = content(email, "text/plain");
        assert!(plain.contains("Hello Ada Lovelace,"), "{plain}");
        // Oslo is two hours ahead of UTC in May.
        assert!(
            plain.contains("Saturday 1 May 2027, 21:30 CEST (Europe/Oslo)"),
            "{plain}"
        );
        assert!(plain.contains("Aurora"), "{plain}");
        assert!(plain.contains(&booking_id.to_string()), "{plain}");
        let html = content(email, "text/html");
        assert!(html.contains("Night, Day &amp; Co"), "{html}");

        let calendar = part(email, "text/calendar");
        assert_eq!(calendar["params"]["method"], method, "{calendar:#}");
        assert_eq!(calendar["disposition"], "attachment");
        assert_eq!(calendar["filename"], "concert.ics");
        let ics = calendar["content"].as_str().unwrap();
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"), "{ics:?}");
        for line in [
            format!("METHOD:{method}"),
            format!("UID:{booking_id}@boxoffice"),
            "DTSTART:20270501T193000Z".to_owned(),
            "SUMMARY:Night\\, Day & Co".to_owned(),
            "LOCATION:Aurora Hall\\; Main Stage".to_owned(),
        ] {
            assert!(ics.contains(&format!("\r\n{line}\r\n")), "{line}: {ics:?}");
        }
    }
    mailer.stop().await;
    peer.stop().await;
}

#[tokio::test]
async fn a_refusing_server_gets_the_same_message_id_again_after_growing_waits() {
    if !peer_available("a_refusing_server_gets_the_same_message_id") {
        return;
    }
    const REFUSALS: usize = 3;
    let peer = Peer::start(0, REFUSALS as u32).await;
    let mailer = Mailer::start(peer.port).await;
    let id = mailer.queue(EmailKind::BookingConfirmed);
    eventually("the email is acknowledged", || {
        mailer.outbox.acknowledged(id)
    })
    .await;

    let attempts = peer.attempts();
    assert_eq!(attempts.len(), REFUSALS + 1, "{attempts:#?}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(
            attempt["accepted"],
            n == REFUSALS,
            "attempt {n}: {attempt:#}"
        );
        assert_eq!(
            attempt["message_id"],
            format!("<{id}@boxoffice>"),
            "attempt {n}"
        );
        assert_eq!(attempt["rcpt_tos"], serde_json::json!(["ada@example.com"]));
    }
    // As the server saw them: each wait at least the backoff, which doubles (jitter only adds).
    for n in 0..REFUSALS {
        let gap = attempts[n + 1]["at"].as_f64().unwrap() - attempts[n]["at"].as_f64().unwrap();
        let backoff = (BASE_BACKOFF * 2_u32.pow(n as u32)).min(MAX_BACKOFF);
        assert!(
            gap >= backoff.as_secs_f64(),
            "wait {n} was {gap:.3} s, less than the backoff {backoff:?}"
        );
    }
    let retries = mailer.outbox.retries(id);
    assert_eq!(retries.len(), REFUSALS);
    for error in &retries {
        assert!(error.contains("451"), "{error}");
    }
    assert_eq!(mailer.outbox.claims(id), REFUSALS as u32 + 1);
    mailer.stop().await;
    peer.stop().await;
}

#[tokio::test]
async fn a_server_that_is_down_at_start_gets_the_email_once_it_is_up() {
    if !peer_available("a_server_that_is_down_at_start") {
        return;
    }
    let port = free_port();
    let mailer = Mailer::start(port).await;
    let id = mailer.queue(EmailKind::BookingConfirmed);
    eventually("two attempts failed", || {
        mailer.outbox.retries(id).len() >= 2
    })
    .await;
    assert!(!mailer.outbox.acknowledged(id));
    for error in mailer.outbox.retries(id) {
        assert!(error.contains("SMTP delivery failed"), "{error}");
    }

    let peer = Peer::start(port, 0).await;
    eventually("the email is acknowledged", || {
        mailer.outbox.acknowledged(id)
    })
    .await;
    let received = peer.accepted();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(received[0]["message_id"], format!("<{id}@boxoffice>"));
    assert_eq!(
        received[0]["rcpt_tos"],
        serde_json::json!(["ada@example.com"])
    );
    mailer.stop().await;
    peer.stop().await;
}
