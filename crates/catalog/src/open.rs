//! Opening Catalog for one process: its store and migrations, Booking's inventory in process or
//! over HTTP, and the reconciler that keeps that inventory in step.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_shared::clients::Inventory;
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::component::{Component, Peer, Wiring};
use boxoffice_shared::db::{Durability, Storage};
use boxoffice_shared::remote::RemoteInventory;
use boxoffice_shared::token::Authenticator;

use crate::service::CatalogService;
use crate::worker::run_reconciler;

/// Opens the Catalog store (running its migrations), reaches Booking's inventory and starts the
/// reconciler.
pub async fn open(
    wiring: &Wiring<'_>,
    storage: &Storage,
    booking: Peer<'_, Arc<dyn Inventory>>,
    authenticator: &Authenticator,
    clock: SharedClock,
) -> anyhow::Result<(CatalogService, Component)> {
    let store = storage
        .open("catalog", Durability::Full, 8)
        .await
        .context("opening the catalog store")?;
    let inventory: Arc<dyn Inventory> = match booking {
        Peer::InProcess(inventory) => inventory,
        Peer::Remote(urls) => wiring.failover(urls, RemoteInventory::new)?,
    };
    let catalog = CatalogService::new(store.clone(), inventory, authenticator.clone(), clock);
    catalog
        .migrate()
        .await
        .context("migrating the catalog store")?;
    wiring
        .tasks
        .spawn(run_reconciler(catalog.clone(), wiring.stop.clone()));
    let mut component = Component::default();
    component.store("catalog_store", store);
    Ok((catalog, component))
}
