//! Waiting rooms ([`crate::queue`]) as the service runs them: joins group-committed by a task of
//! their own, a ticker that moves each open room on every second, each room's latest head
//! published to this process's streams, and the admission check of bookings and holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use boxoffice_shared::clients::WaitingRoom;
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::token::AuthUser;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::{BookingService, Inner};
use crate::error::BookingError;
use crate::queue::RoomJoins;
use crate::queue::admission::{Admission, AdmissionKey};
use crate::queue::store::QueueStore;
use crate::queue::{Head, Place, QueueState, QueueTicket, opened, waiting_ticket};

/// How often each open room is moved on.
pub const TICK: Duration = Duration::from_secs(1);
/// The most joins one transaction takes.
const MAX_JOINS: usize = 1024;

/// The waiting rooms of this process.
pub struct WaitingRooms {
    store: QueueStore,
    joins: mpsc::Sender<Join>,
    key: AdmissionKey,
    /// Each room's latest head as this process saw it, for the streams.
    heads: Mutex<HashMap<Uuid, watch::Sender<Head>>>,
    clock: SharedClock,
}

/// One join waiting for the batch.
struct Join {
    concert_id: Uuid,
    opens_at: Option<OffsetDateTime>,
    user_id: Uuid,
    reply: oneshot::Sender<Result<(Place, bool, Head), BookingError>>,
}

impl WaitingRooms {
    /// The room's latest head, as a stream waits on it.
    fn watch(&self, concert_id: Uuid) -> watch::Receiver<Head> {
        let mut heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        heads
            .entry(concert_id)
            .or_insert_with(|| watch::channel(Head::default()).0)
            .subscribe()
    }

    /// Tells this process's streams of the room's `head`, if it moved on.
    fn publish(&self, concert_id: Uuid, head: Head) {
        let heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = heads.get(&concert_id) {
            sender.send_if_modified(|seen| {
                // Heads only move forward; an older one read late changes nothing.
                let newer = (head.shuffled && !seen.shuffled)
                    || head.ranked > seen.ranked
                    || head.admitted > seen.admitted;
                if newer {
                    *seen = Head {
                        shuffled: seen.shuffled || head.shuffled,
                        ranked: seen.ranked.max(head.ranked),
                        admitted: seen.admitted.max(head.admitted),
                    };
                }
                newer
            });
        }
    }
}

impl BookingService {
    /// Opens the waiting rooms on `store` and starts their join batches and ticker on `tasks`.
    pub fn open_waiting_rooms(&self, store: QueueStore, tasks: &TaskTracker) {
        let (joins, queued) = mpsc::channel(MAX_JOINS * 4);
        let key = AdmissionKey::new(&self.inner.tickets.derived_secret(ADMISSION_KEY_LABEL));
        let rooms = Arc::new(WaitingRooms {
            store,
            joins,
            key,
            heads: Mutex::new(HashMap::new()),
            clock: self.inner.clock.clone(),
        });
        if self.inner.rooms.set(rooms.clone()).is_ok() {
            tasks.spawn(run_joins(Arc::downgrade(&rooms), queued));
            tasks.spawn(run_ticker(
                Arc::downgrade(&self.inner),
                self.inner.stop.clone(),
            ));
        }
    }

    fn rooms(&self) -> Result<&Arc<WaitingRooms>, BookingError> {
        self.inner
            .rooms
            .get()
            .ok_or(BookingError::NotFound("this process runs no waiting rooms"))
    }

    /// The concert's waiting room and when its sales open, if it has a room and still sells.
    fn room_of(
        &self,
        concert_id: Uuid,
    ) -> Result<(WaitingRoom, Option<OffsetDateTime>), BookingError> {
        let view = self.inner.view.read();
        let sale = view
            .concerts
            .get(&concert_id)
            .ok_or(BookingError::ConcertNotFound)?;
        let room = sale
            .waiting_room
            .ok_or(BookingError::NotFound("this concert has no waiting room"))?;
        if sale.cancelled || self.inner.clock.now() >= sale.starts_at {
            return Err(BookingError::BookingClosed);
        }
        Ok((room, sale.opens_at))
    }

    /// Takes the caller's place in the concert's queue, or finds it again: the ticket, and
    /// whether the place is new.
    pub async fn join_queue(
        &self,
        caller: &AuthUser,
        concert_id: Uuid,
    ) -> Result<(QueueTicket, bool), BookingError> {
        let (room, opens_at) = self.room_of(concert_id)?;
        let rooms = self.rooms()?;
        let (reply, answer) = oneshot::channel();
        let join = Join {
            concert_id,
            opens_at,
            user_id: caller.user_id,
            reply,
        };
        rooms
            .joins
            .send(join)
            .await
            .map_err(|_| BookingError::WriterStopped)?;
        let (place, new, head) = answer.await.map_err(|_| BookingError::WriterStopped)??;
        let ticket = self
            .ticket_of(rooms, caller.user_id, concert_id, room, place, head)
            .await?;
        Ok((ticket, new))
    }

    /// The caller's ticket in the concert's queue; `not_found` before they joined.
    pub async fn queue_ticket(
        &self,
        caller: &AuthUser,
        concert_id: Uuid,
    ) -> Result<QueueTicket, BookingError> {
        self.room_of(concert_id)?;
        let rooms = self.rooms()?;
        let head = rooms.store.head(concert_id).await?;
        rooms.publish(concert_id, head);
        self.ticket_at(rooms, caller.user_id, concert_id, head, &mut None)
            .await
    }

    /// The caller's tickets as the room moves on: the first at once, then one whenever the
    /// position or state changes. `not_found` before they joined.
    pub async fn queue_updates(
        &self,
        caller: &AuthUser,
        concert_id: Uuid,
    ) -> Result<mpsc::Receiver<QueueTicket>, BookingError> {
        let first = self.queue_ticket(caller, concert_id).await?;
        let rooms = self.rooms()?.clone();
        // A place's rank never changes once given: read again only while it has none.
        let mut place = None;
        let mut heads = rooms.watch(concert_id);
        let (sender, receiver) = mpsc::channel(4);
        let service = self.clone();
        let user_id = caller.user_id;
        let stop = self.inner.stop.clone();
        tokio::spawn(async move {
            let mut last = first.clone();
            if sender.send(first).await.is_err() {
                return;
            }
            // Nothing follows an admission: the stream only stays open.
            while last.state == QueueState::Waiting {
                tokio::select! {
                    changed = heads.changed() => if changed.is_err() { return },
                    () = sender.closed() => return,
                    () = stop.cancelled() => return,
                }
                let head = *heads.borrow_and_update();
                let Ok(ticket) = service
                    .ticket_at(&rooms, user_id, concert_id, head, &mut place)
                    .await
                else {
                    continue;
                };
                if ticket.state != last.state || ticket.position != last.position {
                    last = ticket.clone();
                    if sender.send(ticket).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                () = sender.closed() => {}
                () = stop.cancelled() => {}
            }
        });
        Ok(receiver)
    }

    /// The user's ticket against `head` (this process's latest, which never runs ahead of the
    /// store); `known` is the place as last read, read again while it has no rank.
    async fn ticket_at(
        &self,
        rooms: &WaitingRooms,
        user_id: Uuid,
        concert_id: Uuid,
        head: Head,
        known: &mut Option<Place>,
    ) -> Result<QueueTicket, BookingError> {
        let (room, _) = self.room_of(concert_id)?;
        let place = match *known {
            Some(place) if place.rank.is_some() => place,
            _ => rooms
                .store
                .place(concert_id, user_id)
                .await?
                .ok_or(BookingError::NotFound("you have not joined this queue"))?,
        };
        *known = Some(place);
        self.ticket_of(rooms, user_id, concert_id, room, place, head)
            .await
    }

    /// What the API shows of `place` when the room is at `head`: waiting with a position, or
    /// admitted with the admission (while it lasts).
    async fn ticket_of(
        &self,
        rooms: &WaitingRooms,
        user_id: Uuid,
        concert_id: Uuid,
        room: WaitingRoom,
        place: Place,
        head: Head,
    ) -> Result<QueueTicket, BookingError> {
        if let Some(waiting) = waiting_ticket(concert_id, place, head, room) {
            return Ok(waiting);
        }
        let rank = place.rank.unwrap_or(1);
        let now = self.inner.clock.now();
        let admitted_at = rooms
            .store
            .admitted_at(concert_id, rank)
            .await?
            .unwrap_or(now);
        let until = admitted_at + time::Duration::seconds(i64::from(room.admission_ttl_seconds));
        let admission = (now < until).then(|| {
            rooms.key.sign(&Admission {
                concert_id,
                user_id,
                admitted_at,
                until,
            })
        });
        Ok(QueueTicket {
            concert_id,
            state: QueueState::Admitted,
            position: None,
            estimated_wait_seconds: None,
            admission,
            admitted_until: Some(until),
        })
    }

    /// Lets a booking or hold of `concert_id` by `caller` through its waiting room: a concert
    /// without one needs nothing; one with a room needs `token`, admitting this caller to it now
    /// and not yet used by a booking or hold.
    pub(crate) fn check_admission(
        &self,
        caller: &AuthUser,
        concert_id: Uuid,
        token: Option<&str>,
    ) -> Result<Option<Admission>, BookingError> {
        let has_room = self
            .inner
            .view
            .read()
            .concerts
            .get(&concert_id)
            .is_some_and(|sale| sale.waiting_room.is_some());
        if !has_room {
            return Ok(None);
        }
        let rooms = self
            .inner
            .rooms
            .get()
            .ok_or(BookingError::AdmissionRequired)?;
        let token = token.ok_or(BookingError::AdmissionRequired)?;
        let now = self.inner.clock.now();
        rooms
            .key
            .check(token, caller.user_id, concert_id, now)
            .map(Some)
            .map_err(|_| BookingError::AdmissionRequired)
    }

    /// Refuses an admission already used: a booking or hold of its user for its concert made
    /// since it was given.
    pub(crate) async fn refuse_used(&self, admission: &Admission) -> Result<(), BookingError> {
        let used = self
            .inner
            .store
            .booked_or_held_since(
                admission.user_id,
                admission.concert_id,
                admission.admitted_at,
            )
            .await?;
        if used {
            return Err(BookingError::AdmissionRequired);
        }
        Ok(())
    }
}

/// What the admission key is derived with from the ticket key.
const ADMISSION_KEY_LABEL: &[u8] = b"boxoffice waiting-room admissions v1";

/// Commits queued joins in batches until the rooms are dropped: one transaction for every join
/// waiting (up to [`MAX_JOINS`]), grouped by room in the order they came.
async fn run_joins(rooms: Weak<WaitingRooms>, mut queued: mpsc::Receiver<Join>) {
    let mut batch = Vec::with_capacity(MAX_JOINS);
    while queued.recv_many(&mut batch, MAX_JOINS).await > 0 {
        let Some(rooms) = rooms.upgrade() else { return };
        let mut order: Vec<Uuid> = Vec::new();
        let mut by_room: HashMap<Uuid, RoomJoins> = HashMap::new();
        for join in &batch {
            by_room
                .entry(join.concert_id)
                .or_insert_with(|| {
                    order.push(join.concert_id);
                    RoomJoins {
                        concert_id: join.concert_id,
                        opens_at: join.opens_at,
                        users: Vec::new(),
                    }
                })
                .users
                .push(join.user_id);
        }
        let groups: Vec<RoomJoins> = order.iter().filter_map(|id| by_room.remove(id)).collect();
        let now = rooms.clock.now();
        match rooms.store.join(groups.clone(), now).await {
            Ok(joined) => {
                let mut answers = HashMap::new();
                for (group, joined) in groups.iter().zip(joined) {
                    rooms.publish(group.concert_id, joined.head);
                    answers.insert(group.concert_id, (joined.head, joined.places.into_iter()));
                }
                for join in batch.drain(..) {
                    let answer = answers
                        .get_mut(&join.concert_id)
                        .and_then(|(head, places)| {
                            places.next().map(|(place, new)| (place, new, *head))
                        })
                        .ok_or_else(|| BookingError::Corrupt("a join went unanswered".into()));
                    let _ = join.reply.send(answer);
                }
            }
            Err(error) => {
                tracing::warn!(%error, joins = batch.len(), "a batch of queue joins failed");
                let message = error.to_string();
                for join in batch.drain(..) {
                    let _ = join.reply.send(Err(BookingError::Corrupt(message.clone())));
                }
            }
        }
    }
}

/// Every [`TICK`], moves on each room of a concert that has a waiting room and has opened:
/// shuffles it at the opening, then admits at its rate. Several instances may tick one room:
/// the store's lock and its record of the last tick make that the same as one.
async fn run_ticker(service: Weak<Inner>, stop: CancellationToken) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        let Some(inner) = service.upgrade() else {
            return;
        };
        let Some(rooms) = inner.rooms.get().cloned() else {
            return;
        };
        let now = inner.clock.now();
        let open: Vec<(Uuid, Option<OffsetDateTime>, WaitingRoom)> = inner
            .view
            .read()
            .concerts
            .iter()
            .filter(|(_, sale)| {
                !sale.cancelled && now < sale.starts_at && opened(sale.opens_at, now)
            })
            .filter_map(|(id, sale)| sale.waiting_room.map(|room| (*id, sale.opens_at, room)))
            .collect();
        drop(inner);
        for (concert_id, opens_at, room) in open {
            if let Err(error) = tick_room(&rooms, concert_id, opens_at, room, now).await {
                tracing::warn!(%error, %concert_id, "a waiting room's tick failed");
            }
        }
    }
}

/// One room's tick: only a read when nothing waits.
async fn tick_room(
    rooms: &WaitingRooms,
    concert_id: Uuid,
    opens_at: Option<OffsetDateTime>,
    room: WaitingRoom,
    now: OffsetDateTime,
) -> Result<(), BookingError> {
    let head = rooms.store.head(concert_id).await?;
    let idle = head.shuffled && head.admitted == head.ranked;
    let head = if idle {
        head
    } else {
        rooms
            .store
            .tick(concert_id, opens_at, room.admit_per_minute, now)
            .await?
    };
    rooms.publish(concert_id, head);
    Ok(())
}
