//! Claiming over HTTP against the embedded server: a signed link (open, then confirm) and the
//! Slack Claim button (a request signed with Slack's scheme), with the alert updated in place
//! at a local stand-in for Slack's `response_url`.

use crate::support::{example_config, sample, Edit, Server};
use jiff::Timestamp;
use leadrelay_shared::claim_link;
use leadrelay_shared::signature::SigningKey;
use leadrelay_web::claim_http::slack_headers;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Slack's published example signing secret.
pub(crate) const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

pub(crate) fn config(slack: &MockServer) -> String {
    example_config()
        .edit(
            "# slack_signing_secrets_env = \"SLACK_SIGNING_SECRET\"",
            &format!(
                "slack_signing_secrets = [\"{SLACK_SECRET}\"]\nslack_response_url_prefix = \"{}/\"",
                slack.uri()
            ),
        )
        .edit(
            "id = \"erin\"\n",
            "id = \"erin\"\nslack_user_id = \"UERIN\"\n",
        )
        .edit(
            "id = \"grace\"\n",
            "id = \"grace\"\nslack_user_id = \"UGRACE\"\n",
        )
}

/// Posts the tier-1 sample as a new person and waits until its alert is delivered.
pub(crate) async fn notified_lead(server: &Server, who: &str) -> String {
    let body = String::from_utf8(sample("01-fallback-named-account.json"))
        .expect("utf-8")
        .edit("jane.doe@", &format!("{who}@"));
    let answer = server
        .send("website", &format!("evt-{who}"), body.as_bytes())
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let lead_id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    server.wait_for_state(&lead_id, "notified").await;
    lead_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_link_opens_a_confirm_page_and_claims_only_on_post() {
    let slack = MockServer::start().await;
    let server = Server::start_with(&config(&slack)).await;
    let lead_id = notified_lead(&server, "link").await;
    let url = claim_link::url_for(&server.config, &lead_id, "grace", Timestamp::now())
        .expect("public_url is set");
    let url = url.replace("http://127.0.0.1:8080", &server.base);

    // Opening it (as a mail scanner would) claims nothing.
    let page = server.http.get(&url).send().await.expect("get");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("<form method=\"post\""), "{html}");
    assert!(
        html.contains("Jane Doe"),
        "the page says which lead: {html}"
    );
    assert_eq!(server.lead(&lead_id).await.body["state"], "notified");

    // A link altered to another rep is refused, and changes nothing.
    let forged = url.replace("rep=grace", "rep=alice");
    let refused = server.http.post(&forged).send().await.expect("post");
    assert_eq!(refused.status(), 403);
    assert_eq!(server.lead(&lead_id).await.body["state"], "notified");
    // So is one for another lead.
    let other = url.replace(&lead_id, "some-other-lead");
    assert_eq!(
        server
            .http
            .post(&other)
            .send()
            .await
            .expect("post")
            .status(),
        403
    );

    // Confirming claims it.
    let claimed = server.http.post(&url).send().await.expect("post");
    assert_eq!(claimed.status(), 200);
    let html = claimed.text().await.expect("html");
    assert!(html.contains("You own this lead now"), "{html}");
    assert!(html.contains("First response"), "{html}");
    let summary = server.lead(&lead_id).await.body;
    assert_eq!(summary["state"], "claimed");
    assert_eq!(summary["claimed_by"], "grace");
    assert_eq!(
        summary["claim_allowed"],
        "owner (the default for a lead a rep owns): the backup of Erin O'Brien"
    );
    assert_eq!(summary["owner"], json!({"kind": "rep", "id": "grace"}));
    assert!(summary["timeline"]["claimed_at"].is_string());

    // Alice's own link, later: told who owns it.
    let alice = claim_link::url_for(&server.config, &lead_id, "alice", Timestamp::now())
        .expect("link")
        .replace("http://127.0.0.1:8080", &server.base);
    let late = server.http.post(&alice).send().await.expect("post");
    assert_eq!(late.status(), 409);
    assert!(late
        .text()
        .await
        .expect("html")
        .contains("Already claimed by grace"));
    server.stop().await;
}

fn press(user: &str, lead_id: &str, response_url: &str) -> Vec<u8> {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user},
        "response_url": response_url,
        "actions": [{"action_id": "claim", "block_id": "lead_actions", "value": lead_id}]
    });
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes()
}

pub(crate) async fn post_slack(
    server: &Server,
    body: Vec<u8>,
    timestamp: i64,
    secret: &str,
) -> reqwest::Response {
    let key = SigningKey::plain(secret).expect("key");
    let mut request = server
        .http
        .post(format!("{}/slack/interactivity", server.base))
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in slack_headers(&key, timestamp, &body).iter() {
        request = request.header(name, value);
    }
    request.body(body).send().await.expect("post")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slack_claim_button_claims_and_updates_the_alert_in_place() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/actions/T1/1/abc"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&slack)
        .await;
    let server = Server::start_with(&config(&slack)).await;
    let lead_id = notified_lead(&server, "slack").await;
    let response_url = format!("{}/actions/T1/1/abc", slack.uri());
    let now = Timestamp::now().as_second();

    // Forged (wrong secret) and replayed (stale timestamp) presses are refused.
    let forged = post_slack(
        &server,
        press("UERIN", &lead_id, &response_url),
        now,
        "not-the-signing-secret",
    )
    .await;
    assert_eq!(forged.status(), 401);
    let stale = post_slack(
        &server,
        press("UERIN", &lead_id, &response_url),
        now - 301,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(stale.status(), 401);
    assert_eq!(server.lead(&lead_id).await.body["state"], "notified");

    // Alice presses Claim: hers, and the alert is replaced in place without its buttons.
    let answer = post_slack(
        &server,
        press("UERIN", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(answer.status(), 200);
    let summary = server.lead(&lead_id).await.body;
    assert_eq!(summary["state"], "claimed");
    assert_eq!(summary["claimed_by"], "erin");
    let updates = slack.received_requests().await.expect("recorded");
    assert_eq!(updates.len(), 1);
    let update: Value = serde_json::from_slice(&updates[0].body).expect("json");
    assert_eq!(update["replace_original"], true);
    let blocks = update["blocks"].as_array().expect("blocks");
    assert!(
        blocks.iter().all(|b| b["block_id"] != "lead_actions"),
        "buttons gone"
    );
    let claimed = blocks
        .iter()
        .find(|b| b["block_id"] == "status")
        .expect("a status block");
    let text = claimed["elements"][0]["text"].as_str().expect("text");
    // The owner keeps the buttons that record what happened next.
    let progress = blocks.last().expect("a block");
    assert_eq!(progress["block_id"], "lead_progress");
    assert_eq!(progress["elements"][0]["action_id"], "activity:called");
    assert!(text.contains("Claimed by *Erin O'Brien*"), "{text}");
    assert!(text.contains("First response"), "{text}");
    assert!(
        blocks.iter().any(|b| b.to_string().contains("Jane Doe")),
        "the rest of the alert stays"
    );

    // Dana, a moment later: told, only her, who owns it; the message is left alone.
    let late = post_slack(
        &server,
        press("UGRACE", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(late.status(), 200);
    let body: Value = late.json().await.expect("json");
    assert_eq!(body["response_type"], "ephemeral");
    assert_eq!(body["replace_original"], false);
    assert!(body["text"]
        .as_str()
        .expect("text")
        .contains("Already claimed by erin"));
    assert_eq!(slack.received_requests().await.expect("recorded").len(), 1);

    // Someone Slack knows but leadrelay does not: told how to fix it, nothing claimed.
    let other = notified_lead(&server, "stranger").await;
    let unknown = post_slack(
        &server,
        press("UNOBODY", &other, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    let body: Value = unknown.json().await.expect("json");
    assert!(body["text"]
        .as_str()
        .expect("text")
        .contains("slack_user_id"));
    assert_eq!(server.lead(&other).await.body["state"], "notified");

    // A response_url off Slack's host is never called.
    let third = notified_lead(&server, "third").await;
    let answer = post_slack(
        &server,
        press("UGRACE", &third, "https://evil.example/x"),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(server.lead(&third).await.body["claimed_by"], "grace");
    assert_eq!(slack.received_requests().await.expect("recorded").len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_url_is_called_once_never_redirected_nor_let_through_by_a_look_alike() {
    let slack = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    // Slack's stand-in answers the update with a redirect that would re-post the claimed
    // alert, prospect and all, to another host.
    Mock::given(method("POST"))
        .and(path("/actions/T1/1/abc"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/collect", elsewhere.uri())),
        )
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    let server = Server::start_with(&config(&slack)).await;
    let now = Timestamp::now().as_second();

    let lead_id = notified_lead(&server, "redirected").await;
    let response_url = format!("{}/actions/T1/1/abc", slack.uri());
    let answer = post_slack(
        &server,
        press("UERIN", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(server.lead(&lead_id).await.body["claimed_by"], "erin");
    assert_eq!(slack.received_requests().await.expect("recorded").len(), 1);
    assert!(
        elsewhere
            .received_requests()
            .await
            .expect("recorded")
            .is_empty(),
        "the redirect was followed"
    );

    // A URL that starts like the allowed one but, read as a URL, names another host (the
    // allowed one is only its user name) is not called.
    let slack_host = slack.uri().replace("http://", "");
    let elsewhere_host = elsewhere.uri().replace("http://", "");
    let look_alike = format!("http://{slack_host}@{elsewhere_host}/actions/T1/1/abc");
    let lead_id = notified_lead(&server, "lookalike").await;
    let answer = post_slack(
        &server,
        press("UGRACE", &lead_id, &look_alike),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(server.lead(&lead_id).await.body["claimed_by"], "grace");
    assert_eq!(slack.received_requests().await.expect("recorded").len(), 1);
    assert!(elsewhere
        .received_requests()
        .await
        .expect("recorded")
        .is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_the_claim_policy_refuses_is_told_who_owns_it_and_nothing_changes() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&slack)
        .await;
    // The named account's owner, Erin, under a name that must be escaped; Bruno (EMEA) is
    // neither her backup nor a manager: under the default `owner` he may not claim her lead.
    let text = config(&slack)
        .edit("name = \"Erin O'Brien\"", "name = \"Erin <O'Brien> & co\"")
        .edit(
            "id = \"bruno\"\n",
            "id = \"bruno\"\nslack_user_id = \"UBRUNO\"\n",
        );
    let server = Server::start_with(&text).await;
    let lead_id = notified_lead(&server, "refused").await;
    let before = server.lead(&lead_id).await.body;
    let url = claim_link::url_for(&server.config, &lead_id, "bruno", Timestamp::now())
        .expect("public_url is set")
        .replace("http://127.0.0.1:8080", &server.base);

    // His (validly signed) link: no button, and a confirm is refused, naming the owner.
    for response in [
        server.http.get(&url).send().await.expect("get"),
        server.http.post(&url).send().await.expect("post"),
    ] {
        assert_eq!(response.status(), 403);
        let html = response.text().await.expect("html");
        assert!(
            html.contains("Erin &lt;O'Brien&gt; &amp; co owns this lead."),
            "{html}"
        );
        assert!(html.contains("claim = \"owner\""), "{html}");
        assert!(!html.contains("<O'Brien>"), "escaped: {html}");
        assert!(!html.contains("<form"), "no Claim button: {html}");
    }

    // His Slack press: told, only him, and the alert is left alone.
    let response_url = format!("{}/actions/T1/1/abc", slack.uri());
    let answer = post_slack(
        &server,
        press("UBRUNO", &lead_id, &response_url),
        Timestamp::now().as_second(),
        SLACK_SECRET,
    )
    .await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["response_type"], "ephemeral");
    assert_eq!(body["replace_original"], false);
    let said = body["text"].as_str().expect("text");
    assert!(
        said.contains("Erin &lt;O'Brien&gt; &amp; co owns this lead."),
        "{said}"
    );
    assert!(slack
        .received_requests()
        .await
        .expect("recorded")
        .is_empty());

    assert_eq!(server.lead(&lead_id).await.body, before, "nothing changed");
    server.stop().await;
}
