//! The stream behind `GET /api/v1/concerts/{id}/availability/stream`, and the availability it
//! sends ([`AvailabilityResponse`], also the body of the plain availability read). It is fed by
//! the [`events::AvailabilityEvent`]s that the writer and the closing timer publish: `availability`
//! events, coalesced to at most one per [`COALESCE`] per stream, and a `closed` event when sales
//! close.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use boxoffice_shared::clients::Availability;
use boxoffice_shared::clock::SharedClock;
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::events;
use crate::view::SharedInventory;

/// The shortest gap between two `availability` events of one stream.
pub const COALESCE: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatRemaining {
    pub id: Uuid,
    pub remaining: i64,
}

/// Exact availability of one concert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityResponse {
    pub concert_id: Uuid,
    pub booking_open: bool,
    pub seat_types: Vec<SeatRemaining>,
}

impl From<Availability> for AvailabilityResponse {
    fn from(availability: Availability) -> Self {
        Self {
            concert_id: availability.concert_id,
            booking_open: availability.booking_open,
            seat_types: availability
                .seat_types
                .into_iter()
                .map(|seat| SeatRemaining {
                    id: seat.seat_type_id,
                    remaining: seat.remaining,
                })
                .collect(),
        }
    }
}

/// The SSE stream of one concert's availability: once on connect, then on change (coalesced),
/// `opened` when sales open and `closed` when they close. Ends when the server shuts down.
pub fn availability_stream(
    concert_id: Uuid,
    view: SharedInventory,
    clock: SharedClock,
    mut events: broadcast::Receiver<events::AvailabilityEvent>,
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
                    Ok(events::AvailabilityEvent::Changed(id)) if id == concert_id => dirty = true,
                    Ok(events::AvailabilityEvent::Opened(id) | events::AvailabilityEvent::Closed(id))
                        if id == concert_id =>
                    {
                        let name = match received {
                            Ok(events::AvailabilityEvent::Opened(_)) => "opened",
                            _ => "closed",
                        };
                        let mut batch = Vec::new();
                        batch.extend(snapshot());
                        batch.push(Event::default().event(name).data(format!("{{\"concert_id\":\"{concert_id}\"}}")));
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
