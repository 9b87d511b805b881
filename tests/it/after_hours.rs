//! The after-hours `hold` policy end to end over the embedded store: the lead is owned at once,
//! its rep's alert waits for the team's opening (the SLA clock starts there), and goes out then.

use crate::support::{initech_lead, parse_config, shipped_example_config, ManualPipeline};
use jiff::Timestamp;
use leadrelay_shared::model::{Envelope, LeadState, Stage};
use leadrelay_shared::ports::{LeadStore, Queue};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_alert_waits_for_the_opening_then_goes_out() {
    // Tuesday 20:00 in London: EMEA is closed and holds alerts until Wednesday 08:30.
    let evening: Timestamp = "2026-11-24T20:00:00Z".parse().expect("time");
    let ManualPipeline {
        db,
        pipeline,
        clock,
        terminal,
        ..
    } = &ManualPipeline::new(parse_config(&shipped_example_config()), evening);
    db.create_lead(&initech_lead("held-lead", "tom@initech.co.uk", evening))
        .await
        .expect("stored");

    let route = Envelope::new("held-lead", Stage::Route, "trace-held").to_json();
    pipeline.handle(Stage::Route, &route).await.expect("routed");
    let lead = db.get_lead("held-lead").await.expect("read").expect("lead");
    let assignment = lead.assignment.clone().expect("owned at once");
    let opening: Timestamp = "2026-11-25T08:30:00Z".parse().expect("time");
    assert_eq!(assignment.owner.key(), "rep:bruno");
    assert_eq!(assignment.held_until, Some(opening));
    let note = assignment
        .trace
        .and_then(|t| t.after_hours)
        .expect("policy recorded");
    assert_eq!(note.policy, "hold");
    // Tier 2 (15 minutes), counted from the opening, not from capture.
    assert_eq!(
        lead.timeline.sla_due_at,
        Some(opening + jiff::SignedDuration::from_mins(15))
    );

    // The notify stage at night: no alert; the envelope comes back later on its own.
    let forwarded = db.receive(Stage::Notify, 10).await.expect("receive");
    assert_eq!(forwarded.len(), 1, "route forwards to notify at once");
    let notify = forwarded[0].body.clone();
    pipeline
        .handle(Stage::Notify, &notify)
        .await
        .expect("deferred");
    db.delete(Stage::Notify, &forwarded[0].receipt)
        .await
        .expect("delete");
    assert_eq!(
        terminal.alerts_for("held-lead"),
        0,
        "nothing sent before the opening"
    );
    let lead = db.get_lead("held-lead").await.expect("read").expect("lead");
    assert_eq!(lead.state, LeadState::Routed);
    // It was re-sent delayed (by up to SQS's 15 minutes): nothing is visible yet.
    let visible = db.receive(Stage::Notify, 10).await.expect("receive");
    assert!(
        visible.is_empty(),
        "the held envelope came back without a delay"
    );

    // At the opening, the same path delivers.
    clock.set(opening + jiff::SignedDuration::from_secs(1));
    pipeline
        .handle(Stage::Notify, &notify)
        .await
        .expect("notified");
    assert_eq!(terminal.alerts_for("held-lead"), 1);
    let lead = db.get_lead("held-lead").await.expect("read").expect("lead");
    assert_eq!(lead.state, LeadState::Notified);
}
