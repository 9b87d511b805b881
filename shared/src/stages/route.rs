//! The route stage: qualify, plan, read the figures the plan needs, choose, and write the owner
//! with its guarded counters and ledgers in one conditional write; a second lead from an open
//! contact merges into the first.
//!
//! A batch of route messages can be decided on one read and written in one commit
//! ([`Pipeline::handle_route_batch`]): each decision sees the ones before it, as the store's
//! guards will, and a lead whose write is refused is routed again on its own.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tracing::{info, warn};

use super::{Outcome, Pipeline, StageError};
use crate::model::{Assignment, Envelope, Lead, LeadState, Stage, StageFailure};
use crate::ports::{Advance, Outgoing, StoreError};
use crate::routing::effects::{ContactWrite, Effects};
use crate::routing::{duplicates, Decision, Needs, Plan, Snapshot};

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
                self.decide_or_merge(&mut lead, &plan, now, None).await?
            };
            assign(&mut lead, decision.assignment, sla_minutes, now);
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
            log_routed(&lead);
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
    /// With `snapshot`, decides on it (a batch's figures) instead of reading the store's.
    async fn decide_or_merge(
        &self,
        lead: &mut Lead,
        plan: &Plan,
        now: Timestamp,
        snapshot: Option<&Snapshot>,
    ) -> Result<Decision, StageError> {
        let contact = self
            .config
            .routing
            .merge_window()
            .zip(duplicates::contact_key(lead));
        let Some((window, contact)) = contact else {
            lead.merged_into = None;
            return self.decide(plan, snapshot).await;
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
        let mut decision = self.decide(plan, snapshot).await?;
        decision.effects.contact = Some(ContactWrite {
            contact,
            lead_id: lead.id.clone(),
            routed_at: now,
            replaces: lookup.indexed,
        });
        Ok(decision)
    }

    /// Decides on `snapshot`, or on the figures the plan needs, read now.
    async fn decide(
        &self,
        plan: &Plan,
        snapshot: Option<&Snapshot>,
    ) -> Result<Decision, StageError> {
        if let Some(snapshot) = snapshot {
            return Ok(self.router.choose(plan, snapshot));
        }
        let needs = self.router.needs(plan);
        let snapshot = self.read_snapshot(&needs).await?;
        Ok(self.router.choose(plan, &snapshot))
    }

    async fn read_snapshot(&self, needs: &Needs) -> Result<Snapshot, StoreError> {
        let counters = self.store.counters(&needs.counter_names()).await?;
        let mut ledgers = Vec::with_capacity(needs.ledgers.len());
        for (pool, period) in &needs.ledgers {
            ledgers.push(self.store.ledger(pool, period).await?);
        }
        Ok(Snapshot::new(needs, counters, ledgers))
    }

    /// Routes a batch of route-queue message bodies, one result per body in order. The
    /// enriched leads among them are decided in order on one read of the figures (each
    /// decision applied to them before the next) and written in one
    /// [`LeadStore::advance_leads_and_send`](crate::ports::LeadStore::advance_leads_and_send);
    /// everything else (a lead already routed or not yet enriched, a second lead from a
    /// contact earlier in the batch, a write a guard refused and those after it) goes through
    /// [`Pipeline::handle_route`] one by one, exactly as if received alone.
    pub async fn handle_route_batch(&self, bodies: &[&str]) -> RoutedBatch {
        let mut results: Vec<Option<Result<Outcome, StageError>>> =
            bodies.iter().map(|_| None).collect();
        let now = self.clock.now();
        let mut batch: Vec<Batched> = Vec::with_capacity(bodies.len());
        let mut contacts = Vec::new();
        for (index, body) in bodies.iter().enumerate() {
            let Some(mut lead) = self.routable(body).await else {
                continue;
            };
            // A second lead from one person merges into the first, which is not written
            // yet: it waits for its own turn, after the batch.
            if let Some(contact) = duplicates::contact_key(&lead) {
                if contacts.contains(&contact) {
                    break;
                }
                contacts.push(contact);
            }
            let qualification = self.rulebook.qualify(&lead);
            let sla_minutes = qualification.sla_minutes;
            lead.qualification = Some(qualification);
            let plan = self.router.plan(&lead, now);
            batch.push(Batched {
                index,
                seen: lead.last_failure.clone(),
                next: Outgoing {
                    stage: Stage::Notify,
                    envelope: Envelope::new(&lead.id, Stage::Notify, &lead.trace_id),
                },
                lead,
                plan,
                sla_minutes,
                effects: Effects::none(),
            });
        }
        if let Err(error) = self.decide_batch(&mut batch, now).await {
            // Nothing was written: each lead is routed on its own instead.
            warn!(stage = "route", %error, "batch routing failed; routing one by one");
            batch.clear();
        }
        let writes: Vec<Advance<'_>> = batch
            .iter()
            .map(|b| Advance {
                lead: &b.lead,
                from: LeadState::Enriched,
                effects: &b.effects,
                next: &b.next,
            })
            .collect();
        let advanced = self.store.advance_leads_and_send(&writes).await;
        drop(writes);
        for (batched, sent) in batch.into_iter().zip(advanced.sent) {
            log_routed(&batched.lead);
            let outcome = match sent {
                true => Ok(Outcome::default()),
                false => self
                    .forward(&batched.lead, Stage::Notify)
                    .await
                    .map(|()| Outcome::default()),
            };
            if let Ok(done) = &outcome {
                self.recovered(Stage::Route, &batched.lead.id, batched.seen, done)
                    .await;
            }
            results[batched.index] = Some(outcome);
        }
        if let Some(error) = &advanced.stopped {
            info!(stage = "route", %error, "a batch write was refused; routing the rest one by one");
        }
        let mut routed = RoutedBatch {
            outcomes: Vec::with_capacity(bodies.len()),
            alone: 0,
        };
        for (body, result) in bodies.iter().zip(results) {
            routed.outcomes.push(match result {
                Some(result) => result,
                None => {
                    routed.alone += 1;
                    self.handle_route(body).await
                }
            });
        }
        routed
    }

    /// The lead a route message names when it is ready to route (enriched); `None` for
    /// anything else, which [`Pipeline::handle_route`] deals with alone.
    async fn routable(&self, body: &str) -> Option<Lead> {
        let envelope = Envelope::from_json(body).ok()?;
        if envelope.stage != Stage::Route {
            return None;
        }
        let lead = self.store.get_lead(&envelope.lead_id).await.ok()??;
        (lead.state == LeadState::Enriched).then_some(lead)
    }

    /// Decides each lead of the batch in order on one read of everything their plans need,
    /// applying each decision to the figures before the next.
    async fn decide_batch(&self, batch: &mut [Batched], now: Timestamp) -> Result<(), StageError> {
        let mut needs = Needs::default();
        for batched in batch.iter() {
            needs.add(&self.router.needs(&batched.plan));
        }
        let mut snapshot = self.read_snapshot(&needs).await?;
        for batched in batch.iter_mut() {
            let decision = self
                .decide_or_merge(&mut batched.lead, &batched.plan, now, Some(&snapshot))
                .await?;
            snapshot.apply(&decision.effects);
            assign(
                &mut batched.lead,
                decision.assignment,
                batched.sla_minutes,
                now,
            );
            batched.effects = decision.effects;
        }
        Ok(())
    }
}

/// What [`Pipeline::handle_route_batch`] did.
#[derive(Debug)]
pub struct RoutedBatch {
    /// One result per body, in order.
    pub outcomes: Vec<Result<Outcome, StageError>>,
    /// How many bodies were handled one by one instead of in the batch's write: not enriched
    /// (done already, or early), a person's second lead, or refused by a guard.
    pub alone: usize,
}

/// A lead of a route batch, from its read to its write.
struct Batched {
    /// Its body's place in the batch.
    index: usize,
    lead: Lead,
    /// The failure recorded on the lead when read, cleared once it is routed.
    seen: Option<StageFailure>,
    plan: Plan,
    sla_minutes: u32,
    effects: Effects,
    next: Outgoing,
}

/// Gives the lead its owner and SLA deadline, routed at `now`.
fn assign(lead: &mut Lead, assignment: Assignment, sla_minutes: u32, now: Timestamp) {
    // The SLA clock starts at capture, or at the opening when the alert is held. A capture
    // stamped after now was stamped by a clock since stepped back: counting from it would
    // postpone the deadline by the step, so the SLA runs from now.
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
}

fn log_routed(lead: &Lead) {
    let q = lead.qualification.as_ref();
    let a = lead.assignment.as_ref();
    info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "route",
        owner = %a.map(|a| a.owner.to_string()).unwrap_or_default(),
        rule = a.map(|a| a.rule.as_str()).unwrap_or(""),
        merged_into = lead.merged_into.as_deref(),
        tier = q.map(|q| q.tier), score = q.map(|q| q.score),
        held_until = ?a.and_then(|a| a.held_until), "routed");
}
