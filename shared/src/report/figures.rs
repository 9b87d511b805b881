//! The speed-to-lead figures, computed from [`LeadFacts`] alone. Every formula is written out
//! in docs/reports.md; the code here is the one place each is defined.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::facts::LeadFacts;
use crate::calendar::Schedule;
use crate::config::Config;
use crate::model::{Outcome, Owner};
use crate::routing::Router;

/// What the groups of a report are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Rep,
    Team,
    Tier,
    Source,
    Rule,
    Page,
}

impl Dimension {
    pub const NAMES: [&'static str; 6] = ["rep", "team", "tier", "source", "rule", "page"];

    pub fn parse(text: &str) -> Option<Dimension> {
        Some(match text {
            "rep" => Dimension::Rep,
            "team" => Dimension::Team,
            "tier" => Dimension::Tier,
            "source" => Dimension::Source,
            "rule" => Dimension::Rule,
            "page" => Dimension::Page,
            _ => return None,
        })
    }
}

/// Which clock durations are measured on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hours {
    /// Elapsed time.
    #[default]
    Wall,
    /// Only the time the lead's owner was working (their schedule's open time).
    Working,
}

impl Hours {
    pub fn parse(text: &str) -> Option<Hours> {
        match text {
            "wall" => Some(Hours::Wall),
            "working" => Some(Hours::Working),
            _ => None,
        }
    }
}

/// Who works when and in which team, as the configuration says: what working-hours
/// durations and the `team` dimension need.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    schedules: HashMap<Owner, Schedule>,
    teams: HashMap<Owner, String>,
}

impl Directory {
    pub fn new(config: &Config) -> Directory {
        let router = Router::new(config);
        let mut directory = Directory::default();
        let owners = config
            .reps
            .iter()
            .map(|r| (Owner::Rep(r.get_ref().id.clone()), r.get_ref().team.clone()))
            .chain(config.pools.iter().map(|p| {
                (
                    Owner::Pool(p.get_ref().id.clone()),
                    p.get_ref().team.clone(),
                )
            }));
        for (owner, team) in owners {
            if let Some(schedule) = router.owner_schedule(&owner) {
                directory.schedules.insert(owner.clone(), schedule.clone());
            }
            if let Some(team) = team {
                directory.teams.insert(owner, team);
            }
        }
        directory
    }

    /// The owner's working hours; `None` when always open (a queue, a rep without hours).
    pub fn schedule(&self, owner: &Owner) -> Option<&Schedule> {
        self.schedules.get(owner)
    }

    pub fn team(&self, owner: &Owner) -> Option<&str> {
        self.teams.get(owner).map(String::as_str)
    }
}

/// A report's window and how it is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Leads captured at or after `from` and before `to`.
    pub from: Timestamp,
    pub to: Timestamp,
    pub by: Dimension,
    pub hours: Hours,
    /// Leads whose SLA deadline is after this and that have not responded yet are pending.
    pub now: Timestamp,
}

/// The response-time buckets, by first response; `never` holds leads not touched yet.
pub const BUCKETS: [&str; 8] = [
    "< 5 min",
    "5-15 min",
    "15-30 min",
    "30-60 min",
    "1-4 h",
    "4-24 h",
    "> 24 h",
    "never",
];

/// The bucket of a first-response time (`None`: never touched).
pub fn bucket(first_response: Option<SignedDuration>) -> usize {
    let Some(d) = first_response else {
        return BUCKETS.len() - 1;
    };
    let secs = d.as_secs();
    let bounds = [5 * 60, 15 * 60, 30 * 60, 3600, 4 * 3600, 24 * 3600];
    bounds
        .iter()
        .position(|bound| secs < *bound)
        .unwrap_or(bounds.len())
}

/// A duration's spread over a group: how many leads have it, its median and 90th percentile
/// (nearest rank), in seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Spread {
    pub count: u64,
    pub p50_secs: Option<i64>,
    pub p90_secs: Option<i64>,
}

impl Spread {
    fn of(mut secs: Vec<i64>) -> Spread {
        secs.sort_unstable();
        Spread {
            count: secs.len() as u64,
            p50_secs: percentile(&secs, 50),
            p90_secs: percentile(&secs, 90),
        }
    }
}

/// Nearest rank: the smallest value with at least `p`% of the values at or below it.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (u64::from(p) * n as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank.min(n) - 1).copied()
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// One group's figures (or the totals').
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    pub leads: u64,
    pub notified: u64,
    pub claimed: u64,
    /// Touched by a human (a call, an e-mail, a reply, a meeting held).
    pub contacted: u64,
    pub meetings_booked: u64,
    pub meetings_held: u64,
    pub contact_rate: Option<f64>,
    pub meeting_booked_rate: Option<f64>,
    pub meeting_held_rate: Option<f64>,
    /// Start → notified_at.
    pub system: Spread,
    /// notified_at → claimed_at.
    pub acknowledgement: Spread,
    /// claimed_at (else notified_at) → first_touch_at.
    pub human: Spread,
    /// Start → first_touch_at.
    pub first_response: Spread,
    /// Start → meeting_booked_at.
    pub time_to_meeting: Spread,
    pub sla_met: u64,
    pub sla_missed: u64,
    /// Not responded yet, deadline still ahead: neither met nor missed.
    pub sla_pending: u64,
    pub sla_compliance: Option<f64>,
    pub escalated: u64,
    pub reassigned: u64,
    pub misrouted: u64,
    /// Leads with an outcome (won, lost, disqualified, nurture), and of those won.
    pub outcomes: u64,
    pub won: u64,
    pub won_rate: Option<f64>,
}

/// SLA compliance of one tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierSla {
    pub tier: Option<u8>,
    pub sla_minutes: Option<u32>,
    pub leads: u64,
    pub met: u64,
    pub missed: u64,
    pub pending: u64,
    pub compliance: Option<f64>,
}

/// One response-time bucket: its leads, and how many of those with an outcome were won.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketRow {
    pub bucket: &'static str,
    pub leads: u64,
    pub share: Option<f64>,
    pub outcomes: u64,
    pub won: u64,
    pub won_rate: Option<f64>,
}

/// How often a rule's choice was right: 1 − misrouted / routed by it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleAccuracy {
    pub rule: String,
    pub leads: u64,
    pub misrouted: u64,
    pub accuracy: Option<f64>,
}

/// Leads alerted with every configured handoff field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handoff {
    pub fields: Vec<String>,
    pub notified: u64,
    pub complete: u64,
    pub completeness: Option<f64>,
    /// How many notified leads lacked each field.
    pub missing: BTreeMap<String, u64>,
}

/// The speed-to-lead report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeedToLead {
    pub from: Timestamp,
    pub to: Timestamp,
    pub generated_at: Timestamp,
    pub by: Dimension,
    pub hours: Hours,
    /// Merged into another lead: left out of every figure.
    pub merged_excluded: u64,
    pub totals: Group,
    pub groups: Vec<Group>,
    pub sla_by_tier: Vec<TierSla>,
    pub response_buckets: Vec<BucketRow>,
    pub routing_accuracy: Vec<RuleAccuracy>,
    pub handoff: Handoff,
}

/// One lead's durations, measured on the chosen clock.
struct Measured<'a> {
    facts: &'a LeadFacts,
    system: Option<SignedDuration>,
    acknowledgement: Option<SignedDuration>,
    human: Option<SignedDuration>,
    first_response: Option<SignedDuration>,
    time_to_meeting: Option<SignedDuration>,
    sla: SlaStatus,
    won: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlaStatus {
    Met,
    Missed,
    Pending,
    /// No tier, no SLA, or never routed.
    None,
}

impl<'a> Measured<'a> {
    fn of(facts: &'a LeadFacts, hours: Hours, directory: &Directory, now: Timestamp) -> Self {
        let schedule = match hours {
            Hours::Wall => None,
            Hours::Working => facts.owner.as_ref().and_then(|o| directory.schedule(o)),
        };
        // A wall clock stepped back between two stamps would make a part negative: zero.
        let between = |from: Option<Timestamp>, to: Option<Timestamp>| {
            let (from, to) = (from?, to?);
            Some(match schedule {
                Some(schedule) => schedule.open_duration(from, to),
                None => to.duration_since(from).max(SignedDuration::ZERO),
            })
        };
        let start = facts.start();
        let sla = match (facts.sla_deadline(), facts.owner.is_some()) {
            (Some(deadline), true) => match facts.responded_at() {
                Some(at) if at <= deadline => SlaStatus::Met,
                Some(_) => SlaStatus::Missed,
                None if now > deadline => SlaStatus::Missed,
                None => SlaStatus::Pending,
            },
            _ => SlaStatus::None,
        };
        Measured {
            facts,
            system: between(start, facts.notified_at),
            acknowledgement: between(facts.notified_at, facts.claimed_at),
            human: between(facts.claimed_at.or(facts.notified_at), facts.first_touch_at),
            first_response: between(start, facts.first_touch_at),
            time_to_meeting: between(start, facts.meeting_booked_at),
            sla,
            won: facts
                .outcome
                .as_deref()
                .and_then(Outcome::parse)
                .map(|o| o == Outcome::Won),
        }
    }
}

fn group(key: String, leads: &[&Measured<'_>]) -> Group {
    let count = |f: &dyn Fn(&Measured<'_>) -> bool| leads.iter().filter(|m| f(m)).count() as u64;
    let spread = |f: &dyn Fn(&Measured<'_>) -> Option<SignedDuration>| {
        Spread::of(
            leads
                .iter()
                .filter_map(|m| f(m))
                .map(|d| d.as_secs())
                .collect(),
        )
    };
    let n = leads.len() as u64;
    let contacted = count(&|m| m.facts.first_touch_at.is_some());
    let booked = count(&|m| m.facts.meeting_booked_at.is_some());
    let held = count(&|m| m.facts.meeting_held_at.is_some());
    let sla_met = count(&|m| m.sla == SlaStatus::Met);
    let sla_missed = count(&|m| m.sla == SlaStatus::Missed);
    let outcomes = count(&|m| m.won.is_some());
    let won = count(&|m| m.won == Some(true));
    Group {
        key,
        leads: n,
        notified: count(&|m| m.facts.notified_at.is_some()),
        claimed: count(&|m| m.facts.claimed_at.is_some()),
        contacted,
        meetings_booked: booked,
        meetings_held: held,
        contact_rate: rate(contacted, n),
        meeting_booked_rate: rate(booked, n),
        meeting_held_rate: rate(held, n),
        system: spread(&|m| m.system),
        acknowledgement: spread(&|m| m.acknowledgement),
        human: spread(&|m| m.human),
        first_response: spread(&|m| m.first_response),
        time_to_meeting: spread(&|m| m.time_to_meeting),
        sla_met,
        sla_missed,
        sla_pending: count(&|m| m.sla == SlaStatus::Pending),
        sla_compliance: rate(sla_met, sla_met + sla_missed),
        escalated: count(&|m| m.facts.escalations > 0),
        reassigned: count(&|m| m.facts.reassigned),
        misrouted: count(&|m| !m.facts.misroutes.is_empty()),
        outcomes,
        won,
        won_rate: rate(won, outcomes),
    }
}

/// The key of a lead in the report's groups.
fn key_of(facts: &LeadFacts, by: Dimension, directory: &Directory) -> String {
    const NONE: &str = "(none)";
    let owner_name = |owner: &Owner| match owner {
        Owner::Rep(id) => id.clone(),
        other => other.key(),
    };
    match by {
        Dimension::Rep => facts
            .owner
            .as_ref()
            .map(owner_name)
            .unwrap_or_else(|| "(unassigned)".into()),
        Dimension::Team => facts
            .owner
            .as_ref()
            .and_then(|o| directory.team(o))
            .unwrap_or(NONE)
            .to_owned(),
        Dimension::Tier => facts
            .tier
            .map(|t| t.to_string())
            .unwrap_or_else(|| NONE.into()),
        Dimension::Source => facts.source.clone(),
        Dimension::Rule => facts.rule.clone().unwrap_or_else(|| NONE.into()),
        Dimension::Page => facts.page.clone().unwrap_or_else(|| NONE.into()),
    }
}

/// The report over `facts` (leads outside the window are left out, as are merged leads).
pub fn speed_to_lead(
    facts: &[LeadFacts],
    params: &Params,
    directory: &Directory,
    handoff_fields: &[String],
) -> SpeedToLead {
    let in_window: Vec<&LeadFacts> = facts
        .iter()
        .filter(|f| {
            f.captured_at
                .is_some_and(|at| params.from <= at && at < params.to)
        })
        .collect();
    let merged_excluded = in_window.iter().filter(|f| !f.counts()).count() as u64;
    let measured: Vec<Measured<'_>> = in_window
        .into_iter()
        .filter(|f| f.counts())
        .map(|f| Measured::of(f, params.hours, directory, params.now))
        .collect();
    let all: Vec<&Measured<'_>> = measured.iter().collect();

    let mut keyed: BTreeMap<String, Vec<&Measured<'_>>> = BTreeMap::new();
    for m in &measured {
        keyed
            .entry(key_of(m.facts, params.by, directory))
            .or_default()
            .push(m);
    }
    let groups = keyed
        .into_iter()
        .map(|(key, leads)| group(key, &leads))
        .collect();

    let mut tiers: BTreeMap<Option<u8>, Vec<&Measured<'_>>> = BTreeMap::new();
    for m in &measured {
        tiers.entry(m.facts.tier).or_default().push(m);
    }
    let sla_by_tier = tiers
        .into_iter()
        .map(|(tier, leads)| {
            let count = |s: SlaStatus| leads.iter().filter(|m| m.sla == s).count() as u64;
            let (met, missed) = (count(SlaStatus::Met), count(SlaStatus::Missed));
            // The tier's SLA as configured when its leads were qualified (the latest seen).
            let sla_minutes = leads.iter().rev().find_map(|m| m.facts.sla_minutes);
            TierSla {
                tier,
                sla_minutes,
                leads: leads.len() as u64,
                met,
                missed,
                pending: count(SlaStatus::Pending),
                compliance: rate(met, met + missed),
            }
        })
        .collect();

    let mut buckets: Vec<Vec<&Measured<'_>>> = vec![Vec::new(); BUCKETS.len()];
    for m in &measured {
        buckets[bucket(m.first_response)].push(m);
    }
    let total = measured.len() as u64;
    let response_buckets = buckets
        .iter()
        .zip(BUCKETS)
        .map(|(leads, name)| {
            let outcomes = leads.iter().filter(|m| m.won.is_some()).count() as u64;
            let won = leads.iter().filter(|m| m.won == Some(true)).count() as u64;
            BucketRow {
                bucket: name,
                leads: leads.len() as u64,
                share: rate(leads.len() as u64, total),
                outcomes,
                won,
                won_rate: rate(won, outcomes),
            }
        })
        .collect();

    // A rule's leads: those it routed first, and those it routed after a "not mine".
    let mut rules: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for m in &measured {
        let f = m.facts;
        let mut routed_by: Vec<&str> = f.rule.iter().map(String::as_str).collect();
        routed_by.extend(f.misroutes.iter().map(|x| x.rule.as_str()));
        routed_by.sort_unstable();
        routed_by.dedup();
        for rule in routed_by {
            let entry = rules.entry(rule.to_owned()).or_default();
            entry.0 += 1;
            if f.misroutes.iter().any(|x| x.rule == rule) {
                entry.1 += 1;
            }
        }
    }
    let routing_accuracy = rules
        .into_iter()
        .map(|(rule, (leads, misrouted))| RuleAccuracy {
            rule,
            leads,
            misrouted,
            accuracy: rate(leads - misrouted, leads),
        })
        .collect();

    let notified: Vec<&Measured<'_>> = measured
        .iter()
        .filter(|m| m.facts.notified_at.is_some())
        .collect();
    let lacks = |m: &Measured<'_>, field: &String| !m.facts.handoff.contains(field);
    let complete = notified
        .iter()
        .filter(|m| !handoff_fields.iter().any(|f| lacks(m, f)))
        .count() as u64;
    let handoff = Handoff {
        fields: handoff_fields.to_vec(),
        notified: notified.len() as u64,
        complete,
        completeness: rate(complete, notified.len() as u64),
        missing: handoff_fields
            .iter()
            .map(|field| {
                let n = notified.iter().filter(|m| lacks(m, field)).count() as u64;
                (field.clone(), n)
            })
            .collect(),
    };

    SpeedToLead {
        from: params.from,
        to: params.to,
        generated_at: params.now,
        by: params.by,
        hours: params.hours,
        merged_excluded,
        totals: group("all".into(), &all),
        groups,
        sla_by_tier,
        response_buckets,
        routing_accuracy,
        handoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&values, 50), Some(5));
        assert_eq!(percentile(&values, 90), Some(9));
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn buckets_have_closed_lower_bounds() {
        let mins = |m: i64| Some(SignedDuration::from_mins(m));
        assert_eq!(BUCKETS[bucket(mins(0))], "< 5 min");
        assert_eq!(
            BUCKETS[bucket(Some(SignedDuration::from_secs(299)))],
            "< 5 min"
        );
        assert_eq!(BUCKETS[bucket(mins(5))], "5-15 min");
        assert_eq!(BUCKETS[bucket(mins(15))], "15-30 min");
        assert_eq!(BUCKETS[bucket(mins(59))], "30-60 min");
        assert_eq!(BUCKETS[bucket(mins(60))], "1-4 h");
        assert_eq!(BUCKETS[bucket(mins(4 * 60))], "4-24 h");
        assert_eq!(BUCKETS[bucket(mins(24 * 60))], "> 24 h");
        assert_eq!(BUCKETS[bucket(None)], "never");
    }
}
