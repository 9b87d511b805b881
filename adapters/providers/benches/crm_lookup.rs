//! The latency the CRM owner lookup adds to one lead, through `Providers::enrich`, against
//! local stand-ins of HubSpot's search API and a Salesforce org (token endpoint and SOQL
//! query), with the same lead enriched without any provider as the baseline, in the same run:
//! the contact found (one search), no contact but the company (two), nothing found, a cache
//! hit, Salesforce's Contact query (token cached), and a CRM slower than the budget.
//!
//! `cargo bench -p leadrelay-providers --bench crm_lookup`. Prints figures; asserts no timing.

// Shared with the provider's tests, which use more of it.
#[allow(dead_code)]
#[path = "../tests/memory_store/mod.rs"]
mod memory_store;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use leadrelay_providers::crm_lookup::CrmLookup;
use leadrelay_shared::config::Config;
use leadrelay_shared::enrichment::{Budgeted, Providers};
use leadrelay_shared::ports::EnrichmentCache;
use memory_store::MemoryCache;
use serde_json::json;
use support::{lead, local};
use tokio::runtime::Runtime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The lookup's budget in every case.
const BUDGET: Duration = Duration::from_millis(200);

/// A configuration with Dana (HubSpot owner 34, Salesforce user 0055e000001DanaWAA), the CRM
/// sections at `base`, and `[enrichment.crm]` for `source` with `cache_ttl`.
fn config(base: &str, source: &str, cache_ttl: &str) -> Config {
    let text = format!(
        r#"
[[sources]]
id = "website"
scheme = "standard_webhooks"
secrets = ["whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk="]

[enrichment]
providers = ["crm"]

[enrichment.crm]
source = "{source}"
cache_ttl = "{cache_ttl}"
breaker_failures = 1000000000

[[reps]]
id = "dana"
name = "Dana"
hubspot_owner_id = "34"
salesforce_user_id = "0055e000001DanaWAA"

[[queues]]
id = "inbox"
name = "Sales inbox"
manager = "dana"

[routing]
fallback_queue = "inbox"

[notify.hubspot]
token_env = "HUBSPOT_TOKEN"
base_url = "{base}"

[notify.salesforce]
login_url = "{base}"
auth = "client_credentials"
client_id_env = "SF_ID"
client_secret_env = "SF_SECRET"
"#
    );
    let env = |name: &str| Some(format!("{name}-value"));
    Config::parse(&text, "bench.toml", &env).expect("valid bench config")
}

fn crm(base: &str, source: &str, cache_ttl: &str) -> Providers {
    let config = config(base, source, cache_ttl);
    let section = config.enrichment.crm.as_ref().expect("section").get_ref();
    let store: Arc<dyn EnrichmentCache> = Arc::new(MemoryCache::default());
    let lookup = CrmLookup::new(&config, section, Some(store)).expect("lookup");
    Providers::new(vec![Budgeted {
        provider: Arc::new(lookup),
        budget: BUDGET,
    }])
}

fn results(owner: Option<&str>) -> serde_json::Value {
    match owner {
        Some(owner) => json!({"total": 1, "results": [
            {"id": "501", "properties": {"hubspot_owner_id": owner}}
        ]}),
        None => json!({"total": 0, "results": []}),
    }
}

/// A HubSpot stand-in: the contact search answers `contact`, the company search `company`,
/// each after `delay`.
async fn hubspot(contact: Option<&str>, company: Option<&str>, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    for (object, owner) in [("contacts", contact), ("companies", company)] {
        let mut reply = ResponseTemplate::new(200).set_body_json(results(owner));
        // Any delay, even zero, waits for the timer's next 1 ms tick: set it only when slow.
        if !delay.is_zero() {
            reply = reply.set_delay(delay);
        }
        Mock::given(method("POST"))
            .and(path(format!("/crm/v3/objects/{object}/search")))
            .respond_with(reply)
            .mount(&server)
            .await;
    }
    server
}

async fn salesforce() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "00D!token", "instance_url": server.uri(), "token_type": "Bearer"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/services/data/v62.0/query"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "totalSize": 1, "done": true, "records": [{
                "attributes": {"type": "Contact"}, "Id": "0035e00000AnaAAAAA",
                "OwnerId": "0055e000001DanaWAA", "AccountId": null, "Account": null
            }]
        })))
        .mount(&server)
        .await;
    server
}

fn main() {
    let runtime = Runtime::new().expect("runtime");
    let lead = lead();
    let quick = Duration::ZERO;
    let (contact, company, nothing, slow, org) = runtime.block_on(async {
        (
            hubspot(Some("34"), None, quick).await,
            hubspot(None, Some("34"), quick).await,
            hubspot(None, None, quick).await,
            hubspot(Some("34"), None, BUDGET * 3).await,
            salesforce().await,
        )
    });
    let cases: Vec<(&str, Providers, u32)> = vec![
        ("baseline_no_provider", Providers::default(), 2000),
        (
            "hubspot_contact_found",
            crm(&contact.uri(), "hubspot", "0s"),
            300,
        ),
        (
            "hubspot_company_found",
            crm(&company.uri(), "hubspot", "0s"),
            300,
        ),
        (
            "hubspot_nothing_found",
            crm(&nothing.uri(), "hubspot", "0s"),
            300,
        ),
        (
            "hubspot_cache_hit",
            crm(&contact.uri(), "hubspot", "10m"),
            2000,
        ),
        (
            "salesforce_contact_found",
            crm(&org.uri(), "salesforce", "0s"),
            300,
        ),
        ("slow_beyond_budget", crm(&slow.uri(), "hubspot", "0s"), 5),
    ];
    // Warm up: connections open, the Salesforce token and the cache filled.
    for (_, providers, _) in &cases {
        runtime.block_on(providers.enrich(&lead, local(), Duration::from_secs(1)));
    }
    let mut baseline = 0.0;
    for (name, providers, iterations) in &cases {
        let mut samples = Vec::with_capacity(*iterations as usize);
        let mut outcome = String::new();
        for _ in 0..*iterations {
            let started = Instant::now();
            let (enrichment, _) =
                runtime.block_on(providers.enrich(&lead, local(), Duration::from_secs(1)));
            samples.push(started.elapsed().as_secs_f64() * 1e3);
            outcome = enrichment
                .providers
                .first()
                .map(|r| format!("{}: {}", r.outcome.as_str(), r.detail))
                .unwrap_or_else(|| "no provider".into());
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let (p50, p99) = (at(0.5), at(0.99));
        if *name == "baseline_no_provider" {
            baseline = p50;
        }
        println!(
            "crm_lookup/{name}: p50 {p50:.3} ms, p99 {p99:.3} ms, added over baseline (p50) \
             {:.3} ms [{outcome}] (budget {} ms, {iterations} leads)",
            p50 - baseline,
            BUDGET.as_millis()
        );
    }
}
