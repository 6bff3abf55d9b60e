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

/// Renders `message` for `contact`, sent by `from` at `now` (the `Date:` header).
pub fn render(
    message: &OutboxMessage,
    contact: &Contact,
    from: &Mailbox,
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

    let view = View::new(message);
    let email = Message::builder()
        .message_id(Some(message_id_header(message.message_id)))
        .date(SystemTime::from(now))
        .from(from.clone())
        .to(to)
        .subject(header_text(&view.subject()))
        .header(BookingIdHeader(message.booking.booking_id))
        .header(KindHeader(message.kind))
        .multipart(
            MultiPart::mixed()
                .multipart(body(&view, &contact.full_name)?)
                .singlepart(calendar_part(message, from)?),
        )?;
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

/// The `.ics` attachment. Its `Content-Type` carries the iTIP method as well as the file does
/// (RFC 6047 §2.4), which is what makes mail clients offer "add to calendar" or "remove".
fn calendar_part(
    message: &OutboxMessage,
    from: &Mailbox,
) -> Result<SinglePart, NotificationsError> {
    let content_type = ContentType::parse(&format!(
        "text/calendar; charset=utf-8; method={}",
        calendar::method(message.kind)
    ))?;
    Ok(Attachment::new(CALENDAR_FILE.to_owned()).body(calendar::ics(message, from), content_type))
}

/// The fields of one email, formatted once for both parts.
struct View<'a> {
    message: &'a OutboxMessage,
    starts_at: String,
    at: String,
    price: String,
}

impl<'a> View<'a> {
    fn new(message: &'a OutboxMessage) -> Self {
        let booking = &message.booking;
        Self {
            message,
            starts_at: readable(booking.starts_at, &booking.time_zone),
            at: readable(booking.at, &booking.time_zone),
            price: format_price(booking.price_cents, &booking.currency),
        }
    }

    fn subject(&self) -> String {
        let concert = &self.message.booking.concert_name;
        match self.message.kind {
            EmailKind::BookingConfirmed => format!("Your ticket for {concert} is confirmed"),
            EmailKind::BookingCancelled => format!("Your booking for {concert} was cancelled"),
        }
    }

    fn headline(&self) -> &'static str {
        match self.message.kind {
            EmailKind::BookingConfirmed => "Your booking is confirmed.",
            EmailKind::BookingCancelled => "Your booking was cancelled and its seat released.",
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
        }
    }

    /// Label/value rows shared by both parts, values unescaped. A concert provisioned before
    /// Booking kept artists has none, and its row is left out rather than shown empty.
    fn rows(&self) -> Vec<(&'static str, String)> {
        let booking = &self.message.booking;
        let at_label = match self.message.kind {
            EmailKind::BookingConfirmed => "Booked at",
            EmailKind::BookingCancelled => "Cancelled at",
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
            Some(("Booking reference", booking.booking_id.to_string())),
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
        })
    }

    /// The ticket's code, on a confirmation that carries one.
    fn ticket_code(&self) -> Option<&str> {
        match self.message.kind {
            EmailKind::BookingConfirmed => self.message.booking.ticket_code.as_deref(),
            EmailKind::BookingCancelled => None,
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
mod tests {
    #![allow(clippy::unwrap_used)]

    use boxoffice_shared::clients::{BookingEmail, EmailPayment};
    use time::macros::datetime;

    use super::*;
    use crate::config::{DEFAULT_FROM, parse_mailbox};

    fn sample(kind: EmailKind) -> OutboxMessage {
        OutboxMessage {
            message_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            kind,
            attempts: 0,
            booking: BookingEmail {
                booking_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00b0),
                user_id: Uuid::from_u128(7),
                concert_id: Uuid::from_u128(8),
                concert_name: "Rock <&> Roll".into(),
                artist: "Aurora & <The Lights>".into(),
                venue: "O'Brien \"Hall\"".into(),
                time_zone: "Europe/Berlin".into(),
                starts_at: datetime!(2027-05-01 21:30 +02:00),
                seat_type_name: "<script>alert(1)</script>".into(),
                price_cents: 25000,
                currency: "USD".into(),
                at: datetime!(2027-01-02 03:04:05 UTC),
                payment: None,
                ticket_code: None,
            },
        }
    }

    fn contact() -> Contact {
        Contact {
            email: "ada@example.com".into(),
            full_name: "Ada <Lovelace>".into(),
        }
    }

    fn rendered(kind: EmailKind) -> (Message, String) {
        let from = parse_mailbox(DEFAULT_FROM).unwrap();
        let message = render(
            &sample(kind),
            &contact(),
            &from,
            datetime!(2027-01-02 03:04:06 UTC),
        )
        .unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        (message, text)
    }

    #[test]
    fn prices_use_the_currency_minor_unit() {
        assert_eq!(format_price(25000, "USD"), "250.00 USD");
        assert_eq!(format_price(5, "eur"), "0.05 EUR");
        assert_eq!(format_price(0, "USD"), "0.00 USD");
        assert_eq!(format_price(5000, "JPY"), "5000 JPY");
        assert_eq!(format_price(150000, "KRW"), "150000 KRW");
        assert_eq!(format_price(250000, "VND"), "250000 VND");
        assert_eq!(format_price(1500, "KWD"), "1.500 KWD");
        assert_eq!(format_price(-1999, "USD"), "-19.99 USD");
        assert_eq!(format_price(i64::MIN, "USD"), "-92233720368547758.08 USD");
    }

    #[test]
    fn a_paid_booking_says_what_was_paid_and_its_cancellation_what_is_refunded() {
        let payment = |kind| {
            let mut message = sample(kind);
            message.booking.payment = Some(EmailPayment {
                provider: "stripe".into(),
                amount_cents: 25000,
            });
            View::new(&message).payment()
        };
        assert_eq!(
            payment(EmailKind::BookingConfirmed),
            Some(("Paid", "250.00 USD, by card through Stripe".to_owned()))
        );
        let (label, refund) = payment(EmailKind::BookingCancelled).unwrap();
        assert_eq!(label, "Refund");
        assert!(refund.starts_with("250.00 USD, in full"), "{refund}");
        let plain = View::new(&sample(EmailKind::BookingConfirmed)).plain("Ada");
        assert!(
            !plain.contains("Paid:"),
            "a free or unpaid booking has no payment row"
        );
    }

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape_html(r#"<a href="x">O'Neil & co</a>"#),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
    }

    #[test]
    fn header_text_cannot_inject_headers() {
        assert_eq!(
            header_text("Gig\r\nBcc: evil@example.com"),
            "Gig Bcc: evil@example.com"
        );
        assert_eq!(header_text("  a \t b  "), "a b");
    }

    #[test]
    fn headers_are_present_and_the_message_id_is_stable() {
        let (message, text) = rendered(EmailKind::BookingConfirmed);
        assert_eq!(
            message.headers().get_raw("Message-ID"),
            Some("<01900000-0000-7000-8000-000000000001@boxoffice>")
        );
        assert_eq!(
            message.headers().get_raw("Subject"),
            Some("Your ticket for Rock <&> Roll is confirmed")
        );
        assert_eq!(
            message.headers().get_raw("X-Boxoffice-Booking-Id"),
            Some("01900000-0000-7000-8000-0000000000b0")
        );
        assert_eq!(
            message.headers().get_raw("X-Boxoffice-Kind"),
            Some("booking_confirmed")
        );
        assert!(
            message
                .headers()
                .get_raw("Date")
                .unwrap()
                .contains("2 Jan 2027 03:04:06")
        );
        assert!(
            text.contains("From: boxoffice <tickets@boxoffice.localhost>"),
            "{text}"
        );
        assert!(text.contains("ada@example.com"), "{text}");
        assert_eq!(
            message.envelope().to().to_vec(),
            vec!["ada@example.com".parse::<Address>().unwrap()]
        );

        // Rendering again (a retry, later) gives the same Message-ID.
        let (again, _) = rendered(EmailKind::BookingConfirmed);
        assert_eq!(
            again.headers().get_raw("Message-ID"),
            message.headers().get_raw("Message-ID")
        );
    }

    #[test]
    fn both_parts_are_present_with_every_field() {
        let (_, text) = rendered(EmailKind::BookingConfirmed);
        assert!(
            text.contains("Content-Type: multipart/alternative"),
            "{text}"
        );
        let plain = text.find("Content-Type: text/plain").expect("plain part");
        let html = text.find("Content-Type: text/html").expect("html part");
        assert!(plain < html, "the preferred (HTML) part must come last");

        let message = sample(EmailKind::BookingConfirmed);
        let view = View::new(&message);
        let plain = view.plain("Ada <Lovelace>");
        for needle in [
            "Hello Ada <Lovelace>,",
            "Rock <&> Roll",
            "O'Brien \"Hall\"",
            "Artist:            Aurora & <The Lights>\n",
            "Starts at:         Saturday 1 May 2027, 21:30 CEST (Europe/Berlin)\n",
            "<script>alert(1)</script>",
            "250.00 USD",
            "01900000-0000-7000-8000-0000000000b0",
        ] {
            assert!(
                plain.contains(needle),
                "plain part lacks {needle:?}:\n{plain}"
            );
        }
    }

    #[test]
    fn a_confirmation_with_a_ticket_shows_its_code_and_qr_code_and_a_cancellation_does_not() {
        let code = "AQGQAAAAAABwAIAAAAAAAACwAZAAAAAAcACAAAAAAAAAAQ";
        let mut message = sample(EmailKind::BookingConfirmed);
        message.booking.ticket_code = Some(code.into());
        let view = View::new(&message);
        assert!(
            view.plain("Ada")
                .contains(&format!("at the door.\n{code}\n"))
        );
        let html = view.html("Ada");
        assert!(
            html.contains(&format!("src=\"cid:{QR_CONTENT_ID}\"")),
            "{html}"
        );
        assert!(html.contains(code), "{html}");

        let from = parse_mailbox(DEFAULT_FROM).unwrap();
        let contact = Contact {
            email: "ada@example.com".into(),
            full_name: "Ada".into(),
        };
        let now = datetime!(2027-01-02 03:04:05 UTC);
        let sent =
            String::from_utf8(render(&message, &contact, &from, now).unwrap().formatted()).unwrap();
        assert!(sent.contains("Content-Type: multipart/related"), "{sent}");
        assert!(sent.contains("Content-Type: image/svg+xml"), "{sent}");
        assert!(
            sent.contains(&format!("Content-ID: <{QR_CONTENT_ID}>")),
            "{sent}"
        );

        let mut cancelled = sample(EmailKind::BookingCancelled);
        cancelled.booking.ticket_code = Some(code.into());
        let sent = String::from_utf8(
            render(&cancelled, &contact, &from, now)
                .unwrap()
                .formatted(),
        )
        .unwrap();
        assert!(
            !sent.contains(code) && !sent.contains("image/svg+xml"),
            "{sent}"
        );
    }

    #[test]
    fn html_part_escapes_user_provided_text() {
        let message = sample(EmailKind::BookingConfirmed);
        let view = View::new(&message);
        let html = view.html("Ada <Lovelace>");
        assert!(!html.contains("<script>"), "{html}");
        for needle in [
            "Hello Ada &lt;Lovelace&gt;,",
            "Rock &lt;&amp;&gt; Roll",
            "O&#39;Brien &quot;Hall&quot;",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "<th align=\"left\">Artist</th><td>Aurora &amp; &lt;The Lights&gt;</td>",
            "Saturday 1 May 2027, 21:30 CEST (Europe/Berlin)",
            "250.00 USD",
        ] {
            assert!(html.contains(needle), "HTML part lacks {needle:?}:\n{html}");
        }
    }

    #[test]
    fn cancellations_say_so() {
        let (message, _) = rendered(EmailKind::BookingCancelled);
        assert_eq!(
            message.headers().get_raw("Subject"),
            Some("Your booking for Rock <&> Roll was cancelled")
        );
        assert_eq!(
            message.headers().get_raw("X-Boxoffice-Kind"),
            Some("booking_cancelled")
        );
        let plain = View::new(&sample(EmailKind::BookingCancelled)).plain("Ada");
        // The values stand apart from the longest label and line up.
        assert!(
            plain.contains("Booking reference: 01900000-0000-7000-8000-0000000000b0\n"),
            "{plain}"
        );
        assert!(
            plain.contains(
                "Cancelled at:      Saturday 2 January 2027, 04:04 CET (Europe/Berlin)\n"
            ),
            "{plain}"
        );
    }

    #[test]
    fn times_read_as_words_on_the_venues_clocks() {
        assert_eq!(
            readable(datetime!(2027-01-02 19:30 UTC), "UTC"),
            "Saturday 2 January 2027, 19:30 UTC"
        );
        // The instant as the venue's clocks show it, daylight saving included.
        assert_eq!(
            readable(datetime!(2027-05-01 19:30 UTC), "Europe/Berlin"),
            "Saturday 1 May 2027, 21:30 CEST (Europe/Berlin)"
        );
        assert_eq!(
            readable(datetime!(2027-01-02 19:30 UTC), "Europe/Berlin"),
            "Saturday 2 January 2027, 20:30 CET (Europe/Berlin)"
        );
        // Across midnight and the year if need be.
        assert_eq!(
            readable(datetime!(2027-01-01 03:05 UTC), "America/New_York"),
            "Thursday 31 December 2026, 22:05 EST (America/New_York)"
        );
        // A zone whose abbreviation is only a number is named without it.
        assert_eq!(
            readable(datetime!(2027-05-01 19:30 UTC), "Europe/Istanbul"),
            "Saturday 1 May 2027, 22:30 (Europe/Istanbul)"
        );
        // A zone the database no longer knows still gives the exact instant, in UTC.
        assert_eq!(
            readable(datetime!(2027-05-01 21:30 +02:00), "Nowhere/Special"),
            "Saturday 1 May 2027, 19:30 UTC"
        );
    }

    #[test]
    fn a_concert_without_an_artist_has_no_artist_row() {
        let mut message = sample(EmailKind::BookingConfirmed);
        message.booking.artist.clear();
        let plain = View::new(&message).plain("Ada");
        assert!(!plain.contains("Artist"), "{plain}");
    }

    #[test]
    fn a_confirmation_confirms_the_booking_and_gives_its_reference() {
        let message = sample(EmailKind::BookingConfirmed);
        let view = View::new(&message);
        let (plain, html) = (view.plain("Ada"), view.html("Ada"));
        for part in [&plain, &html] {
            assert!(!part.contains("ticket at the door"), "{part}");
            assert!(part.contains("Your booking is confirmed."), "{part}");
            assert!(part.contains("booking reference"), "{part}");
        }
        assert!(
            plain.contains("Booking reference: 01900000-0000-7000-8000-0000000000b0\n"),
            "{plain}"
        );
        assert!(
            html.contains(
                "<tr><th align=\"left\">Booking reference</th>\
                 <td>01900000-0000-7000-8000-0000000000b0</td></tr>"
            ),
            "{html}"
        );
    }

    /// The headers and the decoded body of the email's calendar part. lettre chooses the
    /// transfer encoding: 7bit, or quoted-printable once a line nears 76 octets with its CRLF.
    fn calendar_part_of(email: &str) -> (String, String) {
        let start = email
            .find("Content-Disposition: attachment; filename=\"concert.ics\"")
            .unwrap_or_else(|| panic!("no calendar attachment:\n{email}"));
        let (headers, rest) = email[start..].split_once("\r\n\r\n").unwrap();
        let body = &rest[..rest.find("\r\n--").unwrap() + 2];
        let body = if headers.contains("Content-Transfer-Encoding: quoted-printable") {
            decode_quoted_printable(body)
        } else {
            assert!(
                headers.contains("Content-Transfer-Encoding: 7bit"),
                "{headers}"
            );
            body.to_owned()
        };
        (headers.to_owned(), body)
    }

    /// RFC 2045 §6.7: `=XX` is an octet, `=` before a line break joins the lines.
    fn decode_quoted_printable(encoded: &str) -> String {
        let bytes = encoded.replace("=\r\n", "").into_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut at = 0;
        while at < bytes.len() {
            if bytes[at] == b'=' {
                let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).unwrap();
                decoded.push(u8::from_str_radix(hex, 16).unwrap());
                at += 3;
            } else {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
        String::from_utf8(decoded).unwrap()
    }

    #[test]
    fn both_emails_attach_the_concert_as_a_calendar_file() {
        for (kind, method) in [
            (EmailKind::BookingConfirmed, "PUBLISH"),
            (EmailKind::BookingCancelled, "CANCEL"),
        ] {
            let (_, email) = rendered(kind);
            let mixed = email.find("Content-Type: multipart/mixed").unwrap();
            let alternative = email.find("Content-Type: multipart/alternative").unwrap();
            assert!(
                mixed < alternative,
                "the text is not the first part:\n{email}"
            );
            let (headers, body) = calendar_part_of(&email);
            assert!(
                headers.contains(&format!(
                    "\r\nContent-Type: text/calendar; charset=utf-8; method={method}\r\n"
                )),
                "{headers}"
            );

            let lines = crate::calendar::tests::unfold(&body);
            let property = |name| crate::calendar::tests::property(&lines, name);
            assert_eq!(property("METHOD").as_deref(), Some(method));
            assert_eq!(
                property("UID").as_deref(),
                Some("01900000-0000-7000-8000-0000000000b0@boxoffice")
            );
            assert_eq!(property("SUMMARY").as_deref(), Some("Rock <&> Roll"));
            assert_eq!(property("LOCATION").as_deref(), Some("O'Brien \"Hall\""));
            assert_eq!(property("DTSTART").as_deref(), Some("20270501T193000Z"));
        }
    }

    #[test]
    fn the_sender_shows_the_operators_display_name() {
        let from = crate::config::sender(Some("\"Aurora Hall, Box Office\" <tickets@example.com>"))
            .unwrap();
        let message = render(
            &sample(EmailKind::BookingConfirmed),
            &contact(),
            &from,
            datetime!(2027-01-02 03:04:06 UTC),
        )
        .unwrap();
        assert_eq!(
            message.headers().get_raw("From"),
            Some("\"Aurora Hall, Box Office\" <tickets@example.com>")
        );
        assert_eq!(
            message.envelope().from(),
            Some(&"tickets@example.com".parse::<Address>().unwrap())
        );
        let (_, ics) = calendar_part_of(&String::from_utf8(message.formatted()).unwrap());
        assert!(
            ics.contains(
                "\r\nORGANIZER;CN=\"Aurora Hall, Box Office\":mailto:tickets@example.com\r\n"
            ),
            "{ics}"
        );
    }

    #[test]
    fn an_invalid_recipient_is_undeliverable() {
        let from = parse_mailbox(DEFAULT_FROM).unwrap();
        let nobody = Contact {
            email: "not an address".into(),
            full_name: "X".into(),
        };
        let error = render(
            &sample(EmailKind::BookingConfirmed),
            &nobody,
            &from,
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap_err();
        assert!(error.is_undeliverable(), "{error}");
    }
}
