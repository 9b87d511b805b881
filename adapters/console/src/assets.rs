//! The console's stylesheet and script, compiled into the binary: the console works on a
//! machine with no internet and loads nothing from elsewhere (its CSP says `'self'` only).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::Console;

/// Versioned paths: a new release is fetched afresh, a page of the same release is cached.
pub(crate) const STYLESHEET: &str =
    concat!("/console/assets/console.css?v=", env!("CARGO_PKG_VERSION"));
pub(crate) const SCRIPT: &str = concat!("/console/assets/console.js?v=", env!("CARGO_PKG_VERSION"));

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route(
            "/console/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/console/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
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
