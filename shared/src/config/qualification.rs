//! `[qualification]`: the tiers and their SLAs, the tier each event kind starts from, and the
//! score signals (hand-raiser pages, topics, seniority, behaviour).

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{ConfigError, Validator};
use crate::model::EventKind;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualificationConfig {
    pub tiers: Vec<TierConfig>,
    /// The tier each event kind starts from.
    pub event_tiers: BTreeMap<EventKind, u8>,
    /// Pages (globs over `metadata.source_url`) that make a full capture a tier-1 hand-raiser.
    pub hand_raiser_pages: Vec<String>,
    /// Points for each concept of `[topics]` found in what the prospect said, once per concept.
    pub topic_points: i32,
    /// Seniority read from the job title, the first level (in this order) whose titles match.
    pub seniority: Vec<SeniorityLevel>,
    /// Visitor behaviour the chatbot sends in `metadata`: score points only, never the tier.
    pub behaviour: BehaviourConfig,
}

/// Behaviour signals read from the chatbot's free-form `metadata` (top-level keys). Each signal
/// takes the first of its keys holding a usable value (a wrong type is ignored) and scores its
/// points once the figure reaches its minimum; 0 points turns a signal off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourConfig {
    /// A page count, or an array of the pages visited (its length counts).
    pub pages_visited_keys: Vec<String>,
    pub pages_visited_min: u64,
    pub pages_visited_points: i32,
    /// Seconds spent on the pricing page.
    pub time_on_pricing_keys: Vec<String>,
    pub time_on_pricing_min_secs: u64,
    pub time_on_pricing_points: i32,
    /// `true`, or a visit count (this visit included) of at least `return_visit_min_visits`.
    pub return_visit_keys: Vec<String>,
    pub return_visit_min_visits: u64,
    pub return_visit_points: i32,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        let keys = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        BehaviourConfig {
            pages_visited_keys: keys(&["pages_visited", "page_views"]),
            pages_visited_min: 5,
            pages_visited_points: 10,
            time_on_pricing_keys: keys(&["time_on_pricing_secs", "pricing_time_secs"]),
            time_on_pricing_min_secs: 60,
            time_on_pricing_points: 10,
            return_visit_keys: keys(&["returning_visitor", "return_visit", "visit_count"]),
            return_visit_min_visits: 2,
            return_visit_points: 10,
        }
    }
}

/// One seniority level: its points and the title words that place someone there (matched on
/// word boundaries, case- and plural-insensitive: "VP" matches "VP of Sales", not "MVP").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeniorityLevel {
    pub level: String,
    pub points: i32,
    pub titles: Vec<String>,
}

fn default_seniority() -> Vec<SeniorityLevel> {
    let level = |level: &str, points: i32, titles: &[&str]| SeniorityLevel {
        level: level.to_owned(),
        points,
        titles: titles.iter().map(|t| (*t).to_owned()).collect(),
    };
    vec![
        // Juniors first, so that "Intern in the CEO's office" is an intern.
        level(
            "junior",
            -10,
            &["intern", "student", "trainee", "apprentice"],
        ),
        level(
            "executive",
            15,
            &[
                "ceo",
                "cto",
                "cfo",
                "coo",
                "cio",
                "ciso",
                "cmo",
                "cro",
                "chief",
                "founder",
                "co-founder",
                "owner",
                "president",
                "vp",
                "vice president",
                "svp",
                "evp",
                "head of",
                "director",
                "partner",
            ],
        ),
        level("manager", 8, &["manager", "lead", "principal"]),
    ]
}

impl Default for QualificationConfig {
    fn default() -> Self {
        QualificationConfig {
            tiers: vec![
                TierConfig {
                    tier: 1,
                    label: "hand-raiser".into(),
                    sla_minutes: 5,
                    enrichment_budget_ms: None,
                },
                TierConfig {
                    tier: 2,
                    label: "high intent".into(),
                    sla_minutes: 15,
                    enrichment_budget_ms: None,
                },
                TierConfig {
                    tier: 3,
                    label: "nurture".into(),
                    sla_minutes: 24 * 60,
                    enrichment_budget_ms: None,
                },
            ],
            event_tiers: BTreeMap::from([
                (EventKind::LeadCaptureFallback, 1),
                (EventKind::LeadCapture, 2),
                (EventKind::LeadCapturePartial, 3),
            ]),
            hand_raiser_pages: vec!["/pricing*".into(), "/demo*".into(), "/trial*".into()],
            topic_points: 10,
            seniority: default_seniority(),
            behaviour: BehaviourConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    pub tier: u8,
    pub label: String,
    pub sla_minutes: u32,
    /// The most enrichment providers may take, in all, for a lead of this tier.
    #[serde(default)]
    pub enrichment_budget_ms: Option<u64>,
}

impl TierConfig {
    /// The tier's enrichment budget: as configured, else 800 ms for tier 1, 2 s for tier 2 and
    /// 5 s below, so that the hottest leads wait least.
    pub fn enrichment_budget(&self) -> std::time::Duration {
        let default = match self.tier {
            0 | 1 => 800,
            2 => 2_000,
            _ => 5_000,
        };
        std::time::Duration::from_millis(self.enrichment_budget_ms.unwrap_or(default))
    }
}

impl QualificationConfig {
    /// The tiers, the event kinds' tiers and the page globs, then the behaviour signals;
    /// returns the defined tiers, which rules may name.
    pub(super) fn check(&self, v: &Validator<'_>) -> Result<HashSet<u8>, ConfigError> {
        let tiers: HashSet<u8> = self.tiers.iter().map(|t| t.tier).collect();
        if tiers.is_empty() {
            return Err(v.invalid(0..0, "qualification.tiers", "at least one tier is required"));
        }
        for (index, tier) in self.tiers.iter().enumerate() {
            let key = format!("qualification.tiers[{index}]");
            if tier.enrichment_budget_ms == Some(0) {
                return Err(v.invalid(
                    0..0,
                    format!("{key}.enrichment_budget_ms"),
                    format!(
                        "tier {}: must be above 0 (leave it out for the default)",
                        tier.tier
                    ),
                ));
            }
            if tier.sla_minutes == 0 {
                return Err(v.invalid(
                    0..0,
                    format!("{key}.sla_minutes"),
                    format!("tier {}: must be above 0", tier.tier),
                ));
            }
        }
        for (event, tier) in &self.event_tiers {
            if !tiers.contains(tier) {
                return Err(v.invalid(
                    0..0,
                    format!("qualification.event_tiers.{event}"),
                    format!("tier {tier} is not defined"),
                ));
            }
        }
        for (index, pattern) in self.hand_raiser_pages.iter().enumerate() {
            glob::Pattern::new(pattern).map_err(|e| {
                v.invalid(
                    0..0,
                    format!("qualification.hand_raiser_pages[{index}]"),
                    format!("{pattern:?}: {e}"),
                )
            })?;
        }
        self.behaviour.check(v)?;
        Ok(tiers)
    }
}

impl BehaviourConfig {
    fn check(&self, v: &Validator<'_>) -> Result<(), ConfigError> {
        for (key, value, least) in [
            ("pages_visited_min", self.pages_visited_min, 1),
            ("time_on_pricing_min_secs", self.time_on_pricing_min_secs, 1),
            // One visit is this one: a return needs two.
            ("return_visit_min_visits", self.return_visit_min_visits, 2),
        ] {
            if value < least {
                return Err(v.invalid(
                    0..0,
                    format!("qualification.behaviour.{key}"),
                    format!("must be at least {least}"),
                ));
            }
        }
        for (key, keys) in [
            ("pages_visited_keys", &self.pages_visited_keys),
            ("time_on_pricing_keys", &self.time_on_pricing_keys),
            ("return_visit_keys", &self.return_visit_keys),
        ] {
            if keys.iter().any(|k| k.trim().is_empty()) {
                return Err(v.invalid(
                    0..0,
                    format!("qualification.behaviour.{key}"),
                    "a key must not be empty",
                ));
            }
        }
        Ok(())
    }
}
