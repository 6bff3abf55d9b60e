//! Availability change notifications, the closing timer and the SSE stream.
//!
//! The writer publishes [`AvailabilityEvent::Changed`] for every concert a committed batch
//! touched. The closing timer sleeps until the next concert start and publishes
//! [`AvailabilityEvent::Closed`] at that instant (sales are refused from then on by the
//! transaction's own time check; the event only tells watchers). The SSE handler turns these
//! into `availability` events, coalesced to at most one per 100 ms per stream, and a `closed`
//! event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use boxoffice_shared::clock::SharedClock;
use futures_util::Stream;
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::http::AvailabilityResponse;
use crate::view::SharedInventory;

/// The shortest gap between two `availability` events of one stream.
pub const COALESCE: Duration = Duration::from_millis(100);

/// Something happened to a concert's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvailabilityEvent {
    /// Counts or the sale window changed (a booking, a cancellation, provisioning…).
    Changed(Uuid),
    /// Sales closed: the concert started.
    Closed(Uuid),
}

/// Publishes `Closed` for each concert at its `starts_at`. Re-plans when `schedule` is poked
/// (a concert was added or moved) and at least once a minute.
pub async fn run_closing_timer(
    view: SharedInventory,
    clock: SharedClock,
    events: broadcast::Sender<AvailabilityEvent>,
    schedule: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut checked_until = clock.now();
    loop {
        let now = clock.now();
        let due: Vec<Uuid> = {
            let view = view.read();
            view.concerts
                .iter()
                .filter(|(_, concert)| {
                    !concert.cancelled
                        && concert.starts_at > checked_until
                        && concert.starts_at <= now
                })
                .map(|(id, _)| *id)
                .collect()
        };
        for concert in due {
            tracing::info!(%concert, "sales closed: the concert has started");
            let _ = events.send(AvailabilityEvent::Closed(concert));
        }
        checked_until = now;
        let next = view.read().next_close_after(now).map(|(at, _)| at);
        let wait = next
            .map(|at| duration_until(now, at))
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = schedule.notified() => {}
            () = stop.cancelled() => return,
        }
    }
}

fn duration_until(now: OffsetDateTime, at: OffsetDateTime) -> Duration {
    let gap = at - now;
    // A millisecond late rather than early: the event must not precede the close.
    Duration::try_from(gap).unwrap_or(Duration::ZERO) + Duration::from_millis(1)
}

/// The SSE stream of one concert's availability: once on connect, then on change (coalesced),
/// and `closed` when sales close. Ends when the server shuts down.
pub fn availability_stream(
    concert_id: Uuid,
    view: SharedInventory,
    clock: SharedClock,
    mut events: broadcast::Receiver<AvailabilityEvent>,
    stop: CancellationToken,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (sender, receiver) = mpsc::channel::<Result<Event, Infallible>>(16);
    let snapshot = move || {
        view.read()
            .availability(concert_id, clock.now())
            .map(AvailabilityResponse::from)
            .and_then(|body| Event::default().event("availability").json_data(body).ok())
    };
    tokio::spawn(async move {
        if let Some(event) = snapshot()
            && sender.send(Ok(event)).await.is_err()
        {
            return;
        }
        let mut dirty = false;
        let mut last_sent = Instant::now();
        loop {
            let deadline = last_sent + COALESCE;
            tokio::select! {
                received = events.recv() => match received {
                    Ok(AvailabilityEvent::Changed(id)) if id == concert_id => dirty = true,
                    Ok(AvailabilityEvent::Closed(id)) if id == concert_id => {
                        let mut batch = Vec::new();
                        batch.extend(snapshot());
                        batch.push(Event::default().event("closed").data(format!("{{\"concert_id\":\"{concert_id}\"}}")));
                        for event in batch {
                            if sender.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                        dirty = false;
                        last_sent = Instant::now();
                    }
                    Ok(_) => {}
                    // Missed some events: the next snapshot covers them.
                    Err(broadcast::error::RecvError::Lagged(_)) => dirty = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep_until(deadline), if dirty => {
                    if let Some(event) = snapshot()
                        && sender.send(Ok(event)).await.is_err() {
                            return;
                        }
                    dirty = false;
                    last_sent = Instant::now();
                }
                () = sender.closed() => return,
                () = stop.cancelled() => return,
            }
        }
    });
    Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::default())
}
