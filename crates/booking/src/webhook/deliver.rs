//! One delivery attempt: the body `{"type", "timestamp", "data"}`, its Standard Webhooks
//! signature (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, made by the `standardwebhooks` crate), and the `POST` through a
//! client that resolves names only to permitted addresses ([`super::guard`]).

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use time::OffsetDateTime;

use super::guard::{GuardedResolver, check_literal};
use super::{Claimed, Outcome, Settings, WebhookEvent};
use crate::error::BookingError;

/// The HTTP client of this process's deliveries and the rules it follows.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    settings: Settings,
}

/// What the receiver gets.
#[derive(Serialize)]
struct Body<'a, T: Serialize> {
    #[serde(rename = "type")]
    event: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    data: T,
}

/// The body of an event: its type, when it happened, and its data.
pub fn body(
    event: WebhookEvent,
    at: OffsetDateTime,
    data: &impl Serialize,
) -> Result<String, BookingError> {
    serde_json::to_string(&Body {
        event: event.as_str(),
        timestamp: at,
        data,
    })
    .map_err(|error| BookingError::Corrupt(format!("webhook body: {error}")))
}

/// The `webhook-signature` header of `body` sent as message `id` at `timestamp` (Unix seconds).
pub fn signature(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &str,
) -> Result<String, BookingError> {
    standardwebhooks::Webhook::new(secret)
        .and_then(|webhook| webhook.sign(id, timestamp, body.as_bytes()))
        .map_err(|error| BookingError::Corrupt(format!("webhook secret: {error}")))
}

impl Deliverer {
    pub fn new(settings: Settings) -> Result<Self, BookingError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(GuardedResolver {
                allow_private: settings.allow_private,
            })
            .user_agent(concat!("boxoffice-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| BookingError::Corrupt(format!("webhook client: {error}")))?;
        Ok(Self { client, settings })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Makes one attempt of `claimed` with `body`, and says what it came to.
    pub async fn attempt(&self, claimed: &Claimed, body: String) -> Outcome {
        let failed = |status: Option<u16>, error: String| Outcome::Failed {
            status,
            error,
            retry_at: self
                .settings
                .retry_at(claimed.attempts, OffsetDateTime::now_utc()),
        };
        let url = match Url::parse(&claimed.url) {
            Ok(url) => url,
            Err(error) => return failed(None, format!("bad URL: {error}")),
        };
        if let Err(reason) = check_literal(&url, self.settings.allow_private) {
            return failed(None, reason.to_owned());
        }
        let id = claimed.event_id.to_string();
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signature = match signature(&claimed.secret, &id, timestamp, &body) {
            Ok(signature) => signature,
            Err(error) => return failed(None, error.to_string()),
        };
        let sent = self
            .client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                Outcome::Delivered(response.status().as_u16())
            }
            Ok(response) if response.status() == reqwest::StatusCode::GONE => Outcome::Gone,
            Ok(response) => {
                let status = response.status().as_u16();
                failed(Some(status), format!("answered {status}"))
            }
            // Timeouts, refused connections, refused addresses: no status.
            Err(error) => failed(None, error_chain(&error)),
        }
    }
}

/// An error with its causes, for the delivery's `last_error`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_the_standard_webhooks_crate() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = body(
            WebhookEvent::BookingConfirmed,
            OffsetDateTime::now_utc(),
            &serde_json::json!({"id": "x"}),
        )
        .unwrap_or_default();
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signed = signature(secret, "msg_1", timestamp, &body).unwrap_or_default();
        assert!(signed.starts_with("v1,"));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        headers.insert(
            "webhook-timestamp",
            HeaderValue::from_str(&timestamp.to_string()).unwrap_or(HeaderValue::from_static("0")),
        );
        headers.insert(
            "webhook-signature",
            HeaderValue::from_str(&signed).unwrap_or(HeaderValue::from_static("")),
        );
        let webhook = standardwebhooks::Webhook::new(secret);
        assert!(
            webhook
                .as_ref()
                .is_ok_and(|webhook| webhook.verify(body.as_bytes(), &headers).is_ok())
        );
        assert!(webhook.is_ok_and(|webhook| webhook.verify(b"{}", &headers).is_err()));
    }
}
