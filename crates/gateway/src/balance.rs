//! Each service's instances, their health, and round-robin over the healthy ones.
//!
//! Health is one flag per instance, written by the health checks and by the proxy when a
//! connection fails, read on every request. Nothing here blocks or takes a lock: a request only
//! loads a few atomics.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::config::BaseUrl;
use crate::routing::Service;

/// One instance of a service.
#[derive(Debug)]
pub(crate) struct Instance {
    /// Where it listens.
    pub url: BaseUrl,
    /// `url` as text, for logs and metric labels.
    pub label: String,
    /// Taken to be able to answer: its last health check passed and no connection has failed
    /// since.
    healthy: AtomicBool,
    /// Requests sent and not yet answered (their response head not yet received).
    in_flight: AtomicUsize,
}

/// One request on its way; counted in a counter of requests in flight until dropped.
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Counts one more in `counter` until the guard is dropped.
    pub fn start(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The instances of one service.
#[derive(Debug)]
pub(crate) struct Pool {
    pub service: Service,
    pub instances: Box<[Instance]>,
    /// Round-robin position; wraps around harmlessly.
    next: AtomicUsize,
}

/// An upstream instance as seen from outside: which service, where, and whether it is taken to be
/// healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStatus {
    pub service: Service,
    /// The base URL, e.g. `http://127.0.0.1:9001`.
    pub url: String,
    pub healthy: bool,
}

impl Pool {
    pub fn new(service: Service, urls: Vec<BaseUrl>) -> Self {
        let instances = urls
            .into_iter()
            .map(|url| Instance {
                label: url.to_string(),
                url,
                healthy: AtomicBool::new(true),
                in_flight: AtomicUsize::new(0),
            })
            .collect();
        Self {
            service,
            instances,
            next: AtomicUsize::new(0),
        }
    }

    /// The next healthy instance in round-robin order, skipping `except` (the instance a request
    /// has just failed on). Turns go to healthy instances only, so when one of three is down the
    /// other two still share the load evenly.
    pub fn pick(&self, except: Option<usize>) -> Option<usize> {
        let eligible =
            |index: &usize| Some(*index) != except && self.instances[*index].is_healthy();
        let count = (0..self.instances.len()).filter(eligible).count();
        if count == 0 {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % count;
        (0..self.instances.len()).filter(eligible).nth(turn)
    }

    pub fn any_healthy(&self) -> bool {
        self.instances.iter().any(Instance::is_healthy)
    }

    /// Records the outcome of a health check or of a failed connection; logs only changes.
    pub fn set_health(&self, index: usize, healthy: bool, reason: &dyn std::fmt::Display) {
        let instance = &self.instances[index];
        let was = instance.healthy.swap(healthy, Ordering::Relaxed);
        metrics::gauge!(
            "gateway_upstream_healthy",
            "service" => self.service.as_str(),
            "upstream" => instance.label.clone(),
        )
        .set(if healthy { 1.0 } else { 0.0 });
        match (was, healthy) {
            (true, false) => tracing::warn!(
                service = %self.service,
                upstream = %instance.label,
                %reason,
                "upstream marked down"
            ),
            (false, true) => tracing::info!(
                service = %self.service,
                upstream = %instance.label,
                "upstream healthy again"
            ),
            _ => {}
        }
    }

    pub fn status(&self) -> impl Iterator<Item = UpstreamStatus> + '_ {
        self.instances.iter().map(|instance| UpstreamStatus {
            service: self.service,
            url: instance.label.clone(),
            healthy: instance.is_healthy(),
        })
    }
}

impl Instance {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request sent to this instance until the guard is dropped.
    pub fn start(&self) -> InFlight<'_> {
        InFlight::start(&self.in_flight)
    }
}

#[cfg(test)]
mod tests {
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

    fn picks(pool: &Pool, n: usize, except: Option<usize>) -> Vec<Option<usize>> {
        (0..n).map(|_| pool.pick(except)).collect()
    }

    #[test]
    fn turns_rotate_over_every_healthy_instance() {
        let pool = pool(3);
        assert_eq!(picks(&pool, 6, None), [0, 1, 2, 0, 1, 2].map(Some).to_vec());
    }

    #[test]
    fn unhealthy_and_excepted_instances_get_no_turn_and_the_rest_share_evenly() {
        let pool = pool(3);
        pool.set_health(1, false, &"test");
        assert_eq!(picks(&pool, 4, None), [0, 2, 0, 2].map(Some).to_vec());
        assert_eq!(picks(&pool, 3, Some(0)), [2, 2, 2].map(Some).to_vec());
        pool.set_health(2, false, &"test");
        assert_eq!(picks(&pool, 2, Some(0)), vec![None, None]);
        assert!(pool.any_healthy());
        pool.set_health(0, false, &"test");
        assert_eq!(pool.pick(None), None);
        assert!(!pool.any_healthy());
        pool.set_health(1, true, &"test");
        assert_eq!(picks(&pool, 2, None), vec![Some(1), Some(1)]);
    }
}
