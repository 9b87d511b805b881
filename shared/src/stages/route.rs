//! The route stage: qualify, plan, read the figures the plan needs, choose, and write the owner
//! with its guarded counters and ledgers in one conditional write; a second lead from an open
//! contact merges into the first.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tracing::info;

use super::{Outcome, Pipeline, StageError};
use crate::model::{Envelope, Lead, LeadState, Stage};
use crate::ports::{Outgoing, StoreError};
use crate::routing::effects::ContactWrite;
use crate::routing::{duplicates, Decision, Plan, Snapshot};

/// Rounds of read-decide-write before routing gives up on contention and uses the default
/// queue (which has no guard).
const ROUTE_ATTEMPTS: u32 = 8;
/// The longest pause between two routing attempts after a collision.
const MAX_CONTENTION_PAUSE_MS: u64 = 50;

impl Pipeline {
    pub(super) async fn route(&self, mut lead: Lead) -> Result<Outcome, StageError> {
        if lead.state > LeadState::Enriched {
            self.forward(&lead, Stage::Notify).await?;
            return Ok(Outcome {
                skipped_as_done: true,
                ..Outcome::default()
            });
        }
        if lead.state < LeadState::Enriched {
            // An envelope that overtook its predecessor: fail, so it is retried after enrich.
            return Err(StoreError::Conflict {
                lead_id: lead.id,
                expected: LeadState::Enriched,
                actual: lead.state,
            }
            .into());
        }
        let qualification = self.rulebook.qualify(&lead);
        let sla_minutes = qualification.sla_minutes;
        lead.qualification = Some(qualification);
        let now = self.clock.now();
        let plan = self.router.plan(&lead, now);
        let mut attempt = 0;
        let next = Outgoing {
            stage: Stage::Notify,
            envelope: Envelope::new(&lead.id, Stage::Notify, &lead.trace_id),
        };
        // Whether the write applied, and whether the store queued the notify message with it.
        let (applied, sent) = loop {
            attempt += 1;
            // Capacity and rotation guards fail when another router moved first: read the
            // figures again and decide again; after a few rounds, the default queue.
            let decision = if attempt > ROUTE_ATTEMPTS {
                lead.merged_into = None;
                self.router.last_resort(&plan)
            } else {
                self.decide_or_merge(&mut lead, &plan, now).await?
            };
            let assignment = decision.assignment;
            // The SLA clock starts at capture, or at the opening when the alert is held. A
            // capture stamped after now was stamped by a clock since stepped back: counting
            // from it would postpone the deadline by the step, so the SLA runs from now.
            let sla_from = assignment
                .held_until
                .or(lead.timeline.captured_at.map(|captured| captured.min(now)))
                .unwrap_or(now);
            lead.timeline.sla_due_at = sla_from
                .checked_add(SignedDuration::from_mins(i64::from(sla_minutes)))
                .ok();
            lead.assignment = Some(assignment);
            lead.state = LeadState::Routed;
            lead.timeline.routed_at = Some(now);
            // The owner, its open-lead counter and the pool ledger change in one conditional
            // write: a retry can neither pick a second owner nor count the lead twice.
            match self
                .store
                .advance_lead_and_send(&lead, LeadState::Enriched, &decision.effects, &next)
                .await
            {
                Ok(sent) => break (true, sent),
                Err(StoreError::Conflict { actual, .. }) if actual > LeadState::Enriched => {
                    break (false, false)
                }
                Err(StoreError::Contended(what)) if attempt <= ROUTE_ATTEMPTS => {
                    info!(lead_id = %lead.id, stage = "route", attempt, contended = %what, "deciding again");
                    // Routers that collided back off by a random, growing pause, so they do
                    // not collide again in lockstep.
                    let ceiling_ms = (1u64 << attempt.min(6)).min(MAX_CONTENTION_PAUSE_MS);
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=ceiling_ms))).await;
                }
                Err(other) => return Err(other.into()),
            }
        };
        if applied {
            let q = lead.qualification.as_ref();
            let a = lead.assignment.as_ref();
            info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "route",
                owner = %a.map(|a| a.owner.to_string()).unwrap_or_default(),
                rule = a.map(|a| a.rule.as_str()).unwrap_or(""),
                merged_into = lead.merged_into.as_deref(),
                tier = q.map(|q| q.tier), score = q.map(|q| q.score),
                held_until = ?a.and_then(|a| a.held_until), "routed");
        }
        if !sent {
            self.forward(&lead, Stage::Notify).await?;
        }
        Ok(Outcome {
            skipped_as_done: !applied,
            ..Outcome::default()
        })
    }

    /// A second lead from a person whose lead is still open (within the merge window) goes to
    /// that lead's owner, merged into it; any other lead is routed by the plan and, when it
    /// has an e-mail address, becomes its contact's open lead in the same write.
    async fn decide_or_merge(
        &self,
        lead: &mut Lead,
        plan: &Plan,
        now: Timestamp,
    ) -> Result<Decision, StageError> {
        let contact = self
            .config
            .routing
            .merge_window()
            .zip(duplicates::contact_key(lead));
        let Some((window, contact)) = contact else {
            lead.merged_into = None;
            return self.decide(plan).await;
        };
        let since = now.checked_sub(window).unwrap_or(Timestamp::MIN);
        let lookup = self.store.open_lead_for_contact(&contact, since).await?;
        let merged = lookup
            .open
            .as_deref()
            .filter(|open| open.id != lead.id)
            .and_then(|open| Some((open.id.clone(), duplicates::merge(open, now)?)));
        if let Some((into, decision)) = merged {
            lead.merged_into = Some(into);
            return Ok(decision);
        }
        lead.merged_into = None;
        let mut decision = self.decide(plan).await?;
        decision.effects.contact = Some(ContactWrite {
            contact,
            lead_id: lead.id.clone(),
            routed_at: now,
            replaces: lookup.indexed,
        });
        Ok(decision)
    }

    /// Reads the figures the plan needs and decides on them.
    async fn decide(&self, plan: &Plan) -> Result<Decision, StageError> {
        let needs = self.router.needs(plan);
        let counters = self.store.counters(&needs.counter_names()).await?;
        let mut ledgers = Vec::with_capacity(needs.ledgers.len());
        for (pool, period) in &needs.ledgers {
            ledgers.push(self.store.ledger(pool, period).await?);
        }
        Ok(self
            .router
            .choose(plan, &Snapshot::new(&needs, counters, ledgers)))
    }
}
