#![allow(clippy::unwrap_used)]

use super::*;
use boxoffice_shared::clients::WaitingRoom;

use crate::domain::Title;
use crate::testing::{Harness, new_concert, new_seat_type};
use crate::worker::Reconciler;

fn query(status: ListStatus, limit: u32, cursor: Option<Cursor>) -> ListQuery {
    ListQuery {
        status,
        search: None,
        category: None,
        from: None,
        to: None,
        limit,
        cursor,
    }
}

#[tokio::test]
async fn a_created_concert_shows_bookings_exact_counts_and_status() {
    let h = Harness::new().await;
    let created = h
        .service
        .create_concert(new_concert("Show", "A", "V", 24, &[("VIP", 2), ("GA", 3)]))
        .await
        .unwrap();
    assert_eq!(created.status, ConcertStatus::OnSale);
    assert!(created.booking_open());
    let id = created.concert.id;
    let booked = h.inventory.concert(id).unwrap();
    assert_eq!(booked.name, "Show");
    assert_eq!(booked.seats.len(), 2);

    let [vip, ga] = [
        created.seat_types[0].seat_type.id,
        created.seat_types[1].seat_type.id,
    ];
    h.inventory.sell(vip, 2);
    let view = h.service.concert(id).await.unwrap();
    assert_eq!(view.seat_types[0].remaining, 0);
    assert_eq!(view.seat_types[1].remaining, 3);
    assert_eq!(view.status, ConcertStatus::OnSale);

    h.inventory.sell(ga, 3);
    let view = h.service.concert(id).await.unwrap();
    assert_eq!(view.status, ConcertStatus::SoldOut);
    assert!(!view.booking_open());

    h.clock.advance(time::Duration::hours(24));
    let view = h.service.concert(id).await.unwrap();
    assert_eq!(view.status, ConcertStatus::Closed);
}

#[tokio::test]
async fn a_concert_booking_never_saw_stays_hidden_until_the_reconciler_pushes_it() {
    let h = Harness::new().await;
    h.inventory.set_down(true);
    let error = h
        .service
        .create_concert(new_concert("Show", "A", "V", 24, &[("GA", 3)]))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        CatalogError::Inventory(ClientError::Unavailable(_))
    ));
    let ids = h.service.unsynced(10).await.unwrap();
    assert_eq!(ids.len(), 1);
    let id = ids[0];

    h.inventory.set_down(false);
    assert!(matches!(
        h.service.concert(id).await,
        Err(CatalogError::ConcertNotFound)
    ));
    let page = h
        .service
        .list(query(ListStatus::All, 20, None))
        .await
        .unwrap();
    assert!(page.items.is_empty());

    let mut reconciler = Reconciler::default();
    assert_eq!(reconciler.pass(&h.service).await, 1);
    assert!(h.service.unsynced(10).await.unwrap().is_empty());
    assert_eq!(
        h.service.concert(id).await.unwrap().seat_types[0].remaining,
        3
    );
    assert_eq!(reconciler.pass(&h.service).await, 0);
}

#[tokio::test]
async fn changes_made_while_booking_is_down_reach_it_later() {
    let h = Harness::new().await;
    let created = h
        .service
        .create_concert(new_concert("Show", "A", "Old Venue", 24, &[("GA", 3)]))
        .await
        .unwrap();
    let id = created.concert.id;

    h.inventory.set_down(true);
    let change = ConcertChange {
        venue: Some(Title::parse("New Venue").unwrap()),
        ..ConcertChange::default()
    };
    assert!(h.service.update_concert(id, change).await.is_err());
    assert!(
        h.service
            .add_seat_type(id, new_seat_type("VIP", 4))
            .await
            .is_err()
    );
    let mut reconciler = Reconciler::default();
    assert_eq!(reconciler.pass(&h.service).await, 0);

    h.inventory.set_down(false);
    // Still public meanwhile (it was synced once), with the new seat type not yet bookable.
    let view = h.service.concert(id).await.unwrap();
    assert_eq!(view.concert.venue, "New Venue");
    assert_eq!(view.seat_types[1].remaining, 0);

    assert_eq!(reconciler.pass(&h.service).await, 1);
    let booked = h.inventory.concert(id).unwrap();
    assert_eq!(booked.venue, "New Venue");
    assert_eq!(booked.seats.len(), 2);
    assert_eq!(
        h.service.concert(id).await.unwrap().seat_types[1].remaining,
        4
    );
}

#[tokio::test]
async fn a_waiting_room_reaches_booking_on_create_and_on_every_change() {
    let h = Harness::new().await;
    let room = WaitingRoom {
        admit_per_minute: 500,
        admission_ttl_seconds: 300,
    };
    let concert = NewConcert {
        waiting_room: Some(room),
        ..new_concert("Show", "A", "V", 24, &[("GA", 3)])
    };
    let created = h.service.create_concert(concert).await.unwrap();
    assert_eq!(created.concert.waiting_room, Some(room));
    let id = created.concert.id;
    assert_eq!(h.inventory.concert(id).unwrap().waiting_room, Some(room));

    let faster = WaitingRoom {
        admit_per_minute: 2_000,
        ..room
    };
    let change = |waiting_room| ConcertChange {
        waiting_room: Some(waiting_room),
        ..ConcertChange::default()
    };
    let changed = h
        .service
        .update_concert(id, change(Some(faster)))
        .await
        .unwrap();
    assert_eq!(changed.concert.waiting_room, Some(faster));
    assert_eq!(h.inventory.concert(id).unwrap().waiting_room, Some(faster));

    let removed = h.service.update_concert(id, change(None)).await.unwrap();
    assert_eq!(removed.concert.waiting_room, None);
    assert_eq!(h.inventory.concert(id).unwrap().waiting_room, None);
    assert!(h.service.unsynced(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn cancelling_is_idempotent_reaches_booking_and_closes_changes() {
    let h = Harness::new().await;
    let id = h
        .service
        .create_concert(new_concert("Show", "A", "V", 24, &[("GA", 3)]))
        .await
        .unwrap()
        .concert
        .id;
    let first = h.service.cancel_concert(id).await.unwrap();
    assert_eq!(first.status, ConcertStatus::Cancelled);
    assert!(!first.booking_open());
    assert!(h.inventory.concert(id).unwrap().cancelled);
    let second = h.service.cancel_concert(id).await.unwrap();
    assert_eq!(second.status, ConcertStatus::Cancelled);
    assert_eq!(second.concert.version, first.concert.version);

    let change = ConcertChange {
        name: Some(Title::parse("Again").unwrap()),
        ..ConcertChange::default()
    };
    assert!(matches!(
        h.service.update_concert(id, change).await,
        Err(CatalogError::BookingClosed(_))
    ));
    assert!(matches!(
        h.service.add_seat_type(id, new_seat_type("VIP", 1)).await,
        Err(CatalogError::BookingClosed(_))
    ));
}

#[tokio::test]
async fn a_cancellation_booking_missed_is_pushed_by_the_reconciler() {
    let h = Harness::new().await;
    let id = h
        .service
        .create_concert(new_concert("Show", "A", "V", 24, &[("GA", 3)]))
        .await
        .unwrap()
        .concert
        .id;
    h.inventory.set_down(true);
    assert!(h.service.cancel_concert(id).await.is_err());
    h.inventory.set_down(false);
    // The catalog already says cancelled.
    assert_eq!(
        h.service.concert(id).await.unwrap().status,
        ConcertStatus::Cancelled
    );
    assert_eq!(Reconciler::default().pass(&h.service).await, 1);
    assert!(h.inventory.concert(id).unwrap().cancelled);
}

#[tokio::test]
async fn started_concerts_cannot_change_or_be_cancelled() {
    let h = Harness::new().await;
    let created = h
        .service
        .create_concert(new_concert("Show", "A", "V", 1, &[("GA", 3)]))
        .await
        .unwrap();
    let id = created.concert.id;
    h.clock.advance(time::Duration::hours(1));
    assert!(matches!(
        h.service.cancel_concert(id).await,
        Err(CatalogError::BookingClosed(_))
    ));
    assert!(matches!(
        h.service.add_seat_type(id, new_seat_type("VIP", 1)).await,
        Err(CatalogError::BookingClosed(_))
    ));
    let seat = created.seat_types[0].seat_type.id;
    assert!(matches!(
        h.service
            .set_capacity(id, seat, Capacity::parse(10).unwrap())
            .await,
        Err(CatalogError::BookingClosed(_))
    ));
    assert!(matches!(
        h.service.cancel_concert(Uuid::now_v7()).await,
        Err(CatalogError::ConcertNotFound)
    ));
}

#[tokio::test]
async fn capacity_grows_and_shrinks_only_down_to_what_is_sold() {
    let h = Harness::new().await;
    let created = h
        .service
        .create_concert(new_concert("Show", "A", "V", 24, &[("GA", 10)]))
        .await
        .unwrap();
    let (id, seat) = (created.concert.id, created.seat_types[0].seat_type.id);
    h.inventory.sell(seat, 6);

    let grown = h
        .service
        .set_capacity(id, seat, Capacity::parse(20).unwrap())
        .await
        .unwrap();
    assert_eq!((grown.capacity, grown.remaining), (20, 14));
    let shrunk = h
        .service
        .set_capacity(id, seat, Capacity::parse(6).unwrap())
        .await
        .unwrap();
    assert_eq!((shrunk.capacity, shrunk.remaining), (6, 0));
    let Err(CatalogError::Validation(errors)) = h
        .service
        .set_capacity(id, seat, Capacity::parse(5).unwrap())
        .await
    else {
        panic!("shrinking below sold must fail");
    };
    assert_eq!(errors[0].field, "capacity");

    assert!(matches!(
        h.service
            .set_capacity(id, Uuid::now_v7(), Capacity::parse(5).unwrap())
            .await,
        Err(CatalogError::SeatTypeNotFound)
    ));
    // A seat type of another concert is not this concert's.
    let other = h
        .service
        .create_concert(new_concert("Other", "A", "V", 24, &[("GA", 10)]))
        .await
        .unwrap();
    assert!(matches!(
        h.service
            .set_capacity(
                id,
                other.seat_types[0].seat_type.id,
                Capacity::parse(5).unwrap()
            )
            .await,
        Err(CatalogError::SeatTypeNotFound)
    ));
}

#[tokio::test]
async fn listings_filter_on_bookings_answer_and_paginate_without_gaps() {
    let h = Harness::new().await;
    // 120 concerts over 6 start times; every third one sold out, one cancelled, one past.
    let mut on_sale = Vec::new();
    let mut available = Vec::new();
    for i in 0..120 {
        let view = h
            .service
            .create_concert(new_concert(
                &format!("Show {i}"),
                "A",
                "V",
                2 + i % 6,
                &[("GA", 1)],
            ))
            .await
            .unwrap();
        let id = view.concert.id;
        if i % 3 == 0 {
            h.inventory.sell(view.seat_types[0].seat_type.id, 1);
        }
        if i == 1 {
            h.service.cancel_concert(id).await.unwrap();
            continue;
        }
        available.push((view.concert.starts_at, id));
        if i % 3 != 0 {
            on_sale.push((view.concert.starts_at, id));
        }
    }
    on_sale.sort();
    available.sort();

    async fn collect(h: &Harness, status: ListStatus, limit: u32) -> Vec<(OffsetDateTime, Uuid)> {
        let mut cursor = None;
        let mut seen = Vec::new();
        loop {
            let page = h.service.list(query(status, limit, cursor)).await.unwrap();
            assert!(page.items.len() <= usize::try_from(limit).unwrap());
            for item in &page.items {
                match status {
                    ListStatus::OnSale => assert_eq!(item.status, ConcertStatus::OnSale),
                    ListStatus::Available => {
                        assert_ne!(item.status, ConcertStatus::Cancelled)
                    }
                    ListStatus::All => {}
                }
                seen.push((item.concert.starts_at, item.concert.id));
            }
            match page.next_cursor {
                Some(next) => {
                    assert!(
                        !page.items.is_empty(),
                        "no empty pages with a next cursor here"
                    );
                    cursor = Some(next);
                }
                None => break,
            }
        }
        seen
    }

    assert_eq!(collect(&h, ListStatus::OnSale, 7).await, on_sale);
    assert_eq!(collect(&h, ListStatus::OnSale, 100).await, on_sale);
    assert_eq!(collect(&h, ListStatus::Available, 9).await, available);
    assert_eq!(collect(&h, ListStatus::All, 100).await.len(), 120);

    // An exact fit: the last page has no next cursor.
    let page = h
        .service
        .list(query(ListStatus::OnSale, 79, None))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 79);
    assert!(page.next_cursor.is_none());
    let page = h
        .service
        .list(query(ListStatus::OnSale, 78, None))
        .await
        .unwrap();
    assert!(page.next_cursor.is_some());
}

#[tokio::test]
async fn listing_needs_booking_for_the_counts() {
    let h = Harness::new().await;
    h.service
        .create_concert(new_concert("Show", "A", "V", 24, &[("GA", 1)]))
        .await
        .unwrap();
    h.inventory.set_down(true);
    assert!(matches!(
        h.service.list(query(ListStatus::Available, 20, None)).await,
        Err(CatalogError::Inventory(ClientError::Unavailable(_)))
    ));
}
