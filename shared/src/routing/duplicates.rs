//! Duplicates: a second lead from the same person within the merge window joins the open lead
//! (same owner, told it is the same person) instead of going to a second rep.
//!
//! The same person means the same e-mail address, lower-cased and trimmed; nothing else is
//! rewritten (`jane+demo@x.com` and `jane@x.com` are two contacts), because plus-tags and dots
//! mean different mailboxes on many servers and a wrong merge hides a lead from routing.
//! Leads without an e-mail address are never merged.

use jiff::{SignedDuration, Timestamp};

use super::effects::Effects;
use super::Decision;
use crate::model::{Assignment, Lead, LeadState, RoutingTrace, StepTrace};

/// The rule name a merged lead's assignment carries.
pub const DUPLICATE_RULE: &str = "duplicate";

/// The contact-index key of a lead: its e-mail address, trimmed and lower-cased.
pub fn contact_key(lead: &Lead) -> Option<String> {
    let email = lead.capture.captured_email.as_deref()?.trim();
    email.contains('@').then(|| email.to_lowercase())
}

/// The assignment of a second lead from the person whose lead `open` is: the open lead's
/// owner, without a counter bump or a ledger turn (it is the same piece of work). `None` when
/// the open lead has no owner to give.
pub fn merge(open: &Lead, now: Timestamp) -> Option<Decision> {
    let first = open.assignment.as_ref()?;
    let age = open
        .timeline
        .routed_at
        .map(|at| describe_age(now.duration_since(at)))
        .unwrap_or_else(|| "at an unknown time".to_owned());
    let reason = format!(
        "same person as lead {} (routed {age}, owned by {}); merged into it",
        open.id, first.owner_name
    );
    // A broadcast pool's alerted members are read from the last step: carry them over so the
    // same people hear of the second request.
    let candidates = first
        .trace
        .as_ref()
        .and_then(|t| t.steps.last())
        .map(|step| {
            step.candidates
                .iter()
                .filter(|c| c.picked)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let trace = RoutingTrace {
        decided_at: Some(now),
        steps: vec![StepTrace {
            target: first.owner.key(),
            outcome: format!("merged into lead {}: {reason}", open.id),
            candidates,
        }],
        ..RoutingTrace::default()
    };
    Some(Decision {
        assignment: Assignment {
            owner: first.owner.clone(),
            owner_name: first.owner_name.clone(),
            rule: DUPLICATE_RULE.to_owned(),
            reason,
            pool: first.pool.clone(),
            // Still held for the opening: the second alert waits with the first.
            held_until: first.held_until.filter(|until| *until > now),
            trace: Some(trace),
        },
        effects: Effects::none(),
    })
}

/// `12 min ago`, `3 h 5 min ago`: how long ago the open lead was routed.
fn describe_age(age: SignedDuration) -> String {
    let minutes = age.as_mins().max(0);
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min ago"),
        (h, 0) => format!("{h} h ago"),
        (h, m) => format!("{h} h {m} min ago"),
    }
}

/// What the contact index holds for one person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactLookup {
    /// The lead id the index holds, whatever that lead's state (the guard for the next write).
    pub indexed: Option<String>,
    /// That lead, when it is a merge target: routed or notified (not closed) and routed at or
    /// after the window's start.
    pub open: Option<Box<Lead>>,
}

impl ContactLookup {
    /// Judges the indexed lead as read: the state and the routing time are checked here, on
    /// read, so a closed lead or one outside the window is never merged into.
    pub fn judge(indexed: Option<String>, lead: Option<Lead>, since: Timestamp) -> Self {
        let open = lead.filter(|lead| {
            matches!(lead.state, LeadState::Routed | LeadState::Notified)
                && lead.merged_into.is_none()
                && lead.timeline.routed_at.is_some_and(|at| at >= since)
        });
        ContactLookup {
            indexed,
            open: open.map(Box::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CandidateTrace, CaptureEvent, EventKind, LeadState, Owner};

    fn lead(id: &str, email: Option<&str>) -> Lead {
        let capture = CaptureEvent {
            event: Some(EventKind::LeadCapture),
            captured_email: email.map(str::to_owned),
            name: Some("Jane Doe".into()),
            ..CaptureEvent::default()
        };
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().expect("timestamp");
        Lead::captured(
            id.into(),
            format!("trace-{id}"),
            "website".into(),
            format!("evt-{id}"),
            capture,
            Vec::new(),
            at,
        )
    }

    fn routed(id: &str, owner: Owner, at: Timestamp) -> Lead {
        let mut open = lead(id, Some("jane@acme.example"));
        open.state = LeadState::Notified;
        open.timeline.routed_at = Some(at);
        open.assignment = Some(Assignment {
            owner,
            owner_name: "Bruno Diaz".into(),
            rule: "EMEA".into(),
            reason: "region EMEA".into(),
            pool: Some("emea-ae".into()),
            held_until: None,
            trace: None,
        });
        open
    }

    #[test]
    fn the_contact_key_is_the_trimmed_lower_cased_address_and_nothing_else() {
        let key = |email| contact_key(&lead("l", email));
        assert_eq!(
            key(Some("  Jane.Doe@ACME.example ")).as_deref(),
            Some("jane.doe@acme.example")
        );
        // Plus-tags are kept: they may be different mailboxes.
        assert_eq!(
            key(Some("jane+demo@acme.example")).as_deref(),
            Some("jane+demo@acme.example")
        );
        assert_eq!(key(None), None);
        assert_eq!(key(Some("   ")), None);
        assert_eq!(key(Some("not an address")), None);
    }

    #[test]
    fn a_merged_lead_gets_the_open_leads_owner_and_no_counter_or_ledger() {
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().expect("timestamp");
        let now = at + SignedDuration::from_mins(12);
        let open = routed("first", Owner::Rep("bruno".into()), at);
        let decision = merge(&open, now).expect("an owner to give");
        let a = &decision.assignment;
        assert_eq!(a.owner, Owner::Rep("bruno".into()));
        assert_eq!(a.owner_name, "Bruno Diaz");
        assert_eq!(a.rule, DUPLICATE_RULE);
        assert_eq!(
            a.reason,
            "same person as lead first (routed 12 min ago, owned by Bruno Diaz); merged into it"
        );
        assert_eq!(decision.effects, Effects::none());
        let trace = a.trace.as_ref().expect("traced");
        assert_eq!(trace.steps.len(), 1);
        assert_eq!(trace.steps[0].target, "rep:bruno");
        assert!(trace.steps[0].outcome.starts_with("merged into lead first"));
    }

    #[test]
    fn a_broadcast_pools_alerted_members_are_carried_over_and_a_past_hold_is_dropped() {
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().expect("timestamp");
        let now = at + SignedDuration::from_mins(185);
        let mut open = routed("first", Owner::Pool("se".into()), at);
        let a = open.assignment.as_mut().expect("assigned");
        a.held_until = Some(at + SignedDuration::from_mins(30));
        a.trace = Some(RoutingTrace {
            steps: vec![StepTrace {
                target: "pool:se".into(),
                outcome: "broadcast".into(),
                candidates: vec![
                    CandidateTrace {
                        rep: "ana".into(),
                        picked: true,
                        reason: "available: alerted".into(),
                    },
                    CandidateTrace {
                        rep: "ben".into(),
                        picked: false,
                        reason: "out of office".into(),
                    },
                ],
            }],
            ..RoutingTrace::default()
        });
        let decision = merge(&open, now).expect("an owner to give");
        let a = decision.assignment;
        assert_eq!(a.held_until, None);
        assert!(a.reason.contains("routed 3 h 5 min ago"), "{}", a.reason);
        let step = &a.trace.expect("traced").steps[0];
        assert_eq!(step.candidates.len(), 1);
        assert_eq!(step.candidates[0].rep, "ana");
    }

    #[test]
    fn an_open_lead_without_an_owner_gives_nothing_to_merge_into() {
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().expect("timestamp");
        let mut open = routed("first", Owner::Rep("bruno".into()), at);
        open.assignment = None;
        assert!(merge(&open, at).is_none());
    }

    #[test]
    fn only_an_open_lead_routed_within_the_window_is_a_merge_target() {
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().expect("timestamp");
        let open = routed("first", Owner::Rep("bruno".into()), at);
        let judge = |lead: &Lead, since: Timestamp| {
            ContactLookup::judge(Some(lead.id.clone()), Some(lead.clone()), since)
        };
        let found = judge(&open, at);
        assert_eq!(found.indexed.as_deref(), Some("first"));
        assert_eq!(found.open.map(|l| l.id), Some("first".to_owned()));
        // Routed before the window opened.
        let late = judge(&open, at + SignedDuration::from_secs(1));
        assert_eq!(late.indexed.as_deref(), Some("first"));
        assert!(late.open.is_none());
        let mut closed = open.clone();
        closed.state = LeadState::Closed;
        assert!(judge(&closed, at).open.is_none());
        let mut merged = open.clone();
        merged.merged_into = Some("zero".into());
        assert!(judge(&merged, at).open.is_none());
        assert_eq!(
            ContactLookup::judge(None, None, at),
            ContactLookup::default()
        );
    }

    #[test]
    fn ages_read_in_minutes_then_hours() {
        assert_eq!(describe_age(SignedDuration::from_secs(59)), "0 min ago");
        assert_eq!(describe_age(SignedDuration::from_mins(120)), "2 h ago");
        assert_eq!(describe_age(SignedDuration::from_mins(61)), "1 h 1 min ago");
    }
}
