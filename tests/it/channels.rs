//! The alert channels end to end: each channel's payload as its stand-in server receives it,
//! the delivery rules (retries, Retry-After, rate limits, permanent failures parked in the
//! dead-letter queue and replayed channel by channel), and one message per channel per round.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{eventually, example_config, sample, with_retry_schedule, Edit, Server};
use jiff::Timestamp;
use leadrelay_shared::model::{Envelope, Escalation, LeadState, Owner, Stage};
use leadrelay_shared::ports::{DeadLetters, LeadStore, Queue};
use leadrelay_shared::routing::effects::Effects;
use leadrelay_shared::signature::{self, Delivery, Scheme, SigningKey};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const LEAD: &str = "02-capture-emea-pricing.json"; // tier 1, routes to rep bruno
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ENV: &[(&str, &str)] = &[
    ("SMS_TOKEN", "sms-token"),
    ("HUBSPOT_TOKEN", crate::hubspot::TOKEN),
];

/// One stand-in server for every channel, each on its own path.
struct StandIns {
    server: MockServer,
}

impl StandIns {
    async fn start() -> Self {
        StandIns {
            server: MockServer::start().await,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.uri())
    }

    async fn answer(&self, at: &str, status: u16) {
        Mock::given(method("POST"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(status))
            .mount(&self.server)
            .await;
    }

    /// The requests received on `at`, in order.
    async fn requests(&self, at: &str) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == at)
            .collect()
    }

    async fn bodies(&self, at: &str) -> Vec<Value> {
        self.requests(at)
            .await
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("JSON body"))
            .collect()
    }
}

/// The example config with every channel of bruno's pointed at `stand_ins`.
fn config(stand_ins: &StandIns, channels: &[&str]) -> String {
    let mut rep = String::from("email = \"bruno@yourco.example\"\n");
    for channel in channels {
        match *channel {
            "slack" => rep += &format!("slack_webhook_url = \"{}\"\n", stand_ins.url("/slack")),
            "teams" => rep += &format!("teams_webhook_url = \"{}\"\n", stand_ins.url("/teams")),
            "sms" => rep += "phone = \"+4915123456789\"\n",
            "hubspot" => rep += "hubspot_owner_id = \"12345\"\n",
            _ => {}
        }
    }
    let mut notify = String::from(
        "[notify]\nterminal = true\nhttp_timeout_ms = 5000\n\
         crm_url = \"https://crm.example/contacts?email={email}&lead={lead_id}\"\n",
    );
    if channels.contains(&"sms") {
        notify += &format!(
            "[notify.sms]\nurl = \"{}\"\ntoken_env = \"SMS_TOKEN\"\nfrom = \"LeadRelay\"\n",
            stand_ins.url("/sms")
        );
    }
    if channels.contains(&"webhook") {
        notify += &format!(
            "[[notify.webhooks]]\nname = \"n8n\"\nurl = \"{}\"\nsecret = \"{WEBHOOK_SECRET}\"\n",
            stand_ins.url("/webhook")
        );
    }
    if channels.contains(&"hubspot") {
        notify += &format!(
            "[notify.hubspot]\ntoken_env = \"HUBSPOT_TOKEN\"\nbase_url = \"{}\"\n",
            stand_ins.url("/hubspot")
        );
    }
    let config = example_config()
        .edit_first("email = \"bruno@yourco.example\"\n", &rep)
        .edit(
            "[notify]\nterminal = true\nhttp_timeout_ms = 5000\n",
            &notify,
        );
    with_retry_schedule(&config, &["10ms", "20ms", "40ms", "80ms"], 15)
}

/// Sends a sample lead and waits until it is notified.
async fn send_lead(server: &Server, event_id: &str, body: &[u8]) -> String {
    let answer = server.send("website", event_id, body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;
    lead_id
}

/// The sample as another person (merging would fold a second lead into the first).
fn sample_as(n: usize, mutate: impl Fn(&mut Value)) -> Vec<u8> {
    let mut lead: Value = serde_json::from_slice(&sample(LEAD)).expect("sample");
    lead["captured_email"] = format!("buyer{n}@sales.initech.co.uk").into();
    mutate(&mut lead);
    serde_json::to_vec(&lead).expect("JSON")
}

/// Waits until `at` received `n` requests, then a little longer to catch any extra one.
async fn received(stand_ins: &StandIns, at: &str, n: usize) -> Vec<Request> {
    eventually(
        Duration::from_secs(10),
        &format!("{n} requests on {at}"),
        || async { (stand_ins.requests(at).await.len() >= n).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stand_ins.requests(at).await
}

#[tokio::test]
async fn each_channel_receives_its_own_payload_with_the_claim_link_and_crm_button() {
    let stand_ins = StandIns::start().await;
    for at in ["/slack", "/teams", "/sms", "/webhook"] {
        stand_ins.answer(at, 200).await;
    }
    crate::hubspot::mount_absent(&stand_ins.server, "tom.baker@sales.initech.co.uk").await;
    crate::hubspot::mount_writes(&stand_ins.server).await;
    let server = Server::start_with_env(
        &config(&stand_ins, &["slack", "teams", "sms", "webhook", "hubspot"]),
        ENV,
    )
    .await;
    let lead_id = send_lead(&server, "msg_channels_1", &sample(LEAD)).await;
    let crm = format!(
        "https://crm.example/contacts?email=tom.baker%40sales.initech.co.uk&lead={lead_id}"
    );
    let claim_prefix = format!("http://127.0.0.1:8080/claim/{lead_id}?rep=bruno&expires=");

    // Slack: the context, then the Claim and Open in CRM buttons the claim step relies on.
    let slack = received(&stand_ins, "/slack", 1).await;
    assert_eq!(slack.len(), 1);
    let slack: Value = serde_json::from_slice(&slack[0].body).expect("JSON");
    let blocks = slack["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["text"]["text"], "Tier-1 lead for Bruno Keller");
    let texts: String = blocks
        .iter()
        .filter_map(|b| b["text"]["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for expected in [
        "*Tom Baker &lt;tom.baker@sales.initech.co.uk",
        "*SLA:* claim within 5 min",
        "*Asked:* Can we get a quote for 40 seats with SSO?",
        "*Why you:* rule",
        "*Score:* ",
        "*Page:* /pricing",
        "*visitor:* Can we get a quote for 40 seats with SSO?",
    ] {
        assert!(texts.contains(expected), "{expected:?} not in {texts}");
    }
    let actions = blocks
        .iter()
        .find(|b| b["block_id"] == "lead_actions")
        .expect("the lead_actions block");
    assert_eq!(actions["type"], "actions");
    let buttons = actions["elements"].as_array().expect("buttons");
    assert_eq!(buttons.len(), 3);
    assert_eq!(buttons[2]["action_id"], "not_mine");
    assert_eq!(buttons[2]["type"], "static_select");
    assert_eq!(buttons[0]["action_id"], "claim");
    assert_eq!(buttons[0]["value"], lead_id.as_str());
    assert_eq!(buttons[0]["style"], "primary");
    assert_eq!(buttons[0]["text"]["text"], "Claim");
    assert_eq!(buttons[1]["action_id"], "open_crm");
    assert_eq!(buttons[1]["url"], crm.as_str());

    // Teams: one Adaptive Card; Claim opens bruno's signed link, then Open in CRM.
    let teams = stand_ins.bodies("/teams").await;
    assert_eq!(teams.len(), 1);
    assert_eq!(teams[0]["type"], "message");
    let attachment = &teams[0]["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    let card_text = card["body"].to_string();
    for expected in [
        "New tier-1 lead (hand-raiser) for Bruno Keller: claim within 5 min",
        "Tom Baker <tom.baker@sales.initech.co.uk",
        "Can we get a quote for 40 seats with SSO?",
        "Transcript (last 3 of 3 turns)",
        "Looking at the Team plan for ~40 people.",
    ] {
        assert!(
            card_text.contains(expected),
            "{expected:?} not in {card_text}"
        );
    }
    let card_actions = card["actions"].as_array().expect("actions");
    assert_eq!(card_actions[0]["title"], "Claim");
    assert!(card_actions[0]["url"]
        .as_str()
        .is_some_and(|u| u.starts_with(&claim_prefix)));
    assert_eq!(card_actions[1]["title"], "Open in CRM");
    assert_eq!(card_actions[1]["url"], crm.as_str());

    // SMS: tier 1, short, plain, with the signed link whole.
    let sms = stand_ins.bodies("/sms").await;
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0]["from"], "LeadRelay");
    assert_eq!(sms[0]["to"], "+4915123456789");
    let text = sms[0]["text"].as_str().expect("text");
    assert!(text.starts_with("Tier 1: Tom Baker"), "{text}");
    // The link is never cut, and it verifies as bruno's; the prospect's part gives way so the
    // whole SMS is one 160-character segment (the link's 128-bit tag is 22 characters).
    let (about, link) = text.split_once(" Claim: ").expect("a claim link");
    assert!(link.starts_with(&claim_prefix), "{text}");
    let query = link.split_once('?').map(|(_, q)| q).unwrap_or_default();
    assert_eq!(
        leadrelay_shared::claim_link::verify(
            &server.config.claim.link_keys,
            &lead_id,
            query,
            Timestamp::now()
        ),
        Ok("bruno".to_owned())
    );
    let room = 160usize.saturating_sub("Tier 1: ".len() + " Claim: ".len() + link.len());
    assert!(
        about.chars().count() - "Tier 1: ".len() <= room.max(20),
        "{text}"
    );
    assert!(text.chars().count() <= 160, "one segment: {text}");
    let sms_request = &stand_ins.requests("/sms").await[0];
    assert_eq!(
        sms_request
            .headers
            .get("authorization")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer sms-token"[..])
    );
    // The same key on every attempt, retry and replay of this round's SMS to bruno: a provider
    // that honours Idempotency-Key sends it once.
    assert_eq!(
        sms_request
            .headers
            .get("idempotency-key")
            .map(|v| v.as_bytes()),
        Some(format!("{lead_id}:sms:rep:bruno").as_bytes())
    );

    // The outbound webhook: Standard Webhooks headers that verify, a stable id.
    let hooks = stand_ins.requests("/webhook").await;
    assert_eq!(hooks.len(), 1);
    let verified = signature::verify(
        &Scheme::StandardWebhooks {
            tolerance_secs: 300,
        },
        &[SigningKey::standard(WEBHOOK_SECRET).expect("key")],
        &Delivery::post(
            "https://hooks.example.com/webhook",
            &hooks[0].headers,
            &hooks[0].body,
        ),
        Timestamp::now(),
    )
    .expect("the signature verifies");
    assert_eq!(verified.event_id, Some(format!("lead_{lead_id}")));
    let event: Value = serde_json::from_slice(&hooks[0].body).expect("JSON");
    assert_eq!(event["type"], "lead.assigned");
    let data = &event["data"];
    assert_eq!(data["lead_id"], lead_id.as_str());
    assert_eq!(data["tier"], 1);
    assert_eq!(data["owner"]["id"], "bruno");
    assert_eq!(data["owner"]["name"], "Bruno Keller");
    assert_eq!(data["owner"]["email"], "bruno@yourco.example");
    assert_eq!(data["prospect"]["email"], "tom.baker@sales.initech.co.uk");
    assert!(data["sla_due_at"].is_string());
    assert!(data["claim_url"]
        .as_str()
        .is_some_and(|u| u.starts_with(&claim_prefix)));

    // HubSpot: the contact created with its owner (docs: tests/it/hubspot.rs), a note, a task.
    let hubspot = crate::hubspot::bodies(
        &stand_ins.server,
        "POST",
        "/hubspot/crm/v3/objects/contacts",
    )
    .await;
    assert_eq!(hubspot.len(), 1);
    let properties = &hubspot[0]["properties"];
    assert_eq!(properties["hubspot_owner_id"], "12345");
    assert_eq!(properties["email"], "tom.baker@sales.initech.co.uk");
    assert_eq!(properties["firstname"], "Tom");
    assert_eq!(properties["lastname"], "Baker");
    assert!(properties["phone"].is_string());

    // Duplicate notify messages (a replay, two workers): still one message per channel.
    for _ in 0..2 {
        server
            .db
            .send(
                Stage::Notify,
                &Envelope::new(&lead_id, Stage::Notify, "dup"),
            )
            .await
            .expect("send");
    }
    eventually(Duration::from_secs(10), "the copies worked", || async {
        (server.counts().await.messages == 0).then_some(())
    })
    .await;
    for at in [
        "/slack",
        "/teams",
        "/sms",
        "/webhook",
        "/hubspot/crm/v3/objects/contacts",
        "/hubspot/crm/v3/objects/notes",
        "/hubspot/crm/v3/objects/tasks",
    ] {
        assert_eq!(stand_ins.requests(at).await.len(), 1, "{at}");
    }
    assert_eq!(server.terminal.alerts_for(&lead_id), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_tier_2_lead_gets_no_sms() {
    let stand_ins = StandIns::start().await;
    stand_ins.answer("/slack", 200).await;
    stand_ins.answer("/sms", 200).await;
    let server = Server::start_with_env(&config(&stand_ins, &["slack", "sms"]), ENV).await;
    // Not a pricing page: a plain capture is tier 2.
    let body = sample_as(1, |lead| {
        lead["metadata"]["source_url"] = "/blog/sso".into()
    });
    let lead_id = send_lead(&server, "msg_tier2", &body).await;
    assert_eq!(server.lead(&lead_id).await.body["tier"], 2);
    assert_eq!(received(&stand_ins, "/slack", 1).await.len(), 1);
    assert!(stand_ins.requests("/sms").await.is_empty());
    server.stop().await;
}

/// Answers `first` once, then 200, recording when each request arrived.
struct Flaky {
    first: ResponseTemplate,
    seen: Arc<Mutex<Vec<Instant>>>,
}

impl Respond for Flaky {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.push(Instant::now());
        if seen.len() == 1 {
            self.first.clone()
        } else {
            ResponseTemplate::new(200)
        }
    }
}

async fn flaky(
    stand_ins: &StandIns,
    at: &str,
    first: ResponseTemplate,
) -> Arc<Mutex<Vec<Instant>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(Flaky {
            first,
            seen: seen.clone(),
        })
        .mount(&stand_ins.server)
        .await;
    seen
}

#[tokio::test]
async fn a_503_is_retried_within_the_delivery_and_delivered_once() {
    let stand_ins = StandIns::start().await;
    flaky(&stand_ins, "/slack", ResponseTemplate::new(503)).await;
    flaky(&stand_ins, "/webhook", ResponseTemplate::new(500)).await;
    let server = Server::start_with_env(&config(&stand_ins, &["slack", "webhook"]), ENV).await;
    let lead_id = send_lead(&server, "msg_503", &sample(LEAD)).await;
    assert_eq!(received(&stand_ins, "/slack", 2).await.len(), 2);
    // Both webhook attempts carry the same id, each signed afresh.
    let hooks = received(&stand_ins, "/webhook", 2).await;
    assert_eq!(hooks.len(), 2);
    for hook in &hooks {
        assert_eq!(
            hook.headers.get("webhook-id").map(|v| v.as_bytes()),
            Some(format!("lead_{lead_id}").as_bytes())
        );
    }
    let lead = server
        .db
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(lead.state.as_str(), "notified");
    assert_eq!(server.counts().await.dead_letters, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_429_waits_for_its_retry_after() {
    let stand_ins = StandIns::start().await;
    let seen = flaky(
        &stand_ins,
        "/slack",
        ResponseTemplate::new(429).insert_header("retry-after", "2"),
    )
    .await;
    let server = Server::start_with_env(&config(&stand_ins, &["slack"]), ENV).await;
    send_lead(&server, "msg_429", &sample(LEAD)).await;
    assert_eq!(received(&stand_ins, "/slack", 2).await.len(), 2);
    let seen = seen.lock().expect("not poisoned").clone();
    let gap = seen[1] - seen[0];
    assert!(gap >= Duration::from_millis(1_950), "retried after {gap:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_permanent_teams_failure_still_delivers_slack_and_a_replay_sends_only_teams() {
    let stand_ins = StandIns::start().await;
    stand_ins.answer("/slack", 200).await;
    let broken = Mock::given(method("POST"))
        .and(path("/teams"))
        .respond_with(ResponseTemplate::new(400).set_body_string("Bad payload"))
        .mount_as_scoped(&stand_ins.server)
        .await;
    let server = Server::start_with_env(&config(&stand_ins, &["slack", "teams"]), ENV).await;
    let lead_id = send_lead(&server, "msg_teams_400", &sample(LEAD)).await;
    assert_eq!(received(&stand_ins, "/slack", 1).await.len(), 1);
    // A 400 is not retried: one attempt.
    assert_eq!(stand_ins.requests("/teams").await.len(), 1);

    let letters = eventually(Duration::from_secs(10), "the dead letter", || async {
        let letters = server
            .db
            .list(Stage::Notify, 10, Duration::ZERO)
            .await
            .expect("list");
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].lead_id.as_deref(), Some(lead_id.as_str()));
    let error = letters[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("teams answered 400"), "{error}");
    assert!(!error.contains(&stand_ins.server.uri()), "no URL: {error}");
    let lead = server
        .db
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("stored");
    assert!(lead
        .last_failure
        .as_ref()
        .is_some_and(|f| f.error.contains("teams")));

    // Fixed: the replay delivers Teams, and Slack is not sent again.
    drop(broken);
    stand_ins.answer("/teams", 200).await;
    server
        .db
        .replay(Stage::Notify, &letters[0])
        .await
        .expect("replay");
    assert_eq!(received(&stand_ins, "/teams", 2).await.len(), 2);
    assert_eq!(stand_ins.requests("/slack").await.len(), 1);
    assert_eq!(server.terminal.alerts_for(&lead_id), 1);
    eventually(Duration::from_secs(10), "the replay worked", || async {
        (server.counts().await.messages == 0).then_some(())
    })
    .await;
    assert_eq!(server.counts().await.dead_letters, 0);
    server.stop().await;
}

#[tokio::test]
async fn alerts_to_one_slack_webhook_are_spaced_one_second_apart() {
    let stand_ins = StandIns::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/slack"))
        .respond_with(Flaky {
            first: ResponseTemplate::new(200),
            seen: seen.clone(),
        })
        .mount(&stand_ins.server)
        .await;
    // The EMEA pool alternates bruno and fatima: both post to the one webhook.
    let text = config(&stand_ins, &["slack"]).edit(
        "email = \"fatima@yourco.example\"\n",
        &format!(
            "email = \"fatima@yourco.example\"\nslack_webhook_url = \"{}\"\n",
            stand_ins.url("/slack")
        ),
    );
    let server = Server::start_with_env(&text, ENV).await;
    for n in 0..3 {
        let body = sample_as(n, |_| {});
        let answer = server
            .send("website", &format!("msg_rate_{n}"), &body)
            .await;
        assert_eq!(answer.status, 202);
    }
    assert_eq!(received(&stand_ins, "/slack", 3).await.len(), 3);
    let mut seen = seen.lock().expect("not poisoned").clone();
    seen.sort();
    for pair in seen.windows(2) {
        let gap = pair[1] - pair[0];
        // Slack documents one message per second per incoming webhook.
        assert!(
            gap >= Duration::from_millis(950),
            "{gap:?} between two alerts"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn each_escalation_round_alerts_once_on_the_channels_its_step_names() {
    let stand_ins = StandIns::start().await;
    stand_ins.answer("/slack", 200).await;
    stand_ins.answer("/teams", 200).await;
    let server = Server::start_with_env(&config(&stand_ins, &["slack", "teams"]), ENV).await;
    let lead_id = send_lead(&server, "msg_escalated", &sample(LEAD)).await;
    assert_eq!(received(&stand_ins, "/teams", 1).await.len(), 1);

    // The SLA passed: the ladder's first step keeps bruno's lead but alerts on Teams only.
    let mut lead = server
        .db
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("stored");
    let captured = lead.timeline.captured_at.expect("captured");
    lead.escalations.push(Escalation {
        level: 1,
        at: captured
            .checked_add(jiff::SignedDuration::from_mins(6))
            .expect("time"),
        from: Owner::Rep("bruno".into()),
        to: Owner::Rep("bruno".into()),
        channels: Some(vec!["teams".into()]),
        missed: captured
            .checked_add(jiff::SignedDuration::from_mins(5))
            .expect("time"),
    });
    server
        .db
        .advance_lead(&lead, LeadState::Notified, &Effects::none())
        .await
        .expect("escalated");
    // Two copies of the round's notify message (a retry, a second worker): one alert.
    for _ in 0..2 {
        server
            .db
            .send(
                Stage::Notify,
                &Envelope::new(&lead_id, Stage::Notify, "esc"),
            )
            .await
            .expect("send");
    }
    let teams = received(&stand_ins, "/teams", 2).await;
    assert_eq!(teams.len(), 2);
    let card: Value = serde_json::from_slice(&teams[1].body).expect("JSON");
    let text = card["attachments"][0]["content"]["body"].to_string();
    assert!(
        text.contains("Escalated to you (level 1): unclaimed 6 min, Bruno Keller's SLA passed"),
        "{text}"
    );
    eventually(Duration::from_secs(10), "the copies worked", || async {
        (server.counts().await.messages == 0).then_some(())
    })
    .await;
    assert_eq!(stand_ins.requests("/teams").await.len(), 2);
    assert_eq!(
        stand_ins.requests("/slack").await.len(),
        1,
        "Slack is not in the step"
    );
    // The terminal shows every round.
    assert_eq!(server.terminal.alerts_for(&lead_id), 2);
    server.stop().await;
}
