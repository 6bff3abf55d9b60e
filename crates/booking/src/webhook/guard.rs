//! The server-side request forgery guard of webhooks: an admin names a URL and the server calls
//! it, so without a guard a webhook could reach the deployment's own network (a database's
//! admin page, a cloud's metadata service at `169.254.169.254`).
//!
//! - At registration ([`check_url`]): `http` and `https` only, no credentials in the URL, and a
//!   host that neither is nor resolves to a [forbidden](is_forbidden) address.
//! - At delivery: the host is resolved again by [`GuardedResolver`], the HTTP client's only
//!   resolver, which hands the client only addresses that pass, so the connection goes to an
//!   address that was checked — a name that resolved to a public address at registration and to
//!   a private one now (DNS rebinding) is not called. An address written in the URL is checked
//!   before the request ([`check_literal`]); redirects are not followed and no proxy is used.
//!
//! `--webhooks-allow-private` switches the guard off, for tests and closed networks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long a registration waits for the URL's host to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest URL an endpoint may have.
pub const MAX_URL_LENGTH: usize = 2048;

/// Whether `ip` is an address a webhook must not reach: private (RFC 1918), loopback,
/// link-local (`169.254/16`, `fe80::/10`), unspecified, broadcast, shared (CGNAT `100.64/10`),
/// unique-local (`fc00::/7`), multicast, reserved, or an IPv6 form of any of these (mapped,
/// compatible, NAT64).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || a >= 240
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let segments = ip.segments();
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) addresses reach an IPv4 address.
    let embedded = Ipv4Addr::from((u32::from(segments[6]) << 16) | u32::from(segments[7]));
    let compatible = segments[..6].iter().all(|segment| *segment == 0);
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if (compatible || nat64) && !ip.is_loopback() && !ip.is_unspecified() {
        return forbidden_v4(embedded);
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
        || (segments[0] & 0xfe00) == 0xfc00
}

/// Checks a URL given at registration; `Err` says why it is refused. With `allow_private`,
/// only the form is checked.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<Url, &'static str> {
    if raw.len() > MAX_URL_LENGTH {
        return Err("must be at most 2048 characters");
    }
    let url = Url::parse(raw).map_err(|_| "must be an absolute http or https URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials");
    }
    let Some(host) = url.host_str() else {
        return Err("must name a host");
    };
    if allow_private {
        return Ok(url);
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if is_forbidden(ip) {
            Err("must not be a private, loopback or link-local address")
        } else {
            Ok(url)
        };
    }
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") || lower.ends_with(".local") {
        return Err("must not name this machine or its local network");
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let resolved = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((lower.as_str(), port)),
    )
    .await;
    // A name that does not resolve now is let through: delivery resolves it again and calls
    // only a permitted address.
    if let Ok(Ok(addresses)) = resolved
        && addresses
            .into_iter()
            .any(|address| is_forbidden(address.ip()))
    {
        return Err("must not resolve to a private, loopback or link-local address");
    }
    Ok(url)
}

/// Checks the host of a URL about to be called when it is an address (the resolver is not asked
/// about those).
pub fn check_literal(url: &Url, allow_private: bool) -> Result<(), &'static str> {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if !allow_private && is_forbidden(ip) => {
            Err("refused: a private, loopback or link-local address")
        }
        _ => Ok(()),
    }
}

/// The delivery client's resolver: the system's, keeping only permitted addresses.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| allow_private || !is_forbidden(address.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{host} resolves to no permitted address (private, loopback and link-local \
                     addresses are refused)"
                )
                .into());
            }
            let addresses: Addrs = Box::new(found.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(address: &str) -> bool {
        is_forbidden(address.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)))
    }

    #[test]
    fn internal_addresses_are_forbidden() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(forbidden(address), "{address} should be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for address in ["93.184.216.34", "1.1.1.1", "100.128.0.1", "2606:4700::1111"] {
            assert!(!forbidden(address), "{address} should be allowed");
        }
    }

    #[tokio::test]
    async fn registration_refuses_internal_and_odd_urls() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]/hook",
            "http://10.0.0.5/hook",
            "http://169.254.169.254/latest/meta-data",
            "ftp://example.com/hook",
            "https://user:pass@example.com/hook",
            "not a url",
            "/relative",
        ] {
            assert!(
                check_url(url, false).await.is_err(),
                "{url} should be refused"
            );
        }
        assert!(check_url("https://93.184.216.34/hook", false).await.is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook", true).await.is_ok());
        assert!(check_url("ftp://127.0.0.1/hook", true).await.is_err());
    }
}
