//! The latency the HTTP enrichment provider adds to one lead, through `Providers::enrich`,
//! against local servers: healthy, slow (answers after its budget), down (connection
//! refused), circuit open, and a cache hit (an in-memory cache: the store's own read time,
//! SQLite or DynamoDB, comes on top).
//!
//! `cargo bench -p leadrelay-shared --bench http_provider`. Prints figures; asserts no timing.

// Shared with the provider's tests, which use more of it.
#[allow(dead_code)]
#[path = "../tests/memory_store/mod.rs"]
mod memory_store;
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use leadrelay_providers::http_api::HttpApi;
use leadrelay_shared::config::HttpProviderConfig;
use leadrelay_shared::enrichment::{Budgeted, Providers};
use leadrelay_shared::ports::EnrichmentCache;
use memory_store::MemoryCache;
use support::{lead, local};
use tokio::runtime::Runtime;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The provider's budget in every case.
const BUDGET: Duration = Duration::from_millis(100);

fn providers(base: &str, extra: &str, cache: Arc<MemoryCache>) -> Providers {
    let section: HttpProviderConfig = toml::from_str(&format!(
        "name = \"firmo\"\nurl = \"{base}/find?domain={{domain}}\"\n{extra}"
    ))
    .expect("section");
    let store: Arc<dyn EnrichmentCache> = cache;
    let provider = HttpApi::new(&section, Some(store)).expect("provider");
    Providers::new(vec![Budgeted {
        provider: Arc::new(provider),
        budget: BUDGET,
    }])
}

async fn server(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

fn answer() -> serde_json::Value {
    serde_json::json!({
        "name": "NewCo",
        "metrics": {"employees": 120},
        "category": {"industry": "Software"},
        "geo": {"countryCode": "PT"}
    })
}

fn main() {
    let runtime = Runtime::new().expect("runtime");
    let lead = lead();
    let no_cache = "cache_ttl_hours = 0";

    let (healthy, slow, failing) = runtime.block_on(async {
        (
            server(ResponseTemplate::new(200).set_body_json(answer())).await,
            server(
                ResponseTemplate::new(200)
                    .set_body_json(answer())
                    .set_delay(BUDGET * 3),
            )
            .await,
            server(ResponseTemplate::new(500)).await,
        )
    });
    let refused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");

    let cases: Vec<(&str, Providers)> = vec![
        (
            "healthy",
            providers(&healthy.uri(), no_cache, Arc::default()),
        ),
        (
            "slow_beyond_budget",
            // The breaker kept shut, to measure the timeout itself.
            providers(
                &slow.uri(),
                &format!("{no_cache}\nbreaker_failures = 1000000000"),
                Arc::default(),
            ),
        ),
        (
            "down_connection_refused",
            providers(
                &format!("http://127.0.0.1:{refused_port}"),
                &format!("{no_cache}\nbreaker_failures = 1000000000"),
                Arc::default(),
            ),
        ),
        (
            "circuit_open",
            providers(
                &failing.uri(),
                &format!(
                    "{no_cache}\nretries = 0\nbreaker_failures = 1\nbreaker_cooldown_secs = 3600"
                ),
                Arc::default(),
            ),
        ),
        ("cache_hit", providers(&healthy.uri(), "", Arc::default())),
    ];
    // Open the breaker and fill the cache before measuring.
    for (name, providers) in &cases {
        if matches!(*name, "circuit_open" | "cache_hit") {
            runtime.block_on(providers.enrich(&lead, local(), Duration::from_secs(1)));
        }
    }

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .configure_from_args();
    let mut figures = Vec::new();
    for (name, providers) in &cases {
        criterion.bench_function(&format!("http_provider/{name}"), |b| {
            b.iter(|| {
                runtime.block_on(providers.enrich(
                    black_box(&lead),
                    local(),
                    Duration::from_secs(1),
                ))
            })
        });
        // One plain line per case for CI logs, with what the lead recorded.
        let iterations = if name.starts_with("slow") { 5 } else { 50 };
        let started = Instant::now();
        let mut outcome = String::new();
        for _ in 0..iterations {
            let (enrichment, _) =
                runtime.block_on(providers.enrich(&lead, local(), Duration::from_secs(1)));
            outcome = enrichment
                .providers
                .first()
                .map(|r| r.outcome.as_str().to_owned())
                .unwrap_or_default();
        }
        let per_lead = started.elapsed().as_secs_f64() * 1e3 / f64::from(iterations);
        figures.push(format!(
            "http_provider/{name}: {per_lead:.3} ms per lead ({outcome}; budget {} ms)",
            BUDGET.as_millis()
        ));
    }
    criterion.final_summary();
    for line in figures {
        println!("{line}");
    }
}
