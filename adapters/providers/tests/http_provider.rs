//! The HTTP enrichment provider against real local HTTP servers (wiremock): what it sends,
//! retries within the budget, no-match, the circuit breaker, the per-domain cache, and that
//! the API key never reaches a report.

mod memory_store;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use leadrelay_providers::http_api::HttpApi;
use leadrelay_shared::config::HttpProviderConfig;
use leadrelay_shared::enrichment::{Budgeted, Providers};
use leadrelay_shared::model::{
    CaptureEvent, Enrichment, EnrichmentStatus, EventKind, Lead, ProviderOutcome, ProviderReport,
};
use leadrelay_shared::ports::EnrichmentCache;
use memory_store::MemoryCache;
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk_live_do-not-leak-4f2a9c";
const LEAD_BUDGET: Duration = Duration::from_secs(5);

fn lead() -> Lead {
    let capture = CaptureEvent {
        event: Some(EventKind::LeadCapture),
        captured_email: Some("ana@newco.io".into()),
        ..CaptureEvent::default()
    };
    Lead::captured(
        "lead-1".into(),
        "trace-1".into(),
        "website".into(),
        "evt-1".into(),
        capture,
        Vec::new(),
        Timestamp::UNIX_EPOCH,
    )
}

/// What the local step knows of a lead at `domain`: nothing but the domain.
fn local(domain: &str) -> Enrichment {
    let mut enrichment = Enrichment {
        domain: Some(domain.into()),
        ..Enrichment::default()
    };
    enrichment.note_missing();
    enrichment
}

fn section(server: &MockServer, extra: &str) -> HttpProviderConfig {
    let mut section: HttpProviderConfig = toml::from_str(&format!(
        "name = \"firmo\"\nurl = \"{}/v2/companies/find?domain={{domain}}\"\n{extra}",
        server.uri()
    ))
    .expect("section parses");
    section.api_key = Some(SecretString::from(KEY));
    assert!(section.problems().is_ok(), "{:?}", section.problems());
    section
}

struct Setup {
    providers: Providers,
    cache: Arc<MemoryCache>,
    budget: Duration,
}

fn setup(section: &HttpProviderConfig, budget_ms: u64) -> Setup {
    let cache = Arc::new(MemoryCache::default());
    let store: Arc<dyn EnrichmentCache> = cache.clone();
    let provider = HttpApi::new(section, Some(store)).expect("provider");
    let budget = Duration::from_millis(budget_ms);
    Setup {
        providers: Providers::new(vec![Budgeted {
            provider: Arc::new(provider),
            budget,
        }]),
        cache,
        budget,
    }
}

impl Setup {
    async fn enrich(&self, domain: &str) -> Enrichment {
        self.providers
            .enrich(&lead(), local(domain), LEAD_BUDGET)
            .await
            .0
    }
}

fn report(enrichment: &Enrichment) -> &ProviderReport {
    enrichment.providers.first().expect("one report")
}

fn clearbit_answer() -> serde_json::Value {
    json!({
        "name": "NewCo",
        "domain": "newco.io",
        "metrics": {"employees": 120},
        "category": {"industry": "Software"},
        "geo": {"countryCode": "pt"}
    })
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

#[tokio::test]
async fn an_answer_fills_the_fields_and_the_bearer_token_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/companies/find"))
        .and(query_param("domain", "newco.io"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(clearbit_answer()))
        .expect(1)
        .mount(&server)
        .await;
    let setup = setup(&section(&server, ""), 1000);
    let enrichment = setup.enrich("newco.io").await;
    assert_eq!(enrichment.company.as_deref(), Some("NewCo"));
    assert_eq!(enrichment.employees, Some(120));
    assert_eq!(enrichment.industry.as_deref(), Some("Software"));
    assert_eq!(enrichment.country.as_deref(), Some("PT"), "normalised");
    assert_eq!(enrichment.status, EnrichmentStatus::Complete);
    assert_eq!(report(&enrichment).outcome, ProviderOutcome::Answered);
    assert_eq!(
        report(&enrichment).detail,
        "company, employees, industry, country"
    );
    assert!(enrichment.sources.contains(&"firmo".to_owned()));
}

#[tokio::test]
async fn pointers_read_another_apis_shape_and_invalid_countries_are_dropped() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "organization": {"name": "NewCo", "estimated_num_employees": 45, "country": "Portugal"}
        })))
        .mount(&server)
        .await;
    let setup = setup(
        &section(
            &server,
            "[fields]\ncompany = \"/organization/name\"\nemployees = \"/organization/estimated_num_employees\"\ncountry = \"/organization/country\"",
        ),
        1000,
    );
    let enrichment = setup.enrich("newco.io").await;
    assert_eq!(enrichment.company.as_deref(), Some("NewCo"));
    assert_eq!(enrichment.employees, Some(45));
    assert_eq!(enrichment.country, None, "not an ISO code: dropped");
}

#[tokio::test]
async fn a_404_is_no_match_and_is_cached_as_one() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let setup = setup(&section(&server, ""), 1000);
    let first = setup.enrich("newco.io").await;
    assert_eq!(report(&first).outcome, ProviderOutcome::NoMatch);
    assert_eq!(first.status, EnrichmentStatus::Complete);
    let second = setup.enrich("newco.io").await;
    assert_eq!(report(&second).outcome, ProviderOutcome::NoMatch);
    assert_eq!(
        requests(&server).await,
        1,
        "the second answer came from the cache"
    );
}

#[tokio::test]
async fn a_503_then_a_200_is_retried_within_the_budget() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(clearbit_answer()))
        .with_priority(2)
        .mount(&server)
        .await;
    let setup = setup(&section(&server, ""), 2000);
    let enrichment = setup.enrich("newco.io").await;
    assert_eq!(report(&enrichment).outcome, ProviderOutcome::Answered);
    assert_eq!(enrichment.company.as_deref(), Some("NewCo"));
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn retries_stop_at_the_configured_count() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let setup = setup(&section(&server, "retries = 2"), 3000);
    let enrichment = setup.enrich("newco.io").await;
    assert_eq!(report(&enrichment).outcome, ProviderOutcome::Failed);
    assert_eq!(report(&enrichment).detail, "answered 502 (3 attempts)");
    assert_eq!(enrichment.status, EnrichmentStatus::Failed);
    assert_eq!(requests(&server).await, 3);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_budget_is_not_waited_for() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let setup = setup(&section(&server, ""), 500);
    let started = Instant::now();
    let enrichment = setup.enrich("newco.io").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(report(&enrichment).outcome, ProviderOutcome::Failed);
    assert_eq!(report(&enrichment).detail, "answered 429");
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn other_client_errors_fail_without_a_retry() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_string("bad key"))
        .mount(&server)
        .await;
    let setup = setup(&section(&server, "retries = 3"), 1000);
    let enrichment = setup.enrich("newco.io").await;
    assert_eq!(report(&enrichment).outcome, ProviderOutcome::Failed);
    assert_eq!(report(&enrichment).detail, "answered 401");
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn a_malformed_body_is_a_failure_that_says_so() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .mount(&server)
        .await;
    let setup = setup(&section(&server, ""), 1000);
    let enrichment = setup.enrich("newco.io").await;
    assert_eq!(report(&enrichment).outcome, ProviderOutcome::Failed);
    assert!(
        report(&enrichment)
            .detail
            .starts_with("answered 200 with a body that is not JSON"),
        "{}",
        report(&enrichment).detail
    );
    assert_eq!(setup.cache.entries(), 0, "a failure is not cached");
}

#[tokio::test]
async fn a_hanging_server_costs_the_budget_and_no_more() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(clearbit_answer())
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&server)
        .await;
    let setup = setup(&section(&server, ""), 400);
    let started = Instant::now();
    let enrichment = setup.enrich("newco.io").await;
    let took = started.elapsed();
    println!("hanging server: enrichment returned after {took:?} (budget 400 ms)");
    assert!(took < setup.budget + Duration::from_secs(2), "{took:?}");
    assert_eq!(report(&enrichment).outcome, ProviderOutcome::TimedOut);
    assert_eq!(enrichment.status, EnrichmentStatus::Failed);
}

#[tokio::test]
async fn a_server_that_is_down_fails_fast_after_its_retries() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut down: HttpProviderConfig = toml::from_str(&format!(
        "name = \"firmo\"\nurl = \"http://127.0.0.1:{port}/find?domain={{domain}}\""
    ))
    .expect("parses");
    down.api_key = Some(SecretString::from(KEY));
    let setup = setup(&down, 1000);
    let enrichment = setup.enrich("newco.io").await;
    assert_eq!(report(&enrichment).outcome, ProviderOutcome::Failed);
    assert_eq!(report(&enrichment).detail, "could not connect (2 attempts)");
}

#[tokio::test]
async fn a_failing_server_opens_the_breaker_and_then_nothing_reaches_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let setup = setup(
        &section(
            &server,
            "retries = 0\nbreaker_failures = 3\nbreaker_cooldown_secs = 60",
        ),
        1000,
    );
    for domain in ["a.io", "b.io", "c.io"] {
        let enrichment = setup.enrich(domain).await;
        assert_eq!(report(&enrichment).outcome, ProviderOutcome::Failed);
    }
    assert_eq!(requests(&server).await, 3);
    let refused = setup.enrich("d.io").await;
    assert_eq!(report(&refused).outcome, ProviderOutcome::CircuitOpen);
    assert!(
        report(&refused).detail.starts_with("circuit open"),
        "{}",
        report(&refused).detail
    );
    assert_eq!(refused.status, EnrichmentStatus::Failed);
    assert_eq!(requests(&server).await, 3, "no request while open");
}

#[tokio::test]
async fn after_the_cooldown_one_trial_closes_the_breaker_again() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(clearbit_answer()))
        .with_priority(2)
        .mount(&server)
        .await;
    let setup = setup(
        &section(
            &server,
            "retries = 0\nbreaker_failures = 1\nbreaker_cooldown_secs = 1",
        ),
        1000,
    );
    assert_eq!(
        report(&setup.enrich("a.io").await).outcome,
        ProviderOutcome::Failed
    );
    assert_eq!(
        report(&setup.enrich("b.io").await).outcome,
        ProviderOutcome::CircuitOpen
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        report(&setup.enrich("c.io").await).outcome,
        ProviderOutcome::Answered
    );
    assert_eq!(
        report(&setup.enrich("d.io").await).outcome,
        ProviderOutcome::Answered
    );
}

#[tokio::test]
async fn a_cache_hit_makes_no_request_even_with_the_breaker_open() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(clearbit_answer()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(2)
        .mount(&server)
        .await;
    let setup = setup(&section(&server, "retries = 0\nbreaker_failures = 1"), 1000);
    assert_eq!(
        setup.enrich("newco.io").await.company.as_deref(),
        Some("NewCo")
    );
    assert_eq!(setup.cache.entries(), 1);
    // Open the breaker with another domain.
    assert_eq!(
        report(&setup.enrich("other.io").await).outcome,
        ProviderOutcome::Failed
    );
    let cached = setup.enrich("newco.io").await;
    assert_eq!(report(&cached).outcome, ProviderOutcome::Answered);
    assert_eq!(cached.employees, Some(120));
    assert_eq!(requests(&server).await, 2, "the cache answered");
}

#[tokio::test]
async fn a_broken_cache_never_fails_enrichment() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(clearbit_answer()))
        .mount(&server)
        .await;
    let setup = setup(&section(&server, ""), 1000);
    setup.cache.broken.store(true, Ordering::SeqCst);
    let enrichment = setup.enrich("newco.io").await;
    assert_eq!(report(&enrichment).outcome, ProviderOutcome::Answered);
    assert_eq!(enrichment.status, EnrichmentStatus::Complete);
}

#[tokio::test]
async fn nothing_to_look_up_is_skipped_without_a_request() {
    let server = MockServer::start().await;
    let setup = setup(&section(&server, ""), 1000);
    let free_mail = Enrichment {
        domain: Some("gmail.com".into()),
        free_mail: true,
        ..Enrichment::default()
    };
    let (skipped, _) = setup
        .providers
        .enrich(&lead(), free_mail, LEAD_BUDGET)
        .await;
    assert_eq!(report(&skipped).outcome, ProviderOutcome::Skipped);
    assert_eq!(report(&skipped).detail, "no company domain");

    let known = Enrichment {
        company: Some("NewCo".into()),
        employees: Some(10),
        industry: Some("Software".into()),
        country: Some("PT".into()),
        ..local("newco.io")
    };
    let (skipped, _) = setup.providers.enrich(&lead(), known, LEAD_BUDGET).await;
    assert_eq!(report(&skipped).outcome, ProviderOutcome::Skipped);
    assert_eq!(report(&skipped).detail, "nothing it can fill is missing");
    assert_eq!(requests(&server).await, 0);
}

#[tokio::test]
async fn the_api_key_never_appears_in_a_report() {
    let server = MockServer::start().await;
    // Every way of failing: an echo of the request, a server error, a refusal, a hang.
    for (status, domain) in [(500, "a.io"), (401, "b.io"), (200, "c.io")] {
        Mock::given(method("GET"))
            .and(query_param("domain", domain))
            .respond_with(
                ResponseTemplate::new(status).set_body_string(format!("Bearer {KEY} rejected")),
            )
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(query_param("domain", "d.io"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let setup = setup(&section(&server, "breaker_failures = 100"), 300);
    let mut texts = Vec::new();
    for domain in ["a.io", "b.io", "c.io", "d.io"] {
        let enrichment = setup.enrich(domain).await;
        texts.push(format!("{enrichment:?}"));
        texts.push(serde_json::to_string(&enrichment).expect("serialises"));
    }
    for text in texts {
        assert!(!text.contains(KEY), "the key leaked: {text}");
    }
}
