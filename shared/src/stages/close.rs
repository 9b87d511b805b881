//! Closing a worked lead (won, lost, disqualified): the lead leaves its owner's open-lead count
//! in the same atomic write.

use jiff::Timestamp;
use tracing::info;

use super::CloseError;
use crate::model::{Lead, LeadState};
use crate::ports::{LeadStore, StoreError};
use crate::routing::effects::Effects;
use crate::routing::open_leads_counter;

/// Closes a worked lead (won, lost, disqualified): it leaves its owner's open-lead count in
/// the same atomic write, so the capacity it held is free at once. Closing twice is a no-op.
pub async fn close_lead(
    store: &dyn LeadStore,
    now: Timestamp,
    lead_id: &str,
    reason: &str,
) -> Result<Lead, CloseError> {
    // Cleared if the owner's counter already reads 0 (reset by hand): close all the same.
    let mut release = true;
    loop {
        let lead = store
            .get_lead(lead_id)
            .await?
            .ok_or_else(|| CloseError::NotFound(lead_id.to_owned()))?;
        let from = lead.state;
        match from {
            LeadState::Closed => return Ok(lead),
            state if state.is_open() => {}
            state => {
                return Err(CloseError::NotOpen {
                    lead_id: lead.id,
                    state,
                })
            }
        }
        let (closed, effects) = closing(lead, now, reason, release);
        match store.advance_lead(&closed, from, &effects).await {
            Ok(()) => {
                info!(lead_id = %closed.id, trace_id = %closed.trace_id, stage = "close", reason, "closed");
                return Ok(closed);
            }
            // Notified in the meantime, or closed by someone else: look again.
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::Contended(_)) if release => {
                release = false;
                continue;
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// `lead` closed at `now` for `reason`, and the write's effects: its owner's open-lead count
/// goes down by one (when `release`; a merged lead never added to it).
pub(crate) fn closing(
    mut lead: Lead,
    now: Timestamp,
    reason: &str,
    release: bool,
) -> (Lead, Effects) {
    let merged = lead.merged_into.is_some();
    let effects = Effects {
        releases: lead
            .assignment
            .iter()
            .filter(|_| release && !merged)
            .map(|a| open_leads_counter(&a.owner))
            .collect(),
        ..Effects::none()
    };
    lead.state = LeadState::Closed;
    lead.timeline.closed_at = Some(now);
    lead.close_reason = Some(reason.to_owned());
    (lead, effects)
}
