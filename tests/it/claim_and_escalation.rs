//! The claim loop and SLA escalation end to end over the embedded store, on a clock the test
//! moves: the first claim wins, a lead nobody claims climbs the ladder and stops at its top,
//! and a rep who lets leads lapse stops getting new ones until resumed.

use crate::support::{parse_config, shipped_example_config, ManualPipeline};
use jiff::{SignedDuration, Timestamp};
use leadrelay_shared::model::{CaptureEvent, EventKind, Lead, LeadState, Metadata, Owner, Stage};
use leadrelay_shared::ports::{Clock, LeadStore, Queue};
use leadrelay_shared::routing::{open_leads_counter, sla_streak_counter};
use leadrelay_shared::stages::claim::{self, ClaimOutcome, ClaimVia};
use leadrelay_shared::stages::sla;

/// Tuesday 13:00 in New York, 10:00 in California: Alice and her backup Dana are both working.
const TUESDAY_AFTERNOON: &str = "2026-11-24T18:00:00Z";

/// The stage code worked by hand from Tuesday afternoon on.
struct Harness {
    manual: ManualPipeline,
    start: Timestamp,
}

impl std::ops::Deref for Harness {
    type Target = ManualPipeline;

    fn deref(&self) -> &ManualPipeline {
        &self.manual
    }
}

impl Harness {
    fn new(config_text: &str) -> Harness {
        let start: Timestamp = TUESDAY_AFTERNOON.parse().expect("time");
        Harness {
            manual: ManualPipeline::new(parse_config(config_text), start),
            start,
        }
    }

    fn at(&self, minutes: i64, seconds: i64) {
        self.clock.set(
            self.start + SignedDuration::from_mins(minutes) + SignedDuration::from_secs(seconds),
        );
    }

    /// A tier-1 lead (the bot could not answer) from Alice's named account, Acme Robotics,
    /// taken through enrich, route and notify.
    async fn alert(&self, id: &str) -> Lead {
        let capture = CaptureEvent {
            event: Some(EventKind::LeadCaptureFallback),
            captured_email: Some(format!("{id}@acme-robotics.com")),
            name: Some("Pat Quinn".into()),
            trigger_query: Some("Can someone call me about pricing?".into()),
            metadata: Metadata {
                source_url: Some("https://www.yourco.example/pricing".into()),
                ..Metadata::default()
            },
            ..CaptureEvent::default()
        };
        let now = self.clock.now();
        let lead = Lead::captured(
            id.into(),
            format!("trace-{id}"),
            "website".into(),
            format!("evt-{id}"),
            capture,
            Vec::new(),
            now,
        );
        self.db.create_lead(&lead).await.expect("stored");
        for stage in [Stage::Enrich, Stage::Route, Stage::Notify] {
            self.handle(stage, id).await;
        }
        self.lead(id).await
    }

    async fn counter(&self, name: &str) -> i64 {
        self.db.counter(name).await.expect("counter")
    }
}

fn owner(lead: &Lead) -> String {
    lead.assignment.as_ref().expect("owned").owner.key()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclaimed_tier_1_lead_escalates_twice_along_its_chain_then_stops() {
    let h = Harness::new(&shipped_example_config());
    // Drain the messages enrich and route forwarded, so only sla-watch's remain.
    let lead = h.alert("lapse").await;
    while !h.db.receive(Stage::Route, 50).await.expect("r").is_empty() {}
    while !h.db.receive(Stage::Notify, 50).await.expect("r").is_empty() {}
    assert_eq!(lead.state, LeadState::Notified);
    assert_eq!(owner(&lead), "rep:alice");
    assert_eq!(lead.qualification.as_ref().map(|q| q.tier), Some(1));
    assert_eq!(
        lead.timeline.sla_due_at,
        Some(h.start + SignedDuration::from_mins(5))
    );
    assert_eq!(h.terminal.alerts_for("lapse"), 1);

    // 4:59 in: not yet due.
    h.at(4, 59);
    let report = h.sweep().await;
    assert_eq!(report.breaches, 0);
    assert_eq!(h.lead("lapse").await.escalation_level(), 0);

    // 5:01: Alice's SLA passed. Level 1: her backup, Dana, with a fresh 5 minutes.
    h.at(5, 1);
    let report = h.sweep().await;
    assert_eq!(report.breaches, 1);
    assert_eq!(report.escalated, vec![("lapse".to_owned(), 1)]);
    let lead = h.lead("lapse").await;
    assert_eq!(owner(&lead), "rep:dana");
    assert_eq!(lead.state, LeadState::Notified, "Dana was alerted");
    assert_eq!(lead.escalation_level(), 1);
    let step = &lead.escalations[0];
    assert_eq!(step.from, Owner::Rep("alice".into()));
    assert_eq!(step.to, Owner::Rep("dana".into()));
    assert_eq!(step.missed, h.start + SignedDuration::from_mins(5));
    let escalated_at = h.start + SignedDuration::from_secs(301);
    assert_eq!(lead.timeline.escalated_at, Some(escalated_at));
    assert_eq!(
        lead.timeline.sla_due_at,
        Some(escalated_at + SignedDuration::from_mins(5))
    );
    assert_eq!(
        lead.timeline.notified_at,
        Some(h.start),
        "first-response time keeps the first alert"
    );
    assert_eq!(
        h.terminal.alerts_for("lapse"),
        2,
        "the escalation was alerted"
    );
    assert!(
        lead.assignment
            .as_ref()
            .expect("owned")
            .reason
            .contains("alice")
            || lead
                .assignment
                .as_ref()
                .expect("owned")
                .reason
                .contains("Alice"),
        "the reason names whose SLA passed"
    );
    assert_eq!(
        h.counter(&open_leads_counter(&Owner::Rep("alice".into())))
            .await,
        0
    );
    assert_eq!(
        h.counter(&open_leads_counter(&Owner::Rep("dana".into())))
            .await,
        1
    );
    assert_eq!(h.counter(&sla_streak_counter("alice")).await, 1);

    // A second run at the same instant does nothing: the deadline moved.
    assert_eq!(h.sweep().await.breaches, 0);

    // 10:02: Dana's passed too. Level 2: the team queue (its manager is alerted).
    h.at(10, 2);
    let report = h.sweep().await;
    assert_eq!(report.escalated, vec![("lapse".to_owned(), 2)]);
    let lead = h.lead("lapse").await;
    assert_eq!(owner(&lead), "queue:sales-inbox");
    assert_eq!(lead.escalations[1].from, Owner::Rep("dana".into()));
    assert_eq!(h.terminal.alerts_for("lapse"), 3);
    assert_eq!(h.counter(&sla_streak_counter("dana")).await, 1);

    // 15:03: the queue's deadline passed, and the ladder has no third step: it stops there.
    h.at(15, 3);
    let report = h.sweep().await;
    assert_eq!(report.breaches, 1);
    assert!(report.escalated.is_empty());
    assert_eq!(report.stopped, vec!["lapse".to_owned()]);
    let lead = h.lead("lapse").await;
    assert_eq!(
        owner(&lead),
        "queue:sales-inbox",
        "left with the last owner"
    );
    assert!(lead.timeline.escalation_stopped_at.is_some());
    assert_eq!(h.terminal.alerts_for("lapse"), 3, "no alert past the top");

    // Never again, however late.
    h.at(120, 0);
    assert_eq!(h.sweep().await, sla::SweepReport::default());
    assert!(h
        .db
        .due_leads(h.clock.now(), 10)
        .await
        .expect("due")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_claims_give_one_owner_and_the_other_is_told_who() {
    let h = Harness::new(&shipped_example_config());
    h.alert("contested").await;
    h.at(2, 30);
    // Dana (Alice's backup) and Maria (her team queue's manager), both allowed to claim
    // Alice's lead, press Claim at the same moment, each many times over.
    let attempts = (0..8).map(|n| {
        let pipeline = h.pipeline.clone();
        let rep = if n % 2 == 0 { "dana" } else { "maria" };
        tokio::spawn(async move {
            (
                rep,
                claim::claim(&pipeline, "contested", rep, ClaimVia::Link).await,
            )
        })
    });
    let results: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let winners: Vec<&str> = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(ClaimOutcome::Won { .. })))
        .map(|(rep, _)| *rep)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = winners[0];
    for (rep, result) in &results {
        match result.as_ref().expect("no errors") {
            ClaimOutcome::Won { .. } => {}
            ClaimOutcome::AlreadyYours { .. } => assert_eq!(*rep, winner),
            ClaimOutcome::OwnedBy { rep: owner, at, .. } => {
                assert_ne!(rep, &winner);
                assert_eq!(owner, winner, "the loser is told who owns it");
                assert_eq!(*at, h.clock.now());
            }
            ClaimOutcome::Refused { why, .. } => panic!("{rep} may claim: {why}"),
        }
    }
    let lead = h.lead("contested").await;
    assert_eq!(lead.state, LeadState::Claimed);
    assert_eq!(owner(&lead), format!("rep:{winner}"));
    assert_eq!(
        lead.timeline.claimed_at,
        Some(h.start + SignedDuration::from_secs(150))
    );
    // The open lead moved from Alice to the winner, exactly once.
    assert_eq!(
        h.counter(&open_leads_counter(&Owner::Rep("alice".into())))
            .await,
        0
    );
    assert_eq!(
        h.counter(&open_leads_counter(&Owner::Rep(winner.into())))
            .await,
        1
    );

    // First response: 0 s for the system (the clock stood still), 2:30 for the humans.
    let first = claim::FirstResponse::of(&lead);
    assert_eq!(first.system, Some(SignedDuration::ZERO));
    assert_eq!(first.human, Some(SignedDuration::from_secs(150)));
    assert_eq!(first.total, Some(SignedDuration::from_secs(150)));

    // Claimed: the SLA clock stopped.
    h.at(30, 0);
    assert_eq!(h.sweep().await.breaches, 0);
    assert_eq!(h.lead("contested").await.escalation_level(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_and_an_escalation_racing_never_both_stick() {
    let h = Harness::new(&shipped_example_config());
    h.alert("race").await;
    h.at(5, 1);
    let (claimed, swept) = tokio::join!(
        claim::claim(&h.pipeline, "race", "alice", ClaimVia::Slack),
        sla::sweep(&h.pipeline)
    );
    let claimed = claimed.expect("claim");
    let swept = swept.expect("sweep");
    let lead = h.lead("race").await;
    match claimed {
        // The claim came first: nothing escalated.
        ClaimOutcome::Won { .. } if swept.escalated.is_empty() => {
            assert_eq!(lead.state, LeadState::Claimed);
            assert_eq!(lead.escalation_level(), 0);
        }
        // The escalation came first, then Alice's claim still won on the new revision.
        ClaimOutcome::Won { .. } => {
            assert_eq!(lead.state, LeadState::Claimed);
            assert_eq!(lead.escalation_level(), 1);
            assert_eq!(owner(&lead), "rep:alice");
        }
        other => panic!("nobody else claimed, got {other:?}"),
    }
    // Whatever the order, Alice's open-lead count is consistent with who owns it.
    let open_alice = h
        .counter(&open_leads_counter(&Owner::Rep("alice".into())))
        .await;
    let open_dana = h
        .counter(&open_leads_counter(&Owner::Rep("dana".into())))
        .await;
    assert_eq!((open_alice, open_dana), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_who_lets_three_leads_lapse_is_paused_until_resumed() {
    let h = Harness::new(&shipped_example_config());
    for n in 0..3 {
        let id = format!("lapse{n}");
        let lead = h.alert(&id).await;
        assert_eq!(owner(&lead), "rep:alice", "{id} goes to the account owner");
        h.at(5 * (n + 1) + 1, 0);
        let report = h.sweep().await;
        assert!(report.escalated.contains(&(id.clone(), 1)), "{report:?}");
        if n == 2 {
            assert_eq!(report.paused, vec!["alice".to_owned()]);
        } else {
            assert!(report.paused.is_empty());
        }
    }
    assert_eq!(h.counter(&sla_streak_counter("alice")).await, 3);

    // Paused: her next named-account lead goes to her backup instead, and says why.
    let lead = h.alert("while-paused").await;
    assert_eq!(owner(&lead), "rep:dana");
    let trace = format!(
        "{:?}",
        lead.assignment.as_ref().and_then(|a| a.trace.as_ref())
    );
    assert!(trace.contains("paused"), "{trace}");

    // Claiming her own old lead does not unpause her: resuming is on purpose.
    let outcome = claim::claim(&h.pipeline, "lapse0", "alice", ClaimVia::Link)
        .await
        .expect("claim");
    assert!(matches!(outcome, ClaimOutcome::Won { .. }));
    assert_eq!(h.counter(&sla_streak_counter("alice")).await, 3);

    // Resumed (`leadrelay reps resume alice`): leads reach her again.
    let mut out = Vec::new();
    leadrelay::cli::resume(&h.pipeline.config, &h.db, "alice", &mut out)
        .await
        .expect("resume");
    assert!(String::from_utf8_lossy(&out).contains("alice resumed"));
    assert_eq!(owner(&h.alert("after-resume").await), "rep:alice");
    claim::claim(&h.pipeline, "after-resume", "alice", ClaimVia::Link)
        .await
        .expect("claim");

    // And a claim while not paused ends a run of missed SLAs.
    h.at(40, 0);
    h.alert("one-more").await;
    h.at(46, 0);
    h.sweep().await;
    assert_eq!(h.counter(&sla_streak_counter("alice")).await, 1);
    let fresh = h.alert("claimed-in-time").await;
    assert_eq!(owner(&fresh), "rep:alice");
    claim::claim(&h.pipeline, "claimed-in-time", "alice", ClaimVia::Slack)
        .await
        .expect("claim");
    assert_eq!(h.counter(&sla_streak_counter("alice")).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_watch_releases_a_held_after_hours_alert_at_the_opening() {
    let h = Harness::new(&shipped_example_config());
    // Tuesday 20:00 in London: EMEA holds alerts until Wednesday 08:30.
    let evening: Timestamp = "2026-11-24T20:00:00Z".parse().expect("time");
    h.clock.set(evening);
    let capture = CaptureEvent {
        event: Some(EventKind::LeadCapture),
        captured_email: Some("tom@initech.co.uk".into()),
        name: Some("Tom Baker".into()),
        trigger_query: Some("Can we get a quote?".into()),
        ..CaptureEvent::default()
    };
    let lead = Lead::captured(
        "held".into(),
        "trace-held".into(),
        "website".into(),
        "evt-held".into(),
        capture,
        Vec::new(),
        evening,
    );
    h.db.create_lead(&lead).await.expect("stored");
    for stage in [Stage::Enrich, Stage::Route, Stage::Notify] {
        h.handle(stage, "held").await;
    }
    let opening: Timestamp = "2026-11-25T08:30:00Z".parse().expect("time");
    let lead = h.lead("held").await;
    assert_eq!(lead.state, LeadState::Routed, "held, not alerted");
    assert_eq!(lead.sla_watch_at(), Some(opening), "indexed at its opening");
    // Drain what the stages queued, so only sla-watch's message can deliver.
    while !h.db.receive(Stage::Notify, 50).await.expect("r").is_empty() {}

    h.clock.set(opening - SignedDuration::from_secs(1));
    assert!(h.sweep().await.released.is_empty());
    assert_eq!(h.terminal.alerts_for("held"), 0);

    h.clock.set(opening + SignedDuration::from_secs(5));
    let report = h.sweep().await;
    assert_eq!(report.released, vec!["held".to_owned()]);
    assert_eq!(
        report.breaches, 0,
        "released, not breached: the SLA starts at the opening"
    );
    assert_eq!(h.terminal.alerts_for("held"), 1);
    let lead = h.lead("held").await;
    assert_eq!(lead.state, LeadState::Notified);
    assert_eq!(
        lead.sla_watch_at(),
        Some(opening + SignedDuration::from_mins(15)),
        "now watched for its SLA"
    );
}
