//! Concerts' time zones.
//!
//! A concert happens at an instant (`starts_at`, stored in UTC) in a place whose clocks follow an
//! IANA time zone (`Europe/Berlin`). The zone is what turns the instant into the time a fan reads
//! on the venue's clocks, daylight-saving changes included. Names are looked up in the machine's
//! time-zone database (`/usr/share/zoneinfo`, updated with the operating system) or, on a machine
//! without one, in the copy built into the binary, so a fresh machine needs nothing installed.

use jiff::Timestamp;
use jiff::tz::{self, TimeZone};
use time::{OffsetDateTime, UtcOffset};

/// The zone of concerts created without one, and of concerts created before zones existed.
pub const DEFAULT: &str = "UTC";

/// The longest name accepted; the longest IANA name is 32 characters.
pub const MAX_LEN: usize = 64;

/// [`DEFAULT`] as an owned name (for serde defaults).
pub fn default_name() -> String {
    DEFAULT.to_owned()
}

/// The database's spelling of the IANA time-zone name `name` (matched ignoring case), or `None`
/// when it names no zone. Only names made of the characters IANA names use are looked up, so a
/// name can never reach the file system as a path of its own.
pub fn canonical(name: &str) -> Option<String> {
    lookup(name).map(|zone| zone.iana_name().unwrap_or(name).to_owned())
}

/// An instant as the clocks of a zone show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// The instant at the zone's offset; in UTC when the zone is unknown (a zone removed from the
    /// database since it was accepted still gives an exact instant, only in UTC).
    pub at: OffsetDateTime,
    /// The zone's name as the database spells it; `None` when it names no zone.
    pub zone: Option<String>,
    /// The abbreviation the zone uses then ("CEST", "EST"); `None` when the database has only a
    /// numeric one ("+03") or the zone is unknown: a numeric offset tells a fan nothing.
    pub abbreviation: Option<String>,
}

/// `at` as the clocks of zone `name` show it, from one lookup of the name.
pub fn local(at: OffsetDateTime, name: &str) -> Local {
    let unknown = Local {
        at: at.to_offset(UtcOffset::UTC),
        zone: None,
        abbreviation: None,
    };
    let Some(zone) = lookup(name) else {
        return unknown;
    };
    let Ok(instant) = Timestamp::from_second(at.unix_timestamp()) else {
        return unknown;
    };
    let info = zone.to_offset_info(instant);
    let Ok(offset) = UtcOffset::from_whole_seconds(info.offset().seconds()) else {
        return unknown;
    };
    let abbreviation = info.abbreviation();
    Local {
        at: at.to_offset(offset),
        zone: Some(zone.iana_name().unwrap_or(name).to_owned()),
        abbreviation: abbreviation
            .starts_with(|c: char| c.is_ascii_alphabetic())
            .then(|| abbreviation.to_owned()),
    }
}

/// The zone `name` names, looked up only when it is made of the characters IANA names use.
fn lookup(name: &str) -> Option<TimeZone> {
    let plausible = !name.is_empty()
        && name.len() <= MAX_LEN
        && !name.starts_with(['/', '.', '-', '+'])
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'));
    if !plausible {
        return None;
    }
    tz::db().get(name).ok()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn names_are_looked_up_ignoring_case_and_spelled_as_the_database_does() {
        assert_eq!(canonical("Europe/Berlin").as_deref(), Some("Europe/Berlin"));
        assert_eq!(canonical("europe/berlin").as_deref(), Some("Europe/Berlin"));
        assert_eq!(canonical("UTC").as_deref(), Some("UTC"));
        assert!(canonical("America/Argentina/Buenos_Aires").is_some());
    }

    #[test]
    fn what_is_not_a_zone_name_is_refused_before_any_lookup() {
        for name in [
            "",
            "Mars/Olympus_Mons",
            "../../etc/passwd",
            "/etc/localtime",
            "Europe/../Europe/Berlin",
            "Europe/Berlin\0",
            "Europe /Berlin",
            &"A".repeat(65),
        ] {
            assert_eq!(canonical(name), None, "{name:?}");
        }
    }

    #[test]
    fn local_time_follows_daylight_saving() {
        // Berlin is UTC+2 in summer and UTC+1 in winter.
        let summer = local(datetime!(2027-05-01 19:30 UTC), "Europe/Berlin");
        assert_eq!(summer.at, datetime!(2027-05-01 21:30 +02:00));
        assert_eq!(summer.at.offset(), UtcOffset::from_hms(2, 0, 0).unwrap());
        let winter = local(datetime!(2027-01-02 19:30 UTC), "Europe/Berlin");
        assert_eq!(winter.at.offset(), UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(summer.abbreviation.as_deref(), Some("CEST"));
        assert_eq!(winter.abbreviation.as_deref(), Some("CET"));
        assert_eq!(
            local(summer.at, "europe/berlin").zone.as_deref(),
            Some("Europe/Berlin")
        );
    }

    #[test]
    fn an_unknown_zone_gives_the_instant_in_utc() {
        let at = datetime!(2027-05-01 19:30 UTC);
        let unknown = local(at, "Nowhere/Special");
        assert_eq!(unknown.at.offset(), UtcOffset::UTC);
        assert_eq!((unknown.zone, unknown.abbreviation), (None, None));
    }
}
