//! Faults under the embedded server: a full disk, a store locked by another process, a second
//! server on the same data directory, and a wall clock that jumps between stages. In each, a
//! webhook is answered 202 only when its lead is kept, a refusal is a 503 the sender can retry,
//! and nothing accepted is lost once the fault clears.

use std::time::{Duration, Instant};

use crate::support::process::{serve, ServeFiles};
use crate::support::serial;
use crate::support::{
    eventually, example_config, open_store, parse_config, signed_webhook, with_retry_schedule,
    Edit, ManualPipeline, Server,
};
use jiff::{SignedDuration, Timestamp};
use leadrelay::dlq;
use leadrelay_shared::model::{Envelope, LeadState, Owner, Stage};
use leadrelay_shared::ports::{Clock, Queue};
use leadrelay_shared::stages::claim::{self, ClaimOutcome, ClaimVia, FirstResponse};
use leadrelay_shared::stages::sla;
use serde_json::{json, Value};

/// The example configuration with short retry and visibility timeouts, so that messages a
/// fault held back come round again within the test's deadlines.
fn fast_config() -> String {
    let text = example_config()
        .edit(
            "visibility_timeout_secs = 30",
            "visibility_timeout_secs = 3",
        )
        // The terminal is the only channel: delivery budgets may shrink to fit.
        .edit(
            "http_timeout_ms = 5000",
            "http_timeout_ms = 500\ndelivery_budget_ms = 500",
        );
    // Retries within about 10 s, not the shipped schedule's seconds to hours.
    with_retry_schedule(
        &text,
        &[
            "20ms", "40ms", "80ms", "160ms", "320ms", "640ms", "1s", "2s", "3s", "3s",
        ],
        15,
    )
}

/// A capture from a different person each time (distinct e-mails are never merged).
fn capture(n: usize) -> Vec<u8> {
    json!({
        "event": "lead_capture",
        "timestamp": "2026-11-23T10:00:00Z",
        "captured_email": format!("pat.quinn{n}@acme-robotics.com"),
        "name": format!("Pat Quinn {n}"),
        "trigger_query": "Can someone walk us through pricing?",
        "metadata": {"source_url": "https://www.yourco.example/pricing"}
    })
    .to_string()
    .into_bytes()
}

/// A webhook answer with the headers the sender's retry logic reads.
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn post(server: &Server, event_id: &str, body: &[u8]) -> Reply {
    let mut request = server
        .http
        .post(format!("{}/webhooks/website", server.base))
        .header("content-type", "application/json")
        // A bound on the test itself: an answer that never comes fails here, not in CI's limit.
        .timeout(Duration::from_secs(60))
        .body(body.to_vec());
    for (name, value) in server.signed("website", event_id, body) {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        retry_after,
        body,
    }
}

/// A 503 a sender can act on: a JSON error and when to retry.
fn assert_retryable_refusal(reply: &Reply) {
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(
        reply.body["error"], "temporarily unavailable, retry later",
        "{}",
        reply.body
    );
    assert!(reply.body.get("lead_id").is_none(), "{}", reply.body);
    let retry_after: u64 = reply
        .retry_after
        .as_deref()
        .expect("a 503 says when to retry")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after));
}

/// Waits until no live message is left (every lead done or dead-lettered), replays the
/// dead letters, and waits until each lead is notified.
async fn settle(server: &Server, lead_ids: &[String]) {
    eventually(Duration::from_secs(60), "the queues to drain", || async {
        (server.counts().await.messages == 0).then_some(())
    })
    .await;
    dlq::replay(
        &server.db,
        &dlq::Filter::default(),
        false,
        1000,
        &mut Vec::new(),
    )
    .await
    .expect("replay");
    for id in lead_ids {
        server.wait_for_state(id, "notified").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_answered_503_and_the_webhook_is_accepted_once_space_frees() {
    let _heavy = serial::heavy().await; // up to 500 webhooks until the store is full
    let server = Server::start_with(&fast_config()).await;
    let first = post(&server, "evt-before", &capture(0)).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let first_id = first.body["lead_id"].as_str().expect("id").to_owned();
    server.wait_for_state(&first_id, "notified").await;

    // The "disk" is full from here: the file may not grow past the pages it has.
    let pages = server.db.cap_pages(1).await.expect("cap");
    assert!((1..100_000).contains(&pages), "capped at {pages} pages");

    let mut accepted = vec![first_id];
    let mut refused = None;
    for n in 1..=500 {
        let event_id = format!("evt-{n}");
        let reply = post(&server, &event_id, &capture(n)).await;
        match reply.status {
            202 => {
                let id = reply.body["lead_id"].as_str().expect("lead id").to_owned();
                // A 202 is a promise: the lead is there to read while the disk is still full.
                let stored = server.lead(&id).await;
                assert_eq!(stored.status, 200, "lead {id} answered 202 but not stored");
                accepted.push(id);
            }
            503 => {
                assert_retryable_refusal(&reply);
                refused = Some((event_id, n));
                break;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    let (event_id, n) = refused.expect("the full store refused a webhook within 500");

    // Still capped: a retry is refused the same way and no lead appears for it, unless the
    // stages deleted finished queue messages meanwhile and the freed pages took it; then it
    // is a 202 like any other, stored before the answer.
    let leads_while_full = server.counts().await.leads;
    let again = post(&server, &event_id, &capture(n)).await;
    if again.status == 202 {
        let id = again.body["lead_id"].as_str().expect("lead id").to_owned();
        assert_eq!(
            server.lead(&id).await.status,
            200,
            "lead {id} answered 202 but not stored"
        );
        accepted.push(id);
    } else {
        assert_retryable_refusal(&again);
        assert_eq!(server.counts().await.leads, leads_while_full);
    }

    // Space frees: the sender's retry of the refused event is accepted (or recognised, if the
    // retry above got in) and alerted.
    server.db.cap_pages(4_294_967_294).await.expect("uncap");
    let retried = post(&server, &event_id, &capture(n)).await;
    match retried.status {
        202 => accepted.push(retried.body["lead_id"].as_str().expect("id").to_owned()),
        200 => assert_eq!(again.status, 202, "a duplicate of a refused event"),
        other => panic!("unexpected {other}: {}", retried.body),
    }
    settle(&server, &accepted).await;
    assert_eq!(server.counts().await.leads as usize, accepted.len());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_is_answered_503_in_bounded_time_then_resumes() {
    let _heavy = serial::heavy().await; // a bound on the answer time
    let server = Server::start_with(&fast_config()).await;
    let first = post(&server, "evt-before", &capture(0)).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let first_id = first.body["lead_id"].as_str().expect("id").to_owned();
    server.wait_for_state(&first_id, "notified").await;
    let leads_before = server.counts().await.leads;

    // Another process (here: another connection) takes the write lock and keeps it.
    let blocker = rusqlite::Connection::open(server.db.path()).expect("open the store");
    blocker
        .busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    blocker
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("exclusive lock");

    let started = Instant::now();
    let reply = post(&server, "evt-locked", &capture(1)).await;
    let waited = started.elapsed();
    assert_retryable_refusal(&reply);
    // The store waits its 5 s busy timeout (at most twice: a batch already waiting, then
    // this one), never until the lock goes.
    assert!(
        waited < Duration::from_secs(20),
        "answered after {waited:?}"
    );
    assert_eq!(server.counts().await.leads, leads_before);

    blocker.execute_batch("ROLLBACK").expect("release");
    drop(blocker);
    let retried = post(&server, "evt-locked", &capture(1)).await;
    assert_eq!(retried.status, 202, "{}", retried.body);
    let id = retried.body["lead_id"].as_str().expect("id").to_owned();
    settle(&server, &[first_id, id]).await;
    server.stop().await;
}

/// The stage code over a real store on a hand clock (stepped forwards and backwards), with
/// the test as the only worker.
struct Stepped {
    manual: ManualPipeline,
    start: Timestamp,
}

impl std::ops::Deref for Stepped {
    type Target = ManualPipeline;

    fn deref(&self) -> &ManualPipeline {
        &self.manual
    }
}

impl Stepped {
    fn new() -> Stepped {
        let start: Timestamp = "2026-11-24T18:00:00Z".parse().expect("time");
        // Hours, holidays and leave taken out: every rep is working whatever the clock says.
        Stepped {
            manual: ManualPipeline::new(parse_config(&example_config()), start),
            start,
        }
    }

    /// Sets the clock `offset` from the start (negative: before it).
    fn at(&self, offset: SignedDuration) {
        self.clock.set(self.start + offset);
    }

    /// `POST /webhooks/website` as the pipeline sees it, signed at the clock's now.
    async fn ingest(&self, event_id: &str) -> String {
        let body = capture(7);
        let source = self.pipeline.config.source("website").expect("source");
        let now = self.clock.now().as_second();
        let signature = leadrelay_shared::signature::sign_standard(
            source.keys.first().expect("key"),
            event_id,
            now,
            &body,
        );
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("webhook-id", event_id.parse().expect("ascii"));
        headers.insert("webhook-timestamp", now.into());
        headers.insert("webhook-signature", signature.parse().expect("ascii"));
        self.pipeline
            .ingest("website", &headers, &body)
            .await
            .expect("accepted")
            .lead_id
    }

    /// Runs one stage on the lead, as its worker would, and drops the message it forwarded
    /// (the test runs each stage itself).
    async fn stage(&self, stage: Stage, id: &str) {
        let envelope = Envelope::new(id, stage, "trace").to_json();
        self.pipeline
            .handle(stage, &envelope)
            .await
            .unwrap_or_else(|e| panic!("{stage} failed: {e}"));
        for stage in Stage::ALL {
            while !self.db.receive(stage, 50).await.expect("r").is_empty() {}
        }
    }
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

fn mins(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

fn assert_not_negative(first: &FirstResponse) {
    for (part, value) in [
        ("system", first.system),
        ("human", first.human),
        ("total", first.total),
    ] {
        let value = value.unwrap_or_else(|| panic!("{part} measured"));
        assert!(!value.is_negative(), "{part} is {value:?}: {first:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_stepped_back_after_capture_neither_postpones_the_sla_nor_reports_negative_times() {
    let s = Stepped::new();
    // The clock runs three hours ahead when the lead comes in, then is corrected (an NTP
    // step) before the lead is enriched, routed and alerted.
    s.at(hours(3));
    let id = s.ingest("evt-ahead").await;
    s.at(SignedDuration::ZERO);
    for stage in Stage::ALL {
        s.stage(stage, &id).await;
    }
    let lead = s.lead(&id).await;
    assert_eq!(lead.state, LeadState::Notified);
    assert_eq!(s.terminal.alerts_for(&id), 1);
    let tier_minutes = lead.qualification.as_ref().expect("qualified").sla_minutes;
    // The capture stamp lies in the future: the SLA runs from routing, not three hours on.
    assert_eq!(
        lead.timeline.sla_due_at,
        Some(s.start + mins(i64::from(tier_minutes))),
        "the SLA deadline was postponed by the clock step"
    );

    // Just past the deadline: escalated once, alerted once more.
    s.at(mins(i64::from(tier_minutes)) + SignedDuration::from_secs(1));
    assert_eq!(s.sweep().await.escalated, vec![(id.clone(), 1)]);
    assert_eq!(s.lead(&id).await.escalation_level(), 1);
    assert_eq!(s.terminal.alerts_for(&id), 2);

    // The new owner claims it: no part of the first-response time is negative.
    s.at(mins(i64::from(tier_minutes) + 1));
    let owner = match &s.lead(&id).await.assignment.expect("owned").owner {
        Owner::Rep(rep) => rep.clone(),
        other => panic!("escalated to {other}, not a rep"),
    };
    let outcome = claim::claim(&s.pipeline, &id, &owner, ClaimVia::Link)
        .await
        .expect("claim");
    let ClaimOutcome::Won { first_response, .. } = outcome else {
        panic!("the claim did not win: {outcome:?}");
    };
    assert_not_negative(&first_response);
    assert_not_negative(&FirstResponse::of(&s.lead(&id).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jumping_hours_either_way_between_stages_escalates_once_per_deadline_and_loses_nothing(
) {
    let s = Stepped::new();
    let id = s.ingest("evt-jumps").await;
    // Enrich two hours back, route four hours on, alert an hour back.
    s.at(-hours(2));
    s.stage(Stage::Enrich, &id).await;
    s.at(hours(4));
    s.stage(Stage::Route, &id).await;
    s.at(-hours(1));
    s.stage(Stage::Notify, &id).await;
    let lead = s.lead(&id).await;
    assert_eq!(lead.state, LeadState::Notified, "the lead went through");
    assert_eq!(s.terminal.alerts_for(&id), 1);
    let due = lead.timeline.sla_due_at.expect("an SLA deadline");
    assert!(due <= s.start + hours(4), "deadline {due} after routing");

    // An hour back: nothing is due yet, however often sla-watch runs.
    assert_eq!(s.sweep().await.breaches, 0);
    // Four hours on, the deadline has passed: one escalation, one more alert.
    s.at(hours(4));
    assert_eq!(s.sweep().await.escalated, vec![(id.clone(), 1)]);
    assert_eq!(s.terminal.alerts_for(&id), 2);
    // Back and forth over the same instant: the deadline that passed is not counted again.
    for offset in [hours(4), SignedDuration::ZERO, -hours(3), hours(4)] {
        s.at(offset);
        assert_eq!(s.sweep().await.breaches, 0, "at {offset:?}");
    }
    let lead = s.lead(&id).await;
    assert_eq!(lead.escalation_level(), 1);
    assert_eq!(s.terminal.alerts_for(&id), 2);
    assert!(lead.sla_watch_at().is_some(), "still watched: not lost");

    // Claimed with the clock stepped back again: every part of the response time is >= 0.
    s.at(-hours(2));
    let owner = match &lead.assignment.expect("owned").owner {
        Owner::Rep(rep) => rep.clone(),
        Owner::Queue(_) | Owner::Pool(_) => "alice".to_owned(),
    };
    let outcome = claim::claim(&s.pipeline, &id, &owner, ClaimVia::Link)
        .await
        .expect("claim");
    assert!(matches!(outcome, ClaimOutcome::Won { .. }), "{outcome:?}");
    let lead = s.lead(&id).await;
    assert_eq!(lead.state, LeadState::Claimed);
    assert_not_negative(&FirstResponse::of(&lead));
    assert_eq!(s.sweep().await, sla::SweepReport::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_data_directory_share_the_work_and_alert_each_lead_once() {
    let _heavy = serial::heavy().await; // two servers at once
    let config_text = example_config();
    let files = ServeFiles::new(&config_text);
    let config = parse_config(&config_text);
    let http = crate::support::http_client();

    // The second server opens the same store while the first is serving: both run every
    // stage, taking messages from the same queues as two consumers of one SQS queue would.
    // Each prints its alerts (the terminal channel) to its own file.
    let alerts: Vec<_> = (0..2)
        .map(|n| files.path(&format!("alerts-{n}.txt")))
        .collect();
    let mut servers = Vec::new();
    for alerts in &alerts {
        servers.push(serve(&files).stdout_to(alerts).spawn().await);
    }
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();

    let mut ids = Vec::new();
    for n in 0..20 {
        let body = capture(100 + n);
        let request = signed_webhook(
            &http,
            &bases[n % 2],
            &config,
            "website",
            &format!("evt-two-{n}"),
            &body,
        );
        let response = request.send().await.expect("answer");
        assert_eq!(response.status().as_u16(), 202);
        let answer: Value = response.json().await.expect("json");
        ids.push(answer["lead_id"].as_str().expect("id").to_owned());
    }

    // Every lead is alerted, by one server or the other, and the queues drain.
    for id in &ids {
        eventually(
            Duration::from_secs(30),
            &format!("{id} notified"),
            || async {
                let lead: Value = http
                    .get(format!("{}/leads/{id}", bases[0]))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (lead["state"] == "notified").then_some(())
            },
        )
        .await;
    }
    let store = open_store(&files.data_dir);
    eventually(Duration::from_secs(30), "the queues to drain", || async {
        let counts = store.counts().await.ok()?;
        (counts.messages == 0).then_some(counts)
    })
    .await;
    drop(servers);

    // Once each: no message was worked by both.
    let printed: String = alerts
        .iter()
        .map(|path| std::fs::read_to_string(path).expect("alerts"))
        .collect();
    for id in &ids {
        assert_eq!(
            printed.matches(&format!("Lead id: {id}\n")).count(),
            1,
            "lead {id}"
        );
    }
    assert_eq!(store.counts().await.expect("counts").dead_letters, 0);
}
