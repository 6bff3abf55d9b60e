//! Writes on their way to their concert's owner, batched: one HTTP request carries every write
//! that queued for the same owner while the previous batches were on the wire.
//!
//! A request per write cost the forwarding instance about as much CPU as making the write
//! (a client request, a server request, JSON twice), which on CPU-capped instances ate what
//! ownership saves. Batched, the hop costs a few microseconds per write, and the owner hands the
//! whole batch to its writer at once, where it is group-committed like local writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use boxoffice_shared::component::Url;
use boxoffice_shared::remote::ServiceCredential;
use boxoffice_shared::token::Role;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

/// The owner's route for batches of forwarded writes.
pub const BATCH_PATH: &str = "/internal/v1/owned/batch";
/// The most writes one batch carries: at ~300–450 bytes of JSON each (an admission token is the
/// longest part), well within the 64 KiB every request body is held to.
const MAX_BATCH: usize = 128;
/// Batches on the wire to one owner at once; more writes wait and go in the next batch.
const IN_FLIGHT: usize = 4;
/// How many writes may wait for one owner before senders wait for room.
const QUEUE: usize = 8192;
/// How long a batch may take: the owner answers after its commits, which a storm queues.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Which write is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Write {
    Booking,
    Hold,
}

/// A new booking or hold as the owner receives it: the caller the forwarding instance
/// authenticated, and the request as the caller sent it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnedWrite {
    pub kind: Write,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub idempotency_key: Option<String>,
    pub admission: Option<String>,
}

/// The owner's answer to one write, as its HTTP answer would have been: the status, the headers
/// a client reads, and the body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    /// (name, value) of `Content-Type`, `Location`, `Retry-After`, `Idempotent-Replayed`.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A batch on the wire: the writes, and the owner's answers in the same order.
#[derive(Debug, Serialize, Deserialize)]
pub struct Batch<T> {
    pub items: Vec<T>,
}

/// Why a forward has no answer.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The owner could not be connected to: nothing was sent, the write may be made elsewhere.
    NotSent,
    /// Sent, but no answer came back: the owner may have made the write.
    Lost(String),
}

struct Pending {
    write: OwnedWrite,
    reply: oneshot::Sender<Result<Answer, Failure>>,
}

/// The batching links to every owner this instance forwards to.
pub struct Forwarder {
    http: reqwest::Client,
    credential: ServiceCredential,
    links: Mutex<HashMap<Url, mpsc::Sender<Pending>>>,
}

impl Forwarder {
    pub fn new(http: reqwest::Client, credential: ServiceCredential) -> Self {
        Self {
            http,
            credential,
            links: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `write` to the owner at `owner` with whatever else is on its way there, and waits
    /// for the owner's answer.
    pub async fn send(&self, owner: &Url, write: OwnedWrite) -> Result<Answer, Failure> {
        let link = self.link(owner);
        let (reply, answer) = oneshot::channel();
        link.send(Pending { write, reply })
            .await
            .map_err(|_| Failure::Lost("the forwarding link stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| Failure::Lost("the forwarding link stopped".to_owned()))?
    }

    /// The queue to `owner`, started on first use.
    fn link(&self, owner: &Url) -> mpsc::Sender<Pending> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = links.get(owner).filter(|link| !link.is_closed()) {
            return link.clone();
        }
        let (sender, queue) = mpsc::channel(QUEUE);
        let mut url = owner.clone();
        url.set_path(BATCH_PATH);
        let link = Link {
            url,
            http: self.http.clone(),
            credential: self.credential.clone(),
        };
        tokio::spawn(link.run(queue));
        links.insert(owner.clone(), sender.clone());
        sender
    }
}

/// One owner's batching task: it ends when the forwarder is dropped.
struct Link {
    url: Url,
    http: reqwest::Client,
    credential: ServiceCredential,
}

impl Link {
    async fn run(self, mut queue: mpsc::Receiver<Pending>) {
        let link = Arc::new(self);
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(_) => break,
                }
            }
            let link = link.clone();
            tokio::spawn(async move {
                link.deliver(batch).await;
                drop(permit);
            });
        }
    }

    /// Sends one batch and hands each write its answer.
    async fn deliver(&self, batch: Vec<Pending>) {
        let (writes, replies): (Vec<OwnedWrite>, Vec<_>) = batch
            .into_iter()
            .map(|pending| (pending.write, pending.reply))
            .unzip();
        metrics::histogram!("booking_forward_batch_size").record(writes.len() as f64);
        match self.post(writes).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(failure) => {
                for reply in replies {
                    let _ = reply.send(Err(failure.clone()));
                }
            }
        }
    }

    async fn post(&self, writes: Vec<OwnedWrite>) -> Result<Vec<Answer>, Failure> {
        let count = writes.len();
        let request = self
            .http
            .post(self.url.clone())
            .json(&Batch { items: writes })
            .timeout(TIMEOUT);
        let response = match self.credential.authorize(request).send().await {
            Ok(response) => response,
            Err(error) if error.is_connect() => return Err(Failure::NotSent),
            Err(error) => return Err(Failure::Lost(format!("{error}"))),
        };
        if !response.status().is_success() {
            return Err(Failure::Lost(format!(
                "the owner answered {}",
                response.status()
            )));
        }
        let answers = (response.json::<Batch<Answer>>().await)
            .map_err(|error| Failure::Lost(format!("the owner's answer: {error}")))?
            .items;
        if answers.len() != count {
            return Err(Failure::Lost(format!(
                "the owner answered {} of {count} writes",
                answers.len(),
            )));
        }
        Ok(answers)
    }
}
