//! Enrichment providers in the embedded pipeline: a transcript fetched from the URL the
//! chatbot sent (from a host the source allows) reaches the alert and the qualification, and
//! the visitor's country comes from the test geolocation database.

use crate::support::{example_config, root, sample, Edit, Server};
use leadrelay_shared::model::ProviderOutcome;
use leadrelay_shared::ports::LeadStore;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The example config with both providers on, the website source allowed to fetch
/// transcripts from the loopback stand-in.
fn config() -> String {
    let database = root().join("adapters/geoip/tests/fixtures/geoip-test.mmdb");
    let text = example_config()
        .edit_first(
            "tolerance_secs = 300",
            "tolerance_secs = 300\ntranscript_hosts = [\"127.0.0.1\"]",
        )
        .edit_first(
            "[enrichment]\n",
            "[enrichment]\nproviders = [\"transcript\", \"geoip\"]\n",
        );
    format!(
        "{text}\n\n[enrichment.transcript]\nbudget_ms = 2000\n\n\
         [enrichment.geoip]\ndatabase = {:?}\n",
        database.display().to_string()
    )
}

#[tokio::test]
async fn a_transcript_fetched_from_an_allowed_url_reaches_the_alert_and_its_topics_count() {
    let chatbot = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/transcripts/conv-12377"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"messages": [
                {"sender": "visitor", "content": "Looking at the Team plan for about 40 people."},
                {"sender": "bot", "content": "Happy to help. Anything else you need?"},
                {"sender": "visitor", "content": "Are you SOC 2 compliant? We need SAML."}
            ]}"#,
            "application/json",
        ))
        .expect(1)
        .mount(&chatbot)
        .await;

    let server = Server::start_with(&config()).await;
    // The sample with its inline transcript replaced by a link, and a trigger question that
    // says nothing about security: only the fetched transcript does.
    let mut event: Value =
        serde_json::from_slice(&sample("02-capture-emea-pricing.json")).expect("json");
    let object = event.as_object_mut().expect("object");
    object.remove("transcript");
    object.insert(
        "conversation_transcript_url".into(),
        format!("{}/transcripts/conv-12377", chatbot.uri()).into(),
    );
    object.insert(
        "trigger_query".into(),
        "Can we get a quote for 40 seats?".into(),
    );
    let body = serde_json::to_vec(&event).expect("json");

    let answer = server.send("website", "msg_transcript", &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;

    let alert = server.terminal.text();
    assert!(
        alert.contains("visitor: Are you SOC 2 compliant? We need SAML."),
        "{alert}"
    );
    assert!(alert.contains("Transcript (last 3 of 3 turns)"), "{alert}");
    assert!(alert.contains("asked about security"), "{alert}");

    let lead = server
        .db
        .get_lead(&lead_id)
        .await
        .expect("store")
        .expect("lead");
    assert_eq!(lead.capture.transcript.len(), 3);
    let enrichment = lead.enrichment.expect("enriched");
    let outcomes: Vec<(&str, ProviderOutcome)> = enrichment
        .providers
        .iter()
        .map(|r| (r.provider.as_str(), r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("transcript", ProviderOutcome::Answered),
            ("geoip", ProviderOutcome::Answered)
        ]
    );
    // 198.51.100.23 is in the test database's DE range.
    assert_eq!(enrichment.visitor_country.as_deref(), Some("DE"));
    server.stop().await;
}

#[tokio::test]
async fn a_transcript_url_on_another_host_is_not_fetched_and_the_lead_still_alerts() {
    let server = Server::start_with(&config()).await;
    let mut event: Value =
        serde_json::from_slice(&sample("02-capture-emea-pricing.json")).expect("json");
    let object = event.as_object_mut().expect("object");
    object.remove("transcript");
    object.insert(
        "conversation_transcript_url".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
    );
    let body = serde_json::to_vec(&event).expect("json");
    let answer = server.send("website", "msg_ssrf", &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;

    let lead = server
        .db
        .get_lead(&lead_id)
        .await
        .expect("store")
        .expect("lead");
    let enrichment = lead.enrichment.expect("enriched");
    let report = &enrichment.providers[0];
    assert_eq!(report.outcome, ProviderOutcome::Failed);
    assert!(
        report
            .detail
            .contains("\"169.254.169.254\" is not in the transcript_hosts"),
        "{}",
        report.detail
    );
    assert!(lead.capture.transcript.is_empty());
    server.stop().await;
}
