//! Opening Booking: its store and writer, the limits on writes, and the inventory and outbox
//! routes its peers call.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_auth::limits::SharedCounters;
use boxoffice_auth::write_limits::WriteLimits;
use boxoffice_booking::{BookingService, LocalWorker};
use boxoffice_notifications::WorkerWaker;
use boxoffice_shared::clients::{Inventory, OutboxSource};
use boxoffice_shared::token::Authenticator;

use super::{Component, Context};
use crate::config::instance_id;
use crate::ops;

/// Opens Booking where this process runs it (`None` elsewhere). Where Notifications runs in the
/// same process, the booking writer wakes its worker through `email_waker` after each commit.
pub async fn open(
    context: &Context<'_>,
    authenticator: &Authenticator,
    email_waker: &WorkerWaker,
) -> anyhow::Result<(Option<BookingService>, Component)> {
    let config = context.config;
    let mut component = Component::default();
    if !config.roles.booking {
        return Ok((None, component));
    }
    let booking_db = config
        .storage
        .open("booking", config.durability, 16)
        .await
        .context("opening the booking store")?;
    let worker = match config.roles.notifications {
        true => Some(LocalWorker {
            waker: email_waker.notify(),
            instance: instance_id(&config.data_dir)?,
        }),
        false => None,
    };
    let booking = BookingService::start(
        booking_db.clone(),
        authenticator.clone(),
        config.clock.clone(),
        worker,
        context.stop.clone(),
        context.tasks,
    )
    .await
    .context("starting the booking service")?;
    if let Some(limits) = config.write_limits {
        let shared = config
            .auth
            .shared_throttles
            .as_ref()
            .map(|shared| SharedCounters::connect(&shared.url, &shared.prefix))
            .transpose()
            .map_err(|error| anyhow::anyhow!("--redis-url: {error}"))?;
        booking.limit_writes(Arc::new(WriteLimits::new(limits, shared)));
    }
    if context.split {
        let inventory: Arc<dyn Inventory> = Arc::new(booking.clone());
        let outbox: Arc<dyn OutboxSource> = Arc::new(booking.clone());
        component.internal = component
            .internal
            .merge(boxoffice_shared::remote::inventory_routes(
                inventory,
                context.peer_credential()?,
            ))
            .merge(boxoffice_shared::remote::outbox_routes(
                outbox,
                context.peer_credential()?,
            ));
    }
    component
        .checks
        .push(Arc::new(ops::BookingCheck(booking.clone())));
    component.stores.push(booking_db);
    Ok((Some(booking), component))
}
