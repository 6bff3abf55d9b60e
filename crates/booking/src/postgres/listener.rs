//! The listener that keeps this instance's view in step with commits made by other instances:
//! every commit notifies [`super::statements::CHANNEL`] with the concerts it touched.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::reads::load_inventory;
use super::statements::{CHANNEL, Notified, notified};
use super::view::PgView;
use crate::error::BookingError;
use crate::events::AvailabilityEvent;

/// Reloads notified concerts into the view until `stop`; those this process's own writer
/// notified (`origin`) are in the view already and skipped.
///
/// A commit made before `LISTEN` takes effect is never notified, so the whole view is reloaded
/// each time listening starts: at start (the service loaded the view before the listener
/// connected) and after a lost connection (notifications sent meanwhile are gone).
pub async fn run_listener(
    pool: PgPool,
    view: PgView,
    events: broadcast::Sender<AvailabilityEvent>,
    schedule: Arc<Notify>,
    origin: Uuid,
    stop: CancellationToken,
) {
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        first = false;
        let mut listener = match connect_listener(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for inventory changes; retrying");
                continue;
            }
        };
        if let Err(error) = refresh(&pool, &view, &events, &schedule, None).await {
            tracing::warn!(%error, "cannot reload the inventory view; retrying");
            continue;
        }
        let reloads = Reloads {
            pool: &pool,
            view: &view,
            events: &events,
            schedule: &schedule,
            origin,
        };
        if let Err(reason) = listen(&mut listener, &reloads, &stop).await {
            tracing::warn!(%reason, "inventory notifications may be lost; listening afresh");
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

/// The shortest time between two reloads: notifications that arrive meanwhile wait and are
/// reloaded together. Every instance reloads after every other instance's commits, so without a
/// floor an instance spends more of its CPU on reloads the more instances commit; with it, at
/// most 40 reloads a second, and the view follows other instances' commits within ~25 ms. A
/// booking batch's counts come with its notice and are applied at once, without a reload.
const RELOAD_GAP: Duration = Duration::from_millis(25);

/// Follows notifications until `stop` (`Ok`) or until notifications may have been missed
/// (`Err`, saying why): the connection was lost, or a reload failed.
async fn listen(
    listener: &mut PgListener,
    reloads: &Reloads<'_>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut reloaded = Instant::now() - RELOAD_GAP;
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            next = listener.try_recv() => next.map_err(|error| error.to_string())?,
        };
        // `None`: the connection was lost (`try_recv` would reconnect on the next call, but
        // what was notified meanwhile is gone); the caller listens afresh and reloads it all.
        let Some(first) = first else {
            return Err("the connection was lost".into());
        };
        let mut concerts = HashSet::new();
        reloads.take(first.payload(), &mut concerts);
        if concerts.is_empty() {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep_until(reloaded + RELOAD_GAP) => {}
        }
        // Take whatever else already arrived, to reload it in one go.
        while let Some(Ok(Some(more))) = futures_util::FutureExt::now_or_never(listener.try_recv())
        {
            reloads.take(more.payload(), &mut concerts);
        }
        let ids: Vec<Uuid> = concerts.into_iter().collect();
        let Reloads {
            pool,
            view,
            events,
            schedule,
            ..
        } = reloads;
        refresh(pool, view, events, schedule, Some(&ids))
            .await
            .map_err(|error| format!("cannot reload notified concerts: {error}"))?;
        reloaded = Instant::now();
    }
}

/// Where reloads go, and whose own notifications are skipped.
struct Reloads<'a> {
    pool: &'a PgPool,
    view: &'a PgView,
    events: &'a broadcast::Sender<AvailabilityEvent>,
    schedule: &'a Notify,
    origin: Uuid,
}

impl Reloads<'_> {
    /// Follows one notification: a booking batch's counts are applied at once (and announced);
    /// a concert to reload, or one whose counts name a seat type the view does not know yet,
    /// joins `concerts`.
    fn take(&self, payload: &str, concerts: &mut HashSet<Uuid>) {
        match notified(payload, self.origin) {
            Some(Notified::Counts(concert, counts)) if self.view.apply_counts(&counts) => {
                let _ = self.events.send(AvailabilityEvent::Changed(concert));
            }
            Some(Notified::Counts(concert, _) | Notified::Reload(concert)) => {
                concerts.insert(concert);
            }
            None => {}
        }
    }
}

async fn connect_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Reloads the given concerts (or the whole view) from the store into the view.
pub async fn refresh(
    pool: &PgPool,
    view: &PgView,
    events: &broadcast::Sender<AvailabilityEvent>,
    schedule: &Notify,
    only: Option<&[Uuid]>,
) -> Result<(), BookingError> {
    let (changed, moved) = view.apply(load_inventory(pool, only).await?);
    for id in changed {
        let _ = events.send(AvailabilityEvent::Changed(id));
    }
    if moved {
        schedule.notify_one();
    }
    Ok(())
}
