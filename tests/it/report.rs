//! The speed-to-lead report and the handoff audit, end to end on both stores: a hand-held
//! clock drives leads through route → notify → claim → touch → meeting → close with the real
//! stage code, and every figure the report prints is checked against values worked out by
//! hand below.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use lambda_http::tower::ServiceExt as _;
use leadrelay_channels::Channels;
use leadrelay_shared::config::Config;
use leadrelay_shared::model::{ActivityKind, Lead, Misroute, Outcome, Owner};
use leadrelay_shared::ports::{LeadStore, Queue};
use leadrelay_shared::report::{Dimension, Hours, SpeedToLead};
use leadrelay_shared::routing::effects::Effects;
use leadrelay_shared::routing::open_leads_counter;
use leadrelay_shared::stages::claim::{claim, ClaimVia};
use leadrelay_shared::stages::report::{self, ReportQuery};
use leadrelay_shared::stages::Pipeline;
use leadrelay_web::{router, Api};

use crate::support::aws::moto;
use crate::support::{
    example_config, initech_lead, open_store, parse_config_with_env, shipped_example_config,
    HandClock, Terminal,
};

const TOKEN: &str = "report-token-0123456789abcdef";

fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

/// Monday 2026-11-23 10:00 UTC: inside EMEA's hours (London 08:30-17:30, Bruno's in Berlin).
const T0: &str = "2026-11-23T10:00:00Z";

fn t0_plus(secs: i64) -> Timestamp {
    at(T0) + SignedDuration::from_secs(secs)
}

/// The example configuration (no hours, so routing never holds) with the report API on.
fn pipeline_config() -> Config {
    let text = format!(
        "{}\n[reports]\napi_token_env = \"REPORT_TOKEN\"\n",
        example_config()
    );
    parse_config_with_env(&text, &[("REPORT_TOKEN", TOKEN)])
}

struct Harness {
    pipeline: Arc<Pipeline>,
    clock: Arc<HandClock>,
    _keep: Option<tempfile::TempDir>,
}

impl Harness {
    fn new(
        store: Arc<dyn LeadStore>,
        queue: Arc<dyn Queue>,
        keep: Option<tempfile::TempDir>,
    ) -> Harness {
        let clock = Arc::new(HandClock::new(at(T0)));
        let channels =
            Channels::new(Duration::from_secs(1), Box::new(Terminal::default())).expect("channels");
        let pipeline = Arc::new(Pipeline::new(
            Arc::new(pipeline_config()),
            store,
            queue,
            Arc::new(channels),
            clock.clone(),
        ));
        Harness {
            pipeline,
            clock,
            _keep: keep,
        }
    }

    fn store(&self) -> &dyn LeadStore {
        self.pipeline.store.as_ref()
    }

    async fn lead(&self, id: &str) -> Lead {
        self.store()
            .get_lead(id)
            .await
            .expect("read")
            .expect("lead")
    }

    /// Captured at `captured`, routed and alerted at `notified`; returns the owning rep.
    async fn capture(
        &self,
        id: &str,
        captured: Timestamp,
        notified: Timestamp,
        edit: impl FnOnce(&mut Lead),
    ) -> String {
        self.clock.set(captured);
        let mut lead = initech_lead(id, &format!("{id}@initech.co.uk"), captured);
        edit(&mut lead);
        self.store().create_lead(&lead).await.expect("created");
        self.clock.set(notified);
        crate::support::route_and_notify(&self.pipeline, id).await;
        let lead = self.lead(id).await;
        assert_eq!(lead.timeline.notified_at, Some(notified), "{id} notified");
        match lead.assignment.expect("routed").owner {
            Owner::Rep(rep) => rep,
            other => panic!("{id} went to {other}, not a rep"),
        }
    }

    async fn claim(&self, id: &str, rep: &str, when: Timestamp) {
        self.clock.set(when);
        claim(&self.pipeline, id, rep, ClaimVia::Slack)
            .await
            .expect("claimed");
    }

    async fn activity(&self, id: &str, kind: ActivityKind, when: Timestamp) {
        self.clock.set(when);
        let event = crate::support::human_activity(id, kind, when);
        self.pipeline
            .record_activity(&event)
            .await
            .expect("recorded");
    }
}

async fn embedded() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_store(dir.path());
    Harness::new(Arc::new(db.clone()), Arc::new(db), Some(dir))
}

async fn on_moto() -> Harness {
    let deployment = moto().await.deploy(5, 30).await;
    Harness::new(
        Arc::new(deployment.store),
        Arc::new(deployment.queues),
        None,
    )
}

/// Who owns each lead, as routing decided (EMEA's round robin between Bruno and Fatima).
struct Driven {
    l5_owner: String,
}

/// Five leads, each step at a chosen instant (seconds after T0 unless said):
///
/// | lead | tier | captured | notified | claimed | first touch | meeting | outcome |
/// |---|---|---|---|---|---|---|---|
/// | l1 | 1 (/pricing) | 0 | 20 | 120 | 240 (call) | booked 3600, held 10800 | won 14400 |
/// | l2 | 2 | 600 | 630 | 1200 | 1800 (e-mail) | - | lost 7200 |
/// | l3 | 2 | 1200 | 1210 | - | 3600 (e-mail) | - | - (a "not mine") |
/// | l4 | 2, no question | 1800 | 1815 | 1860 | - | - | - |
/// | l5 | 2 | Fri 2026-11-20 20:00 | +20 s | Mon 08:40 | Mon 09:00 | - | won Mon 12:00 |
async fn drive(h: &Harness) -> Driven {
    let l1 = h
        .capture("l1", t0_plus(0), t0_plus(20), |lead| {
            lead.capture.metadata.source_url = Some("https://yourco.example/pricing".into());
        })
        .await;
    let l2 = h.capture("l2", t0_plus(600), t0_plus(630), |_| {}).await;
    h.capture("l3", t0_plus(1200), t0_plus(1210), |_| {}).await;
    let l4 = h
        .capture("l4", t0_plus(1800), t0_plus(1815), |lead| {
            lead.capture.trigger_query = None;
        })
        .await;
    let l5 = h
        .capture(
            "l5",
            at("2026-11-20T20:00:00Z"),
            at("2026-11-20T20:00:20Z"),
            |_| {},
        )
        .await;

    h.claim("l1", &l1, t0_plus(120)).await;
    h.activity("l1", ActivityKind::Called, t0_plus(240)).await;
    h.activity("l1", ActivityKind::MeetingBooked, t0_plus(3600))
        .await;
    h.activity("l1", ActivityKind::MeetingHeld, t0_plus(10_800))
        .await;
    // Closing frees the owner's place: the open-lead counter drops by one.
    let counter = open_leads_counter(&Owner::Rep(l1.clone()));
    let open_before = h.store().counter(&counter).await.expect("counter");
    h.activity("l1", ActivityKind::Closed(Outcome::Won), t0_plus(14_400))
        .await;
    assert_eq!(
        h.store().counter(&counter).await.expect("counter"),
        open_before - 1,
        "a won lead no longer counts toward {l1}'s load"
    );

    h.claim("l2", &l2, t0_plus(1200)).await;
    h.activity("l2", ActivityKind::Emailed, t0_plus(1800)).await;
    h.activity("l2", ActivityKind::Closed(Outcome::Lost), t0_plus(7200))
        .await;

    h.activity("l3", ActivityKind::Emailed, t0_plus(3600)).await;
    // A "not mine" on l3, as the store keeps it.
    let mut l3 = h.lead("l3").await;
    let rule = l3.assignment.as_ref().expect("routed").rule.clone();
    l3.misroutes.push(Misroute {
        rep: "fatima".into(),
        rule,
        reason: "not my territory".into(),
        at: t0_plus(1300),
    });
    h.store()
        .advance_lead(&l3, l3.state, &Effects::none())
        .await
        .expect("misroute recorded");

    h.claim("l4", &l4, t0_plus(1860)).await;

    h.claim("l5", &l5, at("2026-11-23T08:40:00Z")).await;
    h.activity("l5", ActivityKind::Called, at("2026-11-23T09:00:00Z"))
        .await;
    h.activity(
        "l5",
        ActivityKind::Closed(Outcome::Won),
        at("2026-11-23T12:00:00Z"),
    )
    .await;

    // An event for a lead nobody has: kept for the audit.
    h.activity("nobody", ActivityKind::Called, t0_plus(5000))
        .await;
    Driven { l5_owner: l5 }
}

/// The report's configuration: the shipped hours (Bruno works 08:30-17:30 Berlin, Fatima
/// Monday to Thursday 08:30-17:30 London), so working-hours durations have hours to count.
fn report_config() -> Config {
    parse_config_with_env(&shipped_example_config(), &[])
}

async fn figures(h: &Harness, by: Dimension, hours: Hours) -> SpeedToLead {
    let query = ReportQuery {
        since: "2026-11-20T00:00:00Z".into(),
        until: Some("2026-11-24T00:00:00Z".into()),
        by,
        hours,
    };
    report::speed_to_lead(h.store(), &report_config(), &query, t0_plus(86_400))
        .await
        .expect("report")
}

const MIN: i64 = 60;
const HOUR: i64 = 3600;

async fn every_figure_matches_the_hand_computed_values(h: Harness) {
    let driven = drive(&h).await;
    let r = figures(&h, Dimension::Tier, Hours::Wall).await;
    let all = &r.totals;
    assert_eq!(all.leads, 5);
    assert_eq!((all.notified, all.claimed, all.contacted), (5, 4, 4));
    assert_eq!((all.meetings_booked, all.meetings_held), (1, 1));
    assert_eq!(all.contact_rate, Some(0.8));
    assert_eq!(all.meeting_booked_rate, Some(0.2));
    assert_eq!(all.meeting_held_rate, Some(0.2));
    // System: 20, 30, 10, 15, 20 s → sorted 10 15 20 20 30: p50 rank 3, p90 rank 5.
    assert_eq!(
        (all.system.count, all.system.p50_secs, all.system.p90_secs),
        (5, Some(20), Some(30))
    );
    // Acknowledgement: l1 100, l2 570, l4 45, l5 Fri 20:00:20 → Mon 08:40 = 218,380 s.
    let l5_ack = 2 * 86_400 + 12 * HOUR + 40 * MIN - 20;
    assert_eq!(
        (
            all.acknowledgement.count,
            all.acknowledgement.p50_secs,
            all.acknowledgement.p90_secs
        ),
        (4, Some(100), Some(l5_ack))
    );
    // Human: l1 120 (claim → call), l2 600, l3 2390 (no claim: notified → e-mail), l5 1200.
    assert_eq!(
        (all.human.count, all.human.p50_secs, all.human.p90_secs),
        (4, Some(600), Some(2390))
    );
    // First response: 240, 1200, 2400, and l5's 61 hours.
    let l5_first = 61 * HOUR;
    assert_eq!(
        (
            all.first_response.count,
            all.first_response.p50_secs,
            all.first_response.p90_secs
        ),
        (4, Some(1200), Some(l5_first))
    );
    assert_eq!(
        (all.time_to_meeting.count, all.time_to_meeting.p50_secs),
        (1, Some(HOUR))
    );
    // SLA (first claim or touch): l1 met at 2 min of 5; l2 met (claim at 10 of 15), l3 missed
    // (e-mail at 40), l4 met (claim at 1), l5 missed.
    assert_eq!((all.sla_met, all.sla_missed, all.sla_pending), (3, 2, 0));
    assert_eq!(all.sla_compliance, Some(0.6));
    assert_eq!((all.outcomes, all.won), (3, 2));
    assert_eq!(all.won_rate, Some(2.0 / 3.0));
    assert_eq!((all.escalated, all.reassigned, all.misrouted), (0, 0, 1));

    // By tier: the groups and the SLA table agree.
    let keys: Vec<&str> = r.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["1", "2"]);
    let tier1 = &r.sla_by_tier[0];
    assert_eq!(
        (
            tier1.tier,
            tier1.sla_minutes,
            tier1.leads,
            tier1.met,
            tier1.missed
        ),
        (Some(1), Some(5), 1, 1, 0)
    );
    assert_eq!(tier1.compliance, Some(1.0));
    let tier2 = &r.sla_by_tier[1];
    assert_eq!(
        (
            tier2.tier,
            tier2.sla_minutes,
            tier2.leads,
            tier2.met,
            tier2.missed
        ),
        (Some(2), Some(15), 4, 2, 2)
    );
    assert_eq!(tier2.compliance, Some(0.5));
    assert_eq!(r.groups[1].first_response.p50_secs, Some(2400));

    // Buckets by first response, with the won rate of those with an outcome.
    let bucket = |name: &str| {
        let b = r
            .response_buckets
            .iter()
            .find(|b| b.bucket == name)
            .expect("bucket");
        (b.leads, b.outcomes, b.won)
    };
    assert_eq!(bucket("< 5 min"), (1, 1, 1));
    assert_eq!(bucket("5-15 min"), (0, 0, 0));
    assert_eq!(bucket("15-30 min"), (1, 1, 0));
    assert_eq!(bucket("30-60 min"), (1, 0, 0));
    assert_eq!(bucket("> 24 h"), (1, 1, 1));
    assert_eq!(bucket("never"), (1, 0, 0));
    let first = &r.response_buckets[0];
    assert_eq!((first.share, first.won_rate), (Some(0.2), Some(1.0)));

    // Every lead routed by the EMEA rule; one said "not mine".
    assert_eq!(r.routing_accuracy.len(), 1);
    let emea = &r.routing_accuracy[0];
    assert_eq!(
        (emea.rule.as_str(), emea.leads, emea.misrouted),
        ("EMEA", 5, 1)
    );
    assert_eq!(emea.accuracy, Some(0.8));

    // Handoff: l4 came without its question.
    assert_eq!((r.handoff.notified, r.handoff.complete), (5, 4));
    assert_eq!(r.handoff.completeness, Some(0.8));
    assert_eq!(r.handoff.missing["question"], 1);
    assert_eq!(r.handoff.missing["email"], 0);

    // Working hours: l1-l4 ran inside Monday's hours, so only l5 changes. Bruno's Monday
    // opens 07:30 UTC (08:30 Berlin), Fatima's 08:30 UTC (London); Friday 20:00 UTC is
    // after hours for both, and nothing counts over the weekend.
    let w = figures(&h, Dimension::Rep, Hours::Working).await;
    let (l5_ack, l5_first) = match driven.l5_owner.as_str() {
        "bruno" => (70 * MIN, 90 * MIN),
        "fatima" => (10 * MIN, 30 * MIN),
        other => panic!("l5 went to {other}"),
    };
    let l5_group = w
        .groups
        .iter()
        .find(|g| g.key == driven.l5_owner)
        .expect("the owner's row");
    assert!(l5_group.leads >= 1);
    let all = &w.totals;
    // System: l5's 20 s fell outside hours → 0 s; sorted 0 10 15 20 30.
    assert_eq!(
        (all.system.p50_secs, all.system.p90_secs),
        (Some(15), Some(30))
    );
    let mut acks = [100, 570, 45, l5_ack];
    acks.sort_unstable();
    assert_eq!(
        (all.acknowledgement.p50_secs, all.acknowledgement.p90_secs),
        (Some(acks[1]), Some(acks[3]))
    );
    let mut firsts = [240, 1200, 2400, l5_first];
    firsts.sort_unstable();
    assert_eq!(
        (all.first_response.p50_secs, all.first_response.p90_secs),
        (Some(firsts[1]), Some(firsts[3]))
    );
    // l5 leaves "> 24 h" for the bucket its working time falls in.
    let in_bucket = |name: &str| {
        w.response_buckets
            .iter()
            .find(|b| b.bucket == name)
            .map(|b| b.leads)
    };
    assert_eq!(in_bucket("> 24 h"), Some(0));
    match driven.l5_owner.as_str() {
        "bruno" => assert_eq!(in_bucket("1-4 h"), Some(1)),
        _ => assert_eq!(in_bucket("30-60 min"), Some(2)),
    }

    // The audit a day later: l4 was claimed but never touched past its SLA; l3's "not mine";
    // the event for a lead nobody has.
    let audit = report::audit(
        h.store(),
        "2026-11-20T00:00:00Z",
        Some("2026-11-24T00:00:00Z"),
        t0_plus(86_400),
    )
    .await
    .expect("audit");
    let untouched: Vec<&str> = audit.untouched.iter().map(|u| u.lead_id.as_str()).collect();
    assert_eq!(untouched, ["l4"]);
    assert_eq!(audit.untouched[0].overdue_secs, 86_400 - 1800 - 15 * MIN);
    assert_eq!(audit.misrouted.len(), 1);
    assert_eq!(audit.misrouted[0].lead_id, "l3");
    assert_eq!(audit.unmatched.len(), 1);
    assert_eq!(audit.unmatched[0].lead_id.as_deref(), Some("nobody"));
}

async fn the_report_api_wants_the_bearer_token(h: Harness) {
    drive(&h).await;
    let app = router(Api::new(
        h.pipeline.clone(),
        Arc::new(std::sync::atomic::AtomicBool::new(true)),
    ));
    let get = |path: &str, token: Option<&str>| {
        let mut request = axum::http::Request::get(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(axum::body::Body::empty()).expect("request")
    };
    let url = "/reports/speed-to-lead?since=2026-11-20T00:00:00Z&until=2026-11-24T00:00:00Z&by=rep";
    for (token, status) in [(None, 401), (Some("wrong-token-0123456789abcdef"), 401)] {
        let response = app.clone().oneshot(get(url, token)).await.expect("answer");
        assert_eq!(response.status().as_u16(), status, "token {token:?}");
    }
    let response = app
        .clone()
        .oneshot(get(url, Some(TOKEN)))
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 200);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let report: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(report["totals"]["leads"], 5);
    assert_eq!(report["by"], "rep");
    let audit = app
        .clone()
        .oneshot(get(
            "/reports/audit?since=2026-11-20T00:00:00Z&until=2026-11-24T00:00:00Z",
            Some(TOKEN),
        ))
        .await
        .expect("answer");
    assert_eq!(audit.status().as_u16(), 200);
    let bad = app
        .clone()
        .oneshot(get("/reports/speed-to-lead?by=colour", Some(TOKEN)))
        .await
        .expect("answer");
    assert_eq!(bad.status().as_u16(), 400);

    // Without a configured token the endpoints do not exist.
    let closed = Pipeline::new(
        Arc::new(parse_config_with_env(&example_config(), &[])),
        h.pipeline.store.clone(),
        h.pipeline.queue.clone(),
        h.pipeline.notifier.clone(),
        h.clock.clone(),
    );
    let app = router(Api::new(
        Arc::new(closed),
        Arc::new(std::sync::atomic::AtomicBool::new(true)),
    ));
    let response = app.oneshot(get(url, Some(TOKEN))).await.expect("answer");
    assert_eq!(response.status().as_u16(), 404);
}

mod embedded_store {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_figure_matches_the_hand_computed_values() {
        super::every_figure_matches_the_hand_computed_values(super::embedded().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_report_api_wants_the_bearer_token() {
        super::the_report_api_wants_the_bearer_token(super::embedded().await).await;
    }
}

mod dynamodb_on_moto {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_figure_matches_the_hand_computed_values() {
        super::every_figure_matches_the_hand_computed_values(super::on_moto().await).await;
    }
}

/// The figure for docs/benchmarks.md: a week's report over 10,000 leads on DynamoDB reads
/// those leads' index entries and nothing else (no scan, no lead item). Writing the leads to
/// moto takes minutes, so it runs on request:
/// `./scripts/with-moto.sh cargo test -p leadrelay-tests --test it week_of_10000 -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes 10,000 leads to moto: run for the benchmark figure"]
async fn dynamodb_items_read_for_a_week_of_10000_leads() {
    use futures::StreamExt as _;
    let deployment = moto().await.deploy(5, 30).await;
    let store = deployment.store.clone();
    let week_start = at("2026-11-16T00:00:00Z");
    // REPORT_WEEK_LEADS (default 10,000) in the week, and a tenth of that on each side of it
    // that the report must not read.
    let leads: i64 = std::env::var("REPORT_WEEK_LEADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let side = leads / 20;
    let captured = |n: i64| {
        if n < leads {
            week_start + SignedDuration::from_secs(n * 7 * 86_400 / leads)
        } else if n < leads + side {
            week_start - SignedDuration::from_secs((n - leads + 1) * 60)
        } else {
            week_start + SignedDuration::from_secs(7 * 86_400 + (n - leads - side) * 60)
        }
    };
    let total = leads + 2 * side;
    let written = futures::stream::iter(0..total)
        .map(|n| {
            let store = store.clone();
            async move {
                let mut lead = initech_lead(
                    &format!("week-{n}"),
                    &format!("p{n}@initech.co.uk"),
                    captured(n),
                );
                lead.timeline.captured_at = Some(captured(n));
                store.create_lead(&lead).await.expect("created");
            }
        })
        .buffer_unordered(16)
        .count()
        .await;
    assert_eq!(written as i64, total);
    let started = std::time::Instant::now();
    let facts = store
        .lead_facts(week_start, week_start + SignedDuration::from_hours(7 * 24))
        .await
        .expect("facts");
    let elapsed = started.elapsed();
    let reads = store.report_reads();
    println!(
        "DynamoDB (moto): a week of {} leads read in {} queries, {} items read, \
         consumed capacity {:?} RCU, {elapsed:?}",
        facts.len(),
        reads.queries,
        reads.items,
        reads.capacity_units
    );
    assert_eq!(facts.len() as i64, leads);
    assert_eq!(
        reads.items as i64, leads,
        "only the week's index entries are read"
    );
    assert_eq!(
        reads.queries,
        7 * 8,
        "one query per UTC day and shard (one page each)"
    );

    // The console's read of the same week from the report buckets, once the stream reached
    // the report-hours function and each hour's bucket was built and kept (as a first
    // dashboard does), against the facts above.
    use leadrelay_shared::ports::{BuiltHour, ReportBucket};
    use leadrelay_shared::report::{rollup, Directory, Records};
    let facts_bytes: usize = facts
        .iter()
        .map(|f| serde_json::to_string(f).map_or(0, |s| s.len()))
        .sum();
    let pumped = deployment.report_stream.pump().await;
    let buckets = store.clone().with_report_buckets(Duration::ZERO);
    let (week_end, config) = (
        week_start + SignedDuration::from_hours(7 * 24),
        parse_config_with_env(&example_config(), &[]),
    );
    let directory = Directory::new(&config);
    let listed = buckets
        .report_hours(week_start, week_end)
        .await
        .expect("hours")
        .expect("kept");
    let mut built = Vec::new();
    for hour in &listed {
        let start = rollup::hour_start(hour.hour).expect("hour");
        let of_hour = store
            .lead_facts(start, start + SignedDuration::from_hours(1))
            .await
            .expect("facts");
        let mut records = Records::of(&of_hour, &directory);
        records.sort_by_capture();
        built.push(BuiltHour {
            hour: hour.hour,
            bucket: ReportBucket {
                generation: hour.generation,
                fingerprint: directory.fingerprint(),
                bytes: records.encode().expect("encoded"),
            },
        });
    }
    let kept = buckets.put_report_hours(&built).await.expect("put");
    assert_eq!(kept, listed.len(), "every hour's bucket is kept");
    let before = store.report_reads();
    let started = std::time::Instant::now();
    let hours = buckets
        .report_hours(week_start, week_end)
        .await
        .expect("hours")
        .expect("kept");
    let elapsed = started.elapsed();
    let after = store.report_reads();
    let bucket_bytes: usize = hours
        .iter()
        .filter_map(|h| h.bucket.as_ref())
        .map(|b| b.bytes.len())
        .sum();
    let records: usize = hours
        .iter()
        .filter_map(|h| h.bucket.as_ref())
        .map(|b| Records::decode(&b.bytes).expect("decoded").len())
        .sum();
    println!(
        "DynamoDB (moto): the same week from report buckets ({pumped} stream records handed to \
         report-hours): {} hour items in {} queries, {bucket_bytes} bytes of buckets against \
         {facts_bytes} bytes of facts, {elapsed:?}",
        hours.len(),
        after.queries - before.queries,
    );
    assert_eq!(records as i64, leads, "the buckets hold the week's leads");
    assert!(bucket_bytes < facts_bytes);
}
