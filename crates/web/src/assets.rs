//! The stylesheet and the script, compiled into the binary: no CDN, no font downloads, nothing
//! to ship beside it. Cached for an hour; a new build changes them in place.

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use http::header;

use crate::api::Api;

const STYLE: &str = include_str!("../assets/style.css");
const SCRIPT: &str = include_str!("../assets/app.js");

pub fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css", STYLE) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}
