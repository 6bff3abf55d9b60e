//! The listener that keeps this instance's view in step with commits made by other instances:
//! every commit notifies [`super::statements::CHANNEL`] with the concerts it touched.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::reads::load_inventory;
use super::statements::CHANNEL;
use super::view::PgView;
use crate::error::BookingError;
use crate::events::AvailabilityEvent;

/// Reloads notified concerts into the view until `stop`.
///
/// A commit made before `LISTEN` takes effect is never notified, so the whole view is reloaded
/// each time listening starts: at start (the service loaded the view before the listener
/// connected) and after a lost connection (notifications sent meanwhile are gone).
pub async fn run_listener(
    pool: PgPool,
    view: PgView,
    events: broadcast::Sender<AvailabilityEvent>,
    schedule: Arc<Notify>,
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
        if let Err(reason) = listen(&mut listener, &pool, &view, &events, &schedule, &stop).await {
            tracing::warn!(%reason, "inventory notifications may be lost; listening afresh");
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

/// Reloads notified concerts until `stop` (`Ok`) or until notifications may have been missed
/// (`Err`, saying why): the connection was lost, or a reload failed.
async fn listen(
    listener: &mut PgListener,
    pool: &PgPool,
    view: &PgView,
    events: &broadcast::Sender<AvailabilityEvent>,
    schedule: &Notify,
    stop: &CancellationToken,
) -> Result<(), String> {
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
        if let Ok(id) = first.payload().parse::<Uuid>() {
            concerts.insert(id);
        }
        // Take whatever else already arrived, to reload it in one go.
        while let Some(Ok(Some(more))) = futures_util::FutureExt::now_or_never(listener.try_recv())
        {
            if let Ok(id) = more.payload().parse::<Uuid>() {
                concerts.insert(id);
            }
        }
        let ids: Vec<Uuid> = concerts.into_iter().collect();
        refresh(pool, view, events, schedule, Some(&ids))
            .await
            .map_err(|error| format!("cannot reload notified concerts: {error}"))?;
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
