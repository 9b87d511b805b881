//! Duplicates end to end over the embedded store: a second lead from the same person within
//! the merge window joins the open lead (same owner, told so, counted once); outside the
//! window, after the first lead is closed, or from another address, it is routed as usual.
//! A body-signed request replayed with a fresh event id within the source's replay window is
//! the first lead again, over HTTP.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{
    example_config, parse_config, sample, signed_header_map, signed_webhook, Edit, ManualPipeline,
};
use jiff::{SignedDuration, Timestamp};
use leadrelay_shared::model::{Envelope, Lead, LeadState, Stage};
use leadrelay_shared::ports::{LeadStore, Queue};
use leadrelay_shared::routing::open_leads_counter;
use leadrelay_shared::stages::close::close_lead;
use leadrelay_web::{router, Api};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const LEAD: &str = "02-capture-emea-pricing.json"; // Tom Baker, EMEA
const TOM: &str = "tom.baker@sales.initech.co.uk";

/// The stage code worked by hand, and the Slack stand-in every EMEA rep posts to.
struct Setup {
    manual: ManualPipeline,
    slack: MockServer,
}

impl std::ops::Deref for Setup {
    type Target = ManualPipeline;

    fn deref(&self) -> &ManualPipeline {
        &self.manual
    }
}

/// The example config, every EMEA rep with the same Slack webhook (so the test sees whom an
/// alert was for in its recipient), and `merge` appended to `[routing]`.
async fn setup(merge: &str) -> Setup {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let hook = format!("{}/hook", slack.uri());
    let text = example_config()
        .edit(
            "email = \"bruno@yourco.example\"",
            &format!("email = \"bruno@yourco.example\"\nslack_webhook_url = \"{hook}\""),
        )
        .edit(
            "email = \"fatima@yourco.example\"",
            &format!("email = \"fatima@yourco.example\"\nslack_webhook_url = \"{hook}\""),
        )
        .edit(
            "fallback_queue = \"sales-inbox\"",
            &format!("fallback_queue = \"sales-inbox\"\n{merge}"),
        );
    let manual = ManualPipeline::with_channels(
        parse_config(&text),
        Timestamp::now(),
        Duration::from_secs(5),
        |channels| channels,
    );
    Setup { manual, slack }
}

impl Setup {
    /// Posts the sample webhook from `email` (signed now), then works every stage with the
    /// clock at `route_at`; returns the lead as stored.
    async fn lead_from(&self, event_id: &str, email: &str, route_at: Timestamp) -> Lead {
        let mut body: Value = serde_json::from_slice(&sample(LEAD)).expect("sample");
        body["captured_email"] = Value::String(email.to_owned());
        let body = serde_json::to_vec(&body).expect("json");
        let headers = signed_header_map(&self.pipeline.config, "website", event_id, &body);
        // Signatures are checked against the real time; routing runs at `route_at`.
        self.clock.set(Timestamp::now());
        let accepted = self
            .pipeline
            .ingest("website", &headers, &body)
            .await
            .expect("accepted");
        self.clock.set(route_at);
        self.drain().await;
        self.lead(&accepted.lead_id).await
    }

    /// Serves the HTTP API over this pipeline (and its hand clock) on a loopback port; the
    /// test works the stages with [`Setup::drain`].
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = router(Api::new(
            self.pipeline.clone(),
            Arc::new(AtomicBool::new(true)),
        ));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        base
    }

    /// Posts `body` to `/webhooks/{source}`, signed for it with this event id.
    async fn post(&self, base: &str, source: &str, event_id: &str, body: &[u8]) -> (u16, Value) {
        let request = signed_webhook(
            &crate::support::http_client(),
            base,
            &self.pipeline.config,
            source,
            event_id,
            body,
        );
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json answer"))
    }

    async fn open_count(&self, lead: &Lead) -> i64 {
        let owner = &lead.assignment.as_ref().expect("owned").owner;
        self.db
            .counter(&open_leads_counter(owner))
            .await
            .expect("counter")
    }

    async fn slack_alerts(&self) -> Vec<String> {
        self.slack
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }
}

fn rule(lead: &Lead) -> &str {
    lead.assignment.as_ref().map_or("", |a| a.rule.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_minutes_later_merges_into_the_open_lead_and_its_owner_is_told() {
    let s = setup("").await;
    let t0 = Timestamp::now();
    let first = s.lead_from("evt-first", TOM, t0).await;
    assert_eq!(first.state, LeadState::Notified);
    assert_ne!(rule(&first), "duplicate");
    let owner = first.assignment.clone().expect("owned").owner;
    assert_eq!(s.open_count(&first).await, 1);

    // Same address, typed differently, eight minutes later.
    let second = s
        .lead_from(
            "evt-second",
            "  Tom.Baker@Sales.Initech.CO.UK ",
            t0 + SignedDuration::from_mins(8),
        )
        .await;
    assert_eq!(second.state, LeadState::Notified);
    assert_eq!(second.merged_into.as_deref(), Some(first.id.as_str()));
    let a = second.assignment.clone().expect("owned");
    assert_eq!(a.owner, owner, "the same owner, not a second rep");
    assert_eq!(a.rule, "duplicate");
    assert!(a.reason.contains(&first.id), "{}", a.reason);
    assert!(a.reason.contains("8 min ago"), "{}", a.reason);
    assert_eq!(
        s.open_count(&first).await,
        1,
        "one piece of work, counted once"
    );

    // The owner is told it is the same person, once per channel, and nobody else is alerted.
    let text = s.terminal.text();
    let headline = format!(
        "Same person again: Tom Baker sent another request; merged into lead {} owned by you",
        first.id
    );
    assert!(text.contains(&headline), "{text}");
    assert_eq!(s.terminal.alerts_for(&second.id), 1);
    let slack = s.slack_alerts().await;
    assert_eq!(slack.len(), 2, "one alert per lead, to the one owner");
    assert!(slack[1].contains("Same person again"), "{}", slack[1]);

    // The explanation shows the merge.
    let why = leadrelay_shared::routing::explain::explain_text(&second, &a);
    assert!(
        why.contains(&format!("merged into lead {}", first.id)),
        "{why}"
    );

    // A replayed route and notify change nothing: no second count, no second alert.
    for stage in [Stage::Route, Stage::Notify] {
        s.db.send(stage, &Envelope::new(&second.id, stage, "replay"))
            .await
            .expect("send");
    }
    s.drain().await;
    assert_eq!(s.lead(&second.id).await.assignment, second.assignment);
    assert_eq!(s.open_count(&first).await, 1);
    assert_eq!(s.terminal.alerts_for(&second.id), 1);
    assert_eq!(s.slack_alerts().await.len(), 2);

    // Closing the merged lead takes nothing off the owner's count; closing the first does.
    let now = t0 + SignedDuration::from_mins(30);
    close_lead(&s.db, now, &second.id, "won")
        .await
        .expect("closed");
    assert_eq!(s.open_count(&first).await, 1);
    close_lead(&s.db, now, &first.id, "won")
        .await
        .expect("closed");
    assert_eq!(s.open_count(&first).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_after_a_close_or_from_another_address_a_lead_is_routed_as_usual() {
    let s = setup("").await;
    let t0 = Timestamp::now();
    let first = s.lead_from("evt-1", TOM, t0).await;

    // Another person, a minute later.
    let other = s
        .lead_from(
            "evt-2",
            "ann.lee@sales.initech.co.uk",
            t0 + SignedDuration::from_mins(1),
        )
        .await;
    assert_eq!(other.merged_into, None);
    assert_ne!(rule(&other), "duplicate");

    // The same person a day and an hour later: the window (24 h) has passed.
    let late = s
        .lead_from("evt-3", TOM, t0 + SignedDuration::from_hours(25))
        .await;
    assert_eq!(late.merged_into, None);
    assert_ne!(rule(&late), "duplicate");

    // The late lead is now the person's open lead; once it is closed, the next one is new work.
    let soon = t0 + SignedDuration::from_hours(26);
    close_lead(&s.db, soon, &late.id, "lost")
        .await
        .expect("closed");
    let after_close = s.lead_from("evt-4", TOM, soon).await;
    assert_eq!(after_close.merged_into, None);
    assert_ne!(rule(&after_close), "duplicate");
    assert_ne!(after_close.id, first.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_zero_turns_merging_off() {
    let s = setup("merge_window_hours = 0").await;
    let t0 = Timestamp::now();
    s.lead_from("evt-1", TOM, t0).await;
    let second = s
        .lead_from("evt-2", TOM, t0 + SignedDuration::from_mins(2))
        .await;
    assert_eq!(second.merged_into, None);
    assert_ne!(rule(&second), "duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_signed_request_replayed_with_fresh_event_ids_is_the_first_lead_until_its_window_ends(
) {
    let s = setup("").await;
    let base = s.serve().await;
    let body = sample(LEAD);
    let t0 = Timestamp::now();
    s.clock.set(t0);
    let (status, answer) = s.post(&base, "forms", "req-1", &body).await;
    assert_eq!(status, 202, "{answer}");
    let first = answer["lead_id"].as_str().expect("lead id").to_owned();
    s.drain().await;
    assert_eq!(s.lead(&first).await.state, LeadState::Notified);

    // The captured request, sent again with fresh X-Request-Id values a day later: answered as
    // a duplicate of the first lead, and nothing is stored, routed or alerted.
    s.clock.set(t0 + SignedDuration::from_hours(24));
    for event_id in ["req-2", "req-3"] {
        let (status, answer) = s.post(&base, "forms", event_id, &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer,
            serde_json::json!({"lead_id": first, "status": "duplicate"})
        );
    }
    s.drain().await;
    assert_eq!(s.db.counts().await.expect("counts").leads, 1);
    assert_eq!(s.terminal.alerts_for(&first), 1);
    assert_eq!(
        s.terminal.text().matches("Lead id: ").count(),
        1,
        "one alert"
    );

    // Past the window (7 days by default) the same bytes are a new lead: the limit of a
    // signature that covers no timestamp.
    s.clock
        .set(t0 + SignedDuration::from_hours(7 * 24) + SignedDuration::from_mins(1));
    let (status, answer) = s.post(&base, "forms", "req-4", &body).await;
    assert_eq!(status, 202, "{answer}");
    let late = answer["lead_id"].as_str().expect("lead id").to_owned();
    assert_ne!(late, first);
    s.drain().await;
    assert_eq!(s.db.counts().await.expect("counts").leads, 2);
    assert_eq!(s.terminal.alerts_for(&late), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_sources_do_not_dedupe_on_the_body() {
    let s = setup("").await;
    let base = s.serve().await;
    let body = sample(LEAD);
    // Signed with the real time, which the hand clock holds.
    s.clock.set(Timestamp::now());
    let (status, first) = s.post(&base, "website", "msg-1", &body).await;
    assert_eq!(status, 202, "{first}");
    // The same bytes under another signed id and timestamp are another event.
    let (status, second) = s.post(&base, "website", "msg-2", &body).await;
    assert_eq!(status, 202, "{second}");
    assert_ne!(first["lead_id"], second["lead_id"]);
    assert_eq!(s.db.counts().await.expect("counts").leads, 2);
}
