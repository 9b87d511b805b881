//! The stages through their queues: idempotence under redelivery, Slack delivery, and
//! dead-lettering after repeated failure.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{
    eventually, example_config, parse_config, parse_config_with_env, sample, signed_header_map,
    with_retry_schedule, Edit, EmbeddedApp, Server,
};
use leadrelay_shared::model::{Envelope, Stage};
use leadrelay_shared::ports::{DeadLetters, LeadStore, Queue};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const LEAD: &str = "02-capture-emea-pricing.json"; // routes to rep bruno

/// The example config with a Slack webhook for bruno and fast retries: `attempts` in all,
/// 10 ms apart.
fn config_with_slack(url: &str, attempts: u32) -> String {
    let config = example_config().edit(
        "email = \"bruno@yourco.example\"",
        &format!("email = \"bruno@yourco.example\"\nslack_webhook_url = \"{url}\""),
    );
    let steps = vec!["10ms"; attempts.saturating_sub(1) as usize];
    with_retry_schedule(&config, &steps, attempts)
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
    // No workers: this test is the worker, so it can deliver each message twice on purpose.
    let app = EmbeddedApp::open(parse_config(&config_with_slack(&hook(&slack), 5)));
    let (db, pipeline, terminal) = (
        app.embedded.db.clone(),
        app.embedded.pipeline.clone(),
        &app.terminal,
    );

    let header_map = signed_header_map(&pipeline.config, "website", "msg_twice", &sample(LEAD));
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
    // delivery are tested in the channels module).
    let config = config_with_slack(&hook(&slack), 3).edit(
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
    assert!(error.starts_with("gave up after 3 attempts"), "{error}");
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
    // Delivered: the failure that parked it no longer stands on the lead.
    eventually(Duration::from_secs(10), "the failure cleared", || async {
        server.lead(&lead_id).await.body["last_failure"]
            .is_null()
            .then_some(())
    })
    .await;
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
        .edit(
            "id = \"sdr\"\nname = \"SDR queue\"",
            &format!(
                "id = \"sdr\"\nname = \"SDR queue\"\nslack_webhook_url = \"{}/services/T000/B000/QUEUE\"",
                slack.uri()
            ),
        )
        .edit(
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

/// Answers 500 until `up` is set, then 200, counting what it answered.
struct Outage {
    up: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
}

impl Respond for Outage {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.up.load(Ordering::SeqCst) {
            ResponseTemplate::new(200).set_body_string("ok")
        } else {
            self.failed.fetch_add(1, Ordering::SeqCst);
            ResponseTemplate::new(500).set_body_string("internal_error")
        }
    }
}

#[tokio::test]
async fn a_lead_stays_routed_while_slack_fails_and_is_notified_by_its_first_delivery() {
    let slack = MockServer::start().await;
    let (up, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    Mock::given(method("POST"))
        .respond_with(Outage {
            up: up.clone(),
            failed: failed.clone(),
        })
        .mount(&slack)
        .await;
    // One request per receive; enough quick retries to outlast the outage.
    let config = with_retry_schedule(&config_with_slack(&hook(&slack), 2), &["50ms"; 40], 41).edit(
        "http_timeout_ms = 5000",
        "http_timeout_ms = 5000\nmax_attempts = 1",
    );
    let server = Server::start_with(&config).await;
    let answer = server.send("website", "msg_outage", &sample(LEAD)).await;
    assert_eq!(answer.status, 202);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();

    // Slack is down: the terminal printed the alert, but the rep was told nothing.
    let during = eventually(Duration::from_secs(10), "two failed attempts", || async {
        let lead = server.lead(&lead_id).await.body;
        (failed.load(Ordering::SeqCst) >= 2 && !lead["last_failure"].is_null()).then_some(lead)
    })
    .await;
    assert_eq!(server.terminal.alerts_for(&lead_id), 1);
    assert_eq!(during["state"], "routed", "{during}");
    assert!(during["timeline"]["notified_at"].is_null(), "{during}");
    assert_eq!(during["last_failure"]["stage"], "notify");
    assert!(during["last_failure"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("slack answered 500")));

    // Slack is back: the next retry delivers, which notifies the lead and clears the failure.
    up.store(true, Ordering::SeqCst);
    let after = server.wait_for_state(&lead_id, "notified").await;
    assert!(after["timeline"]["notified_at"].is_string(), "{after}");
    let after = eventually(Duration::from_secs(10), "the failure cleared", || async {
        let lead = server.lead(&lead_id).await.body;
        lead["last_failure"].is_null().then_some(lead)
    })
    .await;
    assert_eq!(after["state"], "notified");
    let delivered =
        slack.received_requests().await.expect("recorded").len() - failed.load(Ordering::SeqCst);
    assert_eq!(delivered, 1, "one alert reached Slack");
    assert_eq!(server.terminal.alerts_for(&lead_id), 1);
    assert_eq!(server.counts().await.dead_letters, 0);
    server.stop().await;
}

/// The example config with bruno on Slack, Teams and HubSpot (all at `stand_in`), one request
/// per delivery, `schedule` as the retry schedule, and `[operations]` posting to `/ops`.
fn outage_config(stand_in: &MockServer, schedule: &[&str]) -> String {
    let url = stand_in.uri();
    let config = example_config()
        .edit(
            "email = \"bruno@yourco.example\"",
            &format!(
                "email = \"bruno@yourco.example\"\nslack_webhook_url = \"{url}/slack\"\n\
                 teams_webhook_url = \"{url}/teams\"\nhubspot_owner_id = \"12345\""
            ),
        )
        .edit(
            "http_timeout_ms = 5000",
            "http_timeout_ms = 5000\nmax_attempts = 1",
        )
        .edit(
            "\n[claim]\n",
            &format!(
                "\n[notify.hubspot]\ntoken_env = \"HUBSPOT_TOKEN\"\nbase_url = \"{url}/hubspot\"\n\n\
                 [operations]\nslack_webhook_url = \"{url}/ops\"\ncheck_every = \"50ms\"\n\
                 remind_every = \"1h\"\n\n[claim]\n"
            ),
        );
    with_retry_schedule(&config, schedule, 6)
}

async fn answer(stand_in: &MockServer, at: &str, status: u16) {
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(status))
        .mount(stand_in)
        .await;
}

/// The sample prospect's contact, as HubSpot's API reads it by e-mail.
const HUBSPOT_CONTACT: &str = "/hubspot/crm/v3/objects/contacts/tom.baker@sales.initech.co.uk";

/// When each request to `at` arrived, in order.
async fn arrivals(stand_in: &MockServer, at: &str) -> Vec<Request> {
    stand_in
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .collect()
}

#[tokio::test]
async fn an_outage_is_retried_on_the_schedule_then_dead_lettered_and_operations_told() {
    let stand_in = MockServer::start().await;
    // HubSpot's first call, reading the contact, answers 503.
    Mock::given(method("GET"))
        .and(path(HUBSPOT_CONTACT))
        .respond_with(ResponseTemplate::new(503))
        .mount(&stand_in)
        .await;
    answer(&stand_in, "/teams", 200).await;
    answer(&stand_in, "/ops", 200).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/slack"))
        .respond_with(Stamped {
            seen: seen.clone(),
            status: 503,
        })
        .mount(&stand_in)
        .await;
    let schedule = ["100ms", "200ms", "300ms"];
    let server = Server::start_with_env(
        &outage_config(&stand_in, &schedule),
        &[("HUBSPOT_TOKEN", "hs-token")],
    )
    .await;
    let answer = server
        .send("website", "msg_slack_down", &sample(LEAD))
        .await;
    assert_eq!(answer.status, 202);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();

    let letters = eventually(Duration::from_secs(20), "the dead letter", || async {
        let letters = server
            .db
            .list(Stage::Notify, 10, Duration::ZERO)
            .await
            .ok()?;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    // Tried once, then once per step, each retry no sooner than its step.
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].lead_id.as_deref(), Some(lead_id.as_str()));
    assert_eq!(letters[0].receive_count, 4);
    let error = letters[0].last_error.clone().unwrap_or_default();
    assert!(error.starts_with("gave up after 4 attempts"), "{error}");
    assert!(
        error.contains("slack answered 503") && error.contains("hubspot answered 503"),
        "{error}"
    );
    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(seen.len(), 4, "Slack was tried 4 times");
    for (pair, step) in seen.windows(2).zip([100, 200, 300]) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(step),
            "{gap:?} before a {step} ms step"
        );
    }
    assert_eq!(arrivals(&stand_in, HUBSPOT_CONTACT).await.len(), 4);
    // The other channel delivered at once, and only once: the rep was told.
    assert_eq!(arrivals(&stand_in, "/teams").await.len(), 1);
    let lead = server.lead(&lead_id).await.body;
    assert_eq!(lead["state"], "notified", "{lead}");
    assert_eq!(lead["last_failure"]["stage"], "notify");

    // Operations hears of it once: a plain Slack message, the lead id, no prospect data.
    let ops = eventually(Duration::from_secs(10), "the operations alert", || async {
        let ops = arrivals(&stand_in, "/ops").await;
        (!ops.is_empty()).then_some(ops)
    })
    .await;
    assert_eq!(ops.len(), 1);
    assert_eq!(
        ops[0].headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let body: Value = serde_json::from_slice(&ops[0].body).expect("JSON");
    let fields: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(fields, ["text"]);
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("1 message in the notify dead-letter queue")
            && text.contains(&format!("`{lead_id}`"))
            && text.contains("`leadrelay dlq replay --stage notify`"),
        "{text}"
    );
    for private in ["tom.baker", "Tom Baker", "Initech", "quote", "answered"] {
        assert!(!text.contains(private), "{private:?} in {text}");
    }
    server.stop().await;
}

/// Answers `status`, recording when each request arrived.
struct Stamped {
    seen: Arc<std::sync::Mutex<Vec<Instant>>>,
    status: u16,
}

impl Respond for Stamped {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.seen.lock().expect("not poisoned").push(Instant::now());
        ResponseTemplate::new(self.status)
    }
}

#[tokio::test]
async fn the_dead_letter_alarm_tells_operations_once_reminds_and_rearms() {
    let stand_in = MockServer::start().await;
    let smtp = crate::support::smtp::SmtpSink::start().await;
    let config = outage_config(&stand_in, &["10ms"]).edit(
        "remind_every = \"1h\"\n",
        &format!(
            "remind_every = \"1h\"\nemail = \"oncall@yourco.example\"\n\n[notify.email]\n\
             from = \"leadrelay <alerts@yourco.example>\"\nsmtp_host = \"127.0.0.1\"\n\
             smtp_port = {}\nsmtp_tls = \"none\"\nacknowledge = false\n",
            smtp.port
        ),
    );
    // No workers and no timer: this test runs the checks, at the times it chooses.
    let app = EmbeddedApp::open(parse_config_with_env(&config, &[("HUBSPOT_TOKEN", "t")]));
    let (db, alarm) = (app.embedded.db.clone(), app.embedded.alarm());
    let t0 = jiff::Timestamp::now();
    let at = |minutes: i64| t0 + jiff::SignedDuration::from_mins(minutes);
    let ops_texts = || async {
        arrivals(&stand_in, "/ops")
            .await
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).expect("JSON");
                body["text"].as_str().expect("text").to_owned()
            })
            .collect::<Vec<_>>()
    };

    // Empty queues: nothing to say. The operations webhook is down for the first notice.
    assert!(alarm.check(at(0)).await.expect("check").is_empty());
    let down = Mock::given(method("POST"))
        .and(path("/ops"))
        .respond_with(ResponseTemplate::new(500))
        .mount_as_scoped(&stand_in)
        .await;
    // A hand-made message can carry any lead id: it reaches Slack escaped.
    db.dead_letter(
        Stage::Enrich,
        &Envelope::new("<!channel> & co", Stage::Enrich, "t"),
        "boom",
    )
    .await
    .expect("dead letter");
    let given = alarm.check(at(0)).await.expect("check");
    // E-mail took it, so it counts as told; Slack's failure is not retried until the reminder.
    assert_eq!(given.len(), 1);
    assert_eq!(
        ops_texts().await.len(),
        1,
        "one attempt on the failing webhook"
    );
    drop(down);
    answer(&stand_in, "/ops", 200).await;
    let mails = smtp.mails_to("oncall@yourco.example");
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0]
            .data
            .contains("Subject: [leadrelay] 1 message in the enrich dead-letter queue"),
        "{}",
        mails[0].data
    );

    // Still there half an hour later: no repeat. An hour after the notice: one reminder.
    assert!(alarm.check(at(30)).await.expect("check").is_empty());
    let reminder = alarm.check(at(61)).await.expect("check");
    assert_eq!(reminder.len(), 1);
    assert!(reminder[0].reminder);
    let texts = ops_texts().await;
    assert_eq!(texts.len(), 2);
    assert!(
        texts[1].starts_with(":rotating_light: Still not empty: *leadrelay*: 1 message in the enrich dead-letter queue"),
        "{}",
        texts[1]
    );
    assert!(
        texts[1].contains("`&lt;!channel&gt; &amp; co`"),
        "{}",
        texts[1]
    );
    assert!(!texts[1].contains("<!channel>"), "{}", texts[1]);
    assert!(alarm.check(at(62)).await.expect("check").is_empty());

    // Emptied (replayed or purged): the alarm rearms, and the next dead letter raises it anew.
    let letters = db
        .list(Stage::Enrich, 10, Duration::ZERO)
        .await
        .expect("list");
    db.discard(Stage::Enrich, &letters[0])
        .await
        .expect("discard");
    assert!(alarm.check(at(63)).await.expect("check").is_empty());
    db.dead_letter(
        Stage::Notify,
        &Envelope::new("lead-2", Stage::Notify, "t"),
        "boom",
    )
    .await
    .expect("dead letter");
    let raised = alarm.check(at(64)).await.expect("check");
    assert_eq!(raised.len(), 1);
    assert!(!raised[0].reminder);
    let texts = ops_texts().await;
    assert_eq!(texts.len(), 3);
    assert!(
        texts[2]
            .starts_with(":rotating_light: *leadrelay*: 1 message in the notify dead-letter queue"),
        "{}",
        texts[2]
    );
    assert_eq!(smtp.mails_to("oncall@yourco.example").len(), 3);
}
