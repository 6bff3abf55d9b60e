//! What the service asks of a store's writer and what it is answered: neutral ground that
//! neither store owns, so that [`crate::sqlite`] and [`crate::postgres`] never import each other.
//!
//! A [`Command`] carries its own [`Reply`]; the writer answers it only once its batch is
//! committed (or known not to be). [`confirmed_booking`] is the one place a new booking is made,
//! and [`fill_batch`] the one place a writer takes what is queued for its next batch.

use std::sync::Arc;

use boxoffice_shared::clients::ConcertInventory;
use boxoffice_shared::clock::SharedClock;
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{
    Booking, BookingPayment, BookingPaymentStatus, BookingStatus, IdempotencyKey, Provider,
};
use crate::error::BookingError;
use crate::events::AvailabilityEvent;
use crate::hold::{Failed, Hold, HoldRequest, Paid};
use crate::view::Seat;
use crate::waitlist::{JoinRequest, OfferTerms, WaitlistEntry};

/// The most commands committed in one transaction.
pub const MAX_BATCH: usize = 1024;

/// How many commands may wait for the writer before callers wait to enqueue (back-pressure).
pub const QUEUE_CAPACITY: usize = 16 * 1024;

/// A booking request that passed the view's checks.
#[derive(Debug, Clone)]
pub struct BookRequest {
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub seat_type_id: Uuid,
    pub key: Option<IdempotencyKey>,
    /// Who takes the money for a seat with a price: one-step bookings are paid in the booking's
    /// transaction (only the simulated provider can).
    pub provider: Provider,
}

/// What a request that creates something (a booking, a hold) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made<T> {
    Created(T),
    /// The same Idempotency-Key and body were seen before: the saved answer.
    Replayed {
        status: u16,
        body: String,
    },
}

/// What a booking request came to.
pub type BookOutcome = Made<Booking>;

/// What a hold request came to.
pub type HoldOutcome = Made<Hold>;

/// Who asks to cancel a booking.
#[derive(Debug, Clone, Copy)]
pub struct Canceller {
    pub user_id: Uuid,
    pub is_admin: bool,
}

/// Where the writer sends a command's answer.
pub type Reply<T> = oneshot::Sender<Result<T, BookingError>>;

/// A change to the Booking store, for the writer of whichever store runs.
#[derive(Debug)]
pub enum Command {
    Book(BookRequest, Reply<BookOutcome>),
    Cancel(Uuid, Canceller, Reply<Booking>),
    Hold(HoldRequest, Reply<HoldOutcome>),
    /// Releases the hold (first) of the user (second).
    Release(Uuid, Uuid, Reply<Hold>),
    /// Records a payment the provider took: the hold becomes a booking.
    Pay(Paid, Reply<Hold>),
    /// Records a payment attempt the provider refused: the hold's payment is `failed`.
    PaymentFailed(Failed, Reply<Hold>),
    /// Expires every hold whose `expires_at` has passed; answers how many.
    ExpireHolds(Reply<usize>),
    /// Puts a fan on a sold-out seat type's waiting list.
    JoinWaitlist(JoinRequest, Reply<WaitlistEntry>),
    /// Takes the entry (first) of the user (second) off the list; an offered seat goes on.
    LeaveWaitlist(Uuid, Uuid, Reply<()>),
    /// A change of the inventory itself, made by Catalog.
    Administer(Admin),
}

/// The inventory changes Catalog asks for: rare, and each on its own.
#[derive(Debug)]
pub enum Admin {
    Provision(ConcertInventory, Reply<()>),
    SetCapacity(Uuid, i64, Reply<(i64, i64)>),
    CancelConcert(Uuid, Reply<()>),
}

/// A refund claimed from the queue, to hand to the payment provider.
#[derive(Debug, Clone)]
pub struct Refund {
    pub id: Uuid,
    /// The provider's name for the payment to give back.
    pub payment_ref: String,
    pub amount_cents: i64,
    /// How often it has been claimed, this time included.
    pub attempts: u32,
}

/// A saved answer to an idempotent request.
#[derive(Debug, Clone)]
pub struct SavedResponse {
    pub request_hash: Vec<u8>,
    pub status: u16,
    pub body: String,
}

/// What a saved answer means for a request with the fingerprint `fingerprint`: the same
/// request again (replay the answer), or another request reusing the key (refused).
pub fn replay<T>(saved: SavedResponse, fingerprint: &[u8; 32]) -> Result<Made<T>, BookingError> {
    if saved.request_hash.as_slice() == fingerprint.as_slice() {
        Ok(Made::Replayed {
            status: saved.status,
            body: saved.body,
        })
    } else {
        Err(BookingError::IdempotencyKeyReused)
    }
}

/// The booking a request makes, at the seat type's price.
pub fn confirmed_booking(request: &BookRequest, seat: &Seat, now: OffsetDateTime) -> Booking {
    let id = Uuid::now_v7();
    Booking {
        id,
        user_id: request.user_id,
        concert_id: request.concert_id,
        seat_type_id: request.seat_type_id,
        status: BookingStatus::Confirmed,
        price_cents: seat.price_cents,
        currency: seat.currency.clone(),
        created_at: now,
        cancelled_at: None,
        payment: (seat.price_cents > 0).then_some(BookingPayment {
            provider: request.provider,
            amount_cents: seat.price_cents,
            status: BookingPaymentStatus::Succeeded,
        }),
    }
}

/// Refuses a one-step booking of a priced seat when the provider cannot charge in one step
/// (the client must confirm the payment: a hold, then the provider).
pub fn payable_in_one_step(request: &BookRequest, seat: &Seat) -> Result<(), BookingError> {
    if seat.price_cents > 0 && !request.provider.charges_in_one_step() {
        return Err(BookingError::PaymentRequired);
    }
    Ok(())
}

/// The booking a paid hold becomes, at the hold's price, with the payment when there was one
/// (a seat of price 0 is not charged).
pub fn paid_booking(hold: &Hold, paid: &Paid, now: OffsetDateTime) -> Booking {
    Booking {
        id: Uuid::now_v7(),
        user_id: hold.user_id,
        concert_id: hold.concert_id,
        seat_type_id: hold.seat_type_id,
        status: BookingStatus::Confirmed,
        price_cents: hold.price_cents,
        currency: hold.currency.clone(),
        created_at: now,
        cancelled_at: None,
        payment: paid.reference.as_ref().map(|_| BookingPayment {
            provider: hold.payment.provider,
            amount_cents: hold.price_cents,
            status: BookingPaymentStatus::Succeeded,
        }),
    }
}

/// Whether a store's refusal to complete a paid hold means its payment goes back: the hold was
/// released, no seat was left after it expired, the sale closed, or the user booked otherwise.
pub fn refunds_payment(error: &BookingError) -> bool {
    matches!(
        error,
        BookingError::HoldNotActive
            | BookingError::SoldOut
            | BookingError::BookingClosed
            | BookingError::AlreadyBooked
    )
}

/// What the payer of a hold that could not be completed is answered: "sold out" means their
/// hold expired and its seat went to someone else.
pub fn unbookable_answer(refused: BookingError) -> BookingError {
    match refused {
        BookingError::SoldOut => BookingError::HoldExpired,
        other => other,
    }
}

/// The body saved for a created booking's Idempotency-Key, and replayed on a retry.
pub fn booking_json(booking: &Booking) -> Result<String, BookingError> {
    saved_json(booking)
}

/// The body saved for what a request with an Idempotency-Key created (a booking, a hold).
pub fn saved_json(made: &impl serde::Serialize) -> Result<String, BookingError> {
    serde_json::to_string(made).map_err(|error| BookingError::Corrupt(error.to_string()))
}

/// Why the writer's queue did not take a command at once.
#[derive(Debug)]
pub enum NotQueued {
    /// The queue is full: the command, to queue again once there is room (back-pressure). Boxed
    /// only then, so that the answer of the usual case stays small.
    Full(Box<Command>),
    /// The writer has stopped.
    Stopped,
}

/// Starts a batch with `first` and adds every command already queued behind it, up to
/// [`MAX_BATCH`]: a writer never waits for a batch to fill.
pub fn fill_batch<T>(first: T, queue: &mut mpsc::Receiver<T>, batch: &mut Vec<T>) {
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(command) => batch.push(command),
            Err(_) => break,
        }
    }
}

/// One seat type's row of the sales report, as stored: `held` counts the holds stored active.
pub struct SeatSalesRow {
    pub id: Uuid,
    pub name: String,
    pub capacity: i64,
    pub remaining: i64,
    pub held: i64,
    /// Money given back (refunds the provider confirmed).
    pub refunded_cents: i64,
    pub price_cents: i64,
    pub currency: String,
}

/// Per seat type its [`SeatSalesRow`], and booking counts by status, for the sales report.
pub struct SalesRows {
    pub seat_types: Vec<SeatSalesRow>,
    pub confirmed: i64,
    pub cancelled: i64,
    /// Confirmed bookings by the UTC day they were made (`YYYY-MM-DD`), oldest first.
    pub by_day: Vec<(String, i64)>,
}

/// What a store is started with: how its writer tells the rest of the service what changed.
#[derive(Clone)]
pub struct Wiring {
    pub clock: SharedClock,
    /// Availability changes, for the SSE streams.
    pub events: broadcast::Sender<AvailabilityEvent>,
    /// Poked when a concert's start changes, so the closing timer re-plans.
    pub schedule: Arc<Notify>,
    /// Poked after a commit that queued emails, when the notifications worker runs in this
    /// process.
    pub on_email: Option<Arc<Notify>>,
    /// This instance, when the notifications worker runs in this process: the owner of its
    /// outbox leases.
    pub instance: Option<Uuid>,
    /// Ends the store's background tasks.
    pub stop: CancellationToken,
    /// What a waiting-list offer is: how long it lasts, who takes the money.
    pub offers: OfferTerms,
    /// The event types some webhook endpoint subscribes to ([`crate::webhook`]).
    pub webhooks: crate::webhook::Subscribed,
}
