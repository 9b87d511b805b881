//! [`LeadFacts`]: the few fields of a lead the report reads, kept beside the lead by every
//! store write so a report over a week never decodes a full lead.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::HANDOFF_FIELDS;
use crate::model::{Lead, LeadState, Owner};

/// Millisecond timestamps: the compact form, quick to read back by the hundred thousand.
mod ms {
    pub use jiff::fmt::serde::timestamp::millisecond::optional::{deserialize, serialize};
}

/// What the report needs of one lead: its dimensions, its timeline and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadFacts {
    pub id: String,
    pub source: String,
    pub state: LeadState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_minutes: Option<u32>,
    /// The owner now (after any claim or escalation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// The rule that first routed the lead (the one a "not mine" blamed, when there was one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Who routing gave it to before any claim (`rep:alice`, `queue:sdr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(default, with = "ms", skip_serializing_if = "Option::is_none")]
    pub captured_at: Option<Timestamp>,
    /// The opening an after-hours alert was held for.
    #[serde(default, with = "ms", skip_serializing_if = "Option::is_none")]
    pub held_until: Option<Timestamp>,
    #[serde(default, with = "ms", skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<Timestamp>,
    #[serde(default, with = "ms", skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Timestamp>,
    #[serde(default, with = "ms", skip_serializing_if = "Option::is_none")]
    pub first_touch_at: Option<Timestamp>,
    #[serde(default, with = "ms", skip_serializing_if = "Option::is_none")]
    pub meeting_booked_at: Option<Timestamp>,
    #[serde(default, with = "ms", skip_serializing_if = "Option::is_none")]
    pub meeting_held_at: Option<Timestamp>,
    #[serde(default, with = "ms", skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    /// Steps up the escalation ladder.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub escalations: u32,
    /// Routed to one rep and claimed by another.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reassigned: bool,
    /// Each "not mine": the rep who said it and the rule that had chosen them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub misroutes: Vec<MisrouteFact>,
    /// `close_reason`: won, lost, disqualified, nurture, or free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Which of [`HANDOFF_FIELDS`] the alert could show.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handoff: Vec<String>,
    /// Merged into another lead of the same person: the same piece of work, counted there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub merged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MisrouteFact {
    pub rep: String,
    pub rule: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn filled(text: Option<&str>) -> bool {
    text.is_some_and(|t| !t.trim().is_empty())
}

impl LeadFacts {
    pub fn of(lead: &Lead) -> LeadFacts {
        let t = &lead.timeline;
        let assignment = lead.assignment.as_ref();
        let claim = lead.claim.as_ref();
        let routed_to =
            claim
                .and_then(|c| c.routed_to.clone())
                .or_else(|| match lead.escalations.first() {
                    Some(first) => Some(first.from.key()),
                    None => assignment.map(|a| a.owner.key()),
                });
        let reassigned = match (
            claim,
            routed_to.as_deref().and_then(|r| r.strip_prefix("rep:")),
        ) {
            (Some(claim), Some(routed_rep)) => claim.rep != routed_rep,
            _ => false,
        };
        LeadFacts {
            id: lead.id.clone(),
            source: lead.source.clone(),
            state: lead.state,
            tier: lead.qualification.as_ref().map(|q| q.tier),
            sla_minutes: lead.qualification.as_ref().map(|q| q.sla_minutes),
            owner: assignment.map(|a| a.owner.clone()),
            rule: lead
                .misroutes
                .first()
                .map(|m| m.rule.clone())
                .or_else(|| assignment.map(|a| a.rule.clone())),
            routed_to,
            claimed_by: claim.map(|c| c.rep.clone()),
            page: lead.capture.metadata.page_path(),
            captured_at: t.captured_at,
            held_until: assignment.and_then(|a| a.held_until),
            notified_at: t.notified_at,
            claimed_at: t.claimed_at,
            first_touch_at: t.first_touch_at,
            meeting_booked_at: t.meeting_booked_at,
            meeting_held_at: t.meeting_held_at,
            closed_at: t.closed_at,
            escalations: lead.escalation_level(),
            reassigned,
            misroutes: lead
                .misroutes
                .iter()
                .map(|m| MisrouteFact {
                    rep: m.rep.clone(),
                    rule: m.rule.clone(),
                })
                .collect(),
            outcome: lead.close_reason.clone(),
            handoff: HANDOFF_FIELDS
                .iter()
                .filter(|field| has_field(lead, field))
                .map(|field| (*field).to_owned())
                .collect(),
            merged: lead.merged_into.is_some(),
        }
    }

    /// When the lead's clock starts: capture, or the opening an after-hours alert was held
    /// for (the same start the SLA deadline counts from).
    pub fn start(&self) -> Option<Timestamp> {
        match (self.captured_at, self.held_until) {
            (Some(captured), Some(held)) => Some(captured.max(held)),
            (captured, _) => captured,
        }
    }

    /// The SLA deadline: `sla_minutes` after [`LeadFacts::start`].
    pub fn sla_deadline(&self) -> Option<Timestamp> {
        let minutes = i64::from(self.sla_minutes?);
        self.start()?
            .checked_add(jiff::SignedDuration::from_mins(minutes))
            .ok()
    }

    /// The first human response: the claim or the first touch, whichever came first (both
    /// stop the SLA watch).
    pub fn responded_at(&self) -> Option<Timestamp> {
        match (self.claimed_at, self.first_touch_at) {
            (Some(claim), Some(touch)) => Some(claim.min(touch)),
            (claim, touch) => claim.or(touch),
        }
    }

    /// Whether the lead counts in the figures: not merged into another one.
    pub fn counts(&self) -> bool {
        !self.merged
    }
}

/// Whether the alert could show `field` for this lead.
fn has_field(lead: &Lead, field: &str) -> bool {
    let capture = &lead.capture;
    let enrichment = lead.enrichment.as_ref();
    match field {
        "email" => filled(capture.captured_email.as_deref()),
        "name" => {
            filled(enrichment.and_then(|e| e.name.as_deref())) || filled(capture.name.as_deref())
        }
        "company" => {
            filled(enrichment.and_then(|e| e.company.as_deref()))
                || filled(capture.company.as_deref())
        }
        "question" => filled(capture.trigger_query.as_deref()),
        "phone" => filled(capture.phone.as_deref()),
        "job_title" => filled(capture.job_title.as_deref()),
        "transcript" => {
            !capture.transcript.is_empty() || filled(capture.conversation_transcript_url.as_deref())
        }
        "country" => enrichment.is_some_and(|e| e.country.is_some()),
        "employees" => enrichment.is_some_and(|e| e.employees.is_some()),
        "page" => capture.metadata.page_path().is_some(),
        _ => false,
    }
}
