//! The limits on writes (API contract, "Limits on writes"): every booking and cancel a
//! signed-in user makes is counted per user and per client address, in fixed windows, with the
//! same counters as the login throttles ([`Throttle`]: in process, and shared through Redis when
//! the deployment shares the login throttles). Booking asks through
//! [`boxoffice_shared::clients::WriteLimiter`]; this is the deployment's implementation.
//!
//! The defaults leave honest use untouched: a fan books and cancels a handful of times in an
//! evening, while 100 writes by one user within 10 seconds meet the limit (the contract's
//! figure). A client address gets ten times a user's allowance, because a venue's Wi-Fi or a
//! carrier NAT puts many fans behind one address.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_shared::clients::WriteLimiter;
use uuid::Uuid;

use crate::limits::{SharedCounters, Throttle};
use crate::throttles::client_key;

/// How many writes are allowed, per what, in what window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimitConfig {
    /// Writes by one user within `window`; the next one is refused.
    pub per_user: u32,
    /// Writes from one client address (IPv6: its /64) within `window`, whatever the users.
    pub per_address: u32,
    pub window: Duration,
}

impl Default for WriteLimitConfig {
    fn default() -> Self {
        Self {
            per_user: 100,
            per_address: 1_000,
            window: Duration::from_secs(10),
        }
    }
}

/// Per-user and per-address rations of writes.
#[derive(Debug)]
pub struct WriteLimits {
    per_user: Throttle,
    per_address: Throttle,
}

impl WriteLimits {
    /// Limits with these figures; `shared` makes every instance count together.
    pub fn new(config: WriteLimitConfig, shared: Option<SharedCounters>) -> Self {
        Self {
            per_user: Throttle::new(
                "writes-user",
                config.per_user,
                config.window,
                shared.clone(),
            ),
            per_address: Throttle::new("writes-address", config.per_address, config.window, shared),
        }
    }
}

#[async_trait]
impl WriteLimiter for WriteLimits {
    async fn take(&self, user: Uuid, client: IpAddr) -> Result<(), u64> {
        self.per_user.take(&user.simple().to_string()).await?;
        self.per_address.take(&client_key(client)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_meets_the_limit_at_its_figure_and_others_are_untouched() {
        let limits = WriteLimits::new(
            WriteLimitConfig {
                per_user: 3,
                per_address: 5,
                window: Duration::from_secs(60),
            },
            None,
        );
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let home: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limits.take(ada, home).await, Ok(()));
        }
        let refused = limits.take(ada, home).await;
        assert!(matches!(refused, Err(seconds) if (1..=60).contains(&seconds)));
        // Bob, behind the same address, has what is left of the address's five (a refused
        // write is not counted)...
        assert_eq!(limits.take(bob, home).await, Ok(()));
        assert_eq!(limits.take(bob, home).await, Ok(()));
        assert!(limits.take(bob, home).await.is_err());
        // A user elsewhere is untouched by that address's count.
        let away: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(limits.take(Uuid::now_v7(), away).await, Ok(()));
    }
}
