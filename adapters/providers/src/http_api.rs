//! A generic firmographics API over HTTP, shaped like Clearbit's or Apollo's company lookup by
//! domain: `GET <url with {domain}>` with a bearer token, JSON back, fields taken by JSON
//! pointer.
//!
//! Within its budget it retries what may pass (connect errors, timeouts, 429, 5xx) with a
//! short jittered backoff; a 404 is "no match". Answers (a no-match too) are cached per domain
//! in the lead store; a circuit breaker stops calling an API that keeps failing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::breaker::Breaker;
use leadrelay_shared::config::{EnrichmentConfig, FieldPointers, HttpProviderConfig};
use leadrelay_shared::enrichment::{
    Budgeted, EnrichmentProvider, Findings, LookupRequest, ProviderError, SetupError,
};
use leadrelay_shared::ports::{Clock, EnrichmentCache, SystemClock};

/// Builds the HTTP provider called `name`, if one is configured.
pub fn from_config(
    config: &EnrichmentConfig,
    name: &str,
    store: &Arc<dyn EnrichmentCache>,
) -> Result<Option<Budgeted>, SetupError> {
    let Some(section) = config.http_provider(name) else {
        return Ok(None);
    };
    let budget = Duration::from_millis(section.budget_ms.unwrap_or(config.provider_budget_ms));
    let provider = HttpApi::new(section, Some(store.clone()))?;
    Ok(Some(Budgeted {
        provider: Arc::new(provider),
        budget,
    }))
}

/// The provider.
pub struct HttpApi {
    name: String,
    url: String,
    api_key: Option<SecretString>,
    retries: u32,
    cache_ttl: Duration,
    fields: FieldPointers,
    client: reqwest::Client,
    breaker: Breaker,
    store: Option<Arc<dyn EnrichmentCache>>,
    clock: Arc<dyn Clock>,
}

/// What is cached per domain: the fields the answer held (all empty for a 404).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cached {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    employees: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    industry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_owner: Option<String>,
}

impl From<Cached> for Findings {
    fn from(c: Cached) -> Self {
        Findings {
            company: c.company,
            employees: c.employees,
            industry: c.industry,
            country: c.country,
            account_owner: c.account_owner,
            ..Findings::default()
        }
    }
}

impl From<&Findings> for Cached {
    fn from(f: &Findings) -> Self {
        Cached {
            company: f.company.clone(),
            employees: f.employees,
            industry: f.industry.clone(),
            country: f.country.clone(),
            account_owner: f.account_owner.clone(),
        }
    }
}

/// How one attempt ended, when it did not give an answer.
enum Attempt {
    /// Worth another try; wait at least this long first (a Retry-After).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    TimedOut,
    /// Not worth another try.
    Fail(String),
}

/// Shortest and longest pause between attempts, before jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// The most a cache read or write may take out of the budget, so a slow store never costs the
/// lookup itself.
const CACHE_SHARE: u32 = 4;

impl HttpApi {
    pub fn new(
        section: &HttpProviderConfig,
        store: Option<Arc<dyn EnrichmentCache>>,
    ) -> Result<Self, SetupError> {
        let client = leadrelay_https::client(|builder| {
            builder
                .user_agent(concat!("leadrelay/", env!("CARGO_PKG_VERSION")))
                // The URL carries the lead's domain: a redirect is an answer, not followed.
                .redirect(reqwest::redirect::Policy::none())
        })
        .map_err(|e| SetupError {
            provider: section.name.clone(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(HttpApi {
            name: section.name.clone(),
            url: section.url.clone(),
            api_key: section.api_key.clone(),
            retries: section.retries,
            cache_ttl: Duration::from_secs(section.cache_ttl_hours.saturating_mul(3600)),
            fields: section.fields.clone(),
            client,
            breaker: Breaker::new(
                section.breaker_failures,
                Duration::from_secs(section.breaker_cooldown_secs),
            ),
            store,
            clock: Arc::new(SystemClock),
        })
    }

    /// The wall clock that dates cache entries (tests hold it still).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn cache_key(&self, domain: &str) -> String {
        format!("enrichment:{}:{domain}", self.name)
    }

    async fn cached(&self, domain: &str, budget: Duration) -> Option<Findings> {
        let store = self.store.as_ref().filter(|_| !self.cache_ttl.is_zero())?;
        let key = self.cache_key(domain);
        let read = store.cached(&key, self.clock.now());
        match tokio::time::timeout(budget / CACHE_SHARE, read).await {
            Ok(Ok(Some(text))) => match serde_json::from_str::<Cached>(&text) {
                Ok(cached) => Some(cached.into()),
                Err(e) => {
                    tracing::warn!(provider = %self.name, error = %e, "unreadable cache entry ignored");
                    None
                }
            },
            Ok(Ok(None)) => None,
            // A cache that fails never fails enrichment: ask the API instead.
            Ok(Err(e)) => {
                tracing::warn!(provider = %self.name, error = %e, "enrichment cache read failed");
                None
            }
            Err(_) => {
                tracing::warn!(provider = %self.name, "enrichment cache read timed out");
                None
            }
        }
    }

    /// Caches an answer, in what is left of the budget (at most its share): the answer is
    /// returned whether or not the write made it.
    async fn remember(&self, domain: &str, findings: &Findings, budget: Duration, left: Duration) {
        let Some(store) = self.store.as_ref().filter(|_| !self.cache_ttl.is_zero()) else {
            return;
        };
        let allowed = (budget / CACHE_SHARE).min(left);
        if allowed.is_zero() {
            tracing::warn!(provider = %self.name, "no budget left to cache the answer");
            return;
        }
        let Ok(text) = serde_json::to_string(&Cached::from(findings)) else {
            return;
        };
        let expires_at = self
            .clock
            .now()
            .checked_add(self.cache_ttl)
            .unwrap_or(Timestamp::MAX);
        let key = self.cache_key(domain);
        let write = store.cache(&key, &text, expires_at);
        match tokio::time::timeout(allowed, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(provider = %self.name, error = %e, "enrichment cache write failed")
            }
            Err(_) => tracing::warn!(provider = %self.name, "enrichment cache write timed out"),
        }
    }

    /// One request, within `left`.
    async fn attempt(&self, url: &str, left: Duration) -> Result<Findings, Attempt> {
        let mut request = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(left);
        if let Some(key) = &self.api_key {
            // bearer_auth marks the header sensitive, so it never shows in Debug output.
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(|e| classify(&e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Findings::default());
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(Attempt::Retry {
                why: format!("answered {}", status.as_u16()),
                after,
            });
        }
        if !status.is_success() {
            return Err(Attempt::Fail(format!("answered {}", status.as_u16())));
        }
        let body = response.bytes().await.map_err(|e| classify(&e))?;
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            Attempt::Fail(format!(
                "answered {} with a body that is not JSON ({e})",
                status.as_u16()
            ))
        })?;
        if !json.is_object() {
            return Err(Attempt::Fail(format!(
                "answered {} with JSON that is not an object",
                status.as_u16()
            )));
        }
        Ok(self.extract(&json))
    }

    /// Our fields from an answer; a value of the wrong kind is dropped, not guessed at.
    fn extract(&self, json: &Value) -> Findings {
        let at = |pointer: &Option<String>| pointer.as_deref().and_then(|p| json.pointer(p));
        let text = |pointer: &Option<String>| {
            at(pointer)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Findings {
            company: text(&self.fields.company),
            employees: at(&self.fields.employees).and_then(employees),
            industry: text(&self.fields.industry),
            country: text(&self.fields.country).and_then(|c| country(&c)),
            account_owner: text(&self.fields.account_owner),
            ..Findings::default()
        }
    }

    /// Whether the lead still lacks a field this provider can fill.
    fn fills_something(&self, request: &LookupRequest<'_>) -> bool {
        let e = request.enrichment;
        let f = &self.fields;
        (f.company.is_some() && e.company.is_none())
            || (f.employees.is_some() && e.employees.is_none())
            || (f.industry.is_some() && e.industry.is_none())
            || (f.country.is_some() && e.country.is_none())
            || (f.account_owner.is_some() && e.account_owner.is_none())
    }
}

/// A transport error, described without the URL (it carries the prospect's domain) and
/// without headers.
fn classify(error: &reqwest::Error) -> Attempt {
    if error.is_timeout() {
        Attempt::TimedOut
    } else if error.is_connect() {
        Attempt::Retry {
            why: "could not connect".into(),
            after: None,
        }
    } else if error.is_decode() || error.is_body() {
        Attempt::Retry {
            why: "the answer was cut off".into(),
            after: None,
        }
    } else {
        Attempt::Retry {
            why: format!("request failed: {}", describe(error)),
            after: None,
        }
    }
}

/// The error and its causes, the URL left out.
fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = String::new();
    let mut cause = error.source();
    while let Some(c) = cause {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c.to_string());
        cause = c.source();
    }
    if text.is_empty() {
        "unknown error".into()
    } else {
        text
    }
}

fn employees(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().replace(',', "").parse().ok(),
        _ => None,
    }
}

/// ISO 3166-1 alpha-2, upper case; an alpha-3 code is converted; anything else is dropped.
fn country(code: &str) -> Option<String> {
    let code = code.trim();
    let found = match code.len() {
        2 => isocountry::CountryCode::for_alpha2_caseless(code).ok(),
        3 => isocountry::CountryCode::for_alpha3_caseless(code).ok(),
        _ => None,
    };
    found.map(|c| c.alpha2().to_owned())
}

/// `{domain}` filled in, every byte outside RFC 3986's unreserved set percent-encoded.
fn fill_template(template: &str, domain: &str) -> String {
    let mut encoded = String::with_capacity(domain.len());
    for byte in domain.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    template.replace("{domain}", &encoded)
}

/// A pause before attempt `n` (1 for the first retry): doubling from the base, capped, with
/// half of it random so that many containers do not retry in step.
fn backoff(n: u32) -> Duration {
    let full = BACKOFF_BASE
        .saturating_mul(1 << n.saturating_sub(1).min(8))
        .min(BACKOFF_MAX);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl EnrichmentProvider for HttpApi {
    fn name(&self) -> &str {
        &self.name
    }

    fn wanted(&self, request: &LookupRequest<'_>) -> Result<(), String> {
        if request.company_domain().is_none() {
            return Err("no company domain".into());
        }
        if !self.fills_something(request) {
            return Err("nothing it can fill is missing".into());
        }
        Ok(())
    }

    async fn lookup(
        &self,
        request: &LookupRequest<'_>,
        budget: Duration,
    ) -> Result<Findings, ProviderError> {
        let started = Instant::now();
        let Some(domain) = request.company_domain() else {
            return Ok(Findings::default());
        };
        if let Some(findings) = self.cached(domain, budget).await {
            return Ok(findings);
        }
        let permit = self.breaker.permit(Instant::now()).map_err(|refused| {
            let wait = refused.until.saturating_duration_since(Instant::now());
            ProviderError::CircuitOpen(format!("{} s", wait.as_secs().max(1)))
        })?;
        let url = fill_template(&self.url, domain);
        let deadline = started + budget;
        let mut attempts = 0u32;
        let failure = loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break ProviderError::TimedOut(millis(budget));
            }
            let why = match self.attempt(&url, left).await {
                Ok(findings) => {
                    permit.succeeded();
                    // Half of what is left at most, so the answer is back before the caller's
                    // own timeout on the same budget.
                    let left = deadline.saturating_duration_since(Instant::now()) / 2;
                    self.remember(domain, &findings, budget, left).await;
                    return Ok(findings);
                }
                Err(Attempt::TimedOut) => break ProviderError::TimedOut(millis(budget)),
                Err(Attempt::Fail(why)) => break ProviderError::Failed(why),
                Err(Attempt::Retry { why, after }) => (why, after),
            };
            let (why, after) = why;
            let tried = if attempts == 1 {
                why
            } else {
                format!("{why} ({attempts} attempts)")
            };
            if attempts > self.retries {
                break ProviderError::Failed(tried);
            }
            let pause = after.unwrap_or_else(|| backoff(attempts));
            let left = deadline.saturating_duration_since(Instant::now());
            // A pause that leaves no time for the request is not worth taking.
            if pause >= left {
                break ProviderError::Failed(tried);
            }
            tokio::time::sleep(pause).await;
        };
        permit.failed(Instant::now());
        Err(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_redirect_is_an_answer_and_not_followed() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/find"))
            .respond_with(
                ResponseTemplate::new(307)
                    .insert_header("location", format!("{}/elsewhere", server.uri())),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/elsewhere"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"name": "Acme"})),
            )
            .expect(0)
            .mount(&server)
            .await;
        let section: HttpProviderConfig = toml::from_str(&format!(
            "name = \"crm\"\nurl = \"{}/find?domain={{domain}}\"\nretries = 0\n[fields]\ncompany = \"/name\"",
            server.uri()
        ))
        .expect("parses");
        let api = HttpApi::new(&section, None).expect("builds");
        let lead: leadrelay_shared::model::Lead = serde_json::from_value(serde_json::json!({
            "id": "l", "source": "website", "event_id": "e", "trace_id": "t", "state": "captured",
            "capture": {"event": "lead_capture", "captured_email": "jo@acme.io"},
            "incomplete": false, "flags": [], "timeline": {}
        }))
        .expect("lead");
        let enrichment = leadrelay_shared::model::Enrichment {
            domain: Some("acme.io".into()),
            ..leadrelay_shared::model::Enrichment::default()
        };
        let request = LookupRequest {
            lead: &lead,
            enrichment: &enrichment,
        };
        let outcome = api.lookup(&request, Duration::from_secs(5)).await;
        match outcome {
            Err(ProviderError::Failed(why)) => assert!(why.contains("307"), "{why}"),
            other => panic!("the redirect was followed: {other:?}"),
        }
    }

    #[test]
    fn the_domain_is_percent_encoded_into_the_template() {
        assert_eq!(
            fill_template(
                "https://api.example/v2/companies/find?domain={domain}",
                "acme.io"
            ),
            "https://api.example/v2/companies/find?domain=acme.io"
        );
        assert_eq!(
            fill_template("http://x/{domain}", "a b/c?d&e"),
            "http://x/a%20b%2Fc%3Fd%26e"
        );
    }

    #[test]
    fn countries_are_upper_case_alpha_2_or_dropped() {
        assert_eq!(country("pt").as_deref(), Some("PT"));
        assert_eq!(country("DEU").as_deref(), Some("DE"));
        assert_eq!(country("Portugal"), None);
        assert_eq!(country("XX"), None);
    }

    #[test]
    fn employees_are_whole_non_negative_numbers() {
        assert_eq!(employees(&serde_json::json!(120)), Some(120));
        assert_eq!(employees(&serde_json::json!(120.0)), Some(120));
        assert_eq!(employees(&serde_json::json!("1,200")), Some(1200));
        assert_eq!(employees(&serde_json::json!(-3)), None);
        assert_eq!(employees(&serde_json::json!(1.5)), None);
        assert_eq!(employees(&serde_json::json!(null)), None);
    }

    #[test]
    fn backoff_stays_small_and_jittered() {
        for n in 1..20 {
            let pause = backoff(n);
            assert!(pause <= BACKOFF_MAX, "{pause:?}");
            assert!(pause >= BACKOFF_BASE / 2, "{pause:?}");
        }
    }
}
