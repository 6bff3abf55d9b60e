//! Rendering one outbox message into an email.
//!
//! Each email is `multipart/mixed`: first the message itself, `multipart/alternative` with a
//! plain-text part and then an HTML part (RFC 2046 §5.1.4: the last part is the preferred one,
//! and clients that cannot show HTML fall back to the text); then the concert as a calendar file
//! (see [`crate::calendar`]), `text/calendar; method=PUBLISH` for a confirmation and
//! `method=CANCEL` for a cancellation. Times read the way a fan says them and as the venue's clocks
//! show them, "Saturday 1 May 2027, 21:30 CEST (Europe/Berlin)", the zone named rather than
//! implied; the calendar file carries the exact instant, which calendars show in the reader's zone.
//! Everything a user or an admin typed (names, venue, seat type) is escaped in the HTML part and
//! stripped of control characters in headers.
//!
//! The `Message-ID` is derived from the outbox message id, never generated, so that an email
//! delivered twice under at-least-once delivery is recognisably one message (RFC 5322 §3.6.4).

use std::fmt::Write as _;
use std::time::SystemTime;

use boxoffice_shared::clients::{Contact, EmailKind, OutboxMessage};
use boxoffice_shared::zone;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use uuid::Uuid;

use crate::calendar;
use crate::error::NotificationsError;

/// The file name of the calendar attachment.
pub const CALENDAR_FILE: &str = "concert.ics";

/// The `Content-ID` of a confirmation's QR code, which its HTML shows as `cid:…`.
pub const QR_CONTENT_ID: &str = "ticket-qr@boxoffice";

/// How big the QR code is drawn, in pixels at least.
const QR_PIXELS: u32 = 240;

/// The `Message-ID` of the email for outbox message `message_id`, angle brackets included.
pub fn message_id_header(message_id: Uuid) -> String {
    format!("<{message_id}@boxoffice>")
}

/// Renders `message` for `contact`, sent by `from` at `now` (the `Date:` header). With the
/// address of the shop (`shop`, its public base URL), the email links to the page it is about:
/// the ticket, the fan's tickets, or the offered seat's checkout.
pub fn render(
    message: &OutboxMessage,
    contact: &Contact,
    from: &Mailbox,
    shop: Option<&str>,
    now: OffsetDateTime,
) -> Result<Message, NotificationsError> {
    let address = contact.email.trim();
    let address =
        address
            .parse::<Address>()
            .map_err(|source| NotificationsError::InvalidRecipient {
                address: address.to_owned(),
                source,
            })?;
    let name = header_text(&contact.full_name);
    let to = Mailbox::new((!name.is_empty()).then_some(name), address);

    let view = View::new(message, shop);
    let email = Message::builder()
        .message_id(Some(message_id_header(message.message_id)))
        .date(SystemTime::from(now))
        .from(from.clone())
        .to(to)
        .subject(header_text(&view.subject()))
        .header(BookingIdHeader(message.booking.booking_id))
        .header(KindHeader(message.kind))
        .multipart(match calendar_part(message, from)? {
            Some(calendar) => MultiPart::mixed()
                .multipart(body(&view, &contact.full_name)?)
                .singlepart(calendar),
            None => body(&view, &contact.full_name)?,
        })?;
    Ok(email)
}

/// The message itself: text, then HTML — with the ticket's QR code as an inline image beside
/// it (`multipart/related`) when the email carries a ticket.
fn body(view: &View<'_>, name: &str) -> Result<MultiPart, NotificationsError> {
    let plain = SinglePart::plain(view.plain(name));
    let html = SinglePart::html(view.html(name));
    let qr = view
        .ticket_code()
        .and_then(|code| boxoffice_shared::qr::svg(code, QR_PIXELS));
    Ok(match qr {
        None => MultiPart::alternative().singlepart(plain).singlepart(html),
        Some(svg) => MultiPart::alternative().singlepart(plain).multipart(
            MultiPart::related().singlepart(html).singlepart(
                Attachment::new_inline(QR_CONTENT_ID.to_owned())
                    .body(svg, ContentType::parse("image/svg+xml")?),
            ),
        ),
    })
}

/// The `.ics` attachment of a booking's email (an offer is not an event in anyone's calendar
/// yet). Its `Content-Type` carries the iTIP method as well as the file does (RFC 6047 §2.4),
/// which is what makes mail clients offer "add to calendar" or "remove".
fn calendar_part(
    message: &OutboxMessage,
    from: &Mailbox,
) -> Result<Option<SinglePart>, NotificationsError> {
    let Some(method) = calendar::method(message.kind) else {
        return Ok(None);
    };
    let content_type =
        ContentType::parse(&format!("text/calendar; charset=utf-8; method={method}"))?;
    Ok(Some(
        Attachment::new(CALENDAR_FILE.to_owned()).body(calendar::ics(message, from), content_type),
    ))
}

/// The fields of one email, formatted once for both parts.
struct View<'a> {
    message: &'a OutboxMessage,
    starts_at: String,
    at: String,
    price: String,
    /// What the email links to in the shop, and its address.
    link: Option<(&'static str, String)>,
}

impl<'a> View<'a> {
    fn new(message: &'a OutboxMessage, shop: Option<&str>) -> Self {
        let booking = &message.booking;
        let link = shop
            .map(|base| base.trim().trim_end_matches('/'))
            .filter(|base| !base.is_empty())
            .map(|base| {
                let id = booking.booking_id;
                match message.kind {
                    EmailKind::BookingConfirmed => {
                        ("Your ticket online", format!("{base}/tickets/{id}"))
                    }
                    EmailKind::BookingCancelled => ("Your tickets", format!("{base}/tickets")),
                    EmailKind::WaitlistOffered => {
                        ("Pay for the seat", format!("{base}/holds/{id}"))
                    }
                }
            });
        Self {
            message,
            starts_at: readable(booking.starts_at, &booking.time_zone),
            at: readable(booking.at, &booking.time_zone),
            price: format_price(booking.price_cents, &booking.currency),
            link,
        }
    }

    fn subject(&self) -> String {
        let concert = &self.message.booking.concert_name;
        match self.message.kind {
            EmailKind::BookingConfirmed => format!("Your ticket for {concert} is confirmed"),
            EmailKind::BookingCancelled => format!("Your booking for {concert} was cancelled"),
            EmailKind::WaitlistOffered => {
                format!("A seat for {concert} is yours until {}", self.at)
            }
        }
    }

    fn headline(&self) -> &'static str {
        match self.message.kind {
            EmailKind::BookingConfirmed => "Your booking is confirmed.",
            EmailKind::BookingCancelled => "Your booking was cancelled and its seat released.",
            EmailKind::WaitlistOffered => {
                "A seat you were waiting for came free, and it is held for you."
            }
        }
    }

    fn footer(&self) -> &'static str {
        match self.message.kind {
            EmailKind::BookingConfirmed => {
                "Please quote your booking reference if you contact us. The attached calendar \
                 file adds the concert to your calendar."
            }
            EmailKind::BookingCancelled => {
                "This booking no longer admits you to the concert. The attached calendar file \
                 removes the concert from your calendar."
            }
            EmailKind::WaitlistOffered if self.link.is_some() => {
                "Pay for the seat before the time above to make it yours (the link above). After \
                 that time it goes to the next fan on the waiting list."
            }
            EmailKind::WaitlistOffered => {
                "Pay for the seat before the time above to make it yours (your holds in the box \
                 office, or POST /api/v1/holds/{offer reference}/pay). After that time it goes \
                 to the next fan on the waiting list."
            }
        }
    }

    /// Label/value rows shared by both parts, values unescaped. A concert provisioned before
    /// Booking kept artists has none, and its row is left out rather than shown empty.
    fn rows(&self) -> Vec<(&'static str, String)> {
        let booking = &self.message.booking;
        let at_label = match self.message.kind {
            EmailKind::BookingConfirmed => "Booked at",
            EmailKind::BookingCancelled => "Cancelled at",
            EmailKind::WaitlistOffered => "Yours until",
        };
        let reference_label = match self.message.kind {
            EmailKind::WaitlistOffered => "Offer reference",
            _ => "Booking reference",
        };
        let artist =
            (!booking.artist.trim().is_empty()).then(|| ("Artist", booking.artist.clone()));
        [
            Some(("Concert", booking.concert_name.clone())),
            artist,
            Some(("Venue", booking.venue.clone())),
            Some(("Starts at", self.starts_at.clone())),
            Some(("Seat type", booking.seat_type_name.clone())),
            Some(("Price", self.price.clone())),
            self.payment(),
            Some((reference_label, booking.booking_id.to_string())),
            Some((at_label, self.at.clone())),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// What was paid, or for a cancellation what is given back, and through whom.
    fn payment(&self) -> Option<(&'static str, String)> {
        let booking = &self.message.booking;
        let payment = booking.payment.as_ref()?;
        let amount = format_price(payment.amount_cents, &booking.currency);
        let (paid, refunded) = match payment.provider.as_str() {
            "stripe" => (
                "by card through Stripe".to_owned(),
                "back to the card it was paid with, through Stripe".to_owned(),
            ),
            "simulated" => {
                let test = "through the simulated payment provider (a test: no money moved)";
                (test.to_owned(), test.to_owned())
            }
            other => (format!("through {other}"), format!("through {other}")),
        };
        Some(match self.message.kind {
            EmailKind::BookingConfirmed => ("Paid", format!("{amount}, {paid}")),
            EmailKind::BookingCancelled => ("Refund", format!("{amount}, in full, {refunded}")),
            EmailKind::WaitlistOffered => return None,
        })
    }

    /// The ticket's code, on a confirmation that carries one.
    fn ticket_code(&self) -> Option<&str> {
        match self.message.kind {
            EmailKind::BookingConfirmed => self.message.booking.ticket_code.as_deref(),
            EmailKind::BookingCancelled | EmailKind::WaitlistOffered => None,
        }
    }

    fn plain(&self, name: &str) -> String {
        let mut text = format!("Hello {},\n\n{}\n\n", name.trim(), self.headline());
        for (label, value) in self.rows() {
            // Wide enough for the longest label ("Booking reference:") and a space.
            let _ = writeln!(text, "{:<19}{}", format!("{label}:"), value);
        }
        if let Some(code) = self.ticket_code() {
            let _ = write!(
                text,
                "\nYour ticket: show this code (or the QR code of this email) at the door.\n{code}\n"
            );
        }
        if let Some((label, url)) = &self.link {
            let _ = write!(text, "\n{label}: {url}\n");
        }
        let _ = write!(text, "\n{}\n\n-- \nboxoffice\n", self.footer());
        text
    }

    fn html(&self, name: &str) -> String {
        let mut html =
            String::from("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n");
        let _ = write!(
            html,
            "<p>Hello {},</p>\n<p><strong>{}</strong></p>\n<table>\n",
            escape_html(name.trim()),
            self.headline()
        );
        for (label, value) in self.rows() {
            let _ = writeln!(
                html,
                "<tr><th align=\"left\">{label}</th><td>{}</td></tr>",
                escape_html(&value)
            );
        }
        html.push_str("</table>\n");
        if let Some(code) = self.ticket_code() {
            // A ticket code is base64url: nothing in it needs escaping, but it is escaped anyway.
            let _ = write!(
                html,
                "<p><strong>Your ticket</strong>: show this QR code (or the code under it) at \
                 the door.</p>\n<p><img src=\"cid:{QR_CONTENT_ID}\" alt=\"Ticket QR code\" \
                 width=\"{QR_PIXELS}\" height=\"{QR_PIXELS}\"></p>\n\
                 <p><code style=\"word-break:break-all\">{}</code></p>\n",
                escape_html(code)
            );
        }
        if let Some((label, url)) = &self.link {
            let url = escape_html(url);
            let _ = writeln!(html, "<p><a href=\"{url}\">{label}</a>: {url}</p>");
        }
        let _ = write!(
            html,
            "<p>{}</p>\n<p>&mdash; boxoffice</p>\n</body></html>\n",
            self.footer()
        );
        html
    }
}

/// `X-Boxoffice-Booking-Id`: lets tools find the email of a booking without decoding the body.
#[derive(Debug, Clone, Copy)]
struct BookingIdHeader(Uuid);

impl Header for BookingIdHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Boxoffice-Booking-Id")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.trim().parse()?))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.to_string())
    }
}

/// `X-Boxoffice-Kind`: `booking_confirmed` or `booking_cancelled`, as in the outbox.
#[derive(Debug, Clone, Copy)]
struct KindHeader(EmailKind);

impl Header for KindHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Boxoffice-Kind")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let name = s.trim();
        EmailKind::parse(name)
            .map(Self)
            .ok_or_else(|| format!("unknown email kind {name:?}").into())
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.as_str().to_owned())
    }
}

/// `at` as the clocks of time zone `zone` read it, in words: "Saturday 1 May 2027, 21:30 CEST
/// (Europe/Berlin)"; "…, 19:30 UTC" for UTC; the zone's name alone where its abbreviation is only
/// a number. An unknown zone gives UTC, named as such.
pub fn readable(at: OffsetDateTime, zone_name: &str) -> String {
    let local = zone::local(at, zone_name);
    let words = local
        .at
        .format(format_description!(
            "[weekday] [day padding:none] [month repr:long] [year], [hour]:[minute]"
        ))
        // Only a year outside 0..=9999 fails; RFC 3339 (or the debug form) still says when.
        .or_else(|_| local.at.format(&Rfc3339))
        .unwrap_or_else(|_| local.at.to_string());
    match (local.zone.as_deref(), local.abbreviation) {
        // An unknown zone was given in UTC.
        (None | Some("UTC" | "Etc/UTC"), _) => format!("{words} UTC"),
        (Some(name), Some(abbreviation)) => format!("{words} {abbreviation} ({name})"),
        (Some(name), None) => format!("{words} ({name})"),
    }
}

/// ISO 4217 currencies whose minor unit is not a hundredth: (code, decimal places).
const MINOR_UNIT_EXPONENTS: &[(&str, u32)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("PYG", 0),
    ("RWF", 0),
    ("TND", 3),
    ("UGX", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
];

/// Formats an amount of minor units: `25000 USD` → `250.00 USD`, `5000 JPY` → `5000 JPY`.
pub fn format_price(minor_units: i64, currency: &str) -> String {
    let currency = currency.trim().to_ascii_uppercase();
    let exponent = MINOR_UNIT_EXPONENTS
        .iter()
        .find(|(code, _)| *code == currency)
        .map_or(2, |&(_, exponent)| exponent);
    let sign = if minor_units < 0 { "-" } else { "" };
    // unsigned_abs: i64::MIN has no positive i64 counterpart.
    let amount = minor_units.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{amount} {currency}");
    }
    let scale = 10_u64.pow(exponent);
    let width = exponent as usize;
    format!(
        "{sign}{}.{:0width$} {currency}",
        amount / scale,
        amount % scale
    )
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Text for a header: control characters (CR/LF above all) become spaces, so user-provided text
/// can never start a header of its own, and runs of whitespace collapse.
fn header_text(text: &str) -> String {
    text.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
