//! Invariant 5: an enrichment outage slows nothing. The embedded pipeline with the HTTP
//! provider pointed at a local server that answers 503, or hangs: the lead still routes (by
//! the fallback rules), its alert is delivered, the lead records why enrichment failed, and
//! the time from webhook to alert stays bounded by the tier's enrichment budget.

use std::time::{Duration, Instant};

use crate::support::serial;
use crate::support::{eventually, example_config, sample, Edit, Server};
use leadrelay_shared::model::{EnrichmentStatus, ProviderOutcome};
use leadrelay_shared::ports::LeadStore;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The provider's own budget; the lead (tier 2) allows 2 s for all providers.
const PROVIDER_BUDGET_MS: u64 = 600;
const TIER_BUDGET: Duration = Duration::from_secs(2);

/// The example config with one HTTP provider at `api` (and its key from the environment
/// resolver the test support passes: none, so no key).
fn config_with_provider(api: &str) -> String {
    let mut text =
        example_config().edit("[enrichment]\n", "[enrichment]\nproviders = [\"firmo\"]\n");
    text.push_str(&format!(
        "\n[[enrichment.http]]\nname = \"firmo\"\nurl = \"{api}/v2/companies/find?domain={{domain}}\"\n\
         budget_ms = {PROVIDER_BUDGET_MS}\nretries = 1\n"
    ));
    text
}

/// A capture from a company the firmographics table does not know, so the provider is asked.
fn unknown_company_lead() -> Vec<u8> {
    String::from_utf8(sample("03-capture-enterprise.json"))
        .expect("utf-8 sample")
        .edit(
            "k.schmidt@umbrella-health.de",
            "k.schmidt@unlisted-clinic.de",
        )
        .into_bytes()
}

/// Sends the lead, waits for its alert; returns the lead id and the time it took.
async fn send_and_time_alert(server: &Server, event_id: &str) -> (String, Duration) {
    let started = Instant::now();
    let answer = server
        .send("website", event_id, &unknown_company_lead())
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    eventually(Duration::from_secs(15), "the alert", || async {
        (server.terminal.alerts_for(&lead_id) == 1).then_some(())
    })
    .await;
    (lead_id, started.elapsed())
}

async fn outage(api: &MockServer, what: &str, expected: ProviderOutcome) {
    let server = Server::start_with(&config_with_provider(&api.uri())).await;
    let (lead_id, took) = send_and_time_alert(&server, &format!("msg_{what}")).await;
    println!(
        "{what}: webhook to alert in {took:?} (provider budget {PROVIDER_BUDGET_MS} ms, \
         tier budget {TIER_BUDGET:?})"
    );

    let lead = server
        .db
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("stored");
    assert!(
        lead.assignment.is_some(),
        "routed despite the outage: {:?}",
        lead.state
    );
    // `leadrelay explain --lead` shows what the provider did and why.
    let assignment = lead.assignment.as_ref().expect("routed");
    let explained = leadrelay_shared::routing::explain::explain_text(&lead, assignment);
    assert!(
        explained.contains(&format!("  firmo {}: ", expected.as_str())),
        "{explained}"
    );
    let enrichment = lead.enrichment.expect("enriched");
    assert_ne!(enrichment.status, EnrichmentStatus::Complete);
    let report = enrichment
        .providers
        .iter()
        .find(|r| r.provider == "firmo")
        .expect("the provider's report");
    assert_eq!(report.outcome, expected, "{report:?}");
    assert!(!report.detail.is_empty(), "says why");
    assert!(
        server
            .terminal
            .text()
            .contains(&format!("firmo {}", expected.as_str())),
        "the alert says why fields are missing"
    );
    // Generous: the budget plus the pipeline's own polling and a loaded machine.
    assert!(took < TIER_BUDGET + Duration::from_secs(3), "{took:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_answering_503_slows_nothing() {
    let _heavy = serial::heavy().await; // a bound on the time from webhook to alert
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&api)
        .await;
    outage(&api, "503", ProviderOutcome::Failed).await;
    let tried = api.received_requests().await.map_or(0, |r| r.len());
    assert_eq!(tried, 2, "one attempt and one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_slows_nothing_beyond_its_budget() {
    let _heavy = serial::heavy().await; // a bound on the time from webhook to alert
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .mount(&api)
        .await;
    outage(&api, "hang", ProviderOutcome::TimedOut).await;
}
