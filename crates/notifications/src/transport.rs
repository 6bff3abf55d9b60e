//! Where emails go: a mail directory (the default) or an SMTP relay.
//!
//! The mail directory holds one RFC 5322 file per outbox message, `<dir>/<message_id>.eml`.
//! A file appears whole or not at all: it is written under `<dir>/tmp/`, flushed to disk, renamed
//! into place and the directory entry flushed too, so a crash never leaves half an email and an
//! email the worker acknowledged survives a power cut. Delivering the same message again (the
//! outbox is at least once) replaces the same file, so a reader sees one file per `Message-ID`.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use crate::config::TransportConfig;
use crate::error::NotificationsError;

/// The name of the staging sub-directory; on the same file system, so the rename is atomic.
const STAGING: &str = "tmp";

/// A started mail transport. Cheap to clone: clones share the SMTP connection pool.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// Files in a directory.
    MailDir(MailDir),
    /// An SMTP relay, through lettre's pooled async transport.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl MailTransport {
    /// Starts the configured transport: creates the mail directory, or builds the SMTP pool
    /// (which needs the runtime, hence `async`). No SMTP connection is opened until the first
    /// email, so a relay that is down does not stop start-up; its emails wait in the outbox.
    pub async fn start(config: &TransportConfig) -> Result<Self, NotificationsError> {
        match config {
            TransportConfig::MailDir(dir) => Ok(Self::MailDir(MailDir::create(dir.clone()).await?)),
            TransportConfig::Smtp(smtp) => Ok(Self::Smtp(smtp.build())),
        }
    }

    /// Sends `message`, the email of outbox message `message_id`. `Ok` means the transport
    /// accepted it: the file is durable, or the relay answered 2xx.
    pub async fn send(
        &self,
        message: &Message,
        message_id: Uuid,
    ) -> Result<(), NotificationsError> {
        match self {
            Self::MailDir(dir) => dir.deliver(message.formatted(), message_id).await,
            Self::Smtp(smtp) => {
                smtp.send_raw(message.envelope(), &message.formatted())
                    .await?;
                Ok(())
            }
        }
    }

    /// Closes pooled SMTP connections politely (`QUIT`); nothing to do for a directory.
    pub async fn shutdown(&self) {
        if let Self::Smtp(smtp) = self {
            smtp.shutdown().await;
        }
    }
}

/// A directory receiving one `.eml` file per outbox message.
#[derive(Debug, Clone)]
pub struct MailDir {
    /// Where finished emails are.
    dir: PathBuf,
}

impl MailDir {
    /// Creates `dir` (and its staging sub-directory) if needed.
    pub async fn create(dir: PathBuf) -> Result<Self, NotificationsError> {
        let staging = dir.join(STAGING);
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(|source| NotificationsError::MailDir {
                path: staging,
                source,
            })?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the email of outbox message `message_id` is (or will be).
    pub fn file_for(&self, message_id: Uuid) -> PathBuf {
        self.dir.join(format!("{message_id}.eml"))
    }

    /// Writes `bytes` as the email of `message_id`, atomically and durably.
    pub async fn deliver(
        &self,
        bytes: Vec<u8>,
        message_id: Uuid,
    ) -> Result<(), NotificationsError> {
        let dir = self.dir.clone();
        let target = self.file_for(message_id);
        // std::fs on the blocking pool: one hop for the whole sequence instead of one per call.
        tokio::task::spawn_blocking(move || write_atomically(&dir, &target, &bytes, message_id))
            .await?
    }
}

fn write_atomically(
    dir: &Path,
    target: &Path,
    bytes: &[u8],
    message_id: Uuid,
) -> Result<(), NotificationsError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| NotificationsError::MailDir { path, source }
    };
    // Again on every send, not only at start: an operator may have cleared the directory.
    let staging = dir.join(STAGING);
    fs::create_dir_all(&staging).map_err(io_error(&staging))?;

    // A name of its own per attempt: two workers redelivering the same message at once (a lease
    // ran out mid-send) must not write into one staging file.
    let temp = staging.join(format!("{message_id}.{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&temp);
        return Err(NotificationsError::MailDir { path: temp, source });
    }
    if let Err(source) = fs::rename(&temp, target) {
        let _ = fs::remove_file(&temp);
        return Err(NotificationsError::MailDir {
            path: target.to_owned(),
            source,
        });
    }
    // The rename is only durable once the directory itself is flushed.
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn email(subject: &str) -> Message {
        Message::builder()
            .from("a@example.com".parse().unwrap())
            .to("b@example.com".parse().unwrap())
            .subject(subject)
            .body(String::from("hi"))
            .unwrap()
    }

    fn emails_in(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn one_file_per_message_id_even_when_sent_twice() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mail");
        let transport = MailTransport::start(&TransportConfig::MailDir(dir.clone()))
            .await
            .unwrap();
        let id = Uuid::now_v7();

        transport.send(&email("first"), id).await.unwrap();
        transport.send(&email("second"), id).await.unwrap();

        assert_eq!(emails_in(&dir), [dir.join(format!("{id}.eml"))]);
        let content = fs::read_to_string(dir.join(format!("{id}.eml"))).unwrap();
        assert!(content.contains("Subject: second"), "{content}");
        assert!(
            emails_in(&dir.join(STAGING)).is_empty(),
            "staging files left behind"
        );
    }

    #[tokio::test]
    async fn a_directory_that_cannot_exist_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let error = MailTransport::start(&TransportConfig::MailDir(file))
            .await
            .unwrap_err();
        assert!(
            matches!(error, NotificationsError::MailDir { .. }),
            "{error}"
        );
    }
}
