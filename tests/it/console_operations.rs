//! The console's operations pages over `leadrelay serve`: dead letters with their error, the
//! replay's preview then the replay (audit-logged), the configuration with no secret shown,
//! the what-if of a rule change, and the 403s for everyone but an operator and for a forged
//! form.

use std::time::Duration;

use leadrelay_shared::model::Stage;
use leadrelay_shared::ports::DeadLetters;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::console::{hidden, ConsoleSession, ALICE, MANAGER, OPERATOR};
use crate::support::{eventually, example_config, sample, with_retry_schedule, Edit, Server};

const LEAD: &str = "02-capture-emea-pricing.json"; // routes to rep bruno (pool emea-ae)
const HOOK: &str = "/services/T000/B000/OPSTESTSECRET";

async fn get(session: &ConsoleSession, path: &str) -> (u16, String) {
    let page = session.get(path).await;
    (page.status, page.body)
}

/// Posts with the session's CSRF token: status, `Location`, body.
async fn post(
    session: &ConsoleSession,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let page = session.post(path, fields).await;
    (page.status, page.location.unwrap_or_default(), page.body)
}

/// Posts exactly `fields`: status, `Location`, body.
async fn post_raw(
    session: &ConsoleSession,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let page = session.post_raw(path, fields).await;
    (page.status, page.location.unwrap_or_default(), page.body)
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
        .edit(
            "http_timeout_ms = 5000",
            "http_timeout_ms = 5000\nmax_attempts = 1",
        );
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
    let ops = ConsoleSession::sign_in(&server, OPERATOR).await;

    let (status, page) = get(&ops, "/console/operations").await;
    assert_eq!(status, 200);
    assert!(page.contains(&message_id), "{page}");
    assert!(page.contains(&format!("href=\"/console/leads/{lead_id}\"")));
    assert!(
        page.contains("slack answered 500"),
        "the error is shown: {page}"
    );
    // Looking hid nothing: the letter is still listed.
    assert_eq!(notify_dead_letters(&server).await, 1);

    // Slack recovers. The first POST is the dry run: it lists the letter and replays nothing.
    slack.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&slack)
        .await;
    let selection = [("stage", "notify"), ("message_id", message_id.as_str())];
    let (status, _, preview) = post(&ops, "/console/operations/replay", &selection).await;
    assert_eq!(status, 200);
    assert!(preview.contains(&message_id), "{preview}");
    assert!(preview.contains("Replay 1 message<"), "{preview}");
    assert!(preview.contains("idempotent"));
    assert_eq!(hidden(&preview, "confirm").unwrap_or_default(), "yes");
    assert_eq!(hidden(&preview, "ids").unwrap_or_default(), message_id);
    assert_eq!(
        notify_dead_letters(&server).await,
        1,
        "a preview replays nothing"
    );
    assert_eq!(server.lead(&lead_id).await.body["state"], "routed");

    // Confirmed, with the form the preview gave.
    let confirm = [
        ("stage", "notify"),
        ("message_id", message_id.as_str()),
        ("ids", message_id.as_str()),
        ("confirm", "yes"),
    ];
    let (status, location, _) = post(&ops, "/console/operations/replay", &confirm).await;
    assert_eq!(status, 303);
    assert_eq!(location, "/console/operations?replayed=1");
    assert_eq!(notify_dead_letters(&server).await, 0);
    server.wait_for_state(&lead_id, "notified").await;
    assert_eq!(server.terminal.alerts_for(&lead_id), 1, "no second alert");

    let (status, log) = get(&ops, "/console/audit").await;
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
    for account in [MANAGER, ALICE] {
        let browser = ConsoleSession::sign_in(&server, account).await;
        for page in ["/console/operations", "/console/audit"] {
            let (status, body) = get(&browser, page).await;
            assert_eq!(status, 403, "{} GET {page}", account.0);
            assert!(!body.contains(&message_id));
        }
        let replay = [
            ("stage", "notify"),
            ("message_id", message_id.as_str()),
            ("confirm", "yes"),
        ];
        let (status, _, _) = post(&browser, "/console/operations/replay", &replay).await;
        assert_eq!(status, 403, "{} replays", account.0);
        let config = example_config();
        let what_if = [("config", config.as_str()), ("days", "7")];
        let (status, _, _) = post(&browser, "/console/operations/what-if", &what_if).await;
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
    let ops = ConsoleSession::sign_in(&server, OPERATOR).await;
    let confirm = [
        ("stage", "notify"),
        ("message_id", message_id.as_str()),
        ("confirm", "yes"),
    ];
    let (status, _, _) = post_raw(&ops, "/console/operations/replay", &confirm).await;
    assert_eq!(status, 403, "no token");
    let mut forged = confirm.to_vec();
    forged.push((
        "csrf",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ));
    let (status, _, _) = post_raw(&ops, "/console/operations/replay", &forged).await;
    assert_eq!(status, 403, "a token not this session's");
    let what_if = [("config", "x = 1"), ("days", "7")];
    let (status, _, _) = post_raw(&ops, "/console/operations/what-if", &what_if).await;
    assert_eq!(status, 403);

    assert_eq!(notify_dead_letters(&server).await, 1, "nothing replayed");
    assert_eq!(server.lead(&lead_id).await.body["state"], "routed");
    let (_, log) = get(&ops, "/console/audit").await;
    assert!(!log.contains(">replay<"), "{log}");
    assert!(!log.contains(">what-if<"), "{log}");
    server.stop().await;
}

#[tokio::test]
async fn the_configuration_is_shown_without_a_secret_value() {
    let slack = slack_answering(200).await;
    let config = config_with_slack(&slack);
    let server = Server::start_with(&config).await;
    let ops = ConsoleSession::sign_in(&server, OPERATOR).await;
    let (status, page) = get(&ops, "/console/operations").await;
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
        assert!(
            !page.contains(secret),
            "{secret} shown on the operations page"
        );
    }
    assert!(page.contains("(secret)"));
    // The rest is there to read.
    for shown in [
        "Americas sales",
        "fallback_queue",
        "emea-ae",
        "http://127.0.0.1:8080",
    ] {
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
    let ops = ConsoleSession::sign_in(&server, OPERATOR).await;

    // EMEA leads to Fatima alone instead of the EMEA pool.
    let changed = example_config().edit("assign.pool = \"emea-ae\"", "assign.rep = \"fatima\"");
    let (status, _, page) = post(
        &ops,
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
    let (status, _, page) = post(
        &ops,
        "/console/operations/what-if",
        &[("config", broken.as_str()), ("days", "7")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("pasted configuration:"), "{page}");

    let (_, log) = get(&ops, "/console/audit").await;
    assert!(log.contains(">what-if<"), "{log}");
    assert!(log.contains("1 would move"), "{log}");
    server.stop().await;
}

/// On AWS the console function reads its configuration's `*_env` names from SSM, not from its
/// environment: a pasted configuration naming the same secrets loads with them.
#[tokio::test]
async fn a_what_if_reads_the_secrets_the_console_was_given() {
    use leadrelay_console::{router, Console};
    use leadrelay_shared::ports::ConsoleStore;
    use std::sync::Arc;

    let app = crate::support::EmbeddedApp::open(crate::support::parse_config(&example_config()));
    let db = app.embedded.db.clone();
    let console_store: Arc<dyn ConsoleStore> = Arc::new(db.clone());
    let secret = "whsec_bGVhZHJlbGF5LWRlbW8tc2VjcmV0LWNoYW5nZS1tZSE=";
    let routes = |with_secrets: bool| {
        let console = Console::new(app.embedded.pipeline.clone(), console_store.clone(), None);
        router(if with_secrets {
            console.with_secrets(move |name| {
                (name == "WEBSITE_SECRETS_IN_SSM").then(|| secret.to_owned())
            })
        } else {
            console
        })
    };
    // The website source's secret named, not inline, as a deployment keeps it.
    let pasted = example_config().edit(
        &format!("secrets = [\"{secret}\"]"),
        "secrets_env = \"WEBSITE_SECRETS_IN_SSM\"",
    );
    for (with_secrets, expected) in [(true, 200), (false, 422)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let served = routes(with_secrets);
        let task = tokio::spawn(async move { axum::serve(listener, served).await });
        let ops = ConsoleSession::sign_in_at(&base, OPERATOR).await;
        let answer = ops
            .post(
                "/console/operations/what-if",
                &[("config", pasted.as_str()), ("days", "7")],
            )
            .await;
        assert_eq!(
            answer.status, expected,
            "with secrets: {with_secrets}: {}",
            answer.body
        );
        if !with_secrets {
            assert!(
                answer.body.contains("WEBSITE_SECRETS_IN_SSM"),
                "{}",
                answer.body
            );
        }
        task.abort();
    }
}
