//! Each concert's writes to its owner: where Booking instances share concerts by owner
//! (`--advertise-url`), a new booking or hold is sent straight to the instance that owns its
//! concert, which saves the instance that would otherwise receive it the work of forwarding it.
//!
//! - **Learning.** Booking names the owner in the `Boxoffice-Owner` header of its answer to
//!   `POST /bookings` and `POST /holds`; the gateway notes concert → instance and removes the
//!   header.
//! - **Routing.** The request's `concert_id` is read from its body (bodies of these two routes are
//!   small; one without a `Content-Length` within [`PEEK_LIMIT`] is not read and goes round-robin).
//!   A known owner that is healthy gets the request unless it is busier than the least busy
//!   instance by more than [`SLACK`] requests: then the least busy one takes it and forwards it.
//!   An instance's load is what it has in flight from the gateway **plus the writes for its
//!   concerts in flight at other instances** (they end in its writer: forwarded, not seen by the
//!   gateway as the owner's). So two concerts on two instances go to their own instance each,
//!   while one hot concert's owner gets few requests of its own and the others check the tokens
//!   and forward.
//! - **Never a correctness matter.** A stale or wrong owner only costs a forward; every booking
//!   rule is decided by Booking's store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::body::Body;
use axum::http::{HeaderMap, Method, header};
use boxoffice_shared::clients::OWNER_HEADER;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use serde::Deserialize;
use uuid::Uuid;

use crate::balance::{InFlight, Pool};
use crate::config::BaseUrl;
use crate::error::GatewayError;
use crate::routing::Service;

/// The largest body read for its `concert_id`.
pub(crate) const PEEK_LIMIT: u64 = 16 * 1024;
/// How much busier than the least busy instance an owner may be and still be sent its concert's
/// writes.
const SLACK: usize = 16;
/// The most concerts remembered; past it the map starts over (owners are learnt again at once).
const REMEMBERED: usize = 100_000;

/// Whether a request is a write that has an owner: `POST /api/v1/bookings` or `/api/v1/holds`.
pub(crate) fn is_owned_write(method: &Method, path: &str) -> bool {
    method == Method::POST && matches!(path, "/api/v1/bookings" | "/api/v1/holds")
}

/// The `concert_id` of a write's JSON body, if it has one (a write whose concert is not a UUID
/// is refused by Booking wherever it goes).
pub(crate) fn concert_of(body: &[u8]) -> Option<Uuid> {
    #[derive(Deserialize)]
    struct Write {
        concert_id: Option<Uuid>,
    }
    serde_json::from_slice::<Write>(body).ok()?.concert_id
}

/// Reads a small write's body whole, to route it by its `concert_id` (and perhaps answer it,
/// [`crate::answers`]): `Ok(bytes)`. A body without a `Content-Length` of at most
/// [`PEEK_LIMIT`] is left unread: `Err(body)`, to pass on as it is.
pub(crate) async fn peek(
    headers: &HeaderMap,
    body: Body,
) -> Result<Result<Bytes, Body>, GatewayError> {
    let small = (headers.get(header::CONTENT_LENGTH))
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length <= PEEK_LIMIT);
    if !small {
        return Ok(Err(body));
    }
    let bytes = body
        .collect()
        .await
        .map_err(|_| GatewayError::BodyUnread)?
        .to_bytes();
    Ok(Ok(bytes))
}

/// Which Booking instance owns which concert, as Booking last said.
pub(crate) struct Owners {
    known: Mutex<HashMap<Uuid, usize>>,
    /// Per instance: writes for its concerts in flight at another instance.
    elsewhere: Box<[AtomicUsize]>,
}

impl Owners {
    /// For a pool of `instances` instances.
    pub fn new(instances: usize) -> Self {
        Self {
            known: Mutex::new(HashMap::new()),
            elsewhere: (0..instances).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// The instance to send a write for `concert` to (see the module documentation), skipping
    /// `except`, and — when it is not the owner — the count of the owner's writes elsewhere to
    /// hold until the answer; `None` when no instance is healthy.
    pub fn pick(
        &self,
        pool: &Pool,
        concert: Option<Uuid>,
        except: Option<usize>,
    ) -> (Option<usize>, Option<InFlight<'_>>) {
        let owner = concert.and_then(|concert| self.lock().get(&concert).copied());
        let Some(owner) = owner.filter(|owner| {
            Some(*owner) != except && pool.instances.get(*owner).is_some_and(|o| o.is_healthy())
        }) else {
            return (pool.pick(except), None);
        };
        let load = |index: usize| {
            pool.instances[index].in_flight() + self.elsewhere[index].load(Ordering::Relaxed)
        };
        let least = (0..pool.instances.len())
            .filter(|index| Some(*index) != except && pool.instances[*index].is_healthy())
            .min_by_key(|index| load(*index))
            .unwrap_or(owner);
        if load(owner) <= load(least) + SLACK {
            metrics::counter!("gateway_owned_writes_total", "to" => "owner").increment(1);
            (Some(owner), None)
        } else {
            metrics::counter!("gateway_owned_writes_total", "to" => "overflow").increment(1);
            (Some(least), Some(InFlight::start(&self.elsewhere[owner])))
        }
    }

    /// Notes the owner Booking named in `headers` for `concert`, and removes the header.
    pub fn learn(&self, pool: &Pool, concert: Option<Uuid>, headers: &mut HeaderMap) {
        let Some(named) = headers.remove(OWNER_HEADER) else {
            return;
        };
        let (Some(concert), Ok(named)) = (concert, named.to_str()) else {
            return;
        };
        let Ok(url) = BaseUrl::parse(Service::Booking, named) else {
            return;
        };
        let Some(index) = pool
            .instances
            .iter()
            .position(|instance| instance.url == url)
        else {
            return;
        };
        let mut known = self.lock();
        if known.get(&concert) != Some(&index) {
            if known.len() >= REMEMBERED {
                known.clear();
            }
            known.insert(concert, index);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn pool(size: u16) -> Pool {
        let urls = (0..size)
            .map(|port| {
                BaseUrl::parse(
                    Service::Booking,
                    &format!("http://127.0.0.1:{}", 9000 + port),
                )
                .expect("valid")
            })
            .collect();
        Pool::new(Service::Booking, urls)
    }

    const C1: Uuid = Uuid::from_u128(1);
    const C2: Uuid = Uuid::from_u128(2);
    const HOT: Uuid = Uuid::from_u128(3);

    fn owner_named(url: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(OWNER_HEADER, HeaderValue::from_str(url).unwrap());
        headers
    }

    #[test]
    fn the_concert_id_is_read_from_a_write_body() {
        let concert = Uuid::now_v7();
        let body = format!(r#"{{"concert_id":"{concert}","seat_type_id":"s1"}}"#);
        assert_eq!(concert_of(body.as_bytes()), Some(concert));
        assert_eq!(concert_of(br#"{"concert_id":"c1"}"#), None);
        assert_eq!(concert_of(b"{}"), None);
        assert_eq!(concert_of(b"not json"), None);
        assert!(is_owned_write(&Method::POST, "/api/v1/holds"));
        assert!(!is_owned_write(&Method::GET, "/api/v1/bookings"));
        assert!(!is_owned_write(&Method::POST, "/api/v1/holds/x/pay"));
    }

    #[test]
    fn a_learnt_owner_gets_its_concerts_writes_and_the_header_is_removed() {
        let (pool, owners) = (pool(3), Owners::new(3));
        let mut headers = owner_named("http://127.0.0.1:9002/");
        owners.learn(&pool, Some(C1), &mut headers);
        assert!(headers.is_empty());
        for _ in 0..5 {
            assert_eq!(owners.pick(&pool, Some(C1), None).0, Some(2));
        }
        // Unknown concerts and unknown instances go round-robin.
        owners.learn(&pool, Some(C2), &mut owner_named("http://10.0.0.1:1"));
        let picks: Vec<_> = (0..3)
            .map(|_| owners.pick(&pool, Some(C2), None).0)
            .collect();
        assert_eq!(picks, vec![Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn a_busier_or_unhealthy_owner_overflows_to_the_least_busy_instance() {
        let (pool, owners) = (pool(2), Owners::new(2));
        owners.learn(&pool, Some(C1), &mut owner_named("http://127.0.0.1:9000"));
        let held: Vec<_> = (0..SLACK).map(|_| pool.instances[0].start()).collect();
        assert_eq!(owners.pick(&pool, Some(C1), None).0, Some(0));
        let one_more = pool.instances[0].start();
        let (to, elsewhere) = owners.pick(&pool, Some(C1), None);
        assert_eq!(to, Some(1));
        assert!(elsewhere.is_some(), "counted towards the owner's load");
        drop((held, one_more, elsewhere));
        assert_eq!(owners.pick(&pool, Some(C1), None).0, Some(0));
        pool.set_health(0, false, &"test");
        assert_eq!(owners.pick(&pool, Some(C1), None).0, Some(1));
    }

    #[test]
    fn an_owners_writes_in_flight_elsewhere_count_towards_its_load() {
        let (pool, owners) = (pool(2), Owners::new(2));
        owners.learn(&pool, Some(HOT), &mut owner_named("http://127.0.0.1:9000"));
        // Every write of the hot concert that instance 1 holds is the owner's work too: the
        // owner gets only what keeps it within SLACK of instance 1.
        let mut sent = Vec::new();
        for _ in 0..200 {
            let (to, elsewhere) = owners.pick(&pool, Some(HOT), None);
            sent.push((pool.instances[to.unwrap()].start(), elsewhere));
        }
        let direct = pool.instances[0].in_flight();
        assert!(direct <= SLACK + 1, "the owner took {direct} of 200 itself");
    }
}
