//! Which service owns a path: the gateway's whole routing table.
//!
//! The table is an allow-list of the public path families of the API contract (`shared/API.md`).
//! Anything not on it — `/internal/...` service-to-service routes above all — has no owner and is
//! answered 404 by the gateway itself. The concert paths are shared: the availability reads, the
//! availability stream, the sales report, the concert's bookings, the check-ins and the waiting
//! list come from Booking's store (it owns every seat and ticket), the rest of
//! `/api/v1/concerts...` from Catalog.

use std::fmt;

/// A service behind the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Accounts, sessions, tokens: `/api/v1/auth/...`, `/api/v1/me`, `/api/v1/admin/...`.
    Auth,
    /// Concerts and seat types: `/api/v1/concerts...` except what Booking answers.
    Catalog,
    /// Bookings, holds, payments, tickets, and a concert's availability, availability stream,
    /// sales, bookings, check-ins and waiting list.
    Booking,
}

impl Service {
    /// Every service, in a fixed order.
    pub const ALL: [Service; 3] = [Service::Auth, Service::Catalog, Service::Booking];

    /// The service's name, as used in configuration, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Catalog => "catalog",
            Service::Booking => "booking",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Service::Auth => 0,
            Service::Catalog => 1,
            Service::Booking => 2,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The route patterns the gateway's router registers. Every path they match is resolved by
/// [`service_for`]; a test checks the two agree.
pub const ROUTES: [&str; 16] = [
    "/api/v1/auth/{*rest}",
    "/api/v1/me",
    "/api/v1/me/{*rest}",
    "/api/v1/admin/{*rest}",
    "/api/v1/bookings",
    "/api/v1/bookings/{*rest}",
    "/api/v1/holds",
    "/api/v1/holds/{*rest}",
    "/api/v1/waitlist",
    "/api/v1/waitlist/{*rest}",
    "/api/v1/payments/{*rest}",
    "/api/v1/tickets/{*rest}",
    "/api/v1/webhooks",
    "/api/v1/webhooks/{*rest}",
    "/api/v1/concerts",
    "/api/v1/concerts/{*rest}",
];

/// The service that owns `path` (the raw, still percent-encoded path of the request URI), or
/// `None` when no service may be reached with it.
///
/// A path with a `.` or `..` segment (also percent-encoded, `%2e%2e`) has no owner: services route
/// on the raw path and would not resolve it, but the gateway refuses it anyway, so that no
/// upstream normalisation can ever turn `/api/v1/bookings/../../internal/x` into an internal route.
pub fn service_for(path: &str) -> Option<Service> {
    let rest = path.strip_prefix("/api/v1/")?;
    if rest.split('/').any(is_dot_segment) {
        return None;
    }
    let (family, tail) = match rest.split_once('/') {
        Some((family, tail)) => (family, Some(tail)),
        None => (rest, None),
    };
    match (family, tail) {
        ("auth" | "admin", Some(tail)) if !tail.is_empty() => Some(Service::Auth),
        ("me", _) => Some(Service::Auth),
        ("bookings" | "holds" | "waitlist" | "webhooks", _) => Some(Service::Booking),
        ("payments" | "tickets", Some(tail)) if !tail.is_empty() => Some(Service::Booking),
        ("concerts", None) => Some(Service::Catalog),
        ("concerts", Some(tail)) => Some(concert_owner(tail)),
        _ => None,
    }
}

/// The owner of `/api/v1/concerts/{tail}`.
fn concert_owner(tail: &str) -> Service {
    let mut segments = tail.split('/');
    let id = segments.next().unwrap_or_default();
    let remainder: [Option<&str>; 3] = [segments.next(), segments.next(), segments.next()];
    match (id.is_empty(), remainder) {
        (false, [Some("availability"), None, None])
        | (false, [Some("availability"), Some("stream"), None])
        | (false, [Some("sales"), None, None])
        | (false, [Some("bookings"), None, None])
        | (false, [Some("checkins"), None, None])
        | (false, [Some("waitlist"), None, None])
        | (false, [Some("queue"), None, None])
        | (false, [Some("queue"), Some("stream"), None]) => Service::Booking,
        _ => Service::Catalog,
    }
}

/// `.` or `..`, with any of the dots percent-encoded (RFC 3986 §6.2.2.2 says `%2E` is a dot).
fn is_dot_segment(segment: &str) -> bool {
    if !segment.starts_with(['.', '%']) || segment.len() > 6 {
        return false;
    }
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_route_family_has_its_owner() {
        let table = [
            ("/api/v1/auth/register", Some(Service::Auth)),
            ("/api/v1/auth/login", Some(Service::Auth)),
            ("/api/v1/auth/refresh", Some(Service::Auth)),
            ("/api/v1/auth/logout", Some(Service::Auth)),
            ("/api/v1/me", Some(Service::Auth)),
            ("/api/v1/admin/load-test-accounts", Some(Service::Auth)),
            ("/api/v1/bookings", Some(Service::Booking)),
            ("/api/v1/bookings/0190-abc", Some(Service::Booking)),
            ("/api/v1/bookings/0190-abc/cancel", Some(Service::Booking)),
            ("/api/v1/holds", Some(Service::Booking)),
            ("/api/v1/webhooks", Some(Service::Booking)),
            (
                "/api/v1/webhooks/0190-abc/deliveries",
                Some(Service::Booking),
            ),
            ("/api/v1/holds/0190-abc/pay", Some(Service::Booking)),
            ("/api/v1/payments/stripe/webhook", Some(Service::Booking)),
            ("/api/v1/concerts", Some(Service::Catalog)),
            ("/api/v1/concerts/c1", Some(Service::Catalog)),
            ("/api/v1/concerts/c1/seat-types", Some(Service::Catalog)),
            ("/api/v1/concerts/c1/cancel", Some(Service::Catalog)),
            ("/api/v1/concerts/c1/availability", Some(Service::Booking)),
            (
                "/api/v1/concerts/c1/availability/stream",
                Some(Service::Booking),
            ),
            ("/api/v1/concerts/c1/sales", Some(Service::Booking)),
            ("/api/v1/concerts/c1/bookings", Some(Service::Booking)),
            ("/api/v1/concerts/c1/checkins", Some(Service::Booking)),
            ("/api/v1/concerts/c1/waitlist", Some(Service::Booking)),
            ("/api/v1/concerts/c1/queue", Some(Service::Booking)),
            ("/api/v1/concerts/c1/queue/stream", Some(Service::Booking)),
            ("/api/v1/waitlist", Some(Service::Booking)),
            ("/api/v1/waitlist/0190-abc", Some(Service::Booking)),
            ("/api/v1/tickets/key", Some(Service::Booking)),
            (
                "/api/v1/bookings/0190-abc/ticket.svg",
                Some(Service::Booking),
            ),
            // Not one of Booking's routes: Catalog owns the rest of the family and answers 404.
            (
                "/api/v1/concerts/c1/availability/other",
                Some(Service::Catalog),
            ),
            ("/api/v1/concerts/c1/sales/x", Some(Service::Catalog)),
            ("/api/v1/concerts//sales", Some(Service::Catalog)),
            ("/api/v1/concerts/availability", Some(Service::Catalog)),
        ];
        for (path, owner) in table {
            assert_eq!(service_for(path), owner, "{path}");
        }
    }

    #[test]
    fn internal_unknown_and_dot_segment_paths_have_no_owner() {
        for path in [
            "/",
            "",
            "/internal/inventory",
            "/internal",
            "/api/v1/internal/x",
            "/api/v1",
            "/api/v1/",
            "/api/v1/auth",
            "/api/v1/auth/",
            "/api/v1/admin",
            "/api/v1/meh",
            "/api/v1/bookingsx",
            "/api/v1/payments",
            "/api/v1/payments/",
            "/api/v1/holdsx",
            "/api/v1/concertsx/1",
            "/api/v2/bookings",
            "/API/v1/bookings",
            "/api/v1/openapi.json",
            "/healthz",
            "/api/v1/bookings/../../internal/x",
            "/api/v1/bookings/%2e%2e/%2E%2E/internal/x",
            "/api/v1/concerts/.%2e/x",
            "/api/v1/concerts/./c1",
        ] {
            assert_eq!(service_for(path), None, "{path}");
        }
    }

    #[test]
    fn dots_inside_a_segment_are_ordinary_characters() {
        assert_eq!(service_for("/api/v1/concerts/a..b"), Some(Service::Catalog));
        assert_eq!(service_for("/api/v1/concerts/..."), Some(Service::Catalog));
        assert_eq!(
            service_for("/api/v1/concerts/%2e%2e%2e"),
            Some(Service::Catalog)
        );
    }

    #[test]
    fn the_router_patterns_match_the_routing_function() {
        for pattern in ROUTES {
            let path = pattern.replace("{*rest}", "x/y");
            assert!(service_for(&path).is_some(), "{pattern}");
        }
    }
}
