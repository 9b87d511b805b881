//! leadrelay's HTTP API: one axum `Router`, served by the embedded server and (on AWS) by the
//! ingest and claim Lambdas, so the two can never answer differently. Adapter layer: it turns
//! requests into calls on the core's [`Pipeline`] and its answers into responses.

pub mod claim_http;
mod inbound_email;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::json;
use tracing::{error, warn};

use crate::claim_http::SlackResponder;
use leadrelay_shared::config::SourceConfig;
use leadrelay_shared::model::Lead;
use leadrelay_shared::ports::StoreError;
use leadrelay_shared::report::{Dimension, Hours};
use leadrelay_shared::signature::Delivery;
use leadrelay_shared::stages::report::{self, ReportError, ReportQuery};
use leadrelay_shared::stages::{IngestError, Intake, Pipeline};

/// Webhook bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Seconds a sender is asked to wait after a 503 (the store's busy timeout is 5 s).
const RETRY_AFTER_SECS: u64 = 5;

/// The address a request came from, put on each request by the transport that knows it (the
/// embedded server's socket; API Gateway's source IP on AWS). A source's `allow_ips` needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::IpAddr);

impl Peer {
    /// Puts on a request from API Gateway the client's address as API Gateway saw it (the
    /// event's request context, not a header the client can set).
    #[cfg(feature = "lambda")]
    pub fn from_api_gateway(mut request: lambda_http::Request) -> lambda_http::Request {
        use lambda_http::request::RequestContext;
        let peer = match request.extensions().get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(context)) => context
                .http
                .source_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok()),
            _ => None,
        };
        if let Some(ip) = peer {
            request.extensions_mut().insert(Peer(ip));
        }
        request
    }
}

/// Shared by the handlers: the pipeline, and whether the stage workers are running.
#[derive(Clone)]
pub struct Api {
    pub pipeline: Arc<Pipeline>,
    pub ready: Arc<AtomicBool>,
    /// Updates a claimed lead's Slack message in place.
    pub slack: SlackResponder,
}

impl Api {
    pub fn new(pipeline: Arc<Pipeline>, ready: Arc<AtomicBool>) -> Self {
        let slack = SlackResponder::new(&pipeline.config.claim.slack_response_url_prefix);
        Api {
            pipeline,
            ready,
            slack,
        }
    }

    /// For a server that mounts no claim route ([`intake_router`]): no Slack responder, so no
    /// HTTPS client is built at start, nor linked into the binary.
    pub fn for_intake(pipeline: Arc<Pipeline>, ready: Arc<AtomicBool>) -> Self {
        Api {
            pipeline,
            ready,
            slack: SlackResponder::none(),
        }
    }
}

/// Every endpoint: the intake's, claiming and inbound e-mail (the embedded server).
pub fn router(api: Api) -> Router {
    intake_routes()
        .merge(crate::claim_http::routes())
        .merge(crate::inbound_email::routes())
        .with_state(api)
}

/// Only the intake endpoints: webhooks, lead status, health and the reports (the ingest
/// Lambda, which API Gateway sends nothing else).
pub fn intake_router(api: Api) -> Router {
    intake_routes().with_state(api)
}

fn intake_routes() -> Router<Api> {
    Router::new()
        .route(
            "/webhooks/{source}",
            post(receive_webhook).head(webhook_probe),
        )
        .route("/leads/{id}", get(lead_status))
        .route("/healthz", get(health))
        .route("/reports/speed-to-lead", get(report_speed_to_lead))
        .route("/reports/audit", get(report_audit))
}

/// Only the claim endpoints and the inbound e-mail of prospect replies (the claim Lambda: it
/// holds the claim-link key that signs reply addresses, and sends to the notify queue).
pub fn claim_router(api: Api) -> Router {
    crate::claim_http::routes()
        .merge(crate::inbound_email::routes())
        .with_state(api)
}

/// The URL the platform posted to, as a scheme that signs `{url}` (HubSpot v3) signed it: the
/// source's configured `url` when set (behind a proxy that rewrites the host), else rebuilt from
/// the request: the scheme from the URI (API Gateway's), `X-Forwarded-Proto` (a TLS proxy's),
/// or `http` (the embedded server's own plain connection), and the `Host`.
fn signed_url(source: &SourceConfig, parts: &axum::http::request::Parts) -> String {
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    if let Some(url) = &source.url {
        return format!("{}{query}", url.split('?').next().unwrap_or(url));
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = match (parts.uri.scheme_str(), header("x-forwarded-proto")) {
        (Some(scheme), _) => scheme,
        (None, Some(forwarded)) if forwarded.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| header("host"))
        .unwrap_or("localhost");
    format!("{scheme}://{host}{}{query}", parts.uri.path())
}

fn error(status: StatusCode, message: &str, field: Option<&str>) -> Response {
    let body = match field {
        Some(field) => json!({"error": message, "field": field}),
        None => json!({"error": message}),
    };
    (status, Json(body)).into_response()
}

/// `HEAD /webhooks/{source}`: platforms check an endpoint answers before they send to it
/// (Intercom does when a webhook URL is saved). Reads nothing and changes nothing.
async fn webhook_probe(State(api): State<Api>, Path(source): Path<String>) -> StatusCode {
    if api.pipeline.config.source(&source).is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn receive_webhook(
    State(api): State<Api>,
    Path(source): Path<String>,
    request: Request,
) -> Response {
    // Unknown senders are answered before their body is read.
    if api.pipeline.config.source(&source).is_none() {
        return error(StatusCode::NOT_FOUND, "unknown source", None);
    }
    // Shed before reading the body: the cheapest answer is the one that does no work.
    if let Err(overloaded) = api.pipeline.admit() {
        // Per request at debug only: the store's sampler logs when shedding starts and stops.
        tracing::debug!(source = %source, waiting = overloaded.waiting, "shed with 429");
        return retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded, retry later",
            overloaded.retry_after.as_secs(),
        );
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "body over 256 KiB", None);
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(body, MAX_BODY_BYTES).await {
        BodyRead::Complete(bytes) => bytes,
        BodyRead::TooLarge => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "body over 256 KiB", None)
        }
        BodyRead::Unreadable(cause) => {
            warn!(source = %source, error = %cause, "could not read a webhook body");
            return error(
                StatusCode::BAD_REQUEST,
                "could not read the request body",
                None,
            );
        }
    };
    let Some(config) = api.pipeline.config.source(&source) else {
        return error(StatusCode::NOT_FOUND, "unknown source", None);
    };
    let url = signed_url(config, &parts);
    let delivery = Delivery {
        method: parts.method.as_str(),
        url: &url,
        headers: &parts.headers,
        body: &body,
        peer: parts.extensions.get::<Peer>().map(|peer| peer.0),
    };
    match api.pipeline.receive(&source, &delivery).await {
        Ok(Intake::Ignored { event }) => (
            StatusCode::OK,
            Json(json!({"status": "ignored", "event": event})),
        )
            .into_response(),
        // 200 whatever became of it, unmatched too: the event is kept, and a platform retries
        // anything else.
        Ok(Intake::Activity { status, lead_id }) => (
            StatusCode::OK,
            Json(json!({"status": status.as_str(), "lead_id": lead_id})),
        )
            .into_response(),
        Ok(Intake::Lead(accepted)) if accepted.duplicate => (
            StatusCode::OK,
            Json(json!({"lead_id": accepted.lead_id, "status": "duplicate"})),
        )
            .into_response(),
        Ok(Intake::Lead(accepted)) => (
            StatusCode::ACCEPTED,
            Json(json!({"lead_id": accepted.lead_id, "status": "accepted"})),
        )
            .into_response(),
        Err(IngestError::UnknownSource(_)) => error(StatusCode::NOT_FOUND, "unknown source", None),
        // `receive` answers an ignored event as `Intake::Ignored`; only `ingest` makes it an error.
        Err(IngestError::Ignored(event) | IngestError::NotALead(event)) => (
            StatusCode::OK,
            Json(json!({"status": "ignored", "event": event})),
        )
            .into_response(),
        Err(IngestError::Unauthorized(reason)) => {
            // Which check failed goes to the log only.
            warn!(source = %source, reason = %reason, "webhook signature refused");
            error(StatusCode::UNAUTHORIZED, "invalid signature", None)
        }
        Err(IngestError::Invalid(rejection)) => error(
            StatusCode::BAD_REQUEST,
            &rejection.error,
            rejection.field.as_deref(),
        ),
        Err(failure @ (IngestError::Store(_) | IngestError::Queue(_) | IngestError::Busy(_))) => {
            error!(source = %source, error = %failure, "could not store the webhook");
            // Nothing was accepted (a full disk, a locked store): the sender keeps the event
            // and tries again; Retry-After tells it when.
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable, retry later",
                RETRY_AFTER_SECS,
            )
        }
    }
}

/// A refusal the sender should send again after `seconds` (429, 503): the JSON error and
/// `Retry-After`.
fn retry_later(status: StatusCode, message: &str, seconds: u64) -> Response {
    let mut response = error(status, message, None);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    response
}

/// What reading a request body came to.
enum BodyRead {
    Complete(Vec<u8>),
    /// More than the limit arrived: only a body really over it is refused as too large.
    TooLarge,
    /// The body broke off or was malformed (a bad chunk size, fewer bytes than its
    /// `Content-Length`): the client's fault, not a size problem.
    Unreadable(axum::Error),
}

/// Reads `body` up to `limit` bytes, telling a body over the limit from one that could not be
/// read (`axum::body::to_bytes` reports both as one error).
async fn read_body(body: Body, limit: usize) -> BodyRead {
    let mut chunks = body.into_data_stream();
    let mut collected = Vec::new();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) if collected.len() + chunk.len() > limit => return BodyRead::TooLarge,
            Ok(chunk) => collected.extend_from_slice(&chunk),
            Err(cause) => return BodyRead::Unreadable(cause),
        }
    }
    BodyRead::Complete(collected)
}

/// The lead's state, owner, tier and every timestamp; no prospect data.
pub fn lead_summary(lead: &Lead) -> serde_json::Value {
    json!({
        "lead_id": lead.id,
        "state": lead.state,
        "source": lead.source,
        "event": lead.event(),
        "incomplete": lead.incomplete,
        "flags": lead.flags.iter().map(|f| &f.code).collect::<Vec<_>>(),
        "tier": lead.qualification.as_ref().map(|q| q.tier),
        "score": lead.qualification.as_ref().map(|q| q.score),
        "sla_minutes": lead.qualification.as_ref().map(|q| q.sla_minutes),
        "owner": lead.assignment.as_ref().map(|a| &a.owner),
        "owner_name": lead.assignment.as_ref().map(|a| &a.owner_name),
        "rule": lead.assignment.as_ref().map(|a| &a.rule),
        "pool": lead.assignment.as_ref().and_then(|a| a.pool.as_ref()),
        "alert_held_until": lead.assignment.as_ref().and_then(|a| a.held_until),
        "merged_into": lead.merged_into,
        "claimed_by": lead.claim.as_ref().map(|c| &c.rep),
        "claim_allowed": lead.claim.as_ref().and_then(|c| c.allowed.as_ref()),
        "escalation_level": lead.escalation_level(),
        "after_hours": lead.assignment.as_ref()
            .and_then(|a| a.trace.as_ref())
            .and_then(|t| t.after_hours.as_ref())
            .map(|n| &n.policy),
        "timeline": lead.timeline,
        "close_reason": lead.close_reason,
        "activities": lead.activities.iter().map(|a| json!({
            "kind": a.kind.name(), "at": a.at, "via": a.via, "automated": a.automated,
        })).collect::<Vec<_>>(),
        "misroutes": lead.misroutes.iter().map(|m| json!({
            "rep": m.rep, "rule": m.rule, "reason": m.reason, "at": m.at,
        })).collect::<Vec<_>>(),
        "last_failure": lead.last_failure,
        "trace_id": lead.trace_id,
    })
}

async fn lead_status(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.pipeline.store.get_lead(&id).await {
        Ok(Some(lead)) => Json(lead_summary(&lead)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such lead", None),
        // Asking again will not help: say what is wrong with this one lead.
        Err(StoreError::Undecodable { lead_id, reason }) => {
            error!(lead_id = %lead_id, %reason, "quarantined lead asked for");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({
                    "error": "lead is quarantined: its stored form cannot be read by this version",
                    "lead_id": lead_id,
                    "state": "quarantined",
                })),
            )
                .into_response()
        }
        Err(e) => {
            error!(lead_id = %id, error = %e, "could not read lead");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable",
                None,
            )
        }
    }
}

async fn health(State(api): State<Api>) -> Response {
    if api.ready.load(Ordering::Acquire) {
        Json(json!({"status": "ok"})).into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "stages not running", None)
    }
}

/// Why a report request is answered without a report: `None` when it may have one. No token
/// configured hides the endpoints (404); a missing or wrong bearer token is 401.
fn report_refusal(api: &Api, headers: &axum::http::HeaderMap) -> Option<Response> {
    let reports = &api.pipeline.config.reports;
    if reports.api_token.is_none() {
        return Some(error(StatusCode::NOT_FOUND, "not found", None));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if reports.api_token_matches(token) => None,
        _ => {
            let mut refused = error(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required",
                None,
            );
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            Some(refused)
        }
    }
}

fn report_failure(failure: ReportError) -> Response {
    match failure {
        ReportError::Window(window) => {
            error(StatusCode::BAD_REQUEST, &window.to_string(), Some("since"))
        }
        ReportError::Store(store) => {
            error!(error = %store, "could not read the report's leads");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable",
                None,
            )
        }
    }
}

/// `GET /reports/speed-to-lead?since=7d&until=...&by=rep&hours=wall`: the report as JSON.
async fn report_speed_to_lead(
    State(api): State<Api>,
    headers: axum::http::HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = report_refusal(&api, &headers) {
        return refused;
    }
    let by = params.get("by").map(String::as_str).unwrap_or("rep");
    let Some(by) = Dimension::parse(by) else {
        return error(
            StatusCode::BAD_REQUEST,
            "by must be one of rep, team, tier, source, rule, page",
            Some("by"),
        );
    };
    let hours = params.get("hours").map(String::as_str).unwrap_or("wall");
    let Some(hours) = Hours::parse(hours) else {
        return error(
            StatusCode::BAD_REQUEST,
            "hours must be wall or working",
            Some("hours"),
        );
    };
    let query = ReportQuery {
        since: params.get("since").cloned().unwrap_or_else(|| "7d".into()),
        until: params.get("until").cloned(),
        by,
        hours,
    };
    let pipeline = &api.pipeline;
    let now = pipeline.clock.now();
    match report::speed_to_lead(pipeline.store.as_ref(), &pipeline.config, &query, now).await {
        Ok(figures) => Json(figures).into_response(),
        Err(failure) => report_failure(failure),
    }
}

/// `GET /reports/audit?since=30d&until=...`: the handoff audit as JSON.
async fn report_audit(
    State(api): State<Api>,
    headers: axum::http::HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = report_refusal(&api, &headers) {
        return refused;
    }
    let since = params.get("since").map(String::as_str).unwrap_or("30d");
    let until = params.get("until").map(String::as_str);
    let pipeline = &api.pipeline;
    match report::audit(pipeline.store.as_ref(), since, until, pipeline.clock.now()).await {
        Ok(audit) => Json(audit).into_response(),
        Err(failure) => report_failure(failure),
    }
}
