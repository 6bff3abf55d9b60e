//! Opening Booking for one process: its store and writer, the limits on writes, and — in a split
//! deployment — the inventory and outbox routes its peers call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_shared::clients::{Inventory, OutboxSource, WriteLimiter};
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::component::{Component, ReadyCheck, Wiring};
use boxoffice_shared::db::{Durability, Storage, Store};
use boxoffice_shared::remote::{inventory_routes, outbox_routes};
use boxoffice_shared::token::Authenticator;

use crate::owner::Owners;
use crate::owner::forward::Forwarder;
use crate::payments::Checkout;
use crate::service::{BookingService, LocalWorker, Ownership, Selling, Tickets};

/// What Booking is opened with.
pub struct Setup<'a> {
    pub storage: &'a Storage,
    /// Whether a booking's commit waits for the disk.
    pub durability: Durability,
    pub clock: SharedClock,
    /// Where Notifications runs in the same process: how the writer wakes its worker after each
    /// commit that queued emails.
    pub worker: Option<LocalWorker>,
    /// The limits on bookings and cancels; `None` when rate limits are off.
    pub write_limiter: Option<Arc<dyn WriteLimiter>>,
    /// How long holds last and who takes the money.
    pub checkout: Checkout,
    /// The ticket key and where holders' names are looked up.
    pub tickets: Tickets,
    /// How webhooks are delivered from this process.
    pub webhooks: crate::webhook::Settings,
    /// This instance, stable across restarts: the owner of its webhook deliveries' leases.
    pub instance: uuid::Uuid,
    /// Where the other Booking instances reach this one (`BOXOFFICE_ADVERTISE_URL`). Given in a
    /// split deployment on PostgreSQL, each concert's new bookings and holds are made by one
    /// owner instance at a time ([`crate::owner`]).
    pub advertise: Option<boxoffice_shared::component::Url>,
}

/// Opens the Booking store and starts its writer; in a split deployment, serves the inventory
/// and the outbox to the peers.
pub async fn open(
    wiring: &Wiring<'_>,
    setup: Setup<'_>,
    authenticator: &Authenticator,
) -> anyhow::Result<(BookingService, Component)> {
    let mut component = Component::default();
    let store = setup
        .storage
        .open("booking", setup.durability, 16)
        .await
        .context("opening the booking store")?;
    let booking = BookingService::start(
        store.clone(),
        authenticator.clone(),
        setup.clock,
        setup.worker,
        Selling {
            checkout: setup.checkout,
            tickets: setup.tickets,
        },
        wiring.stop.clone(),
        wiring.tasks,
    )
    .await
    .context("starting the booking service")?;
    let rooms = setup
        .storage
        .open("queue", setup.durability, 8)
        .await
        .context("opening the waiting rooms' store")?;
    booking.open_waiting_rooms(
        crate::queue::store::QueueStore::open(rooms.clone(), setup.durability)
            .await
            .context("migrating the waiting rooms' store")?,
        wiring.tasks,
    );
    component.stores.push(rooms);
    if let Some(limiter) = setup.write_limiter {
        booking.limit_writes(limiter);
    }
    booking
        .deliver_webhooks(setup.webhooks, setup.instance, wiring.tasks)
        .context("starting the webhook deliveries")?;
    if wiring.split {
        let inventory: Arc<dyn Inventory> = Arc::new(booking.clone());
        let outbox: Arc<dyn OutboxSource> = Arc::new(booking.clone());
        component.serve(inventory_routes(inventory, wiring.peer_credential()?));
        component.serve(outbox_routes(outbox, wiring.peer_credential()?));
        if let (Some(url), Store::Postgres(db)) = (setup.advertise, &store) {
            let owners = Owners::start(
                setup.instance,
                url,
                db.pool.clone(),
                wiring.tasks,
                wiring.stop.clone(),
            )
            .await
            .context("registering this instance among the concerts' owners")?;
            booking.share_concerts(Ownership {
                owners,
                forwarder: Forwarder::new(wiring.http(), wiring.peer_credential()?),
            });
            component.serve(crate::http::owner::routes(
                booking.clone(),
                wiring.peer_credential()?,
            ));
        }
    }
    // Its readiness covers the store: the writer runs and the read pool answers.
    component.check(BookingCheck(booking.clone()));
    component.stores.push(store);
    Ok((booking, component))
}

/// Readiness of the Booking service: its store answers and its writer runs.
struct BookingCheck(BookingService);

impl ReadyCheck for BookingCheck {
    fn name(&self) -> &'static str {
        "booking_store"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(self.0.ready())
    }
}
