//! Claiming and sla-watch over the embedded SQLite store.
//!
//! Takes `SLA_BENCH_LEADS` tier-1 leads (default 1,000) through enrich, route and notify, then
//! prints: one sla-watch run over all of them once due (each a breach and an escalation), the
//! latency of single claims, and eight reps racing for each lead. It prints figures; it asserts
//! nothing about time. `cargo bench -p leadrelay --bench claim_and_sla`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use leadrelay::embedded::{QueueSettings, Sqlite};
use leadrelay_channels::Channels;
use leadrelay_shared::config::Config;
use leadrelay_shared::model::{CaptureEvent, Envelope, EventKind, Lead, Stage};
use leadrelay_shared::ports::{Clock, LeadStore as _};
use leadrelay_shared::stages::claim::{self, ClaimOutcome, ClaimVia};
use leadrelay_shared::stages::sla;
use leadrelay_shared::stages::Pipeline;

struct HandClock(Mutex<Timestamp>);

impl Clock for HandClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn notified_leads(
    pipeline: &Pipeline,
    db: &Sqlite,
    prefix: &str,
    count: usize,
) -> Vec<String> {
    let now = pipeline.clock.now();
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let id = format!("{prefix}-{n}");
        let capture = CaptureEvent {
            event: Some(EventKind::LeadCaptureFallback),
            captured_email: Some(format!("{id}@acme-robotics.com")),
            name: Some("Pat Quinn".into()),
            trigger_query: Some("Can someone call me?".into()),
            ..CaptureEvent::default()
        };
        let lead = Lead::captured(
            id.clone(),
            id.clone(),
            "website".into(),
            id.clone(),
            capture,
            Vec::new(),
            now,
        );
        db.create_lead(&lead).await.expect("stored");
        for stage in [Stage::Enrich, Stage::Route, Stage::Notify] {
            let envelope = Envelope::new(&id, stage, &id).to_json();
            pipeline.handle(stage, &envelope).await.expect("stage");
        }
        ids.push(id);
    }
    ids
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = std::env::var("SLA_BENCH_LEADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // No terminal output, no pausing (the bench's reps would all be paused), no capacity caps.
    let text = std::fs::read_to_string(root.join("config/leadrelay.toml"))
        .expect("config")
        .replace("terminal = true", "terminal = false")
        .replace("pause_after_breaches = 3", "pause_after_breaches = 0")
        .lines()
        .filter(|l| !l.trim_start().starts_with("capacity ="))
        .collect::<Vec<_>>()
        .join("\n");
    let config = Config::parse(&text, "leadrelay.toml", &|_| None).expect("config");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Sqlite::open(
        dir.path(),
        QueueSettings {
            max_receives: 5,
            visibility_timeout: Duration::from_secs(30),
        },
    )
    .expect("store");
    // Tuesday 13:00 New York: the account's owner and her backup are both working.
    let start: Timestamp = "2026-11-24T18:00:00Z".parse().expect("time");
    let clock = Arc::new(HandClock(Mutex::new(start)));
    let pipeline = Pipeline::new(
        Arc::new(config),
        Arc::new(db.clone()),
        Arc::new(db.clone()),
        Arc::new(
            Channels::new(Duration::from_secs(1), Box::new(std::io::sink())).expect("channels"),
        ),
        clock.clone(),
    );

    println!("claim_and_sla: {count} tier-1 leads per phase, embedded SQLite store");
    notified_leads(&pipeline, &db, "due", count).await;
    *clock.0.lock().expect("clock") = start + SignedDuration::from_mins(6);
    let started = Instant::now();
    let report = sla::sweep(&pipeline).await.expect("sweep");
    let took = started.elapsed();
    println!(
        "  sla-watch: {} breaches, {} escalated in {:.1} ms ({:.1} µs per escalated lead)",
        report.breaches,
        report.escalated.len(),
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e6 / report.escalated.len().max(1) as f64
    );
    let started = Instant::now();
    let idle = sla::sweep(&pipeline).await.expect("sweep");
    println!(
        "  sla-watch with nothing due: {:.2} ms ({} breaches)",
        started.elapsed().as_secs_f64() * 1e3,
        idle.breaches
    );

    let ids = notified_leads(&pipeline, &db, "claim", count).await;
    let mut latencies = Vec::with_capacity(count);
    for id in &ids {
        let started = Instant::now();
        let outcome = claim::claim(&pipeline, id, "dana", ClaimVia::Link)
            .await
            .expect("claim");
        latencies.push(started.elapsed());
        assert!(matches!(outcome, ClaimOutcome::Won { .. }));
    }
    latencies.sort();
    println!(
        "  claim, one at a time: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        percentile(&latencies, 0.5).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e6
    );

    let raced = notified_leads(&pipeline, &db, "race", count / 10).await;
    let pipeline = Arc::new(pipeline);
    const REPS: [&str; 8] = [
        "alice", "dana", "bruno", "fatima", "chen", "erin", "grace", "sam",
    ];
    let mut per_lead = Vec::with_capacity(raced.len());
    let mut winners = 0;
    for id in &raced {
        let started = Instant::now();
        let attempts = REPS.iter().map(|rep| {
            let (pipeline, id) = (pipeline.clone(), id.clone());
            tokio::spawn(async move { claim::claim(&pipeline, &id, rep, ClaimVia::Slack).await })
        });
        for result in futures::future::join_all(attempts).await {
            if matches!(
                result.expect("task").expect("claim"),
                ClaimOutcome::Won { .. }
            ) {
                winners += 1;
            }
        }
        per_lead.push(started.elapsed());
    }
    per_lead.sort();
    println!(
        "  8 reps racing per lead ({} leads): {} winners; all 8 answered in p50 {:.0} µs, p99 {:.0} µs",
        raced.len(),
        winners,
        percentile(&per_lead, 0.5).as_secs_f64() * 1e6,
        percentile(&per_lead, 0.99).as_secs_f64() * 1e6
    );
}
