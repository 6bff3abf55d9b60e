//! What one batch of the SQLite writer is made of, and what it leaves behind: the [`Job`]s it
//! runs, the view changes it stages per command ([`Staged`]) and gathers ([`Effects`]) until the
//! commit, and the answers it sends once the commit's fate is known ([`Answer`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use boxoffice_shared::clients::OutboxMessage;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::checkin::{CheckedIn, Scan};
use crate::command::{Command, Refund, Reply};
use crate::error::BookingError;
use crate::view::{ConcertSale, Seat, SharedInventory};
use crate::webhook::{Attempted, Claimed, NewEndpoint, Subscribed};

/// What the SQLite writer runs: the service's commands, and the outbox's changes, which go
/// through the writer too since it holds the only write connection.
#[derive(Debug)]
pub enum Job {
    Command(Command),
    Outbox(OutboxJob),
    Refunds(RefundJob),
    /// Decides a scan at the door and checks the ticket in when it admits.
    CheckIn(Scan, Reply<CheckedIn>),
    Webhooks(WebhookJob),
}

/// A change to the refund queue, asked by the refund worker.
#[derive(Debug)]
pub enum RefundJob {
    Claim(u32, Duration, Reply<Vec<Refund>>),
    Done(Uuid, Reply<()>),
    Retry(Uuid, OffsetDateTime, String, Reply<()>),
}

/// A change to the outbox, asked by the notifications worker.
#[derive(Debug)]
pub enum OutboxJob {
    Claim(u32, Duration, Reply<Vec<OutboxMessage>>),
    Acknowledge(Vec<Uuid>, Reply<()>),
    Retry(Uuid, OffsetDateTime, String, Reply<()>),
}

/// A change to webhooks, made by the writer in its batch.
#[derive(Debug)]
pub enum WebhookJob {
    Create(NewEndpoint, Subscribed, Reply<()>),
    /// Disables an endpoint as deleted; answers whether there was one to delete.
    Delete(Uuid, Subscribed, Reply<bool>),
    /// Fans out up to this many events; answers how many.
    FanOut(u32, Reply<usize>),
    Claim(u32, Duration, Reply<Vec<Claimed>>),
    Record(Vec<Attempted>, Subscribed, Reply<()>),
}

/// Changes a batch makes to the in-memory view, applied only once the batch is committed.
#[derive(Default)]
pub struct Effects {
    pub remaining: HashMap<Uuid, i64>,
    pub capacity: HashMap<Uuid, i64>,
    pub concerts: HashMap<Uuid, ConcertSale>,
    pub new_seats: Vec<(Uuid, Seat)>,
    pub touched: HashSet<Uuid>,
    pub emails: usize,
    /// Some hold started or ended: when the next one expires is read again before the commit.
    pub holds_changed: bool,
    /// When the next active hold expires, read before the commit of a batch that changed holds.
    pub next_hold_expiry: Option<Option<OffsetDateTime>>,
    /// A savepoint could not be released or rolled back: the batch must not commit.
    pub poisoned: bool,
    /// Webhook events of the batch, queued just before it commits (`webhooks::flush`).
    pub webhooks: Vec<crate::webhook::Queued>,
    /// Tickets the batch checked in, with their scans' nonces: remembered once it commits.
    pub admitted: Vec<(CheckedIn, Option<String>)>,
    /// Bookings the batch cancelled: forgotten as checked in once it commits.
    pub cancelled: Vec<Uuid>,
}

/// The view changes of one command, kept apart until its savepoint is released, so that a
/// command that fails halfway leaves no trace in the view either.
#[derive(Default)]
pub struct Staged {
    /// A statement failed after this command had already written: the batch must not commit.
    pub poisoned: bool,
    pub remaining: Vec<(Uuid, i64)>,
    pub capacity: Vec<(Uuid, i64)>,
    pub concerts: Vec<(Uuid, ConcertSale)>,
    pub new_seats: Vec<(Uuid, Seat)>,
    pub touched: Vec<Uuid>,
    pub emails: usize,
    pub holds_changed: bool,
    /// Seat types (with their concerts) whose seats the command freed: the writer offers them
    /// to their waiting lists before the command counts as done.
    pub freed: Vec<(Uuid, Uuid)>,
    pub webhooks: Vec<crate::webhook::Queued>,
    /// Bookings the command cancelled.
    pub cancelled: Vec<Uuid>,
}

impl Effects {
    pub fn absorb(&mut self, staged: Staged, succeeded: bool) {
        self.poisoned |= staged.poisoned;
        if !succeeded {
            return;
        }
        self.remaining.extend(staged.remaining);
        self.capacity.extend(staged.capacity);
        self.concerts.extend(staged.concerts);
        self.new_seats.extend(staged.new_seats);
        self.touched.extend(staged.touched);
        self.emails += staged.emails;
        self.holds_changed |= staged.holds_changed;
        self.webhooks.extend(staged.webhooks);
        self.cancelled.extend(staged.cancelled);
    }

    /// `remaining` of a seat type as this batch has left it so far.
    pub fn remaining(&self, view: &SharedInventory, seat_type_id: Uuid) -> Option<i64> {
        self.remaining.get(&seat_type_id).copied().or_else(|| {
            view.read()
                .seats
                .get(&seat_type_id)
                .map(|seat| seat.remaining)
        })
    }

    /// A concert's sale as this batch has left it so far.
    pub fn sale(&self, view: &SharedInventory, concert_id: Uuid) -> Option<ConcertSale> {
        self.concerts
            .get(&concert_id)
            .cloned()
            .or_else(|| view.read().concerts.get(&concert_id).cloned())
    }
}

/// An answer to send once the batch's fate is known.
pub type Answer = Box<dyn FnOnce(bool) + Send>;

pub fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, BookingError>) -> Answer {
    Box::new(move |committed| {
        let result = if committed {
            result
        } else {
            result.and(Err(BookingError::WriterStopped))
        };
        // The caller may have gone away (client disconnected); the work stands regardless.
        let _ = reply.send(result);
    })
}
