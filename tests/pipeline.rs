//! The stages through their queues: idempotence under redelivery, Slack delivery, and
//! dead-lettering after repeated failure.

use std::time::Duration;

use leadrelay::embedded::Embedded;
use leadrelay_shared::model::{Envelope, Stage};
use leadrelay_shared::ports::{DeadLetters, LeadStore, Queue};
use leadrelay_tests::{eventually, example_config, parse_config, sample, Server, Terminal};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const LEAD: &str = "02-capture-emea-pricing.json"; // routes to rep bruno

/// The example config with a Slack webhook for bruno and fast retries.
fn config_with_slack(url: &str, max_receives: u32) -> String {
    example_config()
        .replace(
            "email = \"bruno@yourco.example\"",
            &format!("email = \"bruno@yourco.example\"\nslack_webhook_url = \"{url}\""),
        )
        .replace(
            "max_receives = 5",
            &format!("max_receives = {max_receives}"),
        )
        .replace("retry_delay_ms = 200", "retry_delay_ms = 10")
}

async fn slack_stand_in(status: u16) -> MockServer {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/XXXX"))
        .respond_with(
            ResponseTemplate::new(status).set_body_string(if status == 200 {
                "ok"
            } else {
                "internal_error"
            }),
        )
        .mount(&slack)
        .await;
    slack
}

fn hook(slack: &MockServer) -> String {
    format!("{}/services/T000/B000/XXXX", slack.uri())
}

#[tokio::test]
async fn the_same_envelope_delivered_twice_gives_one_owner_and_one_alert() {
    let slack = slack_stand_in(200).await;
    let terminal = Terminal::default();
    let dir = tempfile::tempdir().expect("temp dir");
    // No workers: this test is the worker, so it can deliver each message twice on purpose.
    let embedded = Embedded::open(
        parse_config(&config_with_slack(&hook(&slack), 5)),
        dir.path(),
        Box::new(terminal.clone()),
    )
    .expect("open");
    let (db, pipeline) = (embedded.db.clone(), embedded.pipeline.clone());

    let headers = leadrelay::cli::signed_headers(
        pipeline.config.source("website").expect("source"),
        "msg_twice",
        &sample(LEAD),
    )
    .expect("sign");
    let mut header_map = axum_headers(&headers);
    header_map.insert("content-type", "application/json".parse().expect("ascii"));
    let accepted = pipeline
        .ingest("website", &header_map, &sample(LEAD))
        .await
        .expect("accepted");

    for stage in Stage::ALL {
        // An extra copy of the envelope, as an at-least-once queue may deliver, worked at the
        // same time as the original, as two workers would.
        db.send(stage, &Envelope::new(&accepted.lead_id, stage, "trace"))
            .await
            .expect("send copy");
        let messages = db.receive(stage, 10).await.expect("receive");
        assert!(messages.len() >= 2, "{stage}: original and copy");
        let results =
            futures::future::join_all(messages.iter().map(|m| pipeline.consume(stage, m))).await;
        assert!(results.iter().all(Result::is_ok), "{stage}: {results:?}");
    }
    // Every copy is forwarded; drain them all so each has been worked.
    for stage in Stage::ALL {
        loop {
            let messages = db.receive(stage, 10).await.expect("receive");
            if messages.is_empty() {
                break;
            }
            for message in &messages {
                pipeline.consume(stage, message).await.expect("settled");
            }
        }
    }

    let lead = db
        .get_lead(&accepted.lead_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(lead.state.as_str(), "notified");
    assert_eq!(
        lead.assignment.map(|a| a.owner.id().to_owned()),
        Some("bruno".into())
    );
    assert_eq!(
        db.counter("open_leads:rep:bruno").await.expect("counter"),
        1
    );
    assert_eq!(terminal.alerts_for(&accepted.lead_id), 1);
    assert_eq!(slack.received_requests().await.map(|r| r.len()), Some(1));
}

fn axum_headers(pairs: &[(String, String)]) -> axum::http::HeaderMap {
    let mut map = axum::http::HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    map
}

#[tokio::test]
async fn slack_gets_an_escaped_block_kit_alert() {
    let slack = slack_stand_in(200).await;
    let server = Server::start_with(&config_with_slack(&hook(&slack), 5)).await;
    let mut event: Value = serde_json::from_slice(&sample(LEAD)).expect("json");
    event["trigger_query"] = "<!channel> urgent & <https://evil.example|click here>".into();
    let body = serde_json::to_vec(&event).expect("json");

    let answer = server.send("website", "msg_slack", &body).await;
    assert_eq!(answer.status, 202);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;

    let requests = slack.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1);
    let payload: Value = serde_json::from_slice(&requests[0].body).expect("json");
    let text = payload.to_string();
    assert!(
        text.contains("&lt;!channel&gt; urgent &amp; &lt;https://evil.example|click here&gt;"),
        "{text}"
    );
    assert!(!text.contains("<!channel>"));
    assert!(payload["blocks"].as_array().is_some_and(|b| b.len() >= 3));
    assert!(text.contains(&lead_id));
    server.stop().await;
}

#[tokio::test]
async fn a_channel_that_keeps_failing_sends_the_message_to_the_dead_letter_queue() {
    let slack = slack_stand_in(500).await;
    // One attempt per receive, so that each receive is one request (retries inside a
    // delivery are tested in tests/channels.rs).
    let config = config_with_slack(&hook(&slack), 3).replace(
        "http_timeout_ms = 5000",
        "http_timeout_ms = 5000\nmax_attempts = 1",
    );
    let server = Server::start_with(&config).await;
    let answer = server.send("website", "msg_dlq", &sample(LEAD)).await;
    assert_eq!(answer.status, 202);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();

    let dead = eventually(Duration::from_secs(10), "a dead letter", || async {
        let dead = server
            .db
            .list(Stage::Notify, 100, Duration::ZERO)
            .await
            .ok()?;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].lead_id.as_deref(), Some(lead_id.as_str()));
    assert_eq!(dead[0].receive_count, 3);
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("slack answered 500"), "{error}");
    assert!(
        !error.contains(&slack.uri()),
        "the webhook URL is a secret: {error}"
    );

    // The lead shows where it is stuck and why; the terminal alert went out exactly once.
    let lead = server.lead(&lead_id).await.body;
    assert_eq!(lead["state"], "routed");
    assert_eq!(lead["last_failure"]["stage"], "notify");
    assert_eq!(server.terminal.alerts_for(&lead_id), 1);
    assert_eq!(slack.received_requests().await.map(|r| r.len()), Some(3));

    // Slack recovers; the on-call engineer replays: the lead is notified, once per channel.
    slack.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&slack)
        .await;
    let filter = leadrelay::dlq::Filter {
        lead_id: Some(lead_id.clone()),
        ..Default::default()
    };
    let mut out = Vec::new();
    assert_eq!(
        leadrelay::dlq::replay(&server.db, &filter, false, 100, &mut out)
            .await
            .expect("replay"),
        1
    );
    server.wait_for_state(&lead_id, "notified").await;
    assert_eq!(slack.received_requests().await.map(|r| r.len()), Some(1));
    assert_eq!(server.terminal.alerts_for(&lead_id), 1);
    assert_eq!(server.counts().await.dead_letters, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_lead_in_a_queue_alerts_the_queue_channel_and_its_manager() {
    // The partial capture lands in the SDR queue, managed by maria.
    let slack = MockServer::start().await;
    for hook in ["/services/T000/B000/QUEUE", "/services/T000/B000/MARIA"] {
        Mock::given(method("POST"))
            .and(path(hook))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .expect(1)
            .mount(&slack)
            .await;
    }
    let config = example_config()
        .replace(
            "id = \"sdr\"\nname = \"SDR queue\"",
            &format!(
                "id = \"sdr\"\nname = \"SDR queue\"\nslack_webhook_url = \"{}/services/T000/B000/QUEUE\"",
                slack.uri()
            ),
        )
        .replace(
            "email = \"maria@yourco.example\"",
            &format!(
                "email = \"maria@yourco.example\"\nslack_webhook_url = \"{}/services/T000/B000/MARIA\"",
                slack.uri()
            ),
        );
    let server = Server::start_with(&config).await;
    let answer = server
        .send("website", "msg_queue", &sample("04-partial-free-mail.json"))
        .await;
    assert_eq!(answer.status, 202);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;
    let lead = server.lead(&lead_id).await.body;
    assert_eq!(lead["owner"]["kind"], "queue", "{lead}");
    assert_eq!(lead["owner"]["id"], "sdr", "{lead}");
    // Each hook got exactly one message (checked by `expect(1)` when the server is dropped).
    let requests = slack.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2);
    server.stop().await;
}
