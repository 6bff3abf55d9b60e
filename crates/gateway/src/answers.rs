//! Sold-out answers the gateway repeats itself: in an on-sale almost every request loses, and a
//! lost request answered here costs one process's work instead of three (gateway, Booking, and
//! the gateway again on the way back).
//!
//! - **Learning.** A Booking instance that refuses a `POST /bookings` or `POST /holds` without
//!   an `Idempotency-Key` or an admission `sold_out` from its view says, in the
//!   [`SOLD_OUT_LASTS_HEADER`] of its answer, for how long its view refuses every such request
//!   for that seat type the same way: until a hold falls due or the concert starts, and at most
//!   100 ms. The gateway keeps the answer (status and body) for that long and removes the
//!   header.
//! - **Repeating.** Meanwhile, a request for the same seat type, of the same kind, is answered
//!   here — but only when Booking would reach the same refusal: a valid JSON body with exactly
//!   `concert_id` and `seat_type_id`, no `Idempotency-Key` (whose saved answer comes first), no
//!   `Boxoffice-Admission`, a bearer token this gateway verifies with Auth's key and finds not
//!   revoked, and a write the limits on writes let through (a request refused by them goes on to
//!   Booking, whose limits answer it). Anything else is forwarded as before.
//! - **Forgetting.** Every other write that reaches Booking or Catalog through this gateway (a
//!   cancel, a release, a payment, a capacity raised, a waiting room set…) forgets every answer
//!   at once, and no answer is kept for 100 ms after it is answered (while the other Booking
//!   instances' views follow the commit), so a seat given back through this gateway is offered
//!   at once. A seat given back where this gateway does not see it (through another gateway,
//!   say) is offered within 100 ms; a hold falling due needs no notice, since no answer
//!   outlives the next one's expiry.
//! - **Never a correctness matter for the sale.** The gateway only ever repeats a refusal; every
//!   sale is decided by Booking's store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use boxoffice_shared::clients::{
    ADMISSION_HEADER, IDEMPOTENCY_KEY_HEADER, SOLD_OUT_LASTS_HEADER, WriteLimiter,
};
use boxoffice_shared::token::{Authenticator, bearer_token};
use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;

/// The largest answer body kept.
pub(crate) const KEPT_BODY: usize = 4 * 1024;
/// The most answers kept; past it the map starts over.
const REMEMBERED: usize = 100_000;
/// The longest an answer is kept, whatever an instance says.
const LONGEST: Duration = Duration::from_millis(100);
/// After a write that may give a seat back, how long no answer is kept: the time every Booking
/// instance's view takes to show another's commit, with room to spare.
const SETTLE: Duration = Duration::from_millis(100);

/// What the gateway needs to answer for Booking: Auth's key and revocations, and the limits on
/// writes where the deployment sets them.
#[derive(Clone)]
pub struct Answering {
    pub authenticator: Authenticator,
    pub limiter: Option<Arc<dyn WriteLimiter>>,
}

/// A write the gateway may answer: its kind and seat type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Asked {
    hold: bool,
    pub concert_id: Uuid,
    seat_type_id: Uuid,
}

impl Asked {
    /// The write a `POST /api/v1/bookings` (or `/holds`, `hold`) with these headers and this
    /// body asks for, when Booking would answer it from its view alone: `None` otherwise.
    pub fn of(hold: bool, headers: &HeaderMap, body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Write {
            concert_id: Uuid,
            seat_type_id: Uuid,
        }
        let unanswerable = headers.contains_key(IDEMPOTENCY_KEY_HEADER)
            || headers.contains_key(ADMISSION_HEADER)
            || !boxoffice_shared::extract::is_json_content_type(headers);
        if unanswerable {
            return None;
        }
        let write: Write = serde_json::from_slice(body).ok()?;
        Some(Self {
            hold,
            concert_id: write.concert_id,
            seat_type_id: write.seat_type_id,
        })
    }
}

/// An answer kept, and until when it stands.
struct Kept {
    until: Instant,
    /// When the request that brought it was sent ([`Answers::now`]).
    sent: u64,
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

/// The answers kept, and how to check a caller.
pub(crate) struct Answers {
    answering: Answering,
    /// What [`Answers::now`] counts from.
    started: Instant,
    /// Answers to requests sent before this instant ([`Answers::now`]) are dead: a write that
    /// may give a seat back passed, and every Booking instance's view may not show it yet.
    quiet_until: AtomicU64,
    kept: RwLock<HashMap<Asked, Kept>>,
}

impl Answers {
    pub fn new(answering: Answering) -> Self {
        Self {
            answering,
            started: Instant::now(),
            quiet_until: AtomicU64::new(0),
            kept: RwLock::new(HashMap::new()),
        }
    }

    /// Nanoseconds since the gateway started: when a request is sent, to keep its answer with.
    pub fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Forgets every answer, and keeps none of requests sent within [`SETTLE`] from now: a
    /// write passed (call it as it is sent and again when it is answered) that may give a seat
    /// back, and another Booking instance's view follows it within moments.
    pub fn forget_all(&self) {
        let settled = self.now().saturating_add(SETTLE.as_nanos() as u64);
        self.quiet_until.fetch_max(settled, Ordering::AcqRel);
    }

    /// The kept answer to `asked` from `client`, if one stands and the caller passes the checks
    /// Booking makes before it (see the module documentation).
    pub async fn answer(&self, asked: &Asked, parts: &Parts, client: IpAddr) -> Option<Response> {
        let (status, content_type, body) = {
            let kept = self.kept.read().unwrap_or_else(|e| e.into_inner());
            let answer = kept.get(asked)?;
            let live = answer.sent >= self.quiet_until.load(Ordering::Acquire)
                && Instant::now() < answer.until;
            if !live {
                return None;
            }
            (
                answer.status,
                answer.content_type.clone(),
                answer.body.clone(),
            )
        };
        let token = bearer_token(parts).ok()?;
        let caller = self.answering.authenticator.authenticate(token).ok()?;
        if let Some(limiter) = &self.answering.limiter {
            limiter.take(caller.user_id, client).await.ok()?;
        }
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        if let Some(content_type) = content_type {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        metrics::counter!("gateway_answered_total", "status" => status.as_str().to_owned())
            .increment(1);
        Some(response)
    }

    /// How long an answer with these headers may be kept, removing the header that says so.
    pub fn lasts(headers: &mut HeaderMap) -> Option<Duration> {
        let millis: u64 = headers
            .remove(SOLD_OUT_LASTS_HEADER)?
            .to_str()
            .ok()?
            .parse()
            .ok()?;
        Some(Duration::from_millis(millis).min(LONGEST)).filter(|lasts| !lasts.is_zero())
    }

    /// Keeps Booking's answer (`parts`, `body`) to `asked`, a request sent at `sent`
    /// ([`Answers::now`]), for `lasts`.
    pub fn remember(
        &self,
        asked: Asked,
        sent: u64,
        lasts: Duration,
        parts: &axum::http::response::Parts,
        body: &Bytes,
    ) {
        let answer = Kept {
            until: Instant::now() + lasts,
            sent,
            status: parts.status,
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            body: body.clone(),
        };
        let mut kept = self.kept.write().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= REMEMBERED {
            let now = Instant::now();
            kept.retain(|_, answer| answer.until > now);
            if kept.len() >= REMEMBERED {
                kept.clear();
            }
        }
        kept.insert(asked, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers
    }

    #[test]
    fn only_a_plain_valid_write_may_be_answered() {
        let (concert, seat) = (Uuid::now_v7(), Uuid::now_v7());
        let body = format!(r#"{{"concert_id":"{concert}","seat_type_id":"{seat}"}}"#);
        let asked = Asked::of(true, &json_headers(), body.as_bytes()).expect("answerable");
        assert_eq!((asked.concert_id, asked.seat_type_id), (concert, seat));
        let extra = format!(r#"{{"concert_id":"{concert}","seat_type_id":"{seat}","x":1}}"#);
        assert_eq!(Asked::of(true, &json_headers(), extra.as_bytes()), None);
        assert_eq!(
            Asked::of(true, &json_headers(), br#"{"concert_id":"c"}"#),
            None
        );
        assert_eq!(Asked::of(true, &HeaderMap::new(), body.as_bytes()), None);
        for name in [IDEMPOTENCY_KEY_HEADER, ADMISSION_HEADER] {
            let mut headers = json_headers();
            headers.insert(name, "k".parse().unwrap());
            assert_eq!(Asked::of(true, &headers, body.as_bytes()), None);
        }
    }

    #[test]
    fn an_answer_lasts_at_most_what_booking_said_and_never_over_the_longest() {
        let mut headers = HeaderMap::new();
        assert_eq!(Answers::lasts(&mut headers), None);
        headers.insert(SOLD_OUT_LASTS_HEADER, "40".parse().unwrap());
        assert_eq!(
            Answers::lasts(&mut headers),
            Some(Duration::from_millis(40))
        );
        assert!(headers.is_empty(), "the header is removed");
        headers.insert(SOLD_OUT_LASTS_HEADER, "86400000".parse().unwrap());
        assert_eq!(Answers::lasts(&mut headers), Some(LONGEST));
        for bad in ["0", "-1", "soon"] {
            headers.insert(SOLD_OUT_LASTS_HEADER, bad.parse().unwrap());
            assert_eq!(Answers::lasts(&mut headers), None, "{bad}");
        }
    }
}
