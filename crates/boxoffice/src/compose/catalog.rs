//! Opening Catalog: its store and migrations, Booking's inventory in process or over HTTP, and
//! the reconciler that keeps that inventory in step.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_booking::BookingService;
use boxoffice_catalog::CatalogService;
use boxoffice_shared::clients::Inventory;
use boxoffice_shared::db::Durability;
use boxoffice_shared::remote::RemoteInventory;
use boxoffice_shared::token::Authenticator;

use super::{Component, Context};
use crate::ops;

/// Opens Catalog where this process runs it (`None` elsewhere) and starts its reconciler.
pub async fn open(
    context: &Context<'_>,
    authenticator: &Authenticator,
    booking: Option<&BookingService>,
) -> anyhow::Result<(Option<CatalogService>, Component)> {
    let config = context.config;
    let mut component = Component::default();
    if !config.roles.catalog {
        return Ok((None, component));
    }
    let catalog_db = config
        .storage
        .open("catalog", Durability::Full, 8)
        .await
        .context("opening the catalog store")?;
    let inventory: Arc<dyn Inventory> = match booking {
        Some(booking) => Arc::new(booking.clone()),
        None => context.failover(&config.peers.booking, RemoteInventory::new)?,
    };
    let catalog = CatalogService::new(
        catalog_db.clone(),
        inventory,
        authenticator.clone(),
        config.clock.clone(),
    );
    catalog
        .migrate()
        .await
        .context("migrating the catalog store")?;
    context.tasks.spawn(boxoffice_catalog::run_reconciler(
        catalog.clone(),
        context.stop.clone(),
    ));
    component.checks.push(Arc::new(ops::StoreCheck::new(
        "catalog_store",
        catalog_db.clone(),
    )));
    component.stores.push(catalog_db);
    Ok((Some(catalog), component))
}
