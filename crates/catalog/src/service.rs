//! The Catalog service's rules, composed from the store and the [`Inventory`] client. Handlers
//! parse input into domain types and call these methods; nothing here knows about HTTP.
//!
//! # Keeping Booking in step
//! Booking owns the seats, so most changes touch two stores, and no transaction spans both. A
//! write therefore changes the catalog row first (bumping its `version`), then pushes the
//! concert to Booking ([`CatalogService::sync_concert`]), and records `synced_version` when
//! Booking acknowledged it. If Booking is down, the caller gets 503 `unavailable` and the
//! reconciler ([`crate::worker`]) pushes the concert later; a concert Booking has never
//! acknowledged stays hidden from public reads, so nobody sees a concert they cannot book.
//!
//! Pushes of one concert are serialized in this process and always send the concert as it is
//! in the store at that moment, so an older push can never land after a newer one.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use boxoffice_shared::clients::{
    Availability, ClientError, ConcertInventory, Inventory, SeatInventory,
};
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::db::Store;
use boxoffice_shared::problem::ErrorCode;
use boxoffice_shared::token::Authenticator;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::domain::{
    Capacity, ConcertChange, ConcertStatus, Cursor, ListStatus, NewConcert, NewSeatType,
    SearchText, derive_status,
};
use crate::error::CatalogError;
use crate::store::{CatalogStore, ConcertRecord, Guarded, ListFilter, Refusal, SeatTypeRecord};

/// How many candidate concerts one listing request may examine when it filters on Booking's
/// answer (`status=on_sale`). Past this the page is returned short, with a cursor to go on from,
/// so a catalog full of sold-out concerts cannot make one request scan everything.
pub const MAX_SCANNED_PER_PAGE: usize = 2000;

/// How many candidates an `on_sale` listing asks Booking about at once.
const ON_SALE_CHUNK: u32 = 50;

/// Stripes of the per-concert push lock.
const SYNC_STRIPES: usize = 64;

/// A concert as clients see it: catalog metadata plus Booking's exact seat counts.
#[derive(Debug, Clone)]
pub struct ConcertView {
    pub concert: ConcertRecord,
    pub status: ConcertStatus,
    pub seat_types: Vec<SeatTypeView>,
}

impl ConcertView {
    /// True exactly when the status is `on_sale` (API contract).
    pub fn booking_open(&self) -> bool {
        self.status == ConcertStatus::OnSale
    }
}

/// A seat type with its capacity and remaining seats as Booking has them.
#[derive(Debug, Clone)]
pub struct SeatTypeView {
    pub seat_type: SeatTypeRecord,
    pub capacity: i64,
    pub remaining: i64,
}

/// A listing request, already validated.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub status: ListStatus,
    pub search: Option<SearchText>,
    pub category: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    /// 1..=100.
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct ConcertPage {
    pub items: Vec<ConcertView>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

struct Inner {
    store: CatalogStore,
    inventory: Arc<dyn Inventory>,
    authenticator: Authenticator,
    clock: SharedClock,
    /// Serializes pushes of the same concert (striped by concert id).
    sync_locks: Vec<Mutex<()>>,
}

/// The Catalog service. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct CatalogService {
    inner: Arc<Inner>,
}

impl CatalogService {
    /// Builds the service over the catalog's own store (an SQLite file or a PostgreSQL schema).
    /// `inventory` reaches Booking, which owns the seats; `authenticator` verifies access tokens
    /// for the admin routes.
    pub fn new(
        store: impl Into<Store>,
        inventory: Arc<dyn Inventory>,
        authenticator: Authenticator,
        clock: SharedClock,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: CatalogStore::new(store),
                inventory,
                authenticator,
                clock,
                sync_locks: (0..SYNC_STRIPES).map(|_| Mutex::new(())).collect(),
            }),
        }
    }

    /// Runs the catalog's migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.inner.store.migrate().await
    }

    pub fn store(&self) -> &CatalogStore {
        &self.inner.store
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.authenticator
    }

    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Answers when the store does: the readiness check.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.inner.store.ping().await
    }

    /// A concert Booking knows about, with exact seat counts. Concerts never synced are not
    /// found.
    pub async fn concert(&self, id: Uuid) -> Result<ConcertView, CatalogError> {
        let record = self
            .inner
            .store
            .concert(id)
            .await?
            .filter(|record| record.synced_version > 0)
            .ok_or(CatalogError::ConcertNotFound)?;
        self.with_availability(record).await
    }

    /// One page of concerts, in `starts_at` then id order.
    pub async fn list(&self, query: ListQuery) -> Result<ConcertPage, CatalogError> {
        let now = self.now();
        let filter = ListFilter {
            status: query.status,
            now,
            search: query.search,
            category: query.category,
            from: query.from,
            to: query.to,
        };
        let limit = query.limit.max(1);
        let chunk = match query.status {
            ListStatus::OnSale => limit.max(ON_SALE_CHUNK),
            ListStatus::Available | ListStatus::All => limit,
        };
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        let chunk_len = usize::try_from(chunk).unwrap_or(usize::MAX);

        let mut items: Vec<ConcertView> = Vec::with_capacity(wanted);
        let mut after = query.cursor;
        let mut scanned = 0usize;
        loop {
            // One more than needed tells whether anything follows this chunk.
            let mut rows = self
                .inner
                .store
                .list(&filter, after, chunk.saturating_add(1))
                .await?;
            let more = rows.len() > chunk_len;
            rows.truncate(chunk_len);
            let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
            let availability = if ids.is_empty() {
                HashMap::new()
            } else {
                self.inner.inventory.availability(&ids).await?
            };
            for row in rows {
                let cursor = row.cursor();
                let view = build_view(row, availability.get(&cursor.id), now);
                if !shown(query.status, view.status) {
                    after = Some(cursor);
                    scanned += 1;
                    continue;
                }
                if items.len() == wanted {
                    // A further match exists: the page ends at its last item.
                    let next = items.last().map(|item| item.concert.cursor());
                    return Ok(ConcertPage {
                        items,
                        next_cursor: next,
                    });
                }
                items.push(view);
                after = Some(cursor);
                scanned += 1;
            }
            if !more {
                return Ok(ConcertPage {
                    items,
                    next_cursor: None,
                });
            }
            if items.len() == wanted && query.status != ListStatus::OnSale {
                // Every row is shown in these listings, so the row after this chunk is a match.
                let next = items.last().map(|item| item.concert.cursor());
                return Ok(ConcertPage {
                    items,
                    next_cursor: next,
                });
            }
            if scanned >= MAX_SCANNED_PER_PAGE {
                // A short page; the rows skipped up to `after` were not on sale.
                return Ok(ConcertPage {
                    items,
                    next_cursor: after,
                });
            }
        }
    }

    /// Creates a concert and provisions its seats with Booking. On a Booking outage the concert
    /// is kept (hidden) and provisioned later by the reconciler; the caller gets 503.
    pub async fn create_concert(&self, concert: NewConcert) -> Result<ConcertView, CatalogError> {
        let id = Uuid::now_v7();
        let seat_type_ids: Vec<Uuid> = concert.seat_types.iter().map(|_| Uuid::now_v7()).collect();
        let record = self
            .inner
            .store
            .insert_concert(id, &concert, &seat_type_ids, self.now())
            .await?;
        self.sync_concert(id).await?;
        metrics::counter!("catalog_concerts_created_total").increment(1);
        // Freshly provisioned: every seat is still there, so no need to ask Booking.
        let seat_types = record
            .seat_types
            .iter()
            .map(|seat| SeatTypeView {
                seat_type: seat.clone(),
                capacity: seat.capacity,
                remaining: seat.capacity,
            })
            .collect::<Vec<_>>();
        let status = derive_status(
            false,
            record.sales_open_at,
            record.starts_at,
            self.now(),
            seat_types.iter().map(|seat| seat.remaining),
        );
        Ok(ConcertView {
            concert: record,
            status,
            seat_types,
        })
    }

    /// Changes a concert's metadata while it is open; Booking learns the new name, venue, start,
    /// on-sale time and waiting room.
    pub async fn update_concert(
        &self,
        id: Uuid,
        change: ConcertChange,
    ) -> Result<ConcertView, CatalogError> {
        let record = match self
            .inner
            .store
            .update_concert(id, &change, self.now())
            .await?
        {
            Guarded::Done(record) => record,
            Guarded::Refused(refusal) => return Err(refused(refusal)),
        };
        if !record.is_synced() {
            self.sync_concert(id).await?;
        }
        self.latest_view(id).await
    }

    /// Adds a seat type to an open concert and provisions it with Booking.
    pub async fn add_seat_type(
        &self,
        concert_id: Uuid,
        seat: NewSeatType,
    ) -> Result<SeatTypeView, CatalogError> {
        let seat_type_id = Uuid::now_v7();
        let record = match self
            .inner
            .store
            .add_seat_type(concert_id, seat_type_id, &seat, self.now())
            .await?
        {
            Guarded::Done(record) => record,
            Guarded::Refused(refusal) => return Err(refused(refusal)),
        };
        self.sync_concert(concert_id).await?;
        let seat_type = record
            .seat_types
            .into_iter()
            .find(|seat| seat.id == seat_type_id)
            .ok_or(CatalogError::Store(sqlx::Error::RowNotFound))?;
        Ok(SeatTypeView {
            capacity: seat_type.capacity,
            remaining: seat_type.capacity,
            seat_type,
        })
    }

    /// Changes a seat type's capacity. Booking decides: it may grow, and shrink only down to
    /// what is sold (`validation_failed` on `capacity` otherwise).
    pub async fn set_capacity(
        &self,
        concert_id: Uuid,
        seat_type_id: Uuid,
        capacity: Capacity,
    ) -> Result<SeatTypeView, CatalogError> {
        let record = self
            .inner
            .store
            .concert(concert_id)
            .await?
            .ok_or(CatalogError::ConcertNotFound)?;
        if !record.seat_types.iter().any(|seat| seat.id == seat_type_id) {
            return Err(CatalogError::SeatTypeNotFound);
        }
        if record.is_cancelled() {
            return Err(refused(Refusal::Cancelled));
        }
        if record.starts_at <= self.now() {
            return Err(refused(Refusal::Started));
        }
        // Booking must know the seat type before its capacity can change.
        self.sync_concert(concert_id).await?;
        self.inner
            .inventory
            .set_capacity(seat_type_id, capacity.get())
            .await
            .map_err(|error| match error {
                ClientError::Rejected {
                    code: ErrorCode::ValidationFailed,
                    detail,
                } => CatalogError::invalid("capacity", detail),
                other => CatalogError::Inventory(other),
            })?;
        self.inner
            .store
            .set_capacity(seat_type_id, capacity.get())
            .await?;
        let view = self.latest_view(concert_id).await?;
        view.seat_types
            .into_iter()
            .find(|seat| seat.seat_type.id == seat_type_id)
            .ok_or(CatalogError::SeatTypeNotFound)
    }

    /// Calls a concert off: sales close and Booking cancels every booking. Idempotent; refused
    /// with `booking_closed` once the concert has started.
    pub async fn cancel_concert(&self, id: Uuid) -> Result<ConcertView, CatalogError> {
        let record = match self.inner.store.cancel(id, self.now()).await? {
            Guarded::Done(record) => record,
            Guarded::Refused(refusal) => return Err(refused(refusal)),
        };
        if !record.is_synced() {
            self.sync_concert(id).await?;
        }
        self.latest_view(id).await
    }

    /// Pushes the concert as it is now to Booking unless Booking has already seen this version:
    /// provision (name, artist, venue, zone, start, on-sale time, waiting room, unknown seat
    /// types), then cancel if it was called off.
    pub async fn sync_concert(&self, id: Uuid) -> Result<(), CatalogError> {
        let _serialized = self.sync_lock(id).lock().await;
        let Some(record) = self.inner.store.concert(id).await? else {
            return Ok(());
        };
        if record.is_synced() {
            return Ok(());
        }
        self.push(&record).await?;
        self.inner.store.mark_synced(id, record.version).await?;
        tracing::debug!(concert_id = %id, version = record.version, "concert synced with booking");
        Ok(())
    }

    /// Concerts with changes Booking has not acknowledged yet (at most `limit`).
    pub async fn unsynced(&self, limit: u32) -> Result<Vec<Uuid>, CatalogError> {
        self.inner.store.unsynced(limit).await
    }

    async fn push(&self, record: &ConcertRecord) -> Result<(), ClientError> {
        let inventory = ConcertInventory {
            concert_id: record.id,
            name: record.name.clone(),
            artist: record.artist.clone(),
            venue: record.venue.clone(),
            time_zone: record.time_zone.clone(),
            starts_at: record.starts_at,
            sales_open_at: record.sales_open_at,
            waiting_room: record.waiting_room,
            seat_types: record
                .seat_types
                .iter()
                .map(|seat| SeatInventory {
                    seat_type_id: seat.id,
                    name: seat.name.clone(),
                    price_cents: seat.price_cents,
                    currency: seat.currency.clone(),
                    capacity: seat.capacity,
                })
                .collect(),
        };
        match self.inner.inventory.provision(&inventory).await {
            Ok(()) => {}
            // Booking's sale window is closed for good (cancelled there already, or started):
            // there is nothing left to provision, only the cancellation below to make sure of.
            Err(ClientError::Rejected {
                code: ErrorCode::BookingClosed,
                ..
            }) if record.is_cancelled() || record.starts_at <= self.now() => {
                tracing::info!(concert_id = %record.id, "booking closed; provisioning skipped");
            }
            Err(error) => return Err(error),
        }
        if record.is_cancelled() {
            self.inner.inventory.cancel_concert(record.id).await?;
        }
        Ok(())
    }

    fn sync_lock(&self, id: Uuid) -> &Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % SYNC_STRIPES as u64).unwrap_or(0);
        &self.inner.sync_locks[stripe]
    }

    /// The concert as stored now (synced or not: for admins after a change), with seat counts.
    async fn latest_view(&self, id: Uuid) -> Result<ConcertView, CatalogError> {
        let record = self
            .inner
            .store
            .concert(id)
            .await?
            .ok_or(CatalogError::ConcertNotFound)?;
        self.with_availability(record).await
    }

    async fn with_availability(&self, record: ConcertRecord) -> Result<ConcertView, CatalogError> {
        let availability = self.inner.inventory.availability(&[record.id]).await?;
        let entry = availability.get(&record.id);
        Ok(build_view(record, entry, self.now()))
    }
}

/// Whether a listing with `status` shows a concert whose derived status is `derived`.
fn shown(status: ListStatus, derived: ConcertStatus) -> bool {
    match status {
        ListStatus::All => true,
        ListStatus::Available => matches!(
            derived,
            ConcertStatus::Scheduled | ConcertStatus::OnSale | ConcertStatus::SoldOut
        ),
        ListStatus::OnSale => derived == ConcertStatus::OnSale,
    }
}

fn refused(refusal: Refusal) -> CatalogError {
    match refusal {
        Refusal::NotFound => CatalogError::ConcertNotFound,
        Refusal::Started => CatalogError::BookingClosed("the concert has already started"),
        Refusal::Cancelled => CatalogError::BookingClosed("the concert was cancelled"),
    }
}

/// Joins catalog metadata with Booking's counts. A seat type Booking does not know (not
/// provisioned yet) shows the catalog's capacity and no seats left: it cannot be booked.
fn build_view(
    record: ConcertRecord,
    availability: Option<&Availability>,
    now: OffsetDateTime,
) -> ConcertView {
    if availability.is_none() && record.synced_version > 0 {
        tracing::warn!(concert_id = %record.id, "booking has no inventory for a synced concert");
    }
    let seat_types: Vec<SeatTypeView> = record
        .seat_types
        .iter()
        .map(|seat| {
            let counted = availability.and_then(|a| {
                a.seat_types
                    .iter()
                    .find(|counted| counted.seat_type_id == seat.id)
            });
            SeatTypeView {
                seat_type: seat.clone(),
                capacity: counted.map_or(seat.capacity, |c| c.capacity),
                remaining: counted.map_or(0, |c| c.remaining.max(0)),
            }
        })
        .collect();
    let cancelled = record.is_cancelled() || availability.is_some_and(|a| a.cancelled);
    let status = derive_status(
        cancelled,
        record.sales_open_at,
        record.starts_at,
        now,
        seat_types.iter().map(|seat| seat.remaining),
    );
    ConcertView {
        concert: record,
        status,
        seat_types,
    }
}

#[cfg(test)]
mod tests;
