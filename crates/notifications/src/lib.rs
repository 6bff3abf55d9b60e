//! The Notifications service: the worker that turns Booking's outbox into emails.
//!
//! It implements the "Email" section of the API contract. Booking queues a message in its outbox
//! in the same transaction as the booking change; this crate claims those messages with a lease
//! (through [`boxoffice_shared::clients::OutboxSource`]), looks up where to send them (through
//! [`boxoffice_shared::clients::UserDirectory`]), renders and sends them, and acknowledges them.
//! Delivery is at least once: a message is acknowledged only after the transport accepted it, and
//! every message keeps one stable `Message-ID`, so a duplicate is recognisably the same email and
//! the mail directory holds one file per message however often it was delivered.
//!
//! The service has no HTTP routes and no tables of its own.
//!
//! # Layout
//! - [`config`]: the typed configuration section the binary hands to this service, the parsing
//!   of `--mail-url` into a [`TransportConfig`] and of the operator's sender into a [`Mailbox`].
//! - [`render`]: one outbox message plus a contact → one email: text and HTML alternatives and
//!   the concert as a calendar file.
//! - [`calendar`]: that calendar file, RFC 5545 iCalendar written by hand.
//! - [`transport`]: where emails go: RFC 5322 files written atomically into a mail directory
//!   (the default), or an SMTP relay.
//! - [`worker`]: the claim → render → send → acknowledge loop, its backoff, its metrics, the
//!   [`WorkerWaker`] that lets Booking cut the poll short, and graceful shutdown.
//! - [`error`]: this crate's error enum.
//! - [`open`]: opening Notifications for one process: the transport and the worker, with
//!   Booking's outbox and Auth's directory in process or over HTTP.
//!
//! # Wiring it up
//! ```no_run
//! # async fn wire(
//! #     outbox: std::sync::Arc<dyn boxoffice_shared::clients::OutboxSource>,
//! #     users: std::sync::Arc<dyn boxoffice_shared::clients::UserDirectory>,
//! #     stop: tokio_util::sync::CancellationToken,
//! # ) -> anyhow::Result<()> {
//! use boxoffice_notifications::{MailTransport, NotificationsConfig, TransportConfig, WorkerWaker};
//!
//! let transport = TransportConfig::parse(None, "data/mail".into())?;
//! // `--mail-from` / `BOXOFFICE_MAIL_FROM`; `None` keeps the default sender.
//! let config = NotificationsConfig::new(transport)
//!     .with_from(Some("Aurora Hall Box Office <tickets@example.com>"))?;
//! let mail = MailTransport::start(&config.transport).await?;
//! let waker = WorkerWaker::new(); // also handed to Booking, which pokes it after each commit
//! let clock = boxoffice_shared::clock::system();
//! let worker = tokio::spawn(boxoffice_notifications::run(
//!     outbox, users, mail, config, clock, waker, stop,
//! ));
//! # worker.await?;
//! # Ok(())
//! # }
//! ```

pub mod calendar;
pub mod config;
pub mod error;
pub mod open;
pub mod render;
pub mod transport;
pub mod worker;

pub use config::{NotificationsConfig, TransportConfig, parse_mailbox, sender};
pub use error::NotificationsError;
pub use lettre::message::Mailbox;
pub use transport::MailTransport;
pub use worker::{WorkerWaker, run};
