//! Webhooks on the Booking store: endpoints, the queued events and their fan-out, the delivery
//! queue, and what an event says — on the engine the store runs on (`sqlite/webhooks.rs`,
//! `postgres/webhooks.rs`).

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::BookingStore;
use crate::error::BookingError;
use crate::rows;
use crate::webhook::{
    Attempted, Claimed, Delivery, Endpoint, NewEndpoint, Subscribed, WebhookEvent,
};

/// The data of a `checkin.created` event.
#[derive(Debug, Serialize)]
struct CheckinData {
    booking_id: Uuid,
    user_id: Uuid,
    concert_id: Uuid,
    seat_type_id: Uuid,
    #[serde(with = "time::serde::rfc3339::option")]
    checked_in_at: Option<OffsetDateTime>,
}

impl BookingStore {
    /// Stores a new endpoint; `subscribed` includes its events once it is stored.
    pub async fn create_webhook(
        &self,
        endpoint: NewEndpoint,
        subscribed: &Subscribed,
    ) -> Result<(), BookingError> {
        dispatch!(self, engine => engine.create_webhook(endpoint, subscribed).await)
    }

    /// Deletes an endpoint (disables it for good); `false` when there is none to delete.
    pub async fn delete_webhook(
        &self,
        id: Uuid,
        subscribed: &Subscribed,
    ) -> Result<bool, BookingError> {
        dispatch!(self, engine => engine.delete_webhook(id, subscribed).await)
    }

    /// One page of endpoints, newest first, older than `before` when given.
    pub async fn webhook_endpoints(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Endpoint>, BookingError> {
        dispatch!(self, engine => engine.webhook_endpoints(before, limit).await)
    }

    pub async fn webhook_endpoint(&self, id: Uuid) -> Result<Option<Endpoint>, BookingError> {
        dispatch!(self, engine => engine.webhook_endpoint(id).await)
    }

    /// One page of an endpoint's deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        endpoint_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Delivery>, BookingError> {
        dispatch!(self, engine => engine.webhook_deliveries(endpoint_id, before, limit).await)
    }

    /// Writes the deliveries of up to `limit` queued events, in order, and moves the fan-out
    /// cursor past them (one instance at a time); answers how many events.
    pub async fn fan_out_webhooks(&self, limit: u32) -> Result<usize, BookingError> {
        dispatch!(self, engine => engine.fan_out_webhooks(limit).await)
    }

    /// Leases up to `limit` due deliveries to `owner` (this instance) for `lease`.
    pub async fn claim_webhooks(
        &self,
        owner: Uuid,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Claimed>, BookingError> {
        dispatch!(self, engine => engine.claim_webhooks(owner, limit, lease).await)
    }

    /// Records what attempts came to.
    pub async fn record_webhooks(
        &self,
        attempts: Vec<Attempted>,
        subscribed: &Subscribed,
    ) -> Result<(), BookingError> {
        dispatch!(self, engine => engine.record_webhooks(attempts, subscribed).await)
    }

    /// How many commands wait for this process's writer: the webhook worker lets bookings go
    /// first while there is a queue.
    pub fn writer_backlog(&self) -> usize {
        dispatch!(self, engine => engine.writer_backlog())
    }

    /// Makes the deliveries `owner`'s previous run leased due at once.
    pub async fn release_webhook_leases(&self, owner: Uuid) -> Result<u64, BookingError> {
        dispatch!(self, engine => engine.release_webhook_leases(owner).await)
    }

    /// What an event about `subject` says, read now: the booking or hold as the API shows it
    /// (a hold without its payment's client secret), the check-in, or the sold-out seat type.
    /// `None` when the store has no such subject.
    pub async fn webhook_data(
        &self,
        event: WebhookEvent,
        subject: Uuid,
    ) -> Result<Option<serde_json::Value>, BookingError> {
        let value = match event {
            WebhookEvent::BookingConfirmed | WebhookEvent::BookingCancelled => {
                let booking = dispatch!(self, engine => rows::booking_by_id(engine.read_pool(), subject).await)?;
                booking.map(serde_json::to_value)
            }
            WebhookEvent::HoldExpired | WebhookEvent::WaitlistOffered => {
                let hold =
                    dispatch!(self, engine => rows::hold_by_id(engine.read_pool(), subject).await)?;
                hold.map(|mut hold| {
                    hold.payment.client_secret = None;
                    serde_json::to_value(hold)
                })
            }
            WebhookEvent::CheckinCreated => {
                let ticket =
                    dispatch!(self, engine => rows::ticket_row(engine.read_pool(), subject).await)?;
                ticket.map(|ticket| {
                    serde_json::to_value(CheckinData {
                        booking_id: ticket.booking_id,
                        user_id: ticket.user_id,
                        concert_id: ticket.concert_id,
                        seat_type_id: ticket.seat_type_id,
                        checked_in_at: ticket.checked_in_at,
                    })
                })
            }
            WebhookEvent::ConcertSoldOut => {
                let seat =
                    dispatch!(self, engine => rows::sold_out(engine.read_pool(), subject).await)?;
                seat.map(serde_json::to_value)
            }
        };
        value
            .transpose()
            .map_err(|error| BookingError::Corrupt(format!("webhook data: {error}")))
    }
}
