//! The configuration section the binary hands to this service.
//!
//! Only the binary reads flags and environment variables; it turns `--mail-url` /
//! `BOXOFFICE_MAIL_URL` and the mail directory into a [`TransportConfig`] with
//! [`TransportConfig::parse`], and the sender (`--mail-from` / `BOXOFFICE_MAIL_FROM`, e.g.
//! `Aurora Hall Box Office <tickets@example.com>`) into the `From:` with [`sender`] or
//! [`NotificationsConfig::with_from`]. Both fail at start-up with a message that says which forms
//! are accepted, rather than at the first email.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{Address, AsyncSmtpTransport, Tokio1Executor};

/// The sender used when none is configured.
pub const DEFAULT_FROM: &str = "boxoffice <tickets@boxoffice.localhost>";

/// Where emails go.
#[derive(Clone)]
pub enum TransportConfig {
    /// Write each email as one RFC 5322 `.eml` file into this directory (created at start).
    MailDir(PathBuf),
    /// Hand emails to an SMTP relay.
    Smtp(SmtpConfig),
}

/// A parsed `smtp://` / `smtps://` URL.
///
/// It keeps lettre's builder rather than a built transport because building one spawns the
/// connection pool's clean-up task, which needs a running Tokio runtime; configuration is parsed
/// before that. Its `Debug` output never shows the credentials.
#[derive(Clone)]
pub struct SmtpConfig {
    /// lettre's transport builder, with host, port, TLS mode and credentials from the URL.
    /// Boxed: it is ten times the size of the other variant's path.
    builder: Box<AsyncSmtpTransportBuilder>,
    /// `scheme://host:port` without credentials, for logs.
    endpoint: String,
}

impl SmtpConfig {
    /// `scheme://host[:port]`, without user name or password: safe to log.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Builds the transport. Must run inside a Tokio runtime (the pool spawns a task).
    pub(crate) fn build(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        (*self.builder).clone().build()
    }
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MailDir(dir) => f.debug_tuple("MailDir").field(dir).finish(),
            Self::Smtp(smtp) => f.debug_tuple("Smtp").field(smtp).finish(),
        }
    }
}

impl fmt::Display for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MailDir(dir) => write!(f, "mail directory {}", dir.display()),
            Self::Smtp(smtp) => write!(f, "SMTP relay {}", smtp.endpoint),
        }
    }
}

const ACCEPTED_FORMS: &str = "accepted forms: smtp://[user:pass@]host[:port][?tls=required|opportunistic], \
     smtps://[user:pass@]host[:port], file://DIR or maildir://DIR, or no URL for the mail directory";

impl TransportConfig {
    /// Chooses the transport from the `--mail-url` flag.
    ///
    /// - no URL (or an empty one): the mail directory `mail_dir`;
    /// - `smtp://…` / `smtps://…`: an SMTP relay, parsed by lettre (`smtps` is TLS from the first
    ///   byte, `smtp` is plain unless `?tls=required` or `?tls=opportunistic`);
    /// - `file://DIR` or `maildir://DIR`: a mail directory at `DIR`.
    pub fn parse(mail_url: Option<&str>, mail_dir: PathBuf) -> anyhow::Result<TransportConfig> {
        let Some(url) = mail_url.map(str::trim).filter(|url| !url.is_empty()) else {
            return Ok(Self::MailDir(mail_dir));
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!("mail URL {:?} has no scheme; {ACCEPTED_FORMS}", redact(url));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "smtp" | "smtps" => {
                let builder =
                    AsyncSmtpTransport::<Tokio1Executor>::from_url(url).with_context(|| {
                        format!(
                            "mail URL {:?} is not a valid SMTP URL; {ACCEPTED_FORMS}",
                            redact(url)
                        )
                    })?;
                Ok(Self::Smtp(SmtpConfig {
                    builder: Box::new(builder),
                    endpoint: redact(url),
                }))
            }
            "file" | "maildir" => {
                if rest.is_empty() {
                    bail!("mail URL {url:?} names no directory; {ACCEPTED_FORMS}");
                }
                Ok(Self::MailDir(PathBuf::from(rest)))
            }
            other => bail!("mail URL scheme {other:?} is not supported; {ACCEPTED_FORMS}"),
        }
    }
}

/// The URL without its user-info part, so that a password never reaches a log or an error.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Parses a sender such as `boxoffice <tickets@example.com>` or `tickets@example.com`.
pub fn parse_mailbox(from: &str) -> anyhow::Result<Mailbox> {
    from.parse::<Mailbox>().with_context(|| {
        format!(
            "{from:?} is not a valid sender; expected e.g. \
             \"Aurora Hall Box Office <tickets@example.com>\" or \"tickets@example.com\" \
             (a display name with a comma goes in double quotes)"
        )
    })
}

/// The `From:` of every email, from the operator's setting (`--mail-from` /
/// `BOXOFFICE_MAIL_FROM`): a display name and an address, `Aurora Hall Box Office
/// <tickets@example.com>`, which is what a fan's inbox lists; or only an address. No setting (or
/// an empty one) keeps [`DEFAULT_FROM`].
pub fn sender(setting: Option<&str>) -> anyhow::Result<Mailbox> {
    match setting.map(str::trim).filter(|from| !from.is_empty()) {
        Some(from) => parse_mailbox(from),
        None => Ok(default_from()),
    }
}

fn default_from() -> Mailbox {
    // A constant known to be valid (see the test below), so there is nothing to fail at run time.
    Mailbox::new(
        Some("boxoffice".to_owned()),
        Address::new_dangerous("tickets", "boxoffice.localhost"),
    )
}

/// The Notifications service's configuration section.
#[derive(Debug, Clone)]
pub struct NotificationsConfig {
    /// Where emails go.
    pub transport: TransportConfig,
    /// How long the worker sleeps when the outbox had nothing due. Booking can cut it short
    /// through the [`crate::WorkerWaker`], so this is only the upper bound on the delay of an email.
    pub poll_interval: Duration,
    /// How many messages one claim leases at most.
    pub batch: u32,
    /// How long a claimed message stays leased to this worker. It must comfortably exceed the time
    /// to send a whole batch, or another worker may claim (and send) a message again meanwhile.
    pub lease: Duration,
    /// The wait after the first failed attempt at a message; it doubles with each further failure.
    pub base_backoff: Duration,
    /// The longest wait between two attempts at one message.
    pub max_backoff: Duration,
    /// The `From:` of every email, display name included (see [`sender`]); also the
    /// `ORGANIZER` of the attached calendar event. Default [`DEFAULT_FROM`].
    pub from: Mailbox,
    /// The shop's public address (`--public-url`), for the links in emails; without it emails
    /// carry no links.
    pub shop_url: Option<String>,
}

impl NotificationsConfig {
    /// The defaults, sending through `transport`.
    pub fn new(transport: TransportConfig) -> Self {
        Self {
            transport,
            poll_interval: Duration::from_millis(500),
            batch: 32,
            lease: Duration::from_secs(60),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(15 * 60),
            from: default_from(),
            shop_url: None,
        }
    }

    /// The same configuration sending as the operator's sender setting (see [`sender`]).
    pub fn with_from(self, setting: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            from: sender(setting)?,
            ..self
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(url: Option<&str>) -> anyhow::Result<TransportConfig> {
        TransportConfig::parse(url, PathBuf::from("/data/mail"))
    }

    #[test]
    fn no_url_means_the_mail_directory() {
        let TransportConfig::MailDir(dir) = parse(None).unwrap() else {
            panic!("not a mail dir")
        };
        assert_eq!(dir, PathBuf::from("/data/mail"));
        assert!(matches!(
            parse(Some("  ")).unwrap(),
            TransportConfig::MailDir(_)
        ));
    }

    #[test]
    fn file_and_maildir_urls_name_a_directory() {
        for url in [
            "file:///var/spool/boxoffice",
            "maildir:///var/spool/boxoffice",
        ] {
            let TransportConfig::MailDir(dir) = parse(Some(url)).unwrap() else {
                panic!("{url}")
            };
            assert_eq!(dir, PathBuf::from("/var/spool/boxoffice"));
        }
        assert!(parse(Some("file://")).is_err());
    }

    #[test]
    fn smtp_urls_are_accepted_and_their_secrets_are_not_shown() {
        let TransportConfig::Smtp(plain) = parse(Some("smtp://localhost:2525")).unwrap() else {
            panic!("not SMTP")
        };
        assert_eq!(plain.endpoint(), "smtp://localhost:2525");

        let config = parse(Some("smtps://u:p@mail.example.com")).unwrap();
        let TransportConfig::Smtp(ref tls) = config else {
            panic!("not SMTP")
        };
        assert_eq!(tls.endpoint(), "smtps://mail.example.com");
        let shown = format!("{config:?} {config}");
        assert!(!shown.contains("u:p"), "credentials leaked: {shown}");
    }

    #[test]
    fn other_schemes_are_rejected_with_the_accepted_forms() {
        for url in ["http://x", "x", "smtp://"] {
            let error = format!("{:#}", parse(Some(url)).unwrap_err());
            assert!(error.contains("smtp://"), "{url}: {error}");
            assert!(error.contains("file://DIR"), "{url}: {error}");
        }
        let error = format!("{:#}", parse(Some("ftp://user:secret@host")).unwrap_err());
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn default_sender_is_the_documented_one() {
        assert_eq!(default_from(), parse_mailbox(DEFAULT_FROM).unwrap());
        assert_eq!(
            NotificationsConfig::new(parse(None).unwrap())
                .from
                .to_string(),
            DEFAULT_FROM
        );
        assert!(parse_mailbox("nobody").is_err());
    }

    #[test]
    fn the_operator_names_the_sender() {
        let config = NotificationsConfig::new(parse(None).unwrap());
        let named = config
            .clone()
            .with_from(Some(" Aurora Hall Box Office <tickets@example.com> "))
            .unwrap();
        assert_eq!(named.from.name.as_deref(), Some("Aurora Hall Box Office"));
        assert_eq!(named.from.email.to_string(), "tickets@example.com");

        // A comma in the name needs quotes, as in any address header.
        let quoted = sender(Some("\"Aurora Hall, Box Office\" <tickets@example.com>")).unwrap();
        assert_eq!(quoted.name.as_deref(), Some("Aurora Hall, Box Office"));

        let bare = sender(Some("tickets@example.com")).unwrap();
        assert_eq!(bare.name, None);

        // Unset or blank keeps the default.
        for unset in [None, Some(""), Some("  ")] {
            assert_eq!(
                sender(unset).unwrap().to_string(),
                DEFAULT_FROM,
                "{unset:?}"
            );
        }

        let error = format!(
            "{:#}",
            config
                .with_from(Some("Aurora Hall Box Office"))
                .unwrap_err()
        );
        assert!(
            error.contains("Aurora Hall Box Office <tickets@example.com>"),
            "{error}"
        );
    }
}
