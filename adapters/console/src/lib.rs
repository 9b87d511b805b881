//! leadrelay's web console: live leads, a lead's whole story, the speed-to-lead dashboard,
//! people and their availability, and the operator's controls (dead letters, the audit, the
//! configuration and the what-if). Served under `/console` by the same router in both runtimes
//! (`leadrelay serve`; the console function on AWS).
//!
//! Adapter layer: pages are built with maud (escaped by default) over the core's ports; the
//! stylesheet and the one small script are compiled into the binary, nothing is fetched from
//! elsewhere. Who sees what is decided in `leadrelay_shared::console::access`; this crate
//! enforces it on every page and action, and writes every action to the audit log.

mod assets;
mod auth;
mod dashboard;
mod leads;
mod operations;
mod page;
mod people;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use leadrelay_shared::console::ConsoleAction;
use leadrelay_shared::ports::{ConsoleStore, DeadLetters, StoreError};
use leadrelay_shared::stages::Pipeline;
use tracing::error;

pub use auth::hash_password;

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    pub pipeline: Arc<Pipeline>,
    pub store: Arc<dyn ConsoleStore>,
    /// The dead-letter queues, for the operations page; `None` where this process cannot
    /// reach them.
    pub dead_letters: Option<Arc<dyn DeadLetters>>,
    throttle: Arc<auth::Throttle>,
    figures: Arc<dashboard::FigureCache>,
    /// Where a pasted configuration's `*_env` names are looked up (the what-if): the process
    /// environment, or the secrets the process loaded its own configuration with.
    secrets: SecretLookup,
}

/// Looks up a configuration's `*_env` name.
type SecretLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl Console {
    pub fn new(
        pipeline: Arc<Pipeline>,
        store: Arc<dyn ConsoleStore>,
        dead_letters: Option<Arc<dyn DeadLetters>>,
    ) -> Self {
        Console {
            pipeline,
            store,
            dead_letters,
            throttle: Arc::new(auth::Throttle::default()),
            figures: Arc::new(dashboard::FigureCache::default()),
            secrets: Arc::new(|name: &str| std::env::var(name).ok()),
        }
    }

    /// Looks up a pasted configuration's `*_env` names with `secrets` instead of the process
    /// environment (on AWS: the SSM secrets the function loaded its configuration with).
    pub fn with_secrets(
        mut self,
        secrets: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.secrets = Arc::new(secrets);
        self
    }

    fn config(&self) -> &leadrelay_shared::config::Config {
        &self.pipeline.config
    }

    /// Writes one entry to the audit log. The action has happened: a failed write is logged
    /// loudly, not undone.
    async fn audit(&self, login: &str, action: &str, target: &str, detail: impl Into<String>) {
        let entry = ConsoleAction {
            at: self.pipeline.clock.now(),
            login: login.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail: detail.into(),
        };
        if let Err(e) = self.store.record_action(&entry).await {
            error!(error = %e, login, action, target, "console: audit entry not written");
        }
    }
}

/// The console's routes, with their state. Without a `[console]` section every path under
/// `/console` answers 404, as if there were no console.
pub fn router(console: Console) -> Router {
    if console.pipeline.config.console.is_none() {
        return Router::new();
    }
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/leads") }))
        .merge(auth::routes())
        .merge(assets::routes())
        .merge(leads::routes())
        .merge(dashboard::routes())
        .merge(people::routes())
        .merge(operations::routes())
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

/// Headers on every console response: nothing framed, nothing loaded from elsewhere, no page
/// cached (they carry prospect data), no referrer leaving the site.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::CACHE_CONTROL, "no-store");
    response
}

/// Why a console request is answered without what it asked for.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No session (or an expired one): sign in, then come back to `next`.
    SignIn {
        next: String,
    },
    /// Signed in, but this is not theirs to see or do.
    Forbidden(&'static str),
    /// The form's CSRF token is missing or not this session's.
    Forged,
    NotFound(&'static str),
    BadRequest(String),
    /// The store could not answer; trying again later may work.
    Unavailable,
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        error!(error = %e, "console: store unavailable");
        Refusal::Unavailable
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Refusal::SignIn { next } => {
                let target = format!("/console/login?next={}", page::query_escape(&next));
                return Redirect::to(&target).into_response();
            }
            Refusal::Forbidden(what) => (StatusCode::FORBIDDEN, "Not yours", what.to_owned()),
            Refusal::Forged => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form did not come from your current session. Reload the page and try again."
                    .to_owned(),
            ),
            Refusal::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", what.to_owned()),
            Refusal::BadRequest(message) => (StatusCode::BAD_REQUEST, "Not accepted", message),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "The store did not answer. Try again in a moment.".to_owned(),
            ),
        };
        (status, page::bare(title, &message)).into_response()
    }
}
