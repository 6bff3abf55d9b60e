//! The background health checks: every `health_interval`, `GET {upstream}/readyz` on every
//! instance of every service, all at once, and mark each one up (200) or down.
//!
//! `/readyz` (API contract, "Operations") answers 200 only when the instance's stores answer, so
//! an instance that is up but cannot reach its database gets no traffic. Together with the proxy
//! marking an instance down when a connection to it fails, this is what takes instances out of
//! rotation; only this loop puts them back.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, Uri};
use futures_util::future::join_all;
use http_body_util::BodyExt;
use tokio::time::MissedTickBehavior;

use crate::balance::Instance;
use crate::proxy::{Proxy, UpstreamClient};

pub(crate) async fn run<F>(proxy: Arc<Proxy>, stop: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut stop = std::pin::pin!(stop);
    let mut ticker = tokio::time::interval(proxy.health_interval);
    // A slow round delays the next one instead of being followed by a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::debug!(interval = ?proxy.health_interval, "gateway health checks started");
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            () = async {
                ticker.tick().await;
                check_all(&proxy).await;
            } => {}
        }
    }
    tracing::debug!("gateway health checks stopped");
}

/// One round: every instance at once, each marked as its answer says.
async fn check_all(proxy: &Proxy) {
    let checks = proxy.pools().iter().flat_map(|pool| {
        pool.instances
            .iter()
            .enumerate()
            .map(move |(index, instance)| async move {
                let outcome = check(&proxy.client, instance, proxy.health_timeout).await;
                match outcome {
                    Ok(()) => pool.set_health(index, true, &"ready"),
                    Err(reason) => pool.set_health(index, false, &reason),
                }
            })
    });
    join_all(checks).await;
}

/// `Ok` when the instance answers its `/readyz` with 200 within `timeout`; otherwise why not.
async fn check(
    client: &UpstreamClient,
    instance: &Instance,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let uri = Uri::builder()
        .scheme(instance.url.scheme.clone())
        .authority(instance.url.authority.clone())
        .path_and_query("/readyz")
        .build()
        .map_err(|error| error.to_string())?;
    let request = Request::get(uri)
        .body(Body::empty())
        .map_err(|error| error.to_string())?;
    let answer = async {
        let response = client
            .request(request)
            .await
            .map_err(|error| boxoffice_shared::problem::ErrorChain(&error).to_string())?;
        let status = response.status();
        // Read the (small) body to its end, so the connection goes back to the pool.
        response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("reading /readyz: {error}"))?;
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(format!("/readyz answered {status}"))
        }
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("/readyz did not answer within {timeout:?}")),
    }
}
