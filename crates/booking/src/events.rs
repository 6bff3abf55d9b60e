//! Availability change notifications and the closing timer.
//!
//! The writer publishes [`AvailabilityEvent::Changed`] for every concert a committed batch
//! touched. The closing timer sleeps until the next concert start and publishes
//! [`AvailabilityEvent::Closed`] at that instant (sales are refused from then on by the
//! transaction's own time check; the event only tells watchers). The SSE stream of
//! [`crate::http`] turns these into server-sent events.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_shared::clock::SharedClock;
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::view::SharedInventory;

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
