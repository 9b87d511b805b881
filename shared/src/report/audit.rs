//! The handoff audit: where a lead fell between the alert and the first touch.

use jiff::Timestamp;
use serde::Serialize;

use super::facts::LeadFacts;
use crate::model::{LeadState, UnmatchedActivity};

/// A lead with an owner, not closed, never touched by a human, and past its SLA deadline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Untouched {
    pub lead_id: String,
    /// `rep:alice`, `queue:sdr`.
    pub owner: String,
    pub state: LeadState,
    pub tier: Option<u8>,
    pub claimed_by: Option<String>,
    pub captured_at: Option<Timestamp>,
    pub sla_deadline: Timestamp,
    /// How long past the deadline, at the audit's time.
    pub overdue_secs: i64,
}

/// A lead someone said was not theirs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Misrouted {
    pub lead_id: String,
    /// Each "not mine" as `rep (rule)`, oldest first.
    pub misroutes: Vec<String>,
    /// Who has it now.
    pub owner: Option<String>,
    pub touched: bool,
}

/// An activity event that found no lead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unmatched {
    pub kind: &'static str,
    pub at: Timestamp,
    pub received_at: Timestamp,
    pub via: String,
    pub by: Option<String>,
    pub lead_id: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audit {
    pub from: Timestamp,
    pub to: Timestamp,
    pub generated_at: Timestamp,
    pub untouched: Vec<Untouched>,
    pub misrouted: Vec<Misrouted>,
    pub unmatched: Vec<Unmatched>,
}

/// The audit of the leads captured in `[from, to)` and the unmatched events received then,
/// as of `now`. Merged leads are left out (their person's lead is audited).
pub fn audit(
    facts: &[LeadFacts],
    unmatched: &[UnmatchedActivity],
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Audit {
    let in_window = |at: Option<Timestamp>| at.is_some_and(|at| from <= at && at < to);
    let leads = || {
        facts
            .iter()
            .filter(|f| f.counts() && in_window(f.captured_at))
    };
    let mut untouched: Vec<Untouched> = leads()
        .filter(|f| f.state != LeadState::Closed && f.first_touch_at.is_none())
        .filter_map(|f| {
            let owner = f.owner.as_ref()?;
            let deadline = f.sla_deadline()?;
            (now > deadline).then(|| Untouched {
                lead_id: f.id.clone(),
                owner: owner.key(),
                state: f.state,
                tier: f.tier,
                claimed_by: f.claimed_by.clone(),
                captured_at: f.captured_at,
                sla_deadline: deadline,
                overdue_secs: now.duration_since(deadline).as_secs(),
            })
        })
        .collect();
    // The longest overdue first: the ones to chase.
    untouched.sort_by(|a, b| {
        b.overdue_secs
            .cmp(&a.overdue_secs)
            .then(a.lead_id.cmp(&b.lead_id))
    });
    let misrouted = leads()
        .filter(|f| !f.misroutes.is_empty())
        .map(|f| Misrouted {
            lead_id: f.id.clone(),
            misroutes: f
                .misroutes
                .iter()
                .map(|m| format!("{} ({})", m.rep, m.rule))
                .collect(),
            owner: f.owner.as_ref().map(|o| o.key()),
            touched: f.first_touch_at.is_some(),
        })
        .collect();
    let unmatched = unmatched
        .iter()
        .filter(|u| in_window(Some(u.activity.received_at)))
        .map(|u| Unmatched {
            kind: u.activity.kind.name(),
            at: u.activity.at,
            received_at: u.activity.received_at,
            via: u.activity.via.clone(),
            by: u.activity.by.clone(),
            lead_id: u.lead_id.clone(),
            email: u.email.clone(),
        })
        .collect();
    Audit {
        from,
        to,
        generated_at: now,
        untouched,
        misrouted,
        unmatched,
    }
}
