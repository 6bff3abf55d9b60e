//! Opening Notifications for one process: the mail transport and the worker that sends the
//! emails in Booking's outbox, with Booking and Auth in process or over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_shared::clients::{OutboxSource, UserDirectory};
use boxoffice_shared::clock::SharedClock;
use boxoffice_shared::component::{Component, Peer, Wiring};
use boxoffice_shared::remote::{RemoteDirectory, RemoteOutbox};

use crate::config::{NotificationsConfig, TransportConfig};
use crate::transport::MailTransport;
use crate::worker::{WorkerWaker, run};

/// Where emails go and who sends them.
pub struct Mail<'a> {
    /// `--mail-url`: `smtp://…`, `smtps://…`, or `None` for the mail directory.
    pub url: Option<&'a str>,
    /// The mail directory.
    pub dir: PathBuf,
    /// The sender, `Name <address>`; `None` for the default.
    pub from: Option<&'a str>,
    /// The shop's public address, for the links in emails; `None`: no links.
    pub shop: Option<&'a str>,
}

/// Starts the mail transport and the worker; `waker` is how an in-process Booking wakes it.
/// Notifications serves no route and has no store of its own.
pub async fn open(
    wiring: &Wiring<'_>,
    mail: Mail<'_>,
    booking: Peer<'_, Arc<dyn OutboxSource>>,
    auth: Peer<'_, Arc<dyn UserDirectory>>,
    clock: SharedClock,
    waker: WorkerWaker,
) -> anyhow::Result<Component> {
    let outbox: Arc<dyn OutboxSource> = match booking {
        Peer::InProcess(outbox) => outbox,
        Peer::Remote(urls) => wiring.failover(urls, RemoteOutbox::new)?,
    };
    let users: Arc<dyn UserDirectory> = match auth {
        Peer::InProcess(users) => users,
        Peer::Remote(urls) => wiring.failover(urls, RemoteDirectory::new)?,
    };
    let transport_config = TransportConfig::parse(mail.url, mail.dir)?;
    tracing::info!(transport = %transport_config, "emails go to the {transport_config}");
    let transport = MailTransport::start(&transport_config)
        .await
        .context("starting the mail transport")?;
    let config = NotificationsConfig {
        shop_url: mail.shop.map(str::to_owned),
        ..NotificationsConfig::new(transport_config).with_from(mail.from)?
    };
    wiring.tasks.spawn(run(
        outbox,
        users,
        transport,
        config,
        clock,
        waker,
        wiring.stop.clone(),
    ));
    Ok(Component::default())
}
