//! Test support: the embedded app in this process ([`Server`], [`EmbeddedApp`]) or as the
//! real binary ([`process`]), the stage code worked by hand ([`ManualPipeline`]), fixture
//! configuration ([`fixture`]), signed requests, and polling with a deadline (never fixed
//! sleeps).

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadrelay::cli::signed_headers;
use leadrelay_shared::config::Config;

mod app;
pub mod aws;
pub mod browser;
mod clock;
pub mod console;
pub mod fixture;
mod manual;
pub mod platform;
pub mod process;
// The cold-start bench (tests/benches) reads what the tests here do not.
#[allow(dead_code)]
pub mod runtime_api;
pub mod serial;
pub mod smtp;

pub use app::{EmbeddedApp, Server};
pub use clock::HandClock;
pub use fixture::{
    commented_example, example_config, shipped_example_config, with_retry_schedule, Edit,
};
pub use manual::{open_store, ManualPipeline};

/// A human's `kind` on lead `id` at `when`, as a tool would record it: one of each kind per
/// lead (the key is the lead and the kind).
pub fn human_activity(
    id: &str,
    kind: leadrelay_shared::model::ActivityKind,
    when: jiff::Timestamp,
) -> leadrelay_shared::stages::activity::ActivityEvent {
    leadrelay_shared::stages::activity::ActivityEvent {
        lead_id: Some(id.to_owned()),
        email: None,
        activity: leadrelay_shared::model::Activity {
            kind,
            at: when,
            received_at: when,
            by: None,
            via: "cli".into(),
            automated: false,
            key: format!("{id}-{}", kind.name()),
            detail: None,
        },
    }
}

/// A client for the tests' own requests, built as the adapters build theirs.
pub fn http_client() -> reqwest::Client {
    leadrelay_https::client(|builder| builder).expect("HTTP client")
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Tom Baker of Initech UK (340 employees, GB; EMEA's territory), asking for a quote: a lead
/// as the enrich stage leaves it, for tests that drive the route and notify stages directly.
pub fn initech_lead(
    id: &str,
    email: &str,
    captured_at: jiff::Timestamp,
) -> leadrelay_shared::model::Lead {
    use leadrelay_shared::model::{CaptureEvent, Enrichment, EventKind, Lead, LeadState};
    let capture = CaptureEvent {
        event: Some(EventKind::LeadCapture),
        timestamp: Some(captured_at),
        captured_email: Some(email.into()),
        name: Some("Tom Baker".into()),
        trigger_query: Some("Can we get a quote?".into()),
        ..CaptureEvent::default()
    };
    let mut lead = Lead::captured(
        id.into(),
        format!("trace-{id}"),
        "website".into(),
        format!("evt-{id}"),
        capture,
        Vec::new(),
        captured_at,
    );
    lead.state = LeadState::Enriched;
    lead.enrichment = Some(Enrichment {
        domain: Some("initech.co.uk".into()),
        company: Some("Initech UK".into()),
        employees: Some(340),
        country: Some("GB".into()),
        ..Enrichment::default()
    });
    lead
}

/// Works lead `id` (stored, enriched) through the route and notify stages now, as their
/// queues would deliver it: how the report, digest and dashboard tests alert a lead on a held
/// clock.
pub async fn route_and_notify(pipeline: &leadrelay_shared::stages::Pipeline, id: &str) {
    use leadrelay_shared::model::{Envelope, Stage};
    for stage in [Stage::Route, Stage::Notify] {
        let envelope = Envelope::new(id, stage, &format!("trace-{id}")).to_json();
        pipeline
            .handle(stage, &envelope)
            .await
            .unwrap_or_else(|e| panic!("{stage} of {id}: {e}"));
    }
}

/// A sample webhook body from `events/webhooks/`.
pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(root().join("events/webhooks").join(name)).expect("sample event")
}

pub fn parse_config(text: &str) -> Config {
    Config::parse(text, "test.toml", &|_| None).expect("test config is valid")
}

/// Parses with these environment variables visible to `*_env` keys.
pub fn parse_config_with_env(text: &str, env: &[(&str, &str)]) -> Config {
    Config::parse(text, "test.toml", &|name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .expect("test config is valid")
}

/// The headers that sign `body` for `source` in `config` (its first secret) under
/// `event_id`, and the JSON content type: a webhook as the pipeline's `ingest` receives it.
pub fn signed_header_map(
    config: &Config,
    source: &str,
    event_id: &str,
    body: &[u8],
) -> axum::http::HeaderMap {
    let source = config.source(source).expect("configured source");
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in signed_headers(source, event_id, body).expect("sign") {
        headers.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    headers.insert("content-type", "application/json".parse().expect("ascii"));
    headers
}

/// `POST {base}/webhooks/{source}` of `body` as JSON, signed for `source` in `config` (its
/// first secret) under `event_id`; the caller sends it.
pub fn signed_webhook(
    http: &reqwest::Client,
    base: &str,
    config: &Config,
    source: &str,
    event_id: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let keys = config.source(source).expect("configured source");
    let mut request = http
        .post(format!("{base}/webhooks/{source}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in signed_headers(keys, event_id, body).expect("sign") {
        request = request.header(name, value);
    }
    request
}

/// Polls `check` every 10 ms until it yields a value or `deadline` passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Collects what the terminal notifier prints.
#[derive(Clone, Default)]
pub struct Terminal(Arc<Mutex<Vec<u8>>>);

impl Write for Terminal {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Terminal {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }

    /// How many alerts mention this lead id.
    pub fn alerts_for(&self, lead_id: &str) -> usize {
        self.text()
            .matches(&format!("Lead id: {lead_id}\n"))
            .count()
    }
}
