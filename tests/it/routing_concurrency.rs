//! Many routers on one pool at once, over the real embedded store: the rotation stays fair
//! within one lead, no rep ever exceeds their cap, and every lead has exactly one owner,
//! counted once. The guards that make this true are the store's (capped counters, versioned
//! ledgers); the property holds whatever the interleaving.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{open_store, parse_config, HandClock, Terminal};
use leadrelay::embedded::Sqlite;
use leadrelay_channels::Channels;
use leadrelay_shared::model::{
    CaptureEvent, Enrichment, Envelope, EventKind, Lead, LeadState, Metadata, Owner, Stage,
    Timeline,
};
use leadrelay_shared::ports::{Clock, LeadStore, SystemClock};
use leadrelay_shared::stages::{open_leads_counter, Pipeline};
use proptest::prelude::*;

fn team(weights: &[u32], cap: Option<u32>) -> String {
    let mut text = String::from(
        r#"
[[sources]]
id = "website"
scheme = "standard_webhooks"
secrets = ["whsec_bGVhZHJlbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk="]

[[queues]]
id = "inbox"
name = "Inbox"

[[rules]]
name = "everyone"
assign.pool = "pool"

[routing]
fallback_queue = "inbox"

[notify]
terminal = false
"#,
    );
    let mut members = Vec::new();
    for (n, weight) in weights.iter().enumerate() {
        text.push_str(&format!("\n[[reps]]\nid = \"r{n}\"\nname = \"Rep {n}\"\n"));
        if let Some(cap) = cap {
            text.push_str(&format!("capacity = {cap}\n"));
        }
        members.push(format!("{{ rep = \"r{n}\", weight = {weight} }}"));
    }
    text.push_str(&format!(
        "\n[[pools]]\nid = \"pool\"\nname = \"Pool\"\nreset = \"never\"\nmembers = [{}]\n",
        members.join(", ")
    ));
    text
}

fn enriched_lead(n: usize) -> Lead {
    Lead {
        id: format!("lead-{n}"),
        source: "website".into(),
        event_id: format!("evt-{n}"),
        trace_id: format!("trace-{n}"),
        state: LeadState::Enriched,
        capture: CaptureEvent {
            event: Some(EventKind::LeadCapture),
            timestamp: None,
            visitor_id: None,
            conversation_id: None,
            captured_email: Some(format!("p{n}@acme.example")),
            name: None,
            company: None,
            phone: None,
            job_title: None,
            trigger_query: None,
            conversation_transcript_url: None,
            transcript: Vec::new(),
            form_fields: Default::default(),
            metadata: Metadata::default(),
        },
        incomplete: false,
        flags: Vec::new(),
        enrichment: Some(Enrichment::default()),
        qualification: None,
        assignment: None,
        timeline: Timeline::default(),
        last_failure: None,
        close_reason: None,
        merged_into: None,
        claim: None,
        escalations: Vec::new(),
        activities: Vec::new(),
        misroutes: Vec::new(),
        reroutes: Vec::new(),
        revision: 0,
    }
}

/// Routes `leads` leads with `routers` concurrent route workers; returns each lead's owner.
async fn route_concurrently(
    weights: &[u32],
    cap: Option<u32>,
    leads: usize,
    routers: usize,
) -> (Vec<Owner>, HashMap<String, i64>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_store(dir.path());
    let pipeline = Arc::new(Pipeline::new(
        Arc::new(parse_config(&team(weights, cap))),
        Arc::new(db.clone()),
        Arc::new(db.clone()),
        Arc::new(
            Channels::new(Duration::from_secs(1), Box::new(Terminal::default())).expect("channels"),
        ),
        Arc::new(SystemClock),
    ));
    for n in 0..leads {
        db.create_lead(&enriched_lead(n)).await.expect("create");
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..routers {
        let (pipeline, next) = (pipeline.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= leads {
                    break;
                }
                let body = Envelope::new(&format!("lead-{n}"), Stage::Route, "t").to_json();
                // Every lead is routed twice, as an at-least-once queue may deliver it.
                for _ in 0..2 {
                    pipeline.handle(Stage::Route, &body).await.expect("routed");
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("router task");
    }
    owners_and_counters(&db, weights.len(), leads).await
}

/// Each of leads 0..`leads` routed, with its owner, and the open-lead counters of reps
/// r0..`reps` and the inbox, by owner key.
async fn owners_and_counters(
    db: &Sqlite,
    reps: usize,
    leads: usize,
) -> (Vec<Owner>, HashMap<String, i64>) {
    let mut owners = Vec::new();
    for n in 0..leads {
        let lead = db
            .get_lead(&format!("lead-{n}"))
            .await
            .expect("read")
            .expect("lead");
        assert_eq!(lead.state, LeadState::Routed, "lead-{n}");
        owners.push(lead.assignment.expect("an owner").owner);
    }
    let mut counters = HashMap::new();
    for owner in (0..reps)
        .map(|n| Owner::Rep(format!("r{n}")))
        .chain([Owner::Queue("inbox".into())])
    {
        let name = open_leads_counter(&owner);
        counters.insert(owner.key(), db.counter(&name).await.expect("counter"));
    }
    (owners, counters)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_routers_stay_fair_within_one_and_never_break_a_cap(
        weights in prop::collection::vec(1u32..4, 2..5),
        leads in 6usize..40,
        routers in 2usize..7,
        cap in prop::option::of(2u32..10),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (owners, counters) = runtime.block_on(route_concurrently(&weights, cap, leads, routers));

        // Exactly one owner per lead, each counted once.
        let mut per_owner: HashMap<String, i64> = HashMap::new();
        for owner in &owners {
            *per_owner.entry(owner.key()).or_default() += 1;
        }
        prop_assert_eq!(counters.values().sum::<i64>(), leads as i64);
        for (owner, count) in &per_owner {
            prop_assert_eq!(counters.get(owner).copied().unwrap_or(0), *count, "counter of {}", owner);
        }
        // No cap exceeded, whatever the interleaving.
        if let Some(cap) = cap {
            for n in 0..weights.len() {
                let rep = format!("rep:r{n}");
                let got = per_owner.get(&rep).copied().unwrap_or(0);
                prop_assert!(got <= i64::from(cap), "{} holds {} over a cap of {}", rep, got, cap);
            }
        }
        // While nobody hit a cap, each rep's count is within one lead of their weighted share
        // of the leads the rotation gave out. (A lead whose router kept colliding goes to the
        // default queue instead: owned at once, outside the rotation.)
        let capped = cap.is_some_and(|cap| {
            (0..weights.len()).any(|n| per_owner.get(&format!("rep:r{n}")).copied().unwrap_or(0) >= i64::from(cap))
        });
        let rotated = leads as i64 - per_owner.get("queue:inbox").copied().unwrap_or(0);
        if !capped {
            let total: u32 = weights.iter().sum();
            for (n, weight) in weights.iter().enumerate() {
                let got = per_owner.get(&format!("rep:r{n}")).copied().unwrap_or(0) as f64;
                let share = rotated as f64 * f64::from(*weight) / f64::from(total);
                prop_assert!((got - share).abs() <= 1.0, "r{} got {} for a share of {:.2} (weights {:?}, owners {:?})", n, got, share, weights, per_owner);
            }
        }
    }
}

/// Routes leads 0..`leads` on a fresh store, `batch` route messages at a time through
/// `handle_route_batch` (0: one at a time through `handle`), every decision at the same
/// instant; returns each lead's owner and the open-lead counters.
async fn route_in_batches(
    weights: &[u32],
    cap: Option<u32>,
    leads: usize,
    batch: usize,
    same_person: bool,
) -> (Vec<Owner>, HashMap<String, i64>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_store(dir.path());
    let at = "2026-11-26T10:00:00Z".parse().expect("instant");
    let clock: Arc<dyn Clock> = Arc::new(HandClock::new(at));
    // Merging a person's second lead is on by default ([routing] merge_window_hours).
    let pipeline = Pipeline::new(
        Arc::new(parse_config(&team(weights, cap))),
        Arc::new(db.clone()),
        Arc::new(db.clone()),
        Arc::new(
            Channels::new(Duration::from_secs(1), Box::new(Terminal::default())).expect("channels"),
        ),
        clock,
    );
    for n in 0..leads {
        let mut lead = enriched_lead(n);
        if same_person && n % 3 == 1 {
            // The person of the lead before writes again: merged into it.
            lead.capture.captured_email = Some(format!("p{}@acme.example", n - 1));
        }
        db.create_lead(&lead).await.expect("create");
    }
    let bodies: Vec<String> = (0..leads)
        .map(|n| Envelope::new(&format!("lead-{n}"), Stage::Route, "t").to_json())
        .collect();
    if batch == 0 {
        for body in &bodies {
            pipeline.handle(Stage::Route, body).await.expect("routed");
        }
    } else {
        for chunk in bodies.chunks(batch) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let routed = pipeline.handle_route_batch(&chunk).await;
            for outcome in routed.outcomes {
                outcome.expect("routed");
            }
            // Only a person's second lead leaves the batch: no write is refused by a guard
            // (each decision saw the figures as the store had them).
            if !same_person {
                assert_eq!(routed.alone, 0, "leads routed alone");
            }
        }
    }
    owners_and_counters(&db, weights.len(), leads).await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// The embedded route worker decides a batch on one read and writes it in one commit:
    /// each decision must see the ones before it exactly as the store would, so the owners,
    /// rotation and caps come out as routing one lead at a time would make them, merges of a
    /// person's second lead included.
    #[test]
    fn a_batch_decided_on_one_read_routes_exactly_as_one_lead_at_a_time(
        weights in prop::collection::vec(1u32..4, 2..5),
        leads in 4usize..30,
        batch in 2usize..12,
        cap in prop::option::of(1u32..6),
        same_person in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let one_by_one = runtime.block_on(route_in_batches(&weights, cap, leads, 0, same_person));
        let batched = runtime.block_on(route_in_batches(&weights, cap, leads, batch, same_person));
        prop_assert_eq!(&batched.0, &one_by_one.0, "owners");
        prop_assert_eq!(&batched.1, &one_by_one.1, "open-lead counters");
        prop_assert_eq!(batched.1.values().sum::<i64>() as usize,
            one_by_one.0.len() - if same_person { (1..leads).step_by(3).count() } else { 0 });
    }
}
