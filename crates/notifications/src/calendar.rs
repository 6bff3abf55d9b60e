//! The calendar file attached to every booking email: RFC 5545 iCalendar with one event.
//!
//! A confirmation publishes the concert (`METHOD:PUBLISH`, RFC 5546 §3.2.1) so that a fan can add
//! it to a calendar in one click; a cancellation sends `METHOD:CANCEL` (RFC 5546 §3.2.5) for the
//! same `UID`, with `STATUS:CANCELLED` and a higher `SEQUENCE`, so that a calendar which imported
//! the confirmation removes the event. The `UID` is derived from the booking id, never generated,
//! which is what ties the two together.
//!
//! The text is written by hand, it is a dozen lines: each ends in CRLF and is folded at 75 octets
//! (§3.1), never inside a UTF-8 character, and text values are escaped (§3.3.11), so a concert
//! called `Rock, Paste; and \ more` cannot split a field. Concerts have no time zone yet, so
//! times are given in UTC (`…Z`), which every calendar converts to its own zone.

use boxoffice_shared::clients::{EmailKind, OutboxMessage};
use lettre::message::Mailbox;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

/// How long an event is assumed to last: concerts have no end time yet, and a calendar entry
/// without one shows as a point in time, which reads as "doors at 19:30" rather than an evening.
pub const EVENT_LENGTH: time::Duration = time::Duration::hours(3);

/// The longest a content line may be, in octets, CRLF excluded (RFC 5545 §3.1).
const LINE_OCTETS: usize = 75;

/// The iTIP method of the email's calendar file: also a parameter of its `Content-Type`. An
/// offer has no calendar file.
pub fn method(kind: EmailKind) -> Option<&'static str> {
    match kind {
        EmailKind::BookingConfirmed => Some("PUBLISH"),
        EmailKind::BookingCancelled => Some("CANCEL"),
        EmailKind::WaitlistOffered => None,
    }
}

/// The event's `UID`: the same for a booking's confirmation and its cancellation.
pub fn uid(booking_id: Uuid) -> String {
    format!("{booking_id}@boxoffice")
}

/// The `.ics` text for `message`, organised by `organizer` (the email's sender: RFC 5546 requires
/// an `ORGANIZER` in both methods, and replies, if a client sends any, go to the box office).
pub fn ics(message: &OutboxMessage, organizer: &Mailbox) -> String {
    let booking = &message.booking;
    let (status, sequence) = match message.kind {
        EmailKind::BookingConfirmed => ("CONFIRMED", 0),
        // A cancellation must be a later revision of the event than the confirmation it undoes.
        EmailKind::BookingCancelled | EmailKind::WaitlistOffered => ("CANCELLED", 1),
    };
    let ends_at = booking
        .starts_at
        .checked_add(EVENT_LENGTH)
        .unwrap_or(booking.starts_at);
    let description = format!(
        "Seat type: {}\nBooking reference: {}",
        booking.seat_type_name, booking.booking_id
    );
    let organizer = match &organizer.name {
        Some(name) => format!(
            "ORGANIZER;CN=\"{}\":mailto:{}",
            param_text(name),
            organizer.email
        ),
        None => format!("ORGANIZER:mailto:{}", organizer.email),
    };

    let mut ics = String::new();
    for line in [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//boxoffice//booking emails//EN".to_owned(),
        "CALSCALE:GREGORIAN".to_owned(),
        format!("METHOD:{}", method(message.kind).unwrap_or("PUBLISH")),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}", uid(booking.booking_id)),
        // When the booking changed, not when the email was rendered: a retried email then
        // carries the same file, and a cancellation is stamped after its confirmation.
        format!("DTSTAMP:{}", utc_stamp(booking.at)),
        format!("DTSTART:{}", utc_stamp(booking.starts_at)),
        format!("DTEND:{}", utc_stamp(ends_at)),
        format!("SEQUENCE:{sequence}"),
        format!("STATUS:{status}"),
        format!("SUMMARY:{}", escape_text(&booking.concert_name)),
        format!("LOCATION:{}", escape_text(&booking.venue)),
        format!("DESCRIPTION:{}", escape_text(&description)),
        organizer,
        "TRANSP:OPAQUE".to_owned(),
        "END:VEVENT".to_owned(),
        "END:VCALENDAR".to_owned(),
    ] {
        push_folded(&mut ics, &line);
    }
    ics
}

/// Appends `line` and its CRLF, folded (RFC 5545 §3.1): no line longer than 75 octets, each
/// continuation starting with one space (which counts towards its 75), never splitting a UTF-8
/// character, which §3.1 forbids and which would corrupt the text in a strict reader.
fn push_folded(out: &mut String, line: &str) {
    let mut rest = line;
    let mut room = LINE_OCTETS;
    while rest.len() > room {
        let mut cut = room;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        room = LINE_OCTETS - 1;
    }
    out.push_str(rest);
    out.push_str("\r\n");
}

/// A TEXT value (RFC 5545 §3.3.11): backslash, semicolon and comma escaped, any line break
/// written `\n`, other control characters (which TEXT does not allow) turned into spaces.
fn escape_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            ';' => escaped.push_str("\\;"),
            ',' => escaped.push_str("\\,"),
            '\r' => {
                // CRLF is one line break, not two.
                chars.next_if_eq(&'\n');
                escaped.push_str("\\n");
            }
            '\n' => escaped.push_str("\\n"),
            '\t' => escaped.push('\t'),
            c if c.is_control() => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A quoted parameter value (RFC 5545 §3.1: `quoted-string`), quotes excluded: it cannot hold a
/// double quote or a control character, and has no escape for them, so they are dropped.
fn param_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|&c| c != '"')
        .collect()
}

/// A UTC DATE-TIME (RFC 5545 §3.3.5, form #2), e.g. `20270501T193000Z`.
fn utc_stamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    at.format(format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    // Only a year outside 0..=9999 fails, which no concert has; a readable fallback beats none.
    .unwrap_or_else(|_| at.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use boxoffice_shared::clients::BookingEmail;
    use time::macros::datetime;

    use super::*;

    fn sample(kind: EmailKind, concert_name: &str, venue: &str) -> OutboxMessage {
        OutboxMessage {
            message_id: Uuid::from_u128(1),
            kind,
            attempts: 0,
            booking: BookingEmail {
                booking_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00b0),
                user_id: Uuid::from_u128(7),
                concert_id: Uuid::from_u128(8),
                concert_name: concert_name.into(),
                artist: "Aurora".into(),
                venue: venue.into(),
                time_zone: "Europe/Berlin".into(),
                starts_at: datetime!(2027-05-01 21:30 +02:00),
                seat_type_name: "VIP".into(),
                price_cents: 25000,
                currency: "USD".into(),
                at: datetime!(2027-01-02 03:04:05 UTC),
                payment: None,
                ticket_code: None,
            },
        }
    }

    fn organizer() -> Mailbox {
        "\"Aurora Hall Box Office\" <tickets@example.com>"
            .parse()
            .unwrap()
    }

    /// Reads an `.ics` back the strict way: every line ends in CRLF (no bare CR or LF anywhere),
    /// no line exceeds 75 octets, and continuation lines are joined. Returns the logical lines.
    pub(crate) fn unfold(ics: &str) -> Vec<String> {
        assert!(
            ics.ends_with("\r\n"),
            "the last line lacks its CRLF: {ics:?}"
        );
        let body = &ics[..ics.len() - 2];
        let mut lines: Vec<String> = Vec::new();
        for physical in body.split("\r\n") {
            assert!(
                !physical.contains(['\r', '\n']),
                "bare CR or LF in {physical:?}"
            );
            assert!(
                physical.len() <= LINE_OCTETS,
                "{} octets: {physical:?}",
                physical.len()
            );
            match physical.strip_prefix(' ') {
                Some(continued) => lines.last_mut().unwrap().push_str(continued),
                None => lines.push(physical.to_owned()),
            }
        }
        lines
    }

    /// The value of property `name` (parameters ignored), unescaped as RFC 5545 §3.3.11 says.
    pub(crate) fn property(lines: &[String], name: &str) -> Option<String> {
        let line = lines.iter().find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([':', ';']))
        })?;
        // The value starts after the first colon that is not inside a quoted parameter.
        let mut quoted = false;
        let colon = line.char_indices().find_map(|(at, c)| {
            match c {
                '"' => quoted = !quoted,
                ':' if !quoted => return Some(at),
                _ => {}
            }
            None
        })?;
        let mut value = String::new();
        let mut chars = line[colon + 1..].chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            match chars.next() {
                Some('n' | 'N') => value.push('\n'),
                Some(other @ ('\\' | ';' | ',')) => value.push(other),
                other => panic!("invalid escape \\{other:?} in {line:?}"),
            }
        }
        Some(value)
    }

    #[test]
    fn a_confirmation_publishes_one_event_in_utc() {
        let ics = ics(
            &sample(EmailKind::BookingConfirmed, "Night", "Hall"),
            &organizer(),
        );
        let lines = unfold(&ics);
        assert_eq!(lines.first().unwrap(), "BEGIN:VCALENDAR");
        assert_eq!(lines.last().unwrap(), "END:VCALENDAR");
        assert_eq!(lines.iter().filter(|l| *l == "BEGIN:VEVENT").count(), 1);
        for (name, value) in [
            ("VERSION", "2.0"),
            ("METHOD", "PUBLISH"),
            ("UID", "01900000-0000-7000-8000-0000000000b0@boxoffice"),
            ("DTSTAMP", "20270102T030405Z"),
            // 21:30 at +02:00 is 19:30 UTC; three hours later it ends.
            ("DTSTART", "20270501T193000Z"),
            ("DTEND", "20270501T223000Z"),
            ("SEQUENCE", "0"),
            ("STATUS", "CONFIRMED"),
            ("SUMMARY", "Night"),
            ("LOCATION", "Hall"),
            (
                "DESCRIPTION",
                "Seat type: VIP\nBooking reference: 01900000-0000-7000-8000-0000000000b0",
            ),
        ] {
            assert_eq!(property(&lines, name).as_deref(), Some(value), "{name}");
        }
        assert!(
            lines.contains(
                &"ORGANIZER;CN=\"Aurora Hall Box Office\":mailto:tickets@example.com".to_owned()
            ),
            "{lines:#?}"
        );
        assert!(property(&lines, "PRODID").is_some());
    }

    #[test]
    fn a_cancellation_cancels_the_same_event_in_a_later_sequence() {
        let confirmed = unfold(&ics(
            &sample(EmailKind::BookingConfirmed, "Night", "Hall"),
            &organizer(),
        ));
        let cancelled = unfold(&ics(
            &sample(EmailKind::BookingCancelled, "Night", "Hall"),
            &organizer(),
        ));
        assert_eq!(property(&cancelled, "METHOD").as_deref(), Some("CANCEL"));
        assert_eq!(property(&cancelled, "STATUS").as_deref(), Some("CANCELLED"));
        assert_eq!(property(&cancelled, "SEQUENCE").as_deref(), Some("1"));
        assert_eq!(property(&cancelled, "UID"), property(&confirmed, "UID"));
        assert_eq!(
            property(&cancelled, "DTSTART"),
            property(&confirmed, "DTSTART")
        );
    }

    #[test]
    fn text_is_escaped_and_survives_the_round_trip() {
        let name = "Rock, Paste; and \\ more\r\nSecond line\nThird\u{7}";
        let ics = ics(
            &sample(EmailKind::BookingConfirmed, name, "Hall"),
            &organizer(),
        );
        assert!(
            ics.contains("SUMMARY:Rock\\, Paste\\; and \\\\ more\\nSecond line\\nThird \r\n"),
            "{ics}"
        );
        let lines = unfold(&ics);
        assert_eq!(
            property(&lines, "SUMMARY").as_deref(),
            Some("Rock, Paste; and \\ more\nSecond line\nThird ")
        );
        // A line break in a value cannot start a property of its own.
        assert!(!lines.iter().any(|line| line.starts_with("Second")));
    }

    #[test]
    fn long_lines_fold_at_75_octets_without_splitting_a_character() {
        // Three-octet characters, so a cut at exactly 75 octets would land inside one.
        let venue = "Konzerthaus am Überseeplatz — Großer Saal, Eingang Süd ".repeat(4) + "✓";
        let ics = ics(
            &sample(EmailKind::BookingConfirmed, "Night", &venue),
            &organizer(),
        );
        let physical: Vec<&str> = ics.split("\r\n").collect();
        assert!(
            physical.iter().filter(|l| l.starts_with(' ')).count() >= 3,
            "{ics}"
        );
        // `unfold` checks the 75 octets and the CRLFs; the value comes back whole.
        let lines = unfold(&ics);
        assert_eq!(
            property(&lines, "LOCATION").as_deref(),
            Some(venue.as_str())
        );
        let mut folded = String::new();
        push_folded(&mut folded, &"x".repeat(75));
        assert_eq!(folded, format!("{}\r\n", "x".repeat(75)), "75 octets fit");
        folded.clear();
        push_folded(&mut folded, &"x".repeat(150));
        assert_eq!(
            folded,
            format!("{}\r\n {}\r\n {}\r\n", "x".repeat(75), "x".repeat(74), "x")
        );
    }

    #[test]
    fn the_organizer_name_cannot_break_out_of_its_quotes() {
        let sender = Mailbox::new(
            Some("The \"Best\" Hall:\r\nX".into()),
            "tickets@example.com".parse().unwrap(),
        );
        let lines = unfold(&ics(
            &sample(EmailKind::BookingConfirmed, "Night", "Hall"),
            &sender,
        ));
        assert!(
            lines.contains(&"ORGANIZER;CN=\"The Best Hall:  X\":mailto:tickets@example.com".into()),
            "{lines:#?}"
        );
        assert_eq!(
            property(&lines, "ORGANIZER").as_deref(),
            Some("mailto:tickets@example.com")
        );
        let bare = Mailbox::new(None, "tickets@example.com".parse().unwrap());
        let lines = unfold(&ics(
            &sample(EmailKind::BookingConfirmed, "Night", "Hall"),
            &bare,
        ));
        assert!(lines.contains(&"ORGANIZER:mailto:tickets@example.com".into()));
    }
}
