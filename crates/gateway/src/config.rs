//! The gateway's configuration section: where each service's instances are, and the timings of
//! health checks and connections. The binary fills it in from flags; [`crate::Gateway::new`]
//! checks it and fails with a message that says what to fix.

use std::time::Duration;

use axum::http::Uri;
use axum::http::uri::{Authority, Scheme};

use crate::routing::Service;

/// Where the services are and how to talk to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Base URLs of the Auth instances, e.g. `http://127.0.0.1:9001`: plain `http`, a host and a
    /// port, no path. At least one.
    pub auth: Vec<String>,
    /// Base URLs of the Catalog instances. At least one.
    pub catalog: Vec<String>,
    /// Base URLs of the Booking instances. At least one; requests are spread round-robin over the
    /// healthy ones.
    pub booking: Vec<String>,
    /// How often every instance's `/readyz` is asked. Also bounds how long an instance that was
    /// marked down (failed check or failed connection) stays out of rotation after it recovers.
    pub health_interval: Duration,
    /// How long one `/readyz` check may take before the instance counts as down.
    pub health_timeout: Duration,
    /// How long to wait for a TCP connection to an instance. Short, because upstreams are on a
    /// private network: a host that drops packets should fail over in moments, not after the
    /// operating system's two-minute default. There is deliberately no timeout on the whole
    /// request: request deadlines are each service's business, and the availability stream must
    /// stay open for as long as the client listens.
    pub connect_timeout: Duration,
    /// How long an idle keep-alive connection to an instance is kept in the pool. Shorter than
    /// the instances' own idle timeout (`serve --header-timeout`, 10 s by default), so that the
    /// gateway drops a connection before the instance does, never reusing one at the moment the
    /// instance closes it.
    pub pool_idle_timeout: Duration,
}

impl GatewayConfig {
    /// A configuration with these upstreams and the default timings: health checks every 2 s
    /// with a 1 s timeout, a 1 s connect timeout, idle connections kept for 5 s.
    pub fn new(auth: Vec<String>, catalog: Vec<String>, booking: Vec<String>) -> Self {
        Self {
            auth,
            catalog,
            booking,
            health_interval: Duration::from_secs(2),
            health_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            pool_idle_timeout: Duration::from_secs(5),
        }
    }

    /// The base URLs configured for `service`.
    pub fn upstreams(&self, service: Service) -> &[String] {
        match service {
            Service::Auth => &self.auth,
            Service::Catalog => &self.catalog,
            Service::Booking => &self.booking,
        }
    }

    pub(crate) fn check_durations(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("health_interval", self.health_interval),
            ("health_timeout", self.health_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        Ok(())
    }
}

/// A configuration the gateway cannot start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "gateway: no {service} upstream is configured; give at least one base URL such as \
         http://127.0.0.1:9001"
    )]
    NoUpstream { service: Service },
    #[error(
        "gateway: {service} upstream {url:?} is not a base URL such as http://127.0.0.1:9001: \
         {reason}"
    )]
    InvalidUpstream {
        service: Service,
        url: String,
        reason: &'static str,
    },
    #[error("gateway: {service} upstream {url} is listed twice")]
    DuplicateUpstream { service: Service, url: String },
    #[error("gateway: {field} must be longer than zero")]
    ZeroDuration { field: &'static str },
}

/// The parts of an upstream base URL that requests are addressed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    pub scheme: Scheme,
    pub authority: Authority,
}

impl BaseUrl {
    /// Accepts `http://host:port`, with or without a trailing `/`.
    pub fn parse(service: Service, url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidUpstream {
            service,
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|_| invalid("it does not parse"))?;
        let parts = uri.into_parts();
        let scheme = parts.scheme.ok_or_else(|| invalid("it has no scheme"))?;
        if scheme != Scheme::HTTP {
            // Services sit on a private network behind the gateway; the gateway's client speaks
            // plain HTTP/1.1 only.
            return Err(invalid("only http:// upstreams are supported"));
        }
        let authority = parts.authority.ok_or_else(|| invalid("it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("credentials in the URL are not supported"));
        }
        if parts
            .path_and_query
            .is_some_and(|path| path.as_str() != "/" && !path.as_str().is_empty())
        {
            return Err(invalid(
                "it has a path or query; services are mounted at the root",
            ));
        }
        Ok(Self { scheme, authority })
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_plain_http_roots() {
        for ok in [
            "http://127.0.0.1:9001",
            "http://127.0.0.1:9001/",
            "http://booking-1:8080",
            " http://[::1]:9001 ",
        ] {
            assert!(BaseUrl::parse(Service::Booking, ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1:9001",
            "https://127.0.0.1:9001",
            "http://127.0.0.1:9001/booking",
            "http://127.0.0.1:9001?x=1",
            "http://user:pw@127.0.0.1:9001",
            "not a url",
        ] {
            let error = BaseUrl::parse(Service::Booking, bad).expect_err(bad);
            assert!(
                matches!(
                    error,
                    ConfigError::InvalidUpstream {
                        service: Service::Booking,
                        ..
                    }
                ),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_base_url_displays_as_it_is_addressed() {
        let url = BaseUrl::parse(Service::Auth, "http://127.0.0.1:9001/").expect("valid");
        assert_eq!(url.to_string(), "http://127.0.0.1:9001");
    }

    #[test]
    fn zero_durations_are_refused() {
        let mut config = GatewayConfig::new(vec![], vec![], vec![]);
        assert!(config.check_durations().is_ok());
        config.health_interval = Duration::ZERO;
        assert_eq!(
            config.check_durations(),
            Err(ConfigError::ZeroDuration {
                field: "health_interval"
            })
        );
    }
}
