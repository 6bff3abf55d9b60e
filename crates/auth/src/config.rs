//! The Auth service's configuration section. Only the binary reads the environment and flags;
//! it builds this struct and hands it over.

use std::time::Duration;

/// Everything the Auth service can be told.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// How long an access token is valid (API contract: 15 minutes).
    pub access_ttl: Duration,
    /// How long a refresh token is valid after it is issued (API contract: 30 days). Each
    /// rotation issues a new one, so an active session keeps going.
    pub refresh_ttl: Duration,
    /// argon2id cost parameters.
    pub password: PasswordParams,
    /// Brute-force throttles; `None` when switched off (`BOXOFFICE_RATE_LIMIT=off`).
    pub rate_limit: Option<RateLimitConfig>,
    /// Whether admins may create load-test accounts in bulk
    /// (`POST /api/v1/admin/load-test-accounts`). Off by default: only for load tests.
    pub load_test_accounts: bool,
    /// Where the throttles' counters are shared between Auth instances (`--redis-url`); `None`:
    /// each process counts on its own.
    pub shared_throttles: Option<SharedThrottles>,
}

/// A Redis server whose counters every Auth instance shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedThrottles {
    /// `redis://HOST:PORT[/DB]` (or `rediss://` for TLS).
    pub url: String,
    /// Prepended to every key, so that deployments (or tests) sharing a server keep apart.
    pub prefix: String,
}

impl SharedThrottles {
    /// The key prefix of a deployment that did not choose one.
    pub const DEFAULT_PREFIX: &str = "boxoffice:throttle";
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            password: PasswordParams::default(),
            rate_limit: Some(RateLimitConfig::default()),
            load_test_accounts: false,
            shared_throttles: None,
        }
    }
}

/// argon2id parameters. The defaults are OWASP's recommendation (m = 19 MiB, t = 2, p = 1);
/// lower them only for tests or for load-test accounts, never for real users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
}

impl PasswordParams {
    /// OWASP Password Storage Cheat Sheet, argon2id, first recommended configuration.
    pub const OWASP: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// True when these parameters are weaker than [`Self::OWASP`].
    pub fn below_recommendation(&self) -> bool {
        self.memory_kib < Self::OWASP.memory_kib || self.iterations < Self::OWASP.iterations
    }
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Limits on login failures and registrations. A client over a limit gets 429 `rate_limited` with
/// `Retry-After` until its window ends. `docs/security.md` ("Login throttling") explains how the
/// login limits fit together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Failed logins allowed on one account from one client address within `failure_window`.
    /// Past it, that address gets 429 for that account, even with the right password; other
    /// addresses (the account's owner among them) are not affected. A success from the address
    /// clears its count.
    pub login_failures_per_account_address: u32,
    /// Failed logins on one account from all addresses together within `failure_window` after
    /// which the account is *braked*: for the rest of that window it gets one password check per
    /// `braked_login_interval`, whoever asks. Bounds a guesser with many addresses without
    /// locking the owner out. A success does not clear it: the owner logging in must not hand
    /// the guesser a fresh budget.
    pub login_failures_per_account: u32,
    /// While an account is braked, the spacing between its password checks.
    pub braked_login_interval: Duration,
    /// Failed logins allowed from one client address, whatever the accounts, within
    /// `failure_window`; past it every login from the address is 429. Generous, because a venue's
    /// Wi-Fi or a carrier NAT puts many people behind one address.
    pub login_failures_per_address: u32,
    pub failure_window: Duration,
    /// Registrations allowed per client address within `registration_window`.
    pub registrations_per_address: u32,
    pub registration_window: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            login_failures_per_account_address: 5,
            login_failures_per_account: 50,
            braked_login_interval: Duration::from_secs(10),
            login_failures_per_address: 300,
            failure_window: Duration::from_secs(15 * 60),
            registrations_per_address: 20,
            registration_window: Duration::from_secs(60 * 60),
        }
    }
}
