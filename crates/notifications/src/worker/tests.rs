//! The worker against the real mail-directory transport, with in-memory stand-ins for Booking's
//! outbox and Auth's user directory that keep the contracts' rules (leases, due times,
//! acknowledgements).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use boxoffice_shared::clients::{BookingEmail, ClientError, Contact, EmailKind};
use boxoffice_shared::clock::{Clock, ManualClock};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::*;
use crate::config::TransportConfig;

/// One outbox row.
struct Row {
    message: OutboxMessage,
    due_at: OffsetDateTime,
    leased_until: Option<OffsetDateTime>,
    acknowledged: bool,
    /// How often it was handed out by `claim`.
    claims: u32,
    /// `(now, retry_at, error)` of each `retry_later`.
    retries: Vec<(OffsetDateTime, OffsetDateTime, String)>,
}

/// Booking's outbox as the contract describes it, in memory, on the test's clock.
struct MemoryOutbox {
    clock: Arc<ManualClock>,
    rows: Mutex<Vec<Row>>,
    /// Calls to `claim`, answered or not.
    claim_calls: AtomicU32,
    /// How many upcoming acknowledgements get lost (answered `unavailable`).
    lose_acks: AtomicU32,
    /// The ids each claim that found something handed out, in order.
    batches: Mutex<Vec<Vec<Uuid>>>,
    /// The ids of each acknowledgement, lost or not, in order.
    acks: Mutex<Vec<Vec<Uuid>>>,
}

impl MemoryOutbox {
    fn new(clock: Arc<ManualClock>) -> Arc<Self> {
        Arc::new(Self {
            clock,
            rows: Mutex::new(Vec::new()),
            claim_calls: AtomicU32::new(0),
            lose_acks: AtomicU32::new(0),
            batches: Mutex::new(Vec::new()),
            acks: Mutex::new(Vec::new()),
        })
    }

    fn push(&self, user_id: Uuid, kind: EmailKind) -> Uuid {
        let message_id = Uuid::now_v7();
        let now = self.clock.now();
        let message = OutboxMessage {
            message_id,
            kind,
            attempts: 0,
            booking: BookingEmail {
                booking_id: Uuid::now_v7(),
                user_id,
                concert_id: Uuid::now_v7(),
                concert_name: "Night & Day".into(),
                artist: "Aurora".into(),
                venue: "Hall".into(),
                time_zone: "UTC".into(),
                starts_at: datetime!(2027-05-01 19:30 UTC),
                seat_type_name: "VIP".into(),
                price_cents: 25000,
                currency: "USD".into(),
                at: now,
                payment: None,
                ticket_code: None,
            },
        };
        let row = Row {
            message,
            due_at: now,
            leased_until: None,
            acknowledged: false,
            claims: 0,
            retries: Vec::new(),
        };
        self.rows.lock().unwrap().push(row);
        message_id
    }

    fn with_row<T>(&self, message_id: Uuid, f: impl FnOnce(&Row) -> T) -> T {
        let rows = self.rows.lock().unwrap();
        f(rows
            .iter()
            .find(|row| row.message.message_id == message_id)
            .unwrap())
    }

    fn acknowledged(&self, message_id: Uuid) -> bool {
        self.with_row(message_id, |row| row.acknowledged)
    }

    fn claims(&self, message_id: Uuid) -> u32 {
        self.with_row(message_id, |row| row.claims)
    }

    fn retries(&self, message_id: Uuid) -> Vec<(OffsetDateTime, OffsetDateTime, String)> {
        self.with_row(message_id, |row| row.retries.clone())
    }
}

#[async_trait]
impl OutboxSource for MemoryOutbox {
    async fn claim(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxMessage>, ClientError> {
        self.claim_calls.fetch_add(1, Ordering::SeqCst);
        let now = self.clock.now();
        let mut rows = self.rows.lock().unwrap();
        let due = rows.iter_mut().filter(|row| {
            !row.acknowledged
                && row.due_at <= now
                && row.leased_until.is_none_or(|until| until <= now)
        });
        let claimed = due
            .take(limit as usize)
            .map(|row| {
                row.leased_until = Some(now + lease);
                row.claims += 1;
                row.message.clone()
            })
            .collect::<Vec<_>>();
        if !claimed.is_empty() {
            let ids = claimed.iter().map(|message| message.message_id).collect();
            self.batches.lock().unwrap().push(ids);
        }
        Ok(claimed)
    }

    async fn acknowledge(&self, message_ids: &[Uuid]) -> Result<(), ClientError> {
        self.acks.lock().unwrap().push(message_ids.to_vec());
        let lost = self
            .lose_acks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if lost.is_ok() {
            return Err(ClientError::Unavailable("acknowledgement lost".into()));
        }
        let mut rows = self.rows.lock().unwrap();
        for message_id in message_ids {
            let row = rows
                .iter_mut()
                .find(|row| row.message.message_id == *message_id)
                .unwrap();
            row.acknowledged = true;
            row.leased_until = None;
        }
        Ok(())
    }

    async fn retry_later(
        &self,
        message_id: Uuid,
        retry_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), ClientError> {
        let now = self.clock.now();
        let mut rows = self.rows.lock().unwrap();
        let row = rows
            .iter_mut()
            .find(|row| row.message.message_id == message_id)
            .unwrap();
        row.message.attempts += 1;
        row.due_at = retry_at;
        row.leased_until = None;
        row.retries.push((now, retry_at, error.to_owned()));
        Ok(())
    }

    async fn depth(&self) -> Result<u64, ClientError> {
        Ok(self
            .rows
            .lock()
            .unwrap()
            .iter()
            .filter(|row| !row.acknowledged)
            .count() as u64)
    }
}

/// Auth's user directory; optionally holds every lookup until released, to catch the worker
/// in the middle of a message.
#[derive(Default)]
struct MemoryUsers {
    contacts: Mutex<HashMap<Uuid, Contact>>,
    gate: Option<(Notify, Notify)>,
}

impl MemoryUsers {
    fn gated() -> Self {
        Self {
            gate: Some((Notify::new(), Notify::new())),
            ..Self::default()
        }
    }

    fn add(&self, name: &str) -> Uuid {
        let id = Uuid::now_v7();
        let contact = Contact {
            email: format!("{}@example.com", name.to_lowercase()),
            full_name: name.into(),
        };
        self.contacts.lock().unwrap().insert(id, contact);
        id
    }
}

#[async_trait]
impl UserDirectory for MemoryUsers {
    async fn contact(&self, user_id: Uuid) -> Result<Option<Contact>, ClientError> {
        if let Some((entered, release)) = &self.gate {
            entered.notify_one();
            release.notified().await;
        }
        Ok(self.contacts.lock().unwrap().get(&user_id).cloned())
    }
}

/// A running worker and everything around it.
struct Harness {
    clock: Arc<ManualClock>,
    outbox: Arc<MemoryOutbox>,
    users: Arc<MemoryUsers>,
    /// The mail directory.
    dir: PathBuf,
    waker: WorkerWaker,
    stop: CancellationToken,
    worker: JoinHandle<()>,
    _root: tempfile::TempDir,
}

impl Harness {
    async fn start(users: MemoryUsers, poll_interval: Duration) -> Self {
        Self::start_with(users, poll_interval, |_| {}).await
    }

    /// Starts the worker; `sabotage` may break the mail directory after the transport started.
    async fn start_with(
        users: MemoryUsers,
        poll_interval: Duration,
        sabotage: impl FnOnce(&Path),
    ) -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mail");
        let clock = Arc::new(ManualClock::new(datetime!(2027-01-01 12:00 UTC)));
        let outbox = MemoryOutbox::new(clock.clone());
        let users = Arc::new(users);
        let mut config = NotificationsConfig::new(TransportConfig::MailDir(dir.clone()));
        config.poll_interval = poll_interval;
        let transport = MailTransport::start(&config.transport).await.unwrap();
        sabotage(&dir);
        let waker = WorkerWaker::new();
        let stop = CancellationToken::new();
        let worker = tokio::spawn(run(
            outbox.clone(),
            users.clone(),
            transport,
            config,
            clock.clone(),
            waker.clone(),
            stop.clone(),
        ));
        Self {
            clock,
            outbox,
            users,
            dir,
            waker,
            stop,
            worker,
            _root: root,
        }
    }

    /// The `.eml` files in the mail directory, sorted.
    fn emails(&self) -> Vec<PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        files.sort();
        files
    }

    fn email_of(&self, message_id: Uuid) -> PathBuf {
        self.dir.join(format!("{message_id}.eml"))
    }

    async fn shut_down(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.worker)
            .await
            .expect("the worker did not stop")
            .unwrap();
    }
}

/// Waits (in real time, generously) until `condition` holds; the worker runs on its own task.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const FAST: Duration = Duration::from_millis(5);

#[tokio::test]
async fn every_message_becomes_one_file_named_by_its_message_id_and_is_acknowledged() {
    let users = MemoryUsers::default();
    let ada = users.add("Ada");
    let grace = users.add("Grace");
    let app = Harness::start(users, FAST).await;
    let ids = [
        app.outbox.push(ada, EmailKind::BookingConfirmed),
        app.outbox.push(grace, EmailKind::BookingConfirmed),
        app.outbox.push(ada, EmailKind::BookingCancelled),
    ];

    eventually("all are acknowledged", || {
        ids.iter().all(|&id| app.outbox.acknowledged(id))
    })
    .await;

    let mut expected: Vec<_> = ids.iter().map(|&id| app.email_of(id)).collect();
    expected.sort();
    assert_eq!(app.emails(), expected);
    for id in ids {
        assert_eq!(app.outbox.claims(id), 1);
        let email = std::fs::read_to_string(app.email_of(id)).unwrap();
        assert!(
            email.contains(&format!("Message-ID: <{id}@boxoffice>")),
            "{email}"
        );
    }
    let cancelled = std::fs::read_to_string(app.email_of(ids[2])).unwrap();
    assert!(
        cancelled.contains("Subject: Your booking for Night & Day was cancelled"),
        "{cancelled}"
    );
    assert!(
        cancelled.contains("To: Ada <ada@example.com>"),
        "{cancelled}"
    );
    app.shut_down().await;
}

#[tokio::test]
async fn a_transport_failure_is_retried_later_with_growing_backoff_and_never_acknowledged() {
    let users = MemoryUsers::default();
    let ada = users.add("Ada");
    // The mail directory is replaced by a regular file once the transport has started.
    let app = Harness::start_with(users, FAST, |dir| {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::write(dir, b"not a directory").unwrap();
    })
    .await;
    let id = app.outbox.push(ada, EmailKind::BookingConfirmed);

    let base = NotificationsConfig::new(TransportConfig::MailDir(PathBuf::new())).base_backoff;
    for attempt in 1..=4_u32 {
        eventually("the failure is reported", || {
            app.outbox.retries(id).len() == attempt as usize
        })
        .await;
        let retries = app.outbox.retries(id);
        let (now, retry_at, error) = retries.last().unwrap();
        let delay = *retry_at - *now;
        let expected = base * 2_u32.pow(attempt - 1);
        assert!(
            delay >= expected && delay <= expected.mul_f64(1.1),
            "attempt {attempt}: waited {delay}, expected {expected:?} plus at most 10 %"
        );
        assert!(error.contains("mail directory"), "{error}");
        assert!(!app.outbox.acknowledged(id));
        // Not claimed again before it is due.
        tokio::time::sleep(FAST * 4).await;
        assert_eq!(app.outbox.claims(id), attempt);
        app.clock.advance(delay);
    }
    assert!(!app.outbox.acknowledged(id));
    app.shut_down().await;
}

#[tokio::test]
async fn a_message_whose_user_is_gone_is_acknowledged_without_an_email() {
    let users = MemoryUsers::default();
    let ada = users.add("Ada");
    let app = Harness::start(users, FAST).await;
    let orphan = app.outbox.push(Uuid::now_v7(), EmailKind::BookingConfirmed);
    let kept = app.outbox.push(ada, EmailKind::BookingConfirmed);

    eventually("both are acknowledged", || {
        app.outbox.acknowledged(orphan) && app.outbox.acknowledged(kept)
    })
    .await;
    assert_eq!(app.emails(), [app.email_of(kept)]);
    assert!(app.outbox.retries(orphan).is_empty());
    app.shut_down().await;
}

#[tokio::test]
async fn a_redelivered_message_overwrites_its_file() {
    let users = MemoryUsers::default();
    let ada = users.add("Ada");
    let app = Harness::start(users, FAST).await;
    // The first acknowledgement is lost, as if the worker died right after sending.
    app.outbox.lose_acks.store(1, Ordering::SeqCst);
    let id = app.outbox.push(ada, EmailKind::BookingConfirmed);

    eventually("the acknowledgement was tried", || {
        app.outbox.lose_acks.load(Ordering::SeqCst) == 0
    })
    .await;
    assert!(!app.outbox.acknowledged(id));
    assert_eq!(app.emails(), [app.email_of(id)]);
    let first = std::fs::read_to_string(app.email_of(id)).unwrap();

    // The lease runs out; the message is claimed and sent again.
    let lease = NotificationsConfig::new(TransportConfig::MailDir(PathBuf::new())).lease;
    app.clock
        .advance(time::Duration::try_from(lease).unwrap() + time::Duration::SECOND);
    eventually("the redelivery is acknowledged", || {
        app.outbox.acknowledged(id)
    })
    .await;

    assert_eq!(app.outbox.claims(id), 2);
    assert_eq!(
        app.emails(),
        [app.email_of(id)],
        "still one file per Message-ID"
    );
    let second = std::fs::read_to_string(app.email_of(id)).unwrap();
    assert_ne!(
        first, second,
        "the file was rewritten (its Date moved with the clock)"
    );
    assert!(second.contains(&format!("Message-ID: <{id}@boxoffice>")));
    assert!(
        std::fs::read_dir(app.dir.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "staging left behind"
    );
    app.shut_down().await;
}

#[tokio::test]
async fn each_batch_is_acknowledged_in_one_call_once_it_is_done() {
    let users = MemoryUsers::gated();
    let ada = users.add("Ada");
    let app = Harness::start(users, FAST).await;
    let (entered, release) = app.users.gate.as_ref().unwrap();
    // The worker takes the first message alone and is held in the middle of it while three
    // more arrive: they make its next batch.
    let first = app.outbox.push(ada, EmailKind::BookingConfirmed);
    entered.notified().await;
    let more: Vec<Uuid> = (0..3)
        .map(|_| app.outbox.push(ada, EmailKind::BookingConfirmed))
        .collect();
    let everything = || {
        std::iter::once(first)
            .chain(more.iter().copied())
            .all(|id| app.outbox.acknowledged(id))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !everything() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the acknowledgements"
        );
        release.notify_one();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let batches = app.outbox.batches.lock().unwrap().clone();
    let acks = app.outbox.acks.lock().unwrap().clone();
    assert_eq!(batches, [vec![first], more.clone()]);
    assert_eq!(
        acks, batches,
        "one acknowledgement per batch, carrying the whole batch"
    );
    assert_eq!(app.emails().len(), 4);
    app.shut_down().await;
}

#[tokio::test]
async fn the_worker_stops_promptly_when_idle() {
    let app = Harness::start(MemoryUsers::default(), Duration::from_secs(3600)).await;
    eventually("the worker polled", || {
        app.outbox.claim_calls.load(Ordering::SeqCst) >= 1
    })
    .await;
    app.stop.cancel();
    tokio::time::timeout(Duration::from_secs(1), app.worker)
        .await
        .expect("the worker did not stop within a second")
        .unwrap();
}

#[tokio::test]
async fn on_stop_the_message_in_hand_is_finished_and_no_other_is_started() {
    let users = MemoryUsers::gated();
    let ada = users.add("Ada");
    let mut app = Harness::start(users, FAST).await;
    let first = app.outbox.push(ada, EmailKind::BookingConfirmed);
    let second = app.outbox.push(ada, EmailKind::BookingConfirmed);
    let (entered, release) = app.users.gate.as_ref().unwrap();

    entered.notified().await;
    app.stop.cancel();
    release.notify_one();
    tokio::time::timeout(Duration::from_secs(5), &mut app.worker)
        .await
        .expect("did not stop")
        .unwrap();

    assert!(
        app.outbox.acknowledged(first),
        "the message in hand was not finished"
    );
    assert!(
        !app.outbox.acknowledged(second),
        "a new message was started after stop"
    );
    assert_eq!(app.emails(), [app.email_of(first)]);
}

#[tokio::test]
async fn the_waker_cuts_the_poll_short() {
    let users = MemoryUsers::default();
    let ada = users.add("Ada");
    let app = Harness::start(users, Duration::from_secs(3600)).await;
    eventually("the worker polled", || {
        app.outbox.claim_calls.load(Ordering::SeqCst) >= 1
    })
    .await;
    // Let it settle into its hour-long sleep.
    tokio::time::sleep(FAST * 4).await;

    let id = app.outbox.push(ada, EmailKind::BookingConfirmed);
    app.waker.wake();
    eventually("the email went out", || app.outbox.acknowledged(id)).await;
    assert_eq!(app.emails(), [app.email_of(id)]);
    app.shut_down().await;
}

#[test]
fn backoff_doubles_from_the_base_up_to_the_cap() {
    let base = Duration::from_secs(2);
    let cap = Duration::from_secs(15 * 60);
    let waits: Vec<_> = (0..10)
        .map(|attempts| backoff(attempts, base, cap).as_secs())
        .collect();
    assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 512, 900]);
    assert_eq!(backoff(u32::MAX, base, cap), cap);
    for _ in 0..100 {
        let delay = jitter(Duration::from_secs(100), cap);
        assert!(
            delay >= Duration::from_secs(100) && delay <= Duration::from_secs(110),
            "{delay:?}"
        );
        assert_eq!(jitter(cap, cap), cap);
    }
}
