//! The console's operations pages over `leadrelay serve`: dead letters with their error, the
//! replay's preview then the replay (audit-logged), the configuration with no secret shown,
//! the what-if of a rule change, and the 403s for everyone but an operator and for a forged
//! form.

use std::time::Duration;

use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::DeadLetters;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{eventually, example_config, sample, with_retry_schedule, Edit, Server};

const LEAD: &str = "02-capture-emea-pricing.json"; // routes to rep bruno (pool emea-ae)
const OPERATOR: (&str, &str) = ("ops@yourco.example", "leadrelay-demo-operator");
const MANAGER: (&str, &str) = ("manager@yourco.example", "leadrelay-demo-manager");
const REP: (&str, &str) = ("alice@yourco.example", "leadrelay-demo-alice");
const HOOK: &str = "/services/T000/B000/OPSTESTSECRET";

/// A signed-in browser: its session cookie and the session's CSRF token.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

/// The `name=value` of the cookie `name` a response sets.
fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"))
        .to_owned()
}

/// A form body as a browser sends it.
fn encode(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The value of the hidden field `name` in a page.
fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap_or_default().to_owned()
}

impl Browser {
    async fn sign_in(server: &Server, (login, password): (&str, &str)) -> Browser {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("client");
        let base = server.base.clone();
        let form = http
            .get(format!("{base}/console/login"))
            .send()
            .await
            .expect("login page");
        let login_cookie = set_cookie(&form, "__Host-leadrelay-login");
        let login_csrf = field(&form.text().await.expect("page"), "login_csrf");
        let signed = http
            .post(format!("{base}/console/login"))
            .header(COOKIE, login_cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(&[
                ("login", login),
                ("password", password),
                ("login_csrf", login_csrf.as_str()),
                ("next", "/console/leads"),
            ]))
            .send()
            .await
            .expect("sign in");
        assert_eq!(signed.status(), 303, "{login} signs in");
        let cookie = set_cookie(&signed, "__Host-leadrelay-session");
        let mut browser = Browser {
            http,
            base,
            cookie,
            csrf: String::new(),
        };
        let (_, leads) = browser.get("/console/leads").await;
        browser.csrf = field(&leads, "csrf");
        browser
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// Posts `fields` as they are (no CSRF token added): status, `Location`, body.
    async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(fields))
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, location, response.text().await.expect("body"))
    }

    /// Posts `fields` with this session's CSRF token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let mut with_csrf = fields.to_vec();
        with_csrf.push(("csrf", &self.csrf));
        self.post_raw(path, &with_csrf).await
    }
}

/// The example configuration with Slack for bruno at `slack`, one attempt per delivery and
/// three receives 10 ms apart: a Slack outage dead-letters the alert within the test.
fn config_with_slack(slack: &MockServer) -> String {
    let config = example_config()
        .edit(
            "email = \"bruno@yourco.example\"",
            &format!(
                "email = \"bruno@yourco.example\"\nslack_webhook_url = \"{}{HOOK}\"",
                slack.uri()
            ),
        )
        .edit("http_timeout_ms = 5000", "http_timeout_ms = 5000\nmax_attempts = 1");
    with_retry_schedule(&config, &["10ms", "10ms"], 3)
}

async fn slack_answering(status: u16) -> MockServer {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK))
        .respond_with(ResponseTemplate::new(status))
        .mount(&slack)
        .await;
    slack
}

/// Sends the EMEA lead while Slack fails, and waits for its notify dead letter.
async fn dead_lettered_lead(server: &Server) -> (String, String) {
    let answer = server.send("website", "msg_ops", &sample(LEAD)).await;
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
    assert_eq!(dead[0].lead_id.as_deref(), Some(lead_id.as_str()));
    (lead_id, dead[0].message_id.clone())
}

async fn notify_dead_letters(server: &Server) -> usize {
    server
        .db
        .list(Stage::Notify, 100, Duration::ZERO)
        .await
        .expect("list")
        .len()
}

#[tokio::test]
async fn an_operator_sees_a_dead_letter_with_its_error_previews_and_replays_it() {
    let slack = slack_answering(500).await;
    let server = Server::start_with(&config_with_slack(&slack)).await;
    let (lead_id, message_id) = dead_lettered_lead(&server).await;
    let ops = Browser::sign_in(&server, OPERATOR).await;

    let (status, page) = ops.get("/console/operations").await;
    assert_eq!(status, 200);
    assert!(page.contains(&message_id), "{page}");
    assert!(page.contains(&format!("href=\"/console/leads/{lead_id}\"")));
    assert!(page.contains("slack answered 500"), "the error is shown: {page}");
    // Looking hid nothing: the letter is still listed.
    assert_eq!(notify_dead_letters(&server).await, 1);

    // Slack recovers. The first POST is the dry run: it lists the letter and replays nothing.
    slack.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&slack)
        .await;
    let selection = [("stage", "notify"), ("message_id", message_id.as_str())];
    let (status, _, preview) = ops.post("/console/operations/replay", &selection).await;
    assert_eq!(status, 200);
    assert!(preview.contains(&message_id), "{preview}");
    assert!(preview.contains("Replay 1 message<"), "{preview}");
    assert!(preview.contains("idempotent"));
    assert_eq!(field(&preview, "confirm"), "yes");
    assert_eq!(field(&preview, "ids"), message_id);
    assert_eq!(notify_dead_letters(&server).await, 1, "a preview replays nothing");
    assert_eq!(server.lead(&lead_id).await.body["state"], "routed");

    // Confirmed, with the form the preview gave.
    let confirm = [
        ("stage", "notify"),
        ("message_id", message_id.as_str()),
        ("ids", message_id.as_str()),
        ("confirm", "yes"),
    ];
    let (status, location, _) = ops.post("/console/operations/replay", &confirm).await;
    assert_eq!(status, 303);
    assert_eq!(location, "/console/operations?replayed=1");
    assert_eq!(notify_dead_letters(&server).await, 0);
    server.wait_for_state(&lead_id, "notified").await;
    assert_eq!(server.terminal.alerts_for(&lead_id), 1, "no second alert");

    let (status, log) = ops.get("/console/audit").await;
    assert_eq!(status, 200);
    let row = log
        .split("<tr>")
        .find(|row| row.contains(">replay<"))
        .unwrap_or_else(|| panic!("a replay entry in {log}"));
    assert!(row.contains(OPERATOR.0), "{row}");
    assert!(row.contains(&format!("replayed 1: {message_id}")), "{row}");
    server.stop().await;
}

#[tokio::test]
async fn managers_and_reps_are_refused_every_operations_route() {
    let slack = slack_answering(500).await;
    let server = Server::start_with(&config_with_slack(&slack)).await;
    let (_, message_id) = dead_lettered_lead(&server).await;
    for account in [MANAGER, REP] {
        let browser = Browser::sign_in(&server, account).await;
        for page in ["/console/operations", "/console/audit"] {
            let (status, body) = browser.get(page).await;
            assert_eq!(status, 403, "{} GET {page}", account.0);
            assert!(!body.contains(&message_id));
        }
        let replay = [
            ("stage", "notify"),
            ("message_id", message_id.as_str()),
            ("confirm", "yes"),
        ];
        let (status, _, _) = browser.post("/console/operations/replay", &replay).await;
        assert_eq!(status, 403, "{} replays", account.0);
        let config = example_config();
        let what_if = [("config", config.as_str()), ("days", "7")];
        let (status, _, _) = browser.post("/console/operations/what-if", &what_if).await;
        assert_eq!(status, 403, "{} runs a what-if", account.0);
    }
    assert_eq!(notify_dead_letters(&server).await, 1, "nothing replayed");
    server.stop().await;
}

#[tokio::test]
async fn a_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing() {
    let slack = slack_answering(500).await;
    let server = Server::start_with(&config_with_slack(&slack)).await;
    let (lead_id, message_id) = dead_lettered_lead(&server).await;
    let ops = Browser::sign_in(&server, OPERATOR).await;
    let confirm = [
        ("stage", "notify"),
        ("message_id", message_id.as_str()),
        ("confirm", "yes"),
    ];
    let (status, _, _) = ops.post_raw("/console/operations/replay", &confirm).await;
    assert_eq!(status, 403, "no token");
    let mut forged = confirm.to_vec();
    forged.push(("csrf", "0000000000000000000000000000000000000000000000000000000000000000"));
    let (status, _, _) = ops.post_raw("/console/operations/replay", &forged).await;
    assert_eq!(status, 403, "a token not this session's");
    let what_if = [("config", "x = 1"), ("days", "7")];
    let (status, _, _) = ops.post_raw("/console/operations/what-if", &what_if).await;
    assert_eq!(status, 403);

    assert_eq!(notify_dead_letters(&server).await, 1, "nothing replayed");
    assert_eq!(server.lead(&lead_id).await.body["state"], "routed");
    let (_, log) = ops.get("/console/audit").await;
    assert!(!log.contains(">replay<"), "{log}");
    assert!(!log.contains(">what-if<"), "{log}");
    server.stop().await;
}

#[tokio::test]
async fn the_configuration_is_shown_without_a_secret_value() {
    let slack = slack_answering(200).await;
    let config = config_with_slack(&slack);
    let server = Server::start_with(&config).await;
    let ops = Browser::sign_in(&server, OPERATOR).await;
    let (status, page) = ops.get("/console/operations").await;
    assert_eq!(status, 200);
    let secrets = [
        // The inline secrets of the shipped example: sources, claim links, password hashes.
        "whsec_bGVhZHJlbGF5LWRlbW8tc2VjcmV0LWNoYW5nZS1tZSE=",
        "bGVhZHJlbGF5LWRlbW8tc2VjcmV0",
        "forms-demo-secret-change-me",
        "claim-links-demo-secret-change-me",
        "$argon2id$",
        "7wyhEBou",
        // A rep's Slack webhook URL.
        "OPSTESTSECRET",
    ];
    for secret in secrets {
        assert!(config.contains(secret), "the test config has {secret}");
        assert!(!page.contains(secret), "{secret} shown on the operations page");
    }
    assert!(page.contains("(secret)"));
    // The rest is there to read.
    for shown in ["Americas sales", "fallback_queue", "emea-ae", "http://127.0.0.1:8080"] {
        assert!(page.contains(shown), "{shown} missing");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_what_if_shows_the_lead_a_rule_change_would_move() {
    let server = Server::start_with(&example_config()).await;
    let answer = server.send("website", "msg_what_if", &sample(LEAD)).await;
    assert_eq!(answer.status, 202);
    let lead_id = answer.body["lead_id"].as_str().expect("id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;
    let ops = Browser::sign_in(&server, OPERATOR).await;

    // EMEA leads to Fatima alone instead of the EMEA pool.
    let changed = example_config().edit("assign.pool = \"emea-ae\"", "assign.rep = \"fatima\"");
    let (status, _, page) = ops
        .post(
            "/console/operations/what-if",
            &[("config", changed.as_str()), ("days", "7")],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let row = page
        .split("<tr>")
        .find(|row| row.contains(&lead_id))
        .unwrap_or_else(|| panic!("{lead_id} listed as moved in {page}"));
    assert!(row.contains("pool:emea-ae"), "{row}");
    assert!(row.contains("rep:fatima"), "{row}");
    assert!(row.contains("EMEA"), "the rule: {row}");
    assert!(page.contains("Nothing was written"));
    // Nothing written: the lead keeps its owner.
    let lead = server.lead(&lead_id).await.body;
    assert_eq!(lead["state"], "notified");

    // A configuration that does not load says why, with its line.
    let broken = changed.edit_first("name = \"Americas sales\"", "name = Americas sales");
    let (status, _, page) = ops
        .post(
            "/console/operations/what-if",
            &[("config", broken.as_str()), ("days", "7")],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("pasted configuration:"), "{page}");

    let (_, log) = ops.get("/console/audit").await;
    assert!(log.contains(">what-if<"), "{log}");
    assert!(log.contains("1 would move"), "{log}");
    server.stop().await;
}
