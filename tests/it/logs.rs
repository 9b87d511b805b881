//! The structured logs of `leadrelay serve`: one line per stage per lead with its ids, and
//! never a secret, a webhook URL, the prospect's e-mail or the transcript.

use std::time::Duration;

use crate::support::process::{serve, ServeFiles};
use crate::support::{
    eventually, example_config, parse_config, sample, signed_webhook, with_retry_schedule, Edit,
};
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn one_json_line_per_stage_and_nothing_secret() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&slack)
        .await;
    let hook = format!("{}/services/TSECRET/BSECRET/hooksecret", slack.uri());
    let config_text = example_config().edit(
        "email = \"erin@yourco.example\"",
        &format!("email = \"erin@yourco.example\"\nslack_webhook_url = \"{hook}\""),
    );
    let config = parse_config(&config_text);
    let files = ServeFiles::new(&config_text);
    let log = &files.log;
    let mut child = serve(&files)
        .env("LEADRELAY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .spawn()
        .await;
    let base = &child.base;
    let http = crate::support::http_client();

    let body = sample("01-fallback-named-account.json"); // named account: erin
    let answer: Value = signed_webhook(&http, base, &config, "website", "msg_logs", &body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let lead_id = answer["lead_id"].as_str().expect("lead id").to_owned();
    // And one forged request, whose refusal is logged with its reason.
    let forged = http
        .post(format!("{base}/webhooks/website"))
        .header("webhook-id", "msg_forged")
        .header(
            "webhook-timestamp",
            jiff::Timestamp::now().as_second().to_string(),
        )
        .header("webhook-signature", "v1,Zm9yZ2Vk")
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(forged.status().as_u16(), 401);

    eventually(Duration::from_secs(10), "the notify log line", || async {
        let text = std::fs::read_to_string(log).ok()?;
        text.contains("\"notified\"").then_some(())
    })
    .await;
    child.kill();

    let text = std::fs::read_to_string(log).expect("log");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    for stage in ["ingest", "enrich", "route", "notify"] {
        let for_stage: Vec<&Value> = lines
            .iter()
            .filter(|l| l["stage"] == stage && l["lead_id"] == lead_id.as_str())
            .collect();
        assert_eq!(for_stage.len(), 1, "{stage}: {text}");
        assert!(for_stage[0]["trace_id"]
            .as_str()
            .is_some_and(|t| !t.is_empty()));
    }
    assert!(text.contains("webhook signature refused"), "{text}");
    for secret in [
        "whsec_",
        "bGVhZHJlbGF5LWRlbW8tc2VjcmV0LWNoYW5nZS1tZSE",
        "hooksecret",
        "TSECRET",
        "jane.doe@globex-logistics.com",
        "1.2M shipment records",
        "batch processing for over 1 million records",
    ] {
        assert!(
            !text.contains(secret),
            "the log contains {secret:?}:\n{text}"
        );
    }
}

#[tokio::test]
async fn dead_lettering_logs_an_error_naming_the_lead_the_stage_and_the_channel() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&slack)
        .await;
    let hook = format!("{}/services/TSECRET/BSECRET/hooksecret", slack.uri());
    // Three quick attempts, one request each.
    let config_text = with_retry_schedule(
        &example_config()
            .edit(
                "email = \"bruno@yourco.example\"",
                &format!("email = \"bruno@yourco.example\"\nslack_webhook_url = \"{hook}\""),
            )
            .edit(
                "http_timeout_ms = 5000",
                "http_timeout_ms = 5000\nmax_attempts = 1",
            ),
        &["10ms", "10ms"],
        5,
    );
    let config = parse_config(&config_text);
    let files = ServeFiles::new(&config_text);
    let log = &files.log;
    let mut child = serve(&files)
        .env("LEADRELAY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .spawn()
        .await;
    let http = crate::support::http_client();
    let body = sample("02-capture-emea-pricing.json"); // bruno
    let answer: Value = signed_webhook(&http, &child.base, &config, "website", "msg_dead", &body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let lead_id = answer["lead_id"].as_str().expect("lead id").to_owned();

    let line = eventually(
        Duration::from_secs(20),
        "the dead-letter log line",
        || async {
            let text = std::fs::read_to_string(log).ok()?;
            text.lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|l| l["level"] == "ERROR" && l["lead_id"] == lead_id.as_str())
        },
    )
    .await;
    child.kill();
    assert_eq!(line["stage"], "notify", "{line}");
    assert_eq!(line["channel"], "slack", "{line}");
    assert_eq!(line["receive_count"], 3, "{line}");
    assert!(
        line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("dead-lettered")),
        "{line}"
    );
    let text = std::fs::read_to_string(log).expect("log");
    for secret in ["hooksecret", "TSECRET", "tom.baker@sales.initech.co.uk"] {
        assert!(
            !text.contains(secret),
            "the log contains {secret:?}:\n{text}"
        );
    }
}
