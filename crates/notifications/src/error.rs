//! The Notifications service's errors.
//!
//! None of them reaches a client: the service has no HTTP surface. They decide what the worker
//! does with a message instead (see [`NotificationsError::is_undeliverable`]) and end up in the
//! log and in the outbox row's last error.

use std::path::PathBuf;

use boxoffice_shared::clients::ClientError;

/// Everything that can go wrong while delivering one outbox message.
#[derive(Debug, thiserror::Error)]
pub enum NotificationsError {
    /// The user's stored email address is not one lettre accepts. Retrying cannot help.
    #[error("recipient address {address:?} is invalid: {source}")]
    InvalidRecipient {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    /// The message could not be assembled (e.g. a missing originator). Retrying cannot help.
    #[error("could not build the email: {0}")]
    Build(#[from] lettre::error::Error),
    /// A part's `Content-Type` did not parse. They are built from constants, so this is a bug;
    /// retrying cannot help.
    #[error("could not build the email's content type: {0}")]
    ContentType(#[from] lettre::message::header::ContentTypeErr),
    /// Writing into the mail directory failed (missing, not a directory, full disk, …).
    #[error("mail directory {}: {source}", path.display())]
    MailDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The SMTP relay could not be reached or refused the message.
    #[error("SMTP delivery failed: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// A peer service (the outbox or the user directory) failed.
    #[error("peer service: {0}")]
    Client(#[from] ClientError),
    /// The blocking file-system task died (panicked or was cancelled).
    #[error("mail directory task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl NotificationsError {
    /// The message can never be sent as it stands, so retrying only fills the log: the worker
    /// drops it (acknowledges it) with an error instead of backing off forever.
    pub fn is_undeliverable(&self) -> bool {
        matches!(
            self,
            Self::InvalidRecipient { .. } | Self::Build(_) | Self::ContentType(_)
        )
    }

    /// A short, stable label for the `email_failures_total{reason}` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidRecipient { .. } | Self::Build(_) | Self::ContentType(_) => {
                "undeliverable"
            }
            Self::MailDir { .. } | Self::Smtp(_) | Self::Task(_) => "transport",
            Self::Client(_) => "directory",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_malformed_messages_are_undeliverable() {
        let io = NotificationsError::MailDir {
            path: "/nowhere".into(),
            source: std::io::Error::other("disk full"),
        };
        assert!(!io.is_undeliverable());
        assert_eq!(io.reason(), "transport");

        let peer = NotificationsError::Client(ClientError::Unavailable("down".into()));
        assert!(!peer.is_undeliverable());
        assert_eq!(peer.reason(), "directory");

        let address = "not an address".parse::<lettre::Address>();
        let Err(source) = address else {
            panic!("parsed an invalid address")
        };
        let bad = NotificationsError::InvalidRecipient {
            address: "not an address".into(),
            source,
        };
        assert!(bad.is_undeliverable());
        assert_eq!(bad.reason(), "undeliverable");
    }
}
