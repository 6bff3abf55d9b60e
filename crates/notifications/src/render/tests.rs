//! Tests of [`super`]: what each part of a rendered email says.
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
        None,
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
        View::new(&message, None).payment()
    };
    assert_eq!(
        payment(EmailKind::BookingConfirmed),
        Some(("Paid", "250.00 USD, by card through Stripe".to_owned()))
    );
    let (label, refund) = payment(EmailKind::BookingCancelled).unwrap();
    assert_eq!(label, "Refund");
    assert!(refund.starts_with("250.00 USD, in full"), "{refund}");
    let plain = View::new(&sample(EmailKind::BookingConfirmed), None).plain("Ada");
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
    let view = View::new(&message, None);
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
    let view = View::new(&message, None);
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
    let sent = String::from_utf8(
        render(&message, &contact, &from, None, now)
            .unwrap()
            .formatted(),
    )
    .unwrap();
    assert!(sent.contains("Content-Type: multipart/related"), "{sent}");
    assert!(sent.contains("Content-Type: image/svg+xml"), "{sent}");
    assert!(
        sent.contains(&format!("Content-ID: <{QR_CONTENT_ID}>")),
        "{sent}"
    );

    let mut cancelled = sample(EmailKind::BookingCancelled);
    cancelled.booking.ticket_code = Some(code.into());
    let sent = String::from_utf8(
        render(&cancelled, &contact, &from, None, now)
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
    let view = View::new(&message, None);
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
    let plain = View::new(&sample(EmailKind::BookingCancelled), None).plain("Ada");
    // The values stand apart from the longest label and line up.
    assert!(
        plain.contains("Booking reference: 01900000-0000-7000-8000-0000000000b0\n"),
        "{plain}"
    );
    assert!(
        plain.contains("Cancelled at:      Saturday 2 January 2027, 04:04 CET (Europe/Berlin)\n"),
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
    let plain = View::new(&message, None).plain("Ada");
    assert!(!plain.contains("Artist"), "{plain}");
}

#[test]
fn a_confirmation_confirms_the_booking_and_gives_its_reference() {
    let message = sample(EmailKind::BookingConfirmed);
    let view = View::new(&message, None);
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
    let from =
        crate::config::sender(Some("\"Aurora Hall, Box Office\" <tickets@example.com>")).unwrap();
    let message = render(
        &sample(EmailKind::BookingConfirmed),
        &contact(),
        &from,
        None,
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
        ics.contains("\r\nORGANIZER;CN=\"Aurora Hall, Box Office\":mailto:tickets@example.com\r\n"),
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
        None,
        OffsetDateTime::UNIX_EPOCH,
    )
    .unwrap_err();
    assert!(error.is_undeliverable(), "{error}");
}

#[test]
fn an_offer_says_until_when_the_seat_is_held_and_has_no_calendar_file() {
    let (message, text) = rendered(EmailKind::WaitlistOffered);
    assert_eq!(
        message.headers().get_raw("Subject"),
        Some(
            "A seat for Rock <&> Roll is yours until Saturday 2 January 2027, 04:04 CET (Europe/Berlin)"
        )
    );
    assert_eq!(
        message.headers().get_raw("X-Boxoffice-Kind"),
        Some("waitlist_offered")
    );
    assert!(!text.contains("text/calendar"), "{text}");
    let plain = View::new(&sample(EmailKind::WaitlistOffered), None).plain("Ada");
    assert!(
        plain.contains("Offer reference:   01900000-0000-7000-8000-0000000000b0\n"),
        "{plain}"
    );
    assert!(
        plain.contains("Yours until:       Saturday 2 January 2027, 04:04 CET (Europe/Berlin)\n"),
        "{plain}"
    );
    assert!(plain.contains("next fan on the waiting list"), "{plain}");
    assert!(!plain.contains("Your ticket"), "{plain}");
}

#[test]
fn with_the_shops_address_each_email_links_to_its_page() {
    let shop = Some("https://tickets.example.com/");
    let id = "01900000-0000-7000-8000-0000000000b0";
    let cases = [
        (
            EmailKind::BookingConfirmed,
            format!("Your ticket online: https://tickets.example.com/tickets/{id}"),
        ),
        (
            EmailKind::BookingCancelled,
            "Your tickets: https://tickets.example.com/tickets".to_owned(),
        ),
        (
            EmailKind::WaitlistOffered,
            format!("Pay for the seat: https://tickets.example.com/holds/{id}"),
        ),
    ];
    for (kind, line) in cases {
        let message = sample(kind);
        let view = View::new(&message, shop);
        let plain = view.plain("Ada");
        assert!(plain.contains(&format!("\n{line}\n")), "{plain}");
        let (label, url) = line.split_once(": ").unwrap();
        assert!(
            view.html("Ada")
                .contains(&format!("<a href=\"{url}\">{label}</a>")),
            "{}",
            view.html("Ada")
        );
    }
    let message = sample(EmailKind::WaitlistOffered);
    let offer = View::new(&message, shop).plain("Ada");
    assert!(!offer.contains("POST /api/v1/holds"), "{offer}");
    let offer = View::new(&message, None).plain("Ada");
    assert!(
        offer.contains("POST /api/v1/holds") && !offer.contains("http"),
        "{offer}"
    );
}
