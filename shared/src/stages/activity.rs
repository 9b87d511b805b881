//! Recording what happened after the alert: a touch, a meeting, an outcome. Each event finds
//! its lead by the leadrelay lead id it carries (a hidden form field, a booking link's
//! parameter, the alert's button), else by the prospect's e-mail within `[activity]
//! match_window`; an event that finds none is kept as unmatched, never dropped. Replays change
//! nothing (each event has a key), and an outcome closes the lead, freeing its owner's capacity
//! in the same write.

use jiff::Timestamp;
use tracing::{info, warn};

use super::close::closing;
use super::Pipeline;
use crate::activity::{self, Stamped};
use crate::model::{Activity, Envelope, Lead, Stage, UnmatchedActivity};
use crate::ports::StoreError;

/// An activity, and how to find its lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEvent {
    /// The leadrelay lead id, when the event carries one.
    pub lead_id: Option<String>,
    /// The prospect's e-mail address, to match when there is no lead id.
    pub email: Option<String>,
    pub activity: Activity,
}

/// What recording an activity did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// Recorded on the lead; `stamped` says which steps it set and whether it closed the lead.
    Applied { lead: Box<Lead>, stamped: Stamped },
    /// This event (its key) was recorded on the lead before: nothing changed.
    Duplicate { lead_id: String },
    /// No lead matched: kept in the unmatched list (`new` is false for a replay).
    Unmatched { new: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("lead {0} kept changing while an activity was recorded on it; try again")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Read-decide-write rounds before giving up on a lead that keeps changing underneath.
const ATTEMPTS: usize = 8;

impl Pipeline {
    /// Records `event` on its lead (see the module comment).
    pub async fn record_activity(&self, event: &ActivityEvent) -> Result<Recorded, ActivityError> {
        let now = self.clock.now();
        let Some(lead_id) = self.find_lead(event, now).await? else {
            let unmatched = UnmatchedActivity {
                lead_id: event.lead_id.clone(),
                email: event.email.clone(),
                activity: event.activity.clone(),
            };
            let new = self.store.keep_unmatched(&unmatched).await?;
            info!(stage = "activity", kind = event.activity.kind.name(), via = %event.activity.via,
                new, "activity matched no lead: kept as unmatched");
            return Ok(Recorded::Unmatched { new });
        };
        // Cleared if the owner's counter already reads 0 (reset by hand): close all the same.
        let mut release = true;
        for _ in 0..ATTEMPTS {
            let Some(lead) = self.store.get_lead(&lead_id).await? else {
                break;
            };
            let Some((recorded, stamped)) = activity::record(&lead, &event.activity) else {
                return Ok(Recorded::Duplicate { lead_id });
            };
            let (next, effects) = match stamped.closes {
                Some(outcome) => closing(recorded, now, outcome.as_str(), release),
                None => (recorded, Default::default()),
            };
            match self.store.advance_lead(&next, lead.state, &effects).await {
                Ok(()) => {
                    info!(lead_id = %next.id, trace_id = %next.trace_id, stage = "activity",
                        kind = event.activity.kind.name(), via = %event.activity.via,
                        automated = event.activity.automated, steps = ?stamped.steps, "recorded");
                    if stamped.closes.is_some() {
                        // The notify stage marks the posted alerts closed; the close stands
                        // whether or not that works.
                        let envelope = Envelope::new(&next.id, Stage::Notify, &next.trace_id);
                        if let Err(error) = self.queue.send(Stage::Notify, &envelope).await {
                            warn!(lead_id = %next.id, stage = "activity", %error,
                                "the close was not announced in Slack");
                        }
                    }
                    return Ok(Recorded::Applied {
                        lead: Box::new(next),
                        stamped,
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::Contended(_)) if release => release = false,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ActivityError::Busy(lead_id))
    }

    /// The id of the lead `event` is about: the one it names, else the prospect's latest lead
    /// captured within the match window; a lead merged into another is the other's.
    pub(super) async fn find_lead(
        &self,
        event: &ActivityEvent,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        let mut found = match &event.lead_id {
            Some(id) => self.store.get_lead(id.trim()).await?,
            None => None,
        };
        if found.is_none() {
            if let Some(email) = event
                .email
                .as_deref()
                .map(str::trim)
                .filter(|e| e.contains('@'))
            {
                let window = jiff::SignedDuration::try_from(self.config.activity.match_window.0)
                    .unwrap_or(jiff::SignedDuration::MAX);
                let since = now.saturating_sub(window).unwrap_or(Timestamp::MIN);
                let lookup = self
                    .store
                    .open_lead_for_contact(&email.to_lowercase(), since)
                    .await?;
                if let Some(id) = lookup.indexed {
                    found = self
                        .store
                        .get_lead(&id)
                        .await?
                        .filter(|lead| lead.timeline.captured_at.is_some_and(|at| at >= since));
                }
            }
        }
        Ok(found.map(|lead| lead.merged_into.clone().unwrap_or(lead.id)))
    }
}

/// What a rep's own button (Called, E-mailed, Meeting booked, Not a fit) did.
#[derive(Debug, Clone, PartialEq)]
pub enum RepActivity {
    /// Recorded on the lead (claiming it first for the rep when nobody had).
    Recorded { lead: Box<Lead>, stamped: Stamped },
    /// Someone else owns the lead; nothing was recorded. The text says who and why.
    NotYours { why: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RepActivityError {
    #[error(transparent)]
    Claim(#[from] super::claim::ClaimError),
    #[error(transparent)]
    Record(#[from] ActivityError),
    #[error("the activity matched no lead")]
    Unmatched,
}

impl Pipeline {
    /// `rep` pressed a button saying they did `kind` on `lead_id`. A rep working a lead owns
    /// it: an unclaimed lead is claimed for them first (under its claim policy), and a lead
    /// someone else claimed is refused with who has it.
    pub async fn rep_activity(
        &self,
        lead_id: &str,
        rep: &str,
        kind: crate::model::ActivityKind,
        via: super::claim::ClaimVia,
    ) -> Result<RepActivity, RepActivityError> {
        use super::claim::{claim, ClaimOutcome};
        match claim(self, lead_id, rep, via).await {
            Ok(ClaimOutcome::Won { .. } | ClaimOutcome::AlreadyYours { .. }) => {}
            Ok(ClaimOutcome::OwnedBy { rep: owner, .. }) => {
                return Ok(RepActivity::NotYours {
                    why: format!("{owner} claimed this lead: only they record what happened."),
                })
            }
            Ok(ClaimOutcome::Refused { why, .. }) => return Ok(RepActivity::NotYours { why }),
            // Closed already, or not yet routed: record it all the same, it happened.
            Err(super::claim::ClaimError::NotClaimable { .. }) => {}
            Err(other) => return Err(other.into()),
        }
        let now = self.clock.now();
        let event = ActivityEvent {
            lead_id: Some(lead_id.to_owned()),
            email: None,
            activity: Activity {
                kind,
                at: now,
                received_at: now,
                by: Some(rep.to_owned()),
                via: via.as_str().to_owned(),
                automated: false,
                // Each press is its own event: two calls are two calls.
                key: format!("{}:{}", via.as_str(), uuid::Uuid::now_v7()),
                detail: None,
            },
        };
        match self.record_activity(&event).await? {
            Recorded::Applied { lead, stamped } => Ok(RepActivity::Recorded { lead, stamped }),
            Recorded::Duplicate { .. } => Err(RepActivityError::Unmatched),
            Recorded::Unmatched { .. } => Err(RepActivityError::Unmatched),
        }
    }
}
