//! The conversation a webhook only names by id, fetched from the platform's API
//! (`[sources.conversation]`): Intercom's `conversation.user.created`, signed as Intercom signs
//! it, against a local stand-in for `api.intercom.io` that checks the exact request. The turns
//! reach the lead; a hanging API, or one that refuses the token, costs the lead its
//! enrichment budget at most and never stops it; the token is in no log and no stored lead.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use leadrelay_shared::model::{Lead, ProviderOutcome, ProviderReport};
use leadrelay_shared::ports::LeadStore;
use serde_json::{json, Value};
use sha1::Sha1;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::process::{serve, ServeFiles};
use crate::support::{eventually, example_config, root, Edit, Server};

const SECRET: &str = "intercom-client-secret-0123";
const TOKEN: &str = "dG9rOmludGVyY29tLWFjY2Vzcy10b2tlbi0wMTIz";
/// The conversation `intercom-conversation.user.created.json` names (`data.item.id`).
const CONVERSATION: &str = "21321941764";

/// The example config with an Intercom source whose conversation API is the stand-in at
/// `api`, and the transcript provider on with `budget_ms`.
fn config(api: &str, budget_ms: u64) -> String {
    let source = format!(
        r#"
[[sources]]
id = "intercom"
preset = "intercom"
secrets = ["{SECRET}"]
[sources.conversation]
url = "{api}/conversations/{{conversation_id}}"
token_env = "INTERCOM_ACCESS_TOKEN"
"#
    );
    let text = example_config()
        .edit_first(
            "# replay_window_hours = 168\n",
            &format!("# replay_window_hours = 168\n{source}"),
        )
        .edit_first(
            "[enrichment]\n",
            "[enrichment]\nproviders = [\"transcript\"]\n",
        );
    format!("{text}\n\n[enrichment.transcript]\nbudget_ms = {budget_ms}\n")
}

/// The fixture with its notification and conversation ids replaced (each lead its own), and
/// the `X-Hub-Signature` Intercom would send for it.
fn webhook(notification: &str, conversation: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let fixture = std::fs::read(
        root().join("tests/it/fixtures/platforms/intercom-conversation.user.created.json"),
    )
    .expect("fixture");
    let mut event: Value = serde_json::from_slice(&fixture).expect("json");
    event["id"] = notification.into();
    event["data"]["item"]["id"] = conversation.into();
    let body = serde_json::to_vec(&event).expect("json");
    let mut mac = <Hmac<Sha1>>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(&body);
    let signature = hex::encode(mac.finalize().into_bytes());
    let headers = vec![("X-Hub-Signature".to_owned(), format!("sha1={signature}"))];
    (body, headers)
}

/// Intercom's answer to "Retrieve a conversation": the opening message in `source`, the rest
/// in `conversation_parts`, bodies in HTML.
fn conversation_answer(id: &str) -> Value {
    json!({
        "type": "conversation",
        "id": id,
        "source": {
            "type": "conversation", "id": "331494375", "delivered_as": "customer_initiated",
            "body": "<p>Hi, do you offer volume pricing for 50 seats?</p>",
            "author": {"type": "lead", "id": "5c9553cb27e377f24eed49f7", "name": "Jane Prospect"}
        },
        "conversation_parts": {
            "type": "conversation_part.list",
            "conversation_parts": [
                {"type": "conversation_part", "part_type": "assignment", "body": null,
                 "created_at": 1553290200, "author": {"type": "bot", "id": "1"}},
                {"type": "conversation_part", "part_type": "comment", "created_at": 1553290260,
                 "body": "<p>We do &amp; it starts at 25 seats. Do you need SSO?</p>",
                 "author": {"type": "admin", "id": "814860"}},
                {"type": "conversation_part", "part_type": "comment", "created_at": 1553290320,
                 "body": "<p>Yes, SAML with Okta.</p>",
                 "author": {"type": "lead", "id": "5c9553cb27e377f24eed49f7"}}
            ],
            "total_count": 3
        }
    })
}

/// The stand-in answers only the exact request Intercom documents.
fn intercom_request(conversation: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path(format!("/conversations/{conversation}")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("intercom-version", "2.11"))
        .and(header("accept", "application/json"))
}

async fn stored(server: &Server, lead_id: &str) -> Lead {
    server
        .db
        .get_lead(lead_id)
        .await
        .expect("store")
        .expect("lead")
}

fn transcript_report(lead: &Lead) -> ProviderReport {
    let enrichment = lead.enrichment.as_ref().expect("enriched");
    enrichment
        .providers
        .iter()
        .find(|r| r.provider == "transcript")
        .cloned()
        .expect("the transcript provider reported")
}

/// Posts the webhook and waits for the lead to be routed and notified; returns the lead and
/// the time from the post to `notified`.
async fn notified(server: &Server, notification: &str, conversation: &str) -> (Lead, Duration) {
    let (body, headers) = webhook(notification, conversation);
    let started = Instant::now();
    let answer = server.post("intercom", &headers, &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;
    let took = started.elapsed();
    (stored(server, &lead_id).await, took)
}

#[tokio::test]
async fn an_intercom_conversation_webhook_gets_the_turns_from_the_api() {
    let api = MockServer::start().await;
    intercom_request(CONVERSATION)
        .respond_with(ResponseTemplate::new(200).set_body_json(conversation_answer(CONVERSATION)))
        .expect(1)
        .mount(&api)
        .await;
    let server = Server::start_with_env(
        &config(&api.uri(), 2000),
        &[("INTERCOM_ACCESS_TOKEN", TOKEN)],
    )
    .await;

    let (lead, took) = notified(&server, "notif_turns", CONVERSATION).await;
    assert_eq!(lead.capture.conversation_id.as_deref(), Some(CONVERSATION));
    let turns: Vec<(&str, &str)> = lead
        .capture
        .transcript
        .iter()
        .map(|t| (t.role.as_str(), t.text.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            ("lead", "Hi, do you offer volume pricing for 50 seats?"),
            ("admin", "We do & it starts at 25 seats. Do you need SSO?"),
            ("lead", "Yes, SAML with Okta."),
        ]
    );
    assert!(lead.capture.transcript[1].at.is_some(), "created_at read");
    let report = transcript_report(&lead);
    assert_eq!(
        (report.outcome, report.detail.as_str()),
        (ProviderOutcome::Answered, "transcript")
    );
    let alert = server.terminal.text();
    assert!(alert.contains("lead: Yes, SAML with Okta."), "{alert}");
    println!(
        "conversation fetch against the local stand-in: {} ms (provider report); \
         webhook to notified: {} ms",
        report.elapsed_ms,
        took.as_millis()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_hanging_api_costs_the_lead_its_budget_and_the_lead_still_routes_and_alerts() {
    let api = MockServer::start().await;
    intercom_request("111")
        .respond_with(ResponseTemplate::new(200).set_body_json(conversation_answer("111")))
        .mount(&api)
        .await;
    intercom_request("222")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(conversation_answer("222"))
                .set_delay(Duration::from_secs(60)),
        )
        .mount(&api)
        .await;
    let server = Server::start_with_env(
        &config(&api.uri(), 300),
        &[("INTERCOM_ACCESS_TOKEN", TOKEN)],
    )
    .await;

    let (answered, answered_took) = notified(&server, "notif_quick", "111").await;
    let (hung, hung_took) = notified(&server, "notif_hung", "222").await;

    assert_eq!(answered.capture.transcript.len(), 3);
    let report = transcript_report(&hung);
    assert_eq!(report.outcome, ProviderOutcome::TimedOut, "{report:?}");
    assert!(hung.capture.transcript.is_empty());
    assert!(hung.assignment.is_some(), "routed");
    assert_eq!(server.terminal.alerts_for(&hung.id), 1, "alerted");
    println!(
        "webhook to notified: {} ms with the API answering, {} ms with it hanging \
         (budget 300 ms; the hung fetch took {} ms)",
        answered_took.as_millis(),
        hung_took.as_millis(),
        report.elapsed_ms
    );
    server.stop().await;
}

#[tokio::test]
async fn a_refused_token_is_recorded_and_the_lead_goes_on() {
    let api = MockServer::start().await;
    intercom_request(CONVERSATION)
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "type": "error.list",
            "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}]
        })))
        .expect(1)
        .mount(&api)
        .await;
    let server = Server::start_with_env(
        &config(&api.uri(), 2000),
        &[("INTERCOM_ACCESS_TOKEN", TOKEN)],
    )
    .await;

    let (lead, _) = notified(&server, "notif_401", CONVERSATION).await;
    let report = transcript_report(&lead);
    assert_eq!(
        (report.outcome, report.detail.as_str()),
        (
            ProviderOutcome::Failed,
            "answered HTTP 401: the token in INTERCOM_ACCESS_TOKEN was refused"
        )
    );
    assert!(lead.capture.transcript.is_empty());
    assert!(lead.assignment.is_some(), "routed");
    let stored = serde_json::to_string(&lead).expect("json");
    assert!(
        !stored.contains(TOKEN),
        "the token is on the lead: {stored}"
    );
    server.stop().await;
}

/// `leadrelay serve` itself, logging at debug: neither a fetch that works nor one refused
/// writes the token to its log or its data directory.
#[tokio::test]
async fn the_token_is_never_logged_nor_stored() {
    let api = MockServer::start().await;
    intercom_request("111")
        .respond_with(ResponseTemplate::new(200).set_body_json(conversation_answer("111")))
        .expect(1)
        .mount(&api)
        .await;
    intercom_request("401")
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&api)
        .await;
    let files = ServeFiles::new(&config(&api.uri(), 2000));
    let mut child = serve(&files)
        .env("RUST_LOG", "debug")
        .env("INTERCOM_ACCESS_TOKEN", TOKEN)
        .spawn()
        .await;
    let http = crate::support::http_client();
    let mut lead_ids = Vec::new();
    for (notification, conversation) in [("notif_log_ok", "111"), ("notif_log_401", "401")] {
        let (body, headers) = webhook(notification, conversation);
        let mut request = http
            .post(format!("{}/webhooks/intercom", child.base))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer: Value = request
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        lead_ids.push(answer["lead_id"].as_str().expect("accepted").to_owned());
    }
    // Both leads through the notify stage (one fetched, one refused) before it is stopped.
    for lead_id in &lead_ids {
        eventually(Duration::from_secs(10), "the lead notified", || async {
            let summary: Value = http
                .get(format!("{}/leads/{lead_id}", child.base))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (summary["state"] == "notified").then_some(())
        })
        .await;
    }
    child.kill();

    let log = files.log_text();
    assert!(
        log.contains("the token in INTERCOM_ACCESS_TOKEN was refused"),
        "the refusal is logged, naming the variable:\n{log}"
    );
    assert!(!log.contains(TOKEN), "the log holds the token:\n{log}");
    for entry in walk(&files.data_dir) {
        let bytes = std::fs::read(&entry).expect("readable");
        assert!(
            !bytes
                .windows(TOKEN.len())
                .any(|window| window == TOKEN.as_bytes()),
            "{} holds the token",
            entry.display()
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("readable dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty(), "the data directory holds the store");
    files
}
