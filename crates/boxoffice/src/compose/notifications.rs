//! Opening Notifications: the mail transport and the worker that sends the emails in Booking's
//! outbox, with Booking and Auth in process or over HTTP.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_auth::AuthService;
use boxoffice_booking::BookingService;
use boxoffice_notifications::{MailTransport, NotificationsConfig, TransportConfig, WorkerWaker};
use boxoffice_shared::clients::{OutboxSource, UserDirectory};
use boxoffice_shared::remote::{RemoteDirectory, RemoteOutbox};

use super::{Component, Context};

/// Starts the notifications worker where this process runs Notifications; `email_waker` is how
/// an in-process Booking wakes it. It serves no route and has no store of its own.
pub async fn open(
    context: &Context<'_>,
    booking: Option<&BookingService>,
    auth: Option<&AuthService>,
    email_waker: WorkerWaker,
) -> anyhow::Result<Component> {
    let config = context.config;
    if !config.roles.notifications {
        return Ok(Component::default());
    }
    let outbox: Arc<dyn OutboxSource> = match booking {
        Some(booking) => Arc::new(booking.clone()),
        None => context.failover(&config.peers.booking, RemoteOutbox::new)?,
    };
    let users: Arc<dyn UserDirectory> = match auth {
        Some(auth) => Arc::new(auth.clone()),
        None => context.failover(&config.peers.auth, RemoteDirectory::new)?,
    };
    let mail_dir = config
        .mail_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("mail"));
    let transport_config = TransportConfig::parse(config.mail_url.as_deref(), mail_dir)?;
    tracing::info!(transport = %transport_config, "emails go to the {transport_config}");
    let transport = MailTransport::start(&transport_config)
        .await
        .context("starting the mail transport")?;
    let notifications =
        NotificationsConfig::new(transport_config).with_from(config.mail_from.as_deref())?;
    context.tasks.spawn(boxoffice_notifications::run(
        outbox,
        users,
        transport,
        notifications,
        config.clock.clone(),
        email_waker,
        context.stop.clone(),
    ));
    Ok(Component::default())
}
