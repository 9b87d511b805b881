//! Slack as an app: alerts posted with a bot token through the Web API, at a stand-in of
//! `slack.com/api` that checks each request as Slack documents it (method, path, bearer token,
//! content type, body fields) and answers in Slack's shapes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::process::{serve, ServeFiles};
use crate::support::{
    eventually, example_config, initech_lead, parse_config_with_env, sample, signed_webhook, Edit,
    ManualPipeline, Server,
};
use jiff::Timestamp;
use leadrelay_channels::Channels;
use leadrelay_shared::model::{Envelope, LeadState, Stage};
use leadrelay_shared::ports::{DeadLetters, Destination, LeadStore, Notifier, SlackUser};
use leadrelay_shared::stages::close::close_lead;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, body_string, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const LEAD: &str = "02-capture-emea-pricing.json"; // tier 1, EMEA: routes to bruno
const TOKEN: &str = "xoxb-1111-2222-SeCrEtBoTtOkEn";
const BEARER: &str = "Bearer xoxb-1111-2222-SeCrEtBoTtOkEn";
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// The example config with the app at `api` (`{stand_in}/api`), bruno the only member of the
/// EMEA pool (so that every EMEA lead is his) with `bruno` added to his rep entry, and
/// `sections` before `[claim]`.
fn config(stand_in: &MockServer, bruno: &str, sections: &str) -> String {
    let api = format!("{}/api", stand_in.uri());
    example_config()
        .edit(
            "members = [{ rep = \"bruno\", weight = 2 }, { rep = \"fatima\", weight = 1 }]",
            "members = [{ rep = \"bruno\" }]",
        )
        .edit(
            "email = \"bruno@yourco.example\"",
            &format!("email = \"bruno@yourco.example\"\n{bruno}"),
        )
        .edit(
            "\n[claim]\n",
            &format!(
                "\n[notify.slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\napi_base_url = \"{api}\"\n\n\
                 {sections}\n\n[claim]\n"
            ),
        )
}

async fn start(config: &str) -> Server {
    Server::start_with_env(config, &[("SLACK_BOT_TOKEN", TOKEN)]).await
}

/// `users.lookupByEmail` finds bruno (a form post, as the method takes no JSON), and
/// `conversations.open` opens his DM.
async fn mount_bruno(stand_in: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/api/users.lookupByEmail"))
        .and(header("authorization", BEARER))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string("email=bruno%40yourco.example"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "user": {"id": "UBRUNO1", "name": "bruno"}})),
        )
        .mount(stand_in)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/conversations.open"))
        .and(header("authorization", BEARER))
        .and(header("content-type", JSON_UTF8))
        .and(body_json(json!({"users": "UBRUNO1"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "channel": {"id": "DBRUNO1"}})),
        )
        .mount(stand_in)
        .await;
}

/// `chat.postMessage` answers as Slack does when the message was posted.
fn posted(channel: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ok": true, "channel": channel, "ts": "1764150000.000100",
        "message": {"text": "..."}
    }))
}

async fn mount_post(stand_in: &MockServer, answer: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", BEARER))
        .and(header("content-type", JSON_UTF8))
        .respond_with(answer)
        .mount(stand_in)
        .await;
}

async fn requests(stand_in: &MockServer, at: &str) -> Vec<Request> {
    stand_in
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .collect()
}

async fn send(server: &Server, event_id: &str, body: &[u8]) -> String {
    let answer = server.send("website", event_id, body).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.body["lead_id"].as_str().expect("lead id").to_owned()
}

/// The same capture from another prospect (not merged into the first lead).
fn another_prospect() -> Vec<u8> {
    String::from_utf8(sample(LEAD))
        .expect("UTF-8")
        .replace(
            "tom.baker@sales.initech.co.uk",
            "ann.lee@sales.initech.co.uk",
        )
        .replace("Tom Baker", "Ann Lee")
        .replace("+44 20 7946 0321", "+44 20 7946 0999")
        .replace("anon-77c1d2e0", "anon-88d2e3f1")
        .replace("conv-12377", "conv-12388")
        .into_bytes()
}

#[tokio::test]
async fn the_alert_goes_to_the_reps_dm_with_a_mention_and_local_deadline_and_the_user_is_cached() {
    let stand_in = MockServer::start().await;
    mount_bruno(&stand_in).await;
    mount_post(&stand_in, posted("DBRUNO1")).await;
    let server = start(&config(&stand_in, "", "[notify.rates]\nslack = 0")).await;

    let first = send(&server, "msg_app_1", &sample(LEAD)).await;
    let lead = server.wait_for_state(&first, "notified").await;
    let posts = requests(&stand_in, "/api/chat.postMessage").await;
    assert_eq!(posts.len(), 1);
    let body: Value = serde_json::from_slice(&posts[0].body).expect("JSON");
    assert_eq!(body["channel"], "DBRUNO1", "{body}");
    let text = body["text"].as_str().expect("fallback text");
    assert!(
        text.starts_with("<@UBRUNO1> New tier-1 lead"),
        "the fallback text names the owner: {text}"
    );
    let blocks = body["blocks"].to_string();
    assert!(blocks.contains("For <@UBRUNO1>"), "{blocks}");
    // The deadline in Slack's date formatting: each reader sees their own time zone.
    let due: Timestamp = lead["timeline"]["sla_due_at"]
        .as_str()
        .expect("a deadline")
        .parse()
        .expect("a timestamp");
    let token = format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        due.as_second(),
        due.strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    assert!(blocks.contains(&token), "{token} in {blocks}");
    assert!(blocks.contains("\"action_id\":\"claim\""), "{blocks}");
    // The plain-text alert keeps UTC.
    assert!(server.terminal.text().contains(" UTC)"));

    // The second lead for bruno: no second lookup or DM opening, one more post.
    let second = send(&server, "msg_app_2", &another_prospect()).await;
    server.wait_for_state(&second, "notified").await;
    assert_eq!(requests(&stand_in, "/api/chat.postMessage").await.len(), 2);
    assert_eq!(
        requests(&stand_in, "/api/users.lookupByEmail").await.len(),
        1,
        "the user id is cached"
    );
    assert_eq!(
        requests(&stand_in, "/api/conversations.open").await.len(),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn a_team_channel_post_mentions_the_configured_user_without_a_lookup() {
    let stand_in = MockServer::start().await;
    mount_post(&stand_in, posted("CEMEA01")).await;
    let config = config(&stand_in, "slack_user_id = \"UBRUNO9\"", "").edit(
        "id = \"emea\"\n",
        "id = \"emea\"\nslack_channel = \"CEMEA01\"\n",
    );
    let server = start(&config).await;
    let lead_id = send(&server, "msg_app_team", &sample(LEAD)).await;
    server.wait_for_state(&lead_id, "notified").await;
    let posts = requests(&stand_in, "/api/chat.postMessage").await;
    assert_eq!(posts.len(), 1);
    let body: Value = serde_json::from_slice(&posts[0].body).expect("JSON");
    assert_eq!(body["channel"], "CEMEA01");
    assert!(body["blocks"].to_string().contains("For <@UBRUNO9>"));
    assert!(requests(&stand_in, "/api/users.lookupByEmail")
        .await
        .is_empty());
    assert!(requests(&stand_in, "/api/conversations.open")
        .await
        .is_empty());
    server.stop().await;
}

#[tokio::test]
async fn ratelimited_is_retried_after_the_time_slack_asks_for() {
    let stand_in = MockServer::start().await;
    mount_bruno(&stand_in).await;
    // Slack's documented answer to a rate-limited call: 429, Retry-After in seconds; then
    // the post goes through.
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", BEARER))
        .respond_with(RateLimitedOnce { seen: seen.clone() })
        .mount(&stand_in)
        .await;
    let server = start(&config(&stand_in, "", "")).await;
    let lead_id = send(&server, "msg_app_rl", &sample(LEAD)).await;
    server.wait_for_state(&lead_id, "notified").await;
    let posts = requests(&stand_in, "/api/chat.postMessage").await;
    assert_eq!(posts.len(), 2, "retried once");
    let (first, second): (Value, Value) = (
        serde_json::from_slice(&posts[0].body).expect("JSON"),
        serde_json::from_slice(&posts[1].body).expect("JSON"),
    );
    assert_eq!(first, second, "the same message again");
    let seen = seen.lock().expect("not poisoned").clone();
    assert!(
        seen[1] - seen[0] >= Duration::from_secs(1),
        "retried after {:?}, before the second Slack asked for",
        seen[1] - seen[0]
    );
    assert_eq!(server.counts().await.dead_letters, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_permanent_operations_hear_of_it_and_the_next_channel_delivers() {
    let stand_in = MockServer::start().await;
    mount_bruno(&stand_in).await;
    mount_post(
        &stand_in,
        ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "token_revoked"})),
    )
    .await;
    for at in ["/teams", "/ops"] {
        Mock::given(method("POST"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(200))
            .mount(&stand_in)
            .await;
    }
    let config = config(
        &stand_in,
        &format!("teams_webhook_url = \"{}/teams\"", stand_in.uri()),
        &format!(
            "[operations]\nslack_webhook_url = \"{}/ops\"\ncheck_every = \"50ms\"\nremind_every = \"1h\"",
            stand_in.uri()
        ),
    );
    let server = start(&config).await;
    let lead_id = send(&server, "msg_app_revoked", &sample(LEAD)).await;

    // Bruno is told on Teams; Slack was asked once (retrying cannot bring a token back).
    server.wait_for_state(&lead_id, "notified").await;
    // The failure is recorded after the lead moved on: wait for it.
    let lead = eventually(Duration::from_secs(10), "the recorded failure", || async {
        let lead = server.lead(&lead_id).await.body;
        lead["last_failure"]["error"].is_string().then_some(lead)
    })
    .await;
    assert_eq!(lead["state"], "notified");
    assert_eq!(requests(&stand_in, "/teams").await.len(), 1);
    assert_eq!(requests(&stand_in, "/api/chat.postMessage").await.len(), 1);
    let failure = lead["last_failure"]["error"].as_str().expect("a failure");
    assert!(
        failure.contains("slack refused the message for good: chat.postMessage: token_revoked"),
        "{failure}"
    );
    let letters = eventually(Duration::from_secs(10), "the dead letter", || async {
        let letters = server
            .db
            .list(Stage::Notify, 10, Duration::ZERO)
            .await
            .ok()?;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters[0].lead_id.as_deref(), Some(lead_id.as_str()));
    let ops = eventually(Duration::from_secs(10), "the operations alert", || async {
        let ops = requests(&stand_in, "/ops").await;
        (!ops.is_empty()).then_some(ops)
    })
    .await;
    let notice: Value = serde_json::from_slice(&ops[0].body).expect("JSON");
    assert!(
        notice["text"]
            .as_str()
            .is_some_and(|t| t.contains("notify dead-letter queue") && t.contains(&lead_id)),
        "{notice}"
    );

    // The token is nowhere: not in the error, the dead letter, the lead or what was stored.
    let stored = server
        .db
        .get_lead(&lead_id)
        .await
        .expect("read")
        .expect("stored");
    let stored = serde_json::to_string(&stored).expect("serialisable");
    for text in [
        failure.to_owned(),
        format!("{:?}", letters[0]),
        lead.to_string(),
        stored,
        notice.to_string(),
    ] {
        assert!(!text.contains("SeCrEtBoTtOkEn"), "{text}");
    }
    server.stop().await;
}

/// Answers the first request `ratelimited` (HTTP 429, `Retry-After: 1`) and the others as a
/// posted message, recording when each arrived.
struct RateLimitedOnce {
    seen: Arc<Mutex<Vec<Instant>>>,
}

impl Respond for RateLimitedOnce {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.push(Instant::now());
        if seen.len() == 1 {
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"ok": false, "error": "ratelimited"}))
        } else {
            posted("DBRUNO1")
        }
    }
}

/// What the Web API path adds to an alert: `Notifier::deliver` to the app against a local
/// stand-in, 200 alerts for one rep (user and DM cached after the first), p50 and p99.
#[tokio::test]
async fn alert_to_slack_latency_through_the_web_api() {
    let stand_in = MockServer::start().await;
    mount_bruno(&stand_in).await;
    mount_post(&stand_in, posted("DBRUNO1")).await;
    let config = crate::support::parse_config_with_env(
        &config(&stand_in, "", "[notify.rates]\nslack = 0"),
        &[("SLACK_BOT_TOKEN", TOKEN)],
    );
    let channels =
        leadrelay_channels::Channels::from_config(&config.notify, Box::new(std::io::sink()))
            .expect("channels");
    let lead = initech_lead("lead-bench", "tom@initech.co.uk", Timestamp::now());
    let alert = leadrelay_shared::render::render(&lead, "hot");
    let destination = Destination::SlackApp {
        recipient: "rep:bruno".into(),
        channel: None,
        mention: Some(SlackUser {
            id: None,
            email: Some("bruno@yourco.example".into()),
        }),
    };
    let started = Instant::now();
    channels
        .deliver(&destination, &alert)
        .await
        .expect("delivered");
    let cold = started.elapsed();
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        channels
            .deliver(&destination, &alert)
            .await
            .expect("delivered");
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "slack app, 200 alerts to a local stand-in: p50 {:?}, p99 {:?}, max {:?}; first (lookup + open + post) {cold:?}",
        times[99], times[197], times[199]
    );
    assert_eq!(
        requests(&stand_in, "/api/chat.postMessage").await.len(),
        201
    );
    assert_eq!(
        requests(&stand_in, "/api/users.lookupByEmail").await.len(),
        1
    );
}

#[tokio::test]
async fn the_bot_token_is_never_logged() {
    let stand_in = MockServer::start().await;
    mount_bruno(&stand_in).await;
    // Rate limited once, then refused for good: both kinds of failure are logged.
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_json(json!({"ok": false, "error": "ratelimited"})),
        )
        .up_to_n_times(1)
        .mount(&stand_in)
        .await;
    mount_post(
        &stand_in,
        ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "invalid_auth"})),
    )
    .await;
    let config_text = config(&stand_in, "", "");
    let config = crate::support::parse_config_with_env(&config_text, &[("SLACK_BOT_TOKEN", TOKEN)]);
    let files = ServeFiles::new(&config_text);
    let mut child = serve(&files)
        .env("SLACK_BOT_TOKEN", TOKEN)
        .env("LEADRELAY_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .spawn()
        .await;
    let http = crate::support::http_client();
    let answer = signed_webhook(
        &http,
        &child.base,
        &config,
        "website",
        "msg_app_log",
        &sample(LEAD),
    )
    .send()
    .await
    .expect("sent");
    assert_eq!(answer.status().as_u16(), 202);
    eventually(
        Duration::from_secs(10),
        "the dead-letter log line",
        || async { files.log_text().contains("dead-lettered").then_some(()) },
    )
    .await;
    child.kill();
    let text = files.log_text();
    assert!(text.contains("chat.postMessage: ratelimited"), "{text}");
    assert!(text.contains("chat.postMessage: invalid_auth"), "{text}");
    assert!(
        !text.contains("SeCrEtBoTtOkEn"),
        "the token is in the log:\n{text}"
    );
}

#[tokio::test]
async fn a_claim_by_link_updates_the_posted_message_in_place() {
    let stand_in = MockServer::start().await;
    mount_bruno(&stand_in).await;
    mount_post(&stand_in, posted("DBRUNO1")).await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .and(header("authorization", BEARER))
        .and(header("content-type", JSON_UTF8))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"ok": true, "channel": "DBRUNO1", "ts": "1764150000.000100", "text": "..."}),
        ))
        .mount(&stand_in)
        .await;
    let server = start(&config(&stand_in, "", "")).await;
    let lead_id = send(&server, "msg_app_claim", &sample(LEAD)).await;
    server.wait_for_state(&lead_id, "notified").await;
    assert!(requests(&stand_in, "/api/chat.update").await.is_empty());

    let url =
        leadrelay_shared::claim_link::url_for(&server.config, &lead_id, "bruno", Timestamp::now())
            .expect("public_url is set")
            .replace("http://127.0.0.1:8080", &server.base);
    let claimed = server.http.post(&url).send().await.expect("post");
    assert_eq!(claimed.status().as_u16(), 200);

    // The claim sends the lead to the notify stage, which edits what the app posted.
    let updates = eventually(Duration::from_secs(10), "the message edited", || async {
        let updates = requests(&stand_in, "/api/chat.update").await;
        (!updates.is_empty()).then_some(updates)
    })
    .await;
    assert_eq!(updates.len(), 1);
    let body: Value = serde_json::from_slice(&updates[0].body).expect("JSON");
    assert_eq!(body["channel"], "DBRUNO1", "{body}");
    assert_eq!(body["ts"], "1764150000.000100", "{body}");
    let blocks = body["blocks"].to_string();
    assert!(
        blocks.contains("Claimed by *Bruno Keller* (bruno)"),
        "{blocks}"
    );
    assert!(
        !blocks.contains("\"action_id\":\"claim\""),
        "the button is gone: {blocks}"
    );
    assert!(body["text"].as_str().is_some_and(|t| !t.is_empty()));

    // And says so in the message's thread, once.
    let replies = eventually(Duration::from_secs(10), "the thread reply", || async {
        let replies = thread_replies(&stand_in).await;
        (!replies.is_empty()).then_some(replies)
    })
    .await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["channel"], "DBRUNO1");
    assert_eq!(replies[0]["thread_ts"], "1764150000.000100");
    assert!(
        replies[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Claimed by *Bruno Keller* (bruno)")),
        "{}",
        replies[0]
    );
    // A second claim of the same lead changes nothing and says nothing more.
    let again = server.http.post(&url).send().await.expect("post");
    assert_eq!(again.status().as_u16(), 200);
    server.wait_for_state(&lead_id, "claimed").await;
    assert_eq!(requests(&stand_in, "/api/chat.update").await.len(), 1);
    assert_eq!(thread_replies(&stand_in).await.len(), 1);
    server.stop().await;
}

/// The `chat.postMessage` calls that answered in a thread.
async fn thread_replies(stand_in: &MockServer) -> Vec<Value> {
    requests(stand_in, "/api/chat.postMessage")
        .await
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|body| body.get("thread_ts").is_some())
        .collect()
}

#[tokio::test]
async fn a_slack_member_without_a_configured_id_is_known_by_their_e_mail_when_they_claim() {
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    let stand_in = MockServer::start().await;
    for at in ["/hook", "/actions/T1/1/abc"] {
        Mock::given(method("POST"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(200))
            .mount(&stand_in)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/api/users.info"))
        .and(header("authorization", BEARER))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string("user=UBRUNO1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true,
            "user": {"id": "UBRUNO1", "profile": {"email": "Bruno@YourCo.example"}}
        })))
        .mount(&stand_in)
        .await;
    // Bruno's alert comes by his incoming webhook; he has no slack_user_id.
    let config = config(
        &stand_in,
        &format!("slack_webhook_url = \"{}/hook\"", stand_in.uri()),
        "",
    )
    .edit(
        "# slack_signing_secrets_env = \"SLACK_SIGNING_SECRET\"",
        &format!(
            "slack_signing_secrets = [\"{SECRET}\"]\nslack_response_url_prefix = \"{}/\"",
            stand_in.uri()
        ),
    );
    let server = start(&config).await;
    let lead_id = send(&server, "msg_app_press", &sample(LEAD)).await;
    server.wait_for_state(&lead_id, "notified").await;

    let payload = json!({
        "type": "block_actions",
        "user": {"id": "UBRUNO1"},
        "response_url": format!("{}/actions/T1/1/abc", stand_in.uri()),
        "actions": [{"action_id": "claim", "block_id": "lead_actions", "value": lead_id}]
    });
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes();
    let key = leadrelay_shared::signature::SigningKey::plain(SECRET).expect("key");
    let mut request = server
        .http
        .post(format!("{}/slack/interactivity", server.base))
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in
        leadrelay_web::claim_http::slack_headers(&key, Timestamp::now().as_second(), &body).iter()
    {
        request = request.header(name, value);
    }
    let answer = request.body(body).send().await.expect("post");
    assert_eq!(answer.status().as_u16(), 200);
    let lead = server.wait_for_state(&lead_id, "claimed").await;
    assert!(lead.to_string().contains("bruno"), "{lead}");
    assert_eq!(requests(&stand_in, "/api/users.info").await.len(), 1);
    assert_eq!(requests(&stand_in, "/actions/T1/1/abc").await.len(), 1);
    server.stop().await;
}

/// An escalation and a close reach the alerts the app already posted: each is edited in place
/// (its buttons replaced by the news) and gets the news in its thread, once per event, by the
/// notify stage the sla-watch and the close send the lead to.
#[tokio::test]
async fn an_escalation_and_a_close_are_told_on_the_posted_alert_and_in_its_thread() {
    let stand_in = MockServer::start().await;
    mount_bruno(&stand_in).await;
    mount_post(&stand_in, posted("DBRUNO1")).await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .and(header("authorization", BEARER))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"ok": true, "channel": "DBRUNO1", "ts": "1764150000.000100"}),
            ),
        )
        .mount(&stand_in)
        .await;
    let config = parse_config_with_env(&config(&stand_in, "", ""), &[("SLACK_BOT_TOKEN", TOKEN)]);
    let notify = config.notify.clone();
    let at: Timestamp = "2026-11-25T10:00:00Z".parse().expect("time"); // bruno's working hours
    let manual = ManualPipeline::with_channels(config, at, Duration::from_secs(2), |_| {
        Channels::from_config(&notify, Box::new(std::io::sink())).expect("channels")
    });
    manual
        .db
        .create_lead(&initech_lead("esc-lead", "tom@initech.co.uk", at))
        .await
        .expect("stored");
    let route = Envelope::new("esc-lead", Stage::Route, "t").to_json();
    manual
        .pipeline
        .handle(Stage::Route, &route)
        .await
        .expect("routed");
    manual.drain().await;
    assert_eq!(manual.lead("esc-lead").await.state, LeadState::Notified);
    assert!(requests(&stand_in, "/api/chat.update").await.is_empty());
    assert!(thread_replies(&stand_in).await.is_empty());

    // Nobody claimed it: sla-watch escalates, and the first alert says so.
    manual.clock.set(at + jiff::SignedDuration::from_hours(2));
    let report = manual.sweep().await;
    assert_eq!(report.escalated.len(), 1, "{report:?}");
    let updates = requests(&stand_in, "/api/chat.update").await;
    assert_eq!(updates.len(), 1);
    let update: Value = serde_json::from_slice(&updates[0].body).expect("JSON");
    assert_eq!(update["channel"], "DBRUNO1");
    assert_eq!(update["ts"], "1764150000.000100");
    let blocks = update["blocks"].to_string();
    assert!(blocks.contains("Escalated to"), "{blocks}");
    assert!(!blocks.contains("\"action_id\":\"claim\""), "{blocks}");
    let replies = thread_replies(&stand_in).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["thread_ts"], "1764150000.000100");
    assert!(replies[0]["text"]
        .as_str()
        .is_some_and(|t| t.contains("Escalated to") && t.contains("Bruno Keller")));

    // Closed: every posted alert says so, once, however often notify sees the closed lead.
    let now = at + jiff::SignedDuration::from_hours(3);
    let closed = close_lead(&manual.db, now, "esc-lead", "won")
        .await
        .expect("closed");
    assert_eq!(closed.state, LeadState::Closed);
    let body = Envelope::new("esc-lead", Stage::Notify, "t").to_json();
    for _ in 0..2 {
        manual
            .pipeline
            .handle(Stage::Notify, &body)
            .await
            .expect("notify");
    }
    let closes: Vec<Value> = thread_replies(&stand_in)
        .await
        .into_iter()
        .filter(|r| {
            r["text"]
                .as_str()
                .is_some_and(|t| t.contains("Closed: won"))
        })
        .collect();
    let edits = requests(&stand_in, "/api/chat.update")
        .await
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("Closed: won"))
        .count();
    assert!(!closes.is_empty());
    assert_eq!(closes.len(), edits, "one reply per edited message");
    assert!(closes.iter().any(|r| r["thread_ts"] == "1764150000.000100"));
}
