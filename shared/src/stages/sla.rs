//! sla-watch: leads nobody claimed by their SLA deadline climb the escalation ladder.
//!
//! Each run reads only the leads that are due (the store's sparse due index). For each, it
//! counts a breach against the owner who let the deadline pass (pausing a rep after
//! `pause_after_breaches` in a row), then takes the next ladder step: a new owner, a new
//! deadline, and an alert through the notify stage with the lead's age. Past the last step the
//! lead stays with its owner and drops out of the index: the ladder has a top.
//!
//! Each run also queues the `[reports.digest]` digests that came due (see `digest.rs`).

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tracing::{info, warn};

use crate::config::{EscalateTo, EscalationStep};
use crate::model::{Envelope, Escalation, Lead, LeadState, Owner, Stage};
use crate::ports::StoreError;
use crate::routing::effects::{CounterBump, Effects};
use crate::routing::{open_leads_counter, sla_streak_counter, Snapshot};
use crate::stages::{Pipeline, StageError};

/// Due leads handled per run; the next run (or the loop in [`sweep`]) takes the rest.
const BATCH: usize = 100;
/// Batches per run, so that one run stays short even after an outage left many leads due.
const MAX_BATCHES: usize = 20;

/// What one sla-watch run did, for its log line and the breach metric.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Leads that passed a deadline unclaimed in this run.
    pub breaches: usize,
    /// Breaches by tier (the CloudWatch metric's dimension).
    pub breaches_by_tier: HashMap<u8, usize>,
    /// (lead id, new level) for every lead that climbed a step.
    pub escalated: Vec<(String, u32)>,
    /// Leads at the top of the ladder: left with their owner, no longer watched.
    pub stopped: Vec<String>,
    /// Reps paused by this run.
    pub paused: Vec<String>,
    /// Leads that changed while being escalated (a claim won): nothing to do.
    pub skipped: usize,
    /// Held after-hours alerts whose opening came, sent to the notify stage.
    pub released: Vec<String>,
    /// Scheduled digests that came due and were queued for the notify stage
    /// (`weekly:2026-11-30`).
    pub digests: Vec<String>,
}

/// Escalates every lead due at the clock's now, then queues any digest that came due.
pub async fn sweep(pipeline: &Pipeline) -> Result<SweepReport, StageError> {
    let mut report = SweepReport::default();
    for _ in 0..MAX_BATCHES {
        let now = pipeline.clock.now();
        let due = pipeline.store.due_leads(now, BATCH).await?;
        let count = due.len();
        for lead in due {
            escalate(pipeline, lead, now, &mut report).await?;
        }
        if count < BATCH {
            break;
        }
    }
    // After the escalations: a digest's trouble never holds up a lead.
    report.digests = pipeline.queue_due_digests(pipeline.clock.now()).await?;
    if report.breaches > 0 {
        info!(stage = "sla", breaches = report.breaches, escalated = report.escalated.len(),
            stopped = report.stopped.len(), paused = ?report.paused, "sla-watch");
    }
    Ok(report)
}

/// One due lead: breach, then the next step (or the top of the ladder). A lead that changed
/// since it was read (claimed a moment ago) is left alone: the claim won.
async fn escalate(
    pipeline: &Pipeline,
    lead: Lead,
    now: Timestamp,
    report: &mut SweepReport,
) -> Result<(), StageError> {
    // An after-hours alert whose opening came: out it goes, through the notify stage.
    if lead.alert_held_until().is_some_and(|held| held <= now)
        && lead.timeline.sla_due_at.is_none_or(|due| due > now)
    {
        pipeline
            .queue
            .send(
                Stage::Notify,
                &Envelope::new(&lead.id, Stage::Notify, &lead.trace_id),
            )
            .await?;
        report.released.push(lead.id);
        return Ok(());
    }
    let Some(missed) = lead.timeline.sla_due_at.filter(|due| *due <= now) else {
        return Ok(());
    };
    let Some(owner) = lead.assignment.as_ref().map(|a| a.owner.clone()) else {
        return Ok(());
    };
    let config = &pipeline.config.escalation;
    let level = lead.escalation_level();
    let tier = lead.qualification.as_ref().map_or(0, |q| q.tier);

    let mut effects = Effects::none();
    // The owner who let the deadline pass: one more in their run of missed SLAs.
    let mut pauses = None;
    if let Owner::Rep(rep) = &owner {
        let streak = sla_streak_counter(rep);
        effects.counters.push(CounterBump {
            name: streak.clone(),
            limit: None,
        });
        let missed_before = pipeline.store.counter(&streak).await?;
        if config.pause_after_breaches > 0
            && missed_before + 1 == i64::from(config.pause_after_breaches)
        {
            pauses = Some(rep.clone());
        }
    }

    let mut next = lead.clone();
    let step = config.ladder.get(level as usize);
    match step {
        Some(step) => {
            let to = next_owner(pipeline, step, &owner, now).await?;
            let due = now
                .checked_add(SignedDuration::from_mins(i64::from(
                    step.sla_minutes
                        .or_else(|| pipeline.config.tier(tier).map(|t| t.sla_minutes))
                        .unwrap_or(15),
                )))
                .ok();
            if to != owner {
                effects.releases.push(open_leads_counter(&owner));
                effects.counters.push(CounterBump {
                    name: open_leads_counter(&to),
                    limit: None,
                });
            }
            let age = lead
                .timeline
                .captured_at
                .map(|at| now.duration_since(at))
                .unwrap_or_default();
            if let Some(assignment) = next.assignment.as_mut() {
                assignment.reason = format!(
                    "escalated (level {}): {}'s SLA passed unclaimed, {} after capture",
                    level + 1,
                    assignment.owner_name,
                    super::claim::human_duration(age)
                );
                assignment.owner_name = pipeline.router.owner_name(&to);
                assignment.owner = to.clone();
                // Escalations are alerted at once, whatever the hour: that is their point.
                assignment.held_until = None;
            }
            next.escalations.push(Escalation {
                level: level + 1,
                at: now,
                from: owner.clone(),
                to,
                channels: step.channels.clone(),
                missed,
            });
            next.timeline.escalated_at = Some(now);
            next.timeline.sla_due_at = due;
            // Back to routed: the notify stage alerts the new owner (receipts are per round).
            next.state = LeadState::Routed;
        }
        None => {
            // The top of the ladder: the lead stays where it is, and is no longer watched.
            next.timeline.escalation_stopped_at = Some(now);
        }
    }

    loop {
        match pipeline
            .store
            .advance_lead(&next, lead.state, &effects)
            .await
        {
            Ok(()) => break,
            // Claimed (or escalated by another run) since it was read: the other write won.
            Err(StoreError::Stale(_) | StoreError::Conflict { .. }) => {
                report.skipped += 1;
                return Ok(());
            }
            // The old owner's count already read 0 (reset by hand): escalate without it.
            Err(StoreError::Contended(what)) if !effects.releases.is_empty() => {
                warn!(lead_id = %lead.id, stage = "sla", contended = %what, "escalating without the release");
                effects.releases.clear();
            }
            Err(other) => return Err(other.into()),
        }
    }
    report.breaches += 1;
    *report.breaches_by_tier.entry(tier).or_default() += 1;
    crate::metrics::sla_breach(tier, &lead.id);
    if let Some(rep) = pauses {
        warn!(stage = "sla", rep = %rep, missed = config.pause_after_breaches,
            "rep paused: no new leads until resumed");
        report.paused.push(rep);
    }
    if step.is_some() {
        info!(lead_id = %next.id, trace_id = %next.trace_id, stage = "sla",
            level = level + 1, from = %owner,
            to = %next.assignment.as_ref().map(|a| a.owner.to_string()).unwrap_or_default(),
            "escalated");
        report.escalated.push((next.id.clone(), level + 1));
        pipeline
            .queue
            .send(
                Stage::Notify,
                &Envelope::new(&next.id, Stage::Notify, &next.trace_id),
            )
            .await?;
    } else {
        info!(lead_id = %next.id, trace_id = %next.trace_id, stage = "sla", level,
            "top of the escalation ladder: no longer watched");
        report.stopped.push(next.id);
    }
    Ok(())
}

/// Who a ladder step hands the lead to.
async fn next_owner(
    pipeline: &Pipeline,
    step: &EscalationStep,
    owner: &Owner,
    now: Timestamp,
) -> Result<Owner, StageError> {
    let router = &pipeline.router;
    let rep = match owner {
        Owner::Rep(rep) => Some(rep.as_str()),
        _ => None,
    };
    let team_queue = || match (owner, rep) {
        (Owner::Queue(queue), _) => queue.clone(),
        (_, Some(rep)) => router.team_queue_of(rep).to_owned(),
        _ => pipeline.config.routing.fallback_queue.get_ref().clone(),
    };
    Ok(match step.to {
        EscalateTo::Owner => owner.clone(),
        EscalateTo::Queue => Owner::Queue(team_queue()),
        EscalateTo::Manager => {
            let queue = team_queue();
            match pipeline
                .config
                .queue(&queue)
                .and_then(|q| q.manager.as_ref())
            {
                Some(manager) => Owner::Rep(manager.get_ref().clone()),
                None => Owner::Queue(queue),
            }
        }
        EscalateTo::Backup => {
            let backup = rep.and_then(|rep| router.backup_of(rep));
            match backup {
                Some(backup) if available(pipeline, backup, now).await? => {
                    Owner::Rep(backup.to_owned())
                }
                _ => Owner::Queue(team_queue()),
            }
        }
    })
}

/// Whether a rep can take an escalated lead now: working, not away, not paused, under cap.
async fn available(pipeline: &Pipeline, rep: &str, now: Timestamp) -> Result<bool, StageError> {
    let needs = crate::routing::Needs {
        reps: vec![rep.to_owned()],
        streaks: vec![rep.to_owned()],
        ledgers: Vec::new(),
        away: vec![rep.to_owned()],
    };
    let counters = pipeline.store.counters(&needs.counter_names()).await?;
    let snapshot = Snapshot::new(&needs, counters, Vec::new());
    Ok(pipeline.router.can_take(rep, now, &snapshot).is_ok())
}
