//! Placeholder until the people page lands.

use axum::Router;

use crate::Console;

pub(crate) fn routes() -> Router<Console> {
    Router::new()
}
