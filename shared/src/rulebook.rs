//! The pure decisions of the pipeline, compiled once from the configuration:
//! enrichment from the domain table, qualification into a tier with an SLA, and first-match
//! routing to exactly one owner. No I/O happens here.

use std::collections::{HashMap, HashSet};

use crate::config::{AssignConfig, CompanyRecord, Conditions, Config, TierConfig};
use crate::model::{Assignment, Enrichment, EventKind, Lead, Owner, Qualification, ScoreItem};

/// The configuration, indexed for the hot path.
pub struct Rulebook {
    companies: HashMap<String, CompanyRecord>,
    free_mail: HashSet<String>,
    hand_raiser_pages: Vec<glob::Pattern>,
    event_tiers: HashMap<EventKind, u8>,
    tiers: Vec<TierConfig>,
    rules: Vec<Rule>,
    fallback_queue: String,
    names: HashMap<Owner, String>,
}

struct Rule {
    name: String,
    when: Conditions,
    assign: AssignConfig,
}

impl Rulebook {
    pub fn new(config: &Config) -> Self {
        let companies = config
            .enrichment
            .companies
            .iter()
            .map(|c| (c.get_ref().domain.to_ascii_lowercase(), c.get_ref().clone()))
            .collect();
        let free_mail = config
            .enrichment
            .free_mail_domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        let hand_raiser_pages = config
            .qualification
            .hand_raiser_pages
            .iter()
            // Patterns were validated at load; an invalid one cannot reach this point.
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        let mut names = HashMap::new();
        for rep in &config.reps {
            let rep = rep.get_ref();
            names.insert(Owner::Rep(rep.id.clone()), rep.name.clone());
        }
        for queue in &config.queues {
            let queue = queue.get_ref();
            names.insert(Owner::Queue(queue.id.clone()), queue.name.clone());
        }
        Rulebook {
            companies,
            free_mail,
            hand_raiser_pages,
            event_tiers: config
                .qualification
                .event_tiers
                .clone()
                .into_iter()
                .collect(),
            tiers: config.qualification.tiers.clone(),
            rules: config
                .rules
                .iter()
                .map(|r| Rule {
                    name: r.get_ref().name.clone(),
                    when: r.get_ref().when.clone(),
                    assign: r.get_ref().assign.get_ref().clone(),
                })
                .collect(),
            fallback_queue: config.routing.fallback_queue.get_ref().clone(),
            names,
        }
    }

    /// Firmographics from the domain table, and free-mail detection.
    pub fn enrich(&self, lead: &Lead) -> Enrichment {
        let domain = lead
            .capture
            .captured_email
            .as_deref()
            .and_then(|email| email.rsplit_once('@'))
            .map(|(_, domain)| domain.trim().to_ascii_lowercase());
        let mut enrichment = Enrichment {
            domain: domain.clone(),
            company: lead.capture.company.clone(),
            ..Enrichment::default()
        };
        let Some(domain) = domain else {
            enrichment.sources.push("no e-mail domain".into());
            enrichment.missing = vec!["company".into(), "country".into()];
            return enrichment;
        };
        if self.free_mail.contains(&domain) {
            enrichment.free_mail = true;
            enrichment.sources.push("free_mail_list".into());
        } else if let Some(record) = self.company_for(&domain) {
            enrichment.company = Some(record.name.clone());
            enrichment.employees = record.employees;
            enrichment.industry = record.industry.clone();
            enrichment.country = record.country.as_ref().map(|c| c.to_ascii_uppercase());
            enrichment.account_owner = record.account_owner.clone();
            enrichment.sources.push("domain_table".into());
        } else {
            enrichment.sources.push("domain_table: no match".into());
        }
        for (field, known) in [
            ("company", enrichment.company.is_some()),
            ("employees", enrichment.employees.is_some()),
            ("country", enrichment.country.is_some()),
        ] {
            if !known {
                enrichment.missing.push(field.into());
            }
        }
        enrichment
    }

    /// Looks up a domain, then its parents, so that `eu.acme.com` finds `acme.com`.
    fn company_for(&self, domain: &str) -> Option<&CompanyRecord> {
        let mut candidate = domain;
        loop {
            if let Some(record) = self.companies.get(candidate) {
                return Some(record);
            }
            let (_, parent) = candidate.split_once('.')?;
            if !parent.contains('.') {
                return None;
            }
            candidate = parent;
        }
    }

    /// Tier, score with its breakdown, and the SLA that follows from the tier.
    pub fn qualify(&self, lead: &Lead) -> Qualification {
        let event = lead.event();
        let enrichment = lead.enrichment.clone().unwrap_or_default();
        let mut breakdown = Vec::new();
        let mut add = |signal: &str, points: i32| {
            breakdown.push(ScoreItem {
                signal: signal.to_owned(),
                points,
            })
        };

        let mut tier = self.event_tiers.get(&event).copied().unwrap_or(2);
        match event {
            EventKind::LeadCaptureFallback => add("asked a question the bot could not answer", 40),
            EventKind::LeadCapture => add("finished the conversation", 30),
            EventKind::LeadCapturePartial => add("partial capture", 10),
        }
        let page = lead.capture.metadata.source_url.as_deref().unwrap_or("");
        if !page.is_empty() && self.hand_raiser_pages.iter().any(|p| p.matches(page)) {
            add("on a hand-raiser page", 20);
            if event == EventKind::LeadCapture {
                tier = tier.min(1);
            }
        }
        match enrichment.employees {
            Some(n) if n >= 1000 => add("company of 1000+ employees", 25),
            Some(n) if n >= 200 => add("company of 200-999 employees", 15),
            Some(_) => add("company size known", 5),
            None => {}
        }
        if enrichment.account_owner.is_some() {
            add("named account", 15);
        }
        if enrichment.free_mail {
            add("free-mail address", -15);
            if enrichment.company.is_none() && event != EventKind::LeadCaptureFallback {
                tier = tier.max(self.lowest_tier());
            }
        }
        for flag in &lead.flags {
            add(&format!("flag: {}", flag.code), -10);
        }
        let tier = self.known_tier(tier);
        let sla_minutes = self
            .tiers
            .iter()
            .find(|t| t.tier == tier)
            .map(|t| t.sla_minutes)
            .unwrap_or(24 * 60);
        Qualification {
            tier,
            score: breakdown.iter().map(|item| item.points).sum(),
            sla_minutes,
            breakdown,
        }
    }

    fn lowest_tier(&self) -> u8 {
        self.tiers.iter().map(|t| t.tier).max().unwrap_or(3)
    }

    /// The nearest defined tier at or below the requested urgency.
    fn known_tier(&self, wanted: u8) -> u8 {
        let mut defined: Vec<u8> = self.tiers.iter().map(|t| t.tier).collect();
        defined.sort_unstable();
        defined
            .iter()
            .copied()
            .find(|t| *t >= wanted)
            .or_else(|| defined.last().copied())
            .unwrap_or(wanted)
    }

    pub fn tier_label(&self, tier: u8) -> &str {
        self.tiers
            .iter()
            .find(|t| t.tier == tier)
            .map(|t| t.label.as_str())
            .unwrap_or("")
    }

    /// First matching rule wins; no match goes to the fallback queue. Always exactly one owner.
    pub fn route(&self, lead: &Lead) -> Assignment {
        let enrichment = lead.enrichment.clone().unwrap_or_default();
        let tier = lead.qualification.as_ref().map(|q| q.tier);
        for rule in &self.rules {
            let Some(reasons) = matches(&rule.when, lead, &enrichment, tier) else {
                continue;
            };
            let owner = if let Some(rep) = &rule.assign.rep {
                Owner::Rep(rep.clone())
            } else if let Some(queue) = &rule.assign.queue {
                Owner::Queue(queue.clone())
            } else if let Some(owner) = &enrichment.account_owner {
                Owner::Rep(owner.clone())
            } else {
                // An account-owner rule for a company without an owner does not apply.
                continue;
            };
            let reason = if reasons.is_empty() {
                "matches every lead".to_owned()
            } else {
                reasons.join(", ")
            };
            return self.assignment(owner, &rule.name, reason);
        }
        self.assignment(
            Owner::Queue(self.fallback_queue.clone()),
            "fallback",
            "no rule matched".into(),
        )
    }

    fn assignment(&self, owner: Owner, rule: &str, reason: String) -> Assignment {
        Assignment {
            owner_name: self
                .names
                .get(&owner)
                .cloned()
                .unwrap_or_else(|| owner.id().to_owned()),
            owner,
            rule: rule.to_owned(),
            reason,
        }
    }
}

/// `Some(reasons)` when every condition holds, each reason saying which and why.
fn matches(
    when: &Conditions,
    lead: &Lead,
    enrichment: &Enrichment,
    tier: Option<u8>,
) -> Option<Vec<String>> {
    let mut reasons = Vec::new();
    if let Some(wanted) = when.named_account {
        if enrichment.account_owner.is_some() != wanted {
            return None;
        }
        reasons.push(if wanted {
            "the company is a named account".to_owned()
        } else {
            "not a named account".to_owned()
        });
    }
    if let Some(countries) = &when.countries {
        let country = enrichment.country.as_deref()?;
        if !countries.iter().any(|c| c.eq_ignore_ascii_case(country)) {
            return None;
        }
        reasons.push(format!("country {country}"));
    }
    if let Some(min) = when.min_employees {
        let employees = enrichment.employees?;
        if employees < min {
            return None;
        }
        reasons.push(format!("{employees} employees >= {min}"));
    }
    if let Some(max) = when.max_employees {
        let employees = enrichment.employees?;
        if employees > max {
            return None;
        }
        reasons.push(format!("{employees} employees <= {max}"));
    }
    if let Some(tiers) = &when.tiers {
        let tier = tier?;
        if !tiers.contains(&tier) {
            return None;
        }
        reasons.push(format!("tier {tier}"));
    }
    if let Some(events) = &when.events {
        let event = lead.event();
        if !events.contains(&event) {
            return None;
        }
        reasons.push(format!("event {event}"));
    }
    if let Some(wanted) = when.free_mail {
        if enrichment.free_mail != wanted {
            return None;
        }
        reasons.push(
            if wanted {
                "free-mail address"
            } else {
                "business address"
            }
            .to_owned(),
        );
    }
    Some(reasons)
}
