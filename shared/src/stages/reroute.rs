//! "Not mine": the lead's owner says it reached the wrong person. The lead goes back to the
//! route stage, which skips that rep (and everyone who said so before) and alerts the next
//! owner as a new round; the owner's open-lead count is freed in the same write, and the
//! mis-route is kept on the lead against the rule that chose them, so routing accuracy per
//! rule can be reported.
//!
//! Someone running the console (an operator, or a manager for their team) can send any open
//! lead back the same way, with a reason; no rep is skipped and no rule is blamed, and the
//! lead keeps a [`Reroute`] saying who asked and why.

use tracing::info;

use crate::model::{Envelope, Lead, LeadState, Misroute, Owner, Reroute, Stage};
use crate::ports::{Outgoing, StoreError};
use crate::routing::effects::Effects;
use crate::routing::open_leads_counter;
use crate::stages::Pipeline;

/// The longest reason kept.
pub const MAX_REASON_CHARS: usize = 500;

/// Who sends a lead back to routing.
#[derive(Debug, Clone, Copy)]
pub enum HandBack<'a> {
    /// The rep who owns it says it is not theirs: they are skipped from now on.
    NotMine { rep: &'a str },
    /// A console user re-routes it (checked by the console: operator, or the team's manager).
    Console { login: &'a str },
}

#[derive(Debug, thiserror::Error)]
pub enum NotMineError {
    #[error("no lead {0}")]
    NotFound(String),
    #[error("say why the lead is not yours (a reason is required)")]
    NoReason,
    #[error("lead {lead_id} is {state}: only an open lead can be handed back")]
    NotOpen { lead_id: String, state: LeadState },
    /// Only the rep who owns the lead now (routed to them, claimed or escalated to them) can
    /// hand it back.
    #[error("lead {lead_id} is owned by {owner}: only its owner can hand it back")]
    NotYours { lead_id: String, owner: String },
    #[error("lead {0} kept changing while it was being handed back; try again")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Read-decide-write rounds before giving up on a lead that keeps changing underneath.
const ATTEMPTS: usize = 8;

impl Pipeline {
    /// `rep` hands `lead_id` back with `reason`: see the module comment. Returns the lead as
    /// written (on its way to the route stage).
    pub async fn not_mine(
        &self,
        lead_id: &str,
        rep: &str,
        reason: &str,
    ) -> Result<Lead, NotMineError> {
        self.hand_back(lead_id, HandBack::NotMine { rep }, reason)
            .await
    }

    /// Sends `lead_id` back to the route stage for `who`, with `reason`: see the module
    /// comment. Returns the lead as written.
    pub async fn hand_back(
        &self,
        lead_id: &str,
        who: HandBack<'_>,
        reason: &str,
    ) -> Result<Lead, NotMineError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(NotMineError::NoReason);
        }
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let now = self.clock.now();
        // Cleared if the owner's counter already reads 0 (reset by hand).
        let mut release = true;
        for _ in 0..ATTEMPTS {
            let lead = self
                .store
                .get_lead(lead_id)
                .await?
                .ok_or_else(|| NotMineError::NotFound(lead_id.to_owned()))?;
            if !lead.state.is_open() {
                return Err(NotMineError::NotOpen {
                    lead_id: lead.id,
                    state: lead.state,
                });
            }
            let Some(assignment) = lead.assignment.clone() else {
                return Err(NotMineError::NotOpen {
                    lead_id: lead.id,
                    state: lead.state,
                });
            };
            let from = lead.state;
            let merged = lead.merged_into.is_some();
            let mut back = lead;
            match who {
                HandBack::NotMine { rep } => {
                    // A claim or an escalation made the assignment's owner whoever holds it now.
                    if assignment.owner != Owner::Rep(rep.to_owned()) {
                        return Err(NotMineError::NotYours {
                            lead_id: back.id,
                            owner: assignment.owner_name.clone(),
                        });
                    }
                    back.misroutes.push(Misroute {
                        rep: rep.to_owned(),
                        rule: assignment.rule.clone(),
                        reason: reason.clone(),
                        at: now,
                    });
                }
                HandBack::Console { login } => back.reroutes.push(Reroute {
                    by: login.to_owned(),
                    from: assignment.owner.key(),
                    reason: reason.clone(),
                    at: now,
                }),
            }
            // The next owner claims it afresh; the wrong rep's part is kept in the misroute.
            back.claim = None;
            back.timeline.claimed_at = None;
            back.assignment = None;
            back.state = LeadState::Enriched;
            // A merged lead never counted toward anyone, so it frees nothing.
            let effects = Effects {
                releases: [open_leads_counter(&assignment.owner)]
                    .into_iter()
                    .filter(|_| release && !merged)
                    .collect(),
                ..Effects::none()
            };
            let next = Outgoing {
                stage: Stage::Route,
                envelope: Envelope::new(&back.id, Stage::Route, &back.trace_id),
            };
            match self
                .store
                .advance_lead_and_send(&back, from, &effects, &next)
                .await
            {
                Ok(sent) => {
                    if !sent {
                        self.queue
                            .send(Stage::Route, &next.envelope)
                            .await
                            .map_err(|e| StoreError::Unavailable {
                                context: format!("the lead was handed back but not re-queued: {e}"),
                                source: None,
                            })?;
                    }
                    match who {
                        HandBack::NotMine { rep } => info!(lead_id = %back.id,
                            trace_id = %back.trace_id, stage = "not_mine", rep,
                            rule = %assignment.rule, "handed back: routing again past this rep"),
                        HandBack::Console { login } => info!(lead_id = %back.id,
                            trace_id = %back.trace_id, stage = "reroute", login,
                            "re-routed from the console"),
                    }
                    return Ok(back);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::Contended(_)) if release => release = false,
                Err(other) => return Err(other.into()),
            }
        }
        Err(NotMineError::Busy(lead_id.to_owned()))
    }
}
