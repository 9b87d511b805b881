//! Claiming a lead: the first claim wins, atomically, and later claimers learn who owns it.
//!
//! A claim stops the SLA clock (the lead leaves the due index), makes the claimer the owner
//! (moving the open-lead count if the lead sat with someone else, a queue or a broadcast pool)
//! and ends the claimer's run of missed SLAs unless they are paused. It is reached from the
//! Slack Claim button, a signed link in an e-mail or SMS, or the CLI.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tracing::{info, warn};

use crate::model::{Claim, Envelope, Lead, LeadState, Owner, Stage};
use crate::ports::{LeadStore, StoreError};
use crate::render::slack_escape;
use crate::routing::effects::{CounterBump, Effects, LedgerWrite};
use crate::routing::{open_leads_counter, sla_streak_counter};
use crate::stages::{claim_policy, Pipeline};

/// Where a claim came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimVia {
    Slack,
    Link,
    /// The Claim button on the lead's page in the console.
    Console,
}

impl ClaimVia {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimVia::Slack => "slack",
            ClaimVia::Link => "link",
            ClaimVia::Console => "console",
        }
    }
}

/// First-response time, split so neither side can blame the other without figures: the
/// system's part runs from capture (or, for an alert held after hours, from the opening it
/// was held for) to the alert's delivery; the human part from delivery to the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FirstResponse {
    pub system: Option<SignedDuration>,
    pub human: Option<SignedDuration>,
    pub total: Option<SignedDuration>,
}

impl FirstResponse {
    pub fn of(lead: &Lead) -> FirstResponse {
        let t = &lead.timeline;
        let held = lead.assignment.as_ref().and_then(|a| a.held_until);
        let start = match (t.captured_at, held) {
            (Some(captured), Some(held)) => Some(captured.max(held)),
            (captured, _) => captured,
        };
        // A wall clock stepped back between two stamps would make a part negative: it
        // counts as zero.
        let between = |from: Option<Timestamp>, to: Option<Timestamp>| {
            from.zip(to)
                .map(|(from, to)| to.duration_since(from).max(SignedDuration::ZERO))
        };
        FirstResponse {
            system: between(start, t.notified_at),
            human: between(t.notified_at, t.claimed_at),
            total: between(start, t.claimed_at),
        }
    }
}

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// This claim won.
    Won {
        lead: Box<Lead>,
        first_response: FirstResponse,
    },
    /// The same rep had already claimed it (a double click, a retried request).
    AlreadyYours { lead: Box<Lead> },
    /// Someone else was first.
    OwnedBy {
        lead: Box<Lead>,
        rep: String,
        at: Timestamp,
    },
    /// The lead's claim policy does not let this rep claim it; nothing changed.
    Refused {
        lead: Box<Lead>,
        /// The current owner's display name.
        owner: String,
        /// Who owns it, who may claim it and which policy says so, for the refused rep.
        why: String,
    },
}

impl ClaimOutcome {
    pub fn lead(&self) -> &Lead {
        match self {
            ClaimOutcome::Won { lead, .. }
            | ClaimOutcome::AlreadyYours { lead }
            | ClaimOutcome::OwnedBy { lead, .. }
            | ClaimOutcome::Refused { lead, .. } => lead,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("no lead {0}")]
    NotFound(String),
    #[error("{0:?} is not a configured rep")]
    UnknownRep(String),
    #[error("lead {lead_id} is {state}: only a routed or notified lead can be claimed")]
    NotClaimable { lead_id: String, state: LeadState },
    #[error("lead {0} kept changing while it was being claimed; try again")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Read-decide-write rounds before giving up on a lead that keeps changing underneath.
const CLAIM_ATTEMPTS: usize = 8;

/// Claims `lead_id` for `rep`. Concurrent claims race on one conditional write: exactly one
/// wins; the others read the winner.
pub async fn claim(
    pipeline: &Pipeline,
    lead_id: &str,
    rep: &str,
    via: ClaimVia,
) -> Result<ClaimOutcome, ClaimError> {
    if pipeline.config.rep(rep).is_none() {
        return Err(ClaimError::UnknownRep(rep.to_owned()));
    }
    let store: &dyn LeadStore = pipeline.store.as_ref();
    let pause_after = i64::from(pipeline.config.escalation.pause_after_breaches);
    let streak = sla_streak_counter(rep);
    for _ in 0..CLAIM_ATTEMPTS {
        let lead = store
            .get_lead(lead_id)
            .await?
            .ok_or_else(|| ClaimError::NotFound(lead_id.to_owned()))?;
        if let Some(claim) = &lead.claim {
            return Ok(if claim.rep == rep {
                ClaimOutcome::AlreadyYours {
                    lead: Box::new(lead),
                }
            } else {
                ClaimOutcome::OwnedBy {
                    rep: claim.rep.clone(),
                    at: claim.at,
                    lead: Box::new(lead),
                }
            });
        }
        let from = lead.state;
        if !matches!(from, LeadState::Routed | LeadState::Notified) {
            return Err(ClaimError::NotClaimable {
                lead_id: lead.id,
                state: from,
            });
        }
        let permit = match claim_policy::check(&pipeline.config, &pipeline.router, &lead, rep) {
            Ok(permit) => permit,
            Err(refusal) => {
                info!(lead_id = %lead.id, trace_id = %lead.trace_id, stage = "claim", rep,
                    via = via.as_str(), policy = refusal.policy.as_str(), "claim refused");
                return Ok(ClaimOutcome::Refused {
                    owner: refusal.owner,
                    why: refusal.why,
                    lead: Box::new(lead),
                });
            }
        };
        let now = pipeline.clock.now();
        let claimer = Owner::Rep(rep.to_owned());
        let routed = claim_policy::routed_owner(&lead);
        let mut claimed = lead.clone();
        claimed.state = LeadState::Claimed;
        claimed.timeline.claimed_at = Some(now);
        claimed.claim = Some(Claim {
            rep: rep.to_owned(),
            at: now,
            via: via.as_str().to_owned(),
            routed_to: routed.as_ref().map(Owner::key),
            allowed: Some(permit.describe()),
        });
        let mut effects = Effects::none();
        // A merged lead never counted toward anyone, so it moves nothing.
        let counts = lead.merged_into.is_none();
        if let Some(assignment) = claimed.assignment.as_mut() {
            if assignment.owner != claimer && counts {
                // Without the release when the old owner's counter already reads 0 (reset
                // by hand): the store refuses to take one below zero.
                let held = open_leads_counter(&assignment.owner);
                if store.counter(&held).await? > 0 {
                    effects.releases.push(held);
                }
                effects.counters.push(CounterBump {
                    name: open_leads_counter(&claimer),
                    limit: None,
                });
            }
            if assignment.owner != claimer {
                assignment.reason = format!(
                    "{}; claimed by {} from {} ({})",
                    assignment.reason,
                    pipeline.router.owner_name(&claimer),
                    assignment.owner_name,
                    permit.describe()
                );
                assignment.owner_name = pipeline.router.owner_name(&claimer);
                assignment.owner = claimer;
            }
        }
        if counts {
            effects
                .ledgers
                .extend(turn_moved(pipeline, &lead, routed.as_ref(), rep, now).await?);
        }
        // A claim ends the rep's run of missed SLAs, unless the run has paused them: then
        // only they or their manager resume them, on purpose.
        if pause_after == 0 || store.counter(&streak).await? < pause_after {
            effects.resets.push(streak.clone());
        }
        match store.advance_lead(&claimed, from, &effects).await {
            Ok(()) => {
                let first_response = FirstResponse::of(&claimed);
                info!(lead_id = %claimed.id, trace_id = %claimed.trace_id, stage = "claim",
                    rep, via = via.as_str(),
                    system_ms = first_response.system.map(|d| d.as_millis()),
                    human_ms = first_response.human.map(|d| d.as_millis()),
                    "claimed");
                // The notify stage edits the lead's posted Slack alerts and says who claimed
                // it in their threads; the claim stands whether or not that works.
                let envelope = Envelope::new(&claimed.id, Stage::Notify, &claimed.trace_id);
                if let Err(error) = pipeline.queue.send(Stage::Notify, &envelope).await {
                    warn!(lead_id = %claimed.id, stage = "claim", %error,
                        "the claim was not announced in Slack");
                }
                return Ok(ClaimOutcome::Won {
                    lead: Box::new(claimed),
                    first_response,
                });
            }
            // Someone else wrote first (a claim, an escalation, the notify stage): read again.
            // Or a counter reset, or the pool ledger moved: read everything again.
            Err(StoreError::Stale(_) | StoreError::Conflict { .. }) => continue,
            Err(StoreError::Contended(_)) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(ClaimError::Busy(lead_id.to_owned()))
}

/// The rotation turn follows the lead: when a rep picked from a pool's rotation is not the
/// one who claims, their turn is given back (they are owed the next lead again) and the
/// claimer's counted if they are a member, in the period the lead was routed in.
async fn turn_moved(
    pipeline: &Pipeline,
    lead: &Lead,
    routed: Option<&Owner>,
    claimer: &str,
    now: Timestamp,
) -> Result<Option<LedgerWrite>, StoreError> {
    let (Some(Owner::Rep(routed)), Some(assignment)) = (routed, &lead.assignment) else {
        return Ok(None);
    };
    let Some(pool) = assignment.pool.as_deref() else {
        return Ok(None);
    };
    let routed_at = assignment
        .trace
        .as_ref()
        .and_then(|t| t.decided_at)
        .or(lead.timeline.routed_at);
    let (Some(config), Some(routed_at)) = (pipeline.config.pool(pool), routed_at) else {
        return Ok(None);
    };
    if routed == claimer {
        return Ok(None);
    }
    let Some(period) = pipeline.router.pool_period(pool, routed_at) else {
        return Ok(None);
    };
    let read = pipeline.store.ledger(pool, &period).await?;
    let mut ledger = read.clone();
    let given_back = match ledger.members.get_mut(routed) {
        Some(tally) if tally.received > 0 => {
            tally.received -= 1;
            true
        }
        // The ledger was reset since (or edited): no turn left to give back.
        _ => false,
    };
    let member = config.members.iter().any(|m| m.get_ref().rep == claimer);
    if member {
        ledger.record_turn(claimer, now);
    }
    if !given_back && !member {
        return Ok(None);
    }
    ledger.version = read.version + 1;
    Ok(Some(LedgerWrite {
        pool: pool.to_owned(),
        period,
        ledger,
    }))
}

/// "First response 4 min 12 s: 0 s to reach you, 4 min 12 s to claim."
pub fn response_line(first: &FirstResponse) -> String {
    match (first.total, first.system, first.human) {
        (Some(total), Some(system), Some(human)) => format!(
            "First response {}: {} for the alert to reach you, {} to claim.",
            human_duration(total),
            human_duration(system),
            human_duration(human)
        ),
        (Some(total), _, _) => format!("First response {}.", human_duration(total)),
        _ => String::new(),
    }
}

/// The line that replaces a claimed alert's buttons (Slack mrkdwn, escaped).
pub fn claimed_status(lead: &Lead, rep: &str, first_response: &FirstResponse) -> String {
    format!(
        ":white_check_mark: Claimed by *{}* ({}). {}",
        slack_escape(
            &lead
                .assignment
                .as_ref()
                .map_or(rep.to_owned(), |a| a.owner_name.clone())
        ),
        slack_escape(rep),
        response_line(first_response)
    )
}

/// A duration as people read it in an alert: "45s", "4 min 12 s", "2 h 5 min".
pub fn human_duration(duration: SignedDuration) -> String {
    let secs = duration.as_secs().max(0);
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_line_splits_system_and_human_time() {
        let first = FirstResponse {
            system: Some(jiff::SignedDuration::from_millis(400)),
            human: Some(jiff::SignedDuration::from_secs(252)),
            total: Some(jiff::SignedDuration::from_millis(252_400)),
        };
        assert_eq!(
            response_line(&first),
            "First response 4 min 12 s: 0 s for the alert to reach you, 4 min 12 s to claim."
        );
    }
}
