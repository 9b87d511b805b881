//! The speed-to-lead figures, computed from [`LeadFacts`] alone. Every formula is written out
//! in docs/reports.md; the code here is the one place each is defined.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::facts::LeadFacts;
use super::rollup::{self, Records};
use crate::calendar::Schedule;
use crate::config::Config;
use crate::model::Owner;
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

    /// Every owner with working hours, in no particular order.
    pub(super) fn schedules(&self) -> impl Iterator<Item = (&Owner, &Schedule)> {
        self.schedules.iter()
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

/// Nearest rank: the smallest value with at least `p`% of the values at or below it.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (u64::from(p) * n as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank.min(n) - 1).copied()
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

/// The report over `facts` (leads outside the window are left out, as are merged leads):
/// the facts made [`Records`], then [`rollup::figures`], as the dashboard computes them.
pub fn speed_to_lead(
    facts: &[LeadFacts],
    params: &Params,
    directory: &Directory,
    handoff_fields: &[String],
) -> SpeedToLead {
    let records = Records::of(facts, directory);
    rollup::figures(
        &records,
        records.records(),
        params,
        directory,
        handoff_fields,
    )
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
