//! Availability change notifications and the sales timer.
//!
//! The writer publishes [`AvailabilityEvent::Changed`] for every concert a committed batch
//! touched. The sales timer sleeps until the next on-sale or concert start and publishes
//! [`AvailabilityEvent::Opened`] or [`AvailabilityEvent::Closed`] at that instant (sales are
//! accepted or refused from then on by the transaction's own time check; the event only tells
//! watchers). The SSE stream of [`crate::http`] turns these into server-sent events.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_shared::clock::SharedClock;
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{is_due, sales_opened};
use crate::view::SharedInventory;

/// Something happened to a concert's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvailabilityEvent {
    /// Counts or the sale window changed (a booking, a cancellation, provisioning…).
    Changed(Uuid),
    /// Sales opened: the concert's `sales_open_at` passed.
    Opened(Uuid),
    /// Sales closed: the concert started.
    Closed(Uuid),
}

/// Publishes `Opened` for each concert when its sales open — at its `sales_open_at`, or at once
/// when an organiser moves the on-sale into the past or clears it — and `Closed` at its
/// `starts_at`; asks the writer to expire holds (`expire_holds`) at the next hold's
/// `expires_at`. Re-plans when `schedule` is poked (a concert or a hold was added or changed)
/// and at least once a minute.
pub async fn run_sales_timer(
    view: SharedInventory,
    clock: SharedClock,
    events: broadcast::Sender<AvailabilityEvent>,
    schedule: Arc<Notify>,
    expire_holds: impl Fn() + Send + 'static,
    stop: CancellationToken,
) {
    let mut checked_until = clock.now();
    // The expiry instant the writer was last asked to expire holds for: asked once per instant,
    // then again only if the view still shows it a second later.
    let mut asked: Option<(OffsetDateTime, OffsetDateTime)> = None;
    // Concerts whose on-sale is still to come, as last seen: when one is no longer, it opened.
    let mut waiting: HashSet<Uuid> = HashSet::new();
    loop {
        let now = clock.now();
        let due: Vec<AvailabilityEvent> = {
            let view = view.read();
            let mut due = Vec::new();
            let mut still_waiting = HashSet::new();
            for (id, concert) in view.concerts.iter().filter(|(_, c)| !c.cancelled) {
                if !sales_opened(now, concert.opens_at) {
                    still_waiting.insert(*id);
                } else if waiting.contains(id) && now < concert.starts_at {
                    due.push(AvailabilityEvent::Opened(*id));
                }
                if concert.starts_at > checked_until && concert.starts_at <= now {
                    due.push(AvailabilityEvent::Closed(*id));
                }
            }
            waiting = still_waiting;
            due
        };
        for event in due {
            match event {
                AvailabilityEvent::Opened(concert) => tracing::info!(%concert, "sales opened"),
                AvailabilityEvent::Closed(concert) => {
                    tracing::info!(%concert, "sales closed: the concert has started")
                }
                AvailabilityEvent::Changed(_) => {}
            }
            let _ = events.send(event);
        }
        checked_until = now;
        let (next, holds_due) = {
            let view = view.read();
            (
                view.next_change_after(now),
                view.next_hold_expiry.filter(|at| is_due(*at, now)),
            )
        };
        let mut wait = next
            .map(|at| duration_until(now, at))
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        if let Some(due) = holds_due {
            let retry = asked
                .is_none_or(|(instant, at)| instant != due || now - at >= time::Duration::SECOND);
            if retry {
                expire_holds();
                asked = Some((due, now));
            }
            wait = wait.min(Duration::from_secs(1));
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = schedule.notified() => {}
            () = stop.cancelled() => return,
        }
    }
}

fn duration_until(now: OffsetDateTime, at: OffsetDateTime) -> Duration {
    let gap = at - now;
    // A millisecond late rather than early: the event must not precede the change.
    Duration::try_from(gap).unwrap_or(Duration::ZERO) + Duration::from_millis(1)
}
