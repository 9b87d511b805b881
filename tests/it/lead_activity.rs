//! The rep's own buttons after the alert, in Slack and on the claim page: Called, E-mailed,
//! Meeting booked, Not a fit, and "Not mine" (re-routes past the rep and is counted against
//! the rule). Each press is checked in the store: the timeline step, the activity listed, the
//! owner's open-lead count.

use crate::claim_http::{config, notified_lead, post_slack, SLACK_SECRET};
use crate::support::Server;
use jiff::Timestamp;
use leadrelay_shared::claim_link;
use leadrelay_shared::model::{ActivityKind, Lead, LeadState, Outcome, Owner};
use leadrelay_shared::ports::LeadStore;
use leadrelay_shared::report::{Dimension, Hours};
use leadrelay_shared::stages::open_leads_counter;
use leadrelay_shared::stages::report::{speed_to_lead, ReportQuery};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const RESPONSE_PATH: &str = "/actions/T1/1/abc";

fn button(user: &str, action_id: &str, lead_id: &str, response_url: &str) -> Vec<u8> {
    encode(json!({
        "type": "block_actions",
        "user": {"id": user},
        "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": "lead_progress", "value": lead_id}]
    }))
}

fn not_mine(user: &str, code: &str, lead_id: &str, response_url: &str) -> Vec<u8> {
    encode(json!({
        "type": "block_actions",
        "user": {"id": user},
        "response_url": response_url,
        "actions": [{
            "action_id": "not_mine", "block_id": "lead_actions", "type": "static_select",
            "selected_option": {"value": format!("{code}:{lead_id}")}
        }]
    }))
}

fn encode(payload: Value) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes()
}

async fn slack_stand_in() -> MockServer {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(RESPONSE_PATH))
        .respond_with(ResponseTemplate::new(200))
        .mount(&slack)
        .await;
    slack
}

/// Posts one urlencoded form field, as the claim page's forms do.
async fn post_form(server: &Server, url: &str, name: &str, value: &str) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish();
    server
        .http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("post")
}

/// The lead as the store holds it now.
async fn stored(server: &Server, lead_id: &str) -> Lead {
    server
        .db
        .get_lead(lead_id)
        .await
        .expect("read")
        .expect("lead")
}

async fn open_leads(server: &Server, rep: &str) -> i64 {
    server
        .db
        .counter(&open_leads_counter(&Owner::Rep(rep.into())))
        .await
        .expect("counter")
}

async fn last_update(slack: &MockServer) -> Value {
    let requests = slack.received_requests().await.expect("recorded");
    serde_json::from_slice(&requests.last().expect("an update").body).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_buttons_record_the_touch_and_not_a_fit_closes_freeing_capacity() {
    let slack = slack_stand_in().await;
    let server = Server::start_with(&config(&slack)).await;
    let lead_id = notified_lead(&server, "buttons").await;
    let response_url = format!("{}{RESPONSE_PATH}", slack.uri());
    let now = Timestamp::now().as_second();
    assert_eq!(open_leads(&server, "erin").await, 1);

    // Called, before anyone claimed it: the lead is claimed for Erin and the call recorded.
    let answer = post_slack(
        &server,
        button("UERIN", "activity:called", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(answer.status(), 200);
    let lead = stored(&server, &lead_id).await;
    assert_eq!(lead.state, LeadState::Claimed);
    assert_eq!(lead.claim.as_ref().map(|c| c.rep.as_str()), Some("erin"));
    let touched = lead.timeline.first_touch_at.expect("first touch stamped");
    assert_eq!(lead.activities.len(), 1);
    assert_eq!(lead.activities[0].kind, ActivityKind::Called);
    assert_eq!(lead.activities[0].by.as_deref(), Some("erin"));
    assert_eq!(lead.activities[0].via, "slack");
    assert_eq!(lead.sla_watch_at(), None, "nobody escalates a touched lead");
    let update = last_update(&slack).await;
    assert!(
        update
            .to_string()
            .contains("*Called* recorded by Erin O'Brien"),
        "{update}"
    );
    assert_eq!(
        update["blocks"]
            .as_array()
            .expect("blocks")
            .last()
            .expect("block")["block_id"],
        "lead_progress"
    );

    // A second call later: listed, and the first touch stays the first.
    post_slack(
        &server,
        button("UERIN", "activity:emailed", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    let lead = stored(&server, &lead_id).await;
    assert_eq!(lead.activities.len(), 2);
    assert_eq!(lead.timeline.first_touch_at, Some(touched));

    // Grace cannot record on Erin's lead: told who has it, nothing changes.
    let refused = post_slack(
        &server,
        button("UGRACE", "activity:meeting_booked", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["response_type"], "ephemeral");
    assert!(
        body["text"]
            .as_str()
            .expect("text")
            .contains("erin claimed"),
        "{body}"
    );
    let unchanged = stored(&server, &lead_id).await;
    assert_eq!(unchanged.revision, lead.revision);

    // A press naming a lead that does not exist: told so, nothing stored.
    let ghost = post_slack(
        &server,
        button("UERIN", "activity:called", "no-such-lead", &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    let body: Value = ghost.json().await.expect("json");
    assert!(
        body["text"]
            .as_str()
            .expect("text")
            .contains("does not exist"),
        "{body}"
    );

    // A button that is not one of ours changes nothing.
    post_slack(
        &server,
        button("UERIN", "activity:won", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(stored(&server, &lead_id).await.revision, lead.revision);

    // Not a fit: closed as disqualified, and Erin's place is free at once.
    post_slack(
        &server,
        button("UERIN", "activity:disqualified", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    let closed = stored(&server, &lead_id).await;
    assert_eq!(closed.state, LeadState::Closed);
    assert_eq!(
        closed.close_reason.as_deref(),
        Some(Outcome::Disqualified.as_str())
    );
    assert_eq!(open_leads(&server, "erin").await, 0);
    let update = last_update(&slack).await;
    assert!(update.to_string().contains(":lock: Closed"), "{update}");
    assert!(
        update["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .all(|b| b["block_id"] != "lead_progress"),
        "no buttons on a closed lead"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_mine_routes_the_lead_past_the_rep_and_counts_against_the_rule() {
    let slack = slack_stand_in().await;
    let server = Server::start_with(&config(&slack)).await;
    let lead_id = notified_lead(&server, "notmine").await;
    let response_url = format!("{}{RESPONSE_PATH}", slack.uri());
    let now = Timestamp::now().as_second();
    let before = stored(&server, &lead_id).await;
    let rule = before.assignment.as_ref().expect("assigned").rule.clone();
    assert_eq!(
        before.assignment.as_ref().expect("assigned").owner,
        Owner::Rep("erin".into())
    );

    // Grace is not the owner: refused, nothing changes.
    let refused = post_slack(
        &server,
        not_mine("UGRACE", "wrong_region", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["text"]
            .as_str()
            .expect("text")
            .contains("only its owner"),
        "{body}"
    );
    // A made-up reason code is no press at all.
    post_slack(
        &server,
        not_mine("UERIN", "because", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(stored(&server, &lead_id).await.revision, before.revision);

    // Erin: not hers. Routed again, to someone else, and alerted as a new round.
    let answer = post_slack(
        &server,
        not_mine("UERIN", "wrong_region", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(answer.status(), 200);
    let rerouted = server.wait_for_state(&lead_id, "notified").await;
    assert_ne!(
        rerouted["owner"],
        json!({"kind": "rep", "id": "erin"}),
        "{rerouted}"
    );
    assert_eq!(rerouted["misroutes"][0]["rep"], "erin");
    assert_eq!(rerouted["misroutes"][0]["rule"], rule.as_str());
    assert_eq!(
        rerouted["misroutes"][0]["reason"],
        "Wrong region or territory"
    );
    assert_eq!(
        open_leads(&server, "erin").await,
        0,
        "Erin's place is freed"
    );
    let lead = stored(&server, &lead_id).await;
    let trace = lead
        .assignment
        .as_ref()
        .and_then(|a| a.trace.as_ref())
        .expect("trace");
    assert!(
        trace
            .steps
            .iter()
            .flat_map(|s| &s.candidates)
            .any(|c| c.rep == "erin" && c.reason.contains("said not mine")),
        "{trace:?}"
    );
    let update = last_update(&slack).await;
    assert!(
        update.to_string().contains("You handed it back"),
        "{update}"
    );

    // Counted against the rule that chose Erin: the report's routing accuracy for it.
    let query = ReportQuery {
        since: "1h".into(),
        until: None,
        by: Dimension::Rep,
        hours: Hours::Wall,
    };
    let report = speed_to_lead(&server.db, &server.config, &query, Timestamp::now())
        .await
        .expect("report");
    let accuracy = report
        .routing_accuracy
        .iter()
        .find(|r| r.rule == rule)
        .expect("the rule is in the report");
    assert_eq!((accuracy.leads, accuracy.misrouted), (1, 1), "{accuracy:?}");
    assert_eq!(report.totals.misrouted, 1);

    // Erin cannot hand back what is no longer hers.
    let again = post_slack(
        &server,
        not_mine("UERIN", "wrong_region", &lead_id, &response_url),
        now,
        SLACK_SECRET,
    )
    .await;
    let body: Value = again.json().await.expect("json");
    assert_eq!(body["response_type"], "ephemeral");
    assert_eq!(stored(&server, &lead_id).await.misroutes.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_page_records_what_happened_and_hands_a_lead_back_with_a_reason() {
    let slack = slack_stand_in().await;
    let server = Server::start_with(&config(&slack)).await;
    let lead_id = notified_lead(&server, "page").await;
    let link = |rep: &str| {
        claim_link::url_for(&server.config, &lead_id, rep, Timestamp::now())
            .expect("public_url is set")
            .replace("http://127.0.0.1:8080", &server.base)
    };
    let erin = link("erin");
    let (path, query) = erin.split_once('?').expect("a signed query");
    let activity = format!("{path}/activity?{query}");
    let hand_back = format!("{path}/not-mine?{query}");

    // The owner's page offers "Not mine" before the claim.
    let html = server
        .http
        .get(&erin)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    assert!(html.contains("/not-mine?"), "{html}");

    // Claim, then the page offers what happened next.
    let claimed = server.http.post(&erin).send().await.expect("post");
    assert_eq!(claimed.status(), 200);
    let html = server
        .http
        .get(&erin)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("What happened?") && html.contains("Meeting booked"),
        "{html}"
    );

    // A forged link records nothing.
    let forged = activity.replace("rep=erin", "rep=grace");
    let answer = post_form(&server, &forged, "kind", "called").await;
    assert_eq!(answer.status(), 403);
    // An unknown kind is refused.
    let answer = post_form(&server, &activity, "kind", "won").await;
    assert_eq!(answer.status(), 400);
    assert!(stored(&server, &lead_id).await.activities.is_empty());

    let answer = post_form(&server, &activity, "kind", "meeting_booked").await;
    assert_eq!(answer.status(), 200);
    let lead = stored(&server, &lead_id).await;
    assert!(lead.timeline.meeting_booked_at.is_some());
    assert_eq!(
        lead.timeline.first_touch_at, None,
        "a booking is not a touch"
    );
    assert_eq!(lead.activities[0].via, "link");

    // "Not mine" needs a reason.
    let answer = server.http.post(&hand_back).send().await.expect("post");
    assert_eq!(answer.status(), 400);
    let answer = post_form(&server, &hand_back, "reason", "has_owner").await;
    assert_eq!(answer.status(), 200);
    let rerouted = server.wait_for_state(&lead_id, "notified").await;
    assert_eq!(
        rerouted["misroutes"][0]["reason"],
        "Someone else owns the account"
    );
    assert_eq!(
        rerouted["claimed_by"],
        Value::Null,
        "the next owner claims afresh"
    );
    server.stop().await;
}
