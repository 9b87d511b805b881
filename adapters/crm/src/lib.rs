//! leadrelay's CRM REST clients, shared by the write-back channels (`leadrelay-channels`, in
//! the notify stage) and the CRM owner lookup (`leadrelay-providers`, in the enrich stage):
//!
//! - [`hubspot`]: CRM API v3 with a private app's bearer token: the search call and HubSpot's
//!   error shape.
//! - [`salesforce`]: the OAuth 2.0 client-credentials or JWT bearer grant with its cached
//!   access token, SOQL queries (with string literals escaped) and Salesforce's error shape.
//!
//! Adapter layer, below the channel and provider adapters (as `leadrelay-https` is): it calls
//! the CRM and knows nothing of deliveries, retries or enrichment budgets, which its callers
//! own.

use std::time::Duration;

pub mod hubspot;
pub mod salesforce;

/// Why a CRM call gave no answer. The detail never holds a token, and the prospect's e-mail
/// address is masked where the CRM quoted it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer: a timeout, a connection that failed, a body cut off.
    #[error("{detail}")]
    Unreachable { detail: String },
    /// The CRM answered with this status. Whether it may pass on a retry is the status's to
    /// say (408, 429 and 5xx may).
    #[error("answered {status}: {detail}")]
    Refused {
        status: u16,
        detail: String,
        /// `Retry-After`, in seconds.
        retry_after: Option<Duration>,
    },
    /// The configuration or the CRM's setup is wrong: no retry can fix it.
    #[error("{0}")]
    Misconfigured(String),
}

/// A `Retry-After` header in seconds.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A request that got no answer: reqwest's text can hold the URL (and the prospect's e-mail in
/// it), so only its kind is kept.
pub fn unreachable(e: &reqwest::Error) -> CallError {
    let detail = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    CallError::Unreachable {
        detail: detail.into(),
    }
}

/// Whether `url` may be called with a token: https, or plain http to a loopback host (a test's
/// stand-in), and no credentials or query of its own.
pub(crate) fn is_api_base(url: &url::Url) -> bool {
    let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
        || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    scheme_ok && url.username().is_empty() && url.password().is_none() && url.query().is_none()
}
