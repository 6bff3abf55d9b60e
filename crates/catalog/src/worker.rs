//! The reconciler: pushes to Booking every concert change Booking has not acknowledged.
//!
//! A write handler pushes its change itself; this worker only catches what failed (Booking down,
//! a crash between the catalog write and the push). It runs once at start and then every
//! [`RECONCILE_INTERVAL`]. A concert whose push keeps failing is retried with exponential backoff
//! (up to [`MAX_BACKOFF`]) so one concert Booking keeps refusing cannot flood the logs; a pass
//! stops at the first sign that Booking is unreachable rather than trying every concert against it.

use std::collections::HashMap;
use std::time::Duration;

use boxoffice_shared::clients::ClientError;
use boxoffice_shared::problem::ErrorChain;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::CatalogError;
use crate::service::CatalogService;

/// Time between two reconciliation passes.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(2);
/// The longest wait before retrying a concert whose push failed.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Concerts examined per pass.
const BATCH: u32 = 200;

/// Runs until `stop` is cancelled; finishes the push in progress first.
pub async fn run_reconciler(service: CatalogService, stop: CancellationToken) {
    let mut reconciler = Reconciler::default();
    let mut ticker = tokio::time::interval(RECONCILE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // The first tick completes at once: the pass at start.
            _ = ticker.tick() => {}
            () = stop.cancelled() => break,
        }
        reconciler.pass(&service).await;
    }
    tracing::debug!("catalog reconciler stopped");
}

/// Backoff state of the concerts whose pushes failed.
#[derive(Debug, Default)]
pub struct Reconciler {
    /// Concert → (failed attempts, not before).
    failing: HashMap<Uuid, (u32, Instant)>,
    /// Booking was unreachable on the last try (logged once per outage).
    booking_down: bool,
}

impl Reconciler {
    /// One pass over the unsynced concerts; returns how many were synced.
    pub async fn pass(&mut self, service: &CatalogService) -> usize {
        let ids = match service.unsynced(BATCH).await {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "reconciler could not read the catalog");
                return 0;
            }
        };
        // Forget concerts that got synced some other way (a later successful write).
        self.failing.retain(|id, _| ids.contains(id));
        let now = Instant::now();
        let mut synced = 0;
        for id in ids {
            if self
                .failing
                .get(&id)
                .is_some_and(|(_, retry_at)| *retry_at > now)
            {
                continue;
            }
            match service.sync_concert(id).await {
                Ok(()) => {
                    self.failing.remove(&id);
                    synced += 1;
                }
                Err(CatalogError::Inventory(ClientError::Unavailable(cause))) => {
                    // Booking is down for everyone: no per-concert backoff, retry next pass.
                    if !self.booking_down {
                        tracing::warn!(%cause, "booking unavailable; concerts will be synced when it is back");
                    }
                    self.booking_down = true;
                    return synced;
                }
                Err(error) => {
                    let attempts = self.failing.get(&id).map_or(0, |(n, _)| *n) + 1;
                    let backoff = backoff(attempts);
                    self.failing.insert(id, (attempts, now + backoff));
                    tracing::warn!(
                        concert_id = %id, attempts, retry_in_secs = backoff.as_secs(),
                        error = %ErrorChain(&error), "could not sync concert with booking"
                    );
                }
            }
            self.booking_down = false;
        }
        if synced > 0 {
            tracing::info!(synced, "reconciler synced concerts with booking");
        }
        synced
    }
}

/// 2 s, 4 s, 8 s, … up to [`MAX_BACKOFF`].
fn backoff(attempts: u32) -> Duration {
    RECONCILE_INTERVAL
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::{Harness, new_concert};

    #[tokio::test]
    async fn the_reconciler_runs_at_start_and_stops_when_told() {
        let h = Harness::new().await;
        h.inventory.set_down(true);
        assert!(
            h.service
                .create_concert(new_concert("Show", "A", "V", 24, &[("GA", 3)]))
                .await
                .is_err()
        );
        h.inventory.set_down(false);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_reconciler(h.service.clone(), stop.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !h.service.unsynced(10).await.unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never synced");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
