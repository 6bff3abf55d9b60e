//! Which counts a login or a registration is checked against and which it adds to: the policy of
//! the brute-force throttles. The counting itself (fixed windows, the counts shared through
//! Redis, the per-process fallback) is [`crate::limits`]; `docs/security.md` ("Login throttling")
//! states the design and its limits.
//!
//! The rule that shapes it: a client that is failing is throttled, not the account it fails on.
//! Tight limits are keyed by the pair (account, client address), so that whoever guesses at a
//! fan's password is stopped while the fan, from any other address, still logs in. What bounds a
//! guesser with many addresses is a brake on the account that rations password checks instead
//! of refusing them all, and a per-address limit, generous enough for a NAT, stops one address
//! spraying guesses across many accounts.

use std::net::IpAddr;

use crate::config::RateLimitConfig;
use crate::error::AuthError;
use crate::limits::{SharedCounters, Throttle};

/// The Auth service's throttles, built from its [`RateLimitConfig`].
#[derive(Debug)]
pub(crate) struct Throttles {
    /// The Redis connection the throttles share, when configured.
    shared: Option<SharedCounters>,
    /// Failures per (account, client address): the tight limit, which throttles the guesser.
    account_address_failures: Throttle,
    /// Failures per account from every address: past its limit the account is braked.
    account_failures: Throttle,
    /// While an account is braked, its ration of password checks (one per interval).
    braked_account_checks: Throttle,
    /// Failures per client address over every account: stops a spray across accounts.
    address_failures: Throttle,
    /// Registrations per client address.
    registrations: Throttle,
}

fn rate_limited(retry_after_secs: u64) -> AuthError {
    AuthError::RateLimited { retry_after_secs }
}

/// The address a client is counted under. An IPv6 client usually holds a whole /64 (and can
/// pick any address in it), so it is counted by that prefix; an IPv4-mapped address counts as
/// the IPv4 address it is.
pub(crate) fn client_key(client: IpAddr) -> String {
    match client {
        IpAddr::V4(v4) => format!("address:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("address:{v4}"),
            None => {
                let prefix = u128::from(v6) & !(u128::MAX >> 64);
                format!("address:{}/64", std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

impl Throttles {
    pub(crate) fn new(limits: RateLimitConfig, shared: Option<SharedCounters>) -> Self {
        let throttle = |name, limit, window| Throttle::new(name, limit, window, shared.clone());
        Self {
            account_address_failures: throttle(
                "login-failures-account-address",
                limits.login_failures_per_account_address,
                limits.failure_window,
            ),
            account_failures: throttle(
                "login-failures-account",
                limits.login_failures_per_account,
                limits.failure_window,
            ),
            braked_account_checks: throttle(
                "login-braked-account-checks",
                1,
                limits.braked_login_interval,
            ),
            address_failures: throttle(
                "login-failures-address",
                limits.login_failures_per_address,
                limits.failure_window,
            ),
            registrations: throttle(
                "registrations-address",
                limits.registrations_per_address,
                limits.registration_window,
            ),
            shared,
        }
    }

    pub(crate) fn shared(&self) -> Option<&SharedCounters> {
        self.shared.as_ref()
    }

    /// Counts a registration from `client`; 429 past the limit.
    pub(crate) async fn admit_registration(&self, client: IpAddr) -> Result<(), AuthError> {
        let key = client_key(client);
        self.registrations.check(&key).await.map_err(rate_limited)?;
        self.registrations.record(&key).await;
        Ok(())
    }

    /// Before anything else of a login: 429 when `client` itself failed too often, whichever
    /// accounts it tried.
    pub(crate) async fn admit_client(&self, client: IpAddr) -> Result<(), AuthError> {
        self.address_failures
            .check(&client_key(client))
            .await
            .map_err(|secs| throttled("address", secs))
    }

    /// Before checking a password for `account` (an account id, or what was typed when it names
    /// none): 429 when this client failed on this account too often, or when the account is
    /// braked and its current check has been taken. Failures from *other* addresses never
    /// refuse a client on their own; past the brake they only ration it.
    pub(crate) async fn admit_attempt(
        &self,
        account: &str,
        client: IpAddr,
    ) -> Result<(), AuthError> {
        self.account_address_failures
            .check(&pair_key(account, client))
            .await
            .map_err(|secs| throttled("account-address", secs))?;
        if self.account_failures.check(account).await.is_err() {
            self.braked_account_checks
                .take(account)
                .await
                .map_err(|secs| throttled("account-brake", secs))?;
        }
        Ok(())
    }

    /// Counts a failed login from `client`, against `account` when the login named one.
    pub(crate) async fn login_failed(&self, account: Option<&str>, client: IpAddr) {
        if let Some(account) = account {
            self.account_address_failures
                .record(&pair_key(account, client))
                .await;
            self.account_failures.record(account).await;
        }
        self.address_failures.record(&client_key(client)).await;
    }

    /// Forgives `client`'s failures on `account` after it logged in: a user who mistyped is not
    /// held to them. The account's brake and the address's count stay: an owner's success must
    /// not reset the budget of someone guessing elsewhere, nor an attacker's success on their
    /// own account the budget of their address.
    pub(crate) async fn login_succeeded(&self, account: &str, client: IpAddr) {
        self.account_address_failures
            .clear(&pair_key(account, client))
            .await;
    }
}

fn pair_key(account: &str, client: IpAddr) -> String {
    format!("{account}|{}", client_key(client))
}

fn throttled(throttle: &'static str, retry_after_secs: u64) -> AuthError {
    metrics::counter!("auth_logins_throttled_total", "throttle" => throttle).increment(1);
    rate_limited(retry_after_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    fn throttles(per_pair: u32, per_account: u32, per_address: u32) -> Throttles {
        Throttles::new(
            RateLimitConfig {
                login_failures_per_account_address: per_pair,
                login_failures_per_account: per_account,
                login_failures_per_address: per_address,
                braked_login_interval: Duration::from_secs(30),
                ..RateLimitConfig::default()
            },
            None,
        )
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, n])
    }

    async fn fail(throttles: &Throttles, account: &str, client: IpAddr) {
        throttles.login_failed(Some(account), client).await;
    }

    #[tokio::test]
    async fn a_failing_client_is_refused_on_that_account_and_nobody_else_is() {
        let throttles = throttles(3, 100, 100);
        for _ in 0..3 {
            throttles.admit_attempt("account:x", ip(66)).await.unwrap();
            fail(&throttles, "account:x", ip(66)).await;
        }
        assert!(matches!(
            throttles.admit_attempt("account:x", ip(66)).await,
            Err(AuthError::RateLimited { .. })
        ));
        // The owner elsewhere, and the attacker's address on another account, are let through.
        throttles.admit_attempt("account:x", ip(7)).await.unwrap();
        throttles.admit_attempt("account:y", ip(66)).await.unwrap();
        throttles.admit_client(ip(66)).await.unwrap();
        // The owner's success forgives the owner's address only.
        throttles.login_succeeded("account:x", ip(7)).await;
        assert!(throttles.admit_attempt("account:x", ip(66)).await.is_err());
    }

    #[tokio::test]
    async fn a_braked_account_gets_one_check_per_interval_from_any_address() {
        let throttles = throttles(3, 4, 100);
        for attacker in [1, 2] {
            fail(&throttles, "account:x", ip(attacker)).await;
            fail(&throttles, "account:x", ip(attacker)).await;
        }
        // Four failures from two addresses: braked. A fresh address gets the interval's check...
        throttles.admit_attempt("account:x", ip(3)).await.unwrap();
        // ...and the next one, from anywhere, waits for the next interval.
        let Err(AuthError::RateLimited { retry_after_secs }) =
            throttles.admit_attempt("account:x", ip(4)).await
        else {
            panic!("a braked account's second check within the interval is refused");
        };
        assert!((1..=30).contains(&retry_after_secs), "{retry_after_secs}");
        // Another account is not braked.
        throttles.admit_attempt("account:y", ip(4)).await.unwrap();
        throttles.admit_attempt("account:y", ip(4)).await.unwrap();
    }

    #[tokio::test]
    async fn an_address_spraying_many_accounts_is_stopped() {
        let throttles = throttles(3, 100, 5);
        for n in 0..5 {
            throttles.admit_client(ip(9)).await.unwrap();
            fail(&throttles, &format!("account:{n}"), ip(9)).await;
        }
        assert!(throttles.admit_client(ip(9)).await.is_err());
        throttles.admit_client(ip(10)).await.unwrap();
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_slash_64() {
        let key = |ip: &str| client_key(ip.parse().unwrap());
        assert_eq!(key("192.0.2.7"), "address:192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "address:192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "address:2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff::9"), key("2001:db8:1:2::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
