//! SIGKILL in the middle of a burst of webhooks, then a restart on the same data directory:
//! every lead answered 202 ends notified, once in the store, and reaches its owner's channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leadrelay::embedded::{QueueSettings, Sqlite};
use leadrelay_shared::model::Owner;
use leadrelay_shared::ports::LeadStore;
use leadrelay_shared::stages::open_leads_counter;
use leadrelay_tests::process::{free_port, spawn_serve, wait_healthy};
use leadrelay_tests::{eventually, example_config, parse_config, sample};
use serde_json::Value;
use tokio::sync::Mutex;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A webhook body and the headers that sign it.
type SignedRequest = (Vec<u8>, Vec<(String, String)>);

const BURST: usize = 400;
const KILL_AFTER_ACCEPTED: usize = 120;
/// The most notify messages a process works at once (workers per stage × batch size): the
/// only deliveries a SIGKILL can catch between "Slack answered" and "receipt written".
const MAX_IN_FLIGHT_DELIVERIES: usize = 2 * 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_no_accepted_lead() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;

    // Every rep has a Slack webhook (queues alert their manager); short visibility so that
    // messages caught mid-work by the kill come back quickly.
    let hook = format!("{}/services/T/B/X", slack.uri());
    let config_text = example_config()
        .replace(
            "@yourco.example\"",
            &format!("@yourco.example\"\nslack_webhook_url = \"{hook}\""),
        )
        .replace(
            "visibility_timeout_secs = 30",
            "visibility_timeout_secs = 2",
        )
        // A delivery must end within the receipt's lease (the visibility timeout).
        .replace(
            "http_timeout_ms = 5000",
            "http_timeout_ms = 500\ndelivery_budget_ms = 1000",
        )
        // Every rep shares the one stand-in webhook: Slack's 1 per second would spread the
        // burst over minutes, which is not what this test is about.
        .replace("\n[claim]\n", "\n[notify.rates]\nslack = 0\n\n[claim]\n");
    let config = parse_config(&config_text);
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("leadrelay.toml");
    std::fs::write(&config_path, &config_text).expect("write config");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("serve.log");

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_serve(&config_path, &data_dir, port, &log, &[("RUST_LOG", "warn")]);
    wait_healthy(&http, &base).await;

    // The burst: 8 senders, each recording the leads answered 202.
    let source = config.source("website").expect("source");
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let samples = [
        sample("01-fallback-named-account.json"),
        sample("02-capture-emea-pricing.json"),
        sample("03-capture-enterprise.json"),
        sample("04-partial-free-mail.json"),
    ];
    let mut senders = Vec::new();
    for sender in 0..8 {
        let (http, base, accepted, answered) = (
            http.clone(),
            base.clone(),
            accepted.clone(),
            answered.clone(),
        );
        let requests: Vec<SignedRequest> = (sender..BURST)
            .step_by(8)
            .map(|n| {
                let body = samples[n % samples.len()].clone();
                let id = format!("msg_crash_{n}");
                let headers = leadrelay::cli::signed_headers(source, &id, &body).expect("sign");
                (body, headers)
            })
            .collect();
        senders.push(tokio::spawn(async move {
            for (body, headers) in requests {
                let mut request = http.post(format!("{base}/webhooks/website")).body(body);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                // After the kill, requests fail: those were never answered 202.
                let Ok(response) = request.send().await else {
                    return;
                };
                if response.status().as_u16() == 202 {
                    let answer: Value = response.json().await.unwrap_or_default();
                    if let Some(id) = answer["lead_id"].as_str() {
                        accepted.lock().await.push(id.to_owned());
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }

    eventually(
        Duration::from_secs(20),
        "the burst to be under way",
        || async { (answered.load(Ordering::SeqCst) >= KILL_AFTER_ACCEPTED).then_some(()) },
    )
    .await;
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    child.wait().expect("reaped");
    for sender in senders {
        sender.await.expect("sender finished");
    }
    let accepted = accepted.lock().await.clone();
    assert!(accepted.len() >= KILL_AFTER_ACCEPTED);
    assert!(
        accepted.len() < BURST,
        "the kill should land mid-burst ({} of {BURST} accepted)",
        accepted.len()
    );

    // Restart on the same data directory; everything accepted must come out notified.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_serve(&config_path, &data_dir, port, &log, &[("RUST_LOG", "warn")]);
    wait_healthy(&http, &base).await;
    let db = Sqlite::open(
        &data_dir,
        QueueSettings {
            max_receives: 5,
            visibility_timeout: Duration::from_secs(2),
        },
    )
    .expect("open the store beside the running server");
    eventually(
        Duration::from_secs(60),
        "every accepted lead notified and the queues drained",
        || async {
            let counts = db.counts().await.ok()?;
            if counts.messages > 0 {
                return None;
            }
            for lead_id in &accepted {
                let lead = db.get_lead(lead_id).await.ok()??;
                if lead.state.as_str() != "notified" {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    child.kill().expect("stop");
    child.wait().expect("reaped");

    // Once in the store: one owner, one open-lead count per lead.
    let counts = db.counts().await.expect("counts");
    let mut open_leads = 0;
    let owners = config
        .reps
        .iter()
        .map(|r| Owner::Rep(r.get_ref().id.clone()))
        .chain(
            config
                .queues
                .iter()
                .map(|q| Owner::Queue(q.get_ref().id.clone())),
        )
        .chain(
            config
                .pools
                .iter()
                .map(|p| Owner::Pool(p.get_ref().id.clone())),
        );
    for owner in owners {
        open_leads += db
            .counter(&open_leads_counter(&owner))
            .await
            .expect("counter");
    }
    // The senders repeat four people, so most leads merge into a person's open lead: a merged
    // lead is the same piece of work and never counts.
    let stored = db
        .leads_since(jiff::Timestamp::UNIX_EPOCH, usize::MAX)
        .await
        .expect("leads");
    assert_eq!(stored.len() as i64, counts.leads);
    let new_work = stored.iter().filter(|l| l.merged_into.is_none()).count() as i64;
    assert_eq!(
        open_leads, new_work,
        "each stored lead that is not merged counted once toward its owner"
    );
    assert_eq!(counts.dead_letters, 0);

    // At the owner's channel: every accepted lead arrived; a repeat is possible only for a
    // delivery the kill caught between Slack's answer and the receipt.
    let mut per_lead: HashMap<String, usize> = HashMap::new();
    for request in slack.received_requests().await.expect("recorded") {
        let payload: Value = serde_json::from_slice(&request.body).expect("json");
        let text = payload.to_string();
        // By the alert's own lead line: a merged lead's alert also names the lead it joined.
        if let Some(id) = accepted
            .iter()
            .find(|id| text.contains(&format!("lead `{id}`")))
        {
            *per_lead.entry(id.clone()).or_default() += 1;
        }
    }
    for lead_id in &accepted {
        assert!(
            per_lead.get(lead_id).copied().unwrap_or(0) >= 1,
            "lead {lead_id} never reached Slack"
        );
    }
    let repeats: usize = per_lead.values().map(|n| n - 1).sum();
    println!(
        "accepted before the kill: {}, stored: {}, Slack repeats caused by the kill: {repeats}",
        accepted.len(),
        counts.leads
    );
    assert!(repeats <= MAX_IN_FLIGHT_DELIVERIES, "{repeats} repeats");
}
